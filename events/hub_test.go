package events

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
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

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// hubFixture is a running hub over a store with one group of users. The
// store hands what it commits to the hub, as the broker has it do, and the
// fixture keeps a copy.
type hubFixture struct {
	store   *repository.Store
	hub     *Hub
	users   []string
	conv    string
	created repository.Position // the group's conversation.created

	mu        sync.Mutex
	committed []repository.LogEvent
}

func newHubFixture(t *testing.T, dialect string, cfg HubConfig, members int) *hubFixture {
	t.Helper()
	store := dbtest.Open(t, dialect)
	ctx := context.Background()
	f := &hubFixture{store: store}
	f.hub = newHub(store, quietLog(), NewMetrics(nil), cfg)
	store.OnCommit(func(evs []repository.LogEvent) {
		f.mu.Lock()
		f.committed = append(f.committed, evs...)
		f.mu.Unlock()
		f.hub.Committed(evs)
	})
	for i := range members {
		u, err := store.CreateUser(ctx, fmt.Sprintf("user%d", i), "U", "x")
		if err != nil {
			t.Fatal(err)
		}
		f.users = append(f.users, u.ID)
	}
	conv, err := store.CreateGroup(ctx, f.users[0], f.users[1:], nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	f.conv = conv.ID
	f.created = f.last()
	if err := f.hub.start(ctx); err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithCancel(ctx)
	go f.hub.run(hctx)
	t.Cleanup(cancel)
	return f
}

// last is the position of the last event committed.
func (f *hubFixture) last() repository.Position {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.committed[len(f.committed)-1].Position()
}

// after lists the positions committed after p, in order.
func (f *hubFixture) after(p repository.Position) []repository.Position {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []repository.Position
	for _, ev := range f.committed {
		if p.Less(ev.Position()) {
			out = append(out, ev.Position())
		}
	}
	slices.SortFunc(out, repository.Position.Compare)
	return out
}

// send commits a message from the first user and returns its position.
func (f *hubFixture) send(t testing.TB, body string) repository.Position {
	return f.sendIn(t, f.users[0], f.conv, body)
}

func (f *hubFixture) sendIn(t testing.TB, from, conv, body string) repository.Position {
	if _, _, err := f.store.SendMessage(context.Background(), from, conv, body, nil); err != nil {
		t.Error(err)
		return repository.Position{}
	}
	return f.last()
}

// waitTail waits until the hub's tail has reached p.
func (f *hubFixture) waitTail(t *testing.T, p repository.Position) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	poll := time.NewTicker(2 * time.Millisecond)
	defer poll.Stop()
	for f.hub.Head().Less(p) {
		select {
		case <-poll.C:
		case <-deadline:
			t.Fatalf("the hub's tail is stuck at %v, short of %v", f.hub.Head(), p)
		}
	}
}

// subscribe subscribes from after, with nothing to wait for before
// CaughtUp.
func subscribe(h *Hub, userID string, after repository.Position) *Subscription {
	return h.Subscribe(userID, after, repository.Position{})
}

// collect reads n durable events from sub, as the SSE handler does
// (Ready, Take, handing the last slice back, Received), checking that each
// comes after the one before, and returns their positions.
func collect(t *testing.T, sub *Subscription, after repository.Position, n int) []repository.Position {
	t.Helper()
	deadline := time.After(30 * time.Second)
	var got []repository.Position
	var taken []*Event
	for len(got) < n {
		select {
		case <-sub.Ready():
			taken = sub.Take(taken[:0])
			for _, ev := range taken {
				if !ev.Durable() {
					continue
				}
				if !after.Less(ev.Pos) || ev.ID != ev.Pos.String() {
					t.Errorf("event %s (%v) after %v", ev.ID, ev.Pos, after)
					return got
				}
				after = ev.Pos
				got = append(got, ev.Pos)
			}
			sub.Received()
		case <-sub.Done():
			t.Errorf("subscription ended after %d of %d events: %v", len(got), n, sub.Err())
			return got
		case <-deadline:
			t.Errorf("stuck at %v after %d of %d events", after, len(got), n)
			return got
		}
	}
	return got
}

// next returns the next durable event of sub.
func next(t *testing.T, sub *Subscription) *Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case <-sub.Ready():
			for _, ev := range sub.Take(nil) {
				if ev.Durable() {
					// Tests that use next read one event at a time.
					return ev
				}
			}
		case <-sub.Done():
			t.Fatalf("subscription ended: %v", sub.Err())
		case <-deadline:
			t.Fatal("no event")
		}
	}
}

