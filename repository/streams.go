package repository

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Durable event types, as clients see them.
const (
	EventMessageCreated      = "message.created"
	EventConversationCreated = "conversation.created"
	EventMemberJoined        = "member.joined"
	EventMemberLeft          = "member.left"
	EventRead                = "read"
)

// appendEvent appends one event to the stream of each user, inside tx.
//
// The per-user counters are locked in user id order (Postgres: one UPDATE
// over a SELECT ... ORDER BY ... FOR UPDATE) so that concurrent transactions
// touching overlapping users cannot deadlock, and because the counter row
// stays locked until commit, a user's seq values commit in order: once a
// reader has seen n, no smaller seq can appear later (DESIGN invariants 1-2).
// On SQLite the immediate transaction already holds the only write lock.
//
// On Postgres the counters and the rows are written by one statement (see
// appendPG) that carries the ids as one array and the event data once: a
// message to a group of a thousand is one round trip, not a thousand
// copies of its JSON.
func (s *Store) appendEvent(ctx context.Context, tx bun.Tx, userIDs []string, typ string, data []byte) ([]Pointer, error) {
	if len(userIDs) == 0 {
		return nil, nil
	}
	ids := slices.Clone(userIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)

	var ptrs []Pointer
	if s.IsPostgres() {
		var err error
		ptrs, err = s.appendPG(ctx, tx, ids, typ, data)
		if err != nil {
			return nil, err
		}
	} else {
		now := s.now()
		inline, dataID, err := s.shareData(ctx, tx, len(ids), data, now)
		if err != nil {
			return nil, err
		}
		var rows []stream
		err = tx.NewRaw(`UPDATE streams SET last_seq = last_seq + 1
			WHERE user_id IN (?) RETURNING user_id, last_seq`, bun.List(ids)).Scan(ctx, &rows)
		if err != nil {
			return nil, fmt.Errorf("repository: advance streams: %w", err)
		}
		events := make([]Event, len(rows))
		ptrs = make([]Pointer, len(rows))
		for i, r := range rows {
			events[i] = Event{UserID: r.UserID, Seq: r.LastSeq, Type: typ, Data: inline, DataID: dataID, CreatedAt: now}
			ptrs[i] = Pointer{UserID: r.UserID, Seq: r.LastSeq, Type: typ, Data: data, CreatedAt: now}
		}
		if len(events) > 0 {
			if _, err := tx.NewInsert().Model(&events).Exec(ctx); err != nil {
				return nil, fmt.Errorf("repository: insert events: %w", err)
			}
		}
	}
	if len(ptrs) != len(ids) {
		return nil, fmt.Errorf("repository: append events: %d of %d users have a stream", len(ptrs), len(ids))
	}
	return ptrs, nil
}

// appendPG appends one event to the streams of ids in one statement: the
// counters are locked in user id order, advanced, and the rows inserted
// with the data given once.
func (s *Store) appendPG(ctx context.Context, tx bun.Tx, ids []string, typ string, data []byte) ([]Pointer, error) {
	now := s.now()
	inline, dataID, err := s.shareData(ctx, tx, len(ids), data, now)
	if err != nil {
		return nil, err
	}
	var rows []Event
	err = tx.NewRaw(`WITH l AS (SELECT user_id FROM streams WHERE user_id = ANY(?::text[]) ORDER BY user_id FOR UPDATE),
		s AS (UPDATE streams AS s SET last_seq = s.last_seq + 1 FROM l WHERE s.user_id = l.user_id
			RETURNING s.user_id, s.last_seq)
		INSERT INTO events (user_id, seq, type, data, data_id, created_at)
		SELECT user_id, last_seq, ?, ?, ?, ?::timestamptz FROM s
		RETURNING user_id, seq`, pgdialect.Array(ids), typ, inline, dataID, now).Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("repository: append events: %w", err)
	}
	ptrs := make([]Pointer, len(rows))
	for i, r := range rows {
		ptrs[i] = Pointer{UserID: r.UserID, Seq: r.Seq, Type: typ, Data: data, CreatedAt: now}
	}
	return ptrs, nil
}

