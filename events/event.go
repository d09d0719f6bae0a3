// Package events is confab's real-time core: the per-node hub that tails
// the event log once for every live stream and long-poll of the node, the
// bus that rings it across nodes (Postgres LISTEN/NOTIFY, or in-process on
// SQLite), the long-poll wait, typing state, sessions and presence.
package events

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/confab-chat/confab/repository"
)

// Event is one frame for a subscriber. Durable events come from the log and
// have a position (ID is its string form, the SSE id and poll cursor);
// ephemeral ones (typing, presence) have neither. One Event is shared by
// every subscriber it goes to: read only.
type Event struct {
	Pos  repository.Position
	ID   string
	Type string
	Data json.RawMessage
	// At is when the event was created (durable: in the writing
	// transaction), for the delivery-lag metric.
	At time.Time

	conv string // the conversation of a durable event
}

// Durable reports whether the event has a position.
func (e *Event) Durable() bool { return e.ID != "" }

func newEvent(r *repository.LogEvent) *Event {
	p := r.Position()
	return &Event{Pos: p, ID: p.String(), Type: r.Type, Data: json.RawMessage(r.Data), At: r.CreatedAt, conv: r.ConversationID}
}

// Types of frames that are not durable log events.
const (
	TypeReady    = "ready"
	TypeReset    = "reset"
	TypeTyping   = "typing"
	TypePresence = "presence"
)

// Why a subscription ended, when the hub ended it.
var (
	ErrSlowConsumer = errors.New("events: subscriber too slow")
	ErrShutdown     = errors.New("events: node shutting down")
	// ErrTooMany: the user opened more streams and polls than a user may
	// hold open on one node; this was the oldest.
	ErrTooMany = errors.New("events: too many streams for one user")
)

// ErrInvalidCursor is a cursor that is not a position.
var ErrInvalidCursor = errors.New("events: invalid cursor")
