package events

import (
	"testing"
	"time"
)

// readFeed reads one durable event from f, as a poll does, or fails.
func readFeed(t *testing.T, f *PollFeed) *Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-f.Events():
			if ev.Seq == 0 {
				continue
			}
			f.Took(ev)
			return ev
		case <-deadline:
			t.Fatal("no event")
			return nil
		}
	}
}

// TestPollFeedContinuesBetweenPolls: a kept feed receives what is committed
// while no poll waits, serves an answer again to a client that lost it,
// and gives way to a new feed for any cursor it cannot continue.
func TestPollFeedContinuesBetweenPolls(t *testing.T) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 16, Page: 16, SlowAfter: time.Minute}, 2)
	feeds := newPollFeeds()
	user := f.users[1]
	// A poll from seq 1 (conversation.created), as after Bounds.
	feed := &PollFeed{sub: f.hub.Subscribe(user, 1), userID: user, base: 1}
	if n := len(feed.Backlog(1)); n != 0 {
		t.Fatalf("backlog of a new feed: %d", n)
	}
	f.send(t, "a")
	if ev := readFeed(t, feed); ev.Seq != 2 {
		t.Fatalf("seq %d, want 2", ev.Seq)
	}
	feeds.keep("s1", feed)

	// Committed while no poll waits: queued in the kept subscription.
	f.send(t, "b")
	if feeds.take("s1", f.users[0], 2) != nil {
		t.Fatal("another user's poll took the feed")
	}
	if feeds.take("s1", user, 2) != feed {
		t.Fatal("the next poll did not get the feed")
	}
	if b := feed.Backlog(2); len(b) != 0 {
		t.Fatalf("backlog from 2: %+v", b)
	}
	if ev := readFeed(t, feed); ev.Seq != 3 {
		t.Fatalf("seq %d, want 3", ev.Seq)
	}
	feeds.keep("s1", feed)
	// The answer (seq 3) was lost: the client asks again from 2.
	got := feeds.take("s1", user, 2)
	if got != feed {
		t.Fatal("the feed does not continue its own base")
	}
	if b := got.Backlog(2); len(b) != 1 || b[0].Seq != 3 {
		t.Fatalf("backlog from 2: %+v", b)
	}
	feeds.keep("s1", got)
	// Acknowledged: nothing left, and what comes next is queued.
	got = feeds.take("s1", user, 3)
	if b := got.Backlog(3); len(b) != 0 {
		t.Fatalf("backlog from 3: %+v", b)
	}
	f.send(t, "c")
	if ev := readFeed(t, got); ev.Seq != 4 {
		t.Fatalf("seq %d, want 4", ev.Seq)
	}
	feeds.keep("s1", got)
	// Behind what it acknowledged, or past what it read: the long way.
	for _, cursor := range []int64{2, 5} {
		feeds.keep("s1", got)
		if feeds.take("s1", user, cursor) != nil {
			t.Fatalf("cursor %d continued a feed at 3..4", cursor)
		}
		select {
		case <-got.Done():
		default:
			t.Fatal("a feed that cannot continue was left open")
		}
		got = &PollFeed{sub: f.hub.Subscribe(user, 4), userID: user, base: 4}
	}
	got.Close()
}

// TestPollFeedsExpireAndReplace: an idle feed is closed after the hold; of
// two polls of one session at once, the last kept feed stays.
func TestPollFeedsExpireAndReplace(t *testing.T) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 16, Page: 16, SlowAfter: time.Minute}, 2)
	feeds := newPollFeeds()
	user := f.users[1]
	a := &PollFeed{sub: f.hub.Subscribe(user, 1), userID: user, base: 1}
	b := &PollFeed{sub: f.hub.Subscribe(user, 1), userID: user, base: 1}
	feeds.keep("s", a)
	feeds.keep("s", b)
	select {
	case <-a.Done():
	default:
		t.Fatal("the replaced feed was left open")
	}
	feeds.expire(time.Hour)
	if feeds.len() != 1 {
		t.Fatal("a fresh feed expired")
	}
	feeds.expire(0)
	if feeds.len() != 0 {
		t.Fatal("an idle feed was kept")
	}
	select {
	case <-b.Done():
	default:
		t.Fatal("the expired feed was left open")
	}
	// A feed whose subscription the hub ended continues nothing.
	c := &PollFeed{sub: f.hub.Subscribe(user, 1), userID: user, base: 1}
	feeds.keep("s", c)
	f.hub.close()
	if feeds.take("s", user, 1) != nil {
		t.Fatal("a feed of a closed hub was handed out")
	}
}
