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
// storage and no checks beyond what routing needs. It keeps a per-user seq
// in memory so the same delivery checks apply to it.
type Reference struct {
	mu    sync.Mutex
	next  int
	users map[string]*refUser
	convs map[string][]*refUser
	reg   *prometheus.Registry
}

type refUser struct {
	id   string
	seq  int64
	subs map[*refSub]struct{}
}

type refSub struct {
	c    chan []byte
	done chan struct{} // closed when the subscriber is dropped as too slow
}

// NewReference returns an empty reference server.
func NewReference() *Reference {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Reference{users: map[string]*refUser{}, convs: map[string][]*refUser{}, reg: reg}
}

// Handler routes the reference's endpoints.
func (rf *Reference) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/auth/register", rf.register)
	mux.HandleFunc("POST /v1/auth/refresh", rf.register)
	mux.HandleFunc("POST /v1/conversations", rf.createConversation)
	mux.HandleFunc("POST /v1/conversations/{id}/messages", rf.send)
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
	rf.convs[id] = members
	rf.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]string{"id": id})
}

type refMessage struct {
	ID             string    `json:"id"`
	ConversationID string    `json:"conversation_id"`
	SenderID       string    `json:"sender_id"`
	Body           string    `json:"body"`
	CreatedAt      time.Time `json:"created_at"`
}

// send broadcasts a message to every stream of every member: one JSON
// encoding, one frame per member (the id line differs), non-blocking sends
// that drop a subscriber whose queue is full.
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
	members, ok := rf.convs[convID]
	rf.next++
	msg := refMessage{ID: "m" + strconv.Itoa(rf.next), ConversationID: convID, SenderID: me.id, Body: in.Body, CreatedAt: time.Now().UTC()}
	data, _ := json.Marshal(map[string]any{"message": msg})
	for _, u := range members {
		u.seq++
		frame := make([]byte, 0, len(data)+48)
		frame = append(strconv.AppendInt(append(frame, "id: "...), u.seq, 10), "\nevent: message.created\ndata: "...)
		frame = append(append(frame, data...), "\n\n"...)
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
	if !ok {
		http.Error(w, "no such conversation", http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusCreated, msg)
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
	cursor := u.seq
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
	fmt.Fprintf(&buf, "retry: 2000\n\nevent: ready\ndata: {\"cursor\":%d}\n\n", cursor)
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

// poll answers the head query only: the reference keeps no events to poll.
func (rf *Reference) poll(w http.ResponseWriter, r *http.Request) {
	u := rf.user(r)
	if u == nil {
		http.Error(w, "unknown user", http.StatusUnauthorized)
		return
	}
	if r.URL.Query().Has("cursor") {
		http.Error(w, "the reference keeps no events to poll", http.StatusNotImplemented)
		return
	}
	rf.mu.Lock()
	head := u.seq
	rf.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"events": []any{}, "cursor": head, "typing": []any{}, "reset": false})
}
