package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confab-chat/confab/api"
	"github.com/confab-chat/confab/events"
	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
	"github.com/confab-chat/confab/web"
)

// cheapHash keeps password hashing from dominating test time; one test
// checks the production parameters.
var cheapHash = api.HashParams{MemoryKiB: 64, Time: 1, Threads: 1}

// env is one confab API served over real loopback HTTP on a fresh store.
type env struct {
	t      testing.TB
	store  *repository.Store
	broker *events.Broker
	srv    *api.Server
	hs     *http.Server
	stop   func() // stops the node as SIGTERM would (idempotent)
	label  string // the pprof label "env" of the env's goroutines
	logs   *syncBuffer
	// logLevel is the level of logs (Debug unless set).
	logLevel *slog.LevelVar
	url      string
	client   *http.Client
}

// testConfig is the API configuration tests use unless they change it.
func testConfig() api.Config {
	cfg := api.DefaultConfig()
	cfg.JWTSecret = []byte("test-secret-test-secret-test-secret!")
	cfg.HashParams = cheapHash
	cfg.RegisterBurst = 1 << 20 // tests register many users from one address
	// Tests write as fast as they can; the tests of the per-user write
	// limits set them.
	cfg.SendsPerSecond, cfg.GroupsPerMinute, cfg.MemberAddsPerMinute = 0, 0, 0
	return cfg
}

// newEnv serves the API on store. Every request and response goes through
// the contract validator.
func newEnv(t testing.TB, store *repository.Store, cfg api.Config) *env {
	t.Helper()
	return newEnvWith(t, store, cfg, testEventsConfig(t, store))
}

// testEventsConfig is the real-time configuration tests use: a NOTIFY
// channel of the test's own and short intervals.
func testEventsConfig(t testing.TB, store *repository.Store) events.Config {
	ec := events.DefaultConfig()
	ec.Node = "node-" + randomHex(4)
	ec.ListenURL = store.URL()
	ec.Channel = "confab_" + randomHex(6)
	ec.SafetyPoll = time.Second
	ec.ListenerPing = time.Second
	ec.NodeHeartbeat = time.Second
	ec.NodeExpiry = 3 * time.Second
	ec.PresenceDebounce = 200 * time.Millisecond
	ec.PollIdle = 3 * time.Second
	return ec
}

// newEnvWith serves the API and a running broker (one node) on store, with
// the http.Server production uses; tweak may adjust it.
func newEnvWith(t testing.TB, store *repository.Store, cfg api.Config, ec events.Config, tweak ...func(*http.Server)) *env {
	t.Helper()
	logs := &syncBuffer{}
	// At Debug unless a test sets logLevel: tests see every line, each
	// with its level (TestPollLogging tells what production, at Info,
	// keeps).
	logLevel := new(slog.LevelVar)
	logLevel.Set(slog.LevelDebug)
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: logLevel}))
	reg := api.NewRegistry(store.DB().DB)
	broker := events.New(ec, store, log, reg)
	// Every goroutine the env starts, and every one those start, carries
	// its label: goroutines() counts them apart from parallel tests'.
	label := randomHex(8)
	var err error
	pprof.Do(context.Background(), pprof.Labels("env", label), func(ctx context.Context) {
		err = broker.Start(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(cfg, log, store, broker, api.Options{Metrics: api.MetricsHandler(reg), Web: web.FS})
	hs := srv.HTTPServer(log)
	for _, f := range tweak {
		f(hs)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pprof.Do(context.Background(), pprof.Labels("env", label), func(context.Context) { go hs.Serve(ln) })
	var once sync.Once
	stop := func() {
		once.Do(func() {
			broker.Drain() // streams end first, so Shutdown does not wait on them
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hs.Shutdown(ctx)
			srv.CloseStreams(ctx)
			broker.Stop()
		})
	}
	t.Cleanup(stop)
	return &env{t: t, store: store, broker: broker, srv: srv, hs: hs, stop: stop, label: label, logs: logs, logLevel: logLevel, url: "http://" + ln.Addr().String(), client: &http.Client{Transport: newContractTransport(t)}}
}

// goroutines is how many goroutines the env's server and broker run now,
// counted by their pprof label so that parallel tests do not blur it.
func (e *env) goroutines() int {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 1)
	// Records read "<count> @ <pcs>", then "# labels: {...}" when labelled.
	want := `"env":"` + e.label + `"`
	total, count := 0, 0
	for line := range strings.Lines(b.String()) {
		if n, _, ok := strings.Cut(line, " @ "); ok {
			count, _ = strconv.Atoi(n)
		} else if strings.HasPrefix(line, "# labels: ") && strings.Contains(line, want) {
			total += count
		}
	}
	return total
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// eachStore runs fn once on SQLite and once on Postgres, in parallel.
func eachStore(t *testing.T, fn func(t *testing.T, store *repository.Store)) {
	for _, d := range dbtest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, dbtest.Open(t, d))
		})
	}
}

