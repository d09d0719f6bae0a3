package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confab-chat/confab/api"
	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// pollClient speaks HTTP/1.1 on one connection, request by request, so a
// test sees which connection serves what.
type pollClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialPoller(t *testing.T, url string) *pollClient {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &pollClient{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// send writes raw request bytes.
func (c *pollClient) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, raw); err != nil {
		c.t.Fatal(err)
	}
}

// read reads the next response, body included.
func (c *pollClient) read() (*http.Response, []byte) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return res, body
}

// pollRequest is a poll as a client library writes it.
func pollRequest(token, session, cursor, timeout string, extra ...string) string {
	return "GET /v1/events/poll?session_id=" + session + "&cursor=" + cursor + "&timeout=" + timeout + " HTTP/1.1\r\n" +
		"Host: confab.test\r\nAuthorization: Bearer " + token + "\r\nUser-Agent: poller/1\r\n" + strings.Join(extra, "") + "\r\n"
}

// poll sends a poll and decodes its 200 answer.
func (c *pollClient) poll(raw string) (*http.Response, pollResult) {
	c.t.Helper()
	c.send(raw)
	res, body := c.read()
	if res.StatusCode != http.StatusOK {
		c.t.Fatalf("poll: %d %s", res.StatusCode, body)
	}
	var p pollResult
	if err := json.Unmarshal(body, &p); err != nil {
		c.t.Fatalf("poll answer %q: %v", body, err)
	}
	return res, p
}

// headerNames are a response's header names but Date's and
// X-Request-Id's, whose values vary, with the values of the others.
func headerNames(h http.Header) []string {
	var out []string
	for k, v := range h {
		if k != "Date" && k != "X-Request-Id" && k != "Content-Length" {
			out = append(out, k+": "+strings.Join(v, ","))
		}
	}
	slices.Sort(out)
	return out
}

// TestPollConnectionTakenOver: once a poller carrying its session has been
// answered on a plain HTTP/1.1 connection, its next polls there are served
// outside net/http with the same answers and headers, events arrive on
// them, and the client's X-Request-Id is echoed as the router echoes it.
func TestPollConnectionTakenOver(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		first := e.poll(bob.Token, "")
		c := dialPoller(t, e.url)
		routed, p := c.poll(pollRequest(bob.Token, first.SessionID, first.Cursor, "0"))
		if p.SessionID != first.SessionID || p.Cursor != first.Cursor || len(p.Events) != 0 {
			t.Fatalf("first poll: %+v", p)
		}
		eventually(t, 5*time.Second, "the connection taken over", func() bool { return api.TakenPolls(e.srv) == 1 })
		fast, p := c.poll(pollRequest(bob.Token, first.SessionID, first.Cursor, "0", "X-Request-Id: poll-42\r\n"))
		if p.SessionID != first.SessionID || p.Cursor != first.Cursor || len(p.Events) != 0 {
			t.Fatalf("fast poll: %+v", p)
		}
		if a, b := headerNames(routed.Header), headerNames(fast.Header); !slices.Equal(a, b) {
			t.Fatalf("headers differ:\nrouter %q\nfast   %q", a, b)
		}
		if id := fast.Header.Get("X-Request-Id"); id != "poll-42" {
			t.Fatalf("X-Request-Id %q", id)
		}
		if fast.ContentLength <= 0 || fast.Close {
			t.Fatalf("fast answer framing: length %d, close %v", fast.ContentLength, fast.Close)
		}
		// A poll that waits is answered by a send.
		c.send(pollRequest(bob.Token, first.SessionID, first.Cursor, "20"))
		time.Sleep(100 * time.Millisecond)
		msg := e.send(alice, g.ID, "to the poller")
		res, body := c.read()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), msg.ID) {
			t.Fatalf("waiting poll: %d %s", res.StatusCode, body)
		}
		var got pollResult
		json.Unmarshal(body, &got)
		// Pipelined: two polls written at once are answered in order.
		c.send(pollRequest(bob.Token, first.SessionID, got.Cursor, "0") + pollRequest(bob.Token, first.SessionID, first.Cursor, "0"))
		_, b1 := c.read()
		_, b2 := c.read()
		if strings.Contains(string(b1), msg.ID) || !strings.Contains(string(b2), msg.ID) {
			t.Fatalf("pipelined answers:\n%s\n%s", b1, b2)
		}
		if n := api.TakenPolls(e.srv); n != 1 {
			t.Fatalf("%d connections taken over", n)
		}
		if m := e.metrics(); !strings.Contains(m, "confab_poll_connections 1") {
			t.Fatalf("metrics do not count the connection:\n%s", m)
		}
	})
}

