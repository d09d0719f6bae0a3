package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/confab-chat/confab/repository"
)

// sqlBench runs the statement of one message send, as
// repository.SendMessage issues it on Postgres (sendPG), straight through
// pgx: the floor under POST /messages without HTTP, JSON, auth or the
// real-time core. It works on conversations of its own in a migrated
// confab database.
type sqlBench struct {
	pool   *pgxpool.Pool
	convs  []sqlConv
	users  []string
	prefix string
}

type sqlConv struct {
	id      string
	members []string // sorted
}

func sqlCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("confab bench sql", flag.ContinueOnError)
	fs.SetOutput(stdout)
	dsn := fs.String("database-url", "", "Postgres URL of a migrated confab database (required)")
	writers := fs.Int("writers", 4, "concurrent writers W")
	group := fs.Int("group", 3, "members per conversation S")
	convs := fs.Int("convs", 0, "conversations (0: one per writer)")
	d := fs.Duration("duration", 10*time.Second, "how long to write per round")
	rounds := fs.Int("rounds", 1, "rounds")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *dsn == "" {
		return fmt.Errorf("bench sql: -database-url is required")
	}
	if *convs == 0 {
		*convs = *writers
	}
	b, err := newSQLBench(ctx, *dsn, *convs, *group)
	if err != nil {
		return err
	}
	defer b.close()
	cfg := &Config{URL: "sql", Users: *convs * *group, Group: *group, Writers: *writers, Duration: *d, Rounds: *rounds}
	rep := &Report{Label: "sql: the statement of one send through pgx", Config: cfg}
	for i := range *rounds {
		res, err := b.run(ctx, *writers, *d, i+1)
		if err != nil {
			return err
		}
		rep.Rounds = append(rep.Rounds, res)
	}
	rep.summarize("sql", "")
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	rep.WriteTable(stdout)
	return nil
}

// newSQLBench connects and creates convs conversations of group members.
func newSQLBench(ctx context.Context, dsn string, convs, group int) (*sqlBench, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = 64
	pcfg.ConnConfig.RuntimeParams["application_name"] = "confab-bench-sql"
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	b := &sqlBench{pool: pool, prefix: "bsql" + randomHex(4)}
	now := time.Now().UTC()
	var users, memberships, conversations, members [][]any
	for g := range convs {
		c := sqlConv{id: uuid.Must(uuid.NewV7()).String()}
		conversations = append(conversations, []any{c.id, "group", now, now, group})
		for j := range group {
			u := uuid.Must(uuid.NewV7()).String()
			name := b.prefix + "_" + strconv.Itoa(g*group+j)
			users = append(users, []any{u, name, name, "-", now})
			// Members from the start of the log: the send reads no span,
			// but a reader of these users' streams would.
			memberships = append(memberships, []any{u, c.id, int64(0), int64(0)})
			members = append(members, []any{c.id, u, now})
			c.members = append(c.members, u)
			b.users = append(b.users, u)
		}
		slices.Sort(c.members)
		b.convs = append(b.convs, c)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, t := range []struct {
			table string
			cols  []string
			rows  [][]any
		}{
			{"users", []string{"id", "username", "display_name", "password_hash", "created_at"}, users},
			{"conversations", []string{"id", "kind", "created_at", "last_activity_at", "member_count"}, conversations},
			{"members", []string{"conversation_id", "user_id", "joined_at"}, members},
			{"memberships", []string{"user_id", "conversation_id", "join_xid", "join_id"}, memberships},
		} {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.table}, t.cols, pgx.CopyFromRows(t.rows)); err != nil {
				return fmt.Errorf("bench sql: fixture %s: %w", t.table, err)
			}
		}
		return nil
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return b, nil
}

// close removes the fixture and disconnects.
func (b *sqlBench) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.clearLog(ctx)
	ids := b.convIDs()
	b.pool.Exec(ctx, "DELETE FROM messages WHERE conversation_id = ANY($1)", ids) //nolint:errcheck // best effort
	b.pool.Exec(ctx, "DELETE FROM conversations WHERE id = ANY($1)", ids)         //nolint:errcheck
	b.pool.Exec(ctx, "DELETE FROM users WHERE id = ANY($1)", b.users)             //nolint:errcheck
	b.pool.Close()
}

func (b *sqlBench) convIDs() []string {
	ids := make([]string, len(b.convs))
	for i, c := range b.convs {
		ids[i] = c.id
	}
	return ids
}

// clearLog deletes the events the sends appended. A confab server on the
// same database tails the log: left there, they would be its work in its
// next round (nobody receives them, but it reads them all).
func (b *sqlBench) clearLog(ctx context.Context) error {
	_, err := b.pool.Exec(ctx, "DELETE FROM log WHERE conversation_id = ANY($1)", b.convIDs())
	return err
}

// run has `writers` writers send for d, writer i into conversation i mod C.
func (b *sqlBench) run(ctx context.Context, writers int, d time.Duration, round int) (*Result, error) {
	res := &Result{Target: "sql", Round: round, Errors: map[string]int64{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for i := range writers {
		c := b.convs[i%len(b.convs)]
		sender := c.members[(i/len(b.convs))%len(c.members)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []int64
			var n int64
			errs := map[string]int64{}
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := since()
				if err := b.send(ctx, c, sender, "bench:0:"+strconv.FormatInt(t0, 10)); err != nil {
					errs[sqlErrKind(err)]++
				} else {
					n++
				}
				lat = append(lat, since()-t0)
			}
			mu.Lock()
			defer mu.Unlock()
			res.Messages += n
			res.post = append(res.post, lat...)
			for k, v := range errs {
				res.Errors[k] += v
			}
		}()
	}
	wg.Wait()
	res.writeSecs = time.Since(start).Seconds()
	res.Scheduled = res.Messages + sum(slices.Collect(maps.Values(res.Errors)))
	res.finish()
	if err := b.clearLog(ctx); err != nil {
		return nil, fmt.Errorf("bench sql: clear the log: %w", err)
	}
	return res, ctx.Err()
}

func sqlErrKind(err error) string {
	if s := err.Error(); len(s) > 0 {
		return "sql: " + s[:min(len(s), 60)]
	}
	return "sql"
}

// send is repository.SendMessage on Postgres: its one statement, run
// outside any explicit transaction (Postgres commits it as it returns),
// with the message.created data rendered around the seq by
// repository.MessageData.
func (b *sqlBench) send(ctx context.Context, c sqlConv, sender, body string) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	id := uuid.Must(uuid.NewV7()).String()
	before, after := repository.MessageData(&repository.Message{ID: id, ConversationID: c.id, SenderID: sender, Body: body, CreatedAt: now})
	var seq, logID, xid int64
	err := b.pool.QueryRow(ctx, repository.SendStatementPG, id, c.id, sender, body, nil, now, before, after, repository.ConversationLockClass).Scan(&seq, &logID, &xid)
	if errors.Is(err, pgx.ErrNoRows) {
		return errors.New("not a member")
	}
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
