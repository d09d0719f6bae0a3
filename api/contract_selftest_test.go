package api_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestContractDocument checks openapi.yaml itself: it is a valid OpenAPI 3.1
// document, it has exactly the operations of the HTTP contract, binds to no host, and
// every operation declares the error statuses that apply to it.
func TestContractDocument(t *testing.T) {
	doc, _, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range doc.Servers {
		if s.URL != "/" {
			t.Errorf("servers: %q; tests run on random ports, so declare none (or %q)", s.URL, "/")
		}
	}

	want := []string{
		"POST /v1/auth/register", "POST /v1/auth/login", "POST /v1/auth/refresh", "POST /v1/auth/logout",
		"GET /v1/me", "GET /v1/users",
		"POST /v1/conversations", "GET /v1/conversations", "GET /v1/conversations/{id}",
		"POST /v1/conversations/{id}/members", "DELETE /v1/conversations/{id}/members/{user_id}",
		"POST /v1/conversations/{id}/messages", "GET /v1/conversations/{id}/messages",
		"POST /v1/conversations/{id}/typing", "POST /v1/conversations/{id}/read",
		"GET /v1/events", "GET /v1/events/poll", "GET /v1/sessions",
		"GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.yaml", "GET /",
		"HEAD /healthz", "HEAD /readyz", "HEAD /",
	}
	var got []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			got = append(got, name)

			secured := len(doc.Security) > 0
			if op.Security != nil {
				secured = len(*op.Security) > 0
			}
			var need []int
			if op.RequestBody != nil {
				need = append(need, 400, 413, 415)
			}
			if strings.HasPrefix(path, "/v1/auth/") {
				need = append(need, 403) // cross-site requests
			}
			if secured {
				need = append(need, 401)
			}
			if strings.HasPrefix(path, "/v1/conversations/{id}") {
				need = append(need, 404)
			}
			for _, status := range need {
				if op.Responses.Status(status) == nil {
					t.Errorf("%s: no %d response", name, status)
				}
			}
			for code, ref := range op.Responses.Map() {
				status, err := strconv.Atoi(code)
				if err != nil {
					t.Errorf("%s: response %q: give explicit statuses, not ranges or default", name, code)
					continue
				}
				// A HEAD response has no body to describe.
				if status >= 400 && method != http.MethodHead && (ref.Value == nil || ref.Value.Content.Get("application/problem+json") == nil) {
					t.Errorf("%s: %d response is not application/problem+json", name, status)
				}
			}
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("operations:\n got %q\nwant %q", got, want)
	}
}

// contractRecordingTB captures Errorf calls, so that a test can check what the
// contract transport reports.
type contractRecordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *contractRecordingTB) Helper() {}

func (r *contractRecordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *contractRecordingTB) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

const (
	contractStubUser    = `{"id":"u1","username":"alice","display_name":"Alice","created_at":"2025-05-01T12:00:00Z"}`
	contractStubMessage = `{"id":"m1","conversation_id":"c1","sender_id":"u1","seq":1,"body":"hi","client_msg_id":null,"created_at":"2025-05-01T12:00:01.123456Z"}`
	contractStubConv    = `{"id":"c1","kind":"direct","title":null,"created_at":"2025-05-01T12:00:00Z",` +
		`"members":[{"user_id":"u1","username":"alice","display_name":"Alice","joined_at":"2025-05-01T12:00:00Z"}],` +
		`"last_message":` + contractStubMessage + `,"unread_count":0}`
)

