package events

// Catching up: how a subscription gets from its cursor to the live tail.

import (
	"context"
	"log/slog"
	"time"
)

// catchUp brings s from its cursor to the live tail: from the ring when it
// holds the cursor, else page by page from the database first. It stops
// when s's buffer fills; Received starts it again.
func (h *Hub) catchUp(s *Subscription) {
	ctx := context.Background()
	if err := h.loadSpans(ctx, s.u); err != nil {
		h.log.Warn("hub: read membership spans", slog.String("user", s.UserID), slog.Any("err", err))
		h.remove(s, err)
		return
	}
	for {
		h.mu.Lock()
		if s.ended {
			h.mu.Unlock()
			return
		}
		if !s.cursor.Less(h.ringFloor) {
			// Everything after the cursor is in the ring.
			for _, ev := range h.ring[h.ringIndexAfter(s.cursor):] {
				if s.u.member(ev) && !h.offerLocked(s, ev) {
					s.catching = false // Received resumes
					h.mu.Unlock()
					return
				}
			}
			h.goLiveLocked(s)
			h.mu.Unlock()
			return
		}
		upTo, after := h.tail, s.cursor
		h.mu.Unlock()

		evs, err := h.store.UserEvents(ctx, s.UserID, after, upTo, min(h.cfg.Page, h.cfg.Buffer))
		if err != nil {
			h.log.Warn("hub: read a user's events", slog.String("user", s.UserID), slog.Any("err", err))
			select {
			case <-s.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		h.mu.Lock()
		if s.ended {
			h.mu.Unlock()
			return
		}
		for i := range evs {
			if !h.offerLocked(s, newEvent(&evs[i])) {
				s.catching = false
				h.mu.Unlock()
				return
			}
		}
		if len(evs) < min(h.cfg.Page, h.cfg.Buffer) {
			s.cursor = upTo // nothing else of the user's up to there
		}
		h.mu.Unlock()
	}
}

// goLiveLocked marks s as caught up: the tail hands it what comes next.
func (h *Hub) goLiveLocked(s *Subscription) {
	s.live, s.catching = true, false
	s.behindSince = time.Time{}
	if s.cursor.Less(h.tail) {
		s.cursor = h.tail
	}
	h.caughtUpLocked(s)
}

// caughtUpLocked closes s's CaughtUp once the tail has reached its until,
// or has s wait for it.
func (h *Hub) caughtUpLocked(s *Subscription) {
	if s.caughtUp.Load() {
		return
	}
	if h.tail.Less(s.until) {
		h.waiting[s] = struct{}{}
		return
	}
	delete(h.waiting, s)
	s.caughtUp.Store(true)
	if s.caught != nil {
		close(s.caught)
	}
}

// resume restarts s's catching up after its consumer drained its queue.
func (h *Hub) resume(s *Subscription) {
	h.mu.Lock()
	if s.live || s.catching || s.ended {
		h.mu.Unlock()
		return
	}
	s.catching = true
	s.behind.Store(false)
	// It drained half its queue: it is slow, not stuck. Only a consumer
	// that stops draining for SlowAfter is cut.
	s.behindSince = time.Time{}
	h.mu.Unlock()
	go h.catchUp(s)
}
