package events

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes the real-time core of one node.
type Config struct {
	// Node names this node in sessions and notifications.
	Node string
	// ListenURL is the Postgres URL of the LISTEN connection (direct, not
	// through a transaction pooler). Empty on SQLite.
	ListenURL string
	// Channel is the NOTIFY channel (tests give each database its own).
	Channel string

	Hub HubConfig
	// SafetyPoll bounds how long a lost doorbell can delay an event.
	SafetyPoll time.Duration
	// ListenerPing is how long the listener waits idle before it pings.
	ListenerPing time.Duration
	// TypingTTL is how long a typing ping lasts without a refresh.
	TypingTTL time.Duration
	// NodeHeartbeat is how often the node proves it is alive; sessions of a
	// node silent for NodeExpiry are dead.
	NodeHeartbeat time.Duration
	NodeExpiry    time.Duration
	// PresenceDebounce delays "offline" so a reload does not flap.
	PresenceDebounce time.Duration
	// PollIdle ends a long-poll session that has not polled again.
	PollIdle time.Duration
	// PollHold is how long a long-poll session's subscription is kept
	// after an answer for the session's next poll (0: not kept, every poll
	// subscribes anew). Pollers come back within milliseconds; one that
	// comes later starts over from the database.
	PollHold time.Duration
	// Retention is how long log events are kept; PruneEvery how often the
	// pruner runs (0: never).
	Retention  time.Duration
	PruneEvery time.Duration
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{
		Channel:          "confab",
		Hub:              HubConfig{Buffer: 256, Page: 256, Ring: 4096, SlowAfter: 10 * time.Second, MaxPerUser: 32},
		SafetyPoll:       5 * time.Second,
		ListenerPing:     5 * time.Second,
		TypingTTL:        5 * time.Second,
		NodeHeartbeat:    10 * time.Second,
		NodeExpiry:       35 * time.Second,
		PresenceDebounce: 3 * time.Second,
		PollIdle:         90 * time.Second,
		PollHold:         30 * time.Second,
		Retention:        30 * 24 * time.Hour,
		PruneEvery:       time.Hour,
	}
}