// expectStream reads exactly the events at want from sub, in order, and
// then checks nothing else is queued.
func expectStream(t *testing.T, name string, sub *Subscription, want []repository.Position) {
	t.Helper()
	got := collect(t, sub, repository.Position{}, len(want))
	if !slices.Equal(got, want) {
		t.Errorf("%s got %v, want %v", name, got, want)
	}
	for _, ev := range sub.Take(nil) {
		if ev.Durable() {
			t.Errorf("%s got %s %s past what it should", name, ev.Type, ev.ID)
		}
	}
}

// TestHubSubscribersJoiningUnderLoad: while a writer keeps committing,
// subscribers join from cursors far older than the ring (they read their
// stream from the database first), from cursors within it and from the
// head, with small buffers and pages; each gets every event after its
// cursor once, in order, with no gap where catching up meets the live
// tail.
func TestHubSubscribersJoiningUnderLoad(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f := newHubFixture(t, dialect, HubConfig{Buffer: 8, Page: 16, Ring: 32, SlowAfter: time.Minute}, 3)
			// A history longer than the ring.
			before := []repository.Position{f.created}
			for i := range 100 {
				before = append(before, f.send(t, fmt.Sprint("before ", i)))
			}
			f.waitTail(t, before[100])
			f.hub.mu.Lock()
			floor := f.hub.ringFloor
			f.hub.mu.Unlock()
			if !before[50].Less(floor) {
				t.Fatalf("the ring reaches back to %v: the test needs it shorter", floor)
			}

			const n = 300
			var wg sync.WaitGroup
			// The writer's last message; wrote is closed once it is set.
			var final repository.Position
			wrote := make(chan struct{})
			wg.Go(func() {
				defer close(wrote)
				for i := range n {
					final = f.send(t, fmt.Sprint(i))
				}
			})
			type result struct {
				from repository.Position
				got  []repository.Position
			}
			results := make([]result, 14)
			for i := range results {
				user := f.users[i%len(f.users)]
				wg.Go(func() {
					var from repository.Position
					switch {
					case i == 0: // from the very start
					case i < 12:
						from = before[(i-1)*9]
					default: // from the head, whatever it is by then
						from = f.hub.Head()
					}
					sub := subscribe(f.hub, user, from)
					defer sub.Close()
					results[i] = result{from, collectUntil(t, sub, from, wrote, &final)}
				})
			}
			wg.Wait()
			for i, r := range results {
				if want := f.after(r.from); !slices.Equal(r.got, want) {
					t.Errorf("subscriber %d from %v: got %d events, want %d", i, r.from, len(r.got), len(want))
				}
			}
		})
	}
}

// collectUntil collects from sub, as the SSE handler does (Ready, Take,
// handing the last slice back, Received), checking each event comes after
// the one before, until it has the one at *final, set when done is closed.
func collectUntil(t *testing.T, sub *Subscription, after repository.Position, done <-chan struct{}, final *repository.Position) []repository.Position {
	t.Helper()
	deadline := time.After(60 * time.Second)
	var got []repository.Position
	var last *repository.Position
	var taken []*Event
	for last == nil || after.Less(*last) {
		select {
		case <-done:
			last, done = final, nil
		case <-sub.Ready():
			taken = sub.Take(taken[:0])
			for _, ev := range taken {
				if !ev.Durable() {
					continue
				}
				if !after.Less(ev.Pos) {
					t.Errorf("event %v after %v", ev.Pos, after)
					return got
				}
				after = ev.Pos
				got = append(got, ev.Pos)
			}
			sub.Received()
		case <-sub.Done():
			t.Errorf("subscription ended: %v", sub.Err())
			return got
		case <-deadline:
			t.Errorf("stuck at %v", after)
			return got
		}
	}
	return got
}

