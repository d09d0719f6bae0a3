package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/confab-chat/confab/repository"
)

// target is one side of the comparison: a server, the load on it, and the
// users it runs on.
type target struct {
	name    string // "confab", "reference", "sse", "sql" or "group-S"
	c       *client
	setup   *setup
	cfg     *Config // the run's config, or the group-S variant of it
	streams int
	pollers int
	sql     *sqlBench
}

func runCmd(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseRunConfig(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	raiseFileLimit()
	rep, err := Run(ctx, cfg, os.Stderr)
	if err != nil {
		return err
	}
	rep.Command = strings.Join(append([]string{"confab bench run"}, args...), " ")
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.WriteTable(stdout)
	return nil
}

// Run runs cfg's rounds, alternating with the reference, and reports.
// Progress goes to log.
func Run(ctx context.Context, cfg *Config, log io.Writer) (*Report, error) {
	logf := func(format string, a ...any) { fmt.Fprintf(log, "bench: "+format+"\n", a...) }
	confab := &target{name: "confab", c: newClient(cfg.URL), cfg: cfg, streams: cfg.Streams, pollers: cfg.Pollers}
	defer confab.c.close()
	var err error
	if confab.setup, err = loadSetup(confab.c, cfg.Setup); err != nil {
		return nil, err
	}
	targets := []*target{confab}
	switch {
	case cfg.Ref == "":
	case cfg.Ref == "sse":
		targets = append(targets, &target{name: "sse", c: confab.c, setup: confab.setup, cfg: cfg, streams: cfg.Streams + cfg.Pollers})
	case strings.HasPrefix(cfg.Ref, "group:"):
		targets = append(targets, groupTarget(cfg, confab))
	case strings.HasPrefix(cfg.Ref, "sql:"):
		sb, err := newSQLBench(ctx, strings.TrimPrefix(cfg.Ref, "sql:"), cfg.Users/cfg.Group, cfg.Group)
		if err != nil {
			return nil, err
		}
		defer sb.close()
		targets = append(targets, &target{name: "sql", cfg: cfg, sql: sb})
	default:
		ref := &target{name: "reference", c: newClient(cfg.Ref), cfg: cfg, streams: cfg.Streams, pollers: cfg.Pollers}
		defer ref.c.close()
		ref.setup, _ = loadSetup(ref.c, "")
		targets = append(targets, ref)
	}

	rep := &Report{Label: cfg.Label, Config: cfg}
	for i := range cfg.Rounds {
		for _, t := range targets {
			res, err := runRound(ctx, cfg, t, i+1, logf)
			if err != nil {
				return nil, fmt.Errorf("bench: %s round %d: %w", t.name, i+1, err)
			}
			rep.Rounds = append(rep.Rounds, res)
		}
	}
	rep.summarize(targets[0].name, targetName(targets))
	return rep, nil
}

// groupTarget is the same server and load as confab's, on conversations of
// S members instead of cfg.Group (as many of them): what a send costs as
// a function of the conversation's size. Streams and pollers shrink with
// the users, so each user keeps as many.
func groupTarget(cfg *Config, confab *target) *target {
	size, _ := strconv.Atoi(strings.TrimPrefix(cfg.Ref, "group:"))
	gc := *cfg
	gc.Group = size
	gc.Users = size * (cfg.Users / cfg.Group)
	scale := func(n int) int { return (n*gc.Users + cfg.Users - 1) / cfg.Users }
	return &target{name: "group-" + strconv.Itoa(size), c: confab.c, setup: confab.setup, cfg: &gc,
		streams: scale(cfg.Streams), pollers: scale(cfg.Pollers)}
}

func targetName(ts []*target) string {
	if len(ts) < 2 {
		return ""
	}
	return ts[1].name
}

func runRound(ctx context.Context, cfg *Config, t *target, n int, logf func(string, ...any)) (*Result, error) {
	if t.sql != nil {
		logf("round %d sql: %d writers for %s", n, cfg.Writers, cfg.Duration)
		return t.sql.run(ctx, cfg.Writers, cfg.Duration, n)
	}
	need := cfg.Duration + cfg.Settle + cfg.Drain + 5*time.Minute
	fx, err := t.setup.fixture(ctx, t.cfg, need, logf)
	if err != nil {
		return nil, err
	}
	return (&round{cfg: t.cfg, t: t, c: t.c, fx: fx, n: n, id: rand.Int64N(1 << 40), logf: logf}).run(ctx)
}

// round is one target's run: open the recipients, let them settle, write,
// drain, then check every recipient's stream.
type round struct {
	cfg  *Config
	t    *target
	c    *client
	fx   *fixture
	n    int
	id   int64
	logf func(string, ...any)

	recips []*recipient
	has    []bool           // user -> has a live recipient
	base   map[string]int64 // conversation id -> last message seq before the round
}

func (r *round) run(ctx context.Context) (*Result, error) {
	res := &Result{Target: r.t.name, Round: r.n, Errors: map[string]int64{}}
	rssBase, _, err := r.c.serverStats(ctx)
	if err != nil {
		return nil, err
	}
	// Where every conversation's message seqs stand: each recipient must
	// see them go on from there, one by one.
	if r.base, err = r.lastSeqs(ctx); err != nil {
		return nil, err
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	start := time.Now()
	r.open(rctx)
	for _, rc := range r.recips {
		if !rc.started.Load() {
			res.Errors["open_failed"]++
		}
	}
	r.logf("round %d %s: %d streams, %d pollers open in %s", r.n, r.t.name, r.t.streams, r.t.pollers, time.Since(start).Round(time.Millisecond))
	sleep(ctx, r.cfg.Settle)
	rssIdle, cpu0, err := r.c.serverStats(ctx)
	if err != nil {
		return nil, err
	}
	profile := r.profile(ctx)

	// Users nobody listens to are checked afterwards by catching up from
	// the log's head before the writes.
	var quiet []int
	for u := range r.fx.users {
		if !r.has[u] && r.cfg.Writers > 0 {
			quiet = append(quiet, u)
		}
	}
	var from repository.Position
	if len(quiet) > 0 {
		if from, err = r.c.head(ctx, r.fx.users[quiet[0]].Access); err != nil {
			return nil, err
		}
	}

	w := write(rctx, r.c, r.fx, r.cfg.Writers, r.cfg.Rate, r.cfg.Duration, r.id)
	expected := make([]int64, len(r.fx.users))
	for u, convs := range r.fx.userConvs {
		for _, g := range convs {
			expected[u] += w.acked[g]
		}
	}
	drained := r.wait(ctx, r.cfg.Drain, func(rc *recipient) bool { return rc.msgs.Load() >= expected[rc.user] })
	active := w.elapsed + drained
	rssEnd, cpu1, err := r.c.serverStats(ctx)
	if err != nil {
		return nil, err
	}
	if err := profile(); err != nil {
		return nil, err
	}
	r.logf("round %d %s: %d messages (%d scheduled) in %s, drained in %s", r.n, r.t.name, sum(w.acked), w.scheduled,
		w.elapsed.Round(time.Millisecond), drained.Round(time.Millisecond))

	// Complete: every recipient reached the last message of each of its
	// conversations (messages committed by POSTs that failed on the wire
	// count too).
	final, err := r.lastSeqs(ctx)
	if err != nil {
		return nil, err
	}
	r.wait(ctx, 5*time.Second, func(rc *recipient) bool { return rc.behind(final) == 0 })
	stop()
	for _, rc := range r.recips {
		<-rc.exited
	}
	r.c.close()
	lat := r.collect(res, expected, final)

	// Catch up the quiet users through the poll endpoint.
	catch := make([]*recipient, len(quiet))
	for i, u := range quiet {
		catch[i] = newRecipient(u, r.fx.users[u].Access, "catchup", r.id, false, r.userBase(u))
	}
	caught := time.Now()
	parallel(ctx, len(catch), 16, func(i int) error {
		catch[i].catchUp(ctx, r.c, from, final)
		return nil
	})
	if len(catch) > 0 {
		r.logf("round %d %s: caught up %d users in %s", r.n, r.t.name, len(catch), time.Since(caught).Round(time.Millisecond))
	}
	r.recips = catch
	r.collect(res, expected, final)

	res.Recipients = r.t.streams + r.t.pollers
	res.Messages = sum(w.acked)
	res.Scheduled = w.scheduled
	res.post, res.delivery = w.post, lat
	for k, v := range w.errs {
		res.Errors[k] += v
	}
	res.writeSecs, res.activeSecs = w.elapsed.Seconds(), active.Seconds()
	res.CPUSeconds = cpu1 - cpu0
	res.RSSBytes = rssEnd
	res.rssIdleDelta = rssIdle - rssBase
	res.finish()
	sleep(ctx, r.cfg.Settle) // let the server close the sessions before the next round
	return res, nil
}

// profile starts the profile the config asks for, if this is the round
// to take it: the first round of the first target, from the writers'
// start. The returned func waits for it and saves it.
func (r *round) profile(ctx context.Context) func() error {
	if r.cfg.ProfileURL == "" || r.n != 1 || r.t.name != "confab" {
		return func() error { return nil }
	}
	url := strings.TrimRight(r.cfg.ProfileURL, "/") + "/debug/pprof/heap?gc=1"
	if r.cfg.Writers > 0 {
		url = fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimRight(r.cfg.ProfileURL, "/"), max(1, int(r.cfg.Duration.Seconds())))
	}
	errc := make(chan error, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			errc <- err
			return
		}
		res, err := r.c.hc.Do(req)
		if err != nil {
			errc <- err
			return
		}
		defer res.Body.Close()
		data, err := io.ReadAll(res.Body)
		if err == nil && res.StatusCode != http.StatusOK {
			err = &statusError{status: res.StatusCode, body: string(data)}
		}
		if err == nil {
			err = os.WriteFile(r.cfg.ProfileOut, data, 0o644)
		}
		errc <- err
	}()
	return func() error {
		if err := <-errc; err != nil {
			return fmt.Errorf("profile %s: %w", url, err)
		}
		return nil
	}
}

