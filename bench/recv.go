package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confab-chat/confab/repository"
)

// recipient is one SSE stream or long-poller of one user, and what it saw.
//
// A durable event has a position, an opaque string the server orders its
// stream by, which need not be consecutive: the checks are that positions
// strictly increase along the stream, and that the messages of each
// conversation come with the consecutive per-conversation seqs the server
// gave them (message.created data carries it). The final seq of every
// conversation, read after the writers stopped, tells what the end of the
// stream must reach.
//
// Only its own goroutine touches the counters and the position until it
// has exited; the conversations' seqs, msgs and started are read by the
// drain while it runs.
type recipient struct {
	user      int
	token     string
	transport string // "sse", "poll" or "catchup"
	round     int64  // messages of this round carry it in their body
	record    bool   // record delivery latencies

	ready     chan struct{} // closed once the starting cursor is known
	readyOnce sync.Once
	exited    chan struct{}

	// convs are the user's conversations of the fixture, by id: the last
	// message seq seen of each. The map is fixed before the recipient runs.
	convs   map[string]*convSeq
	msgs    atomic.Int64 // this round's messages received
	started atomic.Bool

	pos        repository.Position // last position seen
	dups       int64               // a position or a message seq seen again
	disordered int64               // a position before the last one
	gaps       int64               // message seqs skipped
	lat        []int64             // scheduled send -> frame read, ns
	errs       map[string]int64
}

// convSeq is the last message seq a recipient saw of one conversation.
type convSeq struct{ seq atomic.Int64 }

// newRecipient makes a recipient of user whose conversations (id -> their
// last message seq before the round) are in base.
func newRecipient(user int, token, transport string, round int64, record bool, base map[string]int64) *recipient {
	r := &recipient{user: user, token: token, transport: transport, round: round, record: record,
		ready: make(chan struct{}), exited: make(chan struct{}), errs: map[string]int64{},
		convs: make(map[string]*convSeq, len(base))}
	for id, seq := range base {
		cs := new(convSeq)
		cs.seq.Store(seq)
		r.convs[id] = cs
	}
	return r
}

func (r *recipient) markReady() { r.readyOnce.Do(func() { close(r.ready) }) }

// start sets the position the recipient's stream begins after.
func (r *recipient) start(p repository.Position) {
	if !r.started.Load() {
		r.pos = p
		r.started.Store(true)
	}
	r.markReady()
}

// behind returns how many messages of its conversations r has yet to see
// to reach the seqs in final (conversation id -> last message seq).
func (r *recipient) behind(final map[string]int64) int64 {
	var n int64
	for id, cs := range r.convs {
		n += max(0, final[id]-cs.seq.Load())
	}
	return n
}

// bodyMarker starts the body of every message the writers send:
// "bench:<round>:<ns since epoch at the scheduled send>".
var bodyMarker = []byte(`"body":"bench:`)

// event accounts for one frame. id is the frame's position ("" for a frame
// without one: ready, reset, presence, typing).
func (r *recipient) event(id []byte, typ string, data []byte) {
	now := since()
	switch {
	case typ == "ready": // carries the starting cursor, also as its id
		p, err := repository.ParsePosition(jsonString(data, `"cursor":`))
		if err != nil {
			r.errs["bad_cursor"]++
		}
		r.start(p)
	case typ == "reset":
		// The server could not continue from our cursor: whatever lay
		// between is lost to this client, and shows as skipped message
		// seqs.
		r.errs["reset"]++
		if p, err := repository.ParsePosition(jsonString(data, `"cursor":`)); err == nil && r.pos.Less(p) {
			r.pos = p
		}
	case len(id) > 0:
		p, err := repository.ParsePosition(string(id))
		if err != nil {
			r.errs["bad_position"]++
			return
		}
		switch c := p.Compare(r.pos); {
		case c == 0:
			r.dups++
			return
		case c < 0:
			r.disordered++
			return
		}
		r.pos = p
		if typ == "message.created" {
			r.message(data, now)
		}
	}
}

// message checks a message.created's seq against its conversation's last.
func (r *recipient) message(data []byte, now int64) {
	cs := r.convs[string(jsonStringBytes(data, `"conversation_id":`))]
	if cs == nil {
		return // a conversation this round does not write to
	}
	seq := jsonInt(data, `"seq":`)
	if seq < 0 {
		r.errs["message_without_seq"]++
		return
	}
	last := cs.seq.Load()
	if seq <= last {
		r.dups++
		return
	}
	r.gaps += seq - last - 1
	cs.seq.Store(seq)
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

func parseInt(b []byte) (int64, []byte) {
	var n int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	return n, b[i:]
}

// jsonInt reads the integer after the first key in JSON data.
func jsonInt(data []byte, key string) int64 {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return -1
	}
	n, _ := parseInt(bytes.TrimLeft(data[i+len(key):], " "))
	return n
}

// jsonStringBytes reads the string value (without escapes: ids and
// positions have none) after the first key in JSON data.
func jsonStringBytes(data []byte, key string) []byte {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return nil
	}
	v := bytes.TrimLeft(data[i+len(key):], " ")
	if len(v) == 0 || v[0] != '"' {
		return nil
	}
	v, _, _ = bytes.Cut(v[1:], []byte(`"`))
	return v
}

func jsonString(data []byte, key string) string { return string(jsonStringBytes(data, key)) }

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
	if r.started.Load() {
		req.Header.Set("Last-Event-ID", r.pos.String())
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
		id       []byte
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
			id, typ, data, haveData = id[:0], "", data[:0], false
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			id = append(id[:0], value...)
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
	lp := newPoller(c)
	if lp != nil {
		defer lp.close()
	}
	for ctx.Err() == nil {
		var p *pollJSON
		var err error
		cursor := ""
		if r.started.Load() {
			cursor = r.pos.String()
		}
		switch {
		case lp != nil:
			p, err = lp.poll(ctx, r.token, cursor, 25, session)
		case cursor == "":
			p = new(pollJSON)
			err = c.do(ctx, "GET", "/v1/events/poll", r.token, nil, p)
		default:
			p, err = c.poll(ctx, r.token, cursor, 25, session)
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
		if !r.started.Load() {
			pos, err := repository.ParsePosition(p.Cursor)
			if err != nil {
				r.errs["bad_cursor"]++
			}
			r.start(pos)
			continue
		}
		r.pollBatch(p)
	}
}

func (r *recipient) pollBatch(p *pollJSON) {
	if p.Reset {
		r.event(nil, "reset", []byte(`{"cursor":"`+p.Cursor+`"}`))
	}
	for _, e := range p.Events {
		r.event([]byte(e.Position), e.Type, e.Data)
	}
}

// catchUp reads the user's stream after `from` with non-waiting polls
// until it has seen every conversation up to its seq in final: how a
// client that was away verifies it missed nothing.
func (r *recipient) catchUp(ctx context.Context, c *client, from repository.Position, final map[string]int64) {
	defer close(r.exited)
	r.start(from)
	for r.behind(final) > 0 && ctx.Err() == nil {
		p, err := c.poll(ctx, r.token, r.pos.String(), 0, "")
		if err != nil {
			r.errs["catchup_"+errKind(err)]++
			return
		}
		before := r.pos
		r.pollBatch(p)
		if r.pos == before {
			return // nothing more: what is missing is lost
		}
	}
}