// TestPollConnectionHandsBack: whatever the fast path does not serve as a
// plain poll, on a connection it took over, is served by the router as on
// any connection: another route, a bad parameter, a bad token, a
// cross-origin poll, a head too long, bare LFs. The connection stays
// usable throughout.
func TestPollConnectionHandsBack(t *testing.T) {
	e := newEnv(t, dbtest.Open(t, "sqlite"), testConfig())
	alice, bob := e.register("alice"), e.register("bob")
	g := e.group(alice, bob)
	first := e.poll(bob.Token, "")
	c := dialPoller(t, e.url)
	plain := pollRequest(bob.Token, first.SessionID, first.Cursor, "0")
	c.poll(plain)
	eventually(t, 5*time.Second, "the connection taken over", func() bool { return api.TakenPolls(e.srv) == 1 })

	body := `{"body":"from the poll connection"}`
	c.send("POST /v1/conversations/" + g.ID + "/messages HTTP/1.1\r\nHost: confab.test\r\nAuthorization: Bearer " + bob.Token +
		"\r\nContent-Type: application/json\r\nContent-Length: " + itoa(int64(len(body))) + "\r\n\r\n" + body)
	if res, b := c.read(); res.StatusCode != http.StatusCreated {
		t.Fatalf("send on a poll connection: %d %s", res.StatusCode, b)
	}
	problems := []struct {
		name, raw string
		status    int
		code      string
	}{
		{"timeout out of range", pollRequest(bob.Token, first.SessionID, first.Cursor, "61"), 400, "invalid_field"},
		{"bad cursor", pollRequest(bob.Token, first.SessionID, "x-y", "0"), 400, "invalid_cursor"},
		{"bad token", pollRequest("not-a-token", first.SessionID, first.Cursor, "0"), 401, "unauthorized"},
		{"wrong route", "GET /v1/events/pollx HTTP/1.1\r\nHost: confab.test\r\nAuthorization: Bearer " + bob.Token + "\r\n\r\n", 404, "not_found"},
	}
	for _, tc := range problems {
		c.poll(plain) // taken over again
		c.send(tc.raw)
		res, b := c.read()
		if res.StatusCode != tc.status || res.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(b), `"code":"`+tc.code+`"`) {
			t.Fatalf("%s: %d %s %s", tc.name, res.StatusCode, res.Header.Get("Content-Type"), b)
		}
	}
	// A cross-origin poll gets the router's CORS headers (from an origin
	// the server allows; none is here, so none are set) and its answer.
	c.poll(plain)
	res, _ := c.poll(pollRequest(bob.Token, first.SessionID, first.Cursor, "0", "Origin: https://elsewhere.test\r\n"))
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS for an origin not allowed: %v", res.Header)
	}
	// A head longer than the fast path reads.
	c.poll(plain)
	c.poll(pollRequest(bob.Token, first.SessionID, first.Cursor, "0", "X-Padding: "+strings.Repeat("p", 6000)+"\r\n"))
	// Lines ended by LF alone, which net/http accepts.
	c.poll(plain)
	c.poll(strings.ReplaceAll(plain, "\r\n", "\n"))
	c.poll(plain)
	eventually(t, 5*time.Second, "the connection taken over again", func() bool { return api.TakenPolls(e.srv) == 1 })
	// A stream on the same connection: the pool gets the socket itself,
	// whatever went back and forth before.
	c.send("GET /v1/events HTTP/1.1\r\nHost: confab.test\r\nAuthorization: Bearer " + bob.Token + "\r\n\r\n")
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(c.br, nil)
	if err != nil || res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream on a poll connection: %v %v", res, err)
	}
	line := ""
	for !strings.HasPrefix(line, "event: ready") {
		if line, err = c.br.ReadString('\n'); err != nil {
			t.Fatalf("stream on a poll connection: %v", err)
		}
	}
}

