package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

func TestOperationsEndpoints(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		e.must(http.StatusOK, "GET", "/healthz", "", nil)
		eventually(t, 10*time.Second, "readyz", func() bool { return e.do("GET", "/readyz", "", nil).status == http.StatusOK })
		if r := e.must(http.StatusOK, "GET", "/openapi.yaml", "", nil); !strings.HasPrefix(string(r.body), "openapi: 3.1") {
			t.Fatalf("openapi.yaml starts %q", r.body[:20])
		}
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		s := e.openStream(bob.Token, streamOpts{})
		cursor := s.ready()
		e.send(alice, g.ID, "measured")
		s.messages(1, cursor)
		r := e.must(http.StatusOK, "GET", "/metrics", "", nil)
		for _, want := range []string{
			`confab_subscribers{transport="sse"} 1`,
			`confab_events_delivered_total{transport="sse"}`,
			"confab_delivery_lag_seconds_bucket",
			"confab_notifications_sent_total",
			"confab_listener_reconnects_total",
			"confab_slow_consumer_disconnects_total",
			`go_sql_max_open_connections{db_name="confab"}`,
			"process_resident_memory_bytes",
			"go_goroutines",
		} {
			if !strings.Contains(string(r.body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if r := e.must(http.StatusOK, "GET", "/", "", nil); !strings.Contains(r.header.Get("Content-Type"), "text/html") {
			t.Errorf("/ is %s", r.header.Get("Content-Type"))
		}
	})
}

// TestReadyzWithoutListener: a node that cannot LISTEN must not get traffic.
func TestReadyzWithoutListener(t *testing.T) {
	t.Parallel()
	store := dbtest.Open(t, "postgres")
	ec := testEventsConfig(t, store)
	ec.ListenURL = "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=1"
	e := newEnvWith(t, store, testConfig(), ec)
	r := e.do("GET", "/readyz", "", nil)
	if r.status != http.StatusServiceUnavailable || r.problemCode() != "unavailable" {
		t.Fatalf("readyz with the listener down: %d %s", r.status, r.body)
	}
	e.must(http.StatusOK, "GET", "/healthz", "", nil)
}

// TestTokensNeverLogged: the access_token query parameter, the last-resort
// credential for EventSource, is redacted, and bodies are not logged.
func TestTokensNeverLogged(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice := e.register("alice")
		e.openStream(alice.Token, streamOpts{queryToken: true}).ready()
		e.do("GET", "/v1/events/poll?timeout=0&access_token="+alice.Token, "", nil)
		e.do("POST", "/v1/auth/login", "", map[string]string{"username": alice.Username, "password": "correct horse"})
		logs := e.logs.String()
		if !strings.Contains(logs, "/v1/events/poll") {
			t.Fatalf("requests were not logged:\n%s", logs)
		}
		for _, secret := range []string{alice.Token, alice.RefreshToken, "correct horse"} {
			if strings.Contains(logs, secret) {
				t.Fatalf("a secret reached the logs:\n%s", logs)
			}
		}
		if !strings.Contains(logs, "REDACTED") {
			t.Fatalf("access_token not shown as redacted:\n%s", logs)
		}
	})
}
