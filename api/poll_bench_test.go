package api_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"testing"

	"github.com/confab-chat/confab/repository/dbtest"
)

// BenchmarkPollAnswer measures one long-poll that answers at once, over
// loopback HTTP, on SQLite, logging at Info as production does: a poller
// that lost its answer asks again from the same cursor and gets the event
// its session's feed kept. It reads nothing from the database, so it
// measures what every poll pays besides its events: HTTP, the middleware,
// the session, the feed and the answer. The client's costs are included.
func BenchmarkPollAnswer(b *testing.B) {
	e := newEnv(b, dbtest.Open(b, "sqlite"), testConfig())
	alice, bob := e.register("alice"), e.register("bob")
	first := e.poll(bob.Token, "")
	e.group(alice, bob)
	if p := e.pollFrom(bob.Token, first.SessionID, first.Cursor, 5); len(p.Events) != 1 {
		b.Fatalf("poll after the group's creation: %+v", p)
	}
	e.logLevel.Set(slog.LevelInfo)
	req, err := http.NewRequest("GET", e.url+"/v1/events/poll?timeout=0&cursor="+url.QueryEscape(first.Cursor)+"&session_id="+first.SessionID, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+bob.Token)
	req.Header.Set("User-Agent", "bench")
	client := &http.Client{}
	b.ReportAllocs()
	for b.Loop() {
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatal(res.Status)
		}
	}
}