// sharedDataMin is the size from which the data of an event appended to
// more than one stream is stored once, in event_data, with every row
// pointing at it: below it, a row and an index entry cost more than the
// copies they save.
const sharedDataMin = 1024

// eventData is a row of event_data: data shared by the rows of one append.
type eventData struct {
	bun.BaseModel `bun:"table:event_data"`

	ID        string    `bun:"id,pk"`
	Data      string    `bun:"data"`
	CreatedAt time.Time `bun:"created_at"`
}

// shareData decides how the rows of one append to n streams carry data:
// inline (the data, no id) or, when it is big enough to be worth sharing,
// stored once in event_data (empty data and the shared row's id). n < 0
// means "many, count unknown".
func (s *Store) shareData(ctx context.Context, tx bun.Tx, n int, data []byte, now time.Time) (inline string, id *string, err error) {
	if len(data) < sharedDataMin || n == 1 {
		return string(data), nil, nil
	}
	row := &eventData{ID: newID(), Data: string(data), CreatedAt: now}
	if _, err := tx.NewInsert().Model(row).Exec(ctx); err != nil {
		return "", nil, fmt.Errorf("repository: store shared event data: %w", err)
	}
	return "", &row.ID, nil
}

// resolveShared fills in the data of rows that point at event_data, with
// one query for all of them and one copy of each shared datum.
func (s *Store) resolveShared(ctx context.Context, events []Event) error {
	var ids []string
	for _, e := range events {
		if e.DataID != nil {
			ids = append(ids, *e.DataID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var rows []eventData
	if err := s.db.NewSelect().Model(&rows).Where("id IN (?)", bun.List(ids)).Scan(ctx); err != nil {
		return fmt.Errorf("repository: read shared event data: %w", err)
	}
	type datum struct {
		s string
		b []byte
	}
	shared := make(map[string]datum, len(rows))
	for _, d := range rows {
		shared[d.ID] = datum{d.Data, []byte(d.Data)}
	}
	for i := range events {
		e := &events[i]
		if e.DataID == nil {
			continue
		}
		d, ok := shared[*e.DataID]
		if !ok {
			// Pruning deletes shared data only when no row points at it.
			return fmt.Errorf("repository: event %s/%d: shared data %s is missing", e.UserID, e.Seq, *e.DataID)
		}
		e.Data, e.shared = d.s, d.b
	}
	return nil
}

// appendToMembers appends one event to the stream of every member of
// convID. Call it under the conversation's lock, which is what keeps the
// member list still. On Postgres the members are read by the appending
// statement itself: no round trip of their own.
func (s *Store) appendToMembers(ctx context.Context, tx bun.Tx, convID, typ string, data []byte) ([]Pointer, error) {
	if s.IsPostgres() {
		// appendPG's statement for members, prepared (see pgArgs): this is
		// every message's. The member count is not known before it runs:
		// data big enough is shared whatever the count.
		now := s.now()
		inline, dataID, err := s.shareData(ctx, tx, -1, data, now)
		if err != nil {
			return nil, err
		}
		rows, err := tx.Tx.QueryContext(ctx, `WITH l AS (SELECT user_id FROM streams
				WHERE user_id IN (SELECT user_id FROM members WHERE conversation_id = $1) ORDER BY user_id FOR UPDATE),
			s AS (UPDATE streams AS s SET last_seq = s.last_seq + 1 FROM l WHERE s.user_id = l.user_id
				RETURNING s.user_id, s.last_seq)
			INSERT INTO events (user_id, seq, type, data, data_id, created_at)
			SELECT user_id, last_seq, $2::text, $3::text, $5::text, $4::timestamptz FROM s
			RETURNING user_id, seq`, s.pgArgs(convID, typ, inline, now, dataID)...)
		if err != nil {
			return nil, fmt.Errorf("repository: append events: %w", err)
		}
		defer rows.Close()
		var ptrs []Pointer
		for rows.Next() {
			p := Pointer{Type: typ, Data: data, CreatedAt: now}
			if err := rows.Scan(&p.UserID, &p.Seq); err != nil {
				return nil, err
			}
			ptrs = append(ptrs, p)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("repository: append events: %w", err)
		}
		return ptrs, nil
	}
	var ids []string
	if err := tx.NewSelect().Model((*Member)(nil)).Column("user_id").Where("conversation_id = ?", convID).Scan(ctx, &ids); err != nil {
		return nil, err
	}
	return s.appendEvent(ctx, tx, ids, typ, data)
}

// StreamBounds returns the last seq of a user's stream and the lowest seq
// still kept (last+1 when retention has pruned everything). A cursor below
// first-1 cannot be continued: the client must reset.
func (s *Store) StreamBounds(ctx context.Context, userID string) (first, last int64, err error) {
	var row struct {
		LastSeq int64  `bun:"last_seq"`
		MinSeq  *int64 `bun:"min_seq"`
	}
	if s.IsPostgres() {
		// Every stream and every long-poll asks: prepared (see pgArgs).
		err = s.db.DB.QueryRowContext(ctx, `SELECT s.last_seq, (SELECT MIN(e.seq) FROM events AS e WHERE e.user_id = s.user_id)
			FROM streams AS s WHERE s.user_id = $1`, s.pgArgs(userID)...).Scan(&row.LastSeq, &row.MinSeq)
	} else {
		err = s.db.NewRaw(`SELECT s.last_seq, (SELECT MIN(e.seq) FROM events AS e WHERE e.user_id = s.user_id) AS min_seq
			FROM streams AS s WHERE s.user_id = ?`, userID).Scan(ctx, &row)
	}
	if err != nil {
		return 0, 0, notFound(err)
	}
	first = row.LastSeq + 1
	if row.MinSeq != nil {
		first = *row.MinSeq
	}
	return first, row.LastSeq, nil
}

// StreamHeads returns the last seq of each given user's stream.
func (s *Store) StreamHeads(ctx context.Context, userIDs []string) (map[string]int64, error) {
	heads := make(map[string]int64, len(userIDs))
	for chunk := range slices.Chunk(userIDs, 500) {
		var rows []stream
		if err := s.db.NewSelect().Model(&rows).Column("user_id", "last_seq").
			Where("user_id IN (?)", bun.List(chunk)).Scan(ctx); err != nil {
			return nil, err
		}
		for _, r := range rows {
			heads[r.UserID] = r.LastSeq
		}
	}
	return heads, nil
}

// EventsAfter returns up to limit events of a user's stream with seq > after,
// in order.
func (s *Store) EventsAfter(ctx context.Context, userID string, after int64, limit int) ([]Event, error) {
	events := []Event{}
	err := s.db.NewSelect().Model(&events).
		Where("user_id = ? AND seq > ?", userID, after).
		Order("seq").Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, err
	}
	return events, s.resolveShared(ctx, events)
}

// Cursor is a position in a user's stream: the events after it are wanted.
type Cursor struct {
	UserID string
	After  int64
}

// cursorsPerQuery bounds one read of the hub's windows. On Postgres it also
// keeps the statement's estimated cost under jit_above_cost: compiling a
// plan for a thousand cursors takes longer than running it.
const cursorsPerQuery = 200

// EventsAfterCursors reads, for each cursor, up to limit events after it:
// how the hub serves a batch of doorbells for many subscribers at once.
// Rows come ordered by user and seq; windows of one user's cursors may
// overlap, and overlapping rows are returned once.
func (s *Store) EventsAfterCursors(ctx context.Context, cursors []Cursor, limit int) ([]Event, error) {
	read := s.eventsAfterOR
	if s.IsPostgres() {
		read = s.eventsAfterLateral
	}
	var out []Event
	for chunk := range slices.Chunk(cursors, cursorsPerQuery) {
		events, err := read(ctx, chunk, limit)
		if err != nil {
			return nil, err
		}
		out = append(out, events...)
	}
	if err := s.resolveShared(ctx, out); err != nil {
		return nil, err
	}
	if len(cursors) > cursorsPerQuery {
		// Windows of one user may have come from different chunks.
		slices.SortFunc(out, func(a, b Event) int {
			if c := strings.Compare(a.UserID, b.UserID); c != 0 {
				return c
			}
			return cmp.Compare(a.Seq, b.Seq)
		})
	}
	return compactEvents(out), nil
}

// eventsAfterOR reads the windows as OR'ed conditions (SQLite).
func (s *Store) eventsAfterOR(ctx context.Context, cursors []Cursor, limit int) ([]Event, error) {
	var events []Event
	err := s.db.NewSelect().Model(&events).WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
		for _, c := range cursors {
			q = q.WhereOr("(user_id = ? AND seq > ? AND seq <= ?)", c.UserID, c.After, c.After+int64(limit))
		}
		return q
	}).Order("user_id", "seq").Scan(ctx)
	return events, err
}

