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

	hub *Hub
	u   *user

	// Events are appended under hub.mu and qmu, and taken under qmu alone,
	// so a consumer draining its queue never waits for the hub's lock.
	// Once made, ready holds a token whenever q may be non-empty; a
	// consumer that set notify is called instead (see Notify).
	//
	// The channels a consumer selects on (ready, done, and caught below)
	// are made when it first asks for them: a stream served by a writer
	// pool is woken through notify and never asks, and three channels
	// would be a tenth of its memory.
	qmu    sync.Mutex
	q      []*Event
	ready  chan struct{}
	notify func()
	done   chan struct{} // closed once over is set
	over   atomic.Bool   // the hub ended s, for err; set under qmu
	err    error
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
	caught      chan struct{} // closed once caughtUp is set
	// caughtUp is set under hub.mu and read without it (isCaughtUp).
	caughtUp atomic.Bool
}

// closed stands for a channel asked for after it would have been closed.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// signal returns *c, made now if no one asked before; closed if what it
// signals has already happened (then no one will close *c). Its caller
// holds the lock under which *c is closed.
func signal(c *chan struct{}, happened bool) <-chan struct{} {
	if *c == nil {
		if happened {
			return closed
		}
		*c = make(chan struct{})
	}
	return *c
}

// Ready receives when events may be waiting for Take. A consumer that
// selects in a loop keeps the channel rather than asking each time.
func (s *Subscription) Ready() <-chan struct{} {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.ready == nil {
		s.ready = make(chan struct{}, 1)
		if len(s.q) > 0 {
			s.ready <- struct{}{} // queued before anyone asked
		}
	}
	return s.ready
}

// CaughtUp is closed once the subscription has every event up to the
// position it was told had committed when it started (see Hub.Subscribe):
// what a poll waits for before it answers that nothing is new.
func (s *Subscription) CaughtUp() <-chan struct{} {
	if s.isCaughtUp() { // a kept poll feed's every poll: no lock
		return closed
	}
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return signal(&s.caught, s.isCaughtUp())
}

// isCaughtUp reports whether CaughtUp is closed, without the hub's lock.
func (s *Subscription) isCaughtUp() bool { return s.caughtUp.Load() }

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
	notify, ready := s.notify, s.ready
	s.qmu.Unlock()
	// After the append: a consumer woken by this token (or by one already
	// there) takes ev. One that asks for Ready later finds a token there.
	if notify != nil {
		notify()
		return true
	}
	if ready != nil {
		select {
		case ready <- struct{}{}:
		default:
		}
	}
	return true
}

// Notify has f called whenever events are queued and when the
// subscription ends, instead of a token on Ready: a consumer with no
// goroutine of its own waiting (a stream served by a writer pool) is woken
// through it. f is called under the hub's lock and must not block; it is
// called at once if events already wait or the subscription has ended.
// Notify(nil) goes back to Ready, which holds no token for what was queued
// while f was set: the consumer takes the queue before it waits on Ready.
// A call of f already under way may still come after Notify(nil).
func (s *Subscription) Notify(f func()) {
	s.qmu.Lock()
	s.notify = f
	pending := len(s.q) > 0 || s.over.Load()
	s.qmu.Unlock()
	if f != nil && pending {
		f()
	}
}

// end tells the consumer the hub has ended s, for why: Done closes and a
// Notify func is called. hub.mu is held, and end is called once.
func (s *Subscription) end(why error) {
	s.qmu.Lock()
	s.err = why
	s.over.Store(true)
	done, notify := s.done, s.notify
	s.qmu.Unlock()
	if done != nil {
		close(done)
	}
	if notify != nil {
		notify()
	}
}

// Done is closed when the hub ends the subscription; Err says why. A
// consumer that selects in a loop keeps the channel rather than asking
// each time; one that only looks now and then asks Ended.
func (s *Subscription) Done() <-chan struct{} {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return signal(&s.done, s.over.Load())
}

// Ended reports whether the hub has ended the subscription.
func (s *Subscription) Ended() bool { return s.over.Load() }

// Err is ErrSlowConsumer, ErrTooMany or ErrShutdown (or the database error
// that kept it from starting) once the subscription has ended.
func (s *Subscription) Err() error {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.err
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
