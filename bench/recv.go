package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// recipient is one SSE stream or long-poller of one user, and what it saw.
// Only its own goroutine touches the counters until it has exited; last is
// read by the drain while it runs.
type recipient struct {
	user      int
	token     string
	transport string // "sse", "poll" or "catchup"
	round     int64  // messages of this round carry it in their body
	record    bool   // record delivery latencies

	ready     chan struct{} // closed once the starting cursor is known
	readyOnce sync.Once
	exited    chan struct{}

	last    atomic.Int64 // highest seq seen
	msgs    atomic.Int64 // this round's messages received
	started bool
	dups    int64
	gaps    int64
	lat     []int64 // POST start -> frame read, ns
	errs    map[string]int64
}

func newRecipient(user int, token, transport string, round int64, record bool) *recipient {
	return &recipient{user: user, token: token, transport: transport, round: round, record: record,
		ready: make(chan struct{}), exited: make(chan struct{}), errs: map[string]int64{}}
}

func (r *recipient) markReady() { r.readyOnce.Do(func() { close(r.ready) }) }

func (r *recipient) start(cursor int64) {
	if !r.started {
		r.started = true
		r.last.Store(cursor)
	}
	r.markReady()
}

// bodyMarker starts the body of every message the writers send:
// "bench:<round>:<ns since epoch at POST start>".
var bodyMarker = []byte(`"body":"bench:`)

// event accounts for one frame: a durable event must carry the next seq
// of the user's stream, exactly once.
func (r *recipient) event(seq int64, typ string, data []byte) {
	now := since()
	switch {
	case typ == "ready": // carries the cursor, also as its id
		r.start(jsonInt(data, `"cursor":`))
	case typ == "reset":
		// The server could not continue from our cursor: whatever lay
		// between is lost to this client.
		r.errs["reset"]++
		if c := jsonInt(data, `"cursor":`); c > r.last.Load() {
			r.gaps += c - r.last.Load()
			r.last.Store(c)
		}
	case seq > 0:
		last := r.last.Load()
		if seq <= last {
			r.dups++
			return
		}
		r.gaps += seq - last - 1
		r.last.Store(seq)
		if typ != "message.created" {
			return
		}
		i := bytes.Index(data, bodyMarker)
		if i < 0 {
			return
		}
		round, rest := parseInt(data[i+len(bodyMarker):])
		if round != r.round || len(rest) == 0 || rest[0] != ':' {
			return
		}
		sent, _ := parseInt(rest[1:])
		r.msgs.Add(1)
		if r.record {
			r.lat = append(r.lat, now-sent)
		}
	}
}

func parseInt(b []byte) (int64, []byte) {
	var n int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	return n, b[i:]
}

// jsonInt reads the integer after key in a flat JSON object.
func jsonInt(data []byte, key string) int64 {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0
	}
	n, _ := parseInt(bytes.TrimLeft(data[i+len(key):], " "))
	return n
}

// runSSE reads the user's stream until ctx ends, reconnecting with
// Last-Event-ID after a failure as a browser would.
func (r *recipient) runSSE(ctx context.Context, c *client) {
	defer close(r.exited)
	defer r.markReady()
	for ctx.Err() == nil {
		err := r.sseOnce(ctx, c)
		if ctx.Err() != nil {
			return
		}
		r.errs["stream_"+errKind(err)]++
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (r *recipient) sseOnce(ctx context.Context, c *client) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/events", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Accept", "text/event-stream")
	if r.started {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(r.last.Load(), 10))
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return &statusError{status: res.StatusCode}
	}
	br := bufio.NewReaderSize(res.Body, 8<<10)
	var (
		long     []byte
		id       int64
		typ      string
		data     []byte
		haveData bool
	)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if haveData {
				r.event(id, typ, data)
			}
			id, typ, data, haveData = 0, "", data[:0], false
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			id, _ = parseInt(value)
		case "event":
			typ = eventType(value)
		case "data":
			if haveData {
				data = append(data, '\n')
			}
			data, haveData = append(data, value...), true
		}
	}
}

// eventType interns the common types so frames allocate nothing for them.
func eventType(b []byte) string {
	for _, t := range [...]string{"message.created", "ready", "presence", "typing", "reset", "read", "conversation.created", "member.joined", "member.left"} {
		if string(b) == t {
			return t
		}
	}
	return string(b)
}

// runPoll long-polls until ctx ends: first for the head (and a session),
// then from its cursor.
func (r *recipient) runPoll(ctx context.Context, c *client) {
	defer close(r.exited)
	defer r.markReady()
	var session string
	for ctx.Err() == nil {
		var p *pollJSON
		var err error
		if !r.started {
			p = new(pollJSON)
			err = c.do(ctx, "GET", "/v1/events/poll", r.token, nil, p)
		} else {
			p, err = c.poll(ctx, r.token, r.last.Load(), 25, session)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.errs["poll_"+errKind(err)]++
			time.Sleep(200 * time.Millisecond)
			continue
		}
		session = p.SessionID
		if !r.started {
			r.start(p.Cursor)
			continue
		}
		r.pollBatch(p)
	}
}

func (r *recipient) pollBatch(p *pollJSON) {
	if p.Reset {
		r.event(0, "reset", []byte(`{"cursor":`+strconv.FormatInt(p.Cursor, 10)+`}`))
	}
	for _, e := range p.Events {
		r.event(e.Seq, e.Type, e.Data)
	}
}

// catchUp reads the user's stream after `from` up to `to` with
// non-waiting polls: how a client that was away verifies it missed nothing.
func (r *recipient) catchUp(ctx context.Context, c *client, from, to int64) {
	defer close(r.exited)
	r.start(from)
	for r.last.Load() < to && ctx.Err() == nil {
		p, err := c.poll(ctx, r.token, r.last.Load(), 0, "")
		if err != nil {
			r.errs["catchup_"+errKind(err)]++
			return
		}
		before := r.last.Load()
		r.pollBatch(p)
		if r.last.Load() == before {
			return // nothing more: what is missing is lost
		}
	}
}
