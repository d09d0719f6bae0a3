package api

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters is a set of token buckets by key (a username, a client address,
// a user and conversation). Idle buckets are dropped so the map stays small.
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

func (l *limiters) get(key string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
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
	return b.lim
}

// allow takes one token for key, or says how many seconds until one is free.
func (l *limiters) allow(key string) (ok bool, retryAfter int) {
	now := time.Now()
	r := l.get(key, now).ReserveN(now, 1)
	if !r.OK() {
		return false, 60
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, int(math.Ceil(d.Seconds()))
	}
	return true, 0
}

// blocked reports whether key has no token left, without taking one.
func (l *limiters) blocked(key string) (bool, int) {
	now := time.Now()
	lim := l.get(key, now)
	if lim.TokensAt(now) >= 1 {
		return false, 0
	}
	r := lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return true, int(math.Ceil(d.Seconds()))
}
