package bench

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
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
	ec.Node = "smoke"
	broker := events.New(ec, store, log, reg)
	if err := broker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := api.DefaultConfig()
	cfg.JWTSecret = []byte("smoke-secret-smoke-secret-smoke-secret")
	cfg.HashParams = api.HashParams{MemoryKiB: 64, Time: 1, Threads: 1}
	hs := api.New(cfg, log, store, broker, api.Options{Metrics: api.MetricsHandler(reg)}).HTTPServer(log)
	url := serve(t, hs)
	t.Cleanup(func() {
		broker.Drain()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
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
	if r.Lost != 0 || r.Duplicated != 0 || len(r.Errors) != 0 {
		t.Errorf("%s: lost %d, duplicated %d, errors %v", r.Target, r.Lost, r.Duplicated, r.Errors)
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
		if v := judge([]*Report{&back}); len(v) != 5 || !strings.Contains(md.String(), "| delivery p50 ms |") {
			t.Errorf("%d verdicts, markdown:\n%s", len(v), md.String())
		}
	})
	t.Run("pollers", func(t *testing.T) {
		cfg := smokeConfig(confab, "sse")
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
		if r.Lost != 0 || r.Duplicated != 0 || len(r.Errors) != 0 || r.Messages == 0 {
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

// TestRecipientAccounting: the checks the smoke run relies on see gaps,
// duplicates and resets.
func TestRecipientAccounting(t *testing.T) {
	r := newRecipient(0, "", "sse", 7, true)
	r.event(0, "ready", []byte(`{"cursor":10,"session_id":"s"}`))
	msg := []byte(`{"message":{"id":"m","body":"bench:7:` + "5" + `"}}`)
	r.event(11, "message.created", msg)
	r.event(11, "message.created", msg)                            // duplicate
	r.event(14, "message.created", msg)                            // 12 and 13 lost
	r.event(15, "message.created", []byte(`{"body":"bench:8:1"}`)) // another round's
	r.event(0, "reset", []byte(`{"cursor":20}`))
	if r.dups != 1 || r.gaps != 2+5 || r.msgs.Load() != 2 || len(r.lat) != 2 || r.errs["reset"] != 1 || r.last.Load() != 20 {
		t.Errorf("dups %d gaps %d msgs %d lat %d resets %d last %d", r.dups, r.gaps, r.msgs.Load(), len(r.lat), r.errs["reset"], r.last.Load())
	}
}
