package events

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/confab-chat/confab/repository"
)

// Subscription is one stream's or long-poll's view of a user's events:
// durable ones in position order, each once, starting after the cursor
// given to Subscribe, and ephemeral ones as they come.
//
// Its queue is a slice that holds memory only while events wait in it, read
// through Ready and Take: a stream lives for hours and is idle nearly all
// of that time. The events are shared with the user's other subscribers:
// read only.
type Subscription struct {
	UserID string

	hub    *Hub
	u      *user
	done   chan struct{}
	err    error         // set before done is closed
	caught chan struct{} // see CaughtUp

	// Events are appended under hub.mu and qmu, and taken under qmu alone,
	// so a consumer draining its queue never waits for the hub's lock.
	// ready holds a token whenever q may be non-empty; a consumer that set
	// notify is called instead (see Notify).
	qmu    sync.Mutex
	q      []*Event
	ready  chan struct{}
	notify func()
	// behind: the hub stopped handing s events because its queue was full.
	behind atomic.Bool

	// Guarded by hub.mu. cursor is the position of the last durable event
	// queued (or the one it started after); live: the tail hands the
	// subscription its events; catching: a catchUp runs for it.
	order       uint64 // when it was made, among the hub's subscriptions
	cursor      repository.Position
	until       repository.Position
	live        bool
	catching    bool
	behindSince time.Time
	ended       bool
}

// Ready receives when events may be waiting for Take.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// CaughtUp is closed once the subscription has every event up to the
// position it was told had committed when it started (see Hub.Subscribe):
// what a poll waits for before it answers that nothing is new.
func (s *Subscription) CaughtUp() <-chan struct{} { return s.caught }

// Take returns the events queued since the last Take, in order, and leaves
// spare, emptied, as the queue: a consumer that hands back a small slice it
// is done with queues the next events without allocating. It may return
// none.
func (s *Subscription) Take(spare []*Event) []*Event {
	s.qmu.Lock()
	out := s.q
	s.q = spare[:0]
	s.qmu.Unlock()
	return out
}

// queued is how many events wait for the consumer.
func (s *Subscription) queued() int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return len(s.q)
}

// push queues ev unless bufSize events already wait; hub.mu is held. A
// durable event that does not fit marks s behind.
func (s *Subscription) push(ev *Event, bufSize int) bool {
	s.qmu.Lock()
	if len(s.q) >= bufSize {
		if ev.Durable() {
			// Under qmu: a consumer that takes the queue after this sees
			// behind in Received and has the hub resume it. (Set after
			// qmu, a consumer could drain in between and never say so.)
			s.behind.Store(true)
		}
		s.qmu.Unlock()
		return false
	}
	s.q = append(s.q, ev)
	notify := s.notify
	s.qmu.Unlock()
	// After the append: a consumer woken by this token (or by one already
	// there) takes ev.
	if notify != nil {
		notify()
		return true
	}
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return true
}

// Notify has f called whenever events are queued and when the
// subscription ends, instead of a token on Ready: a consumer with no
// goroutine of its own waiting (a stream served by a writer pool) is woken
// through it. f is called under the hub's lock and must not block; it is
// called at once if events already wait or the subscription has ended.
// Notify(nil) goes back to Ready; a call of f already under way may still
// come after it.
func (s *Subscription) Notify(f func()) {
	s.qmu.Lock()
	s.notify = f
	pending := len(s.q) > 0
	s.qmu.Unlock()
	if f == nil {
		return
	}
	select {
	case <-s.done:
		pending = true
	default:
	}
	if pending {
		f()
	}
}

// wake wakes a consumer that waits through Notify; hub.mu is held and
// done is closed.
func (s *Subscription) wake() {
	s.qmu.Lock()
	notify := s.notify
	s.qmu.Unlock()
	if notify != nil {
		notify()
	}
}

// Done is closed when the hub ends the subscription; Err says why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is ErrSlowConsumer, ErrTooMany or ErrShutdown (or the database error
// that kept it from starting) once Done is closed.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Received tells the hub the consumer has drained events, so a subscriber
// that fell behind catches up.
func (s *Subscription) Received() {
	if s.behind.Load() && s.queued() <= s.hub.cfg.Buffer/2 {
		s.hub.resume(s)
	}
}

// Close ends the subscription.
func (s *Subscription) Close() { s.hub.remove(s, nil) }
