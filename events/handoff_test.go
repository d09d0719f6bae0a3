package events

import (
	"context"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository/dbtest"
)

// TestHubHandsOverWrittenEvents: an event this node wrote goes straight to
// a subscriber it continues, without being read back, while a subscriber
// further behind reads the same seqs from the database, in order.
func TestHubHandsOverWrittenEvents(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f := newHubFixture(t, dialect, HubConfig{Buffer: 16, Page: 16, SlowAfter: time.Minute}, 2)
			live := f.hub.Subscribe(f.users[1], 1) // at the head: conversation.created is seq 1
			defer live.Close()
			behind := f.hub.Subscribe(f.users[1], 0)
			defer behind.Close()
			next := func(sub *Subscription) *Event {
				t.Helper()
				for {
					select {
					case ev := <-sub.Events():
						if ev.Seq > 0 {
							return ev
						}
					case <-time.After(10 * time.Second):
						t.Fatal("no event")
					}
				}
			}
			if ev := next(behind); ev.Seq != 1 {
				t.Fatalf("behind got seq %d first", ev.Seq)
			}
			_, _, ptrs, err := f.store.SendMessage(context.Background(), f.users[0], f.conv, "hi", nil)
			if err != nil {
				t.Fatal(err)
			}
			// Mark the handed-over copy: only the direct path delivers it.
			for i := range ptrs {
				ptrs[i].Data = []byte(`{"handed":"over"}`)
			}
			f.hub.Ring(ptrs)
			if ev := next(live); ev.Seq != 2 || string(ev.Data) != `{"handed":"over"}` || ev.Type != "message.created" || ev.At.IsZero() {
				t.Errorf("live got seq %d %s %q at %v, want seq 2 handed over", ev.Seq, ev.Type, ev.Data, ev.At)
			}
			if ev := next(behind); ev.Seq != 2 {
				t.Errorf("behind got seq %d, want 2", ev.Seq)
			}
		})
	}
}
