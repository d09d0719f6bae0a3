package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/confab-chat/confab/api"
	"github.com/confab-chat/confab/events"
	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/web"
)

// Main wires the server together: it opens the store, builds the services
// and runs the HTTP server until the context ends. Nothing else happens here.
type Main struct {
	cfg *Config
	log *slog.Logger

	// Set once Run is listening (tests read them).
	ready chan struct{}
	addr  net.Addr
}

// Run serves until ctx is done, then shuts down gracefully.
func (m *Main) Run(ctx context.Context) error {
	store, err := repository.Open(ctx, repository.Options{URL: m.cfg.DatabaseURL, SQLitePath: m.cfg.SQLitePath, MaxOpenConns: m.cfg.DBMaxConns,
		PresenceMaxMembers: m.cfg.PresenceMaxMembers})
	if err != nil {
		return err
	}
	defer store.Close()
	m.log.Info("store opened", slog.String("dialect", store.Dialect()))

	if !m.cfg.NoMigrate {
		applied, err := store.Migrate(ctx)
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			m.log.Info("migrated", slog.Any("applied", applied))
		}
	}
	if err := store.CheckSchema(ctx); err != nil {
		return err
	}

	apiCfg := m.cfg.API
	if apiCfg.JWTSecret, err = m.jwtSecret(ctx, store); err != nil {
		return err
	}
	reg := api.NewRegistry(store.DB().DB)
	broker := events.New(m.cfg.Events, store, m.log, reg)
	if err := broker.Start(ctx); err != nil {
		return err
	}
	defer broker.Stop()

	srv := api.New(apiCfg, m.log, store, broker, api.Options{
		Metrics: api.MetricsHandler(reg),
		Web:     web.FS,
	})
	httpSrv := srv.HTTPServer(m.log)
	if m.cfg.PprofAddr != "" {
		go m.servePprof()
	}
	ln, err := net.Listen("tcp", m.cfg.Addr)
	if err != nil {
		return err
	}
	m.addr = ln.Addr()
	if m.ready != nil {
		close(m.ready)
	}
	if hp := m.cfg.API.HashParams; uint64(hp.MemoryKiB)*uint64(hp.Time) < 7*1024*5 {
		// OWASP's weakest argon2id setting is m=7 MiB, t=5; anything
		// cheaper is for tests and benchmarks that register many users.
		m.log.Warn("password hashing is weaker than OWASP's minimum: for tests and benchmarks only",
			slog.Int("memory_kib", int(hp.MemoryKiB)), slog.Int("time", int(hp.Time)))
	}
	m.log.Info("serving", slog.String("addr", ln.Addr().String()), slog.String("node", m.cfg.NodeID), slog.Bool("tls", m.cfg.TLSCert != ""))

	errc := make(chan error, 1)
	go func() {
		if m.cfg.TLSCert != "" {
			errc <- httpSrv.ServeTLS(ln, m.cfg.TLSCert, m.cfg.TLSKey)
		} else {
			errc <- httpSrv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}

	// Streams and waiting polls end first (their clients reconnect to
	// another node and resume from their cursors); then the server stops
	// accepting and waits for requests in flight, so every write it
	// accepted commits, and for the streams net/http gave up (their
	// sessions closed); the broker stops last, flushing its doorbells.
	m.log.Info("shutting down")
	broker.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), m.cfg.ShutdownGrace)
	defer cancel()
	if err := httpSrv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if err := srv.CloseStreams(sctx); err != nil {
		m.log.Warn("streams still closing at the end of the shutdown grace", slog.Any("err", err))
	}
	m.log.Info("stopped")
	return nil
}

// jwtSecret returns the configured secret, or the one kept in the database,
// generating it on first start so tokens survive restarts and are shared by
// every node.
func (m *Main) jwtSecret(ctx context.Context, store *repository.Store) ([]byte, error) {
	if m.cfg.JWTSecret != "" {
		return []byte(m.cfg.JWTSecret), nil
	}
	b := make([]byte, 32)
	rand.Read(b)
	stored, created, err := store.SettingOrInit(ctx, "jwt_secret", base64.StdEncoding.EncodeToString(b))
	if err != nil {
		return nil, fmt.Errorf("jwt secret: %w", err)
	}
	if created {
		m.log.Info("generated a JWT secret and stored it in the database (set CONFAB_JWT_SECRET to manage it yourself)")
	}
	return base64.StdEncoding.DecodeString(stored)
}

// servePprof serves the runtime profiles on their own debug listener (off
// by default; never on the API's address).
func (m *Main) servePprof() {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.log.Info("pprof serving", slog.String("addr", m.cfg.PprofAddr))
	srv := &http.Server{Addr: m.cfg.PprofAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		m.log.Warn("pprof stopped", slog.Any("err", err))
	}
}
