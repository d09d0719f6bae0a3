package repository_test

import (
	"context"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// TestPruneRemovesOnlyAPrefix: created_at is not in seq order across nodes;
// pruning must never punch a hole in the middle of a stream.
func TestPruneRemovesOnlyAPrefix(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			store := dbtest.Open(t, dialect)
			ctx := context.Background()
			u, err := store.CreateUser(ctx, "pruned", "P", "x")
			if err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-48 * time.Hour)
			recent := time.Now()
			// seq 1 old, 2 recent (a node with a fast clock), 3 old, 4 recent.
			for seq, at := range map[int64]time.Time{1: old, 2: recent, 3: old, 4: recent} {
				if _, err := store.DB().NewInsert().Model(&repository.Event{UserID: u.ID, Seq: seq, Type: "read", Data: "{}", CreatedAt: at}).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			n, err := store.PruneEvents(ctx, time.Now().Add(-24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			events, err := store.EventsAfter(ctx, u.ID, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if n != 1 || len(events) != 3 || events[0].Seq != 2 {
				t.Fatalf("pruned %d, kept %v", n, events)
			}
		})
	}
}

func TestPruneRefreshTokens(t *testing.T) {
	store := dbtest.Open(t, "sqlite")
	ctx := context.Background()
	u, err := store.CreateUser(ctx, "tok", "T", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateRefreshToken(ctx, u.ID, -time.Hour); err != nil {
		t.Fatal(err)
	}
	live, err := store.CreateRefreshToken(ctx, u.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := store.PruneRefreshTokens(ctx, time.Now()); err != nil || n != 1 {
		t.Fatalf("pruned %d: %v", n, err)
	}
	if _, _, err := store.RotateRefreshToken(ctx, live, time.Hour); err != nil {
		t.Fatalf("the live token was pruned: %v", err)
	}
}
