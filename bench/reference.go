package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Reference is the bare SSE broadcaster confab is measured against: the
// endpoints `bench run` uses, with no auth (a token is the user id), no
// storage and no checks beyond what routing needs. It numbers messages in
// memory as confab does, a position for each (one counter, "0-<n>") and a
// seq per conversation, so the same delivery checks apply to it.
//
// It long-polls too, as barely: every message is kept in memory (log[n-1]
// is position n; a benchmark sends thousands), a poll from a cursor
// answers with the messages after it in the poller's conversations, or
// waits for the next send.
type Reference struct {
	mu    sync.Mutex
	next  int
	pos   int64 // the last position given
	users map[string]*refUser
	convs map[string]*refConv
	reg   *prometheus.Registry
	log   []refEvent
	// sent is closed (and replaced) by every send: waiting polls look again.
	sent chan struct{}
}

// refEvent is a message as polls answer it.
type refEvent struct {
	conv *refConv
	data []byte // {"message": ...}
}

type refUser struct {
	id   string
	subs map[*refSub]struct{}
}

type refConv struct {
	members []*refUser
	member  map[*refUser]bool
	seq     int64 // the last message's
}

type refSub struct {
	c    chan []byte
	done chan struct{} // closed when the subscriber is dropped as too slow
}

// NewReference returns an empty reference server.
func NewReference() *Reference {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Reference{users: map[string]*refUser{}, convs: map[string]*refConv{}, reg: reg, sent: make(chan struct{})}
}

// Handler routes the reference's endpoints.
func (rf *Reference) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/auth/register", rf.register)
	mux.HandleFunc("POST /v1/auth/refresh", rf.register)
	mux.HandleFunc("POST /v1/conversations", rf.createConversation)
	mux.HandleFunc("POST /v1/conversations/{id}/messages", rf.send)
	mux.HandleFunc("GET /v1/conversations/{id}/messages", rf.lastMessage)
	mux.HandleFunc("GET /v1/events", rf.events)
	mux.HandleFunc("GET /v1/events/poll", rf.poll)
	mux.Handle("GET /metrics", promhttp.HandlerFor(rf.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	return mux
}

func referenceCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("confab bench reference", flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("addr", "127.0.0.1:8081", "listen address")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	raiseFileLimit()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: NewReference().Handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "reference serving on http://%s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}

func (rf *Reference) user(r *http.Request) *refUser {
	id := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	rf.mu.Lock()
	defer rf.mu.Unlock()
	return rf.users[id]
}

func (rf *Reference) register(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Username     string `json:"username"`
		RefreshToken string `json:"refresh_token"`
	}
	if json.NewDecoder(r.Body).Decode(&in) != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	rf.mu.Lock()
	u := rf.users[in.RefreshToken]
	if u == nil {
		rf.next++
		u = &refUser{id: "u" + strconv.Itoa(rf.next), subs: map[*refSub]struct{}{}}
		rf.users[u.id] = u
	}
	rf.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{
		"user": map[string]string{"id": u.id, "username": in.Username}, "access_token": u.id, "refresh_token": u.id, "expires_in": 86400,
	})
}

func (rf *Reference) createConversation(w http.ResponseWriter, r *http.Request) {
	me := rf.user(r)
	var in struct {
		MemberIDs []string `json:"member_ids"`
	}
	if me == nil || json.NewDecoder(r.Body).Decode(&in) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	rf.mu.Lock()
	members := []*refUser{me}
	for _, id := range in.MemberIDs {
		if u := rf.users[id]; u != nil {
			members = append(members, u)
		}
	}
	rf.next++
	id := "c" + strconv.Itoa(rf.next)
	member := map[*refUser]bool{}
	for _, u := range members {
		member[u] = true
	}
	rf.convs[id] = &refConv{members: members, member: member}
	rf.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]string{"id": id})
}

type refMessage struct {
	ID             string    `json:"id"`
	ConversationID string    `json:"conversation_id"`
	SenderID       string    `json:"sender_id"`
	Seq            int64     `json:"seq"`
	Body           string    `json:"body"`
	CreatedAt      time.Time `json:"created_at"`
}

// refPosition renders a position as confab's cursors look.
func refPosition(n int64) string { return "0-" + strconv.FormatInt(n, 10) }

// send broadcasts a message to every stream of every member: one JSON
// encoding, one frame (the message has one position, as in confab's log),
// non-blocking sends that drop a subscriber whose queue is full.
func (rf *Reference) send(w http.ResponseWriter, r *http.Request) {
	me := rf.user(r)
	var in struct {
		Body string `json:"body"`
	}
	if me == nil || json.NewDecoder(r.Body).Decode(&in) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	convID := r.PathValue("id")
	rf.mu.Lock()
	conv, ok := rf.convs[convID]
	if !ok {
		rf.mu.Unlock()
		http.Error(w, "no such conversation", http.StatusNotFound)
		return
	}
	rf.next++
	rf.pos++
	conv.seq++
	msg := refMessage{ID: "m" + strconv.Itoa(rf.next), ConversationID: convID, SenderID: me.id, Seq: conv.seq, Body: in.Body, CreatedAt: time.Now().UTC()}
	data, _ := json.Marshal(map[string]any{"message": msg})
	frame := make([]byte, 0, len(data)+64)
	frame = append(append(frame, "id: "...), refPosition(rf.pos)...)
	frame = append(append(append(frame, "\nevent: message.created\ndata: "...), data...), "\n\n"...)
	rf.log = append(rf.log, refEvent{conv: conv, data: data})
	close(rf.sent)
	rf.sent = make(chan struct{})
	for _, u := range conv.members {
		for s := range u.subs {
			select {
			case s.c <- frame:
			default:
				delete(u.subs, s)
				close(s.done)
			}
		}
	}
	rf.mu.Unlock()
	writeJSON(w, http.StatusCreated, msg)
}

