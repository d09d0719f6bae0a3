package api_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confab-chat/confab/api"
	"github.com/confab-chat/confab/repository"
)

// eventually retries cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

type pollResult struct {
	Events []struct {
		Position string          `json:"position"`
		Type     string          `json:"type"`
		Data     json.RawMessage `json:"data"`
	} `json:"events"`
	Cursor string `json:"cursor"`
	Typing []struct {
		ConversationID string `json:"conversation_id"`
		UserID         string `json:"user_id"`
	} `json:"typing"`
	Reset     bool   `json:"reset"`
	SessionID string `json:"session_id"`
}

func (e *env) poll(token, query string) pollResult {
	e.t.Helper()
	var p pollResult
	e.must(http.StatusOK, "GET", "/v1/events/poll?"+query, token, nil).decode(e.t, &p)
	return p
}

func TestStreamDeliversToEveryMemberInOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob, carol := e.register("alice"), e.register("bob"), e.register("carol")
		g := e.group(alice, bob, carol)
		bobStream := e.openStream(bob.Token, streamOpts{})
		bobCursor := bobStream.ready()
		aliceStream := e.openStream(alice.Token, streamOpts{})
		aliceCursor := aliceStream.ready()
		var sent []message
		for i := range 20 {
			sent = append(sent, e.send(alice, g.ID, fmt.Sprintf("hello %d", i)))
		}
		for _, got := range [][]message{bobStream.messages(20, bobCursor), aliceStream.messages(20, aliceCursor)} {
			for i := range sent {
				if got[i].ID != sent[i].ID || got[i].Body != sent[i].Body {
					t.Fatalf("message %d: got %+v, want %+v", i, got[i], sent[i])
				}
			}
		}
	})
}

func TestStreamResumesFromLastEventID(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		s := e.openStream(bob.Token, streamOpts{})
		cursor := s.ready()
		e.send(alice, g.ID, "before")
		cursor = s.messages(1, cursor)[0].Pos
		s.close()

		var sent []string
		for i := range 7 {
			sent = append(sent, e.send(alice, g.ID, fmt.Sprintf("missed %d", i)).ID)
		}
		// Header, as EventSource reconnects.
		s = e.openStream(bob.Token, streamOpts{lastEventID: cursor})
		if got := s.ready(); got != cursor {
			t.Fatalf("ready cursor %s, want %s", got, cursor)
		}
		resumed := s.messages(7, cursor)
		for i, m := range resumed {
			if m.ID != sent[i] {
				t.Fatalf("resumed message %d is %s, want %s", i, m.ID, sent[i])
			}
		}
		s.close()
		// Query parameter, as a fresh EventSource passes it.
		s = e.openStream(bob.Token, streamOpts{query: "last_event_id=" + resumed[2].Pos})
		s.ready()
		if got := s.messages(4, resumed[2].Pos); got[0].ID != sent[3] {
			t.Fatalf("resumed at %s, want %s", got[0].ID, sent[3])
		}
		// The same over long-poll: exactly the events after the cursor,
		// at the same positions.
		p := e.poll(bob.Token, "cursor="+cursor+"&timeout=0")
		if len(p.Events) != 7 || p.Cursor != resumed[6].Pos || p.Reset {
			t.Fatalf("poll after %s: %d events, cursor %s, reset %v", cursor, len(p.Events), p.Cursor, p.Reset)
		}
		for i, ev := range p.Events {
			if ev.Position != resumed[i].Pos || ev.Type != "message.created" {
				t.Fatalf("poll event %d: position %s type %s, want %s", i, ev.Position, ev.Type, resumed[i].Pos)
			}
		}
	})
}

