package events

// The hub's view of membership: the spans of the users with subscribers on
// this node, and the index conversation -> local users that the tail hands
// events through. The log's own membership events keep both true.

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/confab-chat/confab/repository"
)

// user is a user with subscribers on this node.
type user struct {
	id   string
	subs map[*Subscription]struct{}
	// spans are the user's membership spans, by conversation; nil until
	// loaded (loaded is closed then).
	spans  map[string][]repository.Span
	loaded chan struct{}
	err    error // why loading failed
}

// member reports whether u was a member of ev's conversation at its
// position.
func (u *user) member(ev *Event) bool {
	for _, s := range u.spans[ev.conv] {
		if s.Holds(ev.Pos) {
			return true
		}
	}
	return false
}

// loadSpans makes sure u's membership spans are known. The first
// subscriber of a user reads them; the others wait for it. Membership
// events the tail read while the spans were being read are applied again
// from the ring: applying one twice changes nothing.
func (h *Hub) loadSpans(ctx context.Context, u *user) error {
	h.mu.Lock()
	if u.loaded != nil {
		loaded := u.loaded
		h.mu.Unlock()
		<-loaded
		return u.err
	}
	u.loaded = make(chan struct{})
	h.mu.Unlock()
	for {
		from := h.Head()
		spans, err := h.store.Spans(ctx, u.id, repository.Position{})
		h.mu.Lock()
		if err != nil {
			u.err = err
			loaded := u.loaded
			u.loaded = nil // the next subscriber tries again
			h.mu.Unlock()
			close(loaded)
			return err
		}
		if h.users[u.id] != u {
			// Every subscriber of u ended during the read, and removed u
			// from the hub: indexing its spans now would keep it in the
			// index for good.
			u.spans = map[string][]repository.Span{}
			close(u.loaded)
			h.mu.Unlock()
			return nil
		}
		if from.Less(h.ringFloor) {
			// The ring moved past where the read began: read again.
			h.mu.Unlock()
			continue
		}
		u.spans = map[string][]repository.Span{}
		for _, s := range spans {
			h.addSpanLocked(u, s.ConversationID, s.Join, s.Left)
		}
		for _, ev := range h.ring[h.ringIndexAfter(from):] {
			h.applyMembershipLocked(ev, u)
		}
		close(u.loaded)
		h.mu.Unlock()
		return nil
	}
}

// addSpanLocked records a span of u in conv unless it is known already.
func (h *Hub) addSpanLocked(u *user, conv string, join repository.Position, left *repository.Position) {
	for i, s := range u.spans[conv] {
		if s.Join == join {
			if left != nil && s.Left == nil {
				u.spans[conv][i].Left = left
			}
			h.indexLocked(u, conv)
			return
		}
	}
	u.spans[conv] = append(u.spans[conv], repository.Span{ConversationID: conv, Join: join, Left: left})
	h.indexLocked(u, conv)
}

// indexLocked keeps u in convs[conv] while the tail may still read events
// of conv that u is to get: u's span there is open, or ends after the tail.
func (h *Hub) indexLocked(u *user, conv string) {
	open := slices.ContainsFunc(u.spans[conv], func(s repository.Span) bool { return s.Left == nil || h.tail.Less(*s.Left) })
	users := h.convs[conv]
	if open {
		if users == nil {
			users = map[*user]struct{}{}
			h.convs[conv] = users
		}
		users[u] = struct{}{}
		return
	}
	delete(users, u)
	if len(users) == 0 {
		delete(h.convs, conv)
	}
}

// applyMembershipLocked updates the spans of the local users an event
// adds to or removes from its conversation (only of `only`, if given).
func (h *Hub) applyMembershipLocked(ev *Event, only *user) {
	var subjects []string
	switch ev.Type {
	case repository.EventMemberJoined, repository.EventMemberLeft:
		var d struct {
			UserID string `json:"user_id"`
		}
		if json.Unmarshal(ev.Data, &d) != nil {
			return
		}
		subjects = []string{d.UserID}
	case repository.EventConversationCreated:
		var d struct {
			Conversation struct {
				Members []struct {
					UserID string `json:"user_id"`
				} `json:"members"`
			} `json:"conversation"`
		}
		if json.Unmarshal(ev.Data, &d) != nil {
			return
		}
		for _, m := range d.Conversation.Members {
			subjects = append(subjects, m.UserID)
		}
	default:
		return
	}
	for _, id := range subjects {
		u := h.users[id]
		if u == nil || u.spans == nil || (only != nil && u != only) {
			continue // not loaded: its spans are read with this event in them
		}
		if ev.Type == repository.EventMemberLeft {
			for i, s := range u.spans[ev.conv] {
				if s.Left == nil && s.Join.Less(ev.Pos) {
					left := ev.Pos
					u.spans[ev.conv][i].Left = &left
				}
			}
			h.indexLocked(u, ev.conv)
		} else {
			h.addSpanLocked(u, ev.conv, ev.Pos, nil)
		}
	}
}

// ringIndexAfter is the index of the first ring event after p.
func (h *Hub) ringIndexAfter(p repository.Position) int {
	i, _ := slices.BinarySearchFunc(h.ring, p, func(e *Event, p repository.Position) int {
		if e.Pos.Compare(p) <= 0 {
			return -1
		}
		return 1
	})
	return i
}
