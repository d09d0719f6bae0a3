package api_test

import (
	"net/http"
	"testing"

	"github.com/confab-chat/confab/repository/dbtest"
)

// TestCORS: a configured origin may call the API with a bearer token (the
// preflight answers, responses name the origin); any other origin gets no
// CORS headers, and credentials (cookies) are never allowed cross-origin.
func TestCORS(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.CORSOrigins = []string{"https://app.example"}
	e := newEnv(t, dbtest.Open(t, "sqlite"), cfg)
	alice := e.register("alice")

	send := func(method, path, origin string, h map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, e.url+path, nil)
		req.Header.Set("Origin", origin)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	pre := send("OPTIONS", "/v1/conversations", "https://app.example", map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"})
	if pre.StatusCode != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		pre.Header.Get("Access-Control-Allow-Methods") == "" || pre.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
	res := send("GET", "/v1/me", "https://app.example", map[string]string{"Authorization": "Bearer " + alice.Token})
	if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("allowed origin: %d %v", res.StatusCode, res.Header)
	}
	res = send("GET", "/v1/me", "https://evil.example", map[string]string{"Authorization": "Bearer " + alice.Token})
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("another origin got CORS headers: %v", res.Header)
	}
}