func TestResetForCursorOutsideTheStream(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		for range 3 {
			e.send(alice, g.ID, "x")
		}
		all := e.poll(bob.Token, "cursor=0-0&timeout=0")
		if len(all.Events) != 4 { // conversation.created + 3 messages
			t.Fatalf("%d events from the start, want 4", len(all.Events))
		}
		head, second := all.Cursor, all.Events[1].Position
		if c := e.poll(bob.Token, "").Cursor; c != head {
			t.Fatalf("head %s, want %s", c, head)
		}
		// Ahead of the head: the server cannot continue it.
		s := e.openStream(bob.Token, streamOpts{lastEventID: "9999999999-1"})
		if c := s.ready(); c != head {
			t.Fatalf("ready cursor %s, want head %s", c, head)
		}
		if ev := s.next(5 * time.Second); ev.Type != "reset" || ev.Data != `{"cursor":"`+head+`"}` {
			t.Fatalf("want reset, got %+v", ev)
		}
		if p := e.poll(bob.Token, "cursor=9999999999-1&timeout=0"); !p.Reset || p.Cursor != head || len(p.Events) != 0 {
			t.Fatalf("poll ahead: %+v", p)
		}
		// An integer cursor, the form before positions: reset.
		s = e.openStream(bob.Token, streamOpts{lastEventID: "2"})
		s.ready()
		if ev := s.next(5 * time.Second); ev.Type != "reset" {
			t.Fatalf("want reset for an integer cursor, got %+v", ev)
		}
		// Older than retention keeps: everything pruned.
		if _, err := store.PruneLog(t.Context(), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if p := e.poll(bob.Token, "cursor=0-0&timeout=0"); !p.Reset || p.Cursor != head {
			t.Fatalf("poll after prune: %+v", p)
		}
		if p := e.poll(bob.Token, "cursor="+head+"&timeout=0"); p.Reset {
			t.Fatalf("the head itself must not reset: %+v", p)
		}
		s = e.openStream(bob.Token, streamOpts{lastEventID: second})
		s.ready()
		if ev := s.next(5 * time.Second); ev.Type != "reset" {
			t.Fatalf("want reset after prune, got %+v", ev)
		}
	})
}

func TestPollWaitsAndAnswers(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		first := e.poll(bob.Token, "")
		c0 := first.Cursor
		if len(first.Events) != 0 || c0 == "" || first.SessionID == "" {
			t.Fatalf("first poll: %+v", first)
		}
		// Nothing new: an empty batch with the same cursor after the timeout.
		if p := e.poll(bob.Token, "cursor="+c0+"&timeout=1&session_id="+first.SessionID); len(p.Events) != 0 || p.Cursor != c0 || p.SessionID != first.SessionID {
			t.Fatalf("idle poll: %+v", p)
		}
		got := make(chan pollResult, 1)
		go func() { got <- e.poll(bob.Token, "cursor="+c0+"&timeout=30&session_id="+first.SessionID) }()
		m := e.send(alice, g.ID, "wake up")
		select {
		case p := <-got:
			if len(p.Events) != 1 || p.Cursor != p.Events[0].Position || !strings.Contains(string(p.Events[0].Data), m.ID) {
				t.Fatalf("woken poll: %+v", p)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("poll did not answer")
		}
		// One poller, one session, across polls.
		var list struct {
			Sessions []struct {
				ID        string `json:"id"`
				Transport string `json:"transport"`
			} `json:"sessions"`
		}
		e.must(http.StatusOK, "GET", "/v1/sessions", bob.Token, nil).decode(t, &list)
		if len(list.Sessions) != 1 || list.Sessions[0].Transport != "longpoll" || list.Sessions[0].ID != first.SessionID {
			t.Fatalf("sessions: %+v", list)
		}
		r := e.do("GET", "/v1/events/poll?cursor=x", bob.Token, nil, true)
		if r.status != http.StatusBadRequest || r.problemCode() != "invalid_cursor" {
			t.Fatalf("bad cursor: %d %s", r.status, r.body)
		}
		r = e.do("GET", "/v1/events/poll?cursor=1&timeout=61", bob.Token, nil, true)
		if r.status != http.StatusBadRequest {
			t.Fatalf("timeout 61: %d", r.status)
		}
	})
}