// TestHubFollowsMembership: a subscribed user added to a conversation gets
// its events from their member.joined on, and one added by a new
// conversation from its conversation.created; a user removed gets their
// member.left and nothing more of that conversation.
func TestHubFollowsMembership(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			// users 0 and 1 are in the group; user 2 is not, yet.
			f := newHubFixture(t, dialect, HubConfig{Buffer: 64, Page: 16, Ring: 64, SlowAfter: time.Minute}, 2)
			ctx := context.Background()
			u, err := f.store.CreateUser(ctx, "newcomer", "N", "x")
			if err != nil {
				t.Fatal(err)
			}
			ann, ben, cat := f.users[0], f.users[1], u.ID
			benSub := subscribe(f.hub, ben, f.created)
			defer benSub.Close()
			catSub := subscribe(f.hub, cat, f.created)
			defer catSub.Close()
			for _, sub := range []*Subscription{benSub, catSub} {
				select {
				case <-sub.CaughtUp():
				case <-time.After(20 * time.Second):
					t.Fatal("a subscription never went live")
				}
			}

			m1 := f.send(t, "before cat")
			if _, err := f.store.AddMember(ctx, ann, f.conv, cat, 10); err != nil {
				t.Fatal(err)
			}
			catJoined := f.last()
			m2 := f.send(t, "with cat")
			if err := f.store.RemoveMember(ctx, ann, f.conv, ben); err != nil {
				t.Fatal(err)
			}
			benLeft := f.last()
			m3 := f.send(t, "without ben")
			// A new conversation of ann and ben: ben is in it from its
			// conversation.created, cat is not.
			g2, err := f.store.CreateGroup(ctx, ann, []string{ben}, nil, 10)
			if err != nil {
				t.Fatal(err)
			}
			created2 := f.last()
			m4 := f.sendIn(t, ann, g2.ID, "in the new group")
			m5 := f.send(t, "last")

			expectStream(t, "ben", benSub, []repository.Position{m1, catJoined, m2, benLeft, created2, m4})
			expectStream(t, "cat", catSub, []repository.Position{catJoined, m2, benLeft, m3, m5})

			// A subscriber of ben's that starts now, from before he left,
			// reads the same from the ring.
			late := subscribe(f.hub, ben, m1)
			defer late.Close()
			expectStream(t, "ben from the ring", late, []repository.Position{catJoined, m2, benLeft, created2, m4})
		})
	}
}

// TestHubDisconnectsSlowConsumer: a subscriber that stops reading is ended
// with ErrSlowConsumer, and another subscriber of the same user keeps up.
func TestHubDisconnectsSlowConsumer(t *testing.T) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 4, Page: 16, Ring: 64, SlowAfter: 200 * time.Millisecond}, 2)
	slow := subscribe(f.hub, f.users[1], f.created)
	fast := subscribe(f.hub, f.users[1], f.created)
	defer fast.Close()
	done := make(chan []repository.Position)
	go func() { done <- collect(t, fast, f.created, 40) }()
	for i := range 40 {
		f.send(t, fmt.Sprint(i))
	}
	if got := <-done; !slices.Equal(got, f.after(f.created)) {
		t.Fatalf("the fast subscriber got %d of 40 events", len(got))
	}
	select {
	case <-slow.Done():
		if slow.Err() != ErrSlowConsumer {
			t.Fatalf("ended with %v", slow.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow subscriber was never disconnected")
	}
	if fast.Err() != nil {
		t.Fatalf("the fast subscriber ended too: %v", fast.Err())
	}
}

// TestHubShutdownEndsSubscriptions: close ends every subscription, live or
// still catching up, and refuses new ones.
func TestHubShutdownEndsSubscriptions(t *testing.T) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 4, Page: 16, Ring: 64, SlowAfter: time.Minute}, 2)
	live := subscribe(f.hub, f.users[0], f.created)
	<-live.CaughtUp()
	behind := subscribe(f.hub, f.users[1], repository.Position{})
	f.hub.close()
	for _, sub := range []*Subscription{live, behind} {
		select {
		case <-sub.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("a subscription outlived the hub")
		}
		if sub.Err() != ErrShutdown {
			t.Fatalf("ended with %v", sub.Err())
		}
	}
	late := subscribe(f.hub, f.users[0], f.created)
	<-late.Done()
	if late.Err() != ErrShutdown {
		t.Fatalf("late subscription: %v", late.Err())
	}
}

