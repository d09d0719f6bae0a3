package web_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The browser tests run the real binary, as a user would: TestMain builds
// `confab` once, and every test starts its own `confab serve` process on
// 127.0.0.1 with its own SQLite file, so a test can also kill it and start
// it again on the same port and database.

var (
	confabBin  string // the binary TestMain built; empty: no browser, no build
	chromePath string // the browser; empty: not found (see browserPath)
	buildErr   error
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	chromePath = browserPath()
	if chromePath == "" || testing.Short() {
		if chromePath == "" {
			fmt.Fprintln(os.Stderr, "\n*** web: no Chromium found (set CONFAB_CHROMIUM or install chromium): the browser tests are SKIPPED ***")
		}
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "confab-e2e-")
	if err != nil {
		buildErr = err
		return m.Run()
	}
	defer os.RemoveAll(dir)
	confabBin = filepath.Join(dir, "confab")
	cmd := exec.Command("go", "build", "-o", confabBin, "./cmd/confab")
	cmd.Dir = ".." // the module root
	if out, err := cmd.CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("go build ./cmd/confab: %v\n%s", err, out)
	}
	return m.Run()
}

// browserPath finds Chromium: CONFAB_CHROMIUM, else Debian's chromium.
func browserPath() string {
	if p := os.Getenv("CONFAB_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// noBrowser ends a test that cannot get a browser: a failure in CI, where
// .ci/run installs Chromium, and a loud skip elsewhere.
func noBrowser(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and the browser test cannot run: %v", err)
	}
	t.Skipf("*** SKIPPING the browser test: %v ***", err)
}

// e2e starts a browser test: skipped under -short, failed or skipped (see
// noBrowser) without a browser, and otherwise run in parallel with the others.
func e2e(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	switch {
	case chromePath == "":
		noBrowser(t, errors.New("no Chromium found (set CONFAB_CHROMIUM or install chromium)"))
	case buildErr != nil:
		t.Fatal(buildErr)
	}
	t.Parallel()
}

// syncBuffer is a bytes.Buffer that a process and a test can share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// server is one `confab serve` process; restart keeps its port and database.
type server struct {
	t    *testing.T
	Addr string // 127.0.0.1:port
	URL  string // http://127.0.0.1:port
	args []string
	log  syncBuffer // JSON log lines of every run
	cmd  *exec.Cmd
	done chan struct{}
}

// startServer runs `confab serve` on a free port with a fresh SQLite file.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &server{t: t, Addr: addr, URL: "http://" + addr}
	s.args = append([]string{"serve", "-addr", addr, "-sqlite-path", filepath.Join(t.TempDir(), "confab.db"),
		"-log-format", "json", "-log-level", "info", "-shutdown-grace", "2s"}, extra...)
	s.start()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("server log:\n%s", tail(s.log.String(), 6000))
		}
	})
	return s
}

// start runs the process and waits until /healthz answers.
func (s *server) start() {
	s.t.Helper()
	cmd := exec.Command(confabBin, s.args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONFAB_") { // the flags alone configure it
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = &s.log, &s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(s.done) //nolint:errcheck // a killed server exits non-zero
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(s.URL + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.done:
			s.t.Fatalf("confab serve exited: %v\n%s", cmd.ProcessState, tail(s.log.String(), 4000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("confab serve did not answer /healthz within 20 s: %v\n%s", err, tail(s.log.String(), 4000))
		}
	}
}

// kill ends the process at once (SIGKILL: a crash, nothing flushed) and
// waits for it to exit.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL) //nolint:errcheck // may have exited
	<-s.done
	s.cmd = nil
}

// user is an account, with an access token of its own for REST calls.
type user struct {
	ID, Username, Password, DisplayName, Token string
}

type message struct {
	ID             string `json:"id"`
	ConversationID string `json:"conversation_id"`
	SenderID       string `json:"sender_id"`
	Body           string `json:"body"`
	ClientMsgID    string `json:"client_msg_id"`
	Seq            int64  `json:"seq"`
}

type conversation struct {
	ID          string   `json:"id"`
	Kind        string   `json:"kind"`
	Title       string   `json:"title"`
	UnreadCount int      `json:"unread_count"`
	LastMessage *message `json:"last_message"`
}

type session struct {
	ID        string `json:"id"`
	Transport string `json:"transport"`
	UserAgent string `json:"user_agent"`
}

// call makes a REST request and decodes the JSON answer into out (if not
// nil); anything but 2xx fails the test.
func (s *server) call(t *testing.T, method, path, token string, body, out any) {
	t.Helper()
	if err := s.request(method, path, token, body, out); err != nil {
		t.Fatal(err)
	}
}

// request is call for goroutines: it returns the error.
func (s *server) request(method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := http.Client{Timeout: 15 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, path, res.Status, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: %w in %s", method, path, err, data)
		}
	}
	return nil
}

// register creates an account through the API.
func (s *server) register(t *testing.T, username, displayName string) *user {
	t.Helper()
	u := &user{Username: username, Password: "pw-" + username + "-secret", DisplayName: displayName}
	var res struct {
		User        struct{ ID string } `json:"user"`
		AccessToken string              `json:"access_token"`
	}
	s.call(t, "POST", "/v1/auth/register", "", map[string]string{"username": username, "password": u.Password, "display_name": displayName}, &res)
	u.ID, u.Token = res.User.ID, res.AccessToken
	return u
}

// direct opens (or finds) the direct conversation of a and b.
func (s *server) direct(t *testing.T, a, b *user) string {
	t.Helper()
	var c conversation
	s.call(t, "POST", "/v1/conversations", a.Token, map[string]any{"kind": "direct", "member_ids": []string{b.ID}}, &c)
	return c.ID
}

// send posts a message as u.
func (s *server) send(t *testing.T, u *user, convID, body string) message {
	t.Helper()
	var m message
	s.call(t, "POST", "/v1/conversations/"+convID+"/messages", u.Token, map[string]string{"body": body}, &m)
	return m
}

// sessions lists u's live sessions.
func (s *server) sessions(t *testing.T, u *user) []session {
	t.Helper()
	var res struct{ Sessions []session }
	s.call(t, "GET", "/v1/sessions", u.Token, nil, &res)
	return res.Sessions
}

// positionOf finds the position of the message.created event of messageID
// in u's stream, reading it from the start with the long-poll endpoint. It
// reads a position as the opaque string it is, from the `position` field of
// the event log or the integer `seq` before it.
func (s *server) positionOf(t *testing.T, u *user, messageID string) string {
	t.Helper()
	cursor := "0-0" // the start of the log
	for {
		var res struct {
			Events []struct {
				Position string
				Seq      json.Number
				Type     string
				Data     struct{ Message message }
			}
			Cursor json.RawMessage
		}
		s.call(t, "GET", "/v1/events/poll?timeout=0&cursor="+url.QueryEscape(cursor), u.Token, nil, &res)
		if len(res.Events) == 0 {
			t.Fatalf("%s's stream has no message.created for %s", u.Username, messageID)
		}
		for _, ev := range res.Events {
			if ev.Type == "message.created" && ev.Data.Message.ID == messageID {
				if ev.Position != "" {
					return ev.Position
				}
				return ev.Seq.String()
			}
		}
		cursor = strings.Trim(string(res.Cursor), `"`)
	}
}
