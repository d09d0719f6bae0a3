package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
)

// sseEvent is one dispatched event, as an EventSource would see it.
type sseEvent struct {
	ID   string // the last event ID after this event
	Type string
	Data string
}

// sseParser implements the WHATWG "interpret an event stream" rules: lines
// end in CRLF, LF or CR; a leading ':' is a comment; "field: value" loses
// one leading space; data lines join with LF; an empty line dispatches; an
// id containing NUL is ignored; the last event ID persists across events.
type sseParser struct {
	lastID   string
	typ      string
	data     bytes.Buffer
	hasData  bool
	retry    int
	comments []string
}

// feedLine processes one line and returns an event when it dispatches one.
func (p *sseParser) feedLine(line string) (sseEvent, bool) {
	if line == "" {
		if !p.hasData {
			p.typ = ""
			return sseEvent{}, false
		}
		data := strings.TrimSuffix(p.data.String(), "\n")
		ev := sseEvent{ID: p.lastID, Type: p.typ, Data: data}
		if ev.Type == "" {
			ev.Type = "message"
		}
		p.typ, p.hasData = "", false
		p.data.Reset()
		return ev, true
	}
	if strings.HasPrefix(line, ":") {
		p.comments = append(p.comments, strings.TrimPrefix(line[1:], " "))
		return sseEvent{}, false
	}
	field, value, found := strings.Cut(line, ":")
	if found {
		value = strings.TrimPrefix(value, " ")
	}
	switch field {
	case "event":
		p.typ = value
	case "data":
		p.data.WriteString(value)
		p.data.WriteByte('\n')
		p.hasData = true
	case "id":
		if !strings.ContainsRune(value, 0) {
			p.lastID = value
		}
	case "retry":
		if n, err := strconv.Atoi(value); err == nil {
			p.retry = n
		}
	}
	return sseEvent{}, false
}

// splitSSELines is a bufio.SplitFunc for CRLF, LF and lone CR line ends.
func splitSSELines(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		switch b {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if atEOF {
				return i + 1, data[:i], nil
			}
			return 0, nil, nil // need the next byte to know
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// parseSSE parses a whole stream (for parser tests).
func parseSSE(r io.Reader) ([]sseEvent, *sseParser) {
	p := &sseParser{}
	sc := bufio.NewScanner(r)
	sc.Split(splitSSELines)
	var out []sseEvent
	for sc.Scan() {
		if ev, ok := p.feedLine(sc.Text()); ok {
			out = append(out, ev)
		}
	}
	return out, p
}

// sseConn is a live stream read in the background.
type sseConn struct {
	t        testing.TB
	res      *http.Response
	cancel   context.CancelFunc
	events   chan sseEvent
	comments chan string
	done     chan struct{}
	parser   *sseParser
}

// streamOpts say how to open a stream.
type streamOpts struct {
	lastEventID string // Last-Event-ID header
	query       string // extra query, e.g. "last_event_id=3"
	cookie      string // send the token as the confab_token cookie
	queryToken  bool   // send the token as ?access_token=
}

// openStream opens GET /v1/events and fails the test unless it is a 200
// event stream.
func (e *env) openStream(token string, o streamOpts) *sseConn {
	e.t.Helper()
	s, status := e.tryStream(token, o)
	if status != http.StatusOK {
		e.t.Fatalf("GET /v1/events: status %d", status)
	}
	return s
}

func (e *env) tryStream(token string, o streamOpts) (*sseConn, int) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u := e.url + "/v1/events"
	q := o.query
	if o.queryToken {
		if q != "" {
			q += "&"
		}
		q += "access_token=" + token
	}
	if q != "" {
		u += "?" + q
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	req.Header.Set("Accept", "text/event-stream")
	switch {
	case o.cookie != "":
		req.AddCookie(&http.Cookie{Name: "confab_token", Value: o.cookie})
	case !o.queryToken && token != "":
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if o.lastEventID != "" {
		req.Header.Set("Last-Event-ID", o.lastEventID)
	}
	res, err := e.client.Do(req)
	if err != nil {
		cancel()
		e.t.Fatalf("GET /v1/events: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		cancel()
		return nil, res.StatusCode
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		e.t.Errorf("Content-Type %q", ct)
	}
	s := &sseConn{t: e.t, res: res, cancel: cancel, events: make(chan sseEvent, 10000), comments: make(chan string, 100), done: make(chan struct{}), parser: &sseParser{}}
	go s.read()
	e.t.Cleanup(s.close)
	return s, http.StatusOK
}

func (s *sseConn) read() {
	defer close(s.done)
	defer close(s.events)
	sc := bufio.NewScanner(s.res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Split(splitSSELines)
	for sc.Scan() {
		n := len(s.parser.comments)
		if ev, ok := s.parser.feedLine(sc.Text()); ok {
			s.events <- ev
		}
		if len(s.parser.comments) > n {
			select {
			case s.comments <- s.parser.comments[n]:
			default:
			}
		}
	}
}

func (s *sseConn) close() {
	s.cancel()
	s.res.Body.Close()
	<-s.done
}

// next returns the next event, failing the test after timeout.
func (s *sseConn) next(timeout time.Duration) sseEvent {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatal("stream ended")
		}
		return ev
	case <-time.After(timeout):
		s.t.Fatalf("no event within %v", timeout)
	}
	return sseEvent{}
}

// nextOf skips events of other types (typing, presence) until one of typ.
func (s *sseConn) nextOf(typ string, timeout time.Duration) sseEvent {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev := s.next(time.Until(deadline))
		if ev.Type == typ {
			return ev
		}
	}
}

// ended reports whether the server closed the stream within timeout.
func (s *sseConn) ended(timeout time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// ready reads the first frame, which must be `ready`, and returns its cursor.
func (s *sseConn) ready() string {
	s.t.Helper()
	ev := s.next(5 * time.Second)
	if ev.Type != "ready" {
		s.t.Fatalf("first frame is %q, want ready", ev.Type)
	}
	var d struct {
		Cursor    string `json:"cursor"`
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || d.SessionID == "" || d.Cursor == "" {
		s.t.Fatalf("ready data %q: %v", ev.Data, err)
	}
	// The cursor is the ready frame's id too, so EventSource resumes there.
	if ev.ID != d.Cursor {
		s.t.Fatalf("ready id %q, cursor %s", ev.ID, d.Cursor)
	}
	return d.Cursor
}

// messages reads n message.created events (skipping ephemeral ones) and
// checks their positions come after `after`, each past the one before.
// Each message carries its event's position in Pos.
func (s *sseConn) messages(n int, after string) []message {
	s.t.Helper()
	var out []message
	for len(out) < n {
		ev := s.nextOf("message.created", 10*time.Second)
		if !posLess(s.t, after, ev.ID) {
			s.t.Fatalf("position %s after %s", ev.ID, after)
		}
		after = ev.ID
		var d struct {
			Message message `json:"message"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
			s.t.Fatal(err)
		}
		d.Message.Pos = ev.ID
		out = append(out, d.Message)
	}
	return out
}

// posLess reports whether position a comes before b. Clients never compare
// positions; tests do, to check the order the server promises.
func posLess(t testing.TB, a, b string) bool {
	t.Helper()
	pa, err1 := repository.ParsePosition(a)
	pb, err2 := repository.ParsePosition(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("positions %q, %q: %v %v", a, b, err1, err2)
	}
	return pa.Less(pb)
}
