package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/confab-chat/confab/repository/dbtest"
)

// TestStreamResumesElsewhereAfterSIGTERM: SIGTERM ends a node's streams
// cleanly (each one's body ends; streams served by the writer pool too),
// and a client that reconnects to another node (on SQLite: the node
// started again) from the last id it read gets exactly what it missed:
// every message once, in order, none lost.
func TestStreamResumesElsewhereAfterSIGTERM(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			opts := dbtest.Options(t, dialect)
			args := []string{"-sends-per-second", "0", "-sqlite-path", opts.SQLitePath}
			if opts.URL != "" {
				args = []string{"-sends-per-second", "0", "-database-url", opts.URL}
			}
			first, stop := startServer(t, args...)

			register := func(base, name string) (id, token string) {
				status, body, err := post(base+"/v1/auth/register", "", map[string]string{"username": name, "password": "correct horse"})
				if err != nil || status != http.StatusCreated {
					t.Fatalf("register %s: %d %v %s", name, status, err, body)
				}
				var r struct {
					AccessToken string `json:"access_token"`
					User        struct {
						ID string `json:"id"`
					} `json:"user"`
				}
				json.Unmarshal(body, &r)
				return r.User.ID, r.AccessToken
			}
			_, alice := register(first, "alice")
			bobID, bob := register(first, "bob")
			status, body, _ := post(first+"/v1/conversations", alice, map[string]any{"kind": "group", "member_ids": []string{bobID}, "title": "resume"})
			if status != http.StatusCreated {
				t.Fatalf("create: %d %s", status, body)
			}
			var conv struct {
				ID string `json:"id"`
			}
			json.Unmarshal(body, &conv)
			send := func(base string, i int) {
				status, body, err := post(base+"/v1/conversations/"+conv.ID+"/messages", alice, map[string]string{"body": fmt.Sprint("m", i)})
				if err != nil || status != http.StatusCreated {
					t.Fatalf("send %d: %d %v %s", i, status, err, body)
				}
			}

			// bob reads 10 messages on the first node; SIGTERM ends his stream.
			stream := openTestStream(t, first, bob, "")
			for i := 1; i <= 10; i++ {
				send(first, i)
			}
			var seqs []int64
			last := ""
			for len(seqs) < 10 {
				id, seq, err := stream.nextMessage()
				if err != nil {
					t.Fatalf("message %d: %v", len(seqs)+1, err)
				}
				seqs, last = append(seqs, seq), id
			}
			second := first
			if opts.URL != "" {
				second, _ = startServer(t, args...) // another node of the cluster
			}
			if err := stop(); err != nil {
				t.Fatalf("serve returned %v", err)
			}
			if _, _, err := stream.nextMessage(); err != io.EOF {
				t.Fatalf("after SIGTERM the stream ended with %v, want its end (EOF)", err)
			}
			if opts.URL == "" {
				second, _ = startServer(t, args...) // the node again, on its file
			}

			// What bob missed while away, then his resume from his last id.
			for i := 11; i <= 20; i++ {
				send(second, i)
			}
			again := openTestStream(t, second, bob, last)
			for len(seqs) < 20 {
				_, seq, err := again.nextMessage()
				if err != nil {
					t.Fatalf("message %d after the resume: %v", len(seqs)+1, err)
				}
				seqs = append(seqs, seq)
			}
			for i, seq := range seqs {
				if seq != int64(i+1) {
					t.Fatalf("seqs %v: want 1..20, each once", seqs)
				}
			}
		})
	}
}

// testStream reads message.created events of a stream.
type testStream struct {
	r *bufio.Reader
}

func openTestStream(t *testing.T, base, token, lastID string) *testStream {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v", err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return &testStream{r: bufio.NewReader(res.Body)}
}

// nextMessage returns the id and seq of the next message.created event,
// or the error that ended the stream (io.EOF: it ended cleanly).
func (s *testStream) nextMessage() (id string, seq int64, err error) {
	var typ string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "", 0, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			typ = line[7:]
		case strings.HasPrefix(line, "data: ") && typ == "message.created":
			var m struct {
				Message struct {
					Seq int64 `json:"seq"`
				} `json:"message"`
			}
			if err := json.Unmarshal([]byte(line[6:]), &m); err != nil {
				return "", 0, err
			}
			return id, m.Message.Seq, nil
		case line == "":
			typ = ""
		}
	}
}
