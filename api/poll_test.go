package api_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
)

// pollFrom polls with a session from cursor.
func (e *env) pollFrom(token, session string, cursor int64, timeout int) pollResult {
	e.t.Helper()
	return e.poll(token, "cursor="+strconv.FormatInt(cursor, 10)+"&timeout="+strconv.Itoa(timeout)+"&session_id="+session)
}

func seqs(p pollResult) []int64 {
	out := []int64{}
	for _, ev := range p.Events {
		out = append(out, ev.Seq)
	}
	return out
}

// TestPollSessionKeepsItsSubscription: a poller that carries its session
// continues on the subscription its last poll kept, and gets exactly what
// it would get without it: events committed between polls, an answer it
// lost, a reset for a cursor the stream cannot continue.
func TestPollSessionKeepsItsSubscription(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		first := e.poll(bob.Token, "")
		s := first.SessionID
		if p := e.pollFrom(bob.Token, s, 1, 0); len(p.Events) != 0 || p.Cursor != 1 || p.SessionID != s {
			t.Fatalf("first poll from a cursor: %+v", p)
		}
		if n := e.broker.KeptPollFeeds(); n != 1 {
			t.Fatalf("%d feeds kept, want 1", n)
		}
		// Committed while no poll waits.
		e.send(alice, g.ID, "between polls")
		p := e.pollFrom(bob.Token, s, 1, 5)
		if fmt.Sprint(seqs(p)) != "[2]" || p.Cursor != 2 || p.Reset {
			t.Fatalf("poll after a send: %+v", p)
		}
		// The client lost that answer and asks again.
		if p := e.pollFrom(bob.Token, s, 1, 0); fmt.Sprint(seqs(p)) != "[2]" || p.Cursor != 2 {
			t.Fatalf("poll again from 1: %+v", p)
		}
		if p := e.pollFrom(bob.Token, s, 2, 1); len(p.Events) != 0 || p.Cursor != 2 {
			t.Fatalf("idle poll: %+v", p)
		}
		got := make(chan pollResult, 1)
		go func() { got <- e.pollFrom(bob.Token, s, 2, 30) }()
		eventually(t, 5*time.Second, "the poll to wait", func() bool { return e.broker.KeptPollFeeds() == 0 })
		e.send(alice, g.ID, "wake up")
		select {
		case p := <-got:
			if fmt.Sprint(seqs(p)) != "[3]" || p.Cursor != 3 {
				t.Fatalf("woken poll: %+v", p)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("poll did not answer")
		}
		// Older than what the session acknowledged: read from the database.
		if p := e.pollFrom(bob.Token, s, 1, 0); fmt.Sprint(seqs(p)) != "[2 3]" || p.Cursor != 3 {
			t.Fatalf("poll from 1 after acknowledging 2: %+v", p)
		}
		// A poll without its session keeps nothing.
		if p := e.poll(bob.Token, "cursor=3&timeout=0"); p.SessionID == s || len(p.Events) != 0 {
			t.Fatalf("poll without session: %+v", p)
		}
		if n := e.broker.KeptPollFeeds(); n != 1 {
			t.Fatalf("%d feeds kept, want 1", n)
		}
		// Past the head: reset, feed or not.
		if p := e.pollFrom(bob.Token, s, 99, 0); !p.Reset || p.Cursor != 3 {
			t.Fatalf("poll ahead: %+v", p)
		}
		if p := e.pollFrom(bob.Token, s, 3, 0); p.Reset || p.Cursor != 3 {
			t.Fatalf("poll from the head: %+v", p)
		}
		// Older than retention: reset; the head itself continues.
		if _, err := store.PruneEvents(t.Context(), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if p := e.pollFrom(bob.Token, s, 1, 0); !p.Reset || p.Cursor != 3 {
			t.Fatalf("poll after prune: %+v", p)
		}
		if p := e.pollFrom(bob.Token, s, 3, 0); p.Reset || len(p.Events) != 0 {
			t.Fatalf("the head after prune: %+v", p)
		}
		// Still one live session for the poller, the one it carries.
		var list struct {
			Sessions []struct {
				ID        string `json:"id"`
				Transport string `json:"transport"`
			} `json:"sessions"`
		}
		e.must(http.StatusOK, "GET", "/v1/sessions", bob.Token, nil).decode(t, &list)
		found := false
		for _, ss := range list.Sessions {
			found = found || (ss.ID == s && ss.Transport == "longpoll")
		}
		if !found {
			t.Fatalf("sessions: %+v", list)
		}
	})
}

// TestPollSessionEveryEventOnce: a poller following a busy stream through
// its kept subscription gets every event once, in order.
func TestPollSessionEveryEventOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		first := e.poll(bob.Token, "")
		const n = 60
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := range n {
				e.send(alice, g.ID, fmt.Sprint(i))
			}
		})
		cursor, last := first.Cursor, first.Cursor+n
		deadline := time.Now().Add(30 * time.Second)
		for cursor < last && time.Now().Before(deadline) {
			p := e.pollFrom(bob.Token, first.SessionID, cursor, 5)
			if p.Reset || p.SessionID != first.SessionID {
				t.Fatalf("poll from %d: %+v", cursor, p)
			}
			for _, ev := range p.Events {
				if ev.Seq != cursor+1 {
					t.Fatalf("seq %d after %d", ev.Seq, cursor)
				}
				cursor = ev.Seq
			}
			if p.Cursor != cursor {
				t.Fatalf("answer cursor %d, last event %d", p.Cursor, cursor)
			}
		}
		wg.Wait()
		if cursor != last {
			t.Fatalf("stuck at %d of %d", cursor, last)
		}
	})
}

// TestPollFeedOutlivedBySession: a poller that stops loses its session as
// before, and its kept subscription; when it comes back with the old
// session id it gets a new session and carries on from its cursor.
func TestPollFeedOutlivedBySession(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		ec := testEventsConfig(t, store)
		ec.PollIdle = time.Second
		ec.PollHold = 4 * time.Second
		e := newEnvWith(t, store, testConfig(), ec)
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		first := e.poll(bob.Token, "")
		e.pollFrom(bob.Token, first.SessionID, 1, 0)
		sessions := func() int {
			var list struct {
				Sessions []struct{} `json:"sessions"`
			}
			e.must(http.StatusOK, "GET", "/v1/sessions", bob.Token, nil).decode(t, &list)
			return len(list.Sessions)
		}
		eventually(t, 10*time.Second, "the idle session to expire", func() bool { return sessions() == 0 })
		if e.broker.KeptPollFeeds() != 1 {
			t.Fatal("the feed went before its hold")
		}
		e.send(alice, g.ID, "while away")
		p := e.pollFrom(bob.Token, first.SessionID, 1, 5)
		if p.SessionID == first.SessionID || fmt.Sprint(seqs(p)) != "[2]" || p.Reset {
			t.Fatalf("poll with an expired session: %+v", p)
		}
		if sessions() != 1 {
			t.Fatal("the new session is not listed")
		}
		// Kept for the new session until its hold runs out.
		s := p.SessionID
		e.pollFrom(bob.Token, s, 2, 0)
		if e.broker.KeptPollFeeds() != 1 {
			t.Fatal("no feed kept for the new session")
		}
		eventually(t, 10*time.Second, "the feed to expire", func() bool { return e.broker.KeptPollFeeds() == 0 })
		// The poller starts over from the database.
		if p := e.pollFrom(bob.Token, s, 2, 0); p.Reset || len(p.Events) != 0 || p.Cursor != 2 {
			t.Fatalf("poll after the feed expired: %+v", p)
		}
	})
}
