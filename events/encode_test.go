package events

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestEphemeralPayloadsAreFull: recipients that need escaping are sized as
// encoding/json writes them, every payload fits a NOTIFY, and the cut is
// greedy (no payload could have taken the next recipient).
func TestEphemeralPayloadsAreFull(t *testing.T) {
	var to []string
	for i := range 600 {
		to = append(to, strings.Repeat(`a"<é\`, i%7)+"-"+strings.Repeat("x", 20))
	}
	data := json.RawMessage(`{"user_id":"u","online":true}`)
	payloads := encodeEphemeral("node", TypePresence, data, to)
	var got []string
	for i, p := range payloads {
		if len(p) > maxPayload {
			t.Fatalf("payload %d: %d bytes", i, len(p))
		}
		var m ephemeralMsg
		if err := json.Unmarshal([]byte(strings.TrimPrefix(p, "e|node|")), &m); err != nil {
			t.Fatal(err)
		}
		got = append(got, m.To...)
		if i < len(payloads)-1 {
			next, _ := json.Marshal(to[len(got)])
			if len(p)+1+len(next) <= maxPayload {
				t.Errorf("payload %d (%d bytes) had room for the next recipient", i, len(p))
			}
		}
	}
	if !slices.Equal(got, to) {
		t.Fatalf("recipients differ: %d of %d", len(got), len(to))
	}
}
