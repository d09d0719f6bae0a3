package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/confab-chat/confab/events"
	"github.com/gin-gonic/gin"
)

// TestPollAnswerEncodesAsEncodingJSON: the hand-written answer is what
// encoding/json would write, but for the events' data: verbatim here,
// where encoding/json escapes <, > and & in it (the same JSON value).
func TestPollAnswerEncodesAsEncodingJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	type event struct {
		Position string          `json:"position"`
		Type     string          `json:"type"`
		Data     json.RawMessage `json:"data"`
	}
	type answer struct {
		Events    []event         `json:"events"`
		Cursor    string          `json:"cursor"`
		Typing    []events.Typing `json:"typing"`
		Reset     bool            `json:"reset"`
		SessionID string          `json:"session_id"`
	}
	for _, r := range []answer{
		{Events: []event{}, Typing: []events.Typing{}},
		{Events: []event{{Position: "0-1", Type: "read", Data: json.RawMessage(`{"message_id":"m"}`)}}, Cursor: "0-1", Typing: []events.Typing{}, SessionID: "s"},
		{
			Events: []event{
				{Position: "77-7", Type: "message.created", Data: json.RawMessage(`{"message":{"body":"a\"<b>&\u2028"}}`)},
				{Position: "77-8", Type: "odd\"type<&>\n\u00e9", Data: json.RawMessage(`{}`)},
			},
			Cursor:    "77-8",
			Typing:    []events.Typing{{ConversationID: "c", UserID: "u", Typing: true, ExpiresAt: at}},
			Reset:     true,
			SessionID: "s-1",
		},
	} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		ans := &events.PollAnswer{Events: []*events.Event{}, Cursor: r.Cursor, Typing: r.Typing, Reset: r.Reset, SessionID: r.SessionID}
		for _, ev := range r.Events {
			ans.Events = append(ans.Events, &events.Event{ID: ev.Position, Type: ev.Type, Data: ev.Data})
		}
		var got bytes.Buffer
		encodePoll(&got, ans)
		var g, w any
		if err := json.Unmarshal(got.Bytes(), &g); err != nil {
			t.Fatalf("encode wrote invalid JSON %s: %v", got.String(), err)
		}
		json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("encode:\n got %s\nwant %s", got.String(), want)
		}
		if html := bytes.ContainsAny(got.Bytes(), "<>&"); !html && got.String() != string(want) {
			t.Fatalf("encode:\n got %s\nwant %s", got.String(), want)
		}
	}
}

// TestPollQueryAsGin: queryValue reads a poll's query as gin's c.Query
// does, escapes, repeated keys, semicolons and empty pairs included.
func TestPollQueryAsGin(t *testing.T) {
	for _, raw := range []string{
		"", "cursor=1-2&timeout=0&session_id=abc", "timeout=&cursor", "cursor=a&cursor=b",
		"cursor=a%2Fb&timeout=1", "cursor=a+b", "cursor=%zz&cursor=ok", "cursor=a;b&cursor=c",
		"&&cursor=x&", "session_id=x=y", "timeout=5&timeout=6", "cursor%3D=1&cursor=2", "a=1&" + strings.Repeat("&", 10000) + "cursor=3",
	} {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest("GET", "/v1/events/poll", nil)
		c.Request.URL.RawQuery = raw
		for _, key := range []string{"cursor", "timeout", "session_id"} {
			if got, want := queryValue(c, raw, key), c.Query(key); got != want {
				t.Errorf("%q: %s = %q, gin reads %q", raw, key, got, want)
			}
		}
	}
}

// TestPollAnswerDeadline: a poll moves its connection's write deadline
// only when less than half of WriteTimeout is left; an HTTP/2 request
// (whose connection's context its streams share) always sets its own.
func TestPollAnswerDeadline(t *testing.T) {
	s := &Server{cfg: DefaultConfig()}
	cs := new(connState)
	poll := func(major int) {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequestWithContext(context.WithValue(t.Context(), connStateKey{}, cs), "GET", "/v1/events/poll", nil)
		c.Request.ProtoMajor = major
		s.answerDeadline(c)
	}
	poll(1)
	first := cs.writeDeadline
	if d := time.Until(first); d <= s.cfg.WriteTimeout-time.Second || d > s.cfg.WriteTimeout {
		t.Fatalf("first deadline in %s, want %s", d, s.cfg.WriteTimeout)
	}
	poll(1)
	if cs.writeDeadline != first {
		t.Fatalf("moved with more than half left")
	}
	cs.writeDeadline = time.Now().Add(s.cfg.WriteTimeout/2 - time.Second)
	poll(1)
	if d := time.Until(cs.writeDeadline); d <= s.cfg.WriteTimeout-time.Second {
		t.Fatalf("not moved with less than half left: in %s", d)
	}
	cs.writeDeadline = first
	poll(2)
	if cs.writeDeadline != first {
		t.Fatalf("an HTTP/2 request changed its connection's state")
	}
}
