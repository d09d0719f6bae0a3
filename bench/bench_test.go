package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confab-chat/confab/api"
	"github.com/confab-chat/confab/events"
	"github.com/confab-chat/confab/repository"
)

// serve runs h on a loopback port until the test ends.
func serve(t *testing.T, hs *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

// startConfab serves an in-process confab on a fresh SQLite file, as
// `confab serve` wires it.
func startConfab(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	store, err := repository.Open(ctx, repository.Options{SQLitePath: filepath.Join(t.TempDir(), "confab.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := api.NewRegistry(store.DB().DB)
	ec := events.DefaultConfig()
	ec.Hub.MaxPerUser = 1 << 20 // the load tool spreads many streams over few users
	ec.Node = "smoke"
	broker := events.New(ec, store, log, reg)
	if err := broker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := api.DefaultConfig()
	cfg.JWTSecret = []byte("smoke-secret-smoke-secret-smoke-secret")
	cfg.HashParams = api.HashParams{MemoryKiB: 64, Time: 1, Threads: 1}
	cfg.RegisterBurst = 0 // every run registers its users from one address
	// The load tool writes as fast as it is told to, not as one person.
	cfg.SendsPerSecond, cfg.GroupsPerMinute, cfg.MemberAddsPerMinute = 0, 0, 0
	srv := api.New(cfg, log, store, broker, api.Options{Metrics: api.MetricsHandler(reg)})
	hs := srv.HTTPServer(log)
	url := serve(t, hs)
	t.Cleanup(func() {
		broker.Drain()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		srv.CloseStreams(ctx)
		broker.Stop()
	})
	return url
}

func smokeConfig(url, ref string) *Config {
	return &Config{URL: url, Ref: ref, Rounds: 1, Users: 4, Streams: 6, Writers: 2, Rate: 20,
		Duration: 600 * time.Millisecond, Settle: 100 * time.Millisecond, Drain: 10 * time.Second,
		RegisterParallel: 4, OpenParallel: 8}
}

// check fails unless every recipient of r got every event exactly once.
func check(t *testing.T, r *Result) {
	t.Helper()
	if r.Lost != 0 || r.Duplicated != 0 || r.Disordered != 0 || len(r.Errors) != 0 {
		t.Errorf("%s: lost %d, duplicated %d, out of order %d, errors %v", r.Target, r.Lost, r.Duplicated, r.Disordered, r.Errors)
	}
	// A writer behind its pace (a busy machine) sends fewer than its
	// schedule asked for; that is a speed, not something to assert here.
	if r.Messages > r.Scheduled {
		t.Errorf("%s: %d messages sent, only %d scheduled", r.Target, r.Messages, r.Scheduled)
	}
	if r.Messages == 0 || r.Deliveries == 0 || r.Delivery.N == 0 {
		t.Errorf("%s: %d messages, %d deliveries: nothing measured", r.Target, r.Messages, r.Deliveries)
	}
}

// TestSmoke runs the tool for a moment against an in-process confab on
// SQLite and the reference, with tiny numbers, so it cannot rot.
func TestSmoke(t *testing.T) {
	ctx := context.Background()
	confab := startConfab(t)
	ref := serve(t, &http.Server{Handler: NewReference().Handler()})

	t.Run("streams", func(t *testing.T) {
		cfg := smokeConfig(confab, ref)
		if err := cfg.validate(); err != nil {
			t.Fatal(err)
		}
		rep, err := Run(ctx, cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		check(t, rep.Confab)
		check(t, rep.Reference)
		if rep.Ratios["delivery_p50"] == 0 {
			t.Errorf("no delivery ratio: %v", rep.Ratios)
		}
		// The report survives its JSON and is judged as a fan-out scenario.
		rep.Label = "sqlite/fanout-smoke"
		data, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var back Report
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		var md strings.Builder
		back.WriteMarkdown(&md)
		if v := judge([]*Report{&back}); len(v) != 6 || !strings.Contains(md.String(), "| delivery p50 ms |") {
			t.Errorf("%d verdicts, markdown:\n%s", len(v), md.String())
		}
	})
	// Long-pollers: confab's against its streams and against the bare
	// reference's long-poll, and the reference's against its own streams.
	for _, tc := range []struct{ name, url, ref string }{
		{"pollers", confab, "sse"},
		{"pollers against the reference's", confab, ref},
		{"the reference's pollers against its streams", ref, "sse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smokeConfig(tc.url, tc.ref)
			cfg.Users, cfg.Group, cfg.Streams, cfg.Pollers = 4, 2, 0, 4
			if err := cfg.validate(); err != nil {
				t.Fatal(err)
			}
			rep, err := Run(ctx, cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			check(t, rep.Confab)
			check(t, rep.Reference)
			// Against the bare long-poll, judged for loss only: the
			// long-poll targets are against SSE.
			rep.Label = "sqlite/longpoll-smoke"
			if v := judge([]*Report{rep}); tc.ref != "sse" && len(v) != 2 {
				t.Errorf("verdicts %+v", v)
			}
		})
	}
	t.Run("group", func(t *testing.T) {
		// A group of 4 against groups of 2, nobody listening: both checked
		// by catching up.
		cfg := smokeConfig(confab, "group:2")
		cfg.Users, cfg.Group, cfg.Streams, cfg.Writers = 4, 4, 0, 1
		if err := cfg.validate(); err != nil {
			t.Fatal(err)
		}
		rep, err := Run(ctx, cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []*Result{rep.Confab, rep.Reference} {
			if r.Lost != 0 || r.Duplicated != 0 || r.Disordered != 0 || len(r.Errors) != 0 || r.Messages == 0 || r.Messages > r.Scheduled {
				t.Errorf("%s: lost %d, duplicated %d, disordered %d, errors %v, %d of %d messages",
					r.Target, r.Lost, r.Duplicated, r.Disordered, r.Errors, r.Messages, r.Scheduled)
			}
		}
		if rep.Reference.Target != "group-2" || rep.Ratios["post_p50"] == 0 {
			t.Errorf("reference %s, ratios %v", rep.Reference.Target, rep.Ratios)
		}
		rep.Label = "sqlite/post-4-vs-2"
		if v := judge([]*Report{rep}); len(v) != 3 || !strings.Contains(v[0].target, "4-member group ≤ 1.5× to a 2-member") {
			t.Errorf("verdicts %+v", v)
		}
	})
	t.Run("writes", func(t *testing.T) {
		// No streams: every user is checked by catching up afterwards.
		cfg := smokeConfig(confab, "")
		cfg.Users, cfg.Group, cfg.Streams, cfg.Writers, cfg.Rate = 6, 3, 0, 2, 0
		if err := cfg.validate(); err != nil {
			t.Fatal(err)
		}
		rep, err := Run(ctx, cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		r := rep.Confab
		if r.Lost != 0 || r.Duplicated != 0 || r.Disordered != 0 || len(r.Errors) != 0 || r.Messages == 0 {
			t.Errorf("lost %d, duplicated %d, errors %v, %d messages", r.Lost, r.Duplicated, r.Errors, r.Messages)
		}
	})
}

func TestCheckTarget(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:80"} {
		if err := checkTarget(u, false); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://10.0.0.1", "http://example.com", "ftp://127.0.0.1", "127.0.0.1:80"} {
		if err := checkTarget(u, false); err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
}

// TestRecipientAccounting: the checks the smoke run relies on see repeated
// and backward positions, skipped and repeated message seqs, and resets.
func TestRecipientAccounting(t *testing.T) {
	r := newRecipient(0, "", "sse", 7, true, map[string]int64{"c": 3})
	msg := func(conv string, seq int, body string) []byte {
		return []byte(fmt.Sprintf(`{"message":{"id":"m","conversation_id":%q,"sender_id":"u","seq":%d,"body":%q,"client_msg_id":null}}`, conv, seq, body))
	}
	ev := func(id, typ string, data []byte) { r.event([]byte(id), typ, data) }
	ev("5-10", "ready", []byte(`{"cursor":"5-10","session_id":"s"}`))
	ev("5-11", "message.created", msg("c", 4, "bench:7:5"))
	ev("5-11", "message.created", msg("c", 4, "bench:7:5")) // the same position again
	ev("6-2", "message.created", msg("c", 4, "bench:7:5"))  // the same message at another position
	ev("7-1", "message.created", msg("c", 7, "bench:7:5"))  // seqs 5 and 6 lost
	ev("6-9", "message.created", msg("c", 8, "bench:7:5"))  // a position before the last
	ev("8-1", "message.created", msg("d", 1, "bench:7:5"))  // not a conversation of the round
	ev("8-2", "message.created", msg("c", 8, "bench:8:1"))  // another round's
	ev("", "presence", []byte(`{"user_id":"u","online":true}`))
	ev("", "reset", []byte(`{"cursor":"9-0"}`))
	ev("12", "message.created", msg("c", 9, "bench:7:5")) // not a position
	ev("9-1", "read", []byte(`{"conversation_id":"c"}`))
	if r.dups != 2 || r.gaps != 2 || r.disordered != 1 || r.msgs.Load() != 2 || len(r.lat) != 2 ||
		r.errs["reset"] != 1 || r.errs["bad_position"] != 1 || r.pos != (repository.Position{XID: 9, ID: 1}) {
		t.Errorf("dups %d gaps %d disordered %d msgs %d lat %d errs %v pos %v",
			r.dups, r.gaps, r.disordered, r.msgs.Load(), len(r.lat), r.errs, r.pos)
	}
	if n := r.behind(map[string]int64{"c": 10, "d": 5}); n != 2 {
		t.Errorf("behind %d, want 2 (seqs 9 and 10 of c)", n)
	}
}

// TestWriterLatencyFromSchedule: a paced writer's latency runs from its
// send's slot, so a stall counts for every send it delayed, not only the
// one it held up (coordinated omission).
func TestWriterLatencyFromSchedule(t *testing.T) {
	const stall = 300 * time.Millisecond
	var mu sync.Mutex
	first := true
	var stamps []int64 // the slot times the bodies carry
	url := serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Body string }
		json.NewDecoder(r.Body).Decode(&in)
		n, _ := strconv.ParseInt(strings.TrimPrefix(in.Body, "bench:1:"), 10, 64)
		mu.Lock()
		wait := first
		first = false
		stamps = append(stamps, n)
		mu.Unlock()
		if wait {
			time.Sleep(stall)
		}
		w.WriteHeader(http.StatusCreated)
	})})
	c := newClient(url)
	defer c.close()
	fx := &fixture{users: []account{{Access: "t"}}, convs: []string{"c"}, members: [][]int{{0}}, userConvs: [][]int{{0}}}
	// 20/s for one second: slots every 50 ms; the first send takes 300 ms,
	// so the next five go out late, back to back.
	res := write(context.Background(), c, fx, 1, 20, time.Second, 1)
	if res.scheduled != 20 || res.acked[0] != 20 || len(res.post) != 20 {
		t.Fatalf("%d scheduled, %d acknowledged, %d latencies", res.scheduled, res.acked[0], len(res.post))
	}
	var late int
	for _, ns := range res.post {
		if time.Duration(ns) >= 100*time.Millisecond {
			late++
		}
	}
	// From the send, only the stalled request would be slow; from the
	// slot, those of 0, 50, 100, 150 and 200 ms all waited 100 ms or more.
	if late < 5 {
		t.Errorf("%d of 20 latencies >= 100 ms, want >= 5 (stall %s): %v", late, stall, res.post)
	}
	// The bodies carry the slots: 50 ms apart, though sent back to back.
	mu.Lock()
	defer mu.Unlock()
	if d := time.Duration(stamps[2] - stamps[1]); d < 45*time.Millisecond || d > 55*time.Millisecond {
		t.Errorf("slots 1 and 2 stamped %s apart, want 50 ms", d)
	}
}

// TestWriterUnsustained: a writer that falls behind its pace by the end
// leaves the slots it did not reach scheduled and unsent.
func TestWriterUnsustained(t *testing.T) {
	url := serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(250 * time.Millisecond)
		w.WriteHeader(http.StatusCreated)
	})})
	c := newClient(url)
	defer c.close()
	fx := &fixture{users: []account{{Access: "t"}}, convs: []string{"c"}, members: [][]int{{0}}, userConvs: [][]int{{0}}}
	res := write(context.Background(), c, fx, 1, 20, 500*time.Millisecond, 1)
	if res.scheduled != 10 || res.acked[0] < 1 || res.acked[0] > 3 {
		t.Errorf("%d scheduled, %d acknowledged: want 10 scheduled, 2 or so sent", res.scheduled, res.acked[0])
	}
}
