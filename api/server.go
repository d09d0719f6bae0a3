// Package api is confab's HTTP layer: the Gin router, middleware, one file
// per resource, and the one function that turns errors into problem+json.
package api

import (
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	confab "github.com/confab-chat/confab"
	"github.com/confab-chat/confab/events"
	"github.com/confab-chat/confab/repository"
	"github.com/gin-gonic/gin"
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

	HashParams      HashParams
	HashConcurrency int

	// Streams: heartbeat comment interval, the reconnect hint given to
	// EventSource, and the deadline of each write to a client.
	StreamHeartbeat    time.Duration
	StreamRetry        time.Duration
	StreamWriteTimeout time.Duration
	// WriteTimeout bounds writing any other response.
	WriteTimeout time.Duration
	// Typing pings allowed per user and conversation: a burst, then one per
	// interval.
	TypingBurst    int
	TypingInterval time.Duration

	// Failed logins allowed per username and per client address: a burst,
	// then one per interval.
	LoginFailuresPerUser int
	LoginFailuresPerAddr int
	LoginFailureInterval time.Duration

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
		Issuer:               "confab",
		Audience:             "confab",
		AccessTTL:            15 * time.Minute,
		RefreshTTL:           30 * 24 * time.Hour,
		MaxBodyBytes:         64 << 10,
		MaxGroupMembers:      1000,
		HashParams:           DefaultHashParams,
		HashConcurrency:      4,
		LoginFailuresPerUser: 10,
		LoginFailuresPerAddr: 50,
		LoginFailureInterval: 30 * time.Second,
		StreamHeartbeat:      15 * time.Second,
		StreamRetry:          2 * time.Second,
		StreamWriteTimeout:   10 * time.Second,
		WriteTimeout:         30 * time.Second,
		TypingBurst:          5,
		TypingInterval:       time.Second,
		SendsPerSecond:       10,
		SendBurst:            20,
		GroupsPerMinute:      10,
		MemberAddsPerMinute:  100,
		ConversationsPage:    100,
		ConversationsPageMax: 500,
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
	userFails  *limiters
	addrFails  *limiters
	typingRate *limiters
	sendRate   *limiters
	groupRate  *limiters
	addRate    *limiters
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
		passwords:  newPasswords(cfg.HashParams, cfg.HashConcurrency),
		userFails:  newLimiters(cfg.LoginFailureInterval, cfg.LoginFailuresPerUser),
		addrFails:  newLimiters(cfg.LoginFailureInterval, cfg.LoginFailuresPerAddr),
		sendRate:   perInterval(cfg.SendsPerSecond, time.Second, cfg.SendBurst),
		groupRate:  perInterval(cfg.GroupsPerMinute, time.Minute, cfg.GroupsPerMinute),
		addRate:    perInterval(cfg.MemberAddsPerMinute, time.Minute, cfg.MemberAddsPerMinute),
	}
	return s
}

// Handler returns the router. Every route is here, top to bottom.
func (s *Server) Handler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	r.SetTrustedProxies(s.cfg.TrustedProxies) //nolint:errcheck // validated in cmd
	r.Use(s.recoverer, s.requestLog, s.writeDeadline, s.cors, s.limitBody)
	r.NoRoute(func(c *gin.Context) { problem(c, http.StatusNotFound, CodeNotFound, "no such route") })
	r.NoMethod(func(c *gin.Context) { problem(c, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "") })

	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	r.GET("/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", confab.OpenAPI) })
	if s.metrics != nil {
		r.GET("/metrics", gin.WrapH(s.metrics))
	}
	s.mountWeb(r)

	v1 := r.Group("/v1")
	v1.POST("/auth/register", s.register)
	v1.POST("/auth/login", s.login)
	v1.POST("/auth/refresh", s.refresh)
	v1.POST("/auth/logout", s.logout)

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

// HTTPServer returns the http.Server to run the handler with. It has no
// WriteTimeout, which would cut every stream: streams set a deadline per
// write instead, and the header and body reads are bounded.
func (s *Server) HTTPServer(log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
