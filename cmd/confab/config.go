package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/confab-chat/confab/api"
	"github.com/confab-chat/confab/events"
	"github.com/confab-chat/confab/repository"
)

// Config is everything `confab serve` can be told, from flags or CONFAB_*
// environment variables (a flag wins over the environment).
type Config struct {
	Addr          string
	DatabaseURL   string
	ListenURL     string
	SQLitePath    string
	NodeID        string
	NoMigrate     bool
	TLSCert       string
	TLSKey        string
	JWTSecret     string
	LogFormat     string
	LogLevel      string
	ShutdownGrace time.Duration
	DBMaxConns    int
	PprofAddr     string
	// PresenceMaxMembers: see repository.Options.PresenceMaxMembers.
	PresenceMaxMembers int

	API    api.Config
	Events events.Config
}

// envFlags binds each flag to its CONFAB_ variable.
type envFlags struct {
	fs  *flag.FlagSet
	err error
}

func (e *envFlags) env(name string) (string, bool) {
	return os.LookupEnv("CONFAB_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
}

func (e *envFlags) String(p *string, name, def, usage string) {
	if v, ok := e.env(name); ok {
		def = v
	}
	e.fs.StringVar(p, name, def, usage)
}

func (e *envFlags) Bool(p *bool, name string, def bool, usage string) {
	if v, ok := e.env(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.err = fmt.Errorf("CONFAB_%s: %w", strings.ToUpper(strings.ReplaceAll(name, "-", "_")), err)
		}
		def = b
	}
	e.fs.BoolVar(p, name, def, usage)
}

func (e *envFlags) Int(p *int, name string, def int, usage string) {
	if v, ok := e.env(name); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.err = fmt.Errorf("CONFAB_%s: %w", strings.ToUpper(strings.ReplaceAll(name, "-", "_")), err)
		}
		def = n
	}
	e.fs.IntVar(p, name, def, usage)
}

func (e *envFlags) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	if v, ok := e.env(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			e.err = fmt.Errorf("CONFAB_%s: %w", strings.ToUpper(strings.ReplaceAll(name, "-", "_")), err)
		}
		def = d
	}
	e.fs.DurationVar(p, name, def, usage)
}

