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
// Either mode: Events, or Ready and Take (SubscribeStream).
func collect(t *testing.T, sub *Subscription, after, until int64) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	var taken []*Event
	check := func(evs ...*Event) bool {
		for _, ev := range evs {
			if ev.Seq == 0 {
				continue
			}
			if ev.Seq != after+1 {
				t.Errorf("seq %d after %d", ev.Seq, after)
				return false
			}
			after = ev.Seq
		}
		sub.Received()
		return true
	}
	for after < until {
		select {
		case ev := <-sub.Events():
			if !check(ev) {
				return
			}
		case <-sub.Ready():
			// Hand the last slice back, as the SSE handler does.
			taken = sub.Take(taken[:0])
			if !check(taken...) {
				return
			}
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
				subscribe := f.hub.Subscribe
				if i%2 == 1 {
					subscribe = f.hub.SubscribeStream
				}
				wg.Go(func() {
					sub := subscribe(user, after)
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
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			testHubDisconnectsSlowConsumer(t, stream)
		})
	}
}

func testHubDisconnectsSlowConsumer(t *testing.T, stream bool) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 4, Page: 16, SlowAfter: 200 * time.Millisecond}, 2)
	subscribe := f.hub.Subscribe
	if stream {
		subscribe = f.hub.SubscribeStream
	}
	slow := subscribe(f.users[1], 1)
	fast := subscribe(f.users[1], 1)
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

// TestHubReadsUpToTheHighestDoorbell: doorbells rung while a read is in
// flight are all served by the next read, not left to the safety poll.
func TestHubReadsUpToTheHighestDoorbell(t *testing.T) {
	store := dbtest.Open(t, "sqlite")
	ctx := context.Background()
	a, _ := store.CreateUser(ctx, "a", "A", "x")
	b, _ := store.CreateUser(ctx, "b", "B", "x")
	conv, _, err := store.CreateGroup(ctx, a.ID, []string{b.ID}, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	h := newHub(store, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(nil), HubConfig{Buffer: 16, Page: 16, SlowAfter: time.Minute})
	sub := h.Subscribe(b.ID, 1) // has conversation.created
	h.dispatch(ctx)             // nothing new yet
	var rung []repository.Pointer
	for range 2 {
		_, _, ptrs, err := store.SendMessage(ctx, a.ID, conv.ID, "m", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ptrs {
			if p.UserID == b.ID {
				rung = append(rung, p)
			}
		}
	}
	doorbell := func(p repository.Pointer) []repository.Pointer { p.Data = nil; return []repository.Pointer{p} }
	h.Ring(doorbell(rung[0])) // seq 2 from another node: marked for a read
	h.Ring(rung[:1])          // seq 2 from this node: handed over at once
	h.Ring(doorbell(rung[1])) // seq 3 from another node
	h.dispatch(ctx)
	for want := int64(2); want <= 3; want++ {
		select {
		case ev := <-sub.Events():
			if ev.Seq != want {
				t.Fatalf("seq %d, want %d", ev.Seq, want)
			}
		default:
			t.Fatalf("seq %d was left for the safety poll", want)
		}
	}
}

// TestHubResetsSubscriberBehindRetention: when the rows after a cursor were
// pruned, the subscriber is ended with ErrPruned (it reconnects and is told
// to reset) instead of waiting forever.
func TestHubResetsSubscriberBehindRetention(t *testing.T) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 16, Page: 16, SlowAfter: time.Minute}, 2)
	for i := range 5 {
		f.send(t, fmt.Sprint(i))
	}
	// Retention removed the start of user 1's stream (seq 1..3).
	if _, err := f.store.DB().NewDelete().TableExpr("events").Where("user_id = ? AND seq <= 3", f.users[1]).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub := f.hub.Subscribe(f.users[1], 1)
	select {
	case <-sub.Done():
		if sub.Err() != ErrPruned {
			t.Fatalf("ended with %v", sub.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a subscriber behind retention was left waiting")
	}
}