func TestTypingExpiresAndStopsOnSend(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		ec := testEventsConfig(t, store)
		ec.TypingTTL = 400 * time.Millisecond
		e := newEnvWith(t, store, testConfig(), ec)
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		s := e.openStream(bob.Token, streamOpts{})
		cursor := s.ready()
		type typing struct {
			ConversationID string `json:"conversation_id"`
			UserID         string `json:"user_id"`
			Typing         bool   `json:"typing"`
		}
		nextTyping := func() typing {
			var ty typing
			ev := s.nextOf("typing", 5*time.Second)
			if err := json.Unmarshal([]byte(ev.Data), &ty); err != nil {
				t.Fatal(err)
			}
			return ty
		}
		e.must(http.StatusNoContent, "POST", "/v1/conversations/"+g.ID+"/typing", alice.Token, map[string]bool{"typing": true})
		if ty := nextTyping(); !ty.Typing || ty.UserID != alice.ID || ty.ConversationID != g.ID {
			t.Fatalf("typing start: %+v", ty)
		}
		// Poll clients see the state too.
		if p := e.poll(bob.Token, "cursor=1&timeout=0"); len(p.Typing) != 1 || p.Typing[0].UserID != alice.ID {
			t.Fatalf("poll typing: %+v", p.Typing)
		}
		// No stop is sent: it expires by itself.
		if ty := nextTyping(); ty.Typing {
			t.Fatalf("want expiry, got %+v", ty)
		}
		if p := e.poll(bob.Token, "cursor="+cursor+"&timeout=0"); len(p.Typing) != 0 {
			t.Fatalf("poll typing after expiry: %+v", p.Typing)
		}
		// A sent message ends typing at once.
		e.must(http.StatusNoContent, "POST", "/v1/conversations/"+g.ID+"/typing", alice.Token, map[string]bool{"typing": true})
		nextTyping()
		e.send(alice, g.ID, "done typing")
		if ty := nextTyping(); ty.Typing {
			t.Fatalf("want stop on send, got %+v", ty)
		}
		// Typing is never a durable event.
		// (The stream's head may come before the group's creation.)
		p := e.poll(bob.Token, "cursor="+cursor+"&timeout=0")
		var types []string
		for _, ev := range p.Events {
			if ev.Type != "conversation.created" {
				types = append(types, ev.Type)
			}
		}
		if fmt.Sprint(types) != "[message.created]" {
			t.Fatalf("stream holds more than the message: %v", types)
		}
	})
}

func TestTypingIsRateLimited(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.TypingBurst, cfg.TypingInterval = 3, time.Minute
		e := newEnv(t, store, cfg)
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		for range 3 {
			e.must(http.StatusNoContent, "POST", "/v1/conversations/"+g.ID+"/typing", alice.Token, map[string]bool{"typing": true})
		}
		r := e.do("POST", "/v1/conversations/"+g.ID+"/typing", alice.Token, map[string]bool{"typing": true})
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || r.problemCode() != "rate_limited" {
			t.Fatalf("4th ping: %d %v %s", r.status, r.header, r.body)
		}
		// Another conversation has its own budget.
		g2 := e.group(alice, bob)
		e.must(http.StatusNoContent, "POST", "/v1/conversations/"+g2.ID+"/typing", alice.Token, map[string]bool{"typing": true})
	})
}

func TestPresenceAndSessions(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		e.group(alice, bob)
		watch := e.openStream(alice.Token, streamOpts{})
		watch.ready()
		presence := func() (string, bool) {
			var p struct {
				UserID string `json:"user_id"`
				Online bool   `json:"online"`
			}
			json.Unmarshal([]byte(watch.nextOf("presence", 5*time.Second).Data), &p)
			return p.UserID, p.Online
		}
		// alice's own stream made her online; only bob matters here.
		sessions := func() []string {
			var list struct {
				Sessions []struct {
					Transport string `json:"transport"`
				} `json:"sessions"`
			}
			e.must(http.StatusOK, "GET", "/v1/sessions", bob.Token, nil).decode(t, &list)
			var out []string
			for _, s := range list.Sessions {
				out = append(out, s.Transport)
			}
			return out
		}
		s1 := e.openStream(bob.Token, streamOpts{})
		s1.ready()
		if u, on := presence(); u != bob.ID || !on {
			t.Fatalf("presence %s %v, want bob online", u, on)
		}
		s2 := e.openStream(bob.Token, streamOpts{})
		s2.ready()
		if got := sessions(); len(got) != 2 || got[0] != "sse" {
			t.Fatalf("sessions %v", got)
		}
		s1.close()
		eventually(t, 5*time.Second, "one session left", func() bool { return len(sessions()) == 1 })
		s2.close()
		eventually(t, 5*time.Second, "no session left", func() bool { return len(sessions()) == 0 })
		// (alice may hear "online" twice: the group's creation introduced
		// them to each other while bob's first stream opened.)
		for {
			u, on := presence()
			if u != bob.ID {
				t.Fatalf("presence of %s, want bob's", u)
			}
			if !on {
				break
			}
		}
	})
}