// open starts the recipients, at most OpenParallel connecting at once,
// streams spread over the users one after another (user 0, 1, ... 0, 1 ...).
func (r *round) open(ctx context.Context) {
	r.has = make([]bool, len(r.fx.users))
	add := func(i int, transport string) {
		u := i % len(r.fx.users)
		r.has[u] = true
		r.recips = append(r.recips, newRecipient(u, r.fx.users[u].Access, transport, r.id, true, r.userBase(u)))
	}
	for i := range r.t.streams {
		add(i, "sse")
	}
	for i := range r.t.pollers {
		add(i, "poll")
	}
	sem := make(chan struct{}, max(r.cfg.OpenParallel, 1))
	var wg sync.WaitGroup
	for _, rc := range r.recips {
		sem <- struct{}{}
		wg.Add(1)
		if rc.transport == "sse" {
			go rc.runSSE(ctx, r.c)
		} else {
			go rc.runPoll(ctx, r.c)
		}
		go func() {
			defer wg.Done()
			select {
			case <-rc.ready:
			case <-time.After(30 * time.Second):
			}
			<-sem
		}()
	}
	wg.Wait()
}

// wait polls until ok holds for every recipient or d has passed, and
// returns how long it waited.
func (r *round) wait(ctx context.Context, d time.Duration, ok func(*recipient) bool) time.Duration {
	start := time.Now()
	pending := r.recips
	for time.Since(start) < d && ctx.Err() == nil {
		pending = filter(pending, func(rc *recipient) bool { return !ok(rc) })
		if len(pending) == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// lastSeqs returns the seq of the last message of every conversation of
// the fixture, as its first member reads it.
func (r *round) lastSeqs(ctx context.Context) (map[string]int64, error) {
	seqs := make([]int64, len(r.fx.convs))
	err := parallel(ctx, len(r.fx.convs), 16, func(g int) error {
		var err error
		seqs[g], err = r.c.lastSeq(ctx, r.fx.users[r.fx.members[g][0]].Access, r.fx.convs[g])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("last message seqs: %w", err)
	}
	out := make(map[string]int64, len(seqs))
	for g, seq := range seqs {
		out[r.fx.convs[g]] = seq
	}
	return out, nil
}

// userBase is where user u's conversations stood before the round.
func (r *round) userBase(u int) map[string]int64 {
	m := make(map[string]int64, len(r.fx.userConvs[u]))
	for _, g := range r.fx.userConvs[u] {
		m[r.fx.convs[g]] = r.base[r.fx.convs[g]]
	}
	return m
}

// collect adds what the recipients saw to res and returns their delivery
// latencies. final is every conversation's last message seq.
func (r *round) collect(res *Result, expected []int64, final map[string]int64) []int64 {
	var lat []int64
	for _, rc := range r.recips {
		lost := rc.gaps + rc.behind(final)
		lost = max(lost, expected[rc.user]-rc.msgs.Load())
		res.Lost += lost
		res.Duplicated += rc.dups
		res.Disordered += rc.disordered
		if rc.transport != "catchup" {
			res.Deliveries += rc.msgs.Load()
		}
		for k, v := range rc.errs {
			res.Errors[k] += v
		}
		lat = append(lat, rc.lat...)
	}
	return lat
}

func filter[T any](s []T, keep func(T) bool) []T {
	out := s[:0:0]
	for _, v := range s {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}

func sum(s []int64) int64 {
	var n int64
	for _, v := range s {
		n += v
	}
	return n
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