// lastMessage answers a conversation's messages page with its last
// message's seq only: what `bench run` reads of it.
func (rf *Reference) lastMessage(w http.ResponseWriter, r *http.Request) {
	if rf.user(r) == nil {
		http.Error(w, "unknown user", http.StatusUnauthorized)
		return
	}
	rf.mu.Lock()
	conv, ok := rf.convs[r.PathValue("id")]
	var seq int64
	if ok {
		seq = conv.seq
	}
	rf.mu.Unlock()
	if !ok {
		http.Error(w, "no such conversation", http.StatusNotFound)
		return
	}
	msgs := []map[string]int64{}
	if seq > 0 {
		msgs = append(msgs, map[string]int64{"seq": seq})
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs, "has_more": seq > 1})
}

func (rf *Reference) events(w http.ResponseWriter, r *http.Request) {
	u := rf.user(r)
	if u == nil {
		http.Error(w, "unknown user", http.StatusUnauthorized)
		return
	}
	s := &refSub{c: make(chan []byte, 256), done: make(chan struct{})}
	rf.mu.Lock()
	u.subs[s] = struct{}{}
	cursor := refPosition(rf.pos)
	rf.mu.Unlock()
	defer func() {
		rf.mu.Lock()
		delete(u.subs, s)
		rf.mu.Unlock()
	}()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "retry: 2000\n\nid: %s\nevent: ready\ndata: {\"cursor\":%q,\"session_id\":\"\"}\n\n", cursor, cursor)
	flush := func() error {
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck // best effort
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		if err != nil {
			return err
		}
		return rc.Flush()
	}
	if flush() != nil {
		return
	}
	heartbeat := time.NewTicker(15 * time.Second)
	defer heartbeat.Stop()
	for {
		select {
		case f := <-s.c:
			buf.Write(f)
		more:
			for {
				select {
				case f = <-s.c:
					buf.Write(f)
				default:
					break more
				}
			}
		case <-heartbeat.C:
			buf.WriteString(": ping\n\n")
		case <-s.done:
			return
		case <-r.Context().Done():
			return
		}
		if flush() != nil {
			return
		}
	}
}

// poll answers a poll without a cursor with the head, and one from a
// cursor with the messages after it in the user's conversations, waiting
// up to its timeout for one.
func (rf *Reference) poll(w http.ResponseWriter, r *http.Request) {
	u := rf.user(r)
	if u == nil {
		http.Error(w, "unknown user", http.StatusUnauthorized)
		return
	}
	q := r.URL.Query()
	if !q.Has("cursor") {
		rf.mu.Lock()
		head := refPosition(rf.pos)
		rf.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"events": []any{}, "cursor": head, "typing": []any{}, "reset": false, "session_id": ""})
		return
	}
	after, err := strconv.ParseInt(strings.TrimPrefix(q.Get("cursor"), "0-"), 10, 64)
	timeout, terr := strconv.Atoi(q.Get("timeout"))
	if err != nil || after < 0 || terr != nil || timeout < 0 {
		http.Error(w, "bad cursor or timeout", http.StatusBadRequest)
		return
	}
	var timer *time.Timer
	b := []byte(`{"events":[`)
	for {
		rf.mu.Lock()
		n, last := 0, after
		for i := min(after, int64(len(rf.log))); i < int64(len(rf.log)) && n < 500; i++ {
			if ev := rf.log[i]; ev.conv.member[u] {
				if n > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"position":"`...)
				b = append(b, refPosition(i+1)...)
				b = append(b, `","type":"message.created","data":`...)
				b = append(b, ev.data...)
				b = append(b, '}')
				n++
			}
			last = i + 1
		}
		sent := rf.sent
		rf.mu.Unlock()
		if n > 0 || timeout == 0 {
			b = append(b, `],"cursor":"`...)
			b = append(b, refPosition(last)...)
			b = append(b, `","typing":[],"reset":false,"session_id":""}`...)
			w.Header().Set("Content-Type", "application/json")
			w.Write(b) //nolint:errcheck // the client went away
			return
		}
		if timer == nil {
			timer = time.NewTimer(time.Duration(timeout) * time.Second)
			defer timer.Stop()
		}
		select {
		case <-sent:
		case <-timer.C:
			timeout = 0 // answer with nothing
		case <-r.Context().Done():
			return
		}
	}
}