// TestPollConnectionCloses: a taken-over connection closes when the client
// asks (Connection: close), when a head stalls or trickles past
// ReadHeaderTimeout, and
// at shutdown, where a waiting poll answers at once (its client resumes
// elsewhere from its cursor).
func TestPollConnectionCloses(t *testing.T) {
	store := dbtest.Open(t, "sqlite")
	e := newEnvWith(t, store, testConfig(), testEventsConfig(t, store), func(hs *http.Server) { hs.ReadHeaderTimeout = 300 * time.Millisecond })
	bob := e.register("bob")
	first := e.poll(bob.Token, "")
	plain := pollRequest(bob.Token, first.SessionID, first.Cursor, "0")
	taken := func(c *pollClient) {
		t.Helper()
		c.poll(plain)
		c.poll(plain)
	}

	c := dialPoller(t, e.url)
	taken(c)
	res, _ := c.poll(pollRequest(bob.Token, first.SessionID, first.Cursor, "0", "Connection: close\r\n"))
	if !res.Close {
		t.Fatal("no Connection: close on the answer to a client that asked")
	}
	expectClosed(t, c)

	c = dialPoller(t, e.url)
	taken(c)
	c.send(plain[:40])
	expectClosed(t, c)

	// A head trickled a byte at a time does not move the deadline.
	c = dialPoller(t, e.url)
	taken(c)
	began := time.Now()
	go func(conn net.Conn) {
		for i := range 40 {
			if _, err := io.WriteString(conn, plain[i:i+1]); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}(c.conn)
	expectClosed(t, c)
	if d := time.Since(began); d > 1500*time.Millisecond {
		t.Fatalf("a trickled head held the connection for %v", d)
	}

	c = dialPoller(t, e.url)
	taken(c)
	c.send(pollRequest(bob.Token, first.SessionID, first.Cursor, "30"))
	eventually(t, 5*time.Second, "the poll to wait", func() bool { return strings.Contains(e.metrics(), `confab_subscribers{transport="longpoll"} 1`) })
	began = time.Now()
	go e.stop()
	res, _ = c.read()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("waiting poll at shutdown: %d", res.StatusCode)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("shutdown answered the waiting poll after %v", d)
	}
	expectClosed(t, c)
}

// expectClosed waits for the server to close c.
func expectClosed(t *testing.T, c *pollClient) {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection not closed: %d bytes, %v", n, err)
	}
}

