// Package api is confab's HTTP layer: the Gin router, middleware, one file
// per resource, and the one function that turns errors into problem+json.
package api

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	confab "github.com/confab-chat/confab"
	"github.com/confab-chat/confab/events"
	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/sse"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is what the HTTP layer needs; cmd/confab fills it.
type Config struct {
	JWTSecret  []byte
	Issuer     string
	Audience   string
	AccessTTL  time.Duration
	RefreshTTL time.Duration

	MaxBodyBytes    int64
	MaxGroupMembers int
	CORSOrigins     []string
	TrustedProxies  []string
	// SecureCookies marks the token cookie Secure (set when serving TLS or
	// behind a TLS-terminating proxy).
	SecureCookies bool

	HashParams HashParams
	// Password hashes run in two bounded pools, each hash taking ~19 MiB:
	// logins (a verify each) and registrations. Separate pools mean a
	// registration flood cannot take the slots logins need.
	LoginHashConcurrency    int
	RegisterHashConcurrency int

	// Streams: heartbeat comment interval, the reconnect hint given to
	// EventSource, and the deadline of each write to a client.
	StreamHeartbeat    time.Duration
	StreamRetry        time.Duration
	StreamWriteTimeout time.Duration
	// StreamPool serves HTTP/1.1 streams from a pool of writers (package
	// sse; Linux only) instead of a handler goroutine each; StreamWriters
	// is the pool's size (0: one per CPU).
	StreamPool    bool
	StreamWriters int
	// PollTakeover serves a long-poller's polls on its plain HTTP/1.1
	// keep-alive connection outside net/http once it has been answered
	// once (pollconn.go).
	PollTakeover bool
	// WriteTimeout bounds writing any other response.
	WriteTimeout time.Duration
	// Typing pings allowed per user and conversation: a burst, then one per
	// interval.
	TypingBurst    int
	TypingInterval time.Duration

	// Failed logins are throttled per (username, client address) and per
	// client address: a number of free failures, then growing delays from
	// LoginBackoff up to LoginBackoffMax; failures are forgotten after
	// LoginFailureWindow without one. A (username, address) that logged in
	// is trusted for LoginTrust: guessing by others from its address (one
	// NAT) does not hold it up.
	LoginFreeFailures        int
	LoginFreeFailuresPerAddr int
	LoginBackoff             time.Duration
	LoginBackoffMax          time.Duration
	LoginFailureWindow       time.Duration
	LoginTrust               time.Duration

	// Registrations per client address: a burst, then one per interval
	// (RegisterBurst 0: unlimited).
	RegisterBurst    int
	RegisterInterval time.Duration

	// Writes allowed per user, each a token bucket (0: no limit): message
	// sends per second with a burst; group creations and member additions
	// per minute. Creating a group with n other members counts as n
	// additions, so a group cannot start with more than MemberAddsPerMinute
	// others.
	SendsPerSecond      int
	SendBurst           int
	GroupsPerMinute     int
	MemberAddsPerMinute int

	// GET /v1/conversations pages: the size without ?limit=, and the
	// largest ?limit= allowed.
	ConversationsPage    int
	ConversationsPageMax int
}

// DefaultConfig returns production defaults (the secret is left empty).
func DefaultConfig() Config {
	return Config{
		Issuer:                   "confab",
		Audience:                 "confab",
		AccessTTL:                15 * time.Minute,
		RefreshTTL:               30 * 24 * time.Hour,
		MaxBodyBytes:             64 << 10,
		MaxGroupMembers:          1000,
		HashParams:               DefaultHashParams,
		LoginHashConcurrency:     4,
		RegisterHashConcurrency:  2,
		LoginFreeFailures:        5,
		LoginFreeFailuresPerAddr: 50,
		LoginBackoff:             time.Second,
		LoginBackoffMax:          15 * time.Minute,
		LoginFailureWindow:       time.Hour,
		LoginTrust:               30 * 24 * time.Hour,
		RegisterBurst:            10,
		RegisterInterval:         time.Minute,
		StreamHeartbeat:          15 * time.Second,
		StreamRetry:              2 * time.Second,
		StreamWriteTimeout:       10 * time.Second,
		StreamPool:               true,
		PollTakeover:             true,
		WriteTimeout:             30 * time.Second,
		TypingBurst:              5,
		TypingInterval:           time.Second,
		SendsPerSecond:           10,
		SendBurst:                20,
		GroupsPerMinute:          10,
		MemberAddsPerMinute:      100,
		ConversationsPage:        100,
		ConversationsPageMax:     500,
	}
}

// Server holds the dependencies of the handlers.
type Server struct {
	cfg        Config
	log        *slog.Logger
	store      *repository.Store
	broker     *events.Broker
	metrics    http.Handler
	web        fs.FS
	tokens     *tokens
	passwords  *passwords
	origins    *http.CrossOriginProtection
	pairFails  *backoff
	addrFails  *backoff
	registers  *limiters
	typingRate *limiters
	sendRate   *limiters
	groupRate  *limiters
	addRate    *limiters
	// pool serves HTTP/1.1 streams (nil: every stream is served by its
	// handler).
	pool *sse.Pool
	// polls serves the long-pollers' connections taken over from
	// net/http (nil: none are; HTTPServer sets it where the platform
	// allows).
	polls        *pollLoop
	openSSE      prometheus.Gauge
	deliveredSSE prometheus.Counter
}

// Options are the optional parts of a Server.
type Options struct {
	// Metrics serves /metrics (nil: not served).
	Metrics http.Handler
	// Web is the browser client served at / (nil: not served).
	Web fs.FS
}

