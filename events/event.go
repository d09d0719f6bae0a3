// Package events is confab's real-time core: the per-node hub that feeds
// every live stream and long-poll from the per-user event streams, the bus
// that rings it across nodes (Postgres LISTEN/NOTIFY, or in-process on
// SQLite), typing state, sessions and presence.
package events

import (
	"encoding/json"
	"errors"
	"time"
)

// Event is one frame for a subscriber. Durable events have Seq > 0 and come
// from the user's stream; ephemeral ones (typing, presence) have Seq 0.
type Event struct {
	Seq  int64
	Type string
	Data json.RawMessage
	// At is when the event was created (durable: in the writing
	// transaction), for the delivery-lag metric.
	At time.Time
}

// Types of frames that are not durable stream rows.
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
	// ErrPruned: the events after the subscriber's cursor are past
	// retention; it must reconnect and be told to reset.
	ErrPruned = errors.New("events: cursor older than retention")
)
