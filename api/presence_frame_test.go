package api

import (
	"encoding/json"
	"testing"
)

// TestAppendPresence: the snapshot's hand-built frames are byte for byte
// what encoding/json makes of the map, for plain ids and for ids that
// need escaping.
func TestAppendPresence(t *testing.T) {
	for _, id := range []string{"01a2196d-395d-7c97-a46c-e0d6fcb8ceb1", "", `a"b\c`, "<&>", "é\u2028x", "\x01", string([]byte{0xff})} {
		want, _ := json.Marshal(map[string]any{"user_id": id, "online": true})
		if got := appendPresence(nil, id); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", id, got, want)
		}
	}
}
