package events

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// hubFixture is a running hub over a store with one group of users.
type hubFixture struct {
	store *repository.Store
	hub   *Hub
	users []string
	conv  string
}

func newHubFixture(t *testing.T, dialect string, cfg HubConfig, members int) *hubFixture {
	t.Helper()
	store := dbtest.Open(t, dialect)
	ctx := context.Background()
	f := &hubFixture{store: store}
	for i := range members {
		u, err := store.CreateUser(ctx, fmt.Sprintf("user%d", i), "U", "x")
		if err != nil {
			t.Fatal(err)
		}
		f.users = append(f.users, u.ID)
	}
	conv, ptrs, err := store.CreateGroup(ctx, f.users[0], f.users[1:], nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	f.conv = conv.ID
	f.hub = newHub(store, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(nil), cfg)
	hctx, cancel := context.WithCancel(ctx)
	go f.hub.run(hctx)
	t.Cleanup(cancel)
	f.hub.Ring(ptrs)
	return f
}

// send commits a message and rings the hub, as the API does.
func (f *hubFixture) send(t testing.TB, body string) {
	_, _, ptrs, err := f.store.SendMessage(context.Background(), f.users[0], f.conv, body, nil)
	if err != nil {
		t.Error(err)
		return
	}
	f.hub.Ring(ptrs)
}

// collect reads a subscription until it has seq `until`, checking every
// durable event continues the sequence from `after`.
func collect(t *testing.T, sub *Subscription, after, until int64) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for after < until {
		select {
		case ev := <-sub.Events():
			if ev.Seq == 0 {
				continue
			}
			if ev.Seq != after+1 {
				t.Errorf("seq %d after %d", ev.Seq, after)
				return
			}
			after = ev.Seq
			sub.Received()
		case <-sub.Done():
			t.Errorf("subscription ended: %v", sub.Err())
			return
		case <-deadline:
			t.Errorf("stuck at seq %d of %d", after, until)
			return
		}
	}
}

// TestHubSubscribersJoiningUnderLoad: subscribers join at every point of a
// busy stream, from old and current cursors, with small buffers and pages;
// each gets every event after its cursor once, in order.
func TestHubSubscribersJoiningUnderLoad(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f := newHubFixture(t, dialect, HubConfig{Buffer: 8, Page: 16, SlowAfter: time.Minute}, 3)
			const n = 300
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := range n {
					f.send(t, fmt.Sprint(i))
				}
			})
			// conversation.created is seq 1, so the last message is n+1.
			for i := range 12 {
				user := f.users[i%len(f.users)]
				after := int64(i * 20)
				wg.Go(func() {
					sub := f.hub.Subscribe(user, after)
					defer sub.Close()
					collect(t, sub, after, n+1)
				})
			}
			wg.Wait()
		})
	}
}

// TestHubDisconnectsSlowConsumer: a subscriber that stops reading is ended
// with ErrSlowConsumer, and another subscriber of the same user keeps up.
func TestHubDisconnectsSlowConsumer(t *testing.T) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 4, Page: 16, SlowAfter: 200 * time.Millisecond}, 2)
	slow := f.hub.Subscribe(f.users[1], 1)
	fast := f.hub.Subscribe(f.users[1], 1)
	defer fast.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		collect(t, fast, 1, 41)
	}()
	for i := range 40 {
		f.send(t, fmt.Sprint(i))
	}
	<-done
	select {
	case <-slow.Done():
		if slow.Err() != ErrSlowConsumer {
			t.Fatalf("ended with %v", slow.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow subscriber was never disconnected")
	}
}

// TestHubShutdownEndsSubscriptions: close ends every subscription and
// refuses new ones.
func TestHubShutdownEndsSubscriptions(t *testing.T) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 4, Page: 16, SlowAfter: time.Minute}, 2)
	sub := f.hub.Subscribe(f.users[0], 0)
	f.hub.close()
	<-sub.Done()
	if sub.Err() != ErrShutdown {
		t.Fatalf("ended with %v", sub.Err())
	}
	late := f.hub.Subscribe(f.users[0], 0)
	<-late.Done()
	if late.Err() != ErrShutdown {
		t.Fatalf("late subscription: %v", late.Err())
	}
}
