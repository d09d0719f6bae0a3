package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// startServer runs `confab serve` in-process with args and returns its base
// URL and a stop function that acts like SIGTERM and returns Run's error.
func startServer(t *testing.T, args ...string) (string, func() error) {
	t.Helper()
	cfg, err := parseConfig(append([]string{"-addr", "127.0.0.1:0", "-shutdown-grace", "5s"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	m := &Main{cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)), ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	select {
	case <-m.ready:
	case err := <-errc:
		cancel()
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve did not start")
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(30 * time.Second):
				runErr = errors.New("serve did not stop")
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return "http://" + m.addr.String(), stop
}

func post(url, token string, body any) (int, []byte, error) {
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	return res.StatusCode, out, err
}

// TestGracefulShutdown: on SIGTERM the server ends streams cleanly, answers
// waiting polls, finishes the writes it accepted, and loses none of them.
func TestGracefulShutdown(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			opts := dbtest.Options(t, dialect)
			args := []string{"-sqlite-path", opts.SQLitePath}
			if opts.URL != "" {
				args = []string{"-database-url", opts.URL}
			}
			base, stop := startServer(t, args...)

			var tok struct {
				AccessToken string `json:"access_token"`
			}
			status, body, err := post(base+"/v1/auth/register", "", map[string]string{"username": "bob", "password": "correct horse"})
			if err != nil || status != http.StatusCreated {
				t.Fatalf("register: %d %v %s", status, err, body)
			}
			json.Unmarshal(body, &tok)
			bobToken := tok.AccessToken
			status, body, _ = post(base+"/v1/conversations", bobToken, map[string]any{"kind": "group", "member_ids": []string{}, "title": "shutdown"})
			if status != http.StatusCreated {
				t.Fatalf("create: %d %s", status, body)
			}
			var conv struct {
				ID string `json:"id"`
			}
			json.Unmarshal(body, &conv)
			convID := conv.ID

			// A stream and a waiting poll.
			req, _ := http.NewRequest("GET", base+"/v1/events", nil)
			req.Header.Set("Authorization", "Bearer "+bobToken)
			stream, err := http.DefaultClient.Do(req)
			if err != nil || stream.StatusCode != http.StatusOK {
				t.Fatalf("stream: %v", err)
			}
			defer stream.Body.Close()
			br := bufio.NewReader(stream.Body)
			if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "retry:") {
				t.Fatalf("stream starts %q", line)
			}
			// The poll waits from the head: after everything so far.
			req, _ = http.NewRequest("GET", base+"/v1/events/poll?timeout=0", nil)
			req.Header.Set("Authorization", "Bearer "+bobToken)
			res, err := http.DefaultClient.Do(req)
			if err != nil || res.StatusCode != http.StatusOK {
				t.Fatalf("first poll: %v", err)
			}
			var head struct {
				Cursor string `json:"cursor"`
			}
			json.NewDecoder(res.Body).Decode(&head)
			res.Body.Close()
			pollDone := make(chan int, 1)
			go func() {
				req, _ := http.NewRequest("GET", base+"/v1/events/poll?timeout=60&cursor="+head.Cursor, nil)
				req.Header.Set("Authorization", "Bearer "+bobToken)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					pollDone <- 0
					return
				}
				res.Body.Close()
				pollDone <- res.StatusCode
			}()

			// Writers keep sending through the shutdown.
			var mu sync.Mutex
			var accepted []string
			var wg sync.WaitGroup
			landed := make(chan struct{}) // closed when 20 writes are in
			var landedOnce sync.Once
			for w := range 4 {
				wg.Go(func() {
					for i := 0; ; i++ {
						status, body, err := post(base+"/v1/conversations/"+convID+"/messages", bobToken, map[string]string{"body": fmt.Sprintf("w%d-%d", w, i)})
						if err != nil {
							return // refused: the server stopped accepting
						}
						if status == http.StatusCreated {
							var m struct {
								ID string `json:"id"`
							}
							json.Unmarshal(body, &m)
							mu.Lock()
							accepted = append(accepted, m.ID)
							if len(accepted) == 20 {
								landedOnce.Do(func() { close(landed) })
							}
							mu.Unlock()
						} else if status != http.StatusServiceUnavailable {
							t.Errorf("send during shutdown: %d %s", status, body)
							return
						}
					}
				})
			}
			// Let some writes land, then SIGTERM.
			select {
			case <-landed:
			case <-time.After(30 * time.Second):
				t.Fatal("no writes landed")
			}
			if err := stop(); err != nil {
				t.Fatalf("serve returned %v", err)
			}
			wg.Wait()

			// The stream ended cleanly (EOF, not a reset), the poll was answered.
			if _, err := io.Copy(io.Discard, br); err != nil {
				t.Errorf("stream did not end cleanly: %v", err)
			}
			if status := <-pollDone; status != http.StatusOK {
				t.Errorf("waiting poll got %d", status)
			}
			// Every accepted write is stored.
			store := dbtest.OpenWith(t, repository.Options{URL: opts.URL, SQLitePath: opts.SQLitePath})
			var total int64
			if err := store.DB().NewSelect().TableExpr("messages").ColumnExpr("count(*)").Where("conversation_id = ?", convID).Scan(context.Background(), &total); err != nil {
				t.Fatal(err)
			}
			for _, id := range accepted {
				var n int
				if err := store.DB().NewSelect().TableExpr("messages").ColumnExpr("count(*)").Where("id = ?", id).Scan(context.Background(), &n); err != nil || n != 1 {
					t.Fatalf("accepted message %s not stored (%v)", id, err)
				}
			}
			t.Logf("%d writes accepted, %d stored", len(accepted), total)
		})
	}
}
