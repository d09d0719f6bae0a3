package repository_test

import (
	"context"
	"errors"
	"testing"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// TestSendRetry: a retry with the same client_msg_id is found by the
// unique index, not looked up first; it is answered to members only.
func TestSendRetry(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			store := dbtest.Open(t, dialect)
			ctx := context.Background()
			ids := createUsers(t, store, "ann", "ben", "cat")
			ann := ids[0]
			g1, _, err := store.CreateGroup(ctx, ann, ids[1:], nil, 10)
			if err != nil {
				t.Fatal(err)
			}
			g2, _, err := store.CreateGroup(ctx, ann, ids[1:], nil, 10)
			if err != nil {
				t.Fatal(err)
			}
			key := "k1"
			first, created, ptrs, err := store.SendMessage(ctx, ann, g1.ID, "hi", &key)
			if err != nil || !created || len(ptrs) != 3 {
				t.Fatalf("first send: created %v, %d pointers, %v", created, len(ptrs), err)
			}
			again, created, ptrs, err := store.SendMessage(ctx, ann, g1.ID, "hi", &key)
			if err != nil || created || len(ptrs) != 0 || again.ID != first.ID {
				t.Fatalf("retry: created %v, %d pointers, id %s (want %s), %v", created, len(ptrs), again.ID, first.ID, err)
			}
			if _, _, _, err := store.SendMessage(ctx, ann, g1.ID, "other body", &key); !errors.Is(err, repository.ErrClientMsgConflict) {
				t.Fatalf("same key, other body: %v", err)
			}
			if _, _, _, err := store.SendMessage(ctx, ann, g2.ID, "hi", &key); !errors.Is(err, repository.ErrClientMsgConflict) {
				t.Fatalf("same key, other conversation: %v", err)
			}
			if _, err := store.RemoveMember(ctx, ann, g1.ID, ann); err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := store.SendMessage(ctx, ann, g1.ID, "hi", &key); !errors.Is(err, repository.ErrNotFound) {
				t.Fatalf("retry after leaving: %v, want not found", err)
			}
			fresh := "k2"
			if _, _, _, err := store.SendMessage(ctx, ann, g1.ID, "hi", &fresh); !errors.Is(err, repository.ErrNotFound) {
				t.Fatalf("new send after leaving: %v, want not found", err)
			}
			if n := count(t, store, "messages", "client_msg_id = 'k2'"); n != 0 {
				t.Fatalf("a non-member's send stored %d messages", n)
			}
			// The events: one message.created per member, none for retries.
			if n := count(t, store, "events", "type = 'message.created'"); n != 3 {
				t.Fatalf("%d message.created events, want 3", n)
			}
		})
	}
}
