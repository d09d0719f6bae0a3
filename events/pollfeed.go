package events

import (
	"sync"
	"time"
)

// PollFeed is a long-poll session's subscription, kept from one poll to the
// next. A poller asks again a few milliseconds after every answer; opening a
// subscription per poll made each of those polls read the stream's bounds
// and the events after its cursor from the database (the hub backfills
// every new subscriber), on top of the answer itself. A kept subscription
// is fed like a stream's: the hub hands a committed event straight over,
// and the next poll finds it queued.
//
// A feed is used by one poll at a time: TakePollFeed removes it from the
// session's slot and KeepPollFeed puts it back.
type PollFeed struct {
	sub    *Subscription
	userID string
	// base is the cursor of the poll that last used the feed; taken holds
	// the durable events read from sub after base, in seq order: answered
	// (or about to be), kept until a later poll's cursor acknowledges them,
	// so a client that lost an answer and asks again from base gets them
	// again. The feed continues any cursor from base to its last seq.
	base  int64
	taken []*Event
	// idleSince is when the feed went back to its slot.
	idleSince time.Time
}

// Events delivers the feed's events, as Subscription.Events does.
func (f *PollFeed) Events() <-chan *Event { return f.sub.Events() }

// Done is closed when the hub ends the feed's subscription.
func (f *PollFeed) Done() <-chan struct{} { return f.sub.Done() }

// Received tells the hub the poll drained events (see Subscription).
func (f *PollFeed) Received() { f.sub.Received() }

// Close ends the feed's subscription.
func (f *PollFeed) Close() { f.sub.Close() }

// Backlog acknowledges the events up to cursor (a cursor the feed
// continues: TakePollFeed checked it) and returns the ones after it that
// earlier polls already read from the subscription.
func (f *PollFeed) Backlog(cursor int64) []*Event {
	i := 0
	for i < len(f.taken) && f.taken[i].Seq <= cursor {
		i++
	}
	// Shift rather than reslice, so the array does not grow forever.
	n := copy(f.taken, f.taken[i:])
	clear(f.taken[n:])
	f.taken = f.taken[:n]
	f.base = cursor
	return f.taken
}

// Took records a durable event the poll read from Events: it stays in the
// feed until a later poll's cursor acknowledges it.
func (f *PollFeed) Took(ev *Event) { f.taken = append(f.taken, ev) }

// last is the highest seq the feed has read (base when none).
func (f *PollFeed) last() int64 {
	if len(f.taken) == 0 {
		return f.base
	}
	return f.taken[len(f.taken)-1].Seq
}

// continues reports whether a poll from cursor can go on with f: the
// subscription is alive and every event after cursor is either in taken or
// still to come from the subscription.
func (f *PollFeed) continues(cursor int64) bool {
	select {
	case <-f.sub.Done():
		return false
	default:
	}
	return cursor >= f.base && cursor <= f.last()
}

// pollFeeds holds the idle feeds of this node's long-poll sessions, by
// session id.
type pollFeeds struct {
	mu sync.Mutex
	m  map[string]*PollFeed
}

func newPollFeeds() *pollFeeds { return &pollFeeds{m: map[string]*PollFeed{}} }

// take removes and returns the session's feed if it continues cursor. A
// feed that cannot is closed: the poll starts a new one.
func (p *pollFeeds) take(sessionID, userID string, cursor int64) *PollFeed {
	p.mu.Lock()
	f := p.m[sessionID]
	if f == nil || f.userID != userID {
		// Another user's session id is not this poll's session.
		p.mu.Unlock()
		return nil
	}
	delete(p.m, sessionID)
	p.mu.Unlock()
	if !f.continues(cursor) {
		f.Close()
		return nil
	}
	return f
}

// keep puts a feed back in its session's slot. Two polls of one session at
// once (a client retrying) each end with a feed: the last one kept stays.
func (p *pollFeeds) keep(sessionID string, f *PollFeed) {
	f.idleSince = time.Now()
	p.mu.Lock()
	old := p.m[sessionID]
	p.m[sessionID] = f
	p.mu.Unlock()
	if old != nil && old != f {
		old.Close()
	}
}

// expire closes the feeds idle for longer than idle: their poller stopped,
// or will start over from the database.
func (p *pollFeeds) expire(idle time.Duration) {
	cutoff := time.Now().Add(-idle)
	var gone []*PollFeed
	p.mu.Lock()
	for id, f := range p.m {
		if f.idleSince.Before(cutoff) {
			gone = append(gone, f)
			delete(p.m, id)
		}
	}
	p.mu.Unlock()
	for _, f := range gone {
		f.Close()
	}
}

// len is how many feeds wait for their next poll.
func (p *pollFeeds) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}
