package repository

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"
)

// Conversation kinds.
const (
	KindDirect = "direct"
	KindGroup  = "group"
)

// CreateDirect returns the direct conversation between me and other,
// creating it (and announcing it to both) if it does not exist yet.
func (s *Store) CreateDirect(ctx context.Context, me, other string) (conv *Conversation, created bool, err error) {
	if me == other {
		return nil, false, &InvalidError{"member_ids", "a direct conversation needs one other user"}
	}
	pair := []string{me, other}
	slices.Sort(pair)
	key := pair[0] + "|" + pair[1]
	var ev LogEvent
	err = s.tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if err := usersExist(ctx, tx, []string{other}); err != nil {
			return err
		}
		now := s.now()
		c := &Conversation{ID: newID(), Kind: KindDirect, DirectKey: &key, CreatedAt: now, LastActivityAt: now, MemberCount: len(pair)}
		res, err := tx.NewInsert().Model(c).On("CONFLICT (direct_key) DO NOTHING").Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var existing Conversation
			if err := tx.NewSelect().Model(&existing).Column("id").Where("direct_key = ?", key).Scan(ctx); err != nil {
				return err
			}
			conv, err = loadConversation(ctx, tx, me, existing.ID)
			return err
		}
		created = true
		conv, ev, err = s.startConversation(ctx, tx, me, c, pair)
		return err
	})
	if err == nil && created {
		s.committed(ev)
	}
	return conv, created, err
}

// CreateGroup creates a group of me and others.
func (s *Store) CreateGroup(ctx context.Context, me string, others []string, title *string, maxMembers int) (*Conversation, error) {
	members := append([]string{me}, others...)
	slices.Sort(members)
	members = slices.Compact(members)
	if len(members) > maxMembers {
		return nil, ErrGroupFull
	}
	var conv *Conversation
	var ev LogEvent
	err := s.tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if err := usersExist(ctx, tx, members); err != nil {
			return err
		}
		now := s.now()
		c := &Conversation{ID: newID(), Kind: KindGroup, Title: title, CreatedAt: now, LastActivityAt: now, MemberCount: len(members)}
		if _, err := tx.NewInsert().Model(c).Exec(ctx); err != nil {
			return err
		}
		var err error
		conv, ev, err = s.startConversation(ctx, tx, me, c, members)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.committed(ev)
	return conv, nil
}

// startConversation adds the members of a just-inserted conversation (its
// MemberCount already counts them), appends conversation.created to the
// log, and opens every member's span there. Nobody else can write to a
// conversation before it commits: it needs no lock.
func (s *Store) startConversation(ctx context.Context, tx bun.Tx, me string, c *Conversation, members []string) (*Conversation, LogEvent, error) {
	rows := make([]Member, len(members))
	for i, u := range members {
		rows[i] = Member{ConversationID: c.ID, UserID: u, JoinedAt: c.CreatedAt}
	}
	if _, err := tx.NewInsert().Model(&rows).Exec(ctx); err != nil {
		return nil, LogEvent{}, err
	}
	conv, err := loadConversation(ctx, tx, me, c.ID)
	if err != nil {
		return nil, LogEvent{}, err
	}
	ev, err := s.appendLog(ctx, tx, c.ID, EventConversationCreated, mustJSON(map[string]any{"conversation": conv}), c.CreatedAt)
	if err != nil {
		return nil, ev, err
	}
	return conv, ev, openSpans(ctx, tx, c.ID, members, ev.Position())
}

// usersExist returns ErrNotFound unless every id names a user.
func usersExist(ctx context.Context, db bun.IDB, ids []string) error {
	n, err := db.NewSelect().Model((*User)(nil)).Where("id IN (?)", bun.List(ids)).Count(ctx)
	if err != nil {
		return err
	}
	if n != int64(len(ids)) {
		return ErrNotFound
	}
	return nil
}

// Conversation returns a conversation as seen by member me; ErrNotFound when
// it does not exist or me is not a member.
func (s *Store) Conversation(ctx context.Context, me, id string) (*Conversation, error) {
	return loadConversation(ctx, s.db, me, id)
}

func loadConversation(ctx context.Context, db bun.IDB, me, id string) (*Conversation, error) {
	convs, err := loadConversations(ctx, db, me, id, nil)
	if err != nil {
		return nil, err
	}
	if len(convs) == 0 {
		return nil, ErrNotFound
	}
	return &convs[0], nil
}

// Conversations lists a page of me's conversations, most recent activity
// first: at most limit of them, starting after the cursor before ("" for
// the first page). next is the cursor of the following page, "" after the
// last one. A cursor is a position (last activity, id), not a conversation:
// one that has moved up since stays out of the later pages.
func (s *Store) Conversations(ctx context.Context, me, before string, limit int) (convs []Conversation, next string, err error) {
	page := &convPage{limit: limit}
	if before != "" {
		if page.at, page.id, err = parseConvCursor(before); err != nil {
			return nil, "", err
		}
	}
	if convs, err = loadConversations(ctx, s.db, me, "", page); err != nil {
		return nil, "", err
	}
	if page.more {
		last := convs[len(convs)-1]
		next = convCursor(last.LastActivityAt, last.ID)
	}
	return convs, next, nil
}

