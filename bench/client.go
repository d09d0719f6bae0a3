package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/confab-chat/confab/repository"
)

// client speaks confab's HTTP API (and the reference's subset of it).
type client struct {
	base string
	hc   *http.Client
}

func newClient(base string) *client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 1 << 16,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &client{base: strings.TrimRight(base, "/"), hc: &http.Client{Transport: tr}}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// statusError is a non-2xx answer.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.body) }

// errKind names an error for the "errors by kind" count.
func errKind(err error) string {
	var se *statusError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return "http_" + strconv.Itoa(se.status)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &ne):
		return "net"
	}
	return "other"
}

// do sends a JSON request and decodes a 2xx JSON answer into out.
func (c *client) do(ctx context.Context, method, path, token string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return &statusError{status: res.StatusCode, body: strings.TrimSpace(string(data[:min(len(data), 300)]))}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

type tokensJSON struct {
	User struct {
		ID string `json:"id"`
	} `json:"user"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
}

func (t tokensJSON) account(username string) account {
	return account{ID: t.User.ID, Username: username, Access: t.AccessToken, Refresh: t.RefreshToken,
		Expires: time.Now().Add(time.Duration(t.ExpiresIn) * time.Second)}
}

func (c *client) register(ctx context.Context, username, password string) (account, error) {
	var t tokensJSON
	err := c.do(ctx, "POST", "/v1/auth/register", "", map[string]string{"username": username, "password": password}, &t)
	return t.account(username), err
}

func (c *client) refresh(ctx context.Context, a account) (account, error) {
	var t tokensJSON
	err := c.do(ctx, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": a.Refresh}, &t)
	return t.account(a.Username), err
}

// createGroup makes owner and others a group conversation.
func (c *client) createGroup(ctx context.Context, owner account, others []string) (string, error) {
	var conv struct {
		ID string `json:"id"`
	}
	in := map[string]any{"kind": "group", "member_ids": others, "title": "bench"}
	err := c.do(ctx, "POST", "/v1/conversations", owner.Access, in, &conv)
	return conv.ID, err
}

// head returns the log's head: a poll without a cursor answers at once
// with it.
func (c *client) head(ctx context.Context, token string) (repository.Position, error) {
	var p pollJSON
	if err := c.do(ctx, "GET", "/v1/events/poll", token, nil, &p); err != nil {
		return repository.Position{}, err
	}
	return repository.ParsePosition(p.Cursor)
}

type pollJSON struct {
	Events    []pollEvent `json:"events"`
	Cursor    string      `json:"cursor"`
	Reset     bool        `json:"reset"`
	SessionID string      `json:"session_id"`
}

type pollEvent struct {
	Position string          `json:"position"`
	Type     string          `json:"type"`
	Data     json.RawMessage `json:"data"`
}

// poll waits up to timeout for events after cursor.
func (c *client) poll(ctx context.Context, token, cursor string, timeout int, session string) (*pollJSON, error) {
	q := url.Values{"cursor": {cursor}, "timeout": {strconv.Itoa(timeout)}}
	if session != "" {
		q.Set("session_id", session)
	}
	p := new(pollJSON)
	err := c.do(ctx, "GET", "/v1/events/poll?"+q.Encode(), token, nil, p)
	return p, err
}

// lastSeq returns the seq of the last message of conversation id (0 when
// it has none), as a member whose token is given reads it.
func (c *client) lastSeq(ctx context.Context, token, id string) (int64, error) {
	var page struct {
		Messages []struct {
			Seq int64 `json:"seq"`
		} `json:"messages"`
	}
	if err := c.do(ctx, "GET", "/v1/conversations/"+url.PathEscape(id)+"/messages?limit=1", token, nil, &page); err != nil {
		return 0, err
	}
	if len(page.Messages) == 0 {
		return 0, nil
	}
	return page.Messages[len(page.Messages)-1].Seq, nil
}

// serverStats reads the server's RSS (bytes) and CPU seconds from /metrics.
func (c *client) serverStats(ctx context.Context) (rss, cpu float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, 0, &statusError{status: res.StatusCode}
	}
	found := 0
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			rss, err = strconv.ParseFloat(val, 64)
			found++
		case "process_cpu_seconds_total":
			cpu, err = strconv.ParseFloat(val, 64)
			found++
		}
		if err != nil {
			return 0, 0, err
		}
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("bench: %s/metrics has no process_resident_memory_bytes or process_cpu_seconds_total", c.base)
	}
	return rss, cpu, sc.Err()
}