// eventsAfterLateral reads the windows in one statement on Postgres: the
// cursors go in as two arrays, each joined laterally to its user's rows
// through the primary key. (A chain of OR'ed conditions costs Postgres about
// 0.1 ms of planning per cursor.)
func (s *Store) eventsAfterLateral(ctx context.Context, cursors []Cursor, limit int) ([]Event, error) {
	users := make([]string, len(cursors))
	afters := make([]int64, len(cursors))
	for i, c := range cursors {
		users[i], afters[i] = c.UserID, c.After
	}
	var events []Event
	err := s.db.NewRaw(`SELECT e.user_id, e.seq, e.type, e.data, e.data_id, e.created_at
		FROM unnest(?::text[], ?::bigint[]) AS c(user_id, after)
		CROSS JOIN LATERAL (SELECT * FROM events
			WHERE user_id = c.user_id AND seq > c.after AND seq <= c.after + ?
			ORDER BY seq LIMIT ?) AS e
		ORDER BY e.user_id, e.seq`, pgdialect.Array(users), pgdialect.Array(afters), limit, limit).Scan(ctx, &events)
	return events, err
}

// compactEvents drops the repeats of rows sorted by user and seq.
func compactEvents(evs []Event) []Event {
	return slices.CompactFunc(evs, func(a, b Event) bool { return a.UserID == b.UserID && a.Seq == b.Seq })
}

