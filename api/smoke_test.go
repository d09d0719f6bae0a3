package api_test

import (
	"net/http"
	"testing"

	"github.com/confab-chat/confab/repository"
)

func TestWalkthrough(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		var c conversation
		e.must(http.StatusCreated, "POST", "/v1/conversations", alice.Token, map[string]any{"kind": "direct", "member_ids": []string{bob.ID}}).decode(t, &c)
		e.must(http.StatusOK, "POST", "/v1/conversations", bob.Token, map[string]any{"kind": "direct", "member_ids": []string{alice.ID}})
		m := e.send(alice, c.ID, "hello bob")
		if m.Seq != 1 || m.Body != "hello bob" {
			t.Fatalf("message %+v", m)
		}
		var list struct{ Conversations []conversation }
		e.must(http.StatusOK, "GET", "/v1/conversations", bob.Token, nil).decode(t, &list)
		if len(list.Conversations) != 1 || list.Conversations[0].UnreadCount != 1 {
			t.Fatalf("bob's list: %+v", list)
		}
		e.must(http.StatusOK, "GET", "/v1/conversations/"+c.ID+"/messages", bob.Token, nil)
	})
}
