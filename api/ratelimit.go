package api

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters is a set of token buckets by key (a client address, a user and
// conversation). Idle buckets are dropped so the map stays small.
type limiters struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	buckets map[string]*bucket
	lastGC  time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiters(every time.Duration, burst int) *limiters {
	return &limiters{every: rate.Every(every), burst: burst, buckets: map[string]*bucket{}, lastGC: time.Now()}
}

// getLocked returns key's bucket, creating it; l.mu is held.
func (l *limiters) getLocked(key string, now time.Time) *bucket {
	if now.Sub(l.lastGC) > time.Minute {
		// A bucket idle long enough to be full again carries no state.
		full := time.Duration(float64(l.burst)/float64(l.every)) * time.Second
		for k, b := range l.buckets {
			if now.Sub(b.seen) > full {
				delete(l.buckets, k)
			}
		}
		l.lastGC = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.every, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	return b
}

// allow takes one token for key, or says how many seconds until one is free.
func (l *limiters) allow(key string) (ok bool, retryAfter int) { return l.allowN(key, 1) }

// allowN takes n tokens for key at once, or none and says how many seconds
// until n are free. A nil *limiters is no limit at all (a limit configured
// as 0).
func (l *limiters) allowN(key string, n int) (ok bool, retryAfter int) {
	ok, retryAfter, _ = l.takeN(key, n)
	return ok, retryAfter
}

// takeN is allowN that can give the tokens back: undo returns them when a
// request that took them is refused by another limit after all.
func (l *limiters) takeN(key string, n int) (ok bool, retryAfter int, undo func()) {
	if l == nil || n <= 0 {
		return true, 0, func() {}
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.getLocked(key, now)
	if b.lim.TokensAt(now) < float64(n) {
		r := b.lim.ReserveN(now, n)
		defer r.CancelAt(now)
		if !r.OK() { // n exceeds the burst: never
			return false, 60, nil
		}
		return false, max(1, int(math.Ceil(r.DelayFrom(now).Seconds()))), nil
	}
	r := b.lim.ReserveN(now, n)
	return true, 0, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		// At the reservation's own time: rate restores nothing for a
		// reservation whose time to act has passed.
		r.CancelAt(now)
	}
}

// perInterval returns n tokens per interval with a burst of burst, or nil
// (no limit) when n is 0.
func perInterval(n int, interval time.Duration, burst int) *limiters {
	if n <= 0 {
		return nil
	}
	return newLimiters(interval/time.Duration(n), max(burst, 1))
}
