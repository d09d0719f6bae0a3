package api

import (
	"sync"
	"time"
)

// backoff throttles failed logins by key with growing delays, as OWASP's
// authentication guidance recommends instead of lockouts: the first `free`
// failures cost nothing, then each attempt must wait base, 2·base, 4·base …
// (at most max) after the latest failure. A key's failures are forgotten
// after `forget` without one.
//
// It also remembers keys that succeeded (trust): a user who logged in from
// an address before is not held up by guessing from that address by others
// (an office behind one NAT address).
type backoff struct {
	free      int
	base, max time.Duration
	forget    time.Duration
	trustFor  time.Duration
	now       func() time.Time

	mu      sync.Mutex
	maxKeys int
	keys    map[string]*failures
	lastGC  time.Time
}

type failures struct {
	n        int       // failures counted
	last     time.Time // the latest failure
	inflight int       // attempts admitted and not yet ended
	trusted  time.Time // the latest success; zero: none
}

// maxBackoffKeys bounds the map (each entry is ~100 bytes).
const maxBackoffKeys = 1 << 17

// overflowKey is the entry that new keys share while the map is full.
const overflowKey = ""

func newBackoff(free int, base, max, forget, trustFor time.Duration) *backoff {
	return &backoff{free: free, base: base, max: max, forget: forget, trustFor: trustFor,
		now: time.Now, maxKeys: maxBackoffKeys, keys: map[string]*failures{}}
}

// wait is how long the next attempt must wait after the latest of n
// failures.
func (b *backoff) wait(n int) time.Duration {
	if n < b.free {
		return 0
	}
	d := b.base << min(n-b.free, 32)
	if d <= 0 || d > b.max {
		return b.max
	}
	return d
}

// getLocked returns key's entry, creating it; b.mu is held. While the map
// is full (attempts from very many addresses or names), new keys share
// one entry: that fails closed, where dropping entries would forgive
// failures.
func (b *backoff) getLocked(key string, now time.Time) *failures {
	if now.Sub(b.lastGC) > time.Minute {
		for k, f := range b.keys {
			if f.inflight == 0 && (f.n == 0 || now.Sub(f.last) > b.forget) && (f.trusted.IsZero() || now.Sub(f.trusted) > b.trustFor) {
				delete(b.keys, k)
			}
		}
		b.lastGC = now
	}
	f, ok := b.keys[key]
	if !ok && len(b.keys) >= b.maxKeys {
		key = overflowKey
		f, ok = b.keys[key]
	}
	if !ok {
		f = &failures{}
		b.keys[key] = f
	} else if f.n > 0 && f.inflight == 0 && now.Sub(f.last) > b.forget {
		f.n = 0
	}
	return f
}

// begin admits an attempt for key, or says how long to wait. An admitted
// attempt counts as a failure until end says otherwise, so that concurrent
// guesses cannot all pass a check made before any of them failed; past the
// free failures, one attempt at a time.
func (b *backoff) begin(key string) (ok bool, retry time.Duration, end func(failed bool)) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.getLocked(key, now)
	if f.n+f.inflight >= b.free {
		if f.inflight > 0 {
			return false, max(b.wait(f.n+f.inflight), time.Second), nil
		}
		if w := f.last.Add(b.wait(f.n)).Sub(now); w > 0 {
			return false, w, nil
		}
	}
	f.inflight++
	return true, 0, func(failed bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		f.inflight--
		if failed {
			f.n++
			f.last = b.now()
		}
	}
}

// succeed records a success for key: its failures are forgiven and it is
// trusted for trustFor.
func (b *backoff) succeed(key string) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.keys[key]; !ok && len(b.keys) >= b.maxKeys {
		return // the shared overflow entry is nobody's to forgive
	}
	f := b.getLocked(key, now)
	f.n = 0
	f.trusted = now
}

// trusted reports whether key succeeded within trustFor.
func (b *backoff) trusted(key string) bool {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.keys[key]
	return ok && !f.trusted.IsZero() && now.Sub(f.trusted) <= b.trustFor
}
