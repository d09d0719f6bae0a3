package events

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confab-chat/confab/repository"
)

// Hub delivers each user's durable events to the user's subscribers on this
// node, and ephemeral events as they come.
//
// Every subscriber has a cursor (the next seq it needs). Doorbells mark
// users dirty; one dispatcher goroutine reads, in one query per batch, the
// events after every distinct cursor of the dirty users, and hands each
// subscriber the contiguous run that starts at its cursor. Backfill after
// subscribing and live delivery are the same path, so there is no window
// between them, and since a user's seqs commit in order a run read after
// seq n is gap-free. A subscriber whose buffer is full simply stops
// advancing ("behind"); it is re-read once it drains, and disconnected if it
// stays behind for longer than slowAfter. The lock is never held across
// I/O and sends never block.
type Hub struct {
	store     *repository.Store
	log       *slog.Logger
	metrics   *Metrics
	bufSize   int
	pageSize  int
	slowAfter time.Duration

	wake chan struct{}

	mu      sync.Mutex
	users   map[string]map[*Subscription]struct{}
	pending map[string]int64 // user -> lowest seq rung (0: check every subscriber)
	closed  bool
}

// HubConfig tunes a Hub.
type HubConfig struct {
	// Buffer is each subscriber's queue length.
	Buffer int
	// Page bounds the events read per cursor per dispatch.
	Page int
	// SlowAfter is how long a subscriber may stay behind before it is
	// disconnected (it resumes from its cursor).
	SlowAfter time.Duration
}

func newHub(store *repository.Store, log *slog.Logger, m *Metrics, cfg HubConfig) *Hub {
	return &Hub{
		store: store, log: log, metrics: m,
		bufSize: cfg.Buffer, pageSize: cfg.Page, slowAfter: cfg.SlowAfter,
		wake:    make(chan struct{}, 1),
		users:   map[string]map[*Subscription]struct{}{},
		pending: map[string]int64{},
	}
}

// Subscription is one stream's or poller's view of a user's events.
//
// A subscription queues in one of two ways. A poll's (Subscribe) is a
// channel of the hub's buffer size, read through Events. A stream's
// (SubscribeStream) is a slice that holds only what is pending, read
// through Ready and Take: a stream lives for hours and is idle nearly all
// of that time, and a channel of 256 pointers is 2 KB that each of ten
// thousand idle streams would keep for nothing. Either way the events are
// shared with the user's other subscribers: read only.
type Subscription struct {
	UserID string

	hub  *Hub
	c    chan *Event // poll mode; nil in stream mode
	done chan struct{}
	err  error // set before done is closed

	// Stream mode. Events are appended under hub.mu and qmu, and taken
	// under qmu alone, so a stream draining its queue never waits for the
	// hub's lock. ready holds a token whenever q may be non-empty.
	qmu   sync.Mutex
	q     []*Event
	ready chan struct{}

	behind atomic.Bool
	// Guarded by hub.mu.
	next        int64
	behindSince time.Time
	ended       bool
}

// Events delivers the subscriber's events: durable ones in seq order, each
// once, starting after the cursor given to Subscribe. It is nil for a
// subscription made by SubscribeStream (use Ready and Take).
func (s *Subscription) Events() <-chan *Event { return s.c }

