package events

import (
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// Typing is one user's typing state in one conversation.
type Typing struct {
	ConversationID string    `json:"conversation_id"`
	UserID         string    `json:"user_id"`
	Typing         bool      `json:"typing"`
	ExpiresAt      time.Time `json:"expires_at"`
}

// typingTable is this node's copy of who is typing where. Every node keeps
// one (typing pings reach all nodes), so long-poll answers can include it,
// and each forgets expired entries by itself.
type typingTable struct {
	mu sync.Mutex
	m  map[string]map[string]typingEntry // conversation -> user -> entry
}

type typingEntry struct {
	expires time.Time
	to      []string // who to tell when it expires
}

func newTypingTable() *typingTable {
	return &typingTable{m: map[string]map[string]typingEntry{}}
}

// set records a typing ping (on) or a stop and reports whether the user was
// typing before, and whom that ping went to.
func (t *typingTable) set(st Typing, to []string) (was bool, prevTo []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	users := t.m[st.ConversationID]
	prev, was := users[st.UserID]
	prevTo = prev.to
	if !st.Typing {
		delete(users, st.UserID)
		if len(users) == 0 {
			delete(t.m, st.ConversationID)
		}
		return was, prevTo
	}
	if users == nil {
		users = map[string]typingEntry{}
		t.m[st.ConversationID] = users
	}
	if was && prev.expires.Equal(st.ExpiresAt) {
		// The same ping in several notifications (a big group's
		// recipients are split): remember all of them.
		to = append(slices.Clip(prev.to), to...)
	}
	users[st.UserID] = typingEntry{expires: st.ExpiresAt, to: to}
	return was, prevTo
}

// empty reports whether nobody types anywhere (or only expired entries
// are left to purge).
func (t *typingTable) empty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m) == 0
}

// active lists the unexpired typing states of the given conversations.
func (t *typingTable) active(convs []string, now time.Time) []Typing {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []Typing{}
	for _, c := range convs {
		for u, e := range t.m[c] {
			if now.Before(e.expires) {
				out = append(out, Typing{ConversationID: c, UserID: u, Typing: true, ExpiresAt: e.expires})
			}
		}
	}
	return out
}

// expire removes entries past their time and returns them as stops.
func (t *typingTable) expire(now time.Time) (stops []Typing, to [][]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, users := range t.m {
		for u, e := range users {
			if !now.Before(e.expires) {
				delete(users, u)
				stops = append(stops, Typing{ConversationID: c, UserID: u, Typing: false, ExpiresAt: e.expires})
				to = append(to, e.to)
			}
		}
		if len(users) == 0 {
			delete(t.m, c)
		}
	}
	return stops, to
}

// ephemeralMsg is an ephemeral event as it crosses the bus.
type ephemeralMsg struct {
	Type string          `json:"t"`
	Data json.RawMessage `json:"d"`
	To   []string        `json:"to"`
}