// TestHubReadsUpToTheHighestDoorbell: one read serves every event committed
// by then, whoever rang for it (this node's writes, other nodes'
// doorbells), and a doorbell for a position not readable yet has the hub
// read again soon, not on the safety poll.
func TestHubReadsUpToTheHighestDoorbell(t *testing.T) {
	store := dbtest.Open(t, "sqlite")
	ctx := context.Background()
	a, _ := store.CreateUser(ctx, "a", "A", "x")
	b, _ := store.CreateUser(ctx, "b", "B", "x")
	conv, err := store.CreateGroup(ctx, a.ID, []string{b.ID}, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	var committed []repository.LogEvent
	store.OnCommit(func(evs []repository.LogEvent) { committed = append(committed, evs...) })
	h := newHub(store, quietLog(), NewMetrics(nil), HubConfig{Buffer: 16, Page: 16, Ring: 16, SlowAfter: time.Minute})
	if err := h.start(ctx); err != nil {
		t.Fatal(err)
	}
	sub := subscribe(h, b.ID, h.Head())
	select {
	case <-sub.CaughtUp():
	case <-time.After(10 * time.Second):
		t.Fatal("the subscription never went live")
	}
	for range 2 {
		if _, _, err := store.SendMessage(ctx, a.ID, conv.ID, "m", nil); err != nil {
			t.Fatal(err)
		}
	}
	h.Ring(committed[0].Position()) // from another node
	h.Committed(committed[1:2])     // from this node
	h.Ring(committed[1].Position()) // from another node, again
	if backoff := h.dispatch(ctx, 0); backoff != 0 {
		t.Fatalf("a read that got everything rung for backs off %v", backoff)
	}
	var got []repository.Position
	for _, ev := range sub.Take(nil) {
		got = append(got, ev.Pos)
	}
	if want := []repository.Position{committed[0].Position(), committed[1].Position()}; !slices.Equal(got, want) {
		t.Fatalf("one read handed over %v, want %v", got, want)
	}

	// A doorbell ahead of what is readable: the hub reads again shortly.
	for len(h.wake) > 0 {
		<-h.wake
	}
	ahead := committed[1].Position()
	ahead.ID += 1000
	h.Ring(ahead)
	<-h.wake
	if backoff := h.dispatch(ctx, 0); backoff <= 0 {
		t.Fatalf("no retry scheduled for a doorbell ahead of the log (backoff %v)", backoff)
	}
	select {
	case <-h.wake:
	case <-time.After(5 * time.Second):
		t.Fatal("the hub did not try again")
	}
	h.retry.Stop()
}

// TestHubForgetsClosedSubscribers: a subscription closed before its user's
// spans were loaded leaves nothing behind; the index the tail hands events
// through holds only users with subscribers.
func TestHubForgetsClosedSubscribers(t *testing.T) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 16, Page: 16, Ring: 64, SlowAfter: time.Minute}, 3)
	for range 50 {
		subscribe(f.hub, f.users[1], f.created).Close()
	}
	stayed := subscribe(f.hub, f.users[2], f.created)
	defer stayed.Close()
	<-stayed.CaughtUp()
	stale := func() (n int) {
		f.hub.mu.Lock()
		defer f.hub.mu.Unlock()
		for _, users := range f.hub.convs {
			for u := range users {
				if f.hub.users[u.id] != u {
					n++
				}
			}
		}
		return n
	}
	// The closed subscriptions' loads may still be finishing.
	deadline := time.After(10 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for stale() > 0 {
		select {
		case <-poll.C:
		case <-deadline:
			t.Fatalf("%d users without subscribers stay in the index", stale())
		}
	}
	// And the one left still gets its events.
	m := f.send(t, "still here")
	if ev := next(t, stayed); ev.Pos != m {
		t.Fatalf("got %v, want %v", ev.Pos, m)
	}
}