func TestStreamAuth(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice := e.register("alice")
		// Cookie, as EventSource sends it.
		e.openStream("", streamOpts{cookie: alice.Token}).ready()
		// Query parameter, the last resort.
		e.openStream(alice.Token, streamOpts{queryToken: true}).ready()
		if _, status := e.tryStream("", streamOpts{}); status != http.StatusUnauthorized {
			t.Fatalf("no token: %d", status)
		}
		if _, status := e.tryStream("", streamOpts{cookie: "garbage"}); status != http.StatusUnauthorized {
			t.Fatalf("bad cookie: %d", status)
		}
		// The cookie opens only the stream endpoints: no CSRF surface.
		r := e.doWith("GET", "/v1/me", http.Header{"Cookie": {"confab_token=" + alice.Token}}, nil, false)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("/v1/me with cookie only: %d", r.status)
		}
	})
}

func TestStreamEndsWhenTokenExpires(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.AccessTTL = 2 * time.Second
		e := newEnv(t, store, cfg)
		alice := e.register("alice")
		s := e.openStream(alice.Token, streamOpts{})
		s.ready()
		if !s.ended(10 * time.Second) {
			t.Fatal("stream outlived its token")
		}
		if api.PooledStreams(e.srv) >= 0 {
			eventually(t, 5*time.Second, "the stream's log line", func() bool { return strings.Contains(e.logs.String(), `"ended":"expired"`) })
		}
	})
}

func TestSSEFramingKeepsBodiesIntact(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		s := e.openStream(bob.Token, streamOpts{})
		cursor := s.ready()
		bodies := []string{
			"line one\nline two",
			"carriage\rreturn",
			"windows\r\nline",
			"event: evil\ndata: injected\n\nid: 999",
			": not a comment",
			"\n\n\n.",
			"retry: 1\r\n\r\nid: 5",
			"unicode \u2028 and \u2029 separators",
		}
		for _, b := range bodies {
			e.send(alice, g.ID, b)
		}
		got := s.messages(len(bodies), cursor)
		for i, b := range bodies {
			if got[i].Body != b {
				t.Errorf("body %d: got %q, want %q", i, got[i].Body, b)
			}
		}
	})
}

func TestSSEParser(t *testing.T) {
	in := "retry: 1500\r\n: a comment\r\nid: 1\nevent: a\ndata: x\ndata:  y\r\rdata: no event field\n\nid: bad\x00id\ndata: z\n\nevent: lonely\n\n"
	evs, p := parseSSE(strings.NewReader(in))
	want := []sseEvent{{ID: "1", Type: "a", Data: "x\n y"}, {ID: "1", Type: "message", Data: "no event field"}, {ID: "1", Type: "message", Data: "z"}}
	if len(evs) != len(want) {
		t.Fatalf("events %+v", evs)
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, evs[i], want[i])
		}
	}
	if p.retry != 1500 || len(p.comments) != 1 || p.comments[0] != "a comment" {
		t.Errorf("retry %d comments %q", p.retry, p.comments)
	}
}

// TestSlowConsumerIsDisconnected: a client that stops reading is cut off
// (its buffer stays full and its writes time out) while others keep up.
func TestSlowConsumerIsDisconnected(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.StreamWriteTimeout = 500 * time.Millisecond
		ec := testEventsConfig(t, store)
		ec.Hub.Buffer, ec.Hub.SlowAfter = 16, 500*time.Millisecond
		e := newEnvWith(t, store, cfg, ec)
		alice, bob, carol := e.register("alice"), e.register("bob"), e.register("carol")
		g := e.group(alice, bob, carol)
		// A raw connection that sends the request and never reads, with a
		// small receive buffer so the server's writes block soon.
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		stuck, err := d.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer stuck.Close()
		fmt.Fprintf(stuck, "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", bob.Token)
		eventually(t, 5*time.Second, "the stuck stream's session", func() bool {
			return e.sessionCount(bob.Token) == 1
		})
		fast := e.openStream(carol.Token, streamOpts{})
		cursor := fast.ready()
		const n = 1500
		body := strings.Repeat("x", 4000)
		var wg sync.WaitGroup
		wg.Go(func() {
			for range n {
				e.send(alice, g.ID, body)
			}
		})
		seen := fast.messages(n, cursor)
		wg.Wait()
		eventually(t, 10*time.Second, "the stuck stream's session to end", func() bool {
			return e.sessionCount(bob.Token) == 0
		})
		if api.PooledStreams(e.srv) >= 0 {
			// Cut by its write timeout or by the hub for staying behind.
			eventually(t, 5*time.Second, "the stuck stream's log line", func() bool {
				logs := e.logs.String()
				return strings.Contains(logs, `"ended":"write_timeout"`) || strings.Contains(logs, `"ended":"slow_consumer"`)
			})
		}
		// It resumes from its cursor with nothing lost.
		p := e.poll(bob.Token, "cursor="+cursor+"&timeout=0")
		if len(p.Events) == 0 || p.Events[0].Position != seen[0].Pos {
			t.Fatalf("resume after disconnect: %d events", len(p.Events))
		}
	})
}

