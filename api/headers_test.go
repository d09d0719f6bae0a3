package api_test

import (
	"io/fs"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository/dbtest"
	"github.com/confab-chat/confab/web"
)

// TestSecurityHeaders: the client is served under a strict CSP that its
// own HTML obeys, with an ETag and conditional requests; load balancers can
// probe with HEAD; every response says nosniff and sends no Referer; no
// authenticated response may be cached.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dbtest.Open(t, "sqlite"), testConfig())
	alice, bob := e.register("alice"), e.register("bob")

	t.Run("client", func(t *testing.T) {
		r := e.must(http.StatusOK, "GET", "/", "", nil)
		csp := directives(r.header.Get("Content-Security-Policy"))
		for name, want := range map[string]string{
			"default-src": "'none'", "script-src": "'self'", "style-src": "'self'", "connect-src": "'self'",
			"frame-ancestors": "'none'", "object-src": "'none'", "base-uri": "'none'",
		} {
			if csp[name] != want {
				t.Errorf("CSP %s is %q, want %q (header %q)", name, csp[name], want, r.header.Get("Content-Security-Policy"))
			}
		}
		etag := r.header.Get("ETag")
		if !strings.HasPrefix(etag, `"`) || r.header.Get("Referrer-Policy") != "no-referrer" || r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("headers of /: %v", r.header)
		}
		h := http.Header{"If-None-Match": {etag}}
		if r := e.doWith("GET", "/", h, nil, false); r.status != http.StatusNotModified || len(r.body) != 0 {
			t.Fatalf("If-None-Match the current ETag: %d (%d bytes)", r.status, len(r.body))
		}
		h.Set("If-None-Match", `"stale"`)
		if r := e.doWith("GET", "/", h, nil, false); r.status != http.StatusOK || len(r.body) == 0 {
			t.Fatalf("If-None-Match a stale ETag: %d", r.status)
		}
		head := e.must(http.StatusOK, "HEAD", "/", "", nil)
		if len(head.body) != 0 || head.header.Get("Content-Length") != strconv.Itoa(len(r.body)) || head.header.Get("ETag") != etag {
			t.Fatalf("HEAD /: %d bytes, Content-Length %q, ETag %q", len(head.body), head.header.Get("Content-Length"), head.header.Get("ETag"))
		}
		// Another file: its own type and validator, the same policy.
		res, err := http.Get(e.url + "/app.js")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") || res.Header.Get("ETag") == etag || res.Header.Get("Content-Security-Policy") == "" {
			t.Fatalf("app.js: %v", res.Header)
		}
	})

	t.Run("the client obeys its CSP", func(t *testing.T) {
		for _, p := range []string{"index.html"} {
			html, err := fs.ReadFile(web.FS, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, tag := range regexp.MustCompile(`(?is)<script\b[^>]*>`).FindAll(html, -1) {
				if !regexp.MustCompile(`(?i)\ssrc=`).Match(tag) {
					t.Errorf("%s has an inline script %q, which the CSP blocks", p, tag)
				}
			}
			for _, bad := range []*regexp.Regexp{
				regexp.MustCompile(`(?is)<script\b[^>]*>\s*[^<\s]`), // script text
				regexp.MustCompile(`(?i)<style\b`),
				regexp.MustCompile(`(?i)\sstyle\s*=`),
				regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
				regexp.MustCompile(`(?i)javascript:`),
			} {
				if m := bad.Find(html); m != nil {
					t.Errorf("%s has %q, which the CSP blocks", p, m)
				}
			}
		}
	})

	t.Run("probes", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz"} {
			eventually(t, 10*time.Second, "HEAD "+path, func() bool { return e.do("HEAD", path, "", nil).status == http.StatusOK })
			if r := e.do("HEAD", path, "", nil); len(r.body) != 0 {
				t.Fatalf("HEAD %s has a body", path)
			}
		}
	})

	t.Run("API responses", func(t *testing.T) {
		g := e.group(alice, bob)
		for _, r := range []resp{
			e.must(http.StatusOK, "GET", "/v1/me", alice.Token, nil),
			e.must(http.StatusOK, "GET", "/v1/users?q=a", alice.Token, nil),
			e.must(http.StatusOK, "GET", "/v1/conversations", alice.Token, nil),
			e.must(http.StatusOK, "GET", "/v1/conversations/"+g.ID, alice.Token, nil),
			e.must(http.StatusCreated, "POST", "/v1/conversations/"+g.ID+"/messages", alice.Token, map[string]string{"body": "x"}),
			e.must(http.StatusOK, "GET", "/v1/conversations/"+g.ID+"/messages", alice.Token, nil),
			e.must(http.StatusNoContent, "POST", "/v1/conversations/"+g.ID+"/typing", alice.Token, map[string]bool{"typing": true}),
			e.must(http.StatusNoContent, "DELETE", "/v1/conversations/"+g.ID+"/members/"+bob.ID, alice.Token, nil),
			e.must(http.StatusOK, "GET", "/v1/sessions", alice.Token, nil),
			e.must(http.StatusNoContent, "POST", "/v1/auth/logout", "", map[string]string{"refresh_token": alice.RefreshToken}),
			e.do("GET", "/v1/me", "", nil),
		} {
			if r.header.Get("Cache-Control") != "no-store" || r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("a %d response: Cache-Control %q, X-Content-Type-Options %q, Referrer-Policy %q", r.status,
					r.header.Get("Cache-Control"), r.header.Get("X-Content-Type-Options"), r.header.Get("Referrer-Policy"))
			}
		}
	})
}

// directives parses a CSP header into directive -> its source list.
func directives(csp string) map[string]string {
	out := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		out[name] = strings.TrimSpace(value)
	}
	return out
}