// TestHubMembershipChurn attacks invariant 2 of docs/ARCHITECTURE.md on the hub: while a
// user is added to and removed from a group over and over and messages keep
// coming, subscribers of theirs start from all sorts of cursors (far back,
// recent, the head) on a hub with a short ring. Each gets exactly the
// user's stream as the database derives it (repository.UserEvents): the
// events of their membership spans, each once, in order.
func TestHubMembershipChurn(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f := newHubFixture(t, dialect, HubConfig{Buffer: 8, Page: 8, Ring: 16, SlowAfter: time.Minute}, 2)
			ctx := context.Background()
			u, err := f.store.CreateUser(ctx, "churn", "C", "x")
			if err != nil {
				t.Fatal(err)
			}
			ann, churn := f.users[0], u.ID
			var final repository.Position
			wrote := make(chan struct{})
			// Subscriber i starts once the writer is at step 12*i.
			steps := make([]chan struct{}, 16)
			for i := range steps {
				steps[i] = make(chan struct{})
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				defer close(wrote)
				in := false
				for i := range 200 {
					if i%12 == 0 && i/12 < len(steps) {
						close(steps[i/12])
					}
					f.send(t, fmt.Sprint(i))
					if i%4 == 0 {
						var err error
						if in {
							err = f.store.RemoveMember(ctx, ann, f.conv, churn)
						} else {
							_, err = f.store.AddMember(ctx, ann, f.conv, churn, 10)
						}
						if err != nil {
							t.Error(err)
							return
						}
						in = !in
					}
				}
				if !in {
					if _, err := f.store.AddMember(ctx, ann, f.conv, churn, 10); err != nil {
						t.Error(err)
					}
				}
				final = f.send(t, "last")
			})
			type result struct {
				user string
				from repository.Position
				got  []repository.Position
			}
			results := make([]result, 16)
			for i := range results {
				wg.Go(func() {
					user := churn
					if i%4 == 3 {
						user = f.users[1]
					}
					// Start at different moments of the churn.
					<-steps[i]
					var from repository.Position
					switch i % 3 {
					case 0: // from the start
					case 1:
						from = f.hub.Head()
					case 2:
						if evs := f.after(repository.Position{}); len(evs) > 10 {
							from = evs[len(evs)/2]
						}
					}
					sub := subscribe(f.hub, user, from)
					defer sub.Close()
					results[i] = result{user, from, collectUntil(t, sub, from, wrote, &final)}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			for i, r := range results {
				want, err := f.store.UserEvents(ctx, r.user, r.from, final, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				var wantPos []repository.Position
				for _, ev := range want {
					wantPos = append(wantPos, ev.Position())
				}
				if !slices.Equal(r.got, wantPos) {
					t.Errorf("subscriber %d from %v: got %d events, the user's stream has %d", i, r.from, len(r.got), len(wantPos))
				}
			}
		})
	}
}

// TestHubSweepReadsWithoutDoorbell: an event whose doorbell was lost (or
// that another node committed while the listener was down) is read on the
// next Sweep.
func TestHubSweepReadsWithoutDoorbell(t *testing.T) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 16, Page: 16, Ring: 64, SlowAfter: time.Minute}, 2)
	sub := subscribe(f.hub, f.users[1], f.created)
	defer sub.Close()
	<-sub.CaughtUp()
	var lost []repository.LogEvent
	f.store.OnCommit(func(evs []repository.LogEvent) { lost = append(lost, evs...) })
	if _, _, err := f.store.SendMessage(context.Background(), f.users[0], f.conv, "unannounced", nil); err != nil {
		t.Fatal(err)
	}
	f.hub.Sweep()
	if ev := next(t, sub); ev.Pos != lost[0].Position() || string(ev.Data) != lost[0].Data {
		t.Fatalf("got %v %q, want %v", ev.Pos, ev.Data, lost[0].Position())
	}
}

// TestHubWaitsForAnOpenTransaction: on Postgres a transaction of this
// database still in progress may yet commit an event before this node's
// own committed ones; the hub hands nothing past it over, keeps trying
// without a doorbell, and once it ends hands everything over in position
// order, its event first.
func TestHubWaitsForAnOpenTransaction(t *testing.T) {
	f := newHubFixture(t, "postgres", HubConfig{Buffer: 16, Page: 16, Ring: 64, SlowAfter: time.Minute}, 2)
	ctx := context.Background()
	sub := subscribe(f.hub, f.users[1], f.created)
	defer sub.Close()
	<-sub.CaughtUp()

	tx, err := f.store.DB().DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // committed below
	var held repository.Position
	if err := tx.QueryRowContext(ctx, `INSERT INTO log (conversation_id, type, data, created_at)
		VALUES ($1, 'read', '{}', now()) RETURNING xid, id`, f.conv).Scan(&held.XID, &held.ID); err != nil {
		t.Fatal(err)
	}
	m := f.send(t, "after the open transaction began")
	// The head stays below it too (LogHead waits a moment for it first,
	// time in which the hub tries to read m at least once).
	if head, err := f.store.LogHead(ctx); err != nil || !head.Less(held) {
		t.Fatalf("head %v (%v) with a transaction open at %v", head, err, held)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	expectStream(t, "the subscriber", sub, []repository.Position{held, m})
}
