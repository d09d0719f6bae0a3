package api_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/confab-chat/confab/api"
	"github.com/confab-chat/confab/repository/dbtest"
)

// BenchmarkPollAnswer measures one long-poll that answers at once, over
// loopback HTTP with Go's client, on SQLite, logging at Info as production
// does: a poller that lost its answer asks again from the same cursor and
// gets the event its session's feed kept. It reads nothing from the
// database, so it measures what every poll pays besides its events: HTTP,
// the session, the feed and the answer, through the router and net/http
// (router) or on the connection the poll fast path took over (fast). The
// client's costs are included; BenchmarkPollFastPath leaves them out.
func BenchmarkPollAnswer(b *testing.B) {
	for _, fast := range []bool{false, true} {
		name := map[bool]string{false: "router", true: "fast"}[fast]
		b.Run(name, func(b *testing.B) {
			cfg := testConfig()
			cfg.PollTakeover = fast
			benchmarkPollAnswer(b, cfg)
		})
	}
}

// pollBenchSetup gives bob a poll session whose feed keeps one event
// after first's cursor, and logs at Info from then on, as production does.
func (e *env) pollBenchSetup(b *testing.B) (user, pollResult) {
	alice, bob := e.register("alice"), e.register("bob")
	first := e.poll(bob.Token, "")
	e.group(alice, bob)
	if p := e.pollFrom(bob.Token, first.SessionID, first.Cursor, 5); len(p.Events) != 1 {
		b.Fatalf("poll after the group's creation: %+v", p)
	}
	e.logLevel.Set(slog.LevelInfo)
	return bob, first
}

func benchmarkPollAnswer(b *testing.B, cfg api.Config) {
	e := newEnv(b, dbtest.Open(b, "sqlite"), cfg)
	bob, first := e.pollBenchSetup(b)
	req, err := http.NewRequest("GET", e.url+"/v1/events/poll?timeout=0&cursor="+url.QueryEscape(first.Cursor)+"&session_id="+first.SessionID, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+bob.Token)
	req.Header.Set("User-Agent", "bench")
	client := &http.Client{}
	b.ReportAllocs()
	for b.Loop() {
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatal(res.Status)
		}
	}
}

// BenchmarkPollFastPath is BenchmarkPollAnswer on a connection the poll
// fast path has taken over (api/pollconn.go), with a client that reads and
// writes raw bytes into buffers of its own: its allocations are the
// server's, per poll.
func BenchmarkPollFastPath(b *testing.B) {
	e := newEnv(b, dbtest.Open(b, "sqlite"), testConfig())
	bob, first := e.pollBenchSetup(b)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := []byte("GET /v1/events/poll?timeout=0&cursor=" + first.Cursor + "&session_id=" + first.SessionID + " HTTP/1.1\r\n" +
		"Host: confab.test\r\nAuthorization: Bearer " + bob.Token + "\r\nUser-Agent: bench\r\n\r\n")
	buf := make([]byte, 16<<10)
	poll := func() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		// One answer: its head, then Content-Length bytes.
		n, want := 0, -1
		for want < 0 || n < want {
			k, err := conn.Read(buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += k
			if want < 0 {
				if end := bytes.Index(buf[:n], []byte("\r\n\r\n")); end >= 0 {
					i := bytes.Index(buf[:end], []byte("Content-Length: "))
					if i < 0 || !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) {
						b.Fatalf("answer: %s", buf[:n])
					}
					length := 0
					for _, c := range buf[i+len("Content-Length: ") : end] {
						if c < '0' || c > '9' {
							break
						}
						length = length*10 + int(c-'0')
					}
					want = end + 4 + length
				}
			}
		}
	}
	before := api.TakenPolls(e.srv)
	poll()
	poll()
	if n := api.TakenPolls(e.srv); n != before+1 {
		b.Fatalf("%d connections taken over, want %d", n, before+1)
	}
	b.ReportAllocs()
	for b.Loop() {
		poll()
	}
}
