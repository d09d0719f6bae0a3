package repository_test

import (
	"context"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// TestPruneRemovesOnlyAPrefix: created_at is not in position order across
// nodes; pruning must never punch a hole in the middle of the log. It
// records where it cut (a cursor below gets a reset), drops the membership
// spans that ended before the cut, and keeps the rest.
func TestPruneRemovesOnlyAPrefix(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			store := dbtest.Open(t, dialect)
			ctx := context.Background()
			ids := createUsers(t, store, "ann", "ben")
			old := time.Now().Add(-48 * time.Hour).UTC()
			recent := time.Now().UTC()
			// In position order: old, recent (a node with a fast clock),
			// old, recent.
			var pos []repository.Position
			for _, at := range []time.Time{old, recent, old, recent} {
				ev := &repository.LogEvent{ConversationID: "c", Type: repository.EventRead, Data: "{}", CreatedAt: at}
				if err := store.DB().NewInsert().Model(ev).ExcludeColumn("id", "xid").Returning("id, xid").Scan(ctx, &ev.ID, &ev.XID); err != nil {
					t.Fatal(err)
				}
				pos = append(pos, ev.Position())
			}
			for i := 1; i < len(pos); i++ {
				if !pos[i-1].Less(pos[i]) {
					t.Fatalf("positions %v out of order", pos)
				}
			}
			// ann was in c for its first event only; ben from the first to
			// the third; ann again from the second on.
			span := func(user string, join repository.Position, left *repository.Position) {
				var lx, li *int64
				if left != nil {
					lx, li = &left.XID, &left.ID
				}
				if _, err := store.DB().NewRaw("INSERT INTO memberships (user_id, conversation_id, join_xid, join_id, left_xid, left_id) VALUES (?, 'c', ?, ?, ?, ?)",
					user, join.XID, join.ID, lx, li).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			span(ids[0], pos[0], &pos[0])
			span(ids[1], pos[0], &pos[2])
			span(ids[0], pos[1], nil)

			cutoff := time.Now().Add(-24 * time.Hour)
			n, err := store.PruneLog(ctx, cutoff)
			if err != nil {
				t.Fatal(err)
			}
			kept := readLogUntil(t, store, repository.Position{}, pos[3], 10, nil)
			if n != 1 || len(kept) != 3 || kept[0].Position() != pos[1] {
				t.Fatalf("pruned %d, kept %v", n, positions(kept))
			}
			floor, last, err := store.LogBounds(ctx)
			if err != nil || floor != pos[0] || last != pos[3] {
				t.Fatalf("bounds %v..%v (%v), want %v..%v", floor, last, err, pos[0], pos[3])
			}
			if v, err := store.Setting(ctx, "log_floor"); err != nil || v != pos[0].String() {
				t.Fatalf("log_floor %q (%v)", v, err)
			}
			if n := count(t, store, "memberships", ""); n != 2 {
				t.Fatalf("%d spans left, want 2 (the one that ended at the cut goes)", n)
			}
			// ben's stream from the floor: what is left of his span.
			evs, err := store.UserEvents(ctx, ids[1], floor, last, 10)
			if err != nil || len(evs) != 2 || evs[1].Position() != pos[2] {
				t.Fatalf("ben's stream after the cut: %v (%v)", positions(evs), err)
			}

			// Pruning again cuts nothing: the first event kept is recent.
			if n, err := store.PruneLog(ctx, cutoff); err != nil || n != 0 {
				t.Fatalf("pruned %d again (%v)", n, err)
			}
			if f, _, err := store.LogBounds(ctx); err != nil || f != pos[0] {
				t.Fatalf("floor moved to %v (%v)", f, err)
			}

			// Everything old: the log empties, and a cursor at its last
			// event is still within bounds (nothing after it was lost).
			if n, err := store.PruneLog(ctx, time.Now().Add(time.Hour)); err != nil || n != 3 {
				t.Fatalf("pruned %d of 3 (%v)", n, err)
			}
			floor, last, err = store.LogBounds(ctx)
			if err != nil || floor != pos[3] || last.Less(pos[3]) {
				t.Fatalf("bounds of an empty log %v..%v (%v), want the floor at %v", floor, last, err, pos[3])
			}
			if n := count(t, store, "memberships", ""); n != 1 {
				t.Fatalf("%d spans left, want ann's open one", n)
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