// New builds the HTTP layer over the store and the node's real-time core.
func New(cfg Config, log *slog.Logger, store *repository.Store, broker *events.Broker, opts Options) *Server {
	s := &Server{
		cfg:        cfg,
		log:        log,
		store:      store,
		broker:     broker,
		metrics:    opts.Metrics,
		web:        opts.Web,
		typingRate: newLimiters(cfg.TypingInterval, cfg.TypingBurst),
		tokens:     newTokens(cfg.JWTSecret, cfg.Issuer, cfg.Audience, cfg.AccessTTL),
		passwords:  newPasswords(cfg.HashParams, cfg.LoginHashConcurrency, cfg.RegisterHashConcurrency),
		pairFails:  newBackoff(cfg.LoginFreeFailures, cfg.LoginBackoff, cfg.LoginBackoffMax, cfg.LoginFailureWindow, cfg.LoginTrust),
		addrFails:  newBackoff(cfg.LoginFreeFailuresPerAddr, cfg.LoginBackoff, cfg.LoginBackoffMax, cfg.LoginFailureWindow, 0),
		sendRate:   perInterval(cfg.SendsPerSecond, time.Second, cfg.SendBurst),
		groupRate:  perInterval(cfg.GroupsPerMinute, time.Minute, cfg.GroupsPerMinute),
		addRate:    perInterval(cfg.MemberAddsPerMinute, time.Minute, cfg.MemberAddsPerMinute),
	}
	if cfg.RegisterBurst > 0 {
		s.registers = newLimiters(cfg.RegisterInterval, cfg.RegisterBurst)
	}
	s.origins = newOriginCheck(cfg.CORSOrigins, log)
	s.openSSE = broker.Metrics.Open.WithLabelValues(events.TransportSSE)
	s.deliveredSSE = broker.Metrics.Delivered.WithLabelValues(events.TransportSSE)
	if cfg.StreamPool && sse.Supported {
		var err error
		s.pool, err = sse.NewPool(sse.Config{
			Heartbeat: cfg.StreamHeartbeat, WriteTimeout: cfg.StreamWriteTimeout,
			Writers: cfg.StreamWriters, Delivered: s.delivered,
		})
		if err != nil {
			log.Warn("streams served by their handlers: the stream pool could not start", slog.Any("err", err))
		}
	}
	s.tokens.exists = store.UserExists
	return s
}

// Handler returns the router. Every route is here, top to bottom.
func (s *Server) Handler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	r.SetTrustedProxies(s.cfg.TrustedProxies) //nolint:errcheck // validated in cmd
	r.Use(s.recoverer, s.requestLog, securityHeaders, s.writeDeadline, s.cors, s.limitBody)
	r.NoRoute(func(c *gin.Context) { problem(c, http.StatusNotFound, CodeNotFound, "no such route") })
	r.NoMethod(func(c *gin.Context) { problem(c, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "") })

	r.GET("/healthz", s.healthz)
	r.HEAD("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	r.HEAD("/readyz", s.readyz)
	r.GET("/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", confab.OpenAPI) })
	if s.metrics != nil {
		r.GET("/metrics", gin.WrapH(s.metrics))
	}
	s.mountWeb(r)

	v1 := r.Group("/v1", noStore)
	auth := v1.Group("/auth", s.sameOrigin)
	auth.POST("/register", s.register)
	auth.POST("/login", s.login)
	auth.POST("/refresh", s.refresh)
	auth.POST("/logout", s.logout)

	authed := v1.Group("", s.requireBearer)
	authed.GET("/me", s.me)
	authed.GET("/users", s.searchUsers)
	authed.POST("/conversations", s.createConversation)
	authed.GET("/conversations", s.listConversations)
	authed.GET("/conversations/:id", s.getConversation)
	authed.POST("/conversations/:id/members", s.addMember)
	authed.DELETE("/conversations/:id/members/:user_id", s.removeMember)
	authed.POST("/conversations/:id/messages", s.sendMessage)
	authed.GET("/conversations/:id/messages", s.listMessages)
	authed.POST("/conversations/:id/read", s.markRead)
	authed.POST("/conversations/:id/typing", s.typing)
	authed.GET("/sessions", s.sessions)

	stream := v1.Group("/events", s.streamAuth)
	stream.GET("", s.events)
	stream.GET("/poll", s.poll)
	return r
}

// CloseStreams ends the streams served by the pool (their clients resume
// elsewhere) and waits until each has closed its session and logged its
// line, or for ctx. http.Server.Shutdown does not see them: net/http gave
// their connections up.
func (s *Server) CloseStreams(ctx context.Context) error {
	var err error
	if s.pool != nil {
		err = s.pool.Shutdown(ctx)
	}
	if s.polls != nil {
		s.polls.shutdown() // http.Server.Shutdown did, unless it was not called
		err = errors.Join(err, s.polls.wait(ctx))
	}
	return err
}

// HTTPServer returns the http.Server to run the handler with. It has no
// WriteTimeout, which would cut every stream: streams set a deadline per
// write instead, and the header and body reads are bounded.
//
// With PollTakeover, the server also serves the connections the long-poll
// fast path hands back, and its Shutdown ends the connections it took.
func (s *Server) HTTPServer(log *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connStateKey{}, new(connState))
		},
	}
	if s.cfg.PollTakeover {
		if l, err := newPollLoop(s, srv); err == nil {
			s.polls = l
			srv.RegisterOnShutdown(l.shutdown)
		}
	}
	return srv
}
