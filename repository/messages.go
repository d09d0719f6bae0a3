package repository

import (
	"bytes"
	"context"
	"strconv"

	"github.com/uptrace/bun"
)

// SendMessage stores a message from me in convID and appends its
// message.created to the log, in one transaction whose cost does not
// depend on the conversation's size.
//
// With a clientMsgID the send is idempotent per sender: a retry returns the
// stored message with created=false and appends nothing. The same id with a
// different conversation or body is ErrClientMsgConflict.
func (s *Store) SendMessage(ctx context.Context, me, convID, body string, clientMsgID *string) (msg *Message, created bool, err error) {
	m := &Message{
		ID: newID(), ConversationID: convID, SenderID: me,
		Body: body, ClientMsgID: clientMsgID, CreatedAt: s.now(),
	}
	var ev LogEvent
	if s.IsPostgres() {
		ev, err = s.sendPG(ctx, m)
	} else {
		ev, err = s.sendSQLite(ctx, m)
	}
	switch {
	case err == nil:
		s.committed(ev)
		return m, true, nil
	case clientMsgID != nil && isUniqueViolation(err):
		// A retry is not looked for first: the unique index on (sender,
		// client_msg_id) refuses its insert. It is answered (with the
		// stored message, or a conflict) to a member only: anyone else gets
		// 404, as everywhere.
		if err := isMember(ctx, s.db, me, convID); err != nil {
			return nil, false, err
		}
		msg, err := messageByClientID(ctx, s.db, me, *clientMsgID)
		if err != nil {
			return nil, false, err
		}
		if msg.ConversationID != convID || msg.Body != body {
			return nil, false, ErrClientMsgConflict
		}
		return msg, false, nil
	default:
		return nil, false, err
	}
}

// sendPG stores a message in one statement, outside any explicit
// transaction: one round trip, and Postgres commits it as it returns.
//
// It takes the conversation's write lock (see lockConversation) before
// anything gives it a transaction id, locks the conversation row for its
// current last_seq, moves the sender's read marker to the new seq (no
// marker moves for a non-member, and then nothing is written: the statement
// returns no row), inserts the message, makes it the conversation's last,
// and appends message.created with the seq spliced into its data. A
// sender who is not a member in the statement's snapshot gets 404: the send
// counts as made before any membership change still in flight.
// last_activity_at only moves forward: m's time was read before the
// statement waited for the lock.
func (s *Store) sendPG(ctx context.Context, m *Message) (LogEvent, error) {
	ev := LogEvent{ConversationID: m.ConversationID, Type: EventMessageCreated, CreatedAt: m.CreatedAt}
	before, after := MessageData(m)
	err := s.db.DB.QueryRowContext(ctx, SendStatementPG,
		s.pgArgs(m.ID, m.ConversationID, m.SenderID, m.Body, m.ClientMsgID, m.CreatedAt, before, after, ConversationLockClass)...).
		Scan(&m.Seq, &ev.ID, &ev.XID)
	if err != nil {
		return ev, notFound(err)
	}
	ev.Data = before + strconv.FormatInt(m.Seq, 10) + after
	return ev, nil
}

// sendSQLite stores a message in a transaction; the immediate transaction
// already holds the only write lock.
func (s *Store) sendSQLite(ctx context.Context, m *Message) (ev LogEvent, err error) {
	err = s.tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		var lastSeq int64
		if err := tx.NewRaw("SELECT last_seq FROM conversations WHERE id = ?", m.ConversationID).Scan(ctx, &lastSeq); err != nil {
			return notFound(err)
		}
		m.Seq = lastSeq + 1
		res, err := tx.NewUpdate().Model((*Member)(nil)).Set("read_seq = ?", m.Seq).
			Where("conversation_id = ? AND user_id = ?", m.ConversationID, m.SenderID).Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrNotFound
		}
		if _, err := tx.NewInsert().Model(m).Exec(ctx); err != nil {
			return err
		}
		if _, err := tx.NewUpdate().Model((*Conversation)(nil)).
			Set("last_seq = ?, last_message_id = ?, last_activity_at = ?", m.Seq, m.ID, m.CreatedAt).
			Where("id = ?", m.ConversationID).Exec(ctx); err != nil {
			return err
		}
		ev, err = s.appendLog(ctx, tx, m.ConversationID, EventMessageCreated, mustJSON(map[string]any{"message": m}), m.CreatedAt)
		return err
	})
	return ev, err
}