// contractStub is a stand-in for the server with answers right and wrong.
func contractStub(skipHeaderSeen *bool, mu *sync.Mutex) http.Handler {
	writeJSON := func(w http.ResponseWriter, ctype string, status int, body string) {
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
	problem := func(w http.ResponseWriter, status int, code string) {
		writeJSON(w, "application/problem+json", status,
			fmt.Sprintf(`{"type":"about:blank","title":%q,"status":%d,"code":%q}`, http.StatusText(status), status, code))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(contractSkipRequestHeader) != "" {
			mu.Lock()
			*skipHeaderSeen = true
			mu.Unlock()
		}
		switch r.Method + " " + r.URL.Path {
		case "GET /healthz":
			writeJSON(w, "application/json", 200, `{"status":"ok"}`)
		case "GET /v1/conversations/good":
			writeJSON(w, "application/json; charset=utf-8", 200, contractStubConv)
		case "GET /v1/conversations/bad":
			writeJSON(w, "application/json", 200, `{"id":"c1","kind":"direct"}`)
		case "GET /v1/conversations/localtime":
			writeJSON(w, "application/json", 200, strings.ReplaceAll(contractStubConv, "12:00:00Z", "14:00:00+02:00"))
		case "GET /v1/events/poll":
			ev := `{"position":"7-5","type":"message.created","data":{"message":` + contractStubMessage + `}}`
			if r.URL.Query().Get("cursor") == "7-99" {
				ev = `{"position":"7-5","type":"message.deleted","data":{}}`
			}
			writeJSON(w, "application/json", 200, `{"events":[`+ev+`],"cursor":"7-5","typing":[],"reset":false,"session_id":"s1"}`)
		case "POST /v1/auth/register":
			var body strings.Builder
			io.Copy(&body, r.Body)
			if strings.Contains(body.String(), `"alice"`) {
				w.Header().Set("Set-Cookie", "confab_token=x; Path=/v1/events; HttpOnly; SameSite=Strict")
				writeJSON(w, "application/json", 201, `{"user":`+contractStubUser+`,"access_token":"a","refresh_token":"r","expires_in":900}`)
				return
			}
			problem(w, 400, "invalid_field")
		case "GET /v1/me":
			w.WriteHeader(http.StatusTeapot)
		case "GET /v1/events":
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			if r.URL.Query().Get("last_event_id") != "1" {
				w.Header().Set("X-Accel-Buffering", "no")
			}
			w.WriteHeader(200)
			io.WriteString(w, "retry: 3000\n\nevent: ready\ndata: {\"cursor\":\"0-0\",\"session_id\":\"s1\"}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done() // a stream never ends by itself
		case "GET /":
			w.Header().Set("ETag", `"abc123"`)
			w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
			writeJSON(w, "text/html; charset=utf-8", 200, "<!doctype html><title>confab</title>")
		case "GET /metrics":
			writeJSON(w, "text/plain; version=0.0.4; charset=utf-8; escaping=underscores", 200, "up 1\n")
		case "POST /v1/conversations/c1/typing":
			if r.URL.Query().Get("stub") != "no-retry-after" {
				w.Header().Set("Retry-After", "2")
			}
			problem(w, 429, "rate_limited")
		case "GET /v1/conversations/c1/messages":
			problem(w, 400, "not_found") // the wrong code for a 400
		case "GET /undocumented":
			writeJSON(w, "application/json", 200, `{}`)
		default:
			problem(w, 404, "not_found")
		}
	})
}

// TestContractTransport checks that the contract transport accepts what
// conforms to openapi.yaml and reports what does not.
func TestContractTransport(t *testing.T) {
	var (
		mu             sync.Mutex
		skipHeaderSeen bool
	)
	srv := httptest.NewServer(contractStub(&skipHeaderSeen, &mu))
	defer srv.Close()

	tests := []struct {
		name, method, path, body string
		skipRequest              bool
		wantErr                  string // a substring of the report; "" for none
	}{
		{name: "conforming healthz", method: "GET", path: "/healthz"},
		{name: "conforming conversation", method: "GET", path: "/v1/conversations/good"},
		{name: "conversation missing members", method: "GET", path: "/v1/conversations/bad", wantErr: "GET /v1/conversations/bad -> 200 does not match"},
		{name: "times not in UTC", method: "GET", path: "/v1/conversations/localtime", wantErr: "does not match"},
		{name: "conforming poll", method: "GET", path: "/v1/events/poll?cursor=7-4&timeout=0"},
		{name: "unknown event type", method: "GET", path: "/v1/events/poll?cursor=7-99", wantErr: "does not match"},
		{name: "poll timeout out of range", method: "GET", path: "/v1/events/poll?timeout=61", wantErr: "request GET /v1/events/poll?timeout=61 does not match"},
		{name: "conforming register", method: "POST", path: "/v1/auth/register", body: `{"username":"alice","password":"correct horse"}`},
		{name: "invalid register", method: "POST", path: "/v1/auth/register", body: `{"username":"A","password":"x"}`, wantErr: "request POST /v1/auth/register does not match"},
		{name: "invalid register, skipped", method: "POST", path: "/v1/auth/register", body: `{"username":"A","password":"x"}`, skipRequest: true},
		{name: "undeclared status", method: "GET", path: "/v1/me", wantErr: "status is not supported"},
		{name: "unknown path, 404 problem", method: "GET", path: "/nope"},
		{name: "wrong method, 404 problem", method: "DELETE", path: "/healthz"},
		{name: "undocumented endpoint", method: "GET", path: "/undocumented", wantErr: "not an operation of openapi.yaml"},
		{name: "web client", method: "GET", path: "/"},
		{name: "prometheus metrics", method: "GET", path: "/metrics"},
		{name: "rate limited", method: "POST", path: "/v1/conversations/c1/typing", body: `{"typing":true}`},
		{name: "rate limited without Retry-After", method: "POST", path: "/v1/conversations/c1/typing?stub=no-retry-after", body: `{"typing":true}`, skipRequest: true, wantErr: `"Retry-After" missing`},
		{name: "problem with a code of another status", method: "GET", path: "/v1/conversations/c1/messages?limit=0", skipRequest: true, wantErr: "value must be one of 'invalid_json'"},
		{name: "conforming stream", method: "GET", path: "/v1/events?last_event_id=0"},
		{name: "stream missing header", method: "GET", path: "/v1/events?last_event_id=1", wantErr: "X-Accel-Buffering"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &contractRecordingTB{TB: t}
			client := &http.Client{Transport: newContractTransport(rec)}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer token")
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tt.skipRequest {
				req.Header.Set(contractSkipRequestHeader, "1")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(tt.path, "/v1/events?") {
				// The body is still readable after validation.
				data, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusTeapot && len(data) == 0 {
					t.Errorf("response body was not restored")
				}
			}
			resp.Body.Close()

			errs := rec.errors()
			switch {
			case tt.wantErr == "" && len(errs) > 0:
				t.Errorf("unexpected reports:\n%s", strings.Join(errs, "\n"))
			case tt.wantErr != "" && len(errs) == 0:
				t.Errorf("no report, want one containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(strings.Join(errs, "\n"), tt.wantErr):
				t.Errorf("reports:\n%s\nwant one containing %q", strings.Join(errs, "\n"), tt.wantErr)
			}
		})
	}

	mu.Lock()
	defer mu.Unlock()
	if skipHeaderSeen {
		t.Errorf("%s reached the server; the transport must strip it", contractSkipRequestHeader)
	}
}
