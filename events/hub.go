package events

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/confab-chat/confab/repository"
)

// Hub delivers the log's events to this node's subscribers.
//
// The hub tails the log: one read per batch for the whole node, in position
// order, from the last position it read (its tail). It hands each event to
// the local users who were members of its conversation at its position,
// found through an in-memory index of conversation -> local users that the
// membership events in the log keep true, and keeps the last Ring events
// read, so that a subscriber resuming from a recent cursor catches up from
// memory. A subscriber resuming from further back reads its own stream from
// the database (repository.UserEvents) until the ring covers its cursor.
// Live delivery and catching up meet in the ring under the hub's lock, so
// no event falls between them and none is handed over twice.
//
// A subscriber whose buffer is full falls back to catching up once it
// drains, and is disconnected if it stays behind for longer than SlowAfter.
// The lock is never held across I/O and sends never block.
type Hub struct {
	store   *repository.Store
	log     *slog.Logger
	metrics *Metrics
	cfg     HubConfig

	wake  chan struct{}
	retry *time.Timer // re-reads when a known event is not readable yet

	mu sync.Mutex
	// tail is the position of the last event read; every event up to it is
	// in the ring, from ringFloor (excluded) on.
	tail      repository.Position
	ring      []*Event
	ringFloor repository.Position
	// own holds this node's committed events, by log id, until the tail
	// reaches them: they are handed over as committed, not read back.
	own map[int64]*Event
	// want is the highest position known to be committed (own events and
	// other nodes' doorbells); the hub keeps reading until it gets there.
	want  repository.Position
	users map[string]*user
	convs map[string]map[*user]struct{} // conversation -> local users with an open span
	// waiting are live subscriptions whose until the tail has not reached.
	waiting map[*Subscription]struct{}
	// subscribed counts subscriptions ever made: their order.
	subscribed uint64
	closed     bool
}

// HubConfig tunes a Hub.
type HubConfig struct {
	// Buffer is each subscriber's queue length.
	Buffer int
	// Page bounds the events read per query.
	Page int
	// Ring is how many recent events the hub keeps for subscribers that
	// catch up.
	Ring int
	// SlowAfter is how long a subscriber may stay behind before it is
	// disconnected (it resumes from its cursor).
	SlowAfter time.Duration
	// MaxPerUser bounds one user's streams and waiting polls on this node
	// (0: no bound); a new one beyond it ends the user's oldest, which
	// would resume from its cursor if its client still wanted it.
	MaxPerUser int
}

func newHub(store *repository.Store, log *slog.Logger, m *Metrics, cfg HubConfig) *Hub {
	h := &Hub{
		store: store, log: log, metrics: m, cfg: cfg,
		wake:    make(chan struct{}, 1),
		own:     map[int64]*Event{},
		users:   map[string]*user{},
		convs:   map[string]map[*user]struct{}{},
		waiting: map[*Subscription]struct{}{},
	}
	h.retry = time.AfterFunc(time.Hour, h.poke)
	h.retry.Stop()
	return h
}

// start sets where the hub begins tailing: the head of the log.
func (h *Hub) start(ctx context.Context) error {
	head, err := h.store.LogHead(ctx)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.tail, h.ringFloor = head, head
	h.mu.Unlock()
	return nil
}

// Head is the position of the last event the hub has read: where a
// subscriber without a cursor starts.
func (h *Hub) Head() repository.Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tail
}

// Subscribe starts delivering userID's events after the position `after`
// (see Subscription). CaughtUp is closed once the tail has read up to until
// (known to be committed) and the subscription has everything up to there.
func (h *Hub) Subscribe(userID string, after, until repository.Position) *Subscription {
	s := &Subscription{
		UserID: userID, hub: h, cursor: after, until: until,
	}
	h.mu.Lock()
	if h.closed {
		s.ended = true
		s.end(ErrShutdown)
		h.mu.Unlock()
		return s
	}
	u := h.users[userID]
	if u == nil {
		u = &user{id: userID, subs: map[*Subscription]struct{}{}}
		h.users[userID] = u
	}
	u.subs[s] = struct{}{}
	h.subscribed++
	s.u, s.catching, s.order = u, true, h.subscribed
	if h.cfg.MaxPerUser > 0 && len(u.subs) > h.cfg.MaxPerUser {
		var oldest *Subscription
		for o := range u.subs {
			if oldest == nil || o.order < oldest.order {
				oldest = o
			}
		}
		h.removeLocked(oldest, ErrTooMany)
		h.metrics.Evicted.Inc()
	}
	h.mu.Unlock()
	go h.catchUp(s)
	return s
}

// maxOwn bounds the own events the hub holds until the tail reaches them.
const maxOwn = 10000

// Committed takes the events a transaction on this node just committed:
// they are handed to subscribers when the tail reaches their positions,
// which it does without reading their data back.
func (h *Hub) Committed(evs []repository.LogEvent) {
	h.mu.Lock()
	for i := range evs {
		ev := newEvent(&evs[i])
		// Past maxOwn (the tail is held back: a long transaction), the
		// rest are read back with their data like anyone's.
		if h.tail.Less(ev.Pos) && len(h.own) < maxOwn {
			h.own[evs[i].ID] = ev
			if h.want.Less(ev.Pos) {
				h.want = ev.Pos
			}
		}
	}
	h.mu.Unlock()
	h.poke()
}