// Ready receives when events may be waiting for Take (stream mode only).
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take returns the events queued since the last Take, in order (durable
// ones in seq order, each once, starting after the cursor given to
// SubscribeStream), and leaves spare, emptied, as the queue: a consumer
// that hands back a small slice it is done with queues the next events
// without allocating. It may return none. Stream mode only.
func (s *Subscription) Take(spare []*Event) []*Event {
	s.qmu.Lock()
	out := s.q
	s.q = spare[:0]
	s.qmu.Unlock()
	return out
}

// queued is how many events wait for the consumer.
func (s *Subscription) queued() int {
	if s.c != nil {
		return len(s.c)
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return len(s.q)
}

// push queues ev unless bufSize events already wait; hub.mu is held.
func (s *Subscription) push(ev *Event, bufSize int) bool {
	if s.c != nil {
		select {
		case s.c <- ev:
			return true
		default:
			return false
		}
	}
	s.qmu.Lock()
	if len(s.q) >= bufSize {
		s.qmu.Unlock()
		return false
	}
	s.q = append(s.q, ev)
	s.qmu.Unlock()
	// After the append: a consumer woken by this token (or by one already
	// there) takes ev.
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return true
}

// Done is closed when the hub ends the subscription; Err says why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is ErrSlowConsumer or ErrShutdown once Done is closed.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Received tells the hub the consumer has drained events, so a subscriber
// that fell behind gets the rest.
func (s *Subscription) Received() {
	if s.behind.Load() && s.queued() <= s.hub.bufSize/2 {
		s.hub.ring(s.UserID, 0)
	}
}

// Close ends the subscription.
func (s *Subscription) Close() { s.hub.remove(s, nil) }

// Subscribe starts delivering userID's events after seq `after`, through
// Events.
func (h *Hub) Subscribe(userID string, after int64) *Subscription {
	return h.subscribe(&Subscription{c: make(chan *Event, h.bufSize)}, userID, after)
}

// SubscribeStream is Subscribe for a long-lived consumer: the events come
// through Ready and Take, and the queue holds memory only while events
// wait in it.
func (h *Hub) SubscribeStream(userID string, after int64) *Subscription {
	return h.subscribe(&Subscription{ready: make(chan struct{}, 1)}, userID, after)
}

// SubscribeStream starts delivering userID's events after seq `after` to a
// stream: see Hub.SubscribeStream.
func (b *Broker) SubscribeStream(userID string, after int64) *Subscription {
	return b.hub.SubscribeStream(userID, after)
}

func (h *Hub) subscribe(s *Subscription, userID string, after int64) *Subscription {
	s.UserID, s.hub, s.done, s.next = userID, h, make(chan struct{}), after+1
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		s.err, s.ended = ErrShutdown, true
		close(s.done)
		return s
	}
	subs := h.users[userID]
	if subs == nil {
		subs = map[*Subscription]struct{}{}
		h.users[userID] = subs
	}
	subs[s] = struct{}{}
	h.markLocked(userID, 0)
	h.mu.Unlock()
	h.poke()
	return s
}

func (h *Hub) remove(s *Subscription, why error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(s, why)
}

func (h *Hub) removeLocked(s *Subscription, why error) {
	if s.ended {
		return
	}
	s.ended = true
	s.err = why
	close(s.done)
	if subs := h.users[s.UserID]; subs != nil {
		delete(subs, s)
		if len(subs) == 0 {
			delete(h.users, s.UserID)
			delete(h.pending, s.UserID)
		}
	}
}

// Ring marks users as having new events up to the pointers' seqs. Users
// without local subscribers are ignored.
//
// A pointer that carries its event (this node wrote it) goes straight to
// every subscriber whose cursor it continues: no read, the common case of
// live streams. Any other subscriber is marked for the dispatcher, which
// reads what it misses; a subscriber takes only the seq it needs next, so
// the two paths can race without gap or repeat.
func (h *Hub) Ring(ptrs []repository.Pointer) {
	if len(ptrs) == 0 {
		return
	}
	read := false
	h.mu.Lock()
	for _, p := range ptrs {
		subs, ok := h.users[p.UserID]
		if !ok {
			continue
		}
		ev := &Event{Seq: p.Seq, Type: p.Type, Data: json.RawMessage(p.Data), At: p.CreatedAt}
		for s := range subs {
			if p.Data != nil && s.next == p.Seq && !s.behind.Load() && h.offerLocked(s, ev) {
				continue
			}
			if s.next <= p.Seq || s.behind.Load() {
				h.markLocked(p.UserID, p.Seq)
				read = true
			}
		}
	}
	h.mu.Unlock()
	if read {
		h.poke()
	}
}

// Sweep re-checks every local subscriber against the stream heads in the
// database: after a listener (re)connect, when doorbells may have been
// lost, and on the safety poll. Only users whose head moved past a
// subscriber's cursor are read.
func (h *Hub) Sweep(ctx context.Context) {
	users := h.Users()
	if len(users) == 0 {
		return
	}
	heads, err := h.store.StreamHeads(ctx, users)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn("hub: sweep", slog.Any("err", err))
		}
		return
	}
	ptrs := make([]repository.Pointer, 0, len(heads))
	for u, seq := range heads {
		ptrs = append(ptrs, repository.Pointer{UserID: u, Seq: seq})
	}
	h.Ring(ptrs)
}

func (h *Hub) ring(userID string, seq int64) {
	h.mu.Lock()
	if _, ok := h.users[userID]; ok {
		h.markLocked(userID, seq)
	}
	h.mu.Unlock()
	h.poke()
}

// markLocked records that userID has events up to seq (0: unknown, check
// every subscriber). The highest seq wins: a subscriber needs a read when
// its cursor is below any of the events rung.
func (h *Hub) markLocked(userID string, seq int64) {
	if old, ok := h.pending[userID]; !ok || seq == 0 || (old != 0 && seq > old) {
		h.pending[userID] = seq
	}
}

func (h *Hub) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Users returns the users with local subscribers.
func (h *Hub) Users() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.users))
	for u := range h.users {
		out = append(out, u)
	}
	return out
}