// convPage selects a page of conversations: limit of them after (at, id)
// in (last_activity_at, id) descending order (from the start when id is
// ""); more reports that another page follows.
type convPage struct {
	limit int
	at    time.Time
	id    string
	more  bool
}

// convCursor and parseConvCursor make and read the opaque page cursor.
func convCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + " " + id))
}

func parseConvCursor(cursor string) (time.Time, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return time.Time{}, "", ErrInvalidCursor
	}
	ts, id, ok := strings.Cut(string(raw), " ")
	at, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil || id == "" || !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
		return time.Time{}, "", ErrInvalidCursor
	}
	return at.UTC(), id, nil
}

// loadConversations loads me's conversations (or the one with id, or a
// page of them) with their members and last messages in three queries.
func loadConversations(ctx context.Context, db bun.IDB, me, id string, page *convPage) ([]Conversation, error) {
	convs := []Conversation{}
	q := db.NewSelect().Model(&convs).
		ColumnExpr("conversation.*").ColumnExpr("m.read_seq AS read_seq").
		Join("JOIN members AS m ON m.conversation_id = conversation.id AND m.user_id = ?", me).
		OrderExpr("conversation.last_activity_at DESC, conversation.id DESC")
	if id != "" {
		q = q.Where("conversation.id = ?", id)
	}
	if page != nil {
		if page.id != "" {
			q = q.Where("(conversation.last_activity_at < ? OR (conversation.last_activity_at = ? AND conversation.id < ?))", page.at, page.at, page.id)
		}
		q = q.Limit(int64(page.limit) + 1) // one more tells whether a next page exists
	}
	if err := q.Scan(ctx); err != nil {
		return nil, err
	}
	if page != nil && len(convs) > page.limit {
		convs, page.more = convs[:page.limit], true
	}
	if len(convs) == 0 {
		return convs, nil
	}
	ids := make([]string, len(convs))
	var lastIDs []string
	for i := range convs {
		ids[i] = convs[i].ID
		if convs[i].LastMessageID != nil {
			lastIDs = append(lastIDs, *convs[i].LastMessageID)
		}
	}
	var members []Member
	if err := db.NewSelect().Model(&members).
		ColumnExpr("m.*").ColumnExpr("u.username, u.display_name").
		Join("JOIN users AS u ON u.id = m.user_id").
		Where("m.conversation_id IN (?)", bun.List(ids)).
		OrderExpr("m.joined_at, m.user_id").Scan(ctx); err != nil {
		return nil, err
	}
	byConv := make(map[string]*Conversation, len(convs))
	for i := range convs {
		byConv[convs[i].ID] = &convs[i]
		convs[i].Members = []Member{}
	}
	for _, m := range members {
		c := byConv[m.ConversationID]
		c.Members = append(c.Members, m)
	}
	if len(lastIDs) > 0 {
		var last []Message
		if err := db.NewSelect().Model(&last).Where("id IN (?)", bun.List(lastIDs)).Scan(ctx); err != nil {
			return nil, err
		}
		for i := range last {
			byConv[last[i].ConversationID].LastMessage = &last[i]
		}
	}
	return convs, nil
}

// ConversationLockClass is the first key of the advisory locks that
// order the writers of each conversation (the second is a hash of its id).
const ConversationLockClass = 0x636f6e66 // "conf"

// lockConversation makes tx the only writer of convID until it ends, and
// returns the conversation row as it is now. On Postgres it takes the
// conversation's advisory lock before anything gives tx a transaction id,
// then the row lock: transactions that write one conversation get their
// ids, and so their log positions, in the order they hold the lock, which
// keeps a conversation's events in the order of its seq. (A row lock alone
// would not: Postgres assigns the id before waiting for the row.) On
// SQLite the immediate transaction already holds the only write lock.
func (s *Store) lockConversation(ctx context.Context, tx bun.Tx, convID string) (*Conversation, error) {
	c := new(Conversation)
	q := tx.NewSelect().Model(c).Where("id = ?", convID)
	if s.IsPostgres() {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?, hashtext(?))", ConversationLockClass, convID); err != nil {
			return nil, err
		}
		q = q.For("UPDATE")
	}
	if err := q.Scan(ctx); err != nil {
		return nil, notFound(err)
	}
	return c, nil
}

// lockMembership locks the conversation (lockConversation) and returns it
// with the member ids, or ErrNotFound when me is not a member.
func (s *Store) lockMembership(ctx context.Context, tx bun.Tx, me, convID string) (*Conversation, []string, error) {
	c, err := s.lockConversation(ctx, tx, convID)
	if err != nil {
		return nil, nil, err
	}
	var members []string
	if err := tx.NewSelect().Model((*Member)(nil)).Column("user_id").
		Where("conversation_id = ?", convID).Order("user_id").Scan(ctx, &members); err != nil {
		return nil, nil, err
	}
	if !slices.Contains(members, me) {
		return nil, nil, ErrNotFound
	}
	return c, members, nil
}

