package events

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"
)

// Transports a session can use.
const (
	TransportSSE      = "sse"
	TransportLongPoll = "longpoll"
)

// sessions keeps the sessions table true for this node and derives presence
// from it. A stream is a session for its lifetime; a long-poller is one
// session across its polls, kept while it polls again within pollIdle.
type sessions struct {
	b *Broker

	mu    sync.Mutex
	local map[string]int          // user -> open sessions here
	polls map[string]*pollSession // session id -> long-poll session
}

type pollSession struct {
	userID  string
	waiting int
	last    time.Time
}

func newSessions(b *Broker) *sessions {
	return &sessions{b: b, local: map[string]int{}, polls: map[string]*pollSession{}}
}

// open records a new session and announces the user online if it is their
// first anywhere.
func (s *sessions) open(ctx context.Context, userID, transport, ua string) (string, error) {
	sess, err := s.b.store.CreateSession(ctx, userID, transport, s.b.cfg.Node, truncate(ua, 256))
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.local[userID]++
	first := s.local[userID] == 1
	s.mu.Unlock()
	if first {
		go s.b.announcePresence(userID)
	}
	return sess.ID, nil
}

// close removes a session; if it was the user's last here, presence is
// re-checked after a debounce (a page reload must not flap offline/online).
func (s *sessions) close(id, userID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.b.store.DeleteSession(ctx, id); err != nil {
		s.b.log.Warn("delete session", slog.Any("err", err))
	}
	s.mu.Lock()
	s.local[userID]--
	last := s.local[userID] <= 0
	if last {
		delete(s.local, userID)
	}
	s.mu.Unlock()
	if last {
		time.AfterFunc(s.b.cfg.PresenceDebounce, func() { s.b.announcePresence(userID) })
	}
}

// poll returns the long-poll session id to use, reusing the given one when
// it belongs to the user, and marks it waiting until done is called.
func (s *sessions) poll(ctx context.Context, userID, id, ua string) (string, func(), error) {
	s.mu.Lock()
	ps, ok := s.polls[id]
	if ok && ps.userID == userID {
		ps.waiting++
		s.mu.Unlock()
	} else {
		s.mu.Unlock()
		var err error
		if id, err = s.open(ctx, userID, TransportLongPoll, ua); err != nil {
			return "", nil, err
		}
		ps = &pollSession{userID: userID, waiting: 1}
		s.mu.Lock()
		s.polls[id] = ps
		s.mu.Unlock()
	}
	return id, func() {
		s.mu.Lock()
		ps.waiting--
		ps.last = time.Now()
		s.mu.Unlock()
	}, nil
}

// expirePolls closes long-poll sessions that stopped polling.
func (s *sessions) expirePolls(idle time.Duration) {
	now := time.Now()
	var gone []string
	s.mu.Lock()
	for id, ps := range s.polls {
		if ps.waiting == 0 && now.Sub(ps.last) > idle {
			gone = append(gone, id)
		}
	}
	users := make([]string, len(gone))
	for i, id := range gone {
		users[i] = s.polls[id].userID
		delete(s.polls, id)
	}
	s.mu.Unlock()
	for i, id := range gone {
		s.close(id, users[i])
	}
}

// announcePresence tells the user's contacts whether the user is online,
// judged from the sessions table (all nodes) rather than this node alone.
// Only transitions are sent.
func (b *Broker) announcePresence(userID string) {
	if b.stopped.Load() {
		return // a debounce timer that outlived the node
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := b.store.CountLiveSessions(ctx, userID, b.aliveSince())
	if err != nil {
		b.log.Warn("presence", slog.Any("err", err))
		return
	}
	online := n > 0
	b.presenceMu.Lock()
	was, known := b.presence[userID]
	b.presence[userID] = online
	if !online {
		delete(b.presence, userID)
	}
	b.presenceMu.Unlock()
	if known && was == online || !known && !online {
		return
	}
	to, err := b.store.CoMembers(ctx, userID)
	if err != nil {
		b.log.Warn("presence", slog.Any("err", err))
		return
	}
	data, _ := json.Marshal(map[string]any{"user_id": userID, "online": online})
	b.publish(TypePresence, data, to)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
