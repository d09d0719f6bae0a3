package api_test

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
)

// logLine is one JSON line of the server's log, the fields these tests read.
type logLine struct {
	Level     string `json:"level"`
	Msg       string `json:"msg"`
	Path      string `json:"path"`
	Query     string `json:"query"`
	Status    int    `json:"status"`
	SessionID string `json:"session_id"`
	UserID    string `json:"user_id"`
	Polls     int    `json:"polls"`
	Events    int    `json:"events"`
	Ended     string `json:"ended"`
}

func (e *env) logLines(t *testing.T) []logLine {
	t.Helper()
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// TestPollLogging: a successful long-poll's request line is at Debug (a
// poller makes one request per delivery); its session logs one line at
// Info when it ends, with its polls and events; a failed poll and every
// other request keep their line at Info. Production logs at Info.
func TestPollLogging(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		first := e.poll(bob.Token, "")
		s := first.SessionID
		g := e.group(alice, bob)
		e.send(alice, g.ID, "one")
		p := e.pollFrom(bob.Token, s, first.Cursor, 5)
		for len(p.Events) < 2 { // conversation.created, message.created
			q := e.pollFrom(bob.Token, s, p.Cursor, 5)
			q.Events = append(p.Events, q.Events...)
			p = q
		}
		if r := e.do("GET", "/v1/events/poll?timeout=61&access_token="+bob.Token, "", nil, true); r.status != http.StatusBadRequest {
			t.Fatalf("timeout 61: %d", r.status)
		}

		var polls, failed int
		for _, l := range e.logLines(t) {
			if l.Msg != "request" || l.Path != "/v1/events/poll" {
				continue
			}
			switch {
			case l.Status == http.StatusOK && l.Level == "DEBUG":
				polls++
			case l.Status == http.StatusBadRequest && l.Level == "INFO":
				failed++
				if strings.Contains(l.Query, bob.Token) || !strings.Contains(l.Query, "REDACTED") {
					t.Fatalf("query logged as %q", l.Query)
				}
			default:
				t.Fatalf("poll logged as %+v", l)
			}
		}
		if polls < 2 || failed != 1 {
			t.Fatalf("%d successful polls at Debug, %d failed at Info; want >= 2, 1:\n%s", polls, failed, e.logs)
		}
		// The other requests: at Info.
		for _, l := range e.logLines(t) {
			if l.Msg == "request" && l.Path != "/v1/events/poll" && l.Level != "INFO" {
				t.Fatalf("request logged as %+v", l)
			}
		}

		// At Info, as in production, a successful poll writes nothing.
		e.logLevel.Set(slog.LevelInfo)
		before := len(e.logLines(t))
		p = e.pollFrom(bob.Token, s, p.Cursor, 0)
		polls++
		for _, l := range e.logLines(t)[before:] {
			if l.Msg == "request" {
				t.Fatalf("a successful poll logged at Info: %+v", l)
			}
		}

		// The session ends when it stops polling (PollIdle, 3 s here).
		var ended *logLine
		eventually(t, 10*time.Second, "the session's line", func() bool {
			for _, l := range e.logLines(t) {
				if l.Msg == "poll session" {
					ended = &l
					return true
				}
			}
			return false
		})
		if ended.Level != "INFO" || ended.SessionID != s || ended.UserID != bob.ID || ended.Polls != polls ||
			ended.Events != 2 || ended.Ended != "idle" {
			t.Fatalf("session logged as %+v, want %d polls and 2 events of session %s", *ended, polls, s)
		}
	})
}