// AddMember adds userID to a group me belongs to and announces it to every
// member, the newcomer included, whose span starts at that event. Adding a
// member twice is not an error.
func (s *Store) AddMember(ctx context.Context, me, convID, userID string, maxMembers int) (*Conversation, error) {
	var conv *Conversation
	var ev *LogEvent
	err := s.tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		c, members, err := s.lockMembership(ctx, tx, me, convID)
		if err != nil {
			return err
		}
		if c.Kind != KindGroup {
			return ErrNotGroup
		}
		if !slices.Contains(members, userID) {
			if len(members) >= maxMembers {
				return ErrGroupFull
			}
			if err := usersExist(ctx, tx, []string{userID}); err != nil {
				return err
			}
			now := s.now()
			// A newcomer has nothing unread: the history before them is
			// there to scroll back through, not to catch up on.
			if _, err := tx.NewInsert().Model(&Member{ConversationID: convID, UserID: userID, JoinedAt: now, ReadSeq: c.LastSeq}).Exec(ctx); err != nil {
				return err
			}
			if err := touch(ctx, tx, convID, now); err != nil {
				return err
			}
			if err := countMembers(ctx, tx, convID, len(members)+1); err != nil {
				return err
			}
			data := mustJSON(map[string]string{"conversation_id": convID, "user_id": userID, "by": me})
			e, err := s.appendLog(ctx, tx, convID, EventMemberJoined, data, now)
			if err != nil {
				return err
			}
			ev = &e
			if err := openSpans(ctx, tx, convID, []string{userID}, e.Position()); err != nil {
				return err
			}
		}
		conv, err = loadConversation(ctx, tx, me, convID)
		return err
	})
	if err == nil && ev != nil {
		s.committed(*ev)
	}
	return conv, err
}

// RemoveMember removes userID (me, to leave) from a group me belongs to and
// announces it to every member, the one who left included: their span ends
// with that event.
func (s *Store) RemoveMember(ctx context.Context, me, convID, userID string) error {
	var ev LogEvent
	err := s.tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		c, members, err := s.lockMembership(ctx, tx, me, convID)
		if err != nil {
			return err
		}
		if !slices.Contains(members, userID) {
			return ErrNotFound
		}
		if c.Kind != KindGroup {
			return ErrNotGroup
		}
		if _, err := tx.NewDelete().Model((*Member)(nil)).
			Where("conversation_id = ? AND user_id = ?", convID, userID).Exec(ctx); err != nil {
			return err
		}
		now := s.now()
		if err := touch(ctx, tx, convID, now); err != nil {
			return err
		}
		if err := countMembers(ctx, tx, convID, len(members)-1); err != nil {
			return err
		}
		data := mustJSON(map[string]string{"conversation_id": convID, "user_id": userID, "by": me})
		if ev, err = s.appendLog(ctx, tx, convID, EventMemberLeft, data, now); err != nil {
			return err
		}
		return closeSpan(ctx, tx, convID, userID, ev.Position())
	})
	if err == nil {
		s.committed(ev)
	}
	return err
}

func touch(ctx context.Context, tx bun.Tx, convID string, now any) error {
	_, err := tx.NewUpdate().Model((*Conversation)(nil)).Set("last_activity_at = ?", now).Where("id = ?", convID).Exec(ctx)
	return err
}

// countMembers records a conversation's member count; the caller holds its
// membership lock.
func countMembers(ctx context.Context, tx bun.Tx, convID string, n int) error {
	_, err := tx.NewUpdate().Model((*Conversation)(nil)).Set("member_count = ?", n).Where("id = ?", convID).Exec(ctx)
	return err
}

// CoMembers returns the ids of the users userID shares presence with: those
// who share a conversation of at most PresenceMaxMembers members with them.
func (s *Store) CoMembers(ctx context.Context, userID string) ([]string, error) {
	var ids []string
	err := s.db.NewRaw(`SELECT DISTINCT o.user_id FROM members AS m
		JOIN conversations AS c ON c.id = m.conversation_id AND c.member_count <= ?
		JOIN members AS o ON o.conversation_id = m.conversation_id
		WHERE m.user_id = ? AND o.user_id <> ?`, s.presenceMaxMembers, userID, userID).Scan(ctx, &ids)
	return ids, err
}

// MemberIDs returns the member ids of a conversation.
func (s *Store) MemberIDs(ctx context.Context, convID string) ([]string, error) {
	var ids []string
	err := s.db.NewSelect().Model((*Member)(nil)).Column("user_id").Where("conversation_id = ?", convID).Scan(ctx, &ids)
	return ids, err
}

// ConversationIDs returns the ids of the conversations userID belongs to.
func (s *Store) ConversationIDs(ctx context.Context, userID string) ([]string, error) {
	var ids []string
	err := s.db.NewSelect().Model((*Member)(nil)).Column("conversation_id").Where("user_id = ?", userID).Scan(ctx, &ids)
	return ids, err
}
