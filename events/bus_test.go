package events

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/confab-chat/confab/repository"
	"github.com/google/uuid"
)

// TestDoorbellRoundTrip: a doorbell is one small payload whatever the
// write, and another node reads back the position it rings up to; one it
// cannot read still rings (for a read from the tail).
func TestDoorbellRoundTrip(t *testing.T) {
	for _, p := range []repository.Position{{}, {XID: 0, ID: 42}, {XID: 123456789, ID: 987654321}, {XID: 1<<63 - 1, ID: 1<<63 - 1}} {
		payload := encodeDoorbell("node-1", p)
		if len(payload) > maxPayload {
			t.Fatalf("payload of %d bytes", len(payload))
		}
		var got []repository.Position
		l := &listener{node: "other", metrics: NewMetrics(nil), onDoorbell: func(p repository.Position) { got = append(got, p) }}
		l.handle(payload)
		if !slices.Equal(got, []repository.Position{p}) {
			t.Fatalf("%v rang as %v", p, got)
		}
	}
	var got []repository.Position
	l := &listener{node: "other", metrics: NewMetrics(nil), onDoorbell: func(p repository.Position) { got = append(got, p) }}
	l.handle("d|node-1|17")
	l.handle("d|node-1|not-a-position")
	if !slices.Equal(got, []repository.Position{{}, {}}) {
		t.Fatalf("unreadable doorbells rang as %v, want the zero position twice", got)
	}
}

func TestListenerSkipsOwnNode(t *testing.T) {
	called := false
	l := &listener{node: "me", metrics: NewMetrics(nil), onDoorbell: func(repository.Position) { called = true }}
	l.handle(encodeDoorbell("me", repository.Position{XID: 1, ID: 2}))
	l.handle("garbage")
	l.handle("d|")
	if called {
		t.Fatal("a node handled its own doorbell")
	}
}

func TestEphemeralSplitsRecipients(t *testing.T) {
	var to []string
	for range 1000 {
		to = append(to, uuid.NewString())
	}
	data := json.RawMessage(`{"conversation_id":"c","user_id":"u","typing":true,"expires_at":"2026-01-01T00:00:00Z"}`)
	payloads := encodeEphemeral("n", TypeTyping, data, to)
	var got []string
	for _, p := range payloads {
		if len(p) > maxPayload {
			t.Fatalf("payload of %d bytes", len(p))
		}
		var m ephemeralMsg
		if err := json.Unmarshal([]byte(p[len("e|n|"):]), &m); err != nil {
			t.Fatal(err)
		}
		if m.Type != TypeTyping || string(m.Data) != string(data) {
			t.Fatalf("payload %s", p)
		}
		got = append(got, m.To...)
	}
	if !slices.Equal(got, to) {
		t.Fatalf("recipients differ: %d of %d", len(got), len(to))
	}
	// No recipients still informs the other nodes (they keep typing state).
	if n := len(encodeEphemeral("n", TypeTyping, data, nil)); n != 1 {
		t.Fatalf("%d payloads for no recipients", n)
	}
}

func TestTypingTable(t *testing.T) {
	tt := newTypingTable()
	base := mustTime(t, "2026-01-01T00:00:00Z")
	st := Typing{ConversationID: "c", UserID: "u", Typing: true, ExpiresAt: base.Add(5e9)}
	if was, _ := tt.set(st, []string{"v"}); was {
		t.Fatal("was typing before the first ping")
	}
	if got := tt.active([]string{"c", "other"}, base); len(got) != 1 || got[0].UserID != "u" {
		t.Fatalf("active: %+v", got)
	}
	if stops, _ := tt.expire(base.Add(4e9)); len(stops) != 0 {
		t.Fatalf("expired early: %+v", stops)
	}
	stops, to := tt.expire(base.Add(5e9))
	if len(stops) != 1 || stops[0].Typing || fmt.Sprint(to) != "[[v]]" {
		t.Fatalf("expire: %+v %v", stops, to)
	}
	if got := tt.active([]string{"c"}, base); len(got) != 0 {
		t.Fatalf("still active after expiry: %+v", got)
	}
	tt.set(st, []string{"v"})
	if was, prevTo := tt.set(Typing{ConversationID: "c", UserID: "u"}, nil); !was || fmt.Sprint(prevTo) != "[v]" {
		t.Fatalf("stop: was %v to %v", was, prevTo)
	}
}

// jsonStringLen must agree with encoding/json, or a split payload could
// pass the NOTIFY limit.
func TestJSONStringLen(t *testing.T) {
	for _, s := range []string{"", "plain-id", `quote"`, `back\slash`, "<&>", "tab\t", "é", "\u2028", "\xff"} {
		b, _ := json.Marshal(s)
		if got := jsonStringLen(s); got != len(b) {
			t.Errorf("%q: %d, encoding/json %d", s, got, len(b))
		}
	}
}
