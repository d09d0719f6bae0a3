package api

import (
	"testing"
	"time"
)

// TestBackoffGrows: after the free failures each attempt waits for a delay
// that doubles with every further failure, up to the maximum; a success
// forgives, and so does a quiet window. The clock is fake: nothing sleeps.
func TestBackoffGrows(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newBackoff(2, time.Second, 8*time.Second, time.Hour, 24*time.Hour)
	b.now = func() time.Time { return now }
	fail := func() {
		t.Helper()
		ok, retry, end := b.begin("k")
		if !ok {
			t.Fatalf("refused at %v (retry %v)", now, retry)
		}
		end(true)
	}
	refusedFor := func() time.Duration {
		t.Helper()
		ok, retry, _ := b.begin("k")
		if ok {
			t.Fatalf("admitted at %v", now)
		}
		return retry
	}
	fail()
	fail() // two free failures
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		if got := refusedFor(); got != want {
			t.Fatalf("wait %v, want %v", got, want)
		}
		now = now.Add(want - time.Millisecond)
		if got := refusedFor(); got != time.Millisecond {
			t.Fatalf("just before the end of the delay: wait %v", got)
		}
		now = now.Add(time.Millisecond)
		fail()
	}

	// Concurrent attempts past the free ones: one at a time.
	now = now.Add(8 * time.Second)
	ok, _, end := b.begin("k")
	if !ok {
		t.Fatal("refused after the delay")
	}
	if ok, _, _ := b.begin("k"); ok {
		t.Fatal("a second attempt was admitted while the first runs")
	}
	end(false) // not a failure: the next attempt needs no further wait
	if ok, _, end := b.begin("k"); !ok {
		t.Fatal("refused after an attempt that did not fail")
	} else {
		end(false)
	}

	b.succeed("k")
	if !b.trusted("k") || b.trusted("other") {
		t.Fatal("trust not recorded for the key alone")
	}
	fail()
	fail()
	if got := refusedFor(); got != time.Second {
		t.Fatalf("after a success the schedule starts again: wait %v", got)
	}
	now = now.Add(time.Hour + time.Second) // failures are forgotten
	fail()
	fail()
	now = now.Add(25 * time.Hour)
	if b.trusted("k") {
		t.Fatal("trust outlived its window")
	}
}

// TestBackoffFull: while the map is full, new keys share one entry, so
// failures still count (no key is forgotten early) and the map stays
// bounded.
func TestBackoffFull(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newBackoff(2, time.Hour, time.Hour, time.Hour, time.Hour)
	b.now = func() time.Time { return now }
	b.maxKeys = 3
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		ok, _, end := b.begin(k)
		if !ok {
			t.Fatalf("%s refused", k)
		}
		end(true)
	}
	if len(b.keys) != 4 { // a, b, c and the shared entry of d and e
		t.Fatalf("%d keys", len(b.keys))
	}
	if ok, _, _ := b.begin("f"); ok {
		t.Fatal("a new key was admitted past the failures of the shared entry")
	}
	b.succeed("g")
	if ok, _, _ := b.begin("f"); ok || b.trusted("g") {
		t.Fatal("a success forgave the shared entry")
	}
	if ok, _, end := b.begin("a"); !ok {
		t.Fatal("an existing key lost its own entry")
	} else {
		end(false)
	}
}
