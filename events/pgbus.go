package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/jackc/pgx/v5"
)

// maxPayload keeps every NOTIFY under Postgres' 8000-byte limit.
const maxPayload = 7900

// Notification payloads: "d|<node>|<position>" rings the doorbell (the
// log has events up to that position); "e|<node>|<json>" carries an
// ephemeral event.
const (
	kindDoorbell  = 'd'
	kindEphemeral = 'e'
)

// notifier sends this node's doorbells to the other nodes. It coalesces:
// when no NOTIFY is in flight it sends at once, otherwise it accumulates
// until the one in flight returns. NOTIFY runs after the writing
// transaction committed, in its own statement, because Postgres serialises
// notifying commits on a cluster-wide lock.
type notifier struct {
	store   *repository.Store
	channel string
	node    string
	log     *slog.Logger
	metrics *Metrics

	mu sync.Mutex
	// top is the last position committed here since the last NOTIFY (zero:
	// none); one doorbell tells every node to read up to it.
	top  repository.Position
	eph  []string // encoded ephemeral payloads
	wake chan struct{}
}

func newNotifier(store *repository.Store, channel, node string, log *slog.Logger, m *Metrics) *notifier {
	return &notifier{store: store, channel: channel, node: node, log: log, metrics: m, wake: make(chan struct{}, 1)}
}

func (n *notifier) doorbell(p repository.Position) {
	n.mu.Lock()
	if n.top.Less(p) {
		n.top = p
	}
	n.mu.Unlock()
	n.poke()
}

func (n *notifier) ephemeral(payload string) {
	n.mu.Lock()
	n.eph = append(n.eph, payload)
	n.mu.Unlock()
	n.poke()
}

func (n *notifier) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			// Flush what is left: lose no doorbell we can still send.
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			n.flush(fctx)
			cancel()
			return
		case <-n.wake:
			n.flush(ctx)
		}
	}
}

func (n *notifier) flush(ctx context.Context) {
	n.mu.Lock()
	top, eph := n.top, n.eph
	n.top, n.eph = repository.Position{}, nil
	n.mu.Unlock()
	payloads := eph
	if top != (repository.Position{}) {
		payloads = append(payloads, encodeDoorbell(n.node, top))
	}
	if len(payloads) == 0 {
		return
	}
	if err := n.store.Notify(ctx, n.channel, payloads); err != nil {
		// Lost doorbells are covered by the other nodes' safety poll.
		n.log.Warn("notify failed", slog.Int("payloads", len(payloads)), slog.Any("err", err))
		return
	}
	n.metrics.NotifySent.Add(float64(len(payloads)))
}

// encodeDoorbell is the payload that rings every other node up to p.
func encodeDoorbell(node string, p repository.Position) string {
	return string(kindDoorbell) + "|" + node + "|" + p.String()
}

// listener holds the one LISTEN connection of this node, outside the pool.
// It pings an idle connection so a dead socket is noticed within seconds,
// reconnects with backoff, and after every (re)connect has the hub re-read
// every local subscriber, since doorbells sent meanwhile are gone.
type listener struct {
	url     string
	channel string
	node    string
	log     *slog.Logger
	metrics *Metrics
	// onConnect runs after LISTEN succeeded; onDoorbell and onEphemeral
	// get other nodes' notifications.
	onConnect   func()
	onDoorbell  func(repository.Position)
	onEphemeral func(json.RawMessage)

	up      atomic.Bool
	pingInt time.Duration
	pidMu   sync.Mutex
	pid     uint32
}

func (l *listener) run(ctx context.Context) {
	const firstBackoff = 100 * time.Millisecond
	backoff := firstBackoff
	for ctx.Err() == nil {
		err := l.session(ctx)
		if l.up.Load() {
			backoff = firstBackoff // it was connected: a fresh failure
		}
		l.up.Store(false)
		l.metrics.ListenerUp.Set(0)
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("listener disconnected; reconnecting", slog.Any("err", err), slog.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// session runs one connection until it fails.
func (l *listener) session(ctx context.Context) error {
	cfg, err := pgx.ParseConfig(l.url)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["application_name"] = "confab-listener " + l.node
	cfg.ConnectTimeout = 5 * time.Second
	dialer := &net.Dialer{KeepAlive: 5 * time.Second, Timeout: 5 * time.Second}
	cfg.DialFunc = dialer.DialContext
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		return err
	}
	l.pidMu.Lock()
	l.pid = conn.PgConn().PID()
	l.pidMu.Unlock()
	l.up.Store(true)
	l.metrics.ListenerUp.Set(1)
	l.metrics.ListenerRestarts.Inc()
	l.log.Info("listening", slog.String("channel", l.channel))
	l.onConnect()

	for {
		wctx, cancel := context.WithTimeout(ctx, l.pingInt)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				// Idle: prove the socket is alive.
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				err := conn.Ping(pctx)
				cancel()
				if err != nil {
					return fmt.Errorf("ping: %w", err)
				}
				continue
			}
			return err
		}
		l.handle(n.Payload)
	}
}

func (l *listener) handle(payload string) {
	kind, rest, ok := strings.Cut(payload, "|")
	if !ok || len(kind) != 1 {
		return
	}
	node, body, ok := strings.Cut(rest, "|")
	if !ok || node == l.node {
		return // our own: the hub already has it
	}
	l.metrics.NotifyReceived.Inc()
	switch kind[0] {
	case kindDoorbell:
		p, _ := repository.ParsePosition(body) // unreadable: zero, read anyway
		l.onDoorbell(p)
	case kindEphemeral:
		l.onEphemeral(json.RawMessage(body))
	}
}

// backendPID is the listener connection's server process (tests kill it).
func (l *listener) backendPID() uint32 {
	l.pidMu.Lock()
	defer l.pidMu.Unlock()
	return l.pid
}
