package events

import (
	"context"
	"time"

	"github.com/confab-chat/confab/repository"
)

// An answer holds at most maxPollBatch events and stops growing past
// maxPollBytes of event data: the client polls again from its cursor for
// the rest, and a big answer is not written under one write deadline.
const (
	maxPollBatch = 500
	maxPollBytes = 1 << 20
)

// maxKeptTaken bounds what a kept feed holds for its session's next polls:
// a client that keeps asking from the same cursor would make it grow for
// ever. Past it the feed is closed; the next poll catches up from the
// database.
const maxKeptTaken = 4 * maxPollBatch

func full(out []*Event, size int) bool { return len(out) >= maxPollBatch || size >= maxPollBytes }

// fit cuts a backlog to what one answer holds, and returns its size.
func fit(out []*Event) ([]*Event, int) {
	size := 0
	for i, ev := range out {
		if full(out[:i], size) {
			return out[:i], size
		}
		size += len(ev.Data)
	}
	return out, size
}

// maxCatchUpWait bounds how long a poll waits for events known to exist
// (its subscription catching up), whatever its timeout.
const maxCatchUpWait = 10 * time.Second

// PollRequest is one long-poll, as the client sent it.
type PollRequest struct {
	UserID    string
	UserAgent string
	// Client tells the client's address: with UserAgent, it finds the
	// session of a client that does not send session_id back. It is asked
	// only for such a client (finding the address behind trusted proxies
	// costs more than the rest of a poll's session).
	Client ClientAddr
	// SessionID is the session_id of the client's previous answer, if any.
	SessionID string
	// Cursor is the client's cursor ("": none, answer at once with the
	// head).
	Cursor string
	// Timeout is how long to wait for an event when none is there.
	Timeout time.Duration
}

// ClientAddr tells a request's client address (a *gin.Context does).
type ClientAddr interface{ ClientIP() string }

// PollAnswer is what a long-poll answers.
type PollAnswer struct {
	Events    []*Event // durable, in position order
	Cursor    string
	Typing    []Typing
	Reset     bool
	SessionID string
}

// Poll serves one long-poll: it answers at once when the user has events
// after the cursor, else waits up to the timeout for one; a typing change
// also answers early, so pollers see indicators.
//
// A poller that carries its session_id from poll to poll keeps one
// subscription across its polls (a PollFeed): a poll that continues where
// the session's last answer ended reads nothing from the database, and one
// whose answer was lost gets the same events again.
func (b *Broker) Poll(ctx context.Context, req PollRequest) (*PollAnswer, error) {
	// A poll that goes on with its session may find the feed the
	// session's last poll kept. A session that ended took its feed with
	// it: the poll starts afresh.
	p, perr := repository.ParsePosition(req.Cursor)
	continuing := perr == nil && req.SessionID != ""
	ps, feed, err := b.sessions.poll(ctx, req.UserID, req.SessionID, req.Client, req.UserAgent, p, continuing)
	if err != nil {
		return nil, err
	}
	sessionID := ps.id
	ans := &PollAnswer{Events: []*Event{}, SessionID: sessionID}
	var keep *PollFeed // back in the session's slot when the poll ends
	defer func() { b.sessions.pollDone(ps, len(ans.Events), keep) }()
	var from, last repository.Position
	if feed != nil {
		from = p
	} else if from, last, ans.Reset, err = b.resume(ctx, req.Cursor); err != nil {
		return nil, err
	}
	if req.Cursor != "" && !ans.Reset {
		if feed == nil {
			// Events up to last are committed: the answer waits for the
			// tail to read them (a transaction of this database still in
			// progress may hold them back a moment).
			feed = &PollFeed{sub: b.hub.Subscribe(req.UserID, from, last), userID: req.UserID, base: from}
		}
		ans.Events = feed.wait(ctx, from, req.Timeout, b.Metrics)
		// Back in its slot before the answer is written (pollDone): the
		// client asks again as soon as it reads it. Only a client that
		// came back with its session shows it will; the feed of any other
		// poll (a one-off catch-up, a client without session_id) is
		// closed.
		if sessionID == req.SessionID && b.cfg.PollHold > 0 && len(feed.taken) <= maxKeptTaken {
			keep = feed
		} else {
			feed.Close()
		}
	}
	if n := len(ans.Events); n > 0 {
		ans.Cursor = ans.Events[n-1].ID
	} else {
		ans.Cursor = from.String()
	}
	if ans.Typing, err = b.TypingFor(ctx, req.UserID); err != nil {
		return nil, err
	}
	return ans, nil
}

