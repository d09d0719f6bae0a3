package bench

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is one `bench run`: the load and what it is compared with.
type Config struct {
	// URL is the confab server under load.
	URL string
	// Ref is the reference measured in alternation with URL: another
	// server's URL (`confab bench reference`), "sql:DSN" (the send's SQL
	// through pgx at the same concurrency), or "sse" (the same server, the
	// long-pollers replaced by as many SSE streams), or "group:S" (the same
	// server and load on conversations of S members instead of Group, as
	// many of them). Empty: no reference.
	Ref string
	// Rounds is how many times each target runs.
	Rounds int

	Users   int // U registered users
	Group   int // S members per conversation (users are split into groups of S)
	Streams int // N SSE streams, spread over the users
	Pollers int // P long-pollers, spread over the users
	Writers int // W concurrent writers
	// Rate is the total target of messages per second; 0: as fast as the
	// writers can.
	Rate     float64
	Duration time.Duration
	// Settle is the quiet wait after the streams opened; Drain bounds the
	// wait for the last deliveries after the writers stopped.
	Settle time.Duration
	Drain  time.Duration

	// Setup is a file that keeps registered users and conversations between
	// runs against the same server (registration hashes passwords: slow).
	Setup            string
	RegisterParallel int
	OpenParallel     int

	Label       string
	JSON        bool
	AllowRemote bool
	// ProfileURL is the server's pprof address: the first round of the
	// first target saves a CPU profile of its writers (a heap profile when
	// nothing is written) to ProfileOut.
	ProfileURL string
	ProfileOut string
}

func parseRunConfig(args []string, out io.Writer) (*Config, error) {
	cfg := &Config{}
	fs := flag.NewFlagSet("confab bench run", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.URL, "url", "", "confab server to load (required)")
	fs.StringVar(&cfg.Ref, "ref", "", "reference measured alternately: URL of `confab bench reference`, sql:DSN, sse, or group:S")
	fs.IntVar(&cfg.Rounds, "rounds", 2, "rounds per target (confab, reference, confab, ...)")
	fs.IntVar(&cfg.Users, "users", 10, "users U")
	fs.IntVar(&cfg.Group, "group", 0, "conversation size S (0: all users in one conversation)")
	fs.IntVar(&cfg.Streams, "streams", 10, "SSE streams N, spread over the users")
	fs.IntVar(&cfg.Pollers, "pollers", 0, "long-pollers P, spread over the users")
	fs.IntVar(&cfg.Writers, "writers", 1, "concurrent writers W")
	fs.Float64Var(&cfg.Rate, "rate", 10, "messages per second over all writers (0: as fast as possible)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long the writers write per round")
	fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "quiet wait after the streams opened")
	fs.DurationVar(&cfg.Drain, "drain", 15*time.Second, "longest wait for the last deliveries")
	fs.StringVar(&cfg.Setup, "setup", "", "file keeping users and conversations between runs (created if missing)")
	fs.IntVar(&cfg.RegisterParallel, "register-parallel", 4, "concurrent registrations")
	fs.IntVar(&cfg.OpenParallel, "open-parallel", 32, "concurrent stream opens")
	fs.StringVar(&cfg.Label, "label", "", "scenario name for the report")
	fs.BoolVar(&cfg.JSON, "json", false, "print JSON instead of a table")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a non-loopback URL")
	fs.StringVar(&cfg.ProfileURL, "profile-url", "", "the server's -pprof-addr URL: profile the first round")
	fs.StringVar(&cfg.ProfileOut, "profile-out", "confab.pprof", "where -profile-url's profile goes")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return cfg, cfg.validate()
}

func (c *Config) validate() error {
	if c.Group == 0 {
		c.Group = c.Users
	}
	switch {
	case c.URL == "":
		return fmt.Errorf("bench: -url is required")
	case c.Users < 1 || c.Group < 1 || c.Group > c.Users:
		return fmt.Errorf("bench: need 1 <= group <= users")
	case c.Users%c.Group != 0:
		return fmt.Errorf("bench: users (%d) must be a multiple of group (%d)", c.Users, c.Group)
	case c.Streams < 0 || c.Pollers < 0 || c.Writers < 0 || c.Rate < 0 || c.Rounds < 1:
		return fmt.Errorf("bench: counts must not be negative")
	case c.Writers > 0 && c.Duration <= 0:
		return fmt.Errorf("bench: -duration must be positive")
	case c.Ref == "sse" && c.Pollers == 0:
		return fmt.Errorf("bench: -ref sse compares long-pollers with streams: give -pollers")
	}
	if size, ok := strings.CutPrefix(c.Ref, "group:"); ok {
		if n, err := strconv.Atoi(size); err != nil || n < 1 {
			return fmt.Errorf("bench: -ref group:S needs a conversation size S >= 1")
		}
	}
	if err := checkTarget(c.URL, c.AllowRemote); err != nil {
		return err
	}
	if strings.HasPrefix(c.Ref, "http") {
		return checkTarget(c.Ref, c.AllowRemote)
	}
	return nil
}

// checkTarget refuses anything but an http URL on a loopback address
// unless remote targets were allowed: a load tool aimed by mistake is an
// attack.
func checkTarget(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("bench: %q is not an http(s) URL", raw)
	}
	if allowRemote {
		return nil
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("bench: %s is not a loopback address (use -allow-remote to load another machine)", host)
}