// resp is a response with its body read.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// wantProblem fails the test unless r is a problem+json document with
// status and code.
func (r resp) wantProblem(t testing.TB, status int, code string) {
	t.Helper()
	if r.status != status || r.problemCode() != code {
		t.Fatalf("got %d %q (%s), want %d problem %q", r.status, r.header.Get("Content-Type"), r.body, status, code)
	}
}

// problemCode returns the code of a problem+json body ("" if not one).
func (r resp) problemCode() string {
	var p api.Problem
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") || json.Unmarshal(r.body, &p) != nil {
		return ""
	}
	return p.Code
}

// do sends a request; body may be nil, a []byte or string sent verbatim, or
// a value to marshal. invalid marks deliberately bad requests so the
// contract check skips them (responses are still checked).
func (e *env) do(method, path, token string, body any, invalid ...bool) resp {
	e.t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return e.doWith(method, path, h, body, len(invalid) > 0 && invalid[0])
}

// doWith is do with the request headers given in full (Authorization
// included), for tests of credentials and content types.
func (e *env) doWith(method, path string, h http.Header, body any, invalid bool) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if invalid {
		req.Header.Set(contractSkipRequestHeader, "1")
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: data}
}

// must is do that fails the test unless the status is want.
func (e *env) must(want int, method, path, token string, body any) resp {
	e.t.Helper()
	r := e.do(method, path, token, body)
	if r.status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

type user struct {
	ID           string `json:"id"`
	Username     string `json:"username"`
	Token        string `json:"-"`
	RefreshToken string `json:"-"`
}

var userSeq atomic.Int64

// password is every test user's password.
const password = "correct horse"

// register creates a user with a unique name starting with prefix.
func (e *env) register(prefix string) user {
	e.t.Helper()
	name := prefix + "_" + itoa(userSeq.Add(1))
	return e.tokens(e.must(http.StatusCreated, "POST", "/v1/auth/register", "", map[string]string{"username": name, "password": password}))
}

// tokens reads a register, login or refresh response.
func (e *env) tokens(r resp) user {
	e.t.Helper()
	var out struct {
		User         user   `json:"user"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	r.decode(e.t, &out)
	out.User.Token, out.User.RefreshToken = out.AccessToken, out.RefreshToken
	return out.User
}

// stream returns every event of u's stream, in position order.
func (e *env) stream(u user) []repository.LogEvent {
	e.t.Helper()
	evs, err := e.store.UserEvents(context.Background(), u.ID, repository.Position{}, repository.Position{XID: 1 << 62}, 1<<20)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// state dumps the stored client data (see dbtest.Snapshot).
func (e *env) state() string {
	e.t.Helper()
	return dbtest.Snapshot(e.t, e.store)
}

type conversation struct {
	ID          string  `json:"id"`
	Kind        string  `json:"kind"`
	Title       *string `json:"title"`
	UnreadCount int     `json:"unread_count"`
	Members     []struct {
		UserID string `json:"user_id"`
	} `json:"members"`
	LastMessage *message `json:"last_message"`
}

type message struct {
	ID             string  `json:"id"`
	ConversationID string  `json:"conversation_id"`
	SenderID       string  `json:"sender_id"`
	Seq            int64   `json:"seq"`
	Body           string  `json:"body"`
	ClientMsgID    *string `json:"client_msg_id"`
	// Pos is the position of the event that carried the message, if it
	// came as one.
	Pos string `json:"-"`
}

// group creates a group of owner and others.
func (e *env) group(owner user, others ...user) conversation {
	e.t.Helper()
	ids := []string{}
	for _, o := range others {
		ids = append(ids, o.ID)
	}
	var c conversation
	e.must(http.StatusCreated, "POST", "/v1/conversations", owner.Token, map[string]any{"kind": "group", "member_ids": ids, "title": "g"}).decode(e.t, &c)
	return c
}

// send posts a message and returns it.
func (e *env) send(from user, convID, body string) message {
	e.t.Helper()
	var m message
	e.must(http.StatusCreated, "POST", "/v1/conversations/"+convID+"/messages", from.Token, map[string]string{"body": body}).decode(e.t, &m)
	return m
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// doCtx sends a JSON request from any goroutine: it never fails the test,
// and a transport error comes back as status 0.
func (e *env) doCtx(ctx context.Context, method, path, token string, body any) resp {
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, bytes.NewReader(data))
	if err != nil {
		return resp{}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return resp{}
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: out}
}

// syncBuffer collects a server's log lines for tests that read them.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
