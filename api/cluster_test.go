package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// newCluster starts two nodes, each with its own pool, broker and listener,
// on one fresh Postgres schema.
func newCluster(t *testing.T) (a, b *env) {
	t.Helper()
	storeA := dbtest.Open(t, "postgres")
	storeB := dbtest.OpenWith(t, repository.Options{URL: storeA.URL()})
	ecA := testEventsConfig(t, storeA)
	ecB := ecA
	ecB.Node = ecA.Node + "-b"
	a = newEnvWith(t, storeA, testConfig(), ecA)
	b = newEnvWith(t, storeB, testConfig(), ecB)
	eventually(t, 10*time.Second, "both listeners", func() bool {
		return a.broker.Ready(context.Background()) == nil && b.broker.Ready(context.Background()) == nil
	})
	return a, b
}

// follower is a client that follows one user's events the way a careful
// client does: it resumes from the last position it saw, moving to the next
// node when one fails, and checks that positions only grow, that no message
// comes twice, and that the messages of the conversation come in seq order
// with no gap.
type follower struct {
	token string
	nodes []*env

	mu      sync.Mutex
	last    string
	lastSeq int64
	seen    map[string]string // message id -> position
	errs    []string
}

func newFollower(token, start string, nodes ...*env) *follower {
	return &follower{token: token, nodes: nodes, last: start, seen: map[string]string{}}
}

func (f *follower) record(pos, typ string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, err := repository.ParsePosition(pos)
	last, _ := repository.ParsePosition(f.last)
	if err != nil || !last.Less(p) {
		f.errs = append(f.errs, fmt.Sprintf("position %s after %s", pos, f.last))
		return
	}
	f.last = pos
	if typ != "message.created" {
		return
	}
	var d struct {
		Message struct {
			ID  string `json:"id"`
			Seq int64  `json:"seq"`
		} `json:"message"`
	}
	json.Unmarshal(data, &d)
	if prev, dup := f.seen[d.Message.ID]; dup {
		f.errs = append(f.errs, fmt.Sprintf("message %s delivered twice (at %s and %s)", d.Message.ID, prev, pos))
	}
	if f.lastSeq != 0 && d.Message.Seq != f.lastSeq+1 {
		f.errs = append(f.errs, fmt.Sprintf("message seq %d after %d", d.Message.Seq, f.lastSeq))
	}
	f.lastSeq = d.Message.Seq
	f.seen[d.Message.ID] = pos
}

func (f *follower) cursor() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// has reports whether every id was delivered.
func (f *follower) has(ids []string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		if _, ok := f.seen[id]; !ok {
			return false
		}
	}
	return true
}

func (f *follower) check(t *testing.T, name string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.errs {
		t.Errorf("%s: %s", name, e)
	}
}

// streamSSE follows over SSE until ctx ends.
func (f *follower) streamSSE(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		f.sseOnce(ctx, f.nodes[i%len(f.nodes)])
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond): // a client's reconnect backoff
		}
	}
}

