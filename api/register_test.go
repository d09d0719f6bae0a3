package api_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/confab-chat/confab/api"
	"github.com/confab-chat/confab/repository"
)

// registerFrom registers name as a client at addr (behind the trusted
// loopback proxy).
func (e *env) registerFrom(addr, name string) resp {
	e.t.Helper()
	body := map[string]string{"username": name, "password": password}
	return e.doWith("POST", "/v1/auth/register", http.Header{"X-Forwarded-For": {addr}}, body, false)
}

// TestRegisterRateLimit: registrations are limited per client address
// (429 with Retry-After), attempts at taken names count too, and other
// addresses are not affected.
func TestRegisterRateLimit(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.TrustedProxies = []string{"127.0.0.1"}
		cfg.RegisterBurst = 3
		cfg.RegisterInterval = time.Hour
		e := newEnv(t, store, cfg)
		const a, b = "203.0.113.7", "198.51.100.7"
		first := "taken_" + randomHex(3)
		e.must(http.StatusCreated, "POST", "/v1/auth/register", "", map[string]string{"username": first, "password": password}) // from loopback
		if r := e.registerFrom(a, "a1_"+randomHex(3)); r.status != http.StatusCreated {
			t.Fatalf("first registration: %d %s", r.status, r.body)
		}
		e.registerFrom(a, first).wantProblem(t, http.StatusConflict, "username_taken")
		if r := e.registerFrom(a, "a2_"+randomHex(3)); r.status != http.StatusCreated {
			t.Fatalf("third registration: %d %s", r.status, r.body)
		}
		before := e.state()
		wantThrottled(t, e.registerFrom(a, "a3_"+randomHex(3)), 3600)
		wantThrottled(t, e.registerFrom(a, first), 3600)
		if after := e.state(); after != before {
			t.Fatalf("a refused registration stored data:\n%s", after)
		}
		if r := e.registerFrom(b, "b1_"+randomHex(3)); r.status != http.StatusCreated {
			t.Fatalf("another address: %d %s", r.status, r.body)
		}
		// Invalid input is answered before the limit and costs nothing.
		r := e.doWith("POST", "/v1/auth/register", http.Header{"X-Forwarded-For": {b}}, map[string]string{"username": "X", "password": password}, true)
		r.wantProblem(t, http.StatusBadRequest, "invalid_field")
	})
}

// TestRegisterFloodLeavesLoginsASlot: while registrations hold every hash
// slot they may use, a login still gets its own slot and succeeds, and a
// registration of a taken or invalid name is refused at once, without
// hashing. The
// registrations are held by a hook inside the hash, so the test depends
// on structure, not on timing.
func TestRegisterFloodLeavesLoginsASlot(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.RegisterHashConcurrency = 2
		cfg.LoginHashConcurrency = 1
		e := newEnv(t, store, cfg)
		alice := e.register("alice")

		hashing := make(chan struct{}, 16)
		release := make(chan struct{})
		api.SetHashHook(e.srv, func() {
			hashing <- struct{}{}
			<-release
		})
		const flood = 6
		statuses := make(chan int, flood)
		var wg sync.WaitGroup
		defer wg.Wait()
		var once sync.Once
		releaseAll := func() { once.Do(func() { close(release) }) }
		defer releaseAll()
		for i := range flood {
			wg.Go(func() {
				body := map[string]string{"username": "flood_" + randomHex(3) + "_" + itoa(int64(i)), "password": password}
				statuses <- e.doCtx(t.Context(), "POST", "/v1/auth/register", "", body).status
			})
		}
		for range cfg.RegisterHashConcurrency {
			select {
			case <-hashing:
			case <-time.After(30 * time.Second):
				t.Fatal("the registrations never reached their hash")
			}
		}

		// Every registration slot is held. The deadlines below only turn a
		// hang (a request queued behind the held slots) into a failure.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		r := e.doCtx(ctx, "POST", "/v1/auth/login", "", map[string]string{"username": alice.Username, "password": password})
		if r.status != http.StatusOK {
			t.Fatalf("login while registrations hold their slots: %d %s", r.status, r.body)
		}
		r = e.doCtx(ctx, "POST", "/v1/auth/register", "", map[string]string{"username": alice.Username, "password": password})
		r.wantProblem(t, http.StatusConflict, "username_taken")
		r = e.doCtx(ctx, "POST", "/v1/auth/register", "", map[string]string{"username": "Not Valid", "password": password})
		r.wantProblem(t, http.StatusBadRequest, "invalid_field")
		if len(hashing) != 0 {
			t.Fatal("a registration hashed beyond the registration slots")
		}

		releaseAll()
		wg.Wait()
		close(statuses)
		for st := range statuses {
			if st != http.StatusCreated {
				t.Fatalf("a held registration answered %d", st)
			}
		}
		// Only the flood's registrations hashed, the taken name did not.
		if n := cfg.RegisterHashConcurrency + len(hashing); n != flood {
			t.Fatalf("%d password hashes for %d new users", n, flood)
		}
	})
}
