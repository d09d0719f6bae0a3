package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
)

// pollFrom polls with a session from cursor.
func (e *env) pollFrom(token, session, cursor string, timeout int) pollResult {
	e.t.Helper()
	return e.poll(token, "cursor="+url.QueryEscape(cursor)+"&timeout="+strconv.Itoa(timeout)+"&session_id="+session)
}

// positions lists the positions of a poll answer's events.
func positions(p pollResult) []string {
	out := []string{}
	for _, ev := range p.Events {
		out = append(out, ev.Position)
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
		s, c0 := first.SessionID, first.Cursor
		if p := e.pollFrom(bob.Token, s, c0, 0); len(p.Events) != 0 || p.Cursor != c0 || p.SessionID != s {
			t.Fatalf("first poll from a cursor: %+v", p)
		}
		if n := e.broker.KeptPollFeeds(); n != 1 {
			t.Fatalf("%d feeds kept, want 1", n)
		}
		// Committed while no poll waits.
		e.send(alice, g.ID, "between polls")
		p := e.pollFrom(bob.Token, s, c0, 5)
		if len(p.Events) != 1 || p.Cursor != p.Events[0].Position || !posLess(t, c0, p.Cursor) || p.Reset {
			t.Fatalf("poll after a send: %+v", p)
		}
		p1 := p.Cursor
		// The client lost that answer and asks again.
		if p := e.pollFrom(bob.Token, s, c0, 0); fmt.Sprint(positions(p)) != "["+p1+"]" || p.Cursor != p1 {
			t.Fatalf("poll again from %s: %+v", c0, p)
		}
		if p := e.pollFrom(bob.Token, s, p1, 1); len(p.Events) != 0 || p.Cursor != p1 {
			t.Fatalf("idle poll: %+v", p)
		}
		got := make(chan pollResult, 1)
		go func() { got <- e.pollFrom(bob.Token, s, p1, 30) }()
		eventually(t, 5*time.Second, "the poll to wait", func() bool { return e.broker.KeptPollFeeds() == 0 })
		e.send(alice, g.ID, "wake up")
		var p2 string
		select {
		case p := <-got:
			if len(p.Events) != 1 || p.Cursor != p.Events[0].Position || !posLess(t, p1, p.Cursor) {
				t.Fatalf("woken poll: %+v", p)
			}
			p2 = p.Cursor
		case <-time.After(10 * time.Second):
			t.Fatal("poll did not answer")
		}
		// Older than what the session acknowledged: read from the database.
		if p := e.pollFrom(bob.Token, s, c0, 0); fmt.Sprint(positions(p)) != "["+p1+" "+p2+"]" || p.Cursor != p2 {
			t.Fatalf("poll from %s after acknowledging %s: %+v", c0, p1, p)
		}
		// A poll without its session_id is the same client's session
		// (same address and user agent), but keeps no subscription.
		if p := e.poll(bob.Token, "cursor="+p2+"&timeout=0"); p.SessionID != s || len(p.Events) != 0 {
			t.Fatalf("poll without session: %+v", p)
		}
		if n := e.broker.KeptPollFeeds(); n != 1 {
			t.Fatalf("%d feeds kept, want 1", n)
		}
		// Past the head: reset, feed or not.
		if p := e.pollFrom(bob.Token, s, "9999999999-1", 0); !p.Reset || p.Cursor != p2 {
			t.Fatalf("poll ahead: %+v", p)
		}
		if p := e.pollFrom(bob.Token, s, p2, 0); p.Reset || p.Cursor != p2 {
			t.Fatalf("poll from the head: %+v", p)
		}
		// Older than retention: reset; the head itself continues.
		if _, err := store.PruneLog(t.Context(), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if p := e.pollFrom(bob.Token, s, c0, 0); !p.Reset || p.Cursor != p2 {
			t.Fatalf("poll after prune: %+v", p)
		}
		if p := e.pollFrom(bob.Token, s, p2, 0); p.Reset || len(p.Events) != 0 {
			t.Fatalf("the head after prune: %+v", p)
		}
		// A cursor of the integer form positions replaced: reset.
		if p := e.pollFrom(bob.Token, s, "3", 0); !p.Reset || p.Cursor != p2 {
			t.Fatalf("poll from an integer cursor: %+v", p)
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
		cursor, got := first.Cursor, 0
		deadline := time.Now().Add(30 * time.Second)
		for got < n && time.Now().Before(deadline) {
			p := e.pollFrom(bob.Token, first.SessionID, cursor, 5)
			if p.Reset || p.SessionID != first.SessionID {
				t.Fatalf("poll from %s: %+v", cursor, p)
			}
			for _, ev := range p.Events {
				if ev.Type == "conversation.created" {
					// The head the first poll gave may come before it: a
					// transaction of another test, in progress at that
					// moment, holds positions after it back.
					cursor = ev.Position
					continue
				}
				var d struct{ Message message }
				if err := json.Unmarshal(ev.Data, &d); err != nil || d.Message.Body != strconv.Itoa(got) || !posLess(t, cursor, ev.Position) {
					t.Fatalf("event %s %s after %s: want message %d", ev.Position, ev.Data, cursor, got)
				}
				cursor = ev.Position
				got++
			}
			if p.Cursor != cursor {
				t.Fatalf("answer cursor %s, last event %s", p.Cursor, cursor)
			}
		}
		wg.Wait()
		if got != n {
			t.Fatalf("stuck at %d of %d", got, n)
		}
	})
}

// TestPollFeedOutlivedBySession: a poller that stops loses its session as
// before, and its kept subscription with it (even within the hold: no
// later poll could use it); when it comes back with the old session id it
// gets a new session and carries on from its cursor.
func TestPollFeedOutlivedBySession(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		ec := testEventsConfig(t, store)
		ec.PollIdle = time.Second
		ec.PollHold = 4 * time.Second
		e := newEnvWith(t, store, testConfig(), ec)
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		first := e.poll(bob.Token, "")
		c0 := first.Cursor
		e.pollFrom(bob.Token, first.SessionID, c0, 0)
		sessions := func() int {
			var list struct {
				Sessions []struct{} `json:"sessions"`
			}
			e.must(http.StatusOK, "GET", "/v1/sessions", bob.Token, nil).decode(t, &list)
			return len(list.Sessions)
		}
		eventually(t, 10*time.Second, "the idle session to expire", func() bool { return sessions() == 0 })
		if e.broker.KeptPollFeeds() != 0 {
			t.Fatal("the feed outlived its session")
		}
		e.send(alice, g.ID, "while away")
		p := e.pollFrom(bob.Token, first.SessionID, c0, 5)
		if p.SessionID == first.SessionID || len(p.Events) != 1 || p.Reset {
			t.Fatalf("poll with an expired session: %+v", p)
		}
		if sessions() != 1 {
			t.Fatal("the new session is not listed")
		}
		// Kept for the new session until its hold runs out.
		s, p1 := p.SessionID, p.Cursor
		e.pollFrom(bob.Token, s, p1, 0)
		if e.broker.KeptPollFeeds() != 1 {
			t.Fatal("no feed kept for the new session")
		}
		eventually(t, 10*time.Second, "the feed to expire", func() bool { return e.broker.KeptPollFeeds() == 0 })
		// The poller starts over from the database.
		if p := e.pollFrom(bob.Token, s, p1, 0); p.Reset || len(p.Events) != 0 || p.Cursor != p1 {
			t.Fatalf("poll after the feed expired: %+v", p)
		}
	})
}
