package repository_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
	"github.com/uptrace/bun"
)

// TestSharedEventData: data big enough is stored once for all the rows of
// one append; every reader still gets it whole, and pruning keeps it while
// any row points at it.
func TestSharedEventData(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			store := dbtest.Open(t, dialect)
			ctx := context.Background()
			ids := createUsers(t, store, "ann", "ben", "cat")
			title := strings.Repeat("t", 2000)
			conv, ptrs, err := store.CreateGroup(ctx, ids[0], ids[1:], &title, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(ptrs) != 3 || !strings.Contains(string(ptrs[0].Data), title) {
				t.Fatalf("pointers %d, data of the first %.80q", len(ptrs), ptrs[0].Data)
			}
			big := strings.Repeat("b", 1500)
			if _, _, _, err := store.SendMessage(ctx, ids[1], conv.ID, big, nil); err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := store.SendMessage(ctx, ids[1], conv.ID, "small", nil); err != nil {
				t.Fatal(err)
			}
			// Stored: two shared data rows, and only the big events point
			// at them, with their own data empty.
			if n := count(t, store, "event_data", ""); n != 2 {
				t.Fatalf("%d shared data rows, want 2 (conversation.created and the big message)", n)
			}
			if n := count(t, store, "events", "data_id IS NOT NULL AND data = ''"); n != 6 {
				t.Fatalf("%d events point at shared data, want 6", n)
			}
			if n := count(t, store, "events", "data_id IS NULL AND data LIKE '%small%'"); n != 3 {
				t.Fatalf("%d inline small messages, want 3", n)
			}
			// Read back whole, one user at a time and many at once.
			wantHas := []string{title, big, "small"}
			for _, id := range ids {
				evs, err := store.EventsAfter(ctx, id, 0, 10)
				if err != nil {
					t.Fatal(err)
				}
				checkEvents(t, evs, wantHas)
			}
			cursors := []repository.Cursor{{UserID: ids[0]}, {UserID: ids[1]}, {UserID: ids[2]}}
			evs, err := store.EventsAfterCursors(ctx, cursors, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 9 {
				t.Fatalf("%d events for three cursors, want 9", len(evs))
			}
			for i := 0; i < len(evs); i += 3 {
				checkEvents(t, evs[i:i+3], wantHas)
			}
			if &evs[0].RawData()[0] != &evs[3].RawData()[0] {
				t.Error("two rows sharing data hold two copies of it")
			}

			// Pruning two users' rows keeps the data the third still
			// points at; pruning the third's removes it.
			age := func(who ...string) {
				t.Helper()
				old := time.Now().Add(-48 * time.Hour)
				if _, err := store.DB().NewUpdate().Table("events").Set("created_at = ?", old).Where("user_id IN (?)", bun.List(who)).Exec(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := store.DB().NewUpdate().Table("event_data").Set("created_at = ?", old).Where("1 = 1").Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			age(ids[0], ids[1])
			if _, err := store.PruneEvents(ctx, time.Now().Add(-24*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if n := count(t, store, "event_data", ""); n != 2 {
				t.Fatalf("%d shared data rows after pruning two of three streams, want 2", n)
			}
			evs, err = store.EventsAfter(ctx, ids[2], 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			checkEvents(t, evs, wantHas)
			age(ids[2])
			if _, err := store.PruneEvents(ctx, time.Now().Add(-24*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if n := count(t, store, "event_data", ""); n != 0 {
				t.Fatalf("%d shared data rows after pruning every stream, want 0", n)
			}
		})
	}
}

func checkEvents(t *testing.T, evs []repository.Event, wantHas []string) {
	t.Helper()
	if len(evs) != len(wantHas) {
		t.Fatalf("%d events, want %d", len(evs), len(wantHas))
	}
	for i, e := range evs {
		if !strings.Contains(e.Data, wantHas[i]) || string(e.RawData()) != e.Data {
			t.Fatalf("event %s/%d (%s): data %.80q does not hold what it should", e.UserID, e.Seq, e.Type, e.Data)
		}
	}
}

func count(t *testing.T, store *repository.Store, table, where string) int64 {
	t.Helper()
	q := store.DB().NewSelect().Table(table)
	if where != "" {
		q = q.Where(where)
	}
	n, err := q.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// createUsers registers a user for each name and returns their ids.
func createUsers(t *testing.T, store *repository.Store, names ...string) []string {
	t.Helper()
	ids := make([]string, len(names))
	for i, name := range names {
		u, err := store.CreateUser(context.Background(), name, name, "x")
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = u.ID
	}
	return ids
}