// Ring tells the hub that events up to p are committed (a doorbell from
// another node; the zero position when unknown).
func (h *Hub) Ring(p repository.Position) {
	h.mu.Lock()
	if h.want.Less(p) {
		h.want = p
	}
	h.mu.Unlock()
	h.poke()
}

func (h *Hub) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run tails the log until ctx ends.
func (h *Hub) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	defer h.retry.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
			backoff = h.dispatch(ctx, backoff)
		case <-tick.C:
			h.dropSlow()
		}
	}
}

// dispatch reads the log after the tail and hands out what it read. When an
// event known to be committed is not readable yet (a transaction before it
// is still in progress), it tries again after backoff, which grows while
// the wait lasts.
func (h *Hub) dispatch(ctx context.Context, backoff time.Duration) time.Duration {
	h.mu.Lock()
	after := h.tail
	known := make([]int64, 0, len(h.own))
	for id := range h.own {
		known = append(known, id)
	}
	h.mu.Unlock()

	rows, err := h.store.ReadLog(ctx, after, h.cfg.Page, known)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn("hub: read the log", slog.Any("err", err))
			h.retry.Reset(time.Second)
		}
		return backoff
	}
	h.mu.Lock()
	for i := range rows {
		r := &rows[i]
		ev := h.own[r.ID]
		if ev != nil {
			delete(h.own, r.ID)
		} else {
			ev = newEvent(r)
		}
		h.handLocked(ev)
	}
	for s := range h.waiting {
		h.caughtUpLocked(s)
	}
	behind := h.tail.Less(h.want)
	h.mu.Unlock()
	switch {
	case len(rows) == h.cfg.Page:
		h.poke() // a full page: there may be more
		return 0
	case behind:
		backoff = min(max(2*backoff, 2*time.Millisecond), time.Second)
		h.retry.Reset(backoff)
		return backoff
	}
	return 0
}

// handLocked moves the tail to ev and hands it to every live subscriber of
// every local user who was a member of its conversation at its position.
func (h *Hub) handLocked(ev *Event) {
	h.applyMembershipLocked(ev, nil)
	h.tail = ev.Pos
	h.ring = append(h.ring, ev)
	if len(h.ring) >= 2*h.cfg.Ring {
		drop := len(h.ring) - h.cfg.Ring
		h.ringFloor = h.ring[drop-1].Pos
		n := copy(h.ring, h.ring[drop:])
		clear(h.ring[n:])
		h.ring = h.ring[:n]
	}
	for u := range h.convs[ev.conv] {
		if !u.member(ev) {
			continue
		}
		for s := range u.subs {
			if s.live && s.cursor.Less(ev.Pos) {
				h.offerLocked(s, ev)
			}
		}
	}
	// A member.left was handed to its subject too: now the index lets go.
	if ev.Type == repository.EventMemberLeft {
		for u := range h.convs[ev.conv] {
			h.indexLocked(u, ev.conv)
		}
	}
}

// offerLocked queues ev, the durable event s needs next, without blocking.
// A full buffer takes s off the live tail: it catches up once it drains.
func (h *Hub) offerLocked(s *Subscription, ev *Event) bool {
	if s.push(ev, h.cfg.Buffer) {
		s.cursor = ev.Pos
		return true
	}
	s.live = false // push marked s behind
	if s.behindSince.IsZero() {
		s.behindSince = time.Now()
	}
	return false
}

// Sweep has the hub read the log, whether or not a doorbell rang: after a
// listener (re)connect, when doorbells may have been lost, and on the
// safety poll.
func (h *Hub) Sweep() { h.poke() }

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
	s.end(why)
	delete(h.waiting, s)
	u := s.u
	delete(u.subs, s)
	if len(u.subs) == 0 && h.users[u.id] == u {
		delete(h.users, u.id)
		for conv := range u.spans {
			if users := h.convs[conv]; users != nil {
				delete(users, u)
				if len(users) == 0 {
					delete(h.convs, conv)
				}
			}
		}
	}
}

// Publish hands an ephemeral event to the local subscribers of users. It
// is best effort: a full buffer drops it.
func (h *Hub) Publish(users []string, event Event) {
	ev := &event
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range users {
		if u := h.users[id]; u != nil {
			for s := range u.subs {
				s.push(ev, h.cfg.Buffer)
			}
		}
	}
}

// dropSlow disconnects subscribers that stayed behind too long.
func (h *Hub) dropSlow() {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range h.users {
		for s := range u.subs {
			if !s.live && !s.behindSince.IsZero() && now.Sub(s.behindSince) > h.cfg.SlowAfter {
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
	for _, u := range h.users {
		for s := range u.subs {
			h.removeLocked(s, ErrShutdown)
		}
	}
}
