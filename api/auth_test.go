package api_test

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confab-chat/confab/api"
	"github.com/confab-chat/confab/repository"
)

func (e *env) login(username, pw string) resp {
	e.t.Helper()
	return e.do("POST", "/v1/auth/login", "", map[string]string{"username": username, "password": pw})
}

func (e *env) refresh(token string) resp {
	e.t.Helper()
	return e.do("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": token})
}

func TestRefreshRotation(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice := e.register("alice")
		other := e.tokens(e.login(alice.Username, password)) // a second family

		next := e.tokens(e.refresh(alice.RefreshToken))
		if next.RefreshToken == alice.RefreshToken || next.Token == "" || next.ID != alice.ID {
			t.Fatalf("rotation returned %+v", next)
		}
		e.must(http.StatusOK, "GET", "/v1/me", next.Token, nil)
		if strings.Contains(e.state(), next.RefreshToken) {
			t.Fatal("refresh tokens are stored in the clear")
		}

		// The spent token fails, and presenting it revokes its family: the
		// newest token of the family stops working too.
		e.refresh(alice.RefreshToken).wantProblem(t, http.StatusUnauthorized, "invalid_refresh_token")
		e.refresh(next.RefreshToken).wantProblem(t, http.StatusUnauthorized, "invalid_refresh_token")

		// Other logins are other families.
		third := e.tokens(e.refresh(other.RefreshToken))
		e.tokens(e.refresh(third.RefreshToken))
		e.refresh("not-a-token").wantProblem(t, http.StatusUnauthorized, "invalid_refresh_token")
	})
}

func TestLogout(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice := e.register("alice")

		r := e.must(http.StatusNoContent, "POST", "/v1/auth/logout", "", map[string]string{"refresh_token": alice.RefreshToken})
		c := tokenCookie(t, r)
		if c.Value != "" || c.MaxAge >= 0 || c.Path != "/v1/events" {
			t.Fatalf("logout cookie %q does not clear the token", r.header.Get("Set-Cookie"))
		}
		e.refresh(alice.RefreshToken).wantProblem(t, http.StatusUnauthorized, "invalid_refresh_token")
		// Idempotent, also for tokens it never saw.
		e.must(http.StatusNoContent, "POST", "/v1/auth/logout", "", map[string]string{"refresh_token": alice.RefreshToken})
		e.must(http.StatusNoContent, "POST", "/v1/auth/logout", "", map[string]string{"refresh_token": "never-issued"})
		// Access tokens live out their short lifetime (documented).
		e.must(http.StatusOK, "GET", "/v1/me", alice.Token, nil)

		// Logging out with a spent token of a family ends the whole family.
		s1 := e.tokens(e.login(alice.Username, password))
		s2 := e.tokens(e.refresh(s1.RefreshToken))
		e.must(http.StatusNoContent, "POST", "/v1/auth/logout", "", map[string]string{"refresh_token": s1.RefreshToken})
		e.refresh(s2.RefreshToken).wantProblem(t, http.StatusUnauthorized, "invalid_refresh_token")
	})
}

// TestLoginGivesNothingAway: an unknown user and a wrong password get the
// same status and body, and both pay for a real argon2id hash.
func TestLoginGivesNothingAway(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.HashParams = api.DefaultHashParams
		cfg.LoginFreeFailures = 100 // five wrong passwords for alice must not slow her last login
		e := newEnv(t, store, cfg)
		alice := e.register("alice")

		cases := []struct{ name, username, password string }{
			{"wrong password", alice.Username, "wrong horse"},
			{"unknown user", "nobody_" + randomHex(3), password},
			{"invalid username", strings.ToUpper(alice.Username), password},
		}
		var first resp
		fastest := map[string]time.Duration{}
		for round := range 5 {
			for _, tc := range cases {
				start := time.Now()
				r := e.login(tc.username, tc.password)
				d := time.Since(start)
				if round == 0 || d < fastest[tc.name] {
					fastest[tc.name] = d
				}
				r.wantProblem(t, http.StatusUnauthorized, "invalid_credentials")
				if first.body == nil {
					first = r
				}
				if !bytes.Equal(r.body, first.body) || r.header.Get("Content-Type") != first.header.Get("Content-Type") {
					t.Fatalf("%s answered %s, %s answered %s", tc.name, r.body, cases[0].name, first.body)
				}
			}
		}
		t.Logf("fastest logins: %v", fastest)
		wrong := fastest["wrong password"]
		for name, d := range fastest {
			// A real hash with the production parameters takes tens of
			// milliseconds; skipping it would take well under one.
			if d < 3*time.Millisecond {
				t.Errorf("%s took %v: no password hash was computed", name, d)
			}
			if d*10 < wrong {
				t.Errorf("%s took %v, a wrong password %v: the difference gives users away", name, d, wrong)
			}
		}
		e.tokens(e.must(http.StatusOK, "POST", "/v1/auth/login", "", map[string]string{"username": alice.Username, "password": password}))
	})
}

