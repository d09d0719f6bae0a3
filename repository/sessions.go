package repository

import (
	"context"
	"slices"
	"time"

	"github.com/uptrace/bun"
)

// Session is one live stream or long-poller.
type Session struct {
	bun.BaseModel `bun:"table:sessions,alias:s"`

	ID          string    `bun:"id,pk" json:"id"`
	UserID      string    `bun:"user_id" json:"-"`
	Transport   string    `bun:"transport" json:"transport"`
	Node        string    `bun:"node" json:"node"`
	UserAgent   string    `bun:"user_agent" json:"user_agent"`
	ConnectedAt time.Time `bun:"connected_at" json:"connected_at"`
	LastSeenAt  time.Time `bun:"last_seen_at" json:"last_seen_at"`
}

type node struct {
	bun.BaseModel `bun:"table:nodes"`

	ID         string    `bun:"id,pk"`
	StartedAt  time.Time `bun:"started_at"`
	LastSeenAt time.Time `bun:"last_seen_at"`
}

// HeartbeatNode records that node is alive. Liveness is kept per node, not
// per session: one write per node per interval whatever its session count.
// revived reports that the node had no row: it is new, or another node
// took it for dead and expired it (and its sessions).
func (s *Store) HeartbeatNode(ctx context.Context, id string) (revived bool, err error) {
	now := s.now()
	res, err := s.db.NewUpdate().Model((*node)(nil)).Set("last_seen_at = ?", now).Where("id = ?", id).Exec(ctx)
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return false, nil
	}
	_, err = s.db.NewInsert().Model(&node{ID: id, StartedAt: now, LastSeenAt: now}).
		On("CONFLICT (id) DO UPDATE").Set("last_seen_at = EXCLUDED.last_seen_at").Exec(ctx)
	return err == nil, err
}

// CreateSession stores a new live session.
func (s *Store) CreateSession(ctx context.Context, userID, transport, nodeID, userAgent string) (*Session, error) {
	now := s.now()
	sess := &Session{ID: newID(), UserID: userID, Transport: transport, Node: nodeID, UserAgent: userAgent, ConnectedAt: now, LastSeenAt: now}
	_, err := s.db.NewInsert().Model(sess).Exec(ctx)
	if isForeignKeyViolation(err) {
		return nil, ErrUnknownUser
	}
	return sess, err
}

// DeleteSession removes a session that ended.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	_, err := s.db.NewDelete().Model((*Session)(nil)).Where("id = ?", id).Exec(ctx)
	return err
}

// DeleteNodeSessions removes every session of a node (its start and stop).
func (s *Store) DeleteNodeSessions(ctx context.Context, nodeID string) error {
	_, err := s.db.NewDelete().Model((*Session)(nil)).Where("node = ?", nodeID).Exec(ctx)
	return err
}

// LiveSessions lists userID's sessions on nodes seen since aliveSince; a
// session's last_seen_at is its node's heartbeat.
func (s *Store) LiveSessions(ctx context.Context, userID string, aliveSince time.Time) ([]Session, error) {
	sessions := []Session{}
	err := s.db.NewSelect().Model(&sessions).
		ColumnExpr("s.id, s.user_id, s.transport, s.node, s.user_agent, s.connected_at").
		ColumnExpr("n.last_seen_at AS last_seen_at").
		Join("JOIN nodes AS n ON n.id = s.node").
		Where("s.user_id = ? AND n.last_seen_at >= ?", userID, aliveSince).
		Order("s.connected_at").Scan(ctx)
	return sessions, err
}

// CountLiveSessions counts userID's sessions on live nodes.
func (s *Store) CountLiveSessions(ctx context.Context, userID string, aliveSince time.Time) (int64, error) {
	return s.db.NewSelect().Model((*Session)(nil)).
		Join("JOIN nodes AS n ON n.id = s.node").
		Where("s.user_id = ? AND n.last_seen_at >= ?", userID, aliveSince).Count(ctx)
}

// OnlineAmong returns those of userIDs who have a live session now.
func (s *Store) OnlineAmong(ctx context.Context, userIDs []string, aliveSince time.Time) ([]string, error) {
	ids := []string{}
	if len(userIDs) == 0 {
		return ids, nil
	}
	err := s.db.NewRaw(`SELECT DISTINCT s.user_id FROM sessions AS s JOIN nodes AS n ON n.id = s.node
		WHERE s.user_id IN (?) AND n.last_seen_at >= ?`, bun.List(userIDs), aliveSince).Scan(ctx, &ids)
	return ids, err
}

// SharesPresence reports whether a conversation of n members shares
// presence (see Options.PresenceMaxMembers).
func (s *Store) SharesPresence(n int) bool { return n <= s.presenceMaxMembers }

// ExpireNodes deletes nodes not seen since aliveSince and their sessions
// (what a crashed node left behind) and returns the users who had them.
func (s *Store) ExpireNodes(ctx context.Context, aliveSince time.Time) ([]string, error) {
	var users []string
	err := s.tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		var gone []Session
		err := tx.NewDelete().Model(&gone).
			Where("node NOT IN (SELECT id FROM nodes WHERE last_seen_at >= ?)", aliveSince).
			Returning("user_id").Scan(ctx)
		if err != nil {
			return err
		}
		for _, g := range gone {
			users = append(users, g.UserID)
		}
		slices.Sort(users)
		users = slices.Compact(users)
		_, err = tx.NewDelete().Model((*node)(nil)).Where("last_seen_at < ?", aliveSince).Exec(ctx)
		return err
	})
	return users, err
}

// RestoreSessions re-inserts sessions that another node expired while this
// one could not heartbeat; rows that still exist are left alone.
func (s *Store) RestoreSessions(ctx context.Context, sessions []*Session) error {
	if len(sessions) == 0 {
		return nil
	}
	_, err := s.db.NewInsert().Model(&sessions).On("CONFLICT (id) DO NOTHING").Exec(ctx)
	return err
}

// OnlineCoMembers returns the users userID shares presence with (see
// CoMembers) who have a session on a live node: the presence snapshot a
// new stream starts with.
func (s *Store) OnlineCoMembers(ctx context.Context, userID string, aliveSince time.Time) ([]string, error) {
	ids := []string{}
	// Each co-member is probed for one live session (EXISTS), rather than
	// joining every session of every co-member: a stream opens in a group
	// of a thousand users with ten devices each in half the time.
	err := s.db.NewRaw(`SELECT DISTINCT o.user_id FROM members AS m
		JOIN conversations AS c ON c.id = m.conversation_id AND c.member_count <= ?
		JOIN members AS o ON o.conversation_id = m.conversation_id
		WHERE m.user_id = ? AND o.user_id <> ? AND EXISTS (
			SELECT 1 FROM sessions AS s JOIN nodes AS n ON n.id = s.node
			WHERE s.user_id = o.user_id AND n.last_seen_at >= ?)`, s.presenceMaxMembers, userID, userID, aliveSince).Scan(ctx, &ids)
	return ids, err
}