func (f *follower) sseOnce(ctx context.Context, node *env) {
	req, _ := http.NewRequestWithContext(ctx, "GET", node.url+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Last-Event-ID", f.cursor())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return
	}
	p := &sseParser{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Split(splitSSELines)
	for sc.Scan() {
		ev, ok := p.feedLine(sc.Text())
		if !ok {
			continue
		}
		switch ev.Type {
		case "ready", "typing", "presence":
		case "reset":
			f.mu.Lock()
			f.errs = append(f.errs, "unexpected reset: "+ev.Data)
			f.mu.Unlock()
		default:
			f.record(ev.ID, ev.Type, []byte(ev.Data))
		}
	}
}

// poll follows over long-poll until ctx ends.
func (f *follower) poll(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		if !f.pollOnce(ctx, f.nodes[i%len(f.nodes)]) {
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func (f *follower) pollOnce(ctx context.Context, node *env) bool {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", node.url+"/v1/events/poll?timeout=5&cursor="+f.cursor(), nil)
		req.Header.Set("Authorization", "Bearer "+f.token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		var p pollResult
		err = json.NewDecoder(res.Body).Decode(&p)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			return false
		}
		if p.Reset {
			f.mu.Lock()
			f.errs = append(f.errs, "unexpected poll reset")
			f.mu.Unlock()
		}
		for _, ev := range p.Events {
			f.record(ev.Position, ev.Type, ev.Data)
		}
	}
	return true
}

// sender posts messages in the background, spreading them over nodes, and
// keeps the ids of those that were committed (2xx).
type sender struct {
	mu      sync.Mutex
	ids     []string
	errs    []string
	n       int
	retries int
	done    chan struct{}
}

func startSender(ctx context.Context, from user, convID string, n int, nodes ...*env) *sender {
	s := &sender{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for i := 0; i < n && ctx.Err() == nil; i++ {
			// Like a client: retry an unanswered or 503 send with the same
			// client_msg_id until it is stored.
			var r resp
			for try := 0; try < 300 && ctx.Err() == nil; try++ {
				node := nodes[(i+try)%len(nodes)]
				r = node.doCtx(ctx, "POST", "/v1/conversations/"+convID+"/messages", from.Token, map[string]string{"body": fmt.Sprintf("m%d", i), "client_msg_id": fmt.Sprintf("c%d", i)})
				if r.status != 0 && r.status != http.StatusServiceUnavailable {
					break
				}
				s.mu.Lock()
				s.retries++
				s.mu.Unlock()
				time.Sleep(100 * time.Millisecond) // the client's retry backoff
			}
			s.mu.Lock()
			if r.status == http.StatusCreated || r.status == http.StatusOK {
				var m message
				json.Unmarshal(r.body, &m)
				s.ids = append(s.ids, m.ID)
			} else if r.status != 0 {
				s.errs = append(s.errs, fmt.Sprintf("send %d: %d %s", i, r.status, r.body))
			}
			s.n = i + 1
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sender) sent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *sender) committed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

// runFault sends n messages from alice on node a while bob follows on b
// over SSE and long-poll (falling back to a), calls fault when a third have
// gone out, and checks both followers saw every committed message exactly
// once, in a gap-free sequence.
func runFault(t *testing.T, a, b *env, n int, fault func()) {
	alice, bob := a.register("alice"), a.register("bob")
	g := a.group(alice, bob)
	head := b.poll(bob.Token, "").Cursor
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sse := newFollower(bob.Token, head, b, a)
	lp := newFollower(bob.Token, head, b, a)
	go sse.streamSSE(ctx)
	go lp.poll(ctx)
	s := startSender(ctx, alice, g.ID, n, a)
	eventually(t, 30*time.Second, "a third of the messages", func() bool { return s.sent() >= n/3 })
	fault()
	<-s.done
	if len(s.errs) > 0 {
		t.Fatalf("sends failed: %v", s.errs)
	}
	ids := s.committed()
	t.Logf("%d sends committed, %d retried after 503 or no answer", len(ids), s.retries)
	if len(ids) != n {
		t.Fatalf("%d of %d sends committed", len(ids), n)
	}
	eventually(t, 30*time.Second, "every message at both followers", func() bool { return sse.has(ids) && lp.has(ids) })
	cancel()
	sse.check(t, "sse")
	lp.check(t, "longpoll")
}

func TestClusterDeliversAcrossNodes(t *testing.T) {
	t.Parallel()
	a, b := newCluster(t)
	alice, bob := a.register("alice"), a.register("bob")
	g := a.group(alice, bob)
	s := b.openStream(bob.Token, streamOpts{})
	cursor := s.ready()
	got := make(chan pollResult, 1)
	go func() { got <- b.poll(bob.Token, "cursor="+cursor+"&timeout=30") }()
	var sent []message
	for i := range 30 {
		sent = append(sent, a.send(alice, g.ID, fmt.Sprintf("across %d", i)))
	}
	seen := s.messages(30, cursor)
	for i, m := range seen {
		if m.ID != sent[i].ID {
			t.Fatalf("message %d out of order", i)
		}
	}
	p := <-got
	for len(p.Events) > 0 && p.Events[0].Type != "message.created" {
		p.Events = p.Events[1:] // the head may come before the group's creation
	}
	if len(p.Events) == 0 || p.Events[0].Position != seen[0].Pos {
		t.Fatalf("poll on node b: %+v", p)
	}
	// Typing crosses nodes too, and node b keeps the state for pollers.
	a.must(http.StatusNoContent, "POST", "/v1/conversations/"+g.ID+"/typing", alice.Token, map[string]bool{"typing": true})
	s.nextOf("typing", 5*time.Second)
	if p := b.poll(bob.Token, "timeout=0"); len(p.Typing) != 1 {
		t.Fatalf("typing state on node b: %+v", p.Typing)
	}
}

func TestClusterSurvivesListenerLoss(t *testing.T) {
	t.Parallel()
	a, b := newCluster(t)
	runFault(t, a, b, 150, func() {
		pid := b.broker.ListenerPID()
		if _, err := b.store.DB().ExecContext(context.Background(), "SELECT pg_terminate_backend(?)", pid); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the listener to come back", func() bool {
			return b.broker.ListenerPID() != pid && b.broker.Ready(context.Background()) == nil
		})
	})
}

func TestClusterSurvivesNodeStop(t *testing.T) {
	t.Parallel()
	a, b := newCluster(t)
	runFault(t, a, b, 150, b.stop)
}

// TestCommitDuringBackfill: a client resumes from far behind while messages
// keep being committed; backfill (several pages) and live delivery meet with
// nothing lost or doubled.
func TestCommitDuringBackfill(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		ec := testEventsConfig(t, store)
		// A ring far smaller than the backlog: the catch-up reads the
		// database, several pages, before it meets the live tail.
		ec.Hub.Page, ec.Hub.Buffer, ec.Hub.Ring = 64, 32, 16
		e := newEnvWith(t, store, testConfig(), ec)
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		var backlog []string
		for i := range 300 {
			backlog = append(backlog, e.send(alice, g.ID, fmt.Sprintf("old %d", i)).ID)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := startSender(ctx, alice, g.ID, 200, e)
		f := newFollower(bob.Token, "0-0", e)
		go f.streamSSE(ctx)
		<-s.done
		ids := append(backlog, s.committed()...)
		eventually(t, 30*time.Second, "backlog and live messages", func() bool { return f.has(ids) })
		cancel()
		f.check(t, "sse")
	})
}