// parseConfig reads the serve configuration from args and the environment.
func parseConfig(args []string) (*Config, error) {
	cfg := &Config{API: api.DefaultConfig(), Events: events.DefaultConfig()}
	fs := flag.NewFlagSet("confab serve", flag.ContinueOnError)
	e := &envFlags{fs: fs}
	host, _ := os.Hostname()
	var cors, proxies string
	maxBody := int(cfg.API.MaxBodyBytes)
	hashMemory, hashTime := int(cfg.API.HashParams.MemoryKiB), int(cfg.API.HashParams.Time)
	e.String(&cfg.Addr, "addr", ":8080", "listen address")
	e.String(&cfg.DatabaseURL, "database-url", "", "Postgres URL (postgres://...); empty: embedded SQLite")
	e.String(&cfg.ListenURL, "listen-database-url", "", "Postgres URL for LISTEN when database-url goes through a transaction pooler")
	e.String(&cfg.SQLitePath, "sqlite-path", "confab.db", "SQLite database file when no database URL is set")
	// A random part: containers on one host all have pid 1, and two nodes
	// with one id would take each other's notifications for their own.
	suffix := make([]byte, 4)
	rand.Read(suffix)
	e.String(&cfg.NodeID, "node-id", host+"-"+hex.EncodeToString(suffix), "this node's id (sessions, notifications); unique per process")
	e.Bool(&cfg.NoMigrate, "no-migrate", false, "do not migrate on start (refuse to serve on an old schema)")
	e.String(&cfg.TLSCert, "tls-cert", "", "TLS certificate file (serves HTTPS and HTTP/2)")
	e.String(&cfg.TLSKey, "tls-key", "", "TLS key file")
	e.String(&cfg.JWTSecret, "jwt-secret", "", "JWT signing secret, at least 32 bytes; empty: generated once and kept in the database")
	e.String(&cfg.LogFormat, "log-format", "", "json or text; default: text on a terminal, else json")
	e.String(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	e.Duration(&cfg.ShutdownGrace, "shutdown-grace", 10*time.Second, "how long shutdown waits for requests to finish")
	e.Int(&cfg.DBMaxConns, "db-max-conns", 20, "Postgres pool size")
	e.String(&cfg.PprofAddr, "pprof-addr", "", "serve net/http/pprof on this address, e.g. 127.0.0.1:6060 (debug; empty: off)")
	e.Duration(&cfg.API.AccessTTL, "access-ttl", cfg.API.AccessTTL, "access token lifetime")
	e.Duration(&cfg.API.RefreshTTL, "refresh-ttl", cfg.API.RefreshTTL, "refresh token lifetime")
	e.String(&cors, "cors-origins", "", "comma-separated browser origins allowed to call the API (* for any)")
	e.String(&proxies, "trusted-proxies", "", "comma-separated proxy addresses/CIDRs whose X-Forwarded-For is trusted")
	e.Bool(&cfg.API.SecureCookies, "secure-cookies", false, "mark the token cookie Secure (behind a TLS proxy)")
	e.Int(&maxBody, "max-body-bytes", maxBody, "request body limit in bytes")
	e.Int(&hashMemory, "password-hash-memory", hashMemory, "argon2id memory per password hash, KiB (OWASP minimum: 19456 with time 2)")
	e.Int(&hashTime, "password-hash-time", hashTime, "argon2id passes per password hash")
	e.Int(&cfg.API.LoginHashConcurrency, "login-hash-concurrency", cfg.API.LoginHashConcurrency, "password checks of logins running at once (each takes the hash memory)")
	e.Int(&cfg.API.RegisterHashConcurrency, "register-hash-concurrency", cfg.API.RegisterHashConcurrency, "password hashes of registrations running at once, apart from the logins'")
	e.Int(&cfg.API.RegisterBurst, "register-burst", cfg.API.RegisterBurst, "registrations per client address before register-interval applies (0: unlimited)")
	e.Duration(&cfg.API.RegisterInterval, "register-interval", cfg.API.RegisterInterval, "then one registration per client address per interval")
	e.Int(&cfg.API.LoginFreeFailures, "login-free-failures", cfg.API.LoginFreeFailures, "failed logins per username and client address before delays start")
	e.Int(&cfg.API.LoginFreeFailuresPerAddr, "login-free-failures-per-addr", cfg.API.LoginFreeFailuresPerAddr, "failed logins per client address before delays start")
	e.Duration(&cfg.API.LoginBackoff, "login-backoff", cfg.API.LoginBackoff, "first delay after the free failed logins; it doubles with each further failure")
	e.Duration(&cfg.API.LoginBackoffMax, "login-backoff-max", cfg.API.LoginBackoffMax, "longest delay between failed logins")
	e.Duration(&cfg.API.LoginFailureWindow, "login-failure-window", cfg.API.LoginFailureWindow, "failed logins are forgotten after this long without one")
	e.Duration(&cfg.API.LoginTrust, "login-trust", cfg.API.LoginTrust, "a username that logged in from an address is not slowed by other failures from that address for this long")
	e.Int(&cfg.API.MaxGroupMembers, "max-group-members", cfg.API.MaxGroupMembers, "members per group")
	e.Int(&cfg.PresenceMaxMembers, "presence-max-members", repository.DefaultPresenceMaxMembers, "presence is shared through conversations of at most this many members")
	e.Int(&cfg.API.SendsPerSecond, "sends-per-second", cfg.API.SendsPerSecond, "messages a user may send per second, after a burst of send-burst (0: no limit)")
	e.Int(&cfg.API.SendBurst, "send-burst", cfg.API.SendBurst, "messages a user may send at once before sends-per-second applies")
	e.Int(&cfg.API.GroupsPerMinute, "groups-per-minute", cfg.API.GroupsPerMinute, "groups a user may create per minute (0: no limit)")
	e.Int(&cfg.API.MemberAddsPerMinute, "member-adds-per-minute", cfg.API.MemberAddsPerMinute, "members a user may add to groups per minute, those named at creation included (0: no limit)")
	e.Int(&cfg.API.ConversationsPage, "conversations-page", cfg.API.ConversationsPage, "conversations per page of GET /v1/conversations without ?limit=")
	e.Int(&cfg.API.ConversationsPageMax, "conversations-page-max", cfg.API.ConversationsPageMax, "the largest ?limit= of GET /v1/conversations")
	e.Duration(&cfg.API.StreamHeartbeat, "stream-heartbeat", cfg.API.StreamHeartbeat, "SSE comment heartbeat interval")
	e.Bool(&cfg.API.StreamPool, "stream-pool", cfg.API.StreamPool, "serve HTTP/1.1 streams from a pool of writers, with no goroutine per idle stream (Linux; off: a handler goroutine each)")
	e.Bool(&cfg.API.PollTakeover, "poll-takeover", cfg.API.PollTakeover, "serve a long-poller's polls on its HTTP/1.1 keep-alive connection outside net/http after its first answer (off: every poll through net/http)")
	e.Int(&cfg.API.StreamWriters, "stream-writers", cfg.API.StreamWriters, "writer goroutines of the stream pool (0: one per CPU)")
	e.Duration(&cfg.Events.TypingTTL, "typing-ttl", cfg.Events.TypingTTL, "how long a typing ping lasts")
	e.Duration(&cfg.Events.Retention, "retention", cfg.Events.Retention, "how long log events are kept for resuming clients")
	e.Duration(&cfg.Events.SafetyPoll, "safety-poll", cfg.Events.SafetyPoll, "re-check interval that bounds the delay of a lost notification")
	e.Duration(&cfg.Events.Hub.SlowAfter, "slow-consumer-timeout", cfg.Events.Hub.SlowAfter, "how long a client may lag before it is disconnected")
	e.Int(&cfg.Events.Hub.Buffer, "subscriber-buffer", cfg.Events.Hub.Buffer, "events queued per stream")
	e.Int(&cfg.Events.Hub.MaxPerUser, "max-streams-per-user", cfg.Events.Hub.MaxPerUser, "open streams and waiting polls per user on one node; a new one beyond it ends the oldest")
	e.Int(&cfg.Events.Hub.Ring, "event-ring", cfg.Events.Hub.Ring, "recent events each node keeps for clients that resume, so they need no database read")
	e.String(&cfg.Events.Channel, "notify-channel", cfg.Events.Channel, "Postgres NOTIFY channel")
	if e.err != nil {
		return nil, e.err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	cfg.API.MaxBodyBytes = int64(maxBody)
	cfg.API.HashParams.MemoryKiB, cfg.API.HashParams.Time = uint32(max(hashMemory, 0)), uint32(max(hashTime, 0))
	cfg.API.CORSOrigins = splitList(cors)
	cfg.API.TrustedProxies = splitList(proxies)
	if err := validate(cfg); err != nil {
		return nil, err
	}
	if cfg.JWTSecret != "" && len(cfg.JWTSecret) < 32 {
		return nil, fmt.Errorf("jwt-secret must be at least 32 bytes")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, fmt.Errorf("tls-cert and tls-key go together")
	}
	if cfg.ListenURL == "" {
		cfg.ListenURL = cfg.DatabaseURL
	}
	cfg.Events.Node, cfg.Events.ListenURL = cfg.NodeID, cfg.ListenURL
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// validate refuses settings that would break the server at run time (a zero
// interval makes a ticker panic, a zero buffer disconnects every stream).
func validate(cfg *Config) error {
	for name, d := range map[string]time.Duration{
		"access-ttl": cfg.API.AccessTTL, "refresh-ttl": cfg.API.RefreshTTL,
		"stream-heartbeat": cfg.API.StreamHeartbeat, "typing-ttl": cfg.Events.TypingTTL,
		"retention": cfg.Events.Retention, "safety-poll": cfg.Events.SafetyPoll,
		"slow-consumer-timeout": cfg.Events.Hub.SlowAfter, "shutdown-grace": cfg.ShutdownGrace,
		"register-interval": cfg.API.RegisterInterval, "login-backoff": cfg.API.LoginBackoff,
		"login-backoff-max": cfg.API.LoginBackoffMax, "login-failure-window": cfg.API.LoginFailureWindow,
		"login-trust": cfg.API.LoginTrust,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, not %v", name, d)
		}
	}
	for name, n := range map[string]int64{
		"subscriber-buffer": int64(cfg.Events.Hub.Buffer), "max-body-bytes": cfg.API.MaxBodyBytes,
		"max-group-members": int64(cfg.API.MaxGroupMembers), "db-max-conns": int64(cfg.DBMaxConns),
		"presence-max-members": int64(cfg.PresenceMaxMembers), "password-hash-time": int64(cfg.API.HashParams.Time),
		"max-streams-per-user": int64(cfg.Events.Hub.MaxPerUser), "event-ring": int64(cfg.Events.Hub.Ring),
		"login-hash-concurrency": int64(cfg.API.LoginHashConcurrency), "register-hash-concurrency": int64(cfg.API.RegisterHashConcurrency),
		"login-free-failures": int64(cfg.API.LoginFreeFailures), "login-free-failures-per-addr": int64(cfg.API.LoginFreeFailuresPerAddr),
	} {
		if n < 1 {
			return fmt.Errorf("%s must be at least 1, not %d", name, n)
		}
	}
	for name, n := range map[string]int{
		"sends-per-second": cfg.API.SendsPerSecond, "groups-per-minute": cfg.API.GroupsPerMinute,
		"member-adds-per-minute": cfg.API.MemberAddsPerMinute,
	} {
		if n < 0 {
			return fmt.Errorf("%s must be 0 (no limit) or more, not %d", name, n)
		}
	}
	if cfg.API.SendsPerSecond > 0 && cfg.API.SendBurst < 1 {
		return fmt.Errorf("send-burst must be at least 1, not %d", cfg.API.SendBurst)
	}
	if p, most := cfg.API.ConversationsPage, cfg.API.ConversationsPageMax; p < 1 || p > most {
		return fmt.Errorf("conversations-page must be from 1 to conversations-page-max (%d), not %d", most, p)
	}
	if cfg.API.HashParams.MemoryKiB < 8*uint32(cfg.API.HashParams.Threads) {
		return fmt.Errorf("password-hash-memory must be at least %d KiB", 8*cfg.API.HashParams.Threads)
	}
	if cfg.API.RegisterBurst < 0 {
		return fmt.Errorf("register-burst must be at least 0 (0: unlimited), not %d", cfg.API.RegisterBurst)
	}
	if cfg.API.LoginBackoffMax < cfg.API.LoginBackoff {
		return fmt.Errorf("login-backoff-max (%v) must not be below login-backoff (%v)", cfg.API.LoginBackoffMax, cfg.API.LoginBackoff)
	}
	for _, p := range cfg.API.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil && net.ParseIP(p) == nil {
			return fmt.Errorf("trusted-proxies: %q is neither an IP address nor a CIDR", p)
		}
	}
	for _, o := range cfg.API.CORSOrigins {
		if u, err := url.Parse(o); o != "*" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil) {
			return fmt.Errorf("cors-origins: %q is not an origin such as https://chat.example.com (or *)", o)
		}
	}
	if cfg.Events.Retention < time.Hour {
		return fmt.Errorf("retention must be at least 1h: clients offline longer than that would reset")
	}
	return nil
}