// TestStreamOutlivesServerTimeouts: the stream survives read and idle
// timeouts far shorter than its life, and heartbeats keep an idle stream
// visibly alive.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.StreamHeartbeat = 200 * time.Millisecond
		e := newEnvWith(t, store, cfg, testEventsConfig(t, store), func(hs *http.Server) {
			hs.ReadTimeout, hs.ReadHeaderTimeout, hs.IdleTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
		})
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		s := e.openStream(bob.Token, streamOpts{})
		cursor := s.ready()
		for i := range 8 { // 8 heartbeats: well past every server timeout
			select {
			case c := <-s.comments:
				if c != "ping" {
					t.Fatalf("comment %q", c)
				}
			case <-time.After(2 * time.Second):
				t.Fatalf("no heartbeat %d", i)
			}
		}
		e.send(alice, g.ID, "still there?")
		s.messages(1, cursor)
	})
}

// TestDeadNodeSessionsExpire: sessions of a node that stopped heartbeating
// (it crashed) disappear on their own.
func TestDeadNodeSessionsExpire(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		bob := e.register("bob")
		ctx := t.Context()
		if _, err := store.HeartbeatNode(ctx, "crashed-node"); err != nil {
			t.Fatal(err)
		}
		if _, err := store.CreateSession(ctx, bob.ID, "sse", "crashed-node", "curl"); err != nil {
			t.Fatal(err)
		}
		if n := e.sessionCount(bob.Token); n != 1 {
			t.Fatalf("%d sessions while the node is alive", n)
		}
		// The node never heartbeats again; the live node expires it.
		eventually(t, 10*time.Second, "the dead node's session to expire", func() bool {
			if e.sessionCount(bob.Token) != 0 {
				return false
			}
			var n int
			store.DB().NewSelect().TableExpr("sessions").ColumnExpr("count(*)").Where("node = ?", "crashed-node").Scan(ctx, &n)
			return n == 0
		})
	})
}

// sessionCount is the number of live sessions GET /v1/sessions lists.
func (e *env) sessionCount(token string) int {
	e.t.Helper()
	var list struct {
		Sessions []json.RawMessage `json:"sessions"`
	}
	e.must(http.StatusOK, "GET", "/v1/sessions", token, nil).decode(e.t, &list)
	return len(list.Sessions)
}

// TestStreamStartsWithPresenceSnapshot: a new stream learns at once which
// of the user's contacts are online, not only later changes.
func TestStreamStartsWithPresenceSnapshot(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob, carol := e.register("alice"), e.register("bob"), e.register("carol")
		e.group(alice, bob)
		e.openStream(bob.Token, streamOpts{}).ready()
		e.openStream(carol.Token, streamOpts{}).ready() // online, but no contact of alice
		s := e.openStream(alice.Token, streamOpts{})
		s.ready()
		ev := s.next(5 * time.Second)
		if ev.Type != "presence" || ev.Data != `{"online":true,"user_id":"`+bob.ID+`"}` {
			t.Fatalf("first frame after ready: %+v", ev)
		}
	})
}

// TestExpiredNodeRestoresItsSessions: when another node takes this one for
// dead (as after a database outage longer than the expiry) and deletes its
// sessions, its next heartbeat puts them back.
func TestExpiredNodeRestoresItsSessions(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		bob := e.register("bob")
		e.openStream(bob.Token, streamOpts{}).ready()
		if n := e.sessionCount(bob.Token); n != 1 {
			t.Fatalf("%d sessions", n)
		}
		users, err := store.ExpireNodes(t.Context(), time.Now().Add(time.Hour)) // every node looks dead
		if err != nil || len(users) != 1 || users[0] != bob.ID {
			t.Fatalf("expired %v: %v", users, err)
		}
		eventually(t, 10*time.Second, "the session to be restored", func() bool { return e.sessionCount(bob.Token) == 1 })
	})
}