// TestClusterSurvivesPostgresRestart restarts the Postgres server under
// load. It disturbs every other test using that server, so it runs only when
// CONFAB_TEST_PG_RESTART names the command that restarts it (make test sets
// it for a second, solo pass).
func TestClusterSurvivesPostgresRestart(t *testing.T) {
	cmd := os.Getenv("CONFAB_TEST_PG_RESTART")
	if cmd == "" {
		t.Skip("set CONFAB_TEST_PG_RESTART to the command that restarts Postgres (make test does)")
	}
	a, b := newCluster(t)
	runFault(t, a, b, 150, func() {
		if out, err := exec.Command("sh", "-c", cmd).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
	})
}

// TestSafetyPollCoversLostDoorbells: node b never hears node a's doorbells
// (they go to another channel, as when a notification is lost); the safety
// poll still delivers everything, in order, within its interval.
func TestSafetyPollCoversLostDoorbells(t *testing.T) {
	t.Parallel()
	storeA := dbtest.Open(t, "postgres")
	storeB := dbtest.OpenWith(t, repository.Options{URL: storeA.URL()})
	ecA := testEventsConfig(t, storeA)
	ecB := testEventsConfig(t, storeB) // its own channel: deaf to a
	a := newEnvWith(t, storeA, testConfig(), ecA)
	b := newEnvWith(t, storeB, testConfig(), ecB)
	alice, bob := a.register("alice"), a.register("bob")
	g := a.group(alice, bob)
	s := b.openStream(bob.Token, streamOpts{})
	cursor := s.ready()
	var sent []message
	for i := range 5 {
		sent = append(sent, a.send(alice, g.ID, fmt.Sprintf("quiet %d", i)))
	}
	for i, m := range s.messages(5, cursor) {
		if m.ID != sent[i].ID {
			t.Fatalf("message %d out of order", i)
		}
	}
}
