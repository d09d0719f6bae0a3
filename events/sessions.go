package events

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/confab-chat/confab/repository"
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
	local map[string]int                 // user -> open sessions here
	rows  map[string]*repository.Session // session id -> its row, to restore after an outage
	polls map[string]*pollSession        // session id -> long-poll session
	// byClient finds the poll session of a client that does not send its
	// session_id back (a shell loop): one session per user, address and
	// user agent, not one per poll.
	byClient map[string]string
}

type pollSession struct {
	id      string
	userID  string
	client  string
	addr    string
	waiting int
	last    time.Time
	// What the session's end logs: a poller makes one request per
	// delivery, so its polls are not logged one by one (see
	// api.requestLog) but summed up here.
	started time.Time
	polls   int
	events  int
	// feed is the subscription the session's last poll kept for the next
	// (nil: none), since idleSince (see PollFeed).
	feed *PollFeed
}

func newSessions(b *Broker) *sessions {
	return &sessions{b: b, local: map[string]int{}, rows: map[string]*repository.Session{}, polls: map[string]*pollSession{}, byClient: map[string]string{}}
}

// open records a new session and, for the user's first session on this
// node, announces them online.
func (s *sessions) open(ctx context.Context, userID, transport, ua string) (string, error) {
	sess, err := s.b.store.CreateSession(ctx, userID, transport, s.b.cfg.Node, strings.ToValidUTF8(truncate(ua, 256), ""))
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.local[userID]++
	s.rows[sess.ID] = sess
	first := s.local[userID] == 1
	s.mu.Unlock()
	if first {
		go s.b.announcePresence(userID, true)
	}
	return sess.ID, nil
}

// restore re-inserts this node's sessions, after an outage long enough for
// another node to have expired them.
func (s *sessions) restore(ctx context.Context) error {
	s.mu.Lock()
	rows := make([]*repository.Session, 0, len(s.rows))
	for _, r := range s.rows {
		rows = append(rows, r)
	}
	s.mu.Unlock()
	return s.b.store.RestoreSessions(ctx, rows)
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
	delete(s.rows, id)
	s.local[userID]--
	last := s.local[userID] <= 0
	if last {
		delete(s.local, userID)
	}
	s.mu.Unlock()
	if last {
		time.AfterFunc(s.b.cfg.PresenceDebounce, func() { s.b.announcePresence(userID, false) })
	}
}

// poll returns the long-poll session to use, reusing the given one when it
// belongs to the user, else the session of the same client (user, address
// and user agent), and marks it waiting until pollDone. A poll that names
// its session and continues from cursor takes the feed the session's last
// poll kept, if that feed continues the cursor (one that cannot is
// closed: the poll starts a new one).
func (s *sessions) poll(ctx context.Context, userID, id string, client ClientAddr, ua string, cursor repository.Position, continuing bool) (*pollSession, *PollFeed, error) {
	s.mu.Lock()
	ps, ok := s.polls[id]
	if ok && ps.userID == userID {
		ps.waiting++
		feed := ps.feed
		if !continuing {
			feed = nil
		} else {
			ps.feed = nil
		}
		s.mu.Unlock()
		if feed != nil && !feed.continues(cursor) {
			feed.Close()
			feed = nil
		}
		return ps, feed, nil
	}
	// Only here: a poller that sends its session_id back (every poll of a
	// browser) needs neither its address nor the key. The session found
	// by them is not the one the poll named: its feed is not for this
	// cursor.
	s.mu.Unlock()
	addr := ""
	if client != nil {
		addr = client.ClientIP()
	}
	key := clientKey(userID, addr, ua)
	s.mu.Lock()
	if ps, ok = s.polls[s.byClient[key]]; ok {
		ps.waiting++
		s.mu.Unlock()
		return ps, nil, nil
	}
	s.mu.Unlock()
	id, err := s.open(ctx, userID, TransportLongPoll, ua)
	if err != nil {
		return nil, nil, err
	}
	ps = &pollSession{id: id, userID: userID, client: key, addr: addr, waiting: 1, started: time.Now()}
	s.mu.Lock()
	s.polls[id] = ps
	s.byClient[key] = id
	s.mu.Unlock()
	return ps, nil, nil
}

func clientKey(userID, addr, ua string) string { return userID + "\x00" + addr + "\x00" + ua }

// pollDone ends one poll of ps that answered with n events, and puts keep
// (if not nil) in the session's slot for its next poll. Two polls of one
// session at once (a client retrying) each end with a feed: the last one
// kept stays.
func (s *sessions) pollDone(ps *pollSession, n int, keep *PollFeed) {
	now := time.Now()
	var old *PollFeed
	s.mu.Lock()
	ps.waiting--
	ps.last = now
	ps.polls++
	ps.events += n
	if keep != nil {
		keep.idleSince = now
		old, ps.feed = ps.feed, keep
	}
	s.mu.Unlock()
	if old != nil && old != keep {
		old.Close()
	}
}

