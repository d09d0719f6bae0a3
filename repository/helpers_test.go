package repository_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
)

// createUsers registers a user for each name and returns their ids.
func createUsers(t *testing.T, store *repository.Store, names ...string) []string {
	t.Helper()
	ids := make([]string, len(names))
	for i, name := range names {
		u, err := store.CreateUser(context.Background(), name, name, "x")
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = u.ID
	}
	return ids
}

func count(t *testing.T, store *repository.Store, table, where string) int64 {
	t.Helper()
	q := store.DB().NewSelect().Table(table)
	if where != "" {
		q = q.Where(where)
	}
	n, err := q.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// commits records what the store hands its OnCommit hook.
type commits struct {
	mu  sync.Mutex
	evs []repository.LogEvent
}

func recordCommits(store *repository.Store) *commits {
	c := &commits{}
	store.OnCommit(func(evs []repository.LogEvent) {
		c.mu.Lock()
		c.evs = append(c.evs, evs...)
		c.mu.Unlock()
	})
	return c
}

// take returns the events committed since the last take.
func (c *commits) take() []repository.LogEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.evs
	c.evs = nil
	return out
}

// positions lists the events' positions.
func positions(evs []repository.LogEvent) []repository.Position {
	out := make([]repository.Position, len(evs))
	for i := range evs {
		out[i] = evs[i].Position()
	}
	return out
}

// types lists the events' types.
func types(evs []repository.LogEvent) []string {
	out := make([]string, len(evs))
	for i := range evs {
		out[i] = evs[i].Type
	}
	return out
}

// readLogUntil tails the log from after, in pages of limit, until it has
// read the event at target, and returns what it read. On Postgres a write
// transaction of another test in the same database holds the horizon back
// for a moment: it waits for that, up to a deadline.
func readLogUntil(t *testing.T, store *repository.Store, after, target repository.Position, limit int, known []int64) []repository.LogEvent {
	t.Helper()
	var out []repository.LogEvent
	deadline := time.After(15 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for after.Less(target) {
		evs, err := store.ReadLog(context.Background(), after, limit, known)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, evs...)
		if len(evs) > 0 {
			after = evs[len(evs)-1].Position()
			continue
		}
		select {
		case <-poll.C:
		case <-deadline:
			t.Fatalf("ReadLog stuck at %v, short of %v", after, target)
		}
	}
	return out
}