// PruneEvents deletes stream rows older than before. It removes only a
// prefix of each user's stream (rows below the first one still within
// retention): created_at is not strictly in seq order across nodes, and a
// hole in the middle of a stream would read as a gap. Cursors that pointed
// into the removed prefix get a reset (see StreamBounds).
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.NewRaw(`DELETE FROM events WHERE created_at < ? AND seq < COALESCE(
		(SELECT MIN(k.seq) FROM events AS k WHERE k.user_id = events.user_id AND k.created_at >= ?), ?)`,
		before, before, int64(math.MaxInt64)).Exec(ctx)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	// Shared data goes with the last row that points at it. Rows appended
	// with it commit in the same transaction, so no reader can be left
	// pointing at a deleted datum.
	if _, err := s.db.NewRaw(`DELETE FROM event_data WHERE created_at < ?
		AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.data_id = event_data.id)`, before).Exec(ctx); err != nil {
		return n, fmt.Errorf("repository: prune shared event data: %w", err)
	}
	return n, nil
}

// Notify sends payloads on a Postgres channel in one statement. It is a
// no-op on SQLite, whose single node needs no bus.
func (s *Store) Notify(ctx context.Context, channel string, payloads []string) error {
	if !s.IsPostgres() || len(payloads) == 0 {
		return nil
	}
	_, err := s.db.NewRaw("SELECT pg_notify(?, p) FROM unnest(?::text[]) AS p", channel, pgdialect.Array(payloads)).Exec(ctx)
	return err
}
