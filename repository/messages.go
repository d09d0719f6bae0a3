package repository

import (
	"context"
	"errors"

	"github.com/uptrace/bun"
)

// errRetryAsDuplicate aborts a send that lost a race on client_msg_id.
var errRetryAsDuplicate = errors.New("duplicate client_msg_id")

// SendMessage stores a message from me in convID and appends
// message.created to every member's stream, in one transaction.
//
// With a clientMsgID the send is idempotent per sender: a retry returns the
// stored message with created=false and appends nothing. The same id with a
// different conversation or body is ErrClientMsgConflict.
func (s *Store) SendMessage(ctx context.Context, me, convID, body string, clientMsgID *string) (msg *Message, created bool, ptrs []Pointer, err error) {
	err = s.tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		// A retry is not looked for first: the unique index on (sender,
		// client_msg_id) refuses its insert, and the retry is answered
		// after the rollback. A first send, by far the common case, saves
		// two round trips.
		m := &Message{
			ID: newID(), ConversationID: convID, SenderID: me,
			Body: body, ClientMsgID: clientMsgID, CreatedAt: s.now(),
		}
		member, err := s.storeMessage(ctx, tx, m)
		if err != nil {
			if clientMsgID != nil && isUniqueViolation(err) {
				// A retry, or the same id sent to another conversation.
				return errRetryAsDuplicate
			}
			return err
		}
		if !member {
			return ErrNotFound // rolls the writes back
		}
		ptrs, err = s.appendToMembers(ctx, tx, convID, EventMessageCreated, mustJSON(map[string]any{"message": m}))
		if err != nil {
			return err
		}
		msg, created = m, true
		return nil
	})
	if errors.Is(err, errRetryAsDuplicate) {
		// A retry is answered (with the stored message, or a conflict)
		// to a member only: anyone else gets 404, as everywhere.
		created, ptrs = false, nil
		if err = isMember(ctx, s.db, me, convID); err == nil {
			msg, err = messageByClientID(ctx, s.db, me, *clientMsgID)
		}
	}
	if err == nil && !created && (msg.ConversationID != convID || msg.Body != body) {
		return nil, false, nil, ErrClientMsgConflict
	}
	return msg, created, ptrs, err
}

// storeMessage locks m's conversation, gives m the conversation's next
// seq, inserts it, makes it the conversation's last message, and moves the
// sender's read marker to it (your own message is read by you). It reports
// whether the sender is a member: only then has a marker moved, and the
// caller rolls back otherwise; a conversation that does not exist is
// ErrNotFound.
//
// The conversation lock orders concurrent sends, and concurrent retries of
// one message queue behind each other on it. Membership can only change
// under this lock, so the member list the append reads next is the one the
// lock protects. On Postgres the lock and the three writes are one
// prepared statement, one round trip.
func (s *Store) storeMessage(ctx context.Context, tx bun.Tx, m *Message) (member bool, err error) {
	if s.IsPostgres() {
		// c locks the row and reads the next seq; the writes use it
		// through m. Data-modifying WITH parts see one snapshot, but the
		// row lock makes that snapshot's last_seq the current one, and
		// UPDATE follows a row changed since to its newest version.
		err = tx.Tx.QueryRowContext(ctx, `WITH c AS (SELECT last_seq + 1 AS seq FROM conversations WHERE id = $2 FOR UPDATE),
			m AS (INSERT INTO messages (id, conversation_id, sender_id, seq, body, client_msg_id, created_at)
				SELECT $1, $2, $3, c.seq, $4, $5, $6 FROM c RETURNING seq),
			u AS (UPDATE conversations SET last_seq = m.seq, last_message_id = $1, last_activity_at = $6 FROM m WHERE id = $2),
			r AS (UPDATE members SET read_seq = m.seq FROM m WHERE conversation_id = $2 AND user_id = $3 RETURNING 1)
			SELECT m.seq, EXISTS (SELECT 1 FROM r) FROM m`,
			s.pgArgs(m.ID, m.ConversationID, m.SenderID, m.Body, m.ClientMsgID, m.CreatedAt)...).Scan(&m.Seq, &member)
		return member, notFound(err)
	}
	// SQLite: the immediate transaction already holds the only write lock.
	var lastSeq int64
	if err := tx.NewRaw("SELECT last_seq FROM conversations WHERE id = ?", m.ConversationID).Scan(ctx, &lastSeq); err != nil {
		return false, notFound(err)
	}
	m.Seq = lastSeq + 1
	if _, err := tx.NewInsert().Model(m).Exec(ctx); err != nil {
		return false, err
	}
	if _, err := tx.NewUpdate().Model((*Conversation)(nil)).
		Set("last_seq = ?, last_message_id = ?, last_activity_at = ?", m.Seq, m.ID, m.CreatedAt).
		Where("id = ?", m.ConversationID).Exec(ctx); err != nil {
		return false, err
	}
	res, err := tx.NewUpdate().Model((*Member)(nil)).Set("read_seq = ?", m.Seq).
		Where("conversation_id = ? AND user_id = ?", m.ConversationID, m.SenderID).Exec(ctx)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
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
func (s *Store) MarkRead(ctx context.Context, me, convID, messageID string) ([]Pointer, error) {
	var ptrs []Pointer
	err := s.tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		_, members, err := s.lockMembership(ctx, tx, me, convID)
		if err != nil {
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
		ptrs, err = s.appendEvent(ctx, tx, members, EventRead, data)
		return err
	})
	return ptrs, err
}