// metrics is the node's /metrics page.
func (e *env) metrics() string {
	e.t.Helper()
	res, err := http.Get(e.url + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// TestPollConnectionShutdown: http.Server.Shutdown alone (no broker drain
// before it) ends a poll waiting on a taken-over connection at once, with
// Connection: close, and CloseStreams waits for it.
func TestPollConnectionShutdown(t *testing.T) {
	e := newEnv(t, dbtest.Open(t, "sqlite"), testConfig())
	bob := e.register("bob")
	first := e.poll(bob.Token, "")
	c := dialPoller(t, e.url)
	c.poll(pollRequest(bob.Token, first.SessionID, first.Cursor, "0"))
	c.send(pollRequest(bob.Token, first.SessionID, first.Cursor, "30"))
	eventually(t, 5*time.Second, "the poll to wait", func() bool {
		return strings.Contains(e.metrics(), `confab_subscribers{transport="longpoll"} 1`) && api.TakenPolls(e.srv) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	if err := e.hs.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	res, _ := c.read()
	if res.StatusCode != http.StatusOK || !res.Close {
		t.Fatalf("waiting poll at shutdown: %d, close %v", res.StatusCode, res.Close)
	}
	if err := e.srv.CloseStreams(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if n := api.TakenPolls(e.srv); n != 0 {
		t.Fatalf("%d connections still taken over", n)
	}
	expectClosed(t, c)
}

// takenPoller opens a connection of its own for user, with a session of its
// own (its own User-Agent), and has it taken over: its next plain polls
// are the fast path's. It returns the client, the session and its cursor.
func takenPoller(t *testing.T, e *env, token, agent string) (*pollClient, string, string) {
	t.Helper()
	c := dialPoller(t, e.url)
	_, head := c.poll("GET /v1/events/poll HTTP/1.1\r\nHost: confab.test\r\nAuthorization: Bearer " + token + "\r\nUser-Agent: " + agent + "\r\n\r\n")
	// Routed, with the session: the connection is taken over after it.
	c.poll(pollRequest(token, head.SessionID, head.Cursor, "0"))
	// Served by the fast path, which finds the feed the last poll kept.
	c.poll(pollRequest(token, head.SessionID, head.Cursor, "0"))
	return c, head.SessionID, head.Cursor
}

// TestPollConnectionWaits: polls that wait on taken-over connections hold
// no goroutine each, and a send answers them all; a client that goes away
// while its poll waits is noticed at once, and its session keeps what came
// for its next poll; a poll pipelined behind a waiting one is answered
// after it; a poll that needs the database (somebody is typing) is still
// answered, typing included.
func TestPollConnectionWaits(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		const n = 24 // under the per-user limit of subscriptions
		type waiter struct {
			c               *pollClient
			session, cursor string
		}
		ws := make([]waiter, n)
		for i := range ws {
			c, session, cursor := takenPoller(t, e, bob.Token, "poller/"+itoa(int64(i)))
			ws[i] = waiter{c, session, cursor}
		}
		eventually(t, 5*time.Second, "every connection taken over", func() bool { return api.TakenPolls(e.srv) == n })
		before := e.goroutines()
		if before == 0 {
			t.Fatal("no goroutine carries the env's label")
		}
		for _, w := range ws {
			w.c.send(pollRequest(bob.Token, w.session, w.cursor, "20"))
		}
		eventually(t, 5*time.Second, "every poll waiting", func() bool {
			return strings.Contains(e.metrics(), `confab_subscribers{transport="longpoll"} `+itoa(n))
		})
		if grown := e.goroutines() - before; grown > n/4 {
			t.Fatalf("%d waiting polls took %d goroutines", n, grown)
		} else {
			t.Logf("%d waiting polls: %d goroutines before, %d more after", n, before, grown)
		}
		msg := e.send(alice, g.ID, "to every poller")
		for i, w := range ws {
			res, body := w.c.read()
			var p pollResult
			if json.Unmarshal(body, &p); res.StatusCode != http.StatusOK || !strings.Contains(string(body), msg.ID) {
				t.Fatalf("poller %d: %d %s", i, res.StatusCode, body)
			}
			ws[i].cursor = p.Cursor
		}

		// Gone while its poll waits: the connection closes at once.
		gone := ws[0]
		gone.c.send(pollRequest(bob.Token, gone.session, gone.cursor, "20"))
		eventually(t, 5*time.Second, "the poll waiting", func() bool {
			return strings.Contains(e.metrics(), `confab_subscribers{transport="longpoll"} 1`)
		})
		gone.c.conn.Close()
		eventually(t, 5*time.Second, "the connection closed", func() bool { return api.TakenPolls(e.srv) == n-1 })
		missed := e.send(alice, g.ID, "while the poller was away")
		back := dialPoller(t, e.url)
		back.send(pollRequest(bob.Token, gone.session, gone.cursor, "5"))
		_, body := back.read()
		var p pollResult
		json.Unmarshal(body, &p)
		if len(p.Events) != 1 || !strings.Contains(string(p.Events[0].Data), missed.ID) {
			t.Fatalf("after coming back: %s", body)
		}

		// Pipelined behind a waiting poll: answered after it, in order.
		w := ws[1]
		_, cur := w.c.poll(pollRequest(bob.Token, w.session, w.cursor, "0"))
		w.c.send(pollRequest(bob.Token, w.session, cur.Cursor, "20") + pollRequest(bob.Token, w.session, cur.Cursor, "0"))
		time.Sleep(100 * time.Millisecond)
		third := e.send(alice, g.ID, "to the pipelined poller")
		_, b1 := w.c.read()
		_, b2 := w.c.read()
		for _, b := range [][]byte{b1, b2} {
			if !strings.Contains(string(b), third.ID) {
				t.Fatalf("pipelined answers:\n%s\n%s", b1, b2)
			}
		}

		// Somebody types: the waiting poll answers early, with who. The
		// poller first takes every message sent so far (on Postgres one
		// may reach the node's tail a moment after its send returned).
		w = ws[2]
		last := w.cursor
		for seen := false; !seen; {
			_, p := w.c.poll(pollRequest(bob.Token, w.session, last, "5"))
			last = p.Cursor
			for _, ev := range p.Events {
				seen = seen || strings.Contains(string(ev.Data), third.ID)
			}
		}
		w.c.send(pollRequest(bob.Token, w.session, last, "20"))
		time.Sleep(100 * time.Millisecond)
		e.must(http.StatusNoContent, "POST", "/v1/conversations/"+g.ID+"/typing", alice.Token, map[string]bool{"typing": true})
		res, body := w.c.read()
		var typed pollResult
		if err := json.Unmarshal(body, &typed); err != nil || res.StatusCode != http.StatusOK || len(typed.Typing) != 1 || typed.Typing[0].UserID != alice.ID {
			t.Fatalf("typing: %d %s", res.StatusCode, body)
		}
		// The one that came back is taken over in its place.
		if got := api.TakenPolls(e.srv); got != n {
			t.Fatalf("%d connections taken over, want %d", got, n)
		}
	})
}

// TestPollConnectionTypingReadFails: a taken-over poll whose answer needs
// the database (somebody is typing) and cannot have it is not dropped: the
// router serves it again and answers with its problem, and the pipelined
// poll behind it is served too.
func TestPollConnectionTypingReadFails(t *testing.T) {
	t.Parallel()
	store := dbtest.Open(t, "sqlite")
	e := newEnv(t, store, testConfig())
	alice, bob := e.register("alice"), e.register("bob")
	g := e.group(alice, bob)
	c, session, cursor := takenPoller(t, e, bob.Token, "poller/1")
	e.must(http.StatusNoContent, "POST", "/v1/conversations/"+g.ID+"/typing", alice.Token, map[string]bool{"typing": true})
	// A typing ping is an ephemeral event: the poll gets it, not the
	// next one.
	_, p := c.poll(pollRequest(bob.Token, session, cursor, "0"))
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	c.send(pollRequest(bob.Token, session, p.Cursor, "0", "X-Request-Id: typing-1\r\n") +
		pollRequest(bob.Token, session, p.Cursor, "0", "X-Request-Id: typing-2\r\n"))
	for _, id := range []string{"typing-1", "typing-2"} {
		res, body := c.read()
		var prob api.Problem
		if err := json.Unmarshal(body, &prob); err != nil || res.StatusCode != http.StatusInternalServerError ||
			prob.Code != api.CodeInternal || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("poll %s with the database closed: %d %s %s", id, res.StatusCode, res.Header.Get("Content-Type"), body)
		}
		if got := res.Header.Get("X-Request-Id"); got != id {
			t.Fatalf("answer for %q came for %q", got, id)
		}
	}
}