// loginFrom logs in as a client at addr (behind the trusted proxy that
// throttle tests configure).
func (e *env) loginFrom(addr, username, pw string) resp {
	e.t.Helper()
	body := map[string]string{"username": username, "password": pw}
	return e.doWith("POST", "/v1/auth/login", http.Header{"X-Forwarded-For": {addr}}, body, false)
}

// throttleConfig trusts the loopback proxy, so tests can speak from any
// address with X-Forwarded-For, and makes every delay an hour, so nothing
// depends on timing.
func throttleConfig() api.Config {
	cfg := testConfig()
	cfg.TrustedProxies = []string{"127.0.0.1"}
	cfg.LoginFreeFailures = 3
	cfg.LoginFreeFailuresPerAddr = 5
	cfg.LoginBackoff = time.Hour
	cfg.LoginBackoffMax = 4 * time.Hour
	return cfg
}

// wantThrottled fails unless r is a 429 with a Retry-After of at least min
// seconds.
func wantThrottled(t *testing.T, r resp, min int) {
	t.Helper()
	r.wantProblem(t, http.StatusTooManyRequests, "rate_limited")
	if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < min {
		t.Fatalf("Retry-After %q, want at least %d", r.header.Get("Retry-After"), min)
	}
}

// TestLoginThrottle: failures are throttled per (username, address) and per
// address with growing delays, never per username alone: guessing cannot
// lock the owner out from elsewhere, and one guesser behind an office NAT
// cannot lock out the colleagues who logged in from there before.
func TestLoginThrottle(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, throttleConfig())
		alice, bob, carol, dave := e.register("alice"), e.register("bob"), e.register("carol"), e.register("dave")

		t.Run("per username and address", func(t *testing.T) {
			const attacker, home = "203.0.113.1", "198.51.100.1"
			for range 3 {
				e.loginFrom(attacker, alice.Username, "wrong horse").wantProblem(t, http.StatusUnauthorized, "invalid_credentials")
			}
			wantThrottled(t, e.loginFrom(attacker, alice.Username, "wrong horse"), 3600)
			// The guesser waits even with the right password...
			wantThrottled(t, e.loginFrom(attacker, alice.Username, password), 3600)
			// ...but alice, from an address that has not been guessing, does not.
			e.tokens(e.loginFrom(home, alice.Username, password))
			e.loginFrom(home, alice.Username, "typo horse").wantProblem(t, http.StatusUnauthorized, "invalid_credentials")
			// Other users from the guessing address are not affected either.
			e.tokens(e.loginFrom(attacker, bob.Username, password))
		})

		t.Run("a success forgives", func(t *testing.T) {
			const addr = "198.51.100.2"
			for range 2 {
				e.loginFrom(addr, bob.Username, "wrong horse").wantProblem(t, http.StatusUnauthorized, "invalid_credentials")
			}
			e.tokens(e.loginFrom(addr, bob.Username, password))
			for range 3 {
				e.loginFrom(addr, bob.Username, "wrong horse").wantProblem(t, http.StatusUnauthorized, "invalid_credentials")
			}
			wantThrottled(t, e.loginFrom(addr, bob.Username, "wrong horse"), 3600)
		})

		t.Run("per address, behind one NAT", func(t *testing.T) {
			const office, elsewhere = "192.0.2.10", "192.0.2.99"
			e.tokens(e.loginFrom(office, carol.Username, password)) // carol works here
			// Someone in the office sprays passwords over many names.
			for i := range 5 {
				name := "nobody_" + strconv.Itoa(i)
				if i == 4 {
					name = "N" // not a valid username: counted all the same
				}
				e.loginFrom(office, name, "wrong horse").wantProblem(t, http.StatusUnauthorized, "invalid_credentials")
			}
			wantThrottled(t, e.loginFrom(office, "nobody_9", "wrong horse"), 3600)
			// A name never used from the office waits, wherever its owner is...
			wantThrottled(t, e.loginFrom(office, dave.Username, password), 3600)
			e.tokens(e.loginFrom(elsewhere, dave.Username, password))
			// ...but carol, who logged in from the office before, gets in.
			e.tokens(e.loginFrom(office, carol.Username, password))
			e.tokens(e.loginFrom(office, carol.Username, password))
		})
	})
}

// tokenCookie returns the confab_token cookie a response sets.
func tokenCookie(t *testing.T, r resp) *http.Cookie {
	t.Helper()
	var found *http.Cookie
	for _, line := range r.header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			t.Fatalf("Set-Cookie %q: %v", line, err)
		}
		if c.Name == "confab_token" {
			if found != nil {
				t.Fatal("confab_token set twice")
			}
			found = c
		}
	}
	if found == nil {
		t.Fatalf("no confab_token cookie in %q", r.header.Values("Set-Cookie"))
	}
	return found
}

