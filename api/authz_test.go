package api_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/confab-chat/confab/repository"
)

// TestAuthorizationSweep has users who are not members of a conversation (a
// stranger, and a member who left) try every conversation endpoint with its
// ids: each answer is the same 404 problem, carries none of the
// conversation's data, and nothing stored changes.
func TestAuthorizationSweep(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob, carol := e.register("alice"), e.register("bob"), e.register("carol")
		mallory := e.register("mallory")

		title := "secret plans " + randomHex(4)
		var g conversation
		e.must(http.StatusCreated, "POST", "/v1/conversations", alice.Token,
			map[string]any{"kind": "group", "member_ids": []string{bob.ID, carol.ID}, "title": title}).decode(t, &g)
		var d conversation
		e.must(http.StatusCreated, "POST", "/v1/conversations", alice.Token,
			map[string]any{"kind": "direct", "member_ids": []string{bob.ID}}).decode(t, &d)
		clientID := "alice-" + randomHex(4)
		secrets := map[string]*message{}
		for _, c := range []conversation{g, d} {
			var m message
			e.must(http.StatusCreated, "POST", "/v1/conversations/"+c.ID+"/messages", alice.Token,
				map[string]any{"body": "the launch code is " + randomHex(6), "client_msg_id": clientID + c.ID}).decode(t, &m)
			secrets[c.ID] = &m
		}
		// carol was a member of g and left.
		e.must(http.StatusNoContent, "DELETE", "/v1/conversations/"+g.ID+"/members/"+carol.ID, carol.Token, nil)

		// The typing endpoint is swept only if members can use it.
		typing := e.do("POST", "/v1/conversations/"+g.ID+"/typing", bob.Token, map[string]bool{"typing": true}).status != http.StatusNotFound
		if !typing {
			t.Log("POST .../typing is 404 for members too: not swept")
		}

		before := e.state()
		for _, c := range []conversation{g, d} {
			m := secrets[c.ID]
			p := "/v1/conversations/" + c.ID
			try := func(intruder user, method, path string, body any) {
				t.Helper()
				r := e.do(method, path, intruder.Token, body)
				r.wantProblem(t, http.StatusNotFound, "not_found")
				for _, secret := range []string{c.ID, m.ID, m.Body, title, alice.ID, bob.ID, alice.Username, bob.Username} {
					if bytes.Contains(r.body, []byte(secret)) {
						t.Errorf("%s %s answered %s, which gives away %q", method, path, r.body, secret)
					}
				}
			}
			intruders := []user{mallory}
			if c.ID == g.ID {
				intruders = append(intruders, carol)
			}
			for _, in := range intruders {
				try(in, "GET", p, nil)
				try(in, "POST", p+"/members", map[string]string{"user_id": in.ID})
				try(in, "POST", p+"/members", map[string]string{"user_id": alice.ID})
				try(in, "DELETE", p+"/members/"+alice.ID, nil)
				try(in, "DELETE", p+"/members/"+in.ID, nil)
				try(in, "POST", p+"/messages", map[string]string{"body": "let me in"})
				try(in, "POST", p+"/messages", map[string]string{"body": m.Body, "client_msg_id": *m.ClientMsgID})
				try(in, "GET", p+"/messages", nil)
				try(in, "GET", p+"/messages?limit=1", nil)
				try(in, "GET", p+"/messages?before="+m.ID, nil)
				try(in, "POST", p+"/read", map[string]string{"message_id": m.ID})
				if typing {
					try(in, "POST", p+"/typing", map[string]bool{"typing": true})
					try(in, "POST", p+"/typing", map[string]bool{"typing": false})
				}
			}
		}
		if after := e.state(); after != before {
			t.Fatalf("non-members changed stored data:\nbefore:\n%s\nafter:\n%s", before, after)
		}

		// Nor do the conversations show up in a stranger's list or stream.
		var list struct{ Conversations []conversation }
		e.must(http.StatusOK, "GET", "/v1/conversations", mallory.Token, nil).decode(t, &list)
		if len(list.Conversations) != 0 {
			t.Fatalf("mallory lists %+v", list.Conversations)
		}
		if evs := e.stream(mallory); len(evs) != 0 {
			t.Fatalf("mallory's stream holds %d events: %+v", len(evs), evs)
		}
		// carol's list no longer has g, and her stream ends with her leaving.
		e.must(http.StatusOK, "GET", "/v1/conversations", carol.Token, nil).decode(t, &list)
		if len(list.Conversations) != 0 {
			t.Fatalf("carol still lists %+v", list.Conversations)
		}
		evs := e.stream(carol)
		if n := len(evs); n == 0 || evs[n-1].Type != repository.EventMemberLeft {
			t.Fatalf("carol's stream: %+v", evs)
		}
	})
}
