package events

import (
	"context"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// TestHubHandsOverWrittenEvents: an event this node committed reaches its
// live subscribers as Committed handed it over, not read back (a marked
// copy of its data shows which), while a subscriber that catches up later
// from the database reads the stored one; both in position order.
func TestHubHandsOverWrittenEvents(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			// No ring: whoever catches up reads from the database.
			f := newHubFixture(t, dialect, HubConfig{Buffer: 16, Page: 16, Ring: 0, SlowAfter: time.Minute}, 2)
			var written []repository.LogEvent
			f.store.OnCommit(func(evs []repository.LogEvent) { written = append(written, evs...) })

			live := subscribe(f.hub, f.users[1], f.created)
			defer live.Close()
			behind := subscribe(f.hub, f.users[1], repository.Position{})
			defer behind.Close()
			if ev := next(t, behind); ev.Pos != f.created || ev.Type != repository.EventConversationCreated {
				t.Fatalf("behind got %s %v first, want the conversation.created at %v", ev.Type, ev.Pos, f.created)
			}
			for _, sub := range []*Subscription{live, behind} {
				select {
				case <-sub.CaughtUp():
				case <-time.After(20 * time.Second):
					t.Fatal("a subscription never went live")
				}
			}

			if _, _, err := f.store.SendMessage(context.Background(), f.users[0], f.conv, "hi", nil); err != nil {
				t.Fatal(err)
			}
			if len(written) != 1 {
				t.Fatalf("the send committed %d events", len(written))
			}
			stored := written[0]
			// Mark the handed-over copy: only the hand-over delivers it.
			marked := stored
			marked.Data = `{"handed":"over"}`
			f.hub.Committed([]repository.LogEvent{marked})
			for name, sub := range map[string]*Subscription{"live": live, "behind, now live": behind} {
				if ev := next(t, sub); ev.Pos != stored.Position() || string(ev.Data) != marked.Data || ev.Type != repository.EventMessageCreated || !ev.At.Equal(stored.CreatedAt) {
					t.Errorf("%s got %s %v %q at %v, want %v handed over", name, ev.Type, ev.Pos, ev.Data, ev.At, stored.Position())
				}
			}

			// Catching up from the database reads what was stored.
			late := subscribe(f.hub, f.users[1], f.created)
			defer late.Close()
			if ev := next(t, late); ev.Pos != stored.Position() || string(ev.Data) != stored.Data {
				t.Errorf("late got %v %q, want the stored %v %q", ev.Pos, ev.Data, stored.Position(), stored.Data)
			}
		})
	}
}
