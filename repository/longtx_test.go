package repository_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// TestLongTransactionElsewhere: the log's horizon is the oldest write
// transaction of this database only. One held open in another database of
// the same cluster holds nothing back: every send committed after it began
// is read at once, and nothing is lost when it ends. One held open in the
// same database stops the tail below its transaction id until it ends (it
// could still add an event there), and then every event is read, its own
// first if it committed.
func TestLongTransactionElsewhere(t *testing.T) {
	dbtest.RequirePostgres(t)
	t.Parallel()
	t.Run("other database", func(t *testing.T) {
		t.Parallel()
		testTransactionElsewhere(t, 0)
	})
	t.Run("other database for 30s", func(t *testing.T) {
		if testing.Short() {
			t.Skip("holds a transaction for 30s")
		}
		t.Parallel()
		testTransactionElsewhere(t, 30*time.Second)
	})
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("same database, commit=%v", commit), func(t *testing.T) {
			t.Parallel()
			testTransactionSameDatabase(t, commit)
		})
	}
}

// logFixture is a Postgres store with a group of two whose creation the
// tail has read.
type logFixture struct {
	store     *repository.Store
	committed *commits
	users     []string
	conv      string
	tail      repository.Position
	all       []repository.LogEvent // what was committed, in order
}

func newLogFixture(t *testing.T) *logFixture {
	t.Helper()
	f := &logFixture{store: dbtest.Open(t, "postgres")}
	f.users = createUsers(t, f.store, "ann", "ben")
	f.committed = recordCommits(f.store)
	g, err := f.store.CreateGroup(context.Background(), f.users[0], f.users[1:], nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	f.conv = g.ID
	f.all = f.committed.take()
	f.tail = f.all[0].Position()
	readLogUntil(t, f.store, repository.Position{}, f.tail, 10, nil)
	return f
}

// send commits a message and returns its event.
func (f *logFixture) send(t *testing.T, i int) repository.LogEvent {
	t.Helper()
	if _, _, err := f.store.SendMessage(context.Background(), f.users[i%2], f.conv, fmt.Sprint("m", i), nil); err != nil {
		t.Fatal(err)
	}
	evs := f.committed.take()
	if len(evs) != 1 {
		t.Fatalf("a send committed %v", types(evs))
	}
	f.all = append(f.all, evs[0])
	return evs[0]
}

func testTransactionElsewhere(t *testing.T, hold time.Duration) {
	f := newLogFixture(t)
	ctx := context.Background()
	other, err := sql.Open("pgx", dbtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	// A write transaction in the other database, older than every send
	// below; it stays open until the end.
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // committed below
	for _, q := range []string{"CREATE TABLE held (x int)", "INSERT INTO held VALUES (1)"} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var xid int64
	if err := tx.QueryRowContext(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&xid); err != nil {
		t.Fatal(err)
	}

	// Each send is read as soon as it committed, past the open transaction.
	sendAndRead := func(i int) {
		t.Helper()
		ev := f.send(t, i)
		if ev.XID <= xid {
			t.Fatalf("the send's transaction %d is not younger than the held %d", ev.XID, xid)
		}
		got := readLogUntil(t, f.store, f.tail, ev.Position(), 10, nil)
		if len(got) != 1 || got[0].Position() != ev.Position() {
			t.Fatalf("read %v after %v, want just %v", positions(got), f.tail, ev.Position())
		}
		f.tail = ev.Position()
	}
	i := 0
	for ; i < 5; i++ {
		sendAndRead(i)
	}
	if hold > 0 {
		// Keep it open for the whole hold, sending and reading meanwhile.
		end := time.After(hold)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
	holding:
		for ; ; i++ {
			select {
			case <-tick.C:
				sendAndRead(i)
			case <-end:
				break holding
			}
		}
	}
	var still int64
	if err := tx.QueryRowContext(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&still); err != nil || still != xid {
		t.Fatalf("the other database's transaction is %d (%v), want %d still open", still, err, xid)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	// Nothing lost and nothing more: every event once, in order.
	got := readLogUntil(t, f.store, repository.Position{}, f.tail, 100, nil)
	if !slices.Equal(positions(got), positions(f.all)) {
		t.Fatalf("the log reads %v, committed were %v", positions(got), positions(f.all))
	}
	if more, err := f.store.ReadLog(ctx, f.tail, 10, nil); err != nil || len(more) != 0 {
		t.Fatalf("read %v (%v) past the last event", positions(more), err)
	}
	t.Logf("%d sends read past a transaction held open in another database", i)
}

func testTransactionSameDatabase(t *testing.T, commit bool) {
	f := newLogFixture(t)
	ctx := context.Background()

	// A write transaction in the same database, on a connection of its
	// own: it appends to the log, and stays open.
	tx, err := f.store.DB().DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // ended below
	var held repository.LogEvent
	if err := tx.QueryRowContext(ctx, `INSERT INTO log (conversation_id, type, data, created_at)
		VALUES ($1, 'read', '{}', now()) RETURNING id, xid`, f.conv).Scan(&held.ID, &held.XID); err != nil {
		t.Fatal(err)
	}

	// Sends commit after it began, at later positions: none is read while
	// it is open, since it could still commit an event before them.
	var sent []repository.LogEvent
	for i := range 3 {
		ev := f.send(t, i)
		if !held.Position().Less(ev.Position()) {
			t.Fatalf("the send at %v is not after the held event at %v", ev.Position(), held.Position())
		}
		sent = append(sent, ev)
		evs, err := f.store.ReadLog(ctx, f.tail, 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 0 {
			t.Fatalf("read %v past the open transaction's %v", positions(evs), held.Position())
		}
	}
	// Where a node starts tailing stops there too (after waiting a moment
	// for the transaction to end).
	if head, err := f.store.LogHead(ctx); err != nil || !head.Less(held.Position()) {
		t.Fatalf("the log's head is %v (%v) with a transaction open at %v", head, err, held.Position())
	}

	if commit {
		err = tx.Commit()
	} else {
		err = tx.Rollback()
	}
	if err != nil {
		t.Fatal(err)
	}
	// Then everything, in order: the held event first if it committed.
	want := positions(sent)
	if commit {
		want = append([]repository.Position{held.Position()}, want...)
	}
	got := readLogUntil(t, f.store, f.tail, sent[len(sent)-1].Position(), 10, nil)
	if !slices.Equal(positions(got), want) {
		t.Fatalf("after the transaction ended: %v, want %v", positions(got), want)
	}
}
