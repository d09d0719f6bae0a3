package repository_test

import (
	"context"
	"errors"
	"testing"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// TestSendRetry: a retry with the same client_msg_id is found by the
// unique index, not looked up first; it is answered to members only, and
// appends nothing to the log.
func TestSendRetry(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			store := dbtest.Open(t, dialect)
			ctx := context.Background()
			ids := createUsers(t, store, "ann", "ben", "cat")
			ann := ids[0]
			g1, err := store.CreateGroup(ctx, ann, ids[1:], nil, 10)
			if err != nil {
				t.Fatal(err)
			}
			g2, err := store.CreateGroup(ctx, ann, ids[1:], nil, 10)
			if err != nil {
				t.Fatal(err)
			}
			committed := recordCommits(store)
			key := "k1"
			first, created, err := store.SendMessage(ctx, ann, g1.ID, "hi", &key)
			evs := committed.take()
			if err != nil || !created || len(evs) != 1 || evs[0].Type != repository.EventMessageCreated || evs[0].ConversationID != g1.ID {
				t.Fatalf("first send: created %v, committed %v, %v", created, types(evs), err)
			}
			again, created, err := store.SendMessage(ctx, ann, g1.ID, "hi", &key)
			if evs := committed.take(); err != nil || created || len(evs) != 0 || again.ID != first.ID || again.Seq != first.Seq {
				t.Fatalf("retry: created %v, committed %v, id %s (want %s), %v", created, types(evs), again.ID, first.ID, err)
			}
			if _, _, err := store.SendMessage(ctx, ann, g1.ID, "other body", &key); !errors.Is(err, repository.ErrClientMsgConflict) {
				t.Fatalf("same key, other body: %v", err)
			}
			if _, _, err := store.SendMessage(ctx, ann, g2.ID, "hi", &key); !errors.Is(err, repository.ErrClientMsgConflict) {
				t.Fatalf("same key, other conversation: %v", err)
			}
			if err := store.RemoveMember(ctx, ann, g1.ID, ann); err != nil {
				t.Fatal(err)
			}
			committed.take()
			if _, _, err := store.SendMessage(ctx, ann, g1.ID, "hi", &key); !errors.Is(err, repository.ErrNotFound) {
				t.Fatalf("retry after leaving: %v, want not found", err)
			}
			fresh := "k2"
			if _, _, err := store.SendMessage(ctx, ann, g1.ID, "hi", &fresh); !errors.Is(err, repository.ErrNotFound) {
				t.Fatalf("new send after leaving: %v, want not found", err)
			}
			if n := count(t, store, "messages", "client_msg_id = 'k2'"); n != 0 {
				t.Fatalf("a non-member's send stored %d messages", n)
			}
			if evs := committed.take(); len(evs) != 0 {
				t.Fatalf("refused sends committed %v", types(evs))
			}
			// The log: one message.created for the one message stored,
			// none for retries, conflicts or refused sends.
			if n := count(t, store, "log", "type = 'message.created'"); n != 1 {
				t.Fatalf("%d message.created events, want 1", n)
			}
		})
	}
}