// Publish hands an ephemeral event to the local subscribers of users. It
// is best effort: a full buffer drops it.
func (h *Hub) Publish(users []string, event Event) {
	ev := &event
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range users {
		for s := range h.users[u] {
			s.push(ev, h.bufSize)
		}
	}
}

// run dispatches until ctx ends.
func (h *Hub) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
			h.dispatch(ctx)
		case <-tick.C:
			h.dropSlow()
		}
	}
}

type cursorKey struct {
	user  string
	after int64
}

func (h *Hub) dispatch(ctx context.Context) {
	h.mu.Lock()
	if len(h.pending) == 0 {
		h.mu.Unlock()
		return
	}
	pending := h.pending
	h.pending = map[string]int64{}
	keys := map[cursorKey]struct{}{}
	for u, seq := range pending {
		for s := range h.users[u] {
			// A subscriber already past the rung seq, and not behind, has
			// nothing new from this doorbell.
			if seq == 0 || s.next <= seq || s.behind.Load() {
				keys[cursorKey{u, s.next - 1}] = struct{}{}
			}
		}
	}
	h.mu.Unlock()
	if len(keys) == 0 {
		return
	}

	cursors := make([]repository.Cursor, 0, len(keys))
	for k := range keys {
		cursors = append(cursors, repository.Cursor{UserID: k.user, After: k.after})
	}
	rows, err := h.store.EventsAfterCursors(ctx, cursors, h.pageSize)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn("hub: read events", slog.Any("err", err))
			// Try again shortly; the doorbells are not lost.
			h.mu.Lock()
			for u, seq := range pending {
				if _, ok := h.users[u]; ok {
					h.markLocked(u, seq)
				}
			}
			h.mu.Unlock()
			time.AfterFunc(time.Second, h.poke)
		}
		return
	}
	byUser := map[string][]*Event{}
	for _, r := range rows {
		byUser[r.UserID] = append(byUser[r.UserID], &Event{Seq: r.Seq, Type: r.Type, Data: r.RawData(), At: r.CreatedAt})
	}
	more := false
	h.mu.Lock()
	for u, evs := range byUser {
		for s := range h.users[u] {
			if _, own := keys[cursorKey{u, s.next - 1}]; own && evs[len(evs)-1].Seq >= s.next && !hasSeq(evs, s.next) {
				// The rows right after s's cursor were read and are gone:
				// retention pruned them. s must reset, not wait.
				h.removeLocked(s, ErrPruned)
				continue
			}
			if h.deliverLocked(s, evs) {
				h.markLocked(u, 0)
				more = true
			}
		}
	}
	h.mu.Unlock()
	if more {
		h.poke()
	}
}

// deliverLocked hands s the run of evs (sorted, possibly from several
// cursors) that starts at s.next. It reports whether s needs another read:
// the run went past what evs hold.
func (h *Hub) deliverLocked(s *Subscription, evs []*Event) (again bool) {
	delivered := false
	for _, ev := range evs {
		if ev.Seq < s.next {
			continue
		}
		if ev.Seq > s.next {
			// This window started past s's cursor; s needs its own read.
			return true
		}
		if !h.offerLocked(s, ev) {
			return false // re-read when the consumer drains (Received)
		}
		delivered = true
	}
	if delivered && s.behind.Load() && s.queued() < h.bufSize {
		s.behind.Store(false)
		s.behindSince = time.Time{}
	}
	// A full page may have more after it.
	return len(evs) > 0 && evs[len(evs)-1].Seq == s.next-1 && len(evs) >= h.pageSize
}

// hasSeq reports whether evs (sorted by seq) holds seq.
func hasSeq(evs []*Event, seq int64) bool {
	_, found := slices.BinarySearchFunc(evs, seq, func(e *Event, seq int64) int { return cmp.Compare(e.Seq, seq) })
	return found
}

// offerLocked queues ev, the event s needs next, without blocking. A full
// buffer marks s behind instead.
func (h *Hub) offerLocked(s *Subscription, ev *Event) bool {
	if s.push(ev, h.bufSize) {
		s.next++
		return true
	}
	if !s.behind.Load() {
		s.behind.Store(true)
		s.behindSince = time.Now()
	}
	return false
}

// dropSlow disconnects subscribers that stayed behind too long.
func (h *Hub) dropSlow() {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, subs := range h.users {
		for s := range subs {
			if s.behind.Load() && !s.behindSince.IsZero() && now.Sub(s.behindSince) > h.slowAfter {
				h.removeLocked(s, ErrSlowConsumer)
				h.metrics.SlowDisconnects.Inc()
			}
		}
	}
}

// close ends every subscription (shutdown) and refuses new ones.
func (h *Hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, subs := range h.users {
		for s := range subs {
			h.removeLocked(s, ErrShutdown)
		}
	}
}
