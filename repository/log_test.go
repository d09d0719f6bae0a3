package repository_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// TestParsePosition: a cursor is "<xid>-<id>"; the plain integers of the
// per-user streams are ErrOldCursor (the client resets), anything else
// that is not a position is ErrInvalid.
func TestParsePosition(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want repository.Position
		err  error
	}{
		{"0-0", repository.Position{}, nil},
		{"123-45", repository.Position{XID: 123, ID: 45}, nil},
		{"9223372036854775807-1", repository.Position{XID: 1<<63 - 1, ID: 1}, nil},
		{"17", repository.Position{}, repository.ErrOldCursor},
		{"0", repository.Position{}, repository.ErrOldCursor},
		{"", repository.Position{}, repository.ErrInvalid},
		{"-", repository.Position{}, repository.ErrInvalid},
		{"1-", repository.Position{}, repository.ErrInvalid},
		{"-1", repository.Position{}, repository.ErrInvalid},
		{"1-2-3", repository.Position{}, repository.ErrInvalid},
		{"+1-2", repository.Position{}, repository.ErrInvalid},
		{"a-1", repository.Position{}, repository.ErrInvalid},
		{"9223372036854775808-1", repository.Position{}, repository.ErrInvalid},
		{"-17", repository.Position{}, repository.ErrInvalid},
	} {
		got, err := repository.ParsePosition(tc.in)
		if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) || got != tc.want {
			t.Errorf("ParsePosition(%q) = %v, %v; want %v, %v", tc.in, got, err, tc.want, tc.err)
		}
		if tc.err == nil && got.String() != tc.in {
			t.Errorf("%v renders as %q, parsed from %q", got, got.String(), tc.in)
		}
	}
	// Ordered by transaction first, then id.
	ordered := []repository.Position{{}, {XID: 0, ID: 9}, {XID: 1, ID: 2}, {XID: 1, ID: 10}, {XID: 2, ID: 1}}
	for i := range ordered {
		for j := range ordered {
			if got, want := ordered[i].Compare(ordered[j]), cmpInt(i, j); got != want || ordered[i].Less(ordered[j]) != (want < 0) {
				t.Errorf("%v vs %v: Compare %d, Less %v", ordered[i], ordered[j], got, ordered[i].Less(ordered[j]))
			}
		}
	}
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// logReader reads the log after a position, as a node's tail does.
type logReader func(ctx context.Context, after repository.Position, limit int, known []int64) ([]repository.LogEvent, error)

// TestLogConcurrentWriters attacks invariant 1 of docs/ARCHITECTURE.md (and 2 through
// UserEvents): eight writers send 500 messages at once into overlapping
// conversations, mark them read, create groups and add and remove a member,
// while a reader tails the log with ReadLog from the last position it saw.
// No write may fail; the reader never sees a position before one it saw,
// and it sees every committed event exactly once, in position order, with
// each conversation's messages in seq order; and every user's stream is the
// log filtered through their memberships.
func TestLogConcurrentWriters(t *testing.T) {
	for _, d := range dbtest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			store := dbtest.Open(t, d)
			testLogConcurrentWriters(t, store, store.ReadLog)
		})
	}
}

