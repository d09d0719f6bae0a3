package repository_test

import (
	"context"
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

// TestStreamsConcurrentWriters attacks DESIGN invariants 1 and 2: eight
// writers send 500 messages at once into overlapping groups (and mark them
// read, and create groups) while a reader keeps reading the streams. No
// write may fail (no deadlock, no lock timeout); every user's stream must
// end up exactly 1..N, N being the events the writes said they appended for
// that user; and the reader must never see a seq before all smaller ones.
func TestStreamsConcurrentWriters(t *testing.T) {
	for _, d := range dbtest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			testConcurrentWriters(t, dbtest.Open(t, d))
		})
	}
}

func testConcurrentWriters(t *testing.T, store *repository.Store) {
	const (
		nUsers    = 6
		nWriters  = 8
		nMessages = 500
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	users := make([]string, nUsers)
	for i := range users {
		u, err := store.CreateUser(ctx, fmt.Sprintf("user%d", i), "", "x")
		if err != nil {
			t.Fatal(err)
		}
		users[i] = u.ID
	}

	// appended counts, per user, the events the writes report appending;
	// seqs collects the seqs they report.
	var mu sync.Mutex
	seqs := map[string][]int64{}
	record := func(ptrs []repository.Pointer) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range ptrs {
			seqs[p.UserID] = append(seqs[p.UserID], p.Seq)
		}
	}

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
		c, ptrs, err := store.CreateGroup(ctx, members[0], members[1:], nil, 1000)
		if err != nil {
			t.Fatal(err)
		}
		record(ptrs)
		convs = append(convs, conv{c.ID, members})
	}
	d, _, ptrs, err := store.CreateDirect(ctx, users[0], users[5])
	if err != nil {
		t.Fatal(err)
	}
	record(ptrs)
	convs = append(convs, conv{d.ID, []string{users[0], users[5]}})

	// The reader: whenever it sees seq n in a stream, 1..n-1 must be there
	// too, in the same read and in every later one.
	done := make(chan struct{})
	var reads atomic.Int64
	var readerWG sync.WaitGroup
	readerWG.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			u := users[i%nUsers]
			heads, err := store.StreamHeads(ctx, []string{u})
			if err != nil {
				t.Errorf("reader: %v", err)
				return
			}
			evs, err := store.EventsAfter(ctx, u, 0, 1<<20)
			if err != nil {
				t.Errorf("reader: %v", err)
				return
			}
			for j, ev := range evs {
				if ev.Seq != int64(j+1) {
					t.Errorf("reader saw user %d's seqs %v: seq %d visible before seq %d", i%nUsers, seqsOf(evs), ev.Seq, j+1)
					return
				}
			}
			if int64(len(evs)) < heads[u] {
				t.Errorf("reader saw head %d, then only %d events", heads[u], len(evs))
				return
			}
			reads.Add(1)
		}
	})

	// The writers.
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
			<-start
			for i := w; i < nMessages; i += nWriters {
				c := convs[i%len(convs)]
				from := c.members[(i/len(convs))%len(c.members)]
				m, created, ptrs, err := store.SendMessage(ctx, from, c.id, fmt.Sprintf("message %d", i), nil)
				if err != nil || !created {
					fail("writer %d: send %d: created=%v err=%v", w, i, created, err)
					return
				}
				record(ptrs)
				switch {
				case i%5 == 0:
					reader := c.members[rnd.IntN(len(c.members))]
					ptrs, err := store.MarkRead(ctx, reader, c.id, m.ID)
					if err != nil {
						fail("writer %d: mark read: %v", w, err)
						return
					}
					record(ptrs)
				case i%97 == 0:
					members := slices.Clone(users)
					rnd.Shuffle(len(members), func(a, b int) { members[a], members[b] = members[b], members[a] })
					_, ptrs, err := store.CreateGroup(ctx, members[0], members[1:1+rnd.IntN(nUsers-1)], nil, 1000)
					if err != nil {
						fail("writer %d: create group: %v", w, err)
						return
					}
					record(ptrs)
				}
			}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	close(done)
	readerWG.Wait()
	if writeFailed.Load() {
		return
	}
	t.Logf("%s: %d writers, %d messages in %v; the reader checked %d streams meanwhile", store.Dialect(), nWriters, nMessages, time.Since(began).Round(time.Millisecond), reads.Load())

	// Invariant 1: every stream is exactly 1..N, N = what was appended.
	for i, u := range users {
		evs, err := store.EventsAfter(ctx, u, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		got := seqsOf(evs)
		reported := slices.Sorted(slices.Values(seqs[u]))
		if len(got) != len(reported) || !slices.Equal(got, reported) {
			t.Errorf("user %d: stream holds %d events, the writes reported %d", i, len(got), len(reported))
		}
		for j, s := range got {
			if s != int64(j+1) {
				t.Errorf("user %d: seqs %v are not 1..%d", i, got, len(got))
				break
			}
		}
		_, last, err := store.StreamBounds(ctx, u)
		if err != nil || last != int64(len(got)) {
			t.Errorf("user %d: stream head %d (%v), %d events", i, last, err, len(got))
		}
		// Each member got each message of their conversations once.
		want := 0
		for j, c := range convs {
			if slices.Contains(c.members, u) {
				want += nMessages / len(convs)
				if j < nMessages%len(convs) {
					want++
				}
			}
		}
		created := map[string]bool{}
		for _, ev := range evs {
			if ev.Type == repository.EventMessageCreated {
				created[ev.Data] = true
			}
		}
		if len(created) != want {
			t.Errorf("user %d: %d distinct message.created events, want %d", i, len(created), want)
		}
	}
	// And each conversation's messages are numbered 1..n in it.
	for _, c := range convs {
		msgs, _, err := store.Messages(ctx, c.members[0], c.id, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		for j, m := range msgs {
			if m.Seq != int64(j+1) {
				t.Fatalf("conversation seqs %v", msgs)
			}
		}
	}
}

func seqsOf(evs []repository.Event) []int64 {
	out := make([]int64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Seq
	}
	return out
}