// PollFeed is a long-poll session's subscription, kept from one poll to the
// next. A poller asks again a few milliseconds after every answer; the kept
// subscription is fed like a stream's, and the next poll finds its events
// queued.
//
// A feed is used by one poll at a time: the poll takes it from its
// session's slot (sessions.poll) and puts it back when it ends
// (sessions.pollDone).
type PollFeed struct {
	sub    *Subscription
	userID string
	// base is the cursor of the poll that last used the feed; taken holds
	// the durable events read from sub after base, in position order:
	// answered (or about to be), kept until a later poll's cursor
	// acknowledges them, so a client that lost an answer and asks again
	// from base gets them again. The feed continues any cursor from base to
	// its last position.
	base  repository.Position
	taken []*Event
	// idleSince is when the feed went back to its slot.
	idleSince time.Time
	// timer times the waits of the feed's polls: made by the first that
	// waits, stopped when each ends (a poll that answers at once needs
	// none).
	timer *time.Timer
}

// Close ends the feed's subscription.
func (f *PollFeed) Close() { f.sub.Close() }

// wait collects the events after cursor: first what earlier polls read
// but the client has not acknowledged, then what the subscription hands
// over. It waits for the subscription to catch up (events known to exist,
// however short the timeout), then up to timeout for a first event; a
// typing change answers an empty poll early.
func (f *PollFeed) wait(ctx context.Context, cursor repository.Position, timeout time.Duration, m *Metrics) []*Event {
	out := f.backlog(cursor)
	m.openLongPoll.Inc()
	defer m.openLongPoll.Dec()

	// While the subscription catches up, events exist that the answer
	// waits for (up to maxCatchUpWait); after that, the timeout runs.
	catching := f.sub.CaughtUp()
	wait := timeout
	select {
	case <-catching:
		catching = nil
	default:
		wait = max(timeout, maxCatchUpWait)
	}
	var expired <-chan time.Time // armed when the poll first has to wait
	ready, done := f.sub.Ready(), f.sub.Done()
	defer f.stopTimer()
	typing := false
	out, size := fit(out)
	if full(out, size) {
		return out
	}
	for {
		// What is queued is taken before anything else, so a poll with
		// timeout 0 answers with it rather than racing its timer.
		out, size, typing = f.collect(out, size, typing, m)
		if full(out, size) || (catching == nil && (len(out) > 0 || typing)) {
			return out
		}
		if expired == nil {
			expired = f.startTimer(wait)
		}
		select {
		case <-ready:
		case <-catching:
			catching = nil
			f.timer.Reset(timeout)
		case <-expired:
			return out
		case <-done:
			return out
		case <-ctx.Done():
			return out
		}
	}
}

// collect moves what the subscription queued to out (size: its data's
// bytes so far), and tells whether a typing change came. Every durable
// event read is kept in the feed before anything can end the poll: an
// event read is never dropped, and one that does not fit this answer is
// the next poll's first (the feed's backlog).
func (f *PollFeed) collect(out []*Event, size int, typing bool, m *Metrics) ([]*Event, int, bool) {
	for _, ev := range f.sub.Take(nil) {
		if !ev.Durable() {
			typing = typing || ev.Type == TypeTyping
			continue // presence is not part of a poll's answer
		}
		f.taken = append(f.taken, ev)
		if full(out, size) {
			continue
		}
		out = append(out, ev)
		size += len(ev.Data)
		m.deliveredLongPoll.Inc()
		if !ev.At.IsZero() {
			m.Lag.Observe(time.Since(ev.At).Seconds())
		}
	}
	f.sub.Received()
	return out, size, typing
}

// startTimer starts the feed's timer for d and returns its channel.
func (f *PollFeed) startTimer(d time.Duration) <-chan time.Time {
	if f.timer == nil {
		f.timer = time.NewTimer(d)
	} else {
		// Stopped by the poll that last used it: since Go 1.23, a
		// timer's channel holds no value from before a Reset.
		f.timer.Reset(d)
	}
	return f.timer.C
}

func (f *PollFeed) stopTimer() {
	if f.timer != nil {
		f.timer.Stop()
	}
}

// backlog acknowledges the events up to cursor (a cursor the feed
// continues: sessions.poll checked it) and returns the ones after it that earlier
// polls already read from the subscription.
func (f *PollFeed) backlog(cursor repository.Position) []*Event {
	i := 0
	for i < len(f.taken) && !cursor.Less(f.taken[i].Pos) {
		i++
	}
	// Shift rather than reslice, so the array does not grow forever.
	n := copy(f.taken, f.taken[i:])
	clear(f.taken[n:])
	f.taken = f.taken[:n]
	f.base = cursor
	return append([]*Event(nil), f.taken...)
}

// last is the position of the last event the feed has read (base when
// none).
func (f *PollFeed) last() repository.Position {
	if len(f.taken) == 0 {
		return f.base
	}
	return f.taken[len(f.taken)-1].Pos
}

// continues reports whether a poll from cursor can go on with f: the
// subscription is alive and every event after cursor is either in taken or
// still to come from the subscription.
func (f *PollFeed) continues(cursor repository.Position) bool {
	return !f.sub.Ended() && !cursor.Less(f.base) && !f.last().Less(cursor)
}

// KeptPollFeeds is how many long-poll sessions' feeds wait for their next
// poll.
func (b *Broker) KeptPollFeeds() int { return b.sessions.keptFeeds() }
