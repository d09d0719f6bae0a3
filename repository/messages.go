package repository

import (
	"context"
	"database/sql"
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
		// The conversation lock orders concurrent sends, and concurrent
		// retries of one message queue behind each other here. Membership
		// can only change under this lock, so the member list read by the
		// writes below is the one the lock protects.
		lastSeq, err := s.lockConversation(ctx, tx, convID)
		if err != nil {
			return err
		}
		// A retry is not looked for first: the unique index on (sender,
		// client_msg_id) refuses its insert below, and the retry is
		// answered after the rollback. A first send, by far the common
		// case, saves two round trips.
		now := s.now()
		m := &Message{
			ID: newID(), ConversationID: convID, SenderID: me, Seq: lastSeq + 1,
			Body: body, ClientMsgID: clientMsgID, CreatedAt: now,
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

// storeMessage inserts m, makes it its conversation's last message, and
// moves the sender's read marker to it (your own message is read by you).
// It reports whether the sender is a member: only then has a marker moved.
// On Postgres the three writes are one prepared statement, one round trip.
func (s *Store) storeMessage(ctx context.Context, tx bun.Tx, m *Message) (member bool, err error) {
	var res sql.Result
	if s.IsPostgres() {
		res, err = tx.Tx.ExecContext(ctx, `WITH m AS (
				INSERT INTO messages (id, conversation_id, sender_id, seq, body, client_msg_id, created_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7)),
			c AS (UPDATE conversations SET last_seq = $4, last_message_id = $1, last_activity_at = $7 WHERE id = $2)
			UPDATE members SET read_seq = $4 WHERE conversation_id = $2 AND user_id = $3`,
			s.pgArgs(m.ID, m.ConversationID, m.SenderID, m.Seq, m.Body, m.ClientMsgID, m.CreatedAt)...)
	} else {
		if _, err := tx.NewInsert().Model(m).Exec(ctx); err != nil {
			return false, err
		}
		if _, err := tx.NewUpdate().Model((*Conversation)(nil)).
			Set("last_seq = ?, last_message_id = ?, last_activity_at = ?", m.Seq, m.ID, m.CreatedAt).
			Where("id = ?", m.ConversationID).Exec(ctx); err != nil {
			return false, err
		}
		res, err = tx.NewUpdate().Model((*Member)(nil)).Set("read_seq = ?", m.Seq).
			Where("conversation_id = ? AND user_id = ?", m.ConversationID, m.SenderID).Exec(ctx)
	}
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
