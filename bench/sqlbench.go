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
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// sqlBench runs the statements of one message send, as
// repository.SendMessage issues them on Postgres, straight through pgx: the
// floor under POST /messages without HTTP, JSON decoding, auth or Bun. It
// works on conversations of its own in a migrated confab database.
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
	rep := &Report{Label: "sql: the statements of one send through pgx", Config: cfg}
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
	var users, streams, conversations, members [][]any
	for g := range convs {
		c := sqlConv{id: uuid.Must(uuid.NewV7()).String()}
		conversations = append(conversations, []any{c.id, "group", now, now})
		for j := range group {
			u := uuid.Must(uuid.NewV7()).String()
			name := b.prefix + "_" + strconv.Itoa(g*group+j)
			users = append(users, []any{u, name, name, "-", now})
			streams = append(streams, []any{u})
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
			{"streams", []string{"user_id"}, streams},
			{"conversations", []string{"id", "kind", "created_at", "last_activity_at"}, conversations},
			{"members", []string{"conversation_id", "user_id", "joined_at"}, members},
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
	ids := make([]string, len(b.convs))
	for i, c := range b.convs {
		ids[i] = c.id
	}
	b.pool.Exec(ctx, "DELETE FROM events WHERE user_id = ANY($1)", b.users)       //nolint:errcheck // best effort
	b.pool.Exec(ctx, "DELETE FROM messages WHERE conversation_id = ANY($1)", ids) //nolint:errcheck
	b.pool.Exec(ctx, "DELETE FROM conversations WHERE id = ANY($1)", ids)         //nolint:errcheck
	b.pool.Exec(ctx, "DELETE FROM users WHERE id = ANY($1)", b.users)             //nolint:errcheck
	b.pool.Close()
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
	res.finish()
	return res, ctx.Err()
}

func sqlErrKind(err error) string {
	if s := err.Error(); len(s) > 0 {
		return "sql: " + s[:min(len(s), 60)]
	}
	return "sql"
}

// send is repository.SendMessage's transaction on Postgres, statement for
// statement: lock the conversation and store the message with it (next
// seq, insert, conversation's last message, sender's read marker, which
// tells membership: one statement), then append the event to the streams
// of the conversation's members (one statement).
func (b *sqlBench) send(ctx context.Context, c sqlConv, sender, body string) error {
	return pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		now := time.Now().UTC().Truncate(time.Microsecond)
		id := uuid.Must(uuid.NewV7()).String()
		var (
			seq    int64
			member bool
		)
		err := tx.QueryRow(ctx, `WITH c AS (SELECT last_seq + 1 AS seq FROM conversations WHERE id = $2 FOR UPDATE),
			m AS (INSERT INTO messages (id, conversation_id, sender_id, seq, body, client_msg_id, created_at)
				SELECT $1, $2, $3, c.seq, $4, $5, $6 FROM c RETURNING seq),
			u AS (UPDATE conversations SET last_seq = m.seq, last_message_id = $1, last_activity_at = $6 FROM m WHERE id = $2),
			r AS (UPDATE members SET read_seq = m.seq FROM m WHERE conversation_id = $2 AND user_id = $3 RETURNING 1)
			SELECT m.seq, EXISTS (SELECT 1 FROM r) FROM m`,
			id, c.id, sender, body, nil, now).Scan(&seq, &member)
		if err != nil {
			return err
		}
		if !member {
			return errors.New("not a member")
		}
		data, err := json.Marshal(map[string]any{"message": map[string]any{
			"id": id, "conversation_id": c.id, "sender_id": sender, "seq": seq, "body": body, "client_msg_id": nil, "created_at": now,
		}})
		if err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `WITH l AS (SELECT user_id FROM streams
				WHERE user_id IN (SELECT user_id FROM members WHERE conversation_id = $1) ORDER BY user_id FOR UPDATE),
			s AS (UPDATE streams AS s SET last_seq = s.last_seq + 1 FROM l WHERE s.user_id = l.user_id
				RETURNING s.user_id, s.last_seq)
			INSERT INTO events (user_id, seq, type, data, data_id, created_at)
			SELECT user_id, last_seq, $2, $3, $5::text, $4::timestamptz FROM s
			RETURNING user_id, seq`, c.id, "message.created", string(data), now, nil)
		type ptr struct {
			User string
			Seq  int64
		}
		ptrs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ptr])
		if err != nil {
			return err
		}
		if len(ptrs) != len(c.members) {
			return fmt.Errorf("%d of %d streams advanced", len(ptrs), len(c.members))
		}
		return nil
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