// SendStatementPG is a send on Postgres (see sendPG), exported so that
// `confab bench sql` times exactly it: $1 message id, $2 conversation, $3
// sender, $4 body, $5 client_msg_id, $6 created_at, $7 and $8 the
// message.created data before and after its seq (MessageData), $9
// ConversationLockClass. It returns the seq, the log id and the xid.
const SendStatementPG = `WITH k AS MATERIALIZED (SELECT 1 AS k FROM pg_advisory_xact_lock($9, hashtext($2))),
		c AS (SELECT conversations.last_seq + 1 AS seq FROM k, conversations WHERE conversations.id = $2 FOR UPDATE OF conversations),
		r AS (UPDATE members SET read_seq = c.seq FROM c WHERE conversation_id = $2 AND user_id = $3 RETURNING c.seq),
		m AS (INSERT INTO messages (id, conversation_id, sender_id, seq, body, client_msg_id, created_at)
			SELECT $1, $2, $3, r.seq, $4, $5, $6 FROM r RETURNING seq),
		u AS (UPDATE conversations SET last_seq = m.seq, last_message_id = $1, last_activity_at = GREATEST(last_activity_at, $6) FROM m WHERE id = $2),
		l AS (INSERT INTO log (conversation_id, type, data, created_at)
			SELECT $2, 'message.created', $7 || m.seq::text || $8, $6 FROM m RETURNING id, xid)
		SELECT m.seq, l.id, l.xid FROM m, l`

// MessageData renders the data of m's message.created around its seq, which
// the database assigns: the JSON before the seq's digits and after them.
// Every string in it is JSON-escaped, so `"seq":0,` occurs only as the
// field itself.
func MessageData(m *Message) (before, after string) {
	m.Seq = 0
	b := mustJSON(map[string]any{"message": m})
	i := bytes.Index(b, []byte(`"seq":0,`)) + len(`"seq":`)
	return string(b[:i]), string(b[i+1:])
}

func messageByClientID(ctx context.Context, db bun.IDB, sender, clientMsgID string) (*Message, error) {
	m := new(Message)
	err := db.NewSelect().Model(m).Where("sender_id = ? AND client_msg_id = ?", sender, clientMsgID).Scan(ctx)
	return m, notFound(err)
}

// Messages returns up to limit messages of convID before the message
// beforeID (or the newest), oldest first, and whether older ones exist.
func (s *Store) Messages(ctx context.Context, me, convID, beforeID string, limit int) ([]Message, bool, error) {
	if err := isMember(ctx, s.db, me, convID); err != nil {
		return nil, false, err
	}
	q := s.db.NewSelect().Model((*Message)(nil)).Where("conversation_id = ?", convID)
	if beforeID != "" {
		before, err := messageIn(ctx, s.db, convID, beforeID)
		if err != nil {
			return nil, false, err
		}
		q = q.Where("seq < ?", before.Seq)
	}
	msgs := []Message{}
	if err := q.Order("seq DESC").Limit(int64(limit+1)).Scan(ctx, &msgs); err != nil {
		return nil, false, err
	}
	hasMore := len(msgs) > limit
	if hasMore {
		msgs = msgs[:limit]
	}
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	return msgs, hasMore, nil
}

func messageIn(ctx context.Context, db bun.IDB, convID, id string) (*Message, error) {
	m := new(Message)
	err := db.NewSelect().Model(m).Where("id = ? AND conversation_id = ?", id, convID).Scan(ctx)
	return m, notFound(err)
}

func isMember(ctx context.Context, db bun.IDB, me, convID string) error {
	ok, err := db.NewSelect().Model((*Member)(nil)).Where("conversation_id = ? AND user_id = ?", convID, me).Exists(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotFound
	}
	return nil
}

// MarkRead moves me's read marker in convID up to messageID and announces
// it to every member. A marker never moves backwards; marking an older
// message appends nothing.
func (s *Store) MarkRead(ctx context.Context, me, convID, messageID string) error {
	var ev *LogEvent
	err := s.tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if _, _, err := s.lockMembership(ctx, tx, me, convID); err != nil {
			return err
		}
		m, err := messageIn(ctx, tx, convID, messageID)
		if err != nil {
			return err
		}
		res, err := tx.NewUpdate().Model((*Member)(nil)).Set("read_seq = ?", m.Seq).
			Where("conversation_id = ? AND user_id = ? AND read_seq < ?", convID, me, m.Seq).Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		data := mustJSON(map[string]string{"conversation_id": convID, "user_id": me, "message_id": messageID})
		e, err := s.appendLog(ctx, tx, convID, EventRead, data, s.now())
		ev = &e
		return err
	})
	if err == nil && ev != nil {
		s.committed(*ev)
	}
	return err
}
