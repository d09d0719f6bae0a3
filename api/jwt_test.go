package api_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/golang-jwt/jwt/v5"
)

// TestAccessTokens presents every kind of bad access token: each is a 401
// unauthorized problem, never a 5xx, and never lets the request through.
func TestAccessTokens(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		e := newEnv(t, store, cfg)
		alice := e.register("alice")
		g := e.group(alice)

		now := time.Now()
		claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
			c := jwt.MapClaims{
				"sub": alice.ID,
				"iss": cfg.Issuer,
				"aud": []string{cfg.Audience},
				"iat": now.Unix(),
				"exp": now.Add(time.Minute).Unix(),
			}
			if change != nil {
				change(c)
			}
			return c
		}
		sign := func(m jwt.SigningMethod, key any, c jwt.MapClaims) string {
			s, err := jwt.NewWithClaims(m, c).SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		hs256 := func(change func(jwt.MapClaims)) string {
			return sign(jwt.SigningMethodHS256, cfg.JWTSecret, claims(change))
		}
		b64 := base64.RawURLEncoding.EncodeToString
		// handmade signs header.payload with HMAC-SHA256 and the server's
		// secret whatever the header claims the algorithm is.
		handmade := func(header string, c jwt.MapClaims) string {
			payload, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SigningString()
			if err != nil {
				t.Fatal(err)
			}
			unsigned := b64([]byte(header)) + "." + strings.SplitN(payload, ".", 2)[1]
			mac := hmac.New(sha256.New, cfg.JWTSecret)
			mac.Write([]byte(unsigned))
			return unsigned + "." + b64(mac.Sum(nil))
		}

		// at sets iat and exp relative to now.
		at := func(iat, exp time.Duration) func(jwt.MapClaims) {
			return func(c jwt.MapClaims) { c["iat"], c["exp"] = now.Add(iat).Unix(), now.Add(exp).Unix() }
		}

		valid := hs256(nil)
		for _, h := range []string{"Bearer " + valid, "bearer " + valid, "BEARER  " + valid} {
			if r := e.doWith("GET", "/v1/me", http.Header{"Authorization": {h}}, nil, false); r.status != http.StatusOK {
				t.Fatalf("the control token %q: %d %s", h[:8], r.status, r.body)
			}
		}

		tamperedSig := valid[:len(valid)-4] + flip(valid[len(valid)-4:])
		parts := strings.Split(valid, ".")
		otherClaims, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(func(c jwt.MapClaims) { c["sub"] = "someone-else" })).SigningString()
		tamperedPayload := parts[0] + "." + strings.Split(otherClaims, ".")[1] + "." + parts[2]
		none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}

		bad := []struct {
			name   string
			header []string // Authorization values; nil: none sent
			cookie string
			query  string
		}{
			{name: "missing header"},
			{name: "empty header", header: []string{""}},
			{name: "Bearer and nothing", header: []string{"Bearer "}},
			{name: "no scheme", header: []string{valid}},
			{name: "Basic scheme", header: []string{"Basic " + b64([]byte("alice:correct horse"))}},
			{name: "garbage", header: []string{"Bearer garbage"}},
			{name: "three empty parts", header: []string{"Bearer .."}},
			{name: "non-base64 parts", header: []string{"Bearer a!.b!.c!"}},
			{name: "JSON junk in the parts", header: []string{"Bearer " + b64([]byte(`{"alg":`)) + "." + b64([]byte("[]")) + ".x"}},
			{name: "expired", header: []string{"Bearer " + hs256(at(-2*time.Hour, -time.Hour))}},
			{name: "just expired, past the leeway", header: []string{"Bearer " + hs256(at(-time.Minute, -10*time.Second))}},
			{name: "missing exp", header: []string{"Bearer " + hs256(func(c jwt.MapClaims) { delete(c, "exp") })}},
			{name: "exp as a string", header: []string{"Bearer " + hs256(func(c jwt.MapClaims) { c["exp"] = "never" })}},
			{name: "iat in the future", header: []string{"Bearer " + hs256(at(time.Hour, 2*time.Hour))}},
			{name: "nbf in the future", header: []string{"Bearer " + hs256(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })}},
			{name: "wrong audience", header: []string{"Bearer " + hs256(func(c jwt.MapClaims) { c["aud"] = []string{"someone-else"} })}},
			{name: "missing audience", header: []string{"Bearer " + hs256(func(c jwt.MapClaims) { delete(c, "aud") })}},
			{name: "wrong issuer", header: []string{"Bearer " + hs256(func(c jwt.MapClaims) { c["iss"] = "evil" })}},
			{name: "missing issuer", header: []string{"Bearer " + hs256(func(c jwt.MapClaims) { delete(c, "iss") })}},
			{name: "missing subject", header: []string{"Bearer " + hs256(func(c jwt.MapClaims) { delete(c, "sub") })}},
			{name: "tampered signature", header: []string{"Bearer " + tamperedSig}},
			{name: "tampered payload", header: []string{"Bearer " + tamperedPayload}},
			{name: "signature stripped", header: []string{"Bearer " + parts[0] + "." + parts[1] + "."}},
			{name: "wrong secret", header: []string{"Bearer " + sign(jwt.SigningMethodHS256, []byte("another-secret-another-secret-another"), claims(nil))}},
			{name: "alg none", header: []string{"Bearer " + none}},
			{name: "alg None, handmade", header: []string{"Bearer " + handmade(`{"alg":"None","typ":"JWT"}`, claims(nil))}},
			{name: "alg missing", header: []string{"Bearer " + handmade(`{"typ":"JWT"}`, claims(nil))}},
			{name: "HS384 with the secret", header: []string{"Bearer " + sign(jwt.SigningMethodHS384, cfg.JWTSecret, claims(nil))}},
			{name: "HS512 with the secret", header: []string{"Bearer " + sign(jwt.SigningMethodHS512, cfg.JWTSecret, claims(nil))}},
			{name: "RS256 with a key pair", header: []string{"Bearer " + sign(jwt.SigningMethodRS256, rsaKey, claims(nil))}},
			{name: "RS256 header, HMAC signature (key confusion)", header: []string{"Bearer " + handmade(`{"alg":"RS256","typ":"JWT"}`, claims(nil))}},
			{name: "refresh token as access token", header: []string{"Bearer " + alice.RefreshToken}},
			{name: "two Authorization headers", header: []string{"Bearer garbage", "Bearer " + valid}},
			{name: "cookie only (no CSRF surface)", cookie: valid},
			{name: "query only", query: "access_token=" + valid},
		}
		before := e.state()
		endpoints := []struct{ method, path, body string }{
			{"GET", "/v1/me", ""},
			{"GET", "/v1/conversations", ""},
			{"GET", "/v1/conversations/" + g.ID + "/messages", ""},
			{"POST", "/v1/conversations/" + g.ID + "/messages", `{"body":"sent with a bad token"}`},
		}
		for _, tc := range bad {
			t.Run(tc.name, func(t *testing.T) {
				for _, ep := range endpoints {
					h := http.Header{}
					if tc.header != nil {
						h["Authorization"] = tc.header
					}
					if tc.cookie != "" {
						h.Set("Cookie", "confab_token="+tc.cookie)
					}
					path := ep.path
					if tc.query != "" {
						path += "?" + tc.query
					}
					var body any
					if ep.body != "" {
						body = ep.body
					}
					r := e.doWith(ep.method, path, h, body, true)
					if r.status >= 500 {
						t.Fatalf("%s %s: %d %s", ep.method, ep.path, r.status, r.body)
					}
					r.wantProblem(t, http.StatusUnauthorized, "unauthorized")
					if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("%s %s: WWW-Authenticate %q", ep.method, ep.path, r.header.Get("WWW-Authenticate"))
					}
				}
			})
		}
		if after := e.state(); after != before {
			t.Fatalf("a request with a bad token changed stored data:\n%s", after)
		}
	})
}

// flip changes every character of s, staying within base64url.
func flip(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}
