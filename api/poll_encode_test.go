package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/confab-chat/confab/events"
)

// TestPollAnswerEncodesAsEncodingJSON: the hand-written answer is what
// encoding/json would write, but for the events' data: verbatim here,
// where encoding/json escapes <, > and & in it (the same JSON value).
func TestPollAnswerEncodesAsEncodingJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, r := range []pollResponse{
		{Events: []pollEvent{}, Typing: []events.Typing{}},
		{Events: []pollEvent{{Seq: 1, Type: "read", Data: json.RawMessage(`{"message_id":"m"}`)}}, Cursor: 1, Typing: []events.Typing{}, SessionID: "s"},
		{
			Events: []pollEvent{
				{Seq: 7, Type: "message.created", Data: json.RawMessage(`{"message":{"body":"a\"<b>&\u2028"}}`)},
				{Seq: 8, Type: "odd\"type<&>\n\u00e9", Data: json.RawMessage(`{}`)},
			},
			Cursor:    8,
			Typing:    []events.Typing{{ConversationID: "c", UserID: "u", Typing: true, ExpiresAt: at}},
			Reset:     true,
			SessionID: "s-1",
		},
	} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		r.encode(&got)
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
