package api_test

import (
	"net/http"
	"testing"

	"github.com/confab-chat/confab/repository"
)

// TestJSONBodiesOnly: every endpoint that takes a body refuses one not
// declared application/json with 415. Browsers send text/plain, form and
// multipart bodies cross-site without a preflight; a text/plain form
// posting {"username":…,"password":…} must not log the victim's browser in.
func TestJSONBodiesOnly(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		m := e.send(alice, g.ID, "hello")
		conv := "/v1/conversations/" + g.ID
		endpoints := []struct {
			path, token, body string
		}{
			{"/v1/auth/register", "", `{"username":"mallory_` + randomHex(3) + `","password":"correct horse"}`},
			{"/v1/auth/login", "", `{"username":"` + alice.Username + `","password":"` + password + `"}`},
			{"/v1/auth/refresh", "", `{"refresh_token":"` + alice.RefreshToken + `"}`},
			{"/v1/auth/logout", "", `{"refresh_token":"` + alice.RefreshToken + `"}`},
			{"/v1/conversations", alice.Token, `{"kind":"group","member_ids":[]}`},
			{conv + "/members", alice.Token, `{"user_id":"` + bob.ID + `"}`},
			{conv + "/messages", alice.Token, `{"body":"x"}`},
			{conv + "/typing", alice.Token, `{"typing":true}`},
			{conv + "/read", alice.Token, `{"message_id":"` + m.ID + `"}`},
		}
		before := e.state()
		for _, ep := range endpoints {
			for _, ctype := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
				"multipart/form-data; boundary=x", "", "application/json; charset=iso-8859-1", "text/json", "application/jsonx", "application/json;;"} {
				h := http.Header{"Content-Type": {ctype}}
				if ctype == "" {
					h["Content-Type"] = nil // no header at all
				}
				if ep.token != "" {
					h.Set("Authorization", "Bearer "+ep.token)
				}
				r := e.doWith("POST", ep.path, h, ep.body, true)
				r.wantProblem(t, http.StatusUnsupportedMediaType, "unsupported_media_type")
				if len(r.header.Values("Set-Cookie")) != 0 {
					t.Fatalf("POST %s as %q set a cookie", ep.path, ctype)
				}
			}
		}
		if after := e.state(); after != before {
			t.Fatalf("refused requests changed stored data:\n%s", after)
		}
		// JSON with its parameters, in any case, is JSON.
		for _, ctype := range []string{"application/json; charset=utf-8", "Application/JSON", `application/json;charset="UTF-8"`} {
			r := e.doWith("POST", "/v1/auth/login", http.Header{"Content-Type": {ctype}}, `{"username":"`+alice.Username+`","password":"`+password+`"}`, false)
			if r.status != http.StatusOK {
				t.Fatalf("login as %q: %d %s", ctype, r.status, r.body)
			}
		}
	})
}

// TestAuthRefusesCrossSite: a browser request to the auth endpoints from
// another site gets 403 and no cookie, whether the browser says so with
// Sec-Fetch-Site or only with Origin; the site itself, the configured CORS
// origins and clients that send neither header (curl) are served.
func TestAuthRefusesCrossSite(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.CORSOrigins = []string{"https://app.example"}
		e := newEnv(t, store, cfg)
		alice := e.register("alice")
		self := e.url // http://127.0.0.1:port, the Host the server sees
		login := `{"username":"` + alice.Username + `","password":"` + password + `"}`

		refused := []http.Header{
			{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}},
			{"Sec-Fetch-Site": {"same-site"}, "Origin": {"https://evil.127.0.0.1"}},
			{"Sec-Fetch-Site": {"cross-site"}},   // no Origin: still cross-site
			{"Origin": {"https://evil.example"}}, // a browser without Sec-Fetch-Site
			{"Origin": {"null"}},                 // sandboxed frames, data: URLs
			{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://app.example.evil"}},
		}
		before := e.state()
		for _, h := range refused {
			for _, path := range []string{"/v1/auth/login", "/v1/auth/register", "/v1/auth/refresh", "/v1/auth/logout"} {
				body := login
				switch path {
				case "/v1/auth/register":
					body = `{"username":"mallory_` + randomHex(3) + `","password":"correct horse"}`
				case "/v1/auth/refresh", "/v1/auth/logout":
					body = `{"refresh_token":"` + alice.RefreshToken + `"}`
				}
				r := e.doWith("POST", path, h, body, false)
				r.wantProblem(t, http.StatusForbidden, "cross_origin")
				if len(r.header.Values("Set-Cookie")) != 0 {
					t.Fatalf("refused %s with %v set a cookie", path, h)
				}
			}
		}
		if after := e.state(); after != before {
			t.Fatalf("refused requests changed stored data:\n%s", after)
		}

		for _, h := range []http.Header{
			{"Sec-Fetch-Site": {"same-origin"}, "Origin": {self}},
			{"Origin": {self}},
			{"Sec-Fetch-Site": {"none"}},
			{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://app.example"}}, // a configured CORS origin
			{}, // curl
		} {
			r := e.doWith("POST", "/v1/auth/login", h, login, false)
			if r.status != http.StatusOK {
				t.Fatalf("login with %v: %d %s", h, r.status, r.body)
			}
			tokenCookie(t, r)
		}
		h := http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {self}}
		if r := e.doWith("POST", "/v1/auth/register", h, `{"username":"carol_`+randomHex(3)+`","password":"correct horse"}`, false); r.status != http.StatusCreated {
			t.Fatalf("same-origin register: %d %s", r.status, r.body)
		}
		// The rest of the API takes bearer tokens only, so no check there.
		h = http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://app.example"}, "Authorization": {"Bearer " + alice.Token}}
		if r := e.doWith("POST", "/v1/conversations", h, `{"kind":"group","member_ids":[]}`, false); r.status != http.StatusCreated {
			t.Fatalf("cross-origin API call with a bearer token: %d %s", r.status, r.body)
		}
	})
}
