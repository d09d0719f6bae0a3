package api_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/confab-chat/confab/repository"
)

// messageEvents counts, per message id, the message.created events in u's
// stream.
func (e *env) messageEvents(u user) map[string]int {
	e.t.Helper()
	n := map[string]int{}
	for _, ev := range e.stream(u) {
		if ev.Type != repository.EventMessageCreated {
			continue
		}
		var data struct{ Message message }
		if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
			e.t.Fatal(err)
		}
		n[data.Message.ID]++
	}
	return n
}

// TestIdempotentSend posts the same client_msg_id five times at once, in
// several rounds: one 201, four 200 with the same message, and exactly one
// message and one message.created event per member (docs/ARCHITECTURE.md, invariant 4).
func TestIdempotentSend(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob, carol := e.register("alice"), e.register("bob"), e.register("carol")
		g := e.group(alice, bob, carol)
		path := "/v1/conversations/" + g.ID + "/messages"

		const rounds, retries = 10, 5
		for round := range rounds {
			clientID := "c-" + itoa(int64(round))
			body := map[string]string{"body": "hello #" + clientID, "client_msg_id": clientID}
			results := make([]resp, retries)
			var wg sync.WaitGroup
			for i := range results {
				wg.Go(func() { results[i] = e.do("POST", path, alice.Token, body) })
			}
			wg.Wait()
			created, id := 0, ""
			for _, r := range results {
				var m message
				r.decode(t, &m)
				switch r.status {
				case http.StatusCreated:
					created++
				case http.StatusOK:
				default:
					t.Fatalf("round %d: %d %s", round, r.status, r.body)
				}
				if id == "" {
					id = m.ID
				}
				if m.ID != id || m.ClientMsgID == nil || *m.ClientMsgID != clientID {
					t.Fatalf("round %d: answers name different messages: %s and %+v", round, id, m)
				}
			}
			if created != 1 {
				t.Fatalf("round %d: %d answers were 201", round, created)
			}
			// A late retry is a 200 with the same message.
			var late message
			e.must(http.StatusOK, "POST", path, alice.Token, body).decode(t, &late)
			if late.ID != id {
				t.Fatalf("late retry stored %s, first %s", late.ID, id)
			}
		}

		var page struct{ Messages []message }
		e.must(http.StatusOK, "GET", path+"?limit=100", bob.Token, nil).decode(t, &page)
		if len(page.Messages) != rounds {
			t.Fatalf("%d messages stored for %d distinct client_msg_ids", len(page.Messages), rounds)
		}
		for _, u := range []user{alice, bob, carol} {
			events := e.messageEvents(u)
			if len(events) != rounds {
				t.Fatalf("%s has events for %d messages, want %d", u.Username, len(events), rounds)
			}
			for _, m := range page.Messages {
				if events[m.ID] != 1 {
					t.Fatalf("%s has %d message.created events for %s", u.Username, events[m.ID], m.ID)
				}
			}
		}

		// The key is the sender's: another sender may use the same one.
		e.must(http.StatusCreated, "POST", path, bob.Token, map[string]string{"body": "mine", "client_msg_id": "c-0"})
		// The same key for another body or conversation is a conflict.
		e.do("POST", path, alice.Token, map[string]string{"body": "different", "client_msg_id": "c-0"}).
			wantProblem(t, http.StatusConflict, "client_msg_id_conflict")
		other := e.group(alice, bob)
		e.do("POST", "/v1/conversations/"+other.ID+"/messages", alice.Token, map[string]string{"body": "hello #c-0", "client_msg_id": "c-0"}).
			wantProblem(t, http.StatusConflict, "client_msg_id_conflict")
	})
}

// TestIdempotentSendAcrossConversations races one client_msg_id into two
// conversations: one message is stored; retries into its conversation get
// it, the others a conflict.
func TestIdempotentSendAcrossConversations(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		for round := range 5 {
			a, b := e.group(alice, bob), e.group(alice, bob)
			clientID := "x-" + itoa(int64(round))
			convs := []string{a.ID, b.ID, a.ID, b.ID, a.ID, b.ID}
			results := make([]resp, len(convs))
			var wg sync.WaitGroup
			for i, conv := range convs {
				wg.Go(func() {
					results[i] = e.do("POST", "/v1/conversations/"+conv+"/messages", alice.Token, map[string]string{"body": "hi", "client_msg_id": clientID})
				})
			}
			wg.Wait()
			winner := ""
			for i, r := range results {
				if r.status == http.StatusCreated {
					if winner != "" {
						t.Fatalf("round %d: two 201s", round)
					}
					winner = convs[i]
				}
			}
			if winner == "" {
				t.Fatalf("round %d: no 201", round)
			}
			for i, r := range results {
				switch {
				case r.status == http.StatusCreated:
				case convs[i] == winner && r.status == http.StatusOK:
				case convs[i] != winner:
					r.wantProblem(t, http.StatusConflict, "client_msg_id_conflict")
				default:
					t.Fatalf("round %d: %d %s", round, r.status, r.body)
				}
			}
			for _, c := range []string{a.ID, b.ID} {
				var page struct{ Messages []message }
				e.must(http.StatusOK, "GET", "/v1/conversations/"+c+"/messages", bob.Token, nil).decode(t, &page)
				if want := map[bool]int{true: 1, false: 0}[c == winner]; len(page.Messages) != want {
					t.Fatalf("round %d: %d messages in a conversation, want %d", round, len(page.Messages), want)
				}
			}
		}
	})
}
