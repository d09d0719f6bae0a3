package poller_test

import (
	"sync"
	"testing"

	"github.com/confab-chat/confab/poller"
)

func TestQueueHandsOutInOrderInBatches(t *testing.T) {
	q := poller.NewQueue[int]()
	const n = 3*poller.QueueBatch + 5
	for i := range n {
		q.Push(i)
	}
	var got []int
	var batch []int
	for len(got) < n+1 {
		batch = q.Next(batch)
		if len(batch) == 0 || len(batch) > poller.QueueBatch {
			t.Fatalf("batch of %d", len(batch))
		}
		got = append(got, batch...)
		// Pushed while the rest waits: behind it, not before.
		if len(got) == poller.QueueBatch {
			q.Push(n + 100)
		}
	}
	for i := range n {
		if got[i] != i {
			t.Fatalf("item %d is %d", i, got[i])
		}
	}
	if len(got) != n+1 || got[n] != n+100 {
		t.Fatalf("after the first %d: %v", n, got[n:])
	}
}

// A queue that never empties (items pushed as fast as they are taken)
// keeps its order while it moves what is left to the front.
func TestQueueUnderSteadyBacklog(t *testing.T) {
	q := poller.NewQueue[int]()
	next, want := 0, 0
	for range 2 * poller.QueueBatch {
		q.Push(next)
		next++
	}
	var batch []int
	for range 10000 {
		batch = q.Next(batch)
		for _, v := range batch {
			if v != want {
				t.Fatalf("got %d, want %d", v, want)
			}
			want++
			q.Push(next)
			next++
		}
	}
}

func TestQueueClose(t *testing.T) {
	q := poller.NewQueue[int]()
	waiting := make(chan []int)
	for range 3 {
		go func() { waiting <- q.Next(nil) }()
	}
	q.Close()
	for range 3 {
		if got := <-waiting; len(got) != 0 {
			t.Fatalf("a waiting worker got %v after Close", got)
		}
	}
	q.Push(1)
	if got := q.Next([]int{7}); len(got) != 0 {
		t.Fatalf("Next after Close gave %v", got)
	}
}

// Many producers and workers: every item is taken once.
func TestQueueEveryItemOnce(t *testing.T) {
	q := poller.NewQueue[int]()
	const producers, each = 4, 5000
	var taken sync.Map
	var workers sync.WaitGroup
	counted := make(chan struct{}, producers*each)
	for range 3 {
		workers.Go(func() {
			var batch []int
			for {
				if batch = q.Next(batch); len(batch) == 0 {
					return
				}
				for _, v := range batch {
					if _, dup := taken.LoadOrStore(v, true); dup {
						t.Errorf("%d taken twice", v)
					}
					counted <- struct{}{}
				}
			}
		})
	}
	var pushing sync.WaitGroup
	for p := range producers {
		pushing.Go(func() {
			for i := range each {
				q.Push(p*each + i)
			}
		})
	}
	pushing.Wait()
	for range producers * each {
		<-counted
	}
	q.Close()
	workers.Wait()
}
