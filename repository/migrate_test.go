package repository_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/confab-chat/confab/migrations"
	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
	"github.com/uptrace/bun/migrate"
)

// TestMigrations runs the schema up, down and up again on each store, and
// checks that CheckSchema (what serve consults before serving) accepts
// exactly the schema this binary knows.
func TestMigrations(t *testing.T) {
	for _, d := range dbtest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			store, err := repository.Open(ctx, dbtest.Options(t, d))
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()

			if err := store.CheckSchema(ctx); err == nil {
				t.Fatal("CheckSchema accepts an empty database")
			}
			applied, err := store.Migrate(ctx)
			if err != nil || len(applied) == 0 {
				t.Fatalf("migrate: %v %v", applied, err)
			}
			if err := store.CheckSchema(ctx); err != nil {
				t.Fatalf("CheckSchema after migrating: %v", err)
			}
			if again, err := store.Migrate(ctx); err != nil || len(again) != 0 {
				t.Fatalf("migrating twice applied %v (%v)", again, err)
			}
			statuses, err := store.MigrationStatuses(ctx)
			if err != nil || len(statuses) != len(applied) {
				t.Fatalf("statuses %+v (%v)", statuses, err)
			}
			for _, s := range statuses {
				if !s.Applied {
					t.Fatalf("%s_%s not applied", s.Name, s.Comment)
				}
			}
			if _, err := store.CreateUser(ctx, "alice", "Alice", "x"); err != nil {
				t.Fatal(err)
			}

			// Down: the schema is gone and CheckSchema says so.
			rolled, err := store.Rollback(ctx)
			if err != nil || len(rolled) != len(applied) {
				t.Fatalf("rollback: %v (%v)", rolled, err)
			}
			if err := store.CheckSchema(ctx); err == nil || !strings.Contains(err.Error(), "behind") {
				t.Fatalf("CheckSchema after rollback: %v", err)
			}
			if _, err := store.UserByUsername(ctx, "alice"); err == nil {
				t.Fatal("the users table survived the rollback")
			}

			// Up again from nothing.
			if _, err := store.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if err := store.CheckSchema(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := store.CreateUser(ctx, "alice", "Alice", "x"); err != nil {
				t.Fatalf("the schema after down and up: %v", err)
			}

			// A migration this binary does not know (a newer confab ran
			// here): refuse to serve on it.
			if _, err := store.DB().NewRaw("INSERT INTO bun_migrations (name, group_id, migrated_at) VALUES (?, ?, ?)",
				"99991231235959", 99, time.Now().UTC()).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			err = store.CheckSchema(ctx)
			if err == nil || !strings.Contains(err.Error(), "99991231235959") {
				t.Fatalf("CheckSchema with an unknown migration applied: %v", err)
			}
			if _, err := store.DB().NewRaw("DELETE FROM bun_migrations WHERE name = ?", "99991231235959").Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if err := store.CheckSchema(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestNodesMigrateTogether: nodes starting at once on one empty database
// take turns; every one of them starts.
func TestNodesMigrateTogether(t *testing.T) {
	_, dsn := dbtest.Schema(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := repository.Open(context.Background(), repository.Options{URL: dsn})
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			if _, err := s.Migrate(context.Background()); err != nil {
				errs <- err
				return
			}
			errs <- s.CheckSchema(context.Background())
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestMigrateStreamsToLog: 000004 turns the per-user streams into the log.
// On a schema at 000003 with streams written the old way (each event
// copied into every member's stream, one of them through shared
// event_data), each distinct event becomes one row of the log, in the order
// it was appended, and every member gets a span from their first event on:
// each user's stream reads as before. Down rebuilds the streams from the
// log, and up again gives the same log.
func TestMigrateStreamsToLog(t *testing.T) {
	for _, d := range dbtest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			store, err := repository.Open(ctx, dbtest.Options(t, d))
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			migrateTo(t, store, "000003")

			exec := func(q string, args ...any) {
				t.Helper()
				if _, err := store.DB().NewRaw(q, args...).Exec(ctx); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
			at := func(s float64) time.Time { return base.Add(time.Duration(s * float64(time.Second))) }
			ann, ben, cat, dan := "u-ann", "u-ben", "u-cat", "u-dan"
			for _, u := range []string{ann, ben, cat, dan} {
				exec("INSERT INTO users (id, username, display_name, password_hash, created_at) VALUES (?, ?, ?, 'x', ?)", u, u, u, base)
			}
			// A group of ann, ben and cat (dan joins later) and a direct
			// conversation of ann and dan.
			g, dm := "c-group", "c-direct"
			exec("INSERT INTO conversations (id, kind, created_at, last_seq, last_activity_at, member_count) VALUES (?, 'group', ?, 2, ?, 4)", g, at(0), at(4))
			exec("INSERT INTO conversations (id, kind, direct_key, created_at, last_activity_at, member_count) VALUES (?, 'direct', 'u-ann|u-dan', ?, ?, 2)", dm, at(0.5), at(0.5))
			for _, m := range []struct {
				conv, user string
				joined     float64
			}{{g, ann, 0}, {g, ben, 0}, {g, cat, 0}, {g, dan, 3}, {dm, ann, 0.5}, {dm, dan, 0.5}} {
				exec("INSERT INTO members (conversation_id, user_id, joined_at) VALUES (?, ?, ?)", m.conv, m.user, at(m.joined))
			}
			exec("INSERT INTO messages (id, conversation_id, sender_id, seq, body, created_at) VALUES ('m1', ?, ?, 1, 'one', ?)", g, ann, at(1))
			exec("INSERT INTO messages (id, conversation_id, sender_id, seq, body, created_at) VALUES ('m2', ?, ?, 2, 'two', ?)", g, dan, at(4))

			data := func(v any) string {
				b, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			members := func(ids ...string) []map[string]string {
				var out []map[string]string
				for _, id := range ids {
					out = append(out, map[string]string{"user_id": id})
				}
				return out
			}
			type event struct {
				typ, conv, data string
				at              float64
				to              []string
				shared          bool // stored once in event_data
			}
			old := []event{
				{repository.EventConversationCreated, g, data(map[string]any{"conversation": map[string]any{"id": g, "members": members(ann, ben, cat), "title": strings.Repeat("t", 1500)}}), 0, []string{ann, ben, cat}, true},
				{repository.EventConversationCreated, dm, data(map[string]any{"conversation": map[string]any{"id": dm, "members": members(ann, dan)}}), 0.5, []string{ann, dan}, false},
				{repository.EventMessageCreated, g, data(map[string]any{"message": map[string]any{"id": "m1", "conversation_id": g, "seq": 1}}), 1, []string{ann, ben, cat}, false},
				{repository.EventRead, g, data(map[string]any{"conversation_id": g, "user_id": ben, "message_id": "m1"}), 2, []string{ann, ben, cat}, false},
				{repository.EventMemberJoined, g, data(map[string]any{"conversation_id": g, "user_id": dan}), 3, []string{ann, ben, cat, dan}, false},
				{repository.EventMessageCreated, g, data(map[string]any{"message": map[string]any{"id": "m2", "conversation_id": g, "seq": 2}}), 4, []string{ann, ben, cat, dan}, false},
			}
			seq := map[string]int{}
			streams := map[string][]int{} // user -> indexes into old
			for i, ev := range old {
				inline, dataID := ev.data, any(nil)
				if ev.shared {
					id := fmt.Sprintf("ed-%d", i)
					exec("INSERT INTO event_data (id, data, created_at) VALUES (?, ?, ?)", id, ev.data, at(ev.at))
					inline, dataID = "", id
				}
				for _, u := range ev.to {
					seq[u]++
					streams[u] = append(streams[u], i)
					exec("INSERT INTO events (user_id, seq, type, data, data_id, created_at) VALUES (?, ?, ?, ?, ?, ?)", u, seq[u], ev.typ, inline, dataID, at(ev.at))
				}
			}
			for u, n := range seq {
				exec("INSERT INTO streams (user_id, last_seq) VALUES (?, ?)", u, n)
			}

			// Up: one row per distinct event, in order.
			applied, err := store.Migrate(ctx)
			if err != nil || len(applied) != 1 || !strings.HasPrefix(applied[0], "000004") {
				t.Fatalf("migrate: %v (%v)", applied, err)
			}
			if err := store.CheckSchema(ctx); err != nil {
				t.Fatal(err)
			}
			checkLog := func(when string, extra int) []repository.LogEvent {
				t.Helper()
				evs, err := store.ReadLog(ctx, repository.Position{}, 100, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(evs) != len(old)+extra {
					t.Fatalf("%s: %d events in the log, want %d", when, len(evs), len(old)+extra)
				}
				for i, want := range old {
					ev := evs[i]
					if ev.Type != want.typ || ev.ConversationID != want.conv || ev.Data != want.data || !ev.CreatedAt.Equal(at(want.at)) || ev.XID != 0 {
						t.Fatalf("%s: event %d is %s of %s at %v (%v): %.60q, want %s of %s: %.60q", when, i, ev.Type, ev.ConversationID, ev.CreatedAt, ev.Position(), ev.Data, want.typ, want.conv, want.data)
					}
				}
				return evs
			}
			migrated := checkLog("up", 0)
			// Every stream reads as it did.
			head := migrated[len(migrated)-1].Position()
			for u, idx := range streams {
				evs, err := store.UserEvents(ctx, u, repository.Position{}, head, 100)
				if err != nil {
					t.Fatal(err)
				}
				var want []repository.Position
				for _, i := range idx {
					want = append(want, migrated[i].Position())
				}
				if !slices.Equal(positions(evs), want) {
					t.Errorf("%s's stream after the migration: %v, want %v", u, types(evs), want)
				}
			}
			if n := count(t, store, "memberships", "left_id IS NULL"); n != 6 {
				t.Fatalf("%d open spans, want one per member (6)", n)
			}
			for _, table := range []string{"streams", "events", "event_data"} {
				if _, err := store.DB().NewRaw("SELECT count(*) FROM " + table).Exec(ctx); err == nil {
					t.Fatalf("table %s survived the migration", table)
				}
			}
			floor, last, err := store.LogBounds(ctx)
			if err != nil || floor != (repository.Position{}) || last != head {
				t.Fatalf("bounds %v..%v (%v)", floor, last, err)
			}
			// The store works on it: a new event lands after the migrated
			// ones, in the stream of the members.
			committed := recordCommits(store)
			if _, _, err := store.SendMessage(ctx, dan, g, "three", nil); err != nil {
				t.Fatal(err)
			}
			sent := committed.take()
			if len(sent) != 1 || !head.Less(sent[0].Position()) || !strings.Contains(sent[0].Data, `"seq":3,`) {
				t.Fatalf("a send after the migration committed %+v", sent)
			}
			if evs, err := store.UserEvents(ctx, ben, head, sent[0].Position(), 10); err != nil || len(evs) != 1 {
				t.Fatalf("ben's stream after the migration: %v (%v)", types(evs), err)
			}

			// Down: a stream per user again, numbered from 1.
			rolled, err := store.Rollback(ctx)
			if err != nil || len(rolled) != 1 || !strings.HasPrefix(rolled[0], "000004") {
				t.Fatalf("rollback: %v (%v)", rolled, err)
			}
			var rows []struct {
				UserID string `bun:"user_id"`
				Seq    int    `bun:"seq"`
				Type   string `bun:"type"`
				Data   string `bun:"data"`
			}
			if err := store.DB().NewRaw("SELECT user_id, seq, type, data FROM events ORDER BY user_id, seq").Scan(ctx, &rows); err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for _, r := range rows {
				if r.Seq != len(got[r.UserID])+1 {
					t.Fatalf("%s's stream has seq %d after %d", r.UserID, r.Seq, len(got[r.UserID]))
				}
				got[r.UserID] = append(got[r.UserID], r.Data)
			}
			for u, idx := range streams {
				want := []string{}
				for _, i := range idx {
					want = append(want, old[i].data)
				}
				want = append(want, sent[0].Data) // all four are in the group
				if !slices.Equal(got[u], want) {
					t.Errorf("%s's stream after down: %d events, want %d", u, len(got[u]), len(want))
				}
				var lastSeq int
				if err := store.DB().NewRaw("SELECT last_seq FROM streams WHERE user_id = ?", u).Scan(ctx, &lastSeq); err != nil || lastSeq != len(want) {
					t.Errorf("%s's stream counter %d (%v), want %d", u, lastSeq, err, len(want))
				}
			}

			// Up again: the same log.
			if _, err := store.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			again := checkLog("up again", 1)
			if a := again[len(again)-1]; a.Data != sent[0].Data || a.Type != repository.EventMessageCreated {
				t.Fatalf("the message sent after the first migration came back as %s %.60q", a.Type, a.Data)
			}
			if n := count(t, store, "memberships", "left_id IS NULL"); n != 6 {
				t.Fatalf("%d open spans after up again, want 6", n)
			}
		})
	}
}

// migrateTo applies the migrations up to and including the one named
// last, as a release that had only those would have.
func migrateTo(t *testing.T, store *repository.Store, last string) {
	t.Helper()
	ctx := context.Background()
	fsys, err := migrations.FS(store.Dialect())
	if err != nil {
		t.Fatal(err)
	}
	files, err := fs.ReadDir(fsys, ".")
	if err != nil {
		t.Fatal(err)
	}
	upTo := fstest.MapFS{}
	for _, f := range files {
		if f.Name()[:len(last)] > last {
			continue
		}
		b, err := fs.ReadFile(fsys, f.Name())
		if err != nil {
			t.Fatal(err)
		}
		upTo[f.Name()] = &fstest.MapFile{Data: b}
	}
	ms := migrate.NewMigrations()
	if err := ms.Discover(upTo); err != nil {
		t.Fatal(err)
	}
	m := migrate.NewMigrator(store.DB(), ms, migrate.WithMarkAppliedOnSuccess(true))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
}
