package repository_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// TestEventStoredOnce attacks invariant 5 of docs/ARCHITECTURE.md: a durable event is one
// row of the log whatever the size of its conversation. A send or a read
// marker appends one row and touches no membership; a new group adds one
// row and a span per member. Every member reads that one row whole, the
// store hands the same events to its OnCommit hook, and ReadLog leaves out
// the data of the events its caller already has.
func TestEventStoredOnce(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			store := dbtest.Open(t, dialect)
			ctx := context.Background()
			var names []string
			for i := range 31 {
				names = append(names, fmt.Sprintf("user%d", i))
			}
			ids := createUsers(t, store, names...)
			committed := recordCommits(store)
			title := strings.Repeat("t", 2000)
			big := strings.Repeat("b", 1500)
			var all []repository.LogEvent
			grows := func(what string, logRows, spans int64, fn func()) repository.LogEvent {
				t.Helper()
				l, m := count(t, store, "log", ""), count(t, store, "memberships", "")
				fn()
				if dl, dm := count(t, store, "log", "")-l, count(t, store, "memberships", "")-m; dl != logRows || dm != spans {
					t.Fatalf("%s: %d log rows and %d spans, want %d and %d", what, dl, dm, logRows, spans)
				}
				evs := committed.take()
				if len(evs) != 1 {
					t.Fatalf("%s committed %v", what, types(evs))
				}
				all = append(all, evs[0])
				return evs[0]
			}
			for _, size := range []int{2, 30} {
				var conv *repository.Conversation
				created := grows(fmt.Sprintf("a group of %d", size), 1, int64(size), func() {
					var err error
					if conv, err = store.CreateGroup(ctx, ids[0], ids[1:size], &title, 100); err != nil {
						t.Fatal(err)
					}
				})
				if created.Type != repository.EventConversationCreated || created.ConversationID != conv.ID || !strings.Contains(created.Data, title) {
					t.Fatalf("committed %s of %s: %.80q", created.Type, created.ConversationID, created.Data)
				}
				var msg *repository.Message
				sent := grows(fmt.Sprintf("a send to %d", size), 1, 0, func() {
					var err error
					if msg, _, err = store.SendMessage(ctx, ids[1], conv.ID, big, nil); err != nil {
						t.Fatal(err)
					}
				})
				if sent.Type != repository.EventMessageCreated || !strings.Contains(sent.Data, big) || !strings.Contains(sent.Data, `"seq":1,`) {
					t.Fatalf("committed %s: %.80q", sent.Type, sent.Data)
				}
				read := grows(fmt.Sprintf("a read marker in %d", size), 1, 0, func() {
					if err := store.MarkRead(ctx, ids[0], conv.ID, msg.ID); err != nil {
						t.Fatal(err)
					}
				})
				// Every member reads the one row of each, whole; the next
				// user, not a member, reads none of them.
				want := []repository.LogEvent{created, sent, read}
				for _, u := range ids[:size+1] {
					evs, err := store.UserEvents(ctx, u, created.Position(), read.Position(), 10)
					if err != nil {
						t.Fatal(err)
					}
					if u == ids[size] {
						if len(evs) != 0 {
							t.Fatalf("a non-member read %v", types(evs))
						}
						continue
					}
					evs, err = store.UserEvents(ctx, u, repository.Position{}, read.Position(), 10)
					if err != nil {
						t.Fatal(err)
					}
					evs = slices.DeleteFunc(evs, func(ev repository.LogEvent) bool { return ev.ConversationID != conv.ID })
					if !slices.Equal(positions(evs), positions(want)) {
						t.Fatalf("member reads %v", types(evs))
					}
					for i := range evs {
						if evs[i].Data != want[i].Data || !evs[i].CreatedAt.Equal(want[i].CreatedAt) {
							t.Fatalf("%s read back as %.80q", evs[i].Type, evs[i].Data)
						}
					}
				}
			}

			// The node's tail reads each event once; the ones it knows
			// (its own writes) come without their data.
			last := all[len(all)-1].Position()
			got := readLogUntil(t, store, repository.Position{}, last, 100, nil)
			if !slices.Equal(positions(got), positions(all)) {
				t.Fatalf("ReadLog: %v, want %v", positions(got), positions(all))
			}
			var known []int64
			for i, ev := range all {
				if got[i].Data != ev.Data || got[i].Type != ev.Type || got[i].ConversationID != ev.ConversationID {
					t.Fatalf("ReadLog: %s read back as %.80q", ev.Type, got[i].Data)
				}
				if ev.Type == repository.EventMessageCreated {
					known = append(known, ev.ID)
				}
			}
			got = readLogUntil(t, store, repository.Position{}, last, 1, known)
			if !slices.Equal(positions(got), positions(all)) {
				t.Fatalf("ReadLog in pages of 1: %v, want %v", positions(got), positions(all))
			}
			for i, ev := range got {
				want := all[i].Data
				if slices.Contains(known, ev.ID) {
					want = ""
				}
				if ev.Data != want {
					t.Fatalf("ReadLog with known %v: %s %d read back as %.80q", known, ev.Type, ev.ID, ev.Data)
				}
			}
			if head, err := store.LogHead(ctx); err != nil || last.Less(head) {
				t.Fatalf("LogHead %v (%v) past the last event %v", head, err, last)
			}
		})
	}
}

// TestCheckLogPositions: a log whose positions are ahead of the database's
// transaction ids (a restore from a dump) is refused, not served on with
// new events sorting before old ones.
func TestCheckLogPositions(t *testing.T) {
	store := dbtest.Open(t, "postgres")
	ctx := context.Background()
	if err := store.CheckLogPositions(ctx); err != nil {
		t.Fatalf("an empty log: %v", err)
	}
	if _, err := store.DB().ExecContext(ctx, `INSERT INTO log (xid, conversation_id, type, data, created_at)
		VALUES (pg_current_xact_id()::text::bigint - 1, 'c', 'read', '{}', now())`); err != nil {
		t.Fatal(err)
	}
	if err := store.CheckLogPositions(ctx); err != nil {
		t.Fatalf("a log below the database's transaction ids: %v", err)
	}
	if _, err := store.DB().ExecContext(ctx, `INSERT INTO log (xid, conversation_id, type, data, created_at)
		VALUES (pg_current_xact_id()::text::bigint + 1000000, 'c', 'read', '{}', now())`); err != nil {
		t.Fatal(err)
	}
	if err := store.CheckLogPositions(ctx); !errors.Is(err, repository.ErrLogAhead) {
		t.Fatalf("a log ahead of the database's transaction ids: %v", err)
	}
}