// Broker is one node's real-time core: the hub, the bus between nodes,
// typing state, sessions and presence.
type Broker struct {
	cfg     Config
	store   *repository.Store
	log     *slog.Logger
	Metrics *Metrics

	hub      *Hub
	notifier *notifier // nil on SQLite
	listener *listener // nil on SQLite
	typing   *typingTable
	sessions *sessions

	stopped atomic.Bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New builds a broker; Start runs it.
func New(cfg Config, store *repository.Store, log *slog.Logger, reg prometheus.Registerer) *Broker {
	m := NewMetrics(reg)
	b := &Broker{
		cfg: cfg, store: store, log: log, Metrics: m,
		hub:    newHub(store, log, m, cfg.Hub),
		typing: newTypingTable(),
	}
	b.sessions = newSessions(b)
	if store.IsPostgres() {
		b.notifier = newNotifier(store, cfg.Channel, cfg.Node, log, m)
		b.listener = &listener{
			url: cfg.ListenURL, channel: cfg.Channel, node: cfg.Node, log: log, metrics: m,
			pingInt:     cfg.ListenerPing,
			onConnect:   b.hub.Sweep,
			onDoorbell:  b.hub.Ring,
			onEphemeral: b.receiveEphemeral,
		}
	}
	store.OnCommit(b.committed)
	return b
}

// Start runs the background loops until Stop.
func (b *Broker) Start(ctx context.Context) error {
	if err := b.store.CheckLogPositions(ctx); err != nil {
		return err
	}
	if err := b.hub.start(ctx); err != nil {
		return err
	}
	if _, err := b.store.HeartbeatNode(ctx, b.cfg.Node); err != nil {
		return err
	}
	// A restarted node with the same id left rows behind.
	if err := b.store.DeleteNodeSessions(ctx, b.cfg.Node); err != nil {
		return err
	}
	ctx, b.cancel = context.WithCancel(context.WithoutCancel(ctx))
	b.goLoop(func() { b.hub.run(ctx) })
	if b.notifier != nil {
		b.goLoop(func() { b.notifier.run(ctx) })
		b.goLoop(func() { b.listener.run(ctx) })
	}
	b.goLoop(func() { b.every(ctx, b.cfg.SafetyPoll, b.hub.Sweep) })
	b.goLoop(func() { b.every(ctx, 250*time.Millisecond, b.expireTyping) })
	b.goLoop(func() { b.every(ctx, b.cfg.NodeHeartbeat, func() { b.heartbeat(ctx) }) })
	b.goLoop(func() { b.every(ctx, b.cfg.PollIdle/3, func() { b.sessions.expirePolls(b.cfg.PollIdle) }) })
	if b.cfg.PollHold > 0 {
		b.goLoop(func() { b.every(ctx, b.cfg.PollHold/2, func() { b.sessions.expireFeeds(b.cfg.PollHold) }) })
	}
	if b.cfg.PruneEvery > 0 {
		b.goLoop(func() { b.every(ctx, b.cfg.PruneEvery, func() { b.prune(ctx) }) })
	}
	return nil
}

func (b *Broker) goLoop(fn func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
}

func (b *Broker) every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// Drain ends every stream and waiting poll (their clients reconnect to
// another node and resume) and refuses new ones. Call it before shutting
// the HTTP server down.
func (b *Broker) Drain() { b.hub.close() }

// Stop ends the background loops, flushing pending notifications, and
// removes this node's sessions.
func (b *Broker) Stop() {
	b.stopped.Store(true)
	b.hub.close()
	if b.cancel != nil {
		b.cancel()
	}
	b.wg.Wait()
	b.sessions.logPollSessions()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := b.store.DeleteNodeSessions(ctx, b.cfg.Node); err != nil {
		b.log.Warn("delete node sessions", slog.Any("err", err))
	}
}

// Ready reports whether this node receives other nodes' events.
func (b *Broker) Ready(context.Context) error {
	if b.listener != nil && !b.listener.up.Load() {
		return errors.New("listener not connected")
	}
	return nil
}

// ListenerPID is the backend pid of the LISTEN connection (0 if none).
func (b *Broker) ListenerPID() uint32 {
	if b.listener == nil {
		return 0
	}
	return b.listener.backendPID()
}

// committed takes the events a transaction on this node just committed
// (the store calls it: see repository.Store.OnCommit): local subscribers
// get them from the hub, other nodes are rung by NOTIFY.
func (b *Broker) committed(evs []repository.LogEvent) {
	b.hub.Committed(evs)
	if b.notifier != nil {
		b.notifier.doorbell(evs[len(evs)-1].Position())
	}
	for _, ev := range evs {
		if ev.Type == repository.EventConversationCreated || ev.Type == repository.EventMemberJoined {
			go b.introduce(ev)
		}
	}
}

// Subscribe starts delivering userID's events after the position `after`.
func (b *Broker) Subscribe(userID string, after repository.Position) *Subscription {
	return b.hub.Subscribe(userID, after, repository.Position{})
}

// Resume decides where a stream or poll starts from the cursor a client
// sent: the head of the log (its last final position, see
// repository.LogHead) when it sent none; its cursor when the events
// after it are all there; else the head with reset set, so that the client
// reloads its state instead of silently missing events (a cursor older
// than retention, one from before the event log, one ahead of the log). A
// cursor that is not a position is ErrInvalidCursor.
func (b *Broker) Resume(ctx context.Context, cursor string) (from repository.Position, reset bool, err error) {
	from, _, reset, err = b.resume(ctx, cursor)
	return from, reset, err
}

// resume is Resume that also returns the last position stored when the
// cursor was checked (the zero position when there was no cursor to check):
// events up to it exist.
func (b *Broker) resume(ctx context.Context, cursor string) (from, last repository.Position, reset bool, err error) {
	if cursor == "" {
		from, err = b.store.LogHead(ctx)
		return from, last, false, err
	}
	p, err := repository.ParsePosition(cursor)
	switch {
	case errors.Is(err, repository.ErrOldCursor):
		from, err = b.store.LogHead(ctx)
		return from, last, true, err
	case err != nil:
		return from, last, false, ErrInvalidCursor
	}
	floor, last, err := b.store.LogBounds(ctx)
	if err != nil {
		return from, last, false, err
	}
	if p.Less(floor) || last.Less(p) {
		from, err = b.store.LogHead(ctx)
		return from, last, true, err
	}
	return p, last, false, nil
}

// SetTyping records a typing ping (or stop) from userID in convID and tells
// the conversation's other members.
func (b *Broker) SetTyping(userID, convID string, typing bool, members []string) {
	to := slices.DeleteFunc(slices.Clone(members), func(u string) bool { return u == userID })
	b.setTyping(userID, convID, typing, to)
}

// StopTyping ends userID's typing in convID, if on: a sent message ends it.
func (b *Broker) StopTyping(userID, convID string) {
	b.setTyping(userID, convID, false, nil)
}

func (b *Broker) setTyping(userID, convID string, typing bool, to []string) {
	now := time.Now().UTC()
	st := Typing{ConversationID: convID, UserID: userID, Typing: typing, ExpiresAt: now}
	if typing {
		st.ExpiresAt = now.Add(b.cfg.TypingTTL)
	}
	was, prevTo := b.typing.set(st, to)
	if !typing {
		if !was {
			return // nothing to stop
		}
		to = prevTo
	}
	data, _ := json.Marshal(st)
	b.publish(TypeTyping, data, to)
}

// TypingIn lists who is typing in the given conversations.
func (b *Broker) TypingIn(convIDs []string) []Typing {
	return b.typing.active(convIDs, time.Now())
}

// TypingFor lists who is typing in userID's conversations, the user
// excepted. Most of the time nobody types anywhere: then it reads nothing,
// and a long-poll answer costs no query for it.
func (b *Broker) TypingFor(ctx context.Context, userID string) ([]Typing, error) {
	if b.typing.empty() {
		return []Typing{}, nil
	}
	convs, err := b.store.ConversationIDs(ctx, userID)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(b.TypingIn(convs), func(t Typing) bool { return t.UserID == userID }), nil
}

// expireTyping forgets typing pings past their TTL and tells this node's
// subscribers (every node does the same for its own).
func (b *Broker) expireTyping() {
	stops, to := b.typing.expire(time.Now())
	for i, st := range stops {
		data, _ := json.Marshal(st)
		b.hub.Publish(to[i], Event{Type: TypeTyping, Data: data, At: time.Now()})
	}
}

// publish sends an ephemeral event to users here and on every other node.
func (b *Broker) publish(typ string, data json.RawMessage, to []string) {
	b.hub.Publish(to, Event{Type: typ, Data: data, At: time.Now()})
	if b.notifier == nil {
		return
	}
	for _, p := range encodeEphemeral(b.cfg.Node, typ, data, to) {
		b.notifier.ephemeral(p)
	}
}

// encodeEphemeral splits the recipients so every payload fits a NOTIFY.
// Even with no recipients one payload goes out: typing state is kept by
// every node.
func encodeEphemeral(node, typ string, data json.RawMessage, to []string) []string {
	prefix := string(kindEphemeral) + "|" + node + "|"
	encode := func(part []string) string {
		b, _ := json.Marshal(ephemeralMsg{Type: typ, Data: data, To: part})
		return prefix + string(b)
	}
	// Size each recipient once and cut greedily: re-encoding halves of a
	// thousand ids until one fits cost every presence change of a big group
	// a megabyte of garbage.
	base := len(encode([]string{}))
	var out []string
	for start := 0; ; {
		size, end := base, start
		for end < len(to) {
			n := jsonStringLen(to[end])
			if end > start {
				n++ // the comma
			}
			if size+n > maxPayload && end > start {
				break
			}
			size += n
			end++
		}
		out = append(out, encode(to[start:end]))
		if end >= len(to) {
			return out
		}
		start = end
	}
}

// jsonStringLen is the length of s encoded by encoding/json.
func jsonStringLen(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return len(b)
		}
	}
	return len(s) + 2
}

