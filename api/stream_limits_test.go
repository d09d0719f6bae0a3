package api_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
)

// TestStreamsPerUserAreCapped: one account opening stream after stream
// holds at most -max-streams-per-user of them on a node: each one beyond
// ends its oldest. Another user's stream is not touched, and the streams
// left still deliver.
func TestStreamsPerUserAreCapped(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		ec := testEventsConfig(t, store)
		ec.Hub.MaxPerUser = 3
		e := newEnvWith(t, store, testConfig(), ec)
		alice, mallory := e.register("alice"), e.register("mallory")
		g := e.group(alice, mallory)
		aliceStream := e.openStream(alice.Token, streamOpts{})
		aliceCursor := aliceStream.ready()
		var streams []*sseConn
		for range 6 {
			s := e.openStream(mallory.Token, streamOpts{})
			s.ready()
			streams = append(streams, s)
		}
		for i, s := range streams[:3] {
			if !s.ended(5 * time.Second) {
				t.Fatalf("mallory's stream %d still open beyond the cap", i)
			}
		}
		eventually(t, 5*time.Second, "mallory's sessions to shrink to the cap", func() bool { return e.sessionCount(mallory.Token) == 3 })
		if aliceStream.ended(0) {
			t.Fatal("alice's stream ended")
		}
		m := e.send(alice, g.ID, "still here")
		for i, s := range streams[3:] {
			if got := s.messages(1, "0-0"); got[0].ID != m.ID {
				t.Fatalf("stream %d got %+v", i, got)
			}
		}
		if got := aliceStream.messages(1, aliceCursor); got[0].ID != m.ID {
			t.Fatalf("alice got %+v", got)
		}
	})
}

// TestPollWithoutSessionReusesIt: a client that never sends session_id back
// (a shell loop) is one session, not one per poll, and so leaves one row
// in sessions however often it polls.
func TestPollWithoutSessionReusesIt(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		bob := e.register("bob")
		var ids []string
		for range 50 {
			ids = append(ids, e.poll(bob.Token, "").SessionID)
		}
		for i, id := range ids {
			if id != ids[0] {
				t.Fatalf("poll %d: session %s, want %s", i, id, ids[0])
			}
		}
		if n := e.sessionCount(bob.Token); n != 1 {
			t.Fatalf("%d sessions after 50 polls, want 1", n)
		}
	})
}

// TestNewContactsLearnPresence: creating a conversation, or being added to
// one, tells each side which new contacts are online, with no reconnect.
func TestNewContactsLearnPresence(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob, carol := e.register("alice"), e.register("bob"), e.register("carol")
		streams := map[string]*sseConn{}
		for _, u := range []user{alice, bob, carol} {
			streams[u.ID] = e.openStream(u.Token, streamOpts{})
			streams[u.ID].ready()
		}
		online := func(s *sseConn, who user) {
			t.Helper()
			for {
				ev := s.nextOf("presence", 5*time.Second)
				var d struct {
					UserID string `json:"user_id"`
					Online bool   `json:"online"`
				}
				if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
					t.Fatal(err)
				}
				if d.UserID == who.ID && d.Online {
					return
				}
			}
		}
		e.must(http.StatusCreated, "POST", "/v1/conversations", alice.Token, map[string]any{"kind": "direct", "member_ids": []string{bob.ID}})
		online(streams[bob.ID], alice)
		online(streams[alice.ID], bob)
		g := e.group(alice, bob)
		e.must(http.StatusOK, "POST", "/v1/conversations/"+g.ID+"/members", alice.Token, map[string]string{"user_id": carol.ID})
		online(streams[carol.ID], alice)
		online(streams[carol.ID], bob)
		online(streams[alice.ID], carol)
		online(streams[bob.ID], carol)
	})
}

// TestStreamIsCloseDelimited: an HTTP/1.1 stream is not chunked (its body
// ends with the connection), so each flush reaches the client as written.
func TestStreamIsCloseDelimited(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		bob := e.register("bob")
		req, _ := http.NewRequestWithContext(t.Context(), "GET", e.url+"/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+bob.Token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK || len(res.TransferEncoding) != 0 || res.ContentLength != -1 || !res.Close {
			t.Fatalf("status %d, transfer encoding %v, length %d, close %v", res.StatusCode, res.TransferEncoding, res.ContentLength, res.Close)
		}
	})
}
