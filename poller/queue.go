package poller

import "sync"

// Queue holds what is ready to be served (sockets the set or a
// subscription said have work) for a few worker goroutines, first in,
// first out. Workers take a batch at a time: a fan-out queues thousands,
// and a lock per item would have them contend with whoever queues.
type Queue[T any] struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []T // from head on
	head   int
	closed bool
}

// QueueBatch is the most Next hands a worker at once.
const QueueBatch = 32

// keepQueue is the largest array an emptied queue keeps for what comes
// next; a big fan-out's is let go.
const keepQueue = 4096

// NewQueue returns an empty, open queue.
func NewQueue[T any]() *Queue[T] {
	q := &Queue[T]{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Push queues x for a worker; after Close it drops it.
func (q *Queue[T]) Push(x T) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.items = append(q.items, x)
	q.mu.Unlock()
	q.cond.Signal()
}

// Next waits for work and moves up to QueueBatch items, oldest first, to
// into[:0], which it returns. It returns none once the queue is closed,
// whatever is left in it.
func (q *Queue[T]) Next(into []T) []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return into[:0]
	}
	n := min(QueueBatch, len(q.items)-q.head)
	into = append(into[:0], q.items[q.head:q.head+n]...)
	clear(q.items[q.head : q.head+n]) // the worker holds them now
	q.head += n
	switch {
	case q.head == len(q.items) && cap(q.items) > keepQueue:
		q.items, q.head = nil, 0
	case q.head == len(q.items):
		q.items, q.head = q.items[:0], 0
	case q.head > len(q.items)/2:
		// Under a steady backlog the queue never empties: move what is
		// left to the front rather than let append grow it for ever.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return into
}

// Close ends the queue: every worker waiting in Next, and every later
// call, gets none.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	q.closed = true
	clear(q.items)
	q.items, q.head = nil, 0
	q.mu.Unlock()
	q.cond.Broadcast()
}