func TestTokenCookie(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		name := "alice_" + randomHex(3)
		register := e.must(http.StatusCreated, "POST", "/v1/auth/register", "", map[string]string{"username": name, "password": password})
		alice := e.tokens(register)
		login := e.must(http.StatusOK, "POST", "/v1/auth/login", "", map[string]string{"username": name, "password": password})
		refresh := e.must(http.StatusOK, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": alice.RefreshToken})
		for what, r := range map[string]resp{"register": register, "login": login, "refresh": refresh} {
			var body struct {
				AccessToken string `json:"access_token"`
				ExpiresIn   int    `json:"expires_in"`
			}
			r.decode(t, &body)
			c := tokenCookie(t, r)
			switch {
			case c.Value != body.AccessToken:
				t.Errorf("%s: the cookie is not the access token", what)
			case !c.HttpOnly, c.SameSite != http.SameSiteStrictMode, c.Path != "/v1/events":
				t.Errorf("%s: Set-Cookie %q, want HttpOnly, SameSite=Strict, Path=/v1/events", what, r.header.Get("Set-Cookie"))
			case c.Secure:
				t.Errorf("%s: Secure cookie over plain HTTP", what)
			case c.MaxAge < body.ExpiresIn-5 || c.MaxAge > body.ExpiresIn+5:
				t.Errorf("%s: Max-Age %d, expires_in %d", what, c.MaxAge, body.ExpiresIn)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("%s: Cache-Control %q", what, cc)
			}
		}
	})
}

func TestMeAndUserSearch(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		p := "s" + randomHex(3)
		var me struct {
			ID          string    `json:"id"`
			Username    string    `json:"username"`
			DisplayName string    `json:"display_name"`
			CreatedAt   time.Time `json:"created_at"`
		}
		ann := e.tokens(e.must(http.StatusCreated, "POST", "/v1/auth/register", "",
			map[string]string{"username": p + "_ann", "password": password, "display_name": "Ann Ü. Smith"}))
		e.must(http.StatusOK, "GET", "/v1/me", ann.Token, nil).decode(t, &me)
		if me.ID != ann.ID || me.Username != p+"_ann" || me.DisplayName != "Ann Ü. Smith" || me.CreatedAt.IsZero() {
			t.Fatalf("me: %+v", me)
		}
		for _, n := range []string{p + "_anna", p + "xann", p + ".ann", "zz" + p} {
			e.must(http.StatusCreated, "POST", "/v1/auth/register", "", map[string]string{"username": n, "password": password})
		}
		search := func(q string) []string {
			t.Helper()
			var out struct {
				Users []struct{ Username string }
			}
			e.must(http.StatusOK, "GET", "/v1/users?q="+q, ann.Token, nil).decode(t, &out)
			var names []string
			for _, u := range out.Users {
				names = append(names, u.Username)
			}
			return names
		}
		for q, want := range map[string][]string{
			p + "_ann":               {p + "_ann", p + "_anna"},
			p + "_":                  {p + "_ann", p + "_anna"}, // "_" is no wildcard
			p + ".":                  {p + ".ann"},
			strings.ToUpper(p + "_"): {p + "_ann", p + "_anna"},
			"%25":                    nil, // "%" is no wildcard either
			p + "%25":                nil,
			"%5C":                    nil, // a backslash escapes nothing
			"_":                      nil,
			"zz" + p:                 {"zz" + p},
			"nobody":                 nil,
		} {
			if got := search(q); !slices.Equal(got, want) {
				t.Errorf("q=%s: %q, want %q", q, got, want)
			}
		}
		if got := search(""); len(got) != 5 || !slices.IsSorted(got) {
			t.Errorf("q empty: %q", got)
		}
	})
}

// TestLoginLimitHoldsUnderConcurrency: guesses sent all at once cannot pass
// a check made before any of them failed.
func TestLoginLimitHoldsUnderConcurrency(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.LoginFreeFailures = 3
		cfg.LoginBackoff = time.Hour
		e := newEnv(t, store, cfg)
		alice := e.register("alice")
		statuses := make(chan int, 20)
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				statuses <- e.doCtx(t.Context(), "POST", "/v1/auth/login", "", map[string]string{"username": alice.Username, "password": "wrong horse"}).status
			})
		}
		wg.Wait()
		close(statuses)
		counts := map[int]int{}
		for st := range statuses {
			counts[st]++
		}
		if counts[http.StatusUnauthorized] > 3 || counts[http.StatusUnauthorized]+counts[http.StatusTooManyRequests] != 20 {
			t.Fatalf("20 concurrent guesses with a limit of 3: %v", counts)
		}
	})
}