func testLogConcurrentWriters(t *testing.T, store *repository.Store, read logReader) {
	const (
		nUsers    = 6
		nWriters  = 8
		nMessages = 500
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var names []string
	for i := range nUsers {
		names = append(names, fmt.Sprintf("user%d", i))
	}
	all := createUsers(t, store, append(names, "churn")...)
	users, churn := all[:nUsers], all[nUsers]
	committed := recordCommits(store)

	// Overlapping groups, every user in several, plus a direct conversation.
	type conv struct {
		id      string
		members []string
	}
	var convs []conv
	for _, idx := range [][]int{{0, 1, 2, 3}, {2, 3, 4, 5}, {0, 2, 4}, {1, 3, 5}, {0, 1, 2, 3, 4, 5}, {4, 5}} {
		var members []string
		for _, i := range idx {
			members = append(members, users[i])
		}
		c, err := store.CreateGroup(ctx, members[0], members[1:], nil, 1000)
		if err != nil {
			t.Fatal(err)
		}
		convs = append(convs, conv{c.ID, members})
	}
	groups := len(convs)
	d, _, err := store.CreateDirect(ctx, users[0], users[5])
	if err != nil {
		t.Fatal(err)
	}
	convs = append(convs, conv{d.ID, []string{users[0], users[5]}})

	// The reader tails the log from the last position it saw, as fast as
	// it can while the writers write; once they are done (finish says how
	// many events they committed, and the last position) it reads until it
	// has them all.
	type total struct {
		n    int
		last repository.Position
	}
	finish := make(chan total, 1)
	var seen []repository.LogEvent
	var reads atomic.Int64
	var readerWG sync.WaitGroup
	readerWG.Go(func() {
		var last repository.Position
		want := total{n: -1}
		var deadline <-chan time.Time
		poll := time.NewTicker(5 * time.Millisecond)
		defer poll.Stop()
		for {
			evs, err := read(ctx, last, 64, nil)
			if err != nil {
				t.Errorf("reader: %v", err)
				return
			}
			reads.Add(1)
			for _, ev := range evs {
				if !last.Less(ev.Position()) {
					t.Errorf("reader saw %v after %v", ev.Position(), last)
					return
				}
				last = ev.Position()
			}
			seen = append(seen, evs...)
			if want.n < 0 {
				select {
				case want = <-finish:
					deadline = time.After(30 * time.Second)
				default:
					continue
				}
			}
			if len(seen) >= want.n {
				return
			}
			if !last.Less(want.last) {
				t.Errorf("reader at the last position %v with %d of %d events: it skipped some", last, len(seen), want.n)
				return
			}
			if len(evs) == 0 {
				// A transaction of another test may hold the horizon:
				// wait for it, for a while.
				select {
				case <-poll.C:
				case <-deadline:
					t.Errorf("reader stuck at %v with %d of %d events", last, len(seen), want.n)
					return
				}
			}
		}
	})

	// The writers. Each of the first writers also adds the churn user to
	// one group and removes them again, over and over; the churn user
	// never writes, so every send stays a member's.
	var writeFailed atomic.Bool
	fail := func(format string, args ...any) {
		writeFailed.Store(true)
		t.Errorf(format, args...)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range nWriters {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 42))
			in := false
			<-start
			for i := w; i < nMessages; i += nWriters {
				c := convs[i%len(convs)]
				from := c.members[(i/len(convs))%len(c.members)]
				m, created, err := store.SendMessage(ctx, from, c.id, fmt.Sprintf("message %d", i), nil)
				if err != nil || !created {
					fail("writer %d: send %d: created=%v err=%v", w, i, created, err)
					return
				}
				switch {
				case i%5 == 0:
					reader := c.members[rnd.IntN(len(c.members))]
					if err := store.MarkRead(ctx, reader, c.id, m.ID); err != nil {
						fail("writer %d: mark read: %v", w, err)
						return
					}
				case i%97 == 0:
					members := slices.Clone(users)
					rnd.Shuffle(len(members), func(a, b int) { members[a], members[b] = members[b], members[a] })
					if _, err := store.CreateGroup(ctx, members[0], members[1:1+rnd.IntN(nUsers-1)], nil, 1000); err != nil {
						fail("writer %d: create group: %v", w, err)
						return
					}
				case i%3 == 0 && w < groups:
					g := convs[w]
					if in {
						err = store.RemoveMember(ctx, g.members[0], g.id, churn)
					} else {
						_, err = store.AddMember(ctx, g.members[0], g.id, churn, 1000)
					}
					if err != nil {
						fail("writer %d: membership (in=%v): %v", w, in, err)
						return
					}
					in = !in
				}
			}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	want := committed.take()
	slices.SortFunc(want, func(a, b repository.LogEvent) int { return a.Position().Compare(b.Position()) })
	finish <- total{len(want), want[len(want)-1].Position()}
	readerWG.Wait()
	if writeFailed.Load() || t.Failed() {
		return
	}
	t.Logf("%s: %d writers, %d events in %v; the reader read %d times meanwhile",
		store.Dialect(), nWriters, len(want), time.Since(began).Round(time.Millisecond), reads.Load())

	// Every committed event once, in position order, as committed.
	if len(seen) != len(want) {
		t.Fatalf("the reader saw %d events, %d were committed", len(seen), len(want))
	}
	for i := range want {
		w, s := want[i], seen[i]
		if w.Position() != s.Position() || w.Type != s.Type || w.Data != s.Data || w.ConversationID != s.ConversationID || !w.CreatedAt.Equal(s.CreatedAt) {
			t.Fatalf("event %d: read %v %s %s, committed %v %s %s", i, s.Position(), s.Type, s.Data, w.Position(), w.Type, w.Data)
		}
	}

	// Each conversation's messages in seq order: 1, 2, 3, ...
	lastSeq := map[string]int64{}
	messages := 0
	for _, ev := range seen {
		if ev.Type != repository.EventMessageCreated {
			continue
		}
		messages++
		var d struct {
			Message struct {
				ConversationID string `json:"conversation_id"`
				Seq            int64  `json:"seq"`
			} `json:"message"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
			t.Fatal(err)
		}
		if d.Message.ConversationID != ev.ConversationID || d.Message.Seq != lastSeq[ev.ConversationID]+1 {
			t.Fatalf("conversation %s: seq %d at %v after seq %d", ev.ConversationID, d.Message.Seq, ev.Position(), lastSeq[ev.ConversationID])
		}
		lastSeq[ev.ConversationID] = d.Message.Seq
	}
	if messages != nMessages {
		t.Fatalf("%d message.created events, want %d", messages, nMessages)
	}

	// Invariant 2: each user's stream is the log filtered through their
	// memberships, replayed here from the membership events.
	streams := expectedStreams(t, seen)
	head := seen[len(seen)-1].Position()
	for i, u := range all {
		got, err := store.UserEvents(ctx, u, repository.Position{}, head, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(positions(got), streams[u]) {
			t.Errorf("user %d: stream of %d events, the log gives them %d", i, len(got), len(streams[u]))
		}
	}
}

// expectedStreams replays the log: whoever is a member of an event's
// conversation at its position gets it; a conversation.created or
// member.joined makes its subjects members from that event on, a
// member.left ends its subject's membership after that event.
func expectedStreams(t *testing.T, log []repository.LogEvent) map[string][]repository.Position {
	t.Helper()
	members := map[string]map[string]bool{} // conversation -> members
	out := map[string][]repository.Position{}
	for _, ev := range log {
		var d struct {
			UserID       string `json:"user_id"`
			Conversation struct {
				Members []struct {
					UserID string `json:"user_id"`
				} `json:"members"`
			} `json:"conversation"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
			t.Fatal(err)
		}
		in := members[ev.ConversationID]
		if in == nil {
			in = map[string]bool{}
			members[ev.ConversationID] = in
		}
		switch ev.Type {
		case repository.EventConversationCreated:
			for _, m := range d.Conversation.Members {
				in[m.UserID] = true
			}
		case repository.EventMemberJoined:
			in[d.UserID] = true
		}
		for u := range in {
			out[u] = append(out[u], ev.Position())
		}
		if ev.Type == repository.EventMemberLeft {
			delete(in, d.UserID)
		}
	}
	return out
}