// expireFeeds closes the feeds idle for longer than idle: their poller
// stopped, or will start over from the database.
func (s *sessions) expireFeeds(idle time.Duration) {
	cutoff := time.Now().Add(-idle)
	var gone []*PollFeed
	s.mu.Lock()
	for _, ps := range s.polls {
		if ps.feed != nil && ps.feed.idleSince.Before(cutoff) {
			gone = append(gone, ps.feed)
			ps.feed = nil
		}
	}
	s.mu.Unlock()
	for _, f := range gone {
		f.Close()
	}
}

// keptFeeds is how many sessions' feeds wait for their next poll.
func (s *sessions) keptFeeds() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ps := range s.polls {
		if ps.feed != nil {
			n++
		}
	}
	return n
}

// expirePolls closes long-poll sessions that stopped polling.
func (s *sessions) expirePolls(idle time.Duration) {
	now := time.Now()
	var gone []*pollSession
	s.mu.Lock()
	for id, ps := range s.polls {
		if ps.waiting == 0 && now.Sub(ps.last) > idle {
			gone = append(gone, ps)
			delete(s.polls, id)
			if s.byClient[ps.client] == id {
				delete(s.byClient, ps.client)
			}
		}
	}
	s.mu.Unlock()
	for _, ps := range gone {
		if ps.feed != nil {
			ps.feed.Close()
		}
		s.logPollSession(ps, "idle", ps.last)
		s.close(ps.id, ps.userID)
	}
}

// logPollSessions logs the long-poll sessions still open when the node
// stops (their rows go with the node's).
func (s *sessions) logPollSessions() {
	s.mu.Lock()
	open := make([]*pollSession, 0, len(s.polls))
	for _, ps := range s.polls {
		open = append(open, ps)
	}
	s.mu.Unlock()
	now := time.Now()
	for _, ps := range open {
		s.logPollSession(ps, "shutdown", now)
	}
}

// logPollSession writes a session's one line, when it ends: how many polls
// it made and how many events they answered with (an answer sent again
// counts again). Its polls' own request lines are at Debug; a poll that
// failed has its own line at Info or Error.
func (s *sessions) logPollSession(ps *pollSession, why string, end time.Time) {
	s.mu.Lock()
	polls, events := ps.polls, ps.events
	s.mu.Unlock()
	s.b.log.LogAttrs(context.Background(), slog.LevelInfo, "poll session",
		slog.String("session_id", ps.id),
		slog.String("user_id", ps.userID),
		slog.String("addr", ps.addr),
		slog.Int("polls", polls),
		slog.Int("events", events),
		slog.Duration("duration", end.Sub(ps.started)),
		slog.String("ended", why),
	)
}

// announcePresence tells the user's contacts that the user came online or
// went offline, if the sessions table (all nodes) agrees: a user with a
// session on another node is not offline. Nodes keep no presence state of
// their own, so none can go stale; a contact may hear "online" twice.
func (b *Broker) announcePresence(userID string, online bool) {
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
	if (n > 0) != online {
		return // the state changed again meanwhile
	}
	to, err := b.store.CoMembers(ctx, userID)
	if err != nil {
		b.log.Warn("presence", slog.Any("err", err))
		return
	}
	data, _ := json.Marshal(map[string]any{"user_id": userID, "online": online})
	b.publish(TypePresence, data, to)
}

// introduce tells the members of a conversation that was just created, or
// just joined, which of their new contacts are online: presence events only
// tell changes, and a stream learns the state of its contacts when it
// opens, so without this a new contact would seem offline until the next
// reconnect. Only conversations that share presence (see
// repository.Options.PresenceMaxMembers) introduce anyone.
func (b *Broker) introduce(ev repository.LogEvent) {
	if b.stopped.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d struct {
		UserID       string `json:"user_id"`
		Conversation struct {
			Members []struct {
				UserID string `json:"user_id"`
			} `json:"members"`
		} `json:"conversation"`
	}
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
		return
	}
	var members []string
	newcomer := d.UserID // member.joined: only pairs with the newcomer are new
	if ev.Type == repository.EventConversationCreated {
		for _, m := range d.Conversation.Members {
			members = append(members, m.UserID)
		}
	} else {
		var err error
		if members, err = b.store.MemberIDs(ctx, ev.ConversationID); err != nil {
			b.log.Warn("presence of new contacts", slog.Any("err", err))
			return
		}
	}
	if !b.store.SharesPresence(len(members)) {
		return
	}
	online, err := b.store.OnlineAmong(ctx, members, b.aliveSince())
	if err != nil {
		b.log.Warn("presence of new contacts", slog.Any("err", err))
		return
	}
	for _, u := range online {
		to := slices.DeleteFunc(slices.Clone(members), func(m string) bool { return m == u })
		if newcomer != "" && u != newcomer {
			to = []string{newcomer}
		}
		data, _ := json.Marshal(map[string]any{"user_id": u, "online": true})
		b.publish(TypePresence, data, to)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
