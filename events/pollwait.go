package events

import "github.com/confab-chat/confab/repository"

// PendingPoll is a long-poll that waits without a goroutine of its own:
// the API's connections taken over from net/http (api/pollconn.go) start
// one when a poll arrives, have the subscription call them back
// (Notify) when events are queued, and answer from whichever goroutine is
// woken. It serves only what memory can: a poll that continues its
// session's kept feed (Broker.Poll's common case). Anything else, a
// first poll, a cursor the feed does not continue, one still catching
// up, is Broker.Poll's.
//
// A PendingPoll is used by one goroutine at a time.
type PendingPoll struct {
	b      *Broker
	ps     *pollSession
	feed   *PollFeed
	from   repository.Position
	out    []*Event
	size   int
	typing bool
}

// StartPoll starts a poll that continues the feed its session kept; ok is
// false, nothing started, when the poll needs Broker.Poll (the database,
// or a wait for events known to exist). It reads nothing but memory.
func (b *Broker) StartPoll(req PollRequest) (p *PendingPoll, ok bool) {
	if req.SessionID == "" || b.cfg.PollHold <= 0 {
		return nil, false
	}
	from, err := repository.ParsePosition(req.Cursor)
	if err != nil {
		return nil, false
	}
	ps, feed := b.sessions.pollKept(req.UserID, req.SessionID, from)
	if feed == nil {
		return nil, false
	}
	p = &PendingPoll{b: b, ps: ps, feed: feed, from: from}
	p.out, p.size = fit(feed.backlog(from))
	b.Metrics.openLongPoll.Inc()
	return p, true
}

// Collect takes what the subscription queued and reports whether the poll
// has something to answer: events, a typing change, or a subscription
// that ended (the next poll starts afresh).
func (p *PendingPoll) Collect() bool {
	p.out, p.size, p.typing = p.feed.collect(p.out, p.size, p.typing, p.b.Metrics)
	if len(p.out) > 0 || p.typing {
		return true
	}
	return p.feed.sub.Ended()
}

// Notify has f called when events are queued for the poll (or its
// subscription ends), at once if some are; see Subscription.Notify. f may
// be called after Answer too: it must tolerate a call for nothing.
func (p *PendingPoll) Notify(f func()) { p.feed.sub.Notify(f) }

// Answer ends the poll with what it collected, whether or not anything
// came, and puts its feed back in the session's slot for the next poll
// (which gets the same events again if this answer is lost). typingKnown
// is false when somebody is typing somewhere: the answer's Typing is then
// the caller's to fill, with TypingFor (which reads the database).
func (p *PendingPoll) Answer() (ans *PollAnswer, typingKnown bool) {
	p.feed.sub.Notify(nil)
	b := p.b
	b.Metrics.openLongPoll.Dec()
	keep := p.feed
	if len(keep.taken) > maxKeptTaken {
		keep.Close()
		keep = nil
	}
	b.sessions.pollDone(p.ps, len(p.out), keep)
	ans = &PollAnswer{Events: p.out, SessionID: p.ps.id}
	if ans.Events == nil {
		ans.Events = []*Event{}
	}
	if n := len(ans.Events); n > 0 {
		ans.Cursor = ans.Events[n-1].ID
	} else {
		ans.Cursor = p.from.String()
	}
	if b.typing.empty() {
		ans.Typing = []Typing{}
		return ans, true
	}
	return ans, false
}

// pollKept takes the feed the session's last poll kept, for a poll that
// continues it from cursor: nil, and nothing changed, when the session is
// not the user's, kept no feed, or kept one that does not continue cursor
// or is still catching up.
func (s *sessions) pollKept(userID, id string, cursor repository.Position) (*pollSession, *PollFeed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, ok := s.polls[id]
	if !ok || ps.userID != userID || ps.feed == nil || !ps.feed.continues(cursor) {
		return nil, nil
	}
	if !ps.feed.sub.isCaughtUp() {
		return nil, nil
	}
	feed := ps.feed
	ps.feed = nil
	ps.waiting++
	return ps, feed
}
