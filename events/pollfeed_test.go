package events

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
)

// answer answers one poll from cursor with feed, as Broker.Poll does once it
// has the feed, and returns the positions answered.
func answer(t *testing.T, feed *PollFeed, cursor repository.Position, timeout time.Duration) []repository.Position {
	t.Helper()
	var out []repository.Position
	for _, ev := range feed.wait(context.Background(), cursor, timeout, NewMetrics(nil)) {
		out = append(out, ev.Pos)
	}
	return out
}

// testSessions are sessions s1 and s2 (one each for users 1 and 0 of f,
// s2 found by its client key), without a broker: the feeds' slots as
// Broker.Poll uses them.
func testSessions(f *hubFixture) *sessions {
	s := newSessions(nil)
	s.polls["s1"] = &pollSession{id: "s1", userID: f.users[1]}
	s.polls["s2"] = &pollSession{id: "s2", userID: f.users[0]}
	s.byClient[clientKey(f.users[0], "", "")] = "s2"
	return s
}

// take starts a poll of user that names session id and continues from
// cursor, and returns the feed it continues with (nil: none).
func (s *sessions) take(t *testing.T, id, user string, cursor repository.Position) *PollFeed {
	t.Helper()
	_, feed, err := s.poll(context.Background(), user, id, nil, "", cursor, true)
	if err != nil {
		t.Fatal(err)
	}
	return feed
}

// keep ends a poll of session id that keeps feed.
func (s *sessions) keep(id string, feed *PollFeed) { s.pollDone(s.polls[id], 0, feed) }

// TestPollFeedContinuesBetweenPolls: a kept feed receives what is committed
// while no poll waits, serves an answer again to a client that lost it,
// and gives way to a new feed for any cursor it cannot continue.
func TestPollFeedContinuesBetweenPolls(t *testing.T) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 16, Page: 16, Ring: 64, SlowAfter: time.Minute}, 2)
	feeds := testSessions(f)
	user := f.users[1]
	start := f.created
	feed := &PollFeed{sub: subscribe(f.hub, user, start), userID: user, base: start}
	if b := feed.backlog(start); len(b) != 0 {
		t.Fatalf("backlog of a new feed: %d", len(b))
	}
	a := f.send(t, "a")
	if got := answer(t, feed, start, 10*time.Second); !slices.Equal(got, []repository.Position{a}) {
		t.Fatalf("first poll: %v, want %v", got, a)
	}
	feeds.keep("s1", feed)

	// Committed while no poll waits: queued in the kept subscription.
	b := f.send(t, "b")
	if feeds.take(t, "s1", f.users[0], a) != nil {
		t.Fatal("another user's poll took the feed")
	}
	if feeds.take(t, "s1", user, a) != feed {
		t.Fatal("the next poll did not get the feed")
	}
	if got := answer(t, feed, a, 10*time.Second); !slices.Equal(got, []repository.Position{b}) {
		t.Fatalf("poll from a: %v, want %v", got, b)
	}
	feeds.keep("s1", feed)
	// That answer was lost: the client asks again from a, and gets it
	// again at once.
	got := feeds.take(t, "s1", user, a)
	if got != feed {
		t.Fatal("the feed does not continue its own base")
	}
	if again := answer(t, got, a, 0); !slices.Equal(again, []repository.Position{b}) {
		t.Fatalf("poll from a again: %v, want %v", again, b)
	}
	feeds.keep("s1", got)
	// Acknowledged: nothing left, and what comes next is queued.
	got = feeds.take(t, "s1", user, b)
	if none := answer(t, got, b, 0); len(none) != 0 {
		t.Fatalf("poll from b with nothing new: %v", none)
	}
	c := f.send(t, "c")
	if more := answer(t, got, b, 10*time.Second); !slices.Equal(more, []repository.Position{c}) {
		t.Fatalf("poll from b: %v, want %v", more, c)
	}
	// Behind what it acknowledged, or past what it read: the long way.
	past := c
	past.ID++
	for _, cursor := range []repository.Position{a, past} {
		feeds.keep("s1", got)
		if feeds.take(t, "s1", user, cursor) != nil {
			t.Fatalf("cursor %v continued a feed at %v..%v", cursor, b, c)
		}
		select {
		case <-got.sub.Done():
		default:
			t.Fatal("a feed that cannot continue was left open")
		}
		got = &PollFeed{sub: subscribe(f.hub, user, c), userID: user, base: c}
	}
	got.Close()
}

// TestPollFeedsExpireAndReplace: an idle feed is closed after the hold; of
// two polls of one session at once, the last kept feed stays.
func TestPollFeedsExpireAndReplace(t *testing.T) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 16, Page: 16, Ring: 64, SlowAfter: time.Minute}, 2)
	feeds := testSessions(f)
	user := f.users[1]
	a := &PollFeed{sub: subscribe(f.hub, user, f.created), userID: user, base: f.created}
	b := &PollFeed{sub: subscribe(f.hub, user, f.created), userID: user, base: f.created}
	feeds.keep("s1", a)
	feeds.keep("s1", b)
	select {
	case <-a.sub.Done():
	default:
		t.Fatal("the replaced feed was left open")
	}
	feeds.expireFeeds(time.Hour)
	if feeds.keptFeeds() != 1 {
		t.Fatal("a fresh feed expired")
	}
	feeds.expireFeeds(0)
	if feeds.keptFeeds() != 0 {
		t.Fatal("an idle feed was kept")
	}
	select {
	case <-b.sub.Done():
	default:
		t.Fatal("the expired feed was left open")
	}
	// A feed whose subscription the hub ended continues nothing.
	c := &PollFeed{sub: subscribe(f.hub, user, f.created), userID: user, base: f.created}
	feeds.keep("s1", c)
	f.hub.close()
	if feeds.take(t, "s1", user, f.created) != nil {
		t.Fatal("a feed of a closed hub was handed out")
	}
}