func (b *Broker) receiveEphemeral(raw json.RawMessage) {
	var m ephemeralMsg
	if err := json.Unmarshal(raw, &m); err != nil {
		return
	}
	if m.Type == TypeTyping {
		var st Typing
		if json.Unmarshal(m.Data, &st) == nil {
			b.typing.set(st, m.To)
		}
	}
	b.hub.Publish(m.To, Event{Type: m.Type, Data: m.Data, At: time.Now()})
}

// OpenSession records a stream session; the returned func closes it.
func (b *Broker) OpenSession(ctx context.Context, userID, transport, userAgent string) (string, func(), error) {
	id, err := b.sessions.open(ctx, userID, transport, userAgent)
	if err != nil {
		return "", nil, err
	}
	return id, func() { b.sessions.close(id, userID) }, nil
}

// OnlineContacts lists the users who share a conversation with userID and
// are online now, so a new stream starts knowing who is there.
func (b *Broker) OnlineContacts(ctx context.Context, userID string) ([]string, error) {
	return b.store.OnlineCoMembers(ctx, userID, b.aliveSince())
}

// Sessions lists userID's live sessions on every node.
func (b *Broker) Sessions(ctx context.Context, userID string) ([]repository.Session, error) {
	return b.store.LiveSessions(ctx, userID, b.aliveSince())
}

func (b *Broker) aliveSince() time.Time { return time.Now().Add(-b.cfg.NodeExpiry) }

func (b *Broker) heartbeat(ctx context.Context) {
	revived, err := b.store.HeartbeatNode(ctx, b.cfg.Node)
	if err != nil {
		b.log.Warn("node heartbeat", slog.Any("err", err))
		return
	}
	if revived {
		// Another node took this one for dead (a database outage, a
		// stall) and deleted its sessions: put them back.
		if err := b.sessions.restore(ctx); err != nil {
			b.log.Warn("restore sessions", slog.Any("err", err))
		} else {
			b.log.Warn("this node had been expired; its sessions are restored")
		}
	}
	users, err := b.store.ExpireNodes(ctx, b.aliveSince())
	if err != nil {
		b.log.Warn("expire nodes", slog.Any("err", err))
		return
	}
	if len(users) > 0 {
		b.log.Info("expired the sessions of dead nodes", slog.Int("users", len(users)))
	}
	for _, u := range users {
		b.announcePresence(u, false)
	}
}

func (b *Broker) prune(ctx context.Context) {
	n, err := b.store.PruneLog(ctx, time.Now().Add(-b.cfg.Retention))
	if err != nil {
		b.log.Warn("prune the log", slog.Any("err", err))
		return
	}
	t, err := b.store.PruneRefreshTokens(ctx, time.Now())
	if err != nil {
		b.log.Warn("prune refresh tokens", slog.Any("err", err))
		return
	}
	if n > 0 || t > 0 {
		b.log.Info("pruned", slog.Int64("log_events", n), slog.Int64("refresh_tokens", t))
	}
}
