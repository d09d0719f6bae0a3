package repository

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// Durable event types, as clients see them.
const (
	EventMessageCreated      = "message.created"
	EventConversationCreated = "conversation.created"
	EventMemberJoined        = "member.joined"
	EventMemberLeft          = "member.left"
	EventRead                = "read"
)

// Position is where a durable event stands in the log: the transaction
// that wrote it (XID, always 0 on SQLite), then its row id. Positions are
// totally ordered, and a reader of the log sees them in order: see ReadLog.
// Clients get it as an opaque string.
type Position struct {
	XID int64
	ID  int64
}

// String renders p as the cursor clients store: "<xid>-<id>".
func (p Position) String() string {
	return string(p.Append(nil))
}

// Append appends p's string form to b.
func (p Position) Append(b []byte) []byte {
	b = strconv.AppendInt(b, p.XID, 10)
	b = append(b, '-')
	return strconv.AppendInt(b, p.ID, 10)
}

// Compare orders positions: -1, 0 or +1.
func (p Position) Compare(q Position) int {
	if c := cmp.Compare(p.XID, q.XID); c != 0 {
		return c
	}
	return cmp.Compare(p.ID, q.ID)
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool { return p.Compare(q) < 0 }

// ErrOldCursor is a cursor of the per-user streams' integer form: it cannot
// be mapped onto the log, and the client must reset.
var ErrOldCursor = errors.New("cursor from before the event log")

// ParsePosition reads a cursor. A plain integer, the form cursors had before
// the event log, is ErrOldCursor; anything else that is not a position is
// ErrInvalid.
func ParsePosition(s string) (Position, error) {
	x, n, ok := strings.Cut(s, "-")
	if !ok {
		if _, err := strconv.ParseUint(s, 10, 63); err == nil {
			return Position{}, ErrOldCursor
		}
		return Position{}, ErrInvalid
	}
	xid, err1 := strconv.ParseUint(x, 10, 63)
	id, err2 := strconv.ParseUint(n, 10, 63)
	if err1 != nil || err2 != nil {
		return Position{}, ErrInvalid
	}
	return Position{XID: int64(xid), ID: int64(id)}, nil
}

// LogEvent is one row of the log: one durable event of one conversation.
type LogEvent struct {
	bun.BaseModel `bun:"table:log"`

	ID             int64     `bun:"id,pk,autoincrement"`
	XID            int64     `bun:"xid"`
	ConversationID string    `bun:"conversation_id"`
	Type           string    `bun:"type"`
	Data           string    `bun:"data"`
	CreatedAt      time.Time `bun:"created_at"`
}

// Position is the event's place in the log.
func (e *LogEvent) Position() Position { return Position{XID: e.XID, ID: e.ID} }

// Span is a stretch of positions over which a user was a member of a
// conversation: from Join to Left, both included; Left is nil while the
// user is still a member.
type Span struct {
	ConversationID string
	Join           Position
	Left           *Position
}

// Holds reports whether p falls within s.
func (s Span) Holds(p Position) bool {
	return !p.Less(s.Join) && (s.Left == nil || !s.Left.Less(p))
}

// membership is a row of memberships, a Span of one user.
type membership struct {
	bun.BaseModel `bun:"table:memberships"`

	UserID         string `bun:"user_id,pk"`
	ConversationID string `bun:"conversation_id,pk"`
	JoinXID        int64  `bun:"join_xid,pk"`
	JoinID         int64  `bun:"join_id,pk"`
	LeftXID        *int64 `bun:"left_xid"`
	LeftID         *int64 `bun:"left_id"`
}

func (m *membership) span() Span {
	s := Span{ConversationID: m.ConversationID, Join: Position{m.JoinXID, m.JoinID}}
	if m.LeftID != nil {
		s.Left = &Position{*m.LeftXID, *m.LeftID}
	}
	return s
}

// OnCommit sets the function every write that appended to the log calls
// after its transaction committed, with the events it appended, in position
// order. The real-time core hands them to this node's subscribers from
// there, so no caller has to remember to. Set it before serving.
func (s *Store) OnCommit(fn func([]LogEvent)) { s.onCommit = fn }

func (s *Store) committed(evs ...LogEvent) {
	if s.onCommit != nil && len(evs) > 0 {
		s.onCommit(evs)
	}
}

// appendLog appends one event of convID to the log inside tx and returns
// it with its position.
func (s *Store) appendLog(ctx context.Context, tx bun.Tx, convID, typ string, data []byte, now time.Time) (LogEvent, error) {
	ev := LogEvent{ConversationID: convID, Type: typ, Data: string(data), CreatedAt: now}
	err := tx.NewInsert().Model(&ev).ExcludeColumn("id", "xid").Returning("id, xid").Scan(ctx, &ev.ID, &ev.XID)
	if err != nil {
		return ev, fmt.Errorf("repository: append to log: %w", err)
	}
	return ev, nil
}

// openSpans records that users became members of convID at p.
func openSpans(ctx context.Context, tx bun.Tx, convID string, users []string, p Position) error {
	rows := make([]membership, len(users))
	for i, u := range users {
		rows[i] = membership{UserID: u, ConversationID: convID, JoinXID: p.XID, JoinID: p.ID}
	}
	_, err := tx.NewInsert().Model(&rows).Exec(ctx)
	return err
}

// closeSpan records that userID left convID at p.
func closeSpan(ctx context.Context, tx bun.Tx, convID, userID string, p Position) error {
	_, err := tx.NewUpdate().Model((*membership)(nil)).Set("left_xid = ?, left_id = ?", p.XID, p.ID).
		Where("user_id = ? AND conversation_id = ? AND left_id IS NULL", userID, convID).Exec(ctx)
	return err
}

// Spans returns userID's membership spans that hold positions after `after`.
func (s *Store) Spans(ctx context.Context, userID string, after Position) ([]Span, error) {
	var rows []membership
	err := s.db.NewSelect().Model(&rows).Where("user_id = ?", userID).
		Where("left_id IS NULL OR (left_xid, left_id) > (?, ?)", after.XID, after.ID).Scan(ctx)
	if err != nil {
		return nil, err
	}
	spans := make([]Span, len(rows))
	for i := range rows {
		spans[i] = rows[i].span()
	}
	return spans, nil
}

// horizonPG is the lowest transaction id that may still add to the log:
// the oldest transaction in progress in this database, or the next one to
// start. Every row below it is final, committed or never to be. The
// statement's own snapshot (pg_current_snapshot) lists the transactions in
// progress cluster-wide; those that pg_stat_activity shows running in other
// databases cannot write this log and are left out, so a long transaction
// elsewhere on the cluster holds nothing back. Any transaction not known
// to be elsewhere counts, even one that ended since the snapshot: its rows
// are not in that snapshot, so the read stops below it. Rows below the
// horizon are all in the snapshot, which the same statement reads with.
const horizonPG = `(SELECT LEAST(pg_snapshot_xmax(s)::text::bigint, (
	SELECT min(x::text::bigint) FROM pg_snapshot_xip(s) AS x
	WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a
		WHERE a.backend_xid = (x::text::bigint % 4294967296)::text::xid
		AND a.datname IS DISTINCT FROM current_database())))
	FROM pg_current_snapshot() AS s)`

// ReadLog returns up to limit events after `after`, in position order,
// among those that are final: no event can later commit at a position
// before the last one returned. This is how every node tails the log, once
// for all of its subscribers. Events whose ids are in known get no data
// (the caller has it already: its own writes).
func (s *Store) ReadLog(ctx context.Context, after Position, limit int, known []int64) ([]LogEvent, error) {
	var evs []LogEvent
	var err error
	if s.IsPostgres() {
		rows, qerr := s.db.DB.QueryContext(ctx, `SELECT l.id, l.xid, l.conversation_id, l.type,
				CASE WHEN l.id = ANY($4::bigint[]) THEN '' ELSE l.data END, l.created_at
			FROM log AS l WHERE (l.xid, l.id) > ($1, $2) AND l.xid < `+horizonPG+`
			ORDER BY l.xid, l.id LIMIT $3`, s.pgArgs(after.XID, after.ID, limit, known)...)
		if qerr != nil {
			return nil, qerr
		}
		defer rows.Close()
		for rows.Next() {
			var e LogEvent
			if err := rows.Scan(&e.ID, &e.XID, &e.ConversationID, &e.Type, &e.Data, &e.CreatedAt); err != nil {
				return nil, err
			}
			evs = append(evs, e)
		}
		err = rows.Err()
	} else {
		// One writer at a time: a row id is visible only once every
		// smaller one has committed or rolled back.
		q := s.db.NewSelect().Model(&evs).Where("id > ?", after.ID).Order("id").Limit(int64(limit))
		if len(known) > 0 {
			q = q.ExcludeColumn("data").ColumnExpr("CASE WHEN id IN (?) THEN '' ELSE data END AS data", bun.List(known))
		}
		err = q.Scan(ctx)
	}
	return evs, err
}

// ErrLogAhead: the log holds positions from transaction ids this database
// has not reached (it was restored from a dump, or moved to a new cluster by
// logical replication). New events would sort before them and never be
// delivered; see CheckLogPositions.
var ErrLogAhead = errors.New("repository: the event log's positions are ahead of this database's transaction ids")

// CheckLogPositions refuses a log whose positions are ahead of the
// database's transaction ids (ErrLogAhead): the node must not serve on it.
// The README says how to rebase the log.
func (s *Store) CheckLogPositions(ctx context.Context) error {
	if !s.IsPostgres() {
		return nil
	}
	var ahead bool
	err := s.db.NewRaw(`SELECT COALESCE((SELECT max(xid) FROM log), 0) >= pg_current_xact_id()::text::bigint`).Scan(ctx, &ahead)
	if err != nil {
		return err
	}
	if ahead {
		return ErrLogAhead
	}
	return nil
}

// headWait bounds how long LogHead waits for the last event stored to
// become final.
const headWait = 2 * time.Second

// LogHead returns the position of the last event stored once it is final
// (where retention cut, when nothing is kept): where a node starts tailing,
// and where a client that brings no cursor starts. A transaction of this
// database still in progress holds the final head back; LogHead waits for
// it a moment (up to headWait, then answers with the final head it has),
// so that a client starting right after a write starts after it.
func (s *Store) LogHead(ctx context.Context) (Position, error) {
	var target Position
	delay := time.Millisecond
	deadline := time.Now().Add(headWait)
	for first := true; ; first = false {
		head, last, err := s.logHead(ctx)
		if err != nil {
			return head, err
		}
		if first {
			target = last
		}
		if !head.Less(target) || time.Now().After(deadline) {
			return head, nil
		}
		select {
		case <-ctx.Done():
			return head, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// logHead returns the last final position and the last stored one (both
// the floor when nothing is kept).
func (s *Store) logHead(ctx context.Context) (head, last Position, err error) {
	_, head, last, err = s.logEnds(ctx, true)
	return head, last, err
}

// LogBounds returns what a resuming cursor must lie between: the floor
// retention cut the log at (the events after it are all kept) and the last
// event stored (the floor when pruning left nothing after it). A cursor
// outside them cannot be continued.
func (s *Store) LogBounds(ctx context.Context) (floor, last Position, err error) {
	floor, _, last, err = s.logEnds(ctx, false)
	return floor, last, err
}

// logEnds reads, in one statement, the floor, the last event stored and,
// with final, the last final one (below the horizon on Postgres; the floor
// without final). Head and last are the floor when nothing after it is
// kept.
func (s *Store) logEnds(ctx context.Context, final bool) (floor, head, last Position, err error) {
	var row struct {
		Floor   string `bun:"floor"`
		HeadXID *int64 `bun:"head_xid"`
		HeadID  *int64 `bun:"head_id"`
		LastXID *int64 `bun:"last_xid"`
		LastID  *int64 `bun:"last_id"`
	}
	headQuery := "SELECT NULL::bigint AS xid, NULL::bigint AS id"
	if !s.IsPostgres() {
		headQuery = "SELECT NULL AS xid, NULL AS id"
	}
	if final {
		below := "true"
		if s.IsPostgres() {
			below = "l.xid < " + horizonPG
		}
		headQuery = "SELECT l.xid, l.id FROM log AS l WHERE " + below + " ORDER BY l.xid DESC, l.id DESC LIMIT 1"
	}
	err = s.db.NewRaw(`SELECT (SELECT value FROM settings WHERE key = 'log_floor') AS floor,
			h.xid AS head_xid, h.id AS head_id, l.xid AS last_xid, l.id AS last_id
		FROM (SELECT 1) AS one
		LEFT JOIN (`+headQuery+`) AS h ON true
		LEFT JOIN (SELECT xid, id FROM log ORDER BY xid DESC, id DESC LIMIT 1) AS l ON true`).Scan(ctx, &row)
	if err != nil {
		return floor, head, last, err
	}
	if floor, err = ParsePosition(row.Floor); err != nil {
		return floor, head, last, fmt.Errorf("repository: log floor %q: %w", row.Floor, err)
	}
	head, last = floor, floor
	if row.HeadID != nil {
		head = Position{*row.HeadXID, *row.HeadID}
	}
	if row.LastID != nil && floor.Less(Position{*row.LastXID, *row.LastID}) {
		last = Position{*row.LastXID, *row.LastID}
	}
	return floor, head, last, nil
}

// UserEvents returns up to limit events of userID's stream after `after`
// and at most upTo, in position order: the events of each conversation
// within the user's membership spans. How a subscriber that resumes from
// further back than its node remembers catches up: one indexed query.
func (s *Store) UserEvents(ctx context.Context, userID string, after, upTo Position, limit int) ([]LogEvent, error) {
	// Postgres reads at most limit rows per conversation, each through
	// the (conversation_id, xid, id) index, and merges them; SQLite, which
	// has no LATERAL, joins and sorts.
	events := `JOIN log AS l ON l.conversation_id = m.conversation_id`
	if s.IsPostgres() {
		events = `JOIN LATERAL (SELECT * FROM log AS l WHERE l.conversation_id = m.conversation_id
			AND (l.xid, l.id) > (?0, ?1) AND (l.xid, l.id) <= (?2, ?3)
			AND (l.xid, l.id) >= (m.join_xid, m.join_id)
			AND (m.left_id IS NULL OR (l.xid, l.id) <= (m.left_xid, m.left_id))
			ORDER BY l.xid, l.id LIMIT ?7) AS l ON true`
	}
	evs := []LogEvent{}
	err := s.db.NewRaw(`SELECT l.id, l.xid, l.conversation_id, l.type, l.data, l.created_at
		FROM memberships AS m `+events+`
		WHERE m.user_id = ?4 AND (m.left_id IS NULL OR (m.left_xid, m.left_id) > (?5, ?6))
			AND (l.xid, l.id) > (?0, ?1) AND (l.xid, l.id) <= (?2, ?3)
			AND (l.xid, l.id) >= (m.join_xid, m.join_id)
			AND (m.left_id IS NULL OR (l.xid, l.id) <= (m.left_xid, m.left_id))
		ORDER BY l.xid, l.id LIMIT ?7`,
		after.XID, after.ID, upTo.XID, upTo.ID, userID, after.XID, after.ID, limit).Scan(ctx, &evs)
	return evs, err
}

// pruneBatch is how many log rows one pruning statement deletes: each is
// its own short transaction, so pruning never holds the horizon (and every
// node's delivery) back for long.
const pruneBatch = 5000

// PruneLog deletes the events older than before. It removes a prefix of
// the log in position order, up to the first event still within retention
// (created_at is not strictly in position order). It records the floor
// first, so that a cursor into the prefix gets a reset before any row of
// it goes, then deletes in short batches, then the membership spans that
// ended before the floor.
func (s *Store) PruneLog(ctx context.Context, before time.Time) (int64, error) {
	var keep []LogEvent
	if err := s.db.NewSelect().Model(&keep).Column("xid", "id").Where("created_at >= ?", before).
		Order("xid", "id").Limit(1).Scan(ctx); err != nil {
		return 0, err
	}
	var floor Position
	q := s.db.NewSelect().Model((*LogEvent)(nil)).Column("xid", "id").Order("xid DESC", "id DESC").Limit(1)
	if len(keep) > 0 {
		q = q.Where("(xid, id) < (?, ?)", keep[0].XID, keep[0].ID)
	}
	if err := q.Scan(ctx, &floor.XID, &floor.ID); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil // nothing to prune
		}
		return 0, err
	}
	if _, err := s.db.NewUpdate().Model((*setting)(nil)).Set("value = ?", floor.String()).
		Where("key = 'log_floor'").Exec(ctx); err != nil {
		return 0, err
	}
	var n int64
	for {
		res, err := s.db.NewDelete().Model((*LogEvent)(nil)).Where(`id IN (SELECT id FROM log
			WHERE (xid, id) <= (?, ?) ORDER BY xid, id LIMIT ?)`, floor.XID, floor.ID, pruneBatch).Exec(ctx)
		if err != nil {
			return n, err
		}
		m, _ := res.RowsAffected()
		n += m
		if m < pruneBatch {
			break
		}
	}
	_, err := s.db.NewDelete().Model((*membership)(nil)).
		Where("left_id IS NOT NULL AND (left_xid, left_id) <= (?, ?)", floor.XID, floor.ID).Exec(ctx)
	return n, err
}
