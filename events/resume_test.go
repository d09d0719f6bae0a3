package events

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// TestResumeResetsOutsideTheLog: a stream or poll continues a cursor when
// every event after it is kept; a cursor older than what retention kept,
// one from before the event log (a per-user seq) or one ahead of the log
// starts at the head with reset set, so that the client reloads instead of
// silently missing events; a cursor that is not one is refused.
func TestResumeResetsOutsideTheLog(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			store := dbtest.Open(t, dialect)
			ctx := context.Background()
			b := New(DefaultConfig(), store, quietLog(), nil)
			var pos []repository.Position
			store.OnCommit(func(evs []repository.LogEvent) {
				for _, ev := range evs {
					pos = append(pos, ev.Position())
				}
			})
			a, _ := store.CreateUser(ctx, "a", "A", "x")
			c, _ := store.CreateUser(ctx, "c", "C", "x")
			// Four events older than retention, then two recent ones.
			old := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Microsecond)
			store.SetClock(func() time.Time { return old })
			conv, err := store.CreateGroup(ctx, a.ID, []string{c.ID}, nil, 10)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if i == 3 {
					store.SetClock(func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) })
				}
				if _, _, err := store.SendMessage(ctx, a.ID, conv.ID, "m", nil); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := store.PruneLog(ctx, time.Now().Add(-24*time.Hour)); err != nil || n != 4 {
				t.Fatalf("pruned %d (%v), want 4", n, err)
			}
			floor, last := pos[3], pos[5]
			ahead := last
			ahead.ID++
			var head repository.Position // stands for the head of the log

			for _, tc := range []struct {
				name, cursor string
				from         repository.Position // where it starts; the head (last) when zero
				reset        bool
				err          error
			}{
				{"no cursor", "", head, false, nil},
				{"the last event", last.String(), last, false, nil},
				{"within what is kept", pos[4].String(), pos[4], false, nil},
				{"at the floor", floor.String(), floor, false, nil},
				{"pruned", pos[2].String(), head, true, nil},
				{"the very start", repository.Position{}.String(), head, true, nil},
				{"a per-user seq", "17", head, true, nil},
				{"ahead of the log", ahead.String(), head, true, nil},
				{"not a cursor", "x-1", head, false, ErrInvalidCursor},
			} {
				from, reset, err := b.Resume(ctx, tc.cursor)
				if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
					t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
					continue
				}
				if err != nil {
					continue
				}
				ok := from == tc.from
				if tc.from == head {
					// The head is the last final event: on Postgres a
					// transaction of another test in this database may
					// hold it back.
					ok = from == last || store.IsPostgres() && !from.Less(floor) && !last.Less(from)
				}
				if !ok || reset != tc.reset {
					t.Errorf("%s (%q): from %v reset %v, want %v %v", tc.name, tc.cursor, from, reset, tc.from, tc.reset)
				}
			}
		})
	}
}
