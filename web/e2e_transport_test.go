package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// bufferingTransport returns a response only once its whole body has
// arrived, as a proxy that buffers responses does: long-poll answers pass,
// an SSE stream (which never ends) never gets through.
type bufferingTransport struct{ next http.RoundTripper }

func (b bufferingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := b.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.ContentLength = int64(len(body))
	res.Header.Set("Content-Length", fmt.Sprint(len(body)))
	return res, nil
}

// bufferingProxy serves upstream through a bufferingTransport.
func bufferingProxy(t *testing.T, upstream string) *httptest.Server {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = bufferingTransport{http.DefaultTransport.(*http.Transport).Clone()}
	proxy.ErrorLog = log.New(io.Discard, "", 0) // the abandoned streams are expected
	ts := httptest.NewServer(proxy)
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	return ts
}

// TestRestrictiveProxy: through a proxy that buffers every response the
// stream never delivers; both clients fall back to long-polling, say so in
// the pill, and messages and typing still flow both ways.
func TestRestrictiveProxy(t *testing.T) {
	e2e(t)
	srv := startServer(t, "-typing-ttl", "2s")
	proxy := bufferingProxy(t, srv.URL)
	alice, _, _, a, b := signedInPair(t, srv, proxy.URL, "Are you on the hotel wifi again?")
	for _, x := range []*tab{a, b} {
		x.waitFor("the amber Long-poll pill", `document.querySelector('#status').dataset.status === 'longpoll' && `+
			`document.querySelector('#status .status-text').textContent === 'Long-poll' && confabDebug.transport === 'longpoll'`, 20*time.Second)
	}

	b.write("Yes, it blocks everything but plain requests.")
	a.waitFor("Bob's message", jsShows("Yes, it blocks everything but plain requests."), 10*time.Second)
	a.write("Messages still get through, though.")
	b.waitFor("Alice's message", jsShows("Messages still get through, though."), 10*time.Second)

	a.do(chromedp.SendKeys(chromedp.CSS("#composer"), "And typing"))
	b.waitFor("Alice is typing", jsTyping+` === 'Alice Martin is typing…'`, 10*time.Second)
	b.screenshot("longpoll")
	b.do(chromedp.SendKeys(chromedp.CSS("#composer"), "Both ways"))
	a.waitFor("Bob is typing", jsTyping+` === 'Bob Stone is typing…'`, 10*time.Second)
	b.waitFor("Alice's typing expired", jsTyping+` === ''`, 10*time.Second)

	want := []string{"Are you on the hotel wifi again?", "Yes, it blocks everything but plain requests.", "Messages still get through, though."}
	for _, x := range []*tab{a, b} {
		x.checkMessages(want...)
		x.checkReceived()
	}
	// The server agrees: Alice's client is a long-poller, with no stream.
	waitStreams(t, srv, alice, 0)
	var transports []string
	for _, s := range srv.sessions(t, alice) {
		transports = append(transports, s.Transport)
	}
	if !slices.Contains(transports, "longpoll") {
		t.Errorf("alice's sessions are %v, want a longpoll one", transports)
	}
}

// TestManyTabs: 10 tabs of one user share one SSE stream (Web Locks +
// BroadcastChannel); each tab gets each message once; when the leader tab
// closes another takes over within 2 s and a message sent right then is
// not lost.
func TestManyTabs(t *testing.T) {
	e2e(t)
	srv := startServer(t)
	alice := srv.register(t, "alice", "Alice Martin")
	bob := srv.register(t, "bob", "Bob Stone")
	conv := srv.direct(t, alice, bob)

	profile := newProfile(t, newBrowser(t))
	var tabs []*tab
	for i := range 10 {
		x := newTab(t, profile, fmt.Sprintf("tab %d", i+1))
		x.open(srv.URL + "/#c=" + conv)
		if i == 0 {
			x.login(alice) // the others share the login (localStorage)
		}
		tabs = append(tabs, x)
	}
	for _, x := range tabs {
		x.waitStatus("live", 15*time.Second)
		x.waitFor("the conversation open", `!document.querySelector('#chat-pane').hidden`, 10*time.Second)
	}
	leader := onlyLeader(t, tabs, 5*time.Second)
	waitStreams(t, srv, alice, 1)

	m := srv.send(t, bob, conv, "One stream, ten tabs")
	pos := srv.positionOf(t, alice, m.ID)
	for _, x := range tabs {
		x.waitFor("the message", `document.querySelectorAll('#messages li.message[data-id="`+m.ID+`"]').length === 1`, 10*time.Second)
		checkGot(t, x, pos)
	}

	// Close the leader and write at once: a follower takes over in time,
	// and every remaining tab gets the message, once.
	if err := chromedp.Cancel(leader.ctx); err != nil {
		t.Fatalf("closing the leader tab: %v", err)
	}
	closed := time.Now()
	m = srv.send(t, bob, conv, "Sent as the leader tab closed")
	rest := make([]*tab, 0, len(tabs)-1)
	for _, x := range tabs {
		if x != leader {
			rest = append(rest, x)
		}
	}
	onlyLeader(t, rest, 2*time.Second-time.Since(closed))
	t.Logf("a new leader %v after the old one closed", time.Since(closed).Round(time.Millisecond))
	pos = srv.positionOf(t, alice, m.ID)
	for _, x := range rest {
		x.waitFor("the message sent during the handover", `document.querySelectorAll('#messages li.message[data-id="`+m.ID+`"]').length === 1`, 10*time.Second)
		checkGot(t, x, pos)
		x.checkMessages("One stream, ten tabs", "Sent as the leader tab closed")
	}
	waitStreams(t, srv, alice, 1)
}

// onlyLeader waits until exactly one of the tabs leads and returns it.
func onlyLeader(t *testing.T, tabs []*tab, within time.Duration) *tab {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var leaders []*tab
		for _, x := range tabs {
			if ok, err := evalJS[bool](x, `window.confabDebug?.isLeader === true`); err == nil && ok {
				leaders = append(leaders, x)
			}
		}
		if len(leaders) == 1 {
			return leaders[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d leader tabs after %v, want exactly 1", len(leaders), within)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval
	}
}

// waitStreams waits until the server lists exactly n SSE sessions of u.
// (Long-poll rows are not counted: after a stream fails the client makes one
// zero-wait poll, which stays listed for a while.)
func waitStreams(t *testing.T, srv *server, u *user, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var sse []string
		for _, s := range srv.sessions(t, u) {
			if s.Transport == "sse" {
				sse = append(sse, s.ID)
			}
		}
		if len(sse) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d SSE sessions %v, want %d", u.Username, len(sse), sse, n)
		}
		time.Sleep(100 * time.Millisecond) // a poll interval
	}
}

// checkGot asserts the tab delivered the event at pos, and nothing twice.
func checkGot(t *testing.T, x *tab, pos string) {
	t.Helper()
	got := x.checkReceived()
	for _, s := range got {
		if s == pos {
			return
		}
	}
	t.Errorf("%s never delivered position %s: %v", x.name, pos, got)
}

// TestNonMemberSeesNothing: Carol is signed in while Alice and Bob talk; even
// with a link to their conversation, nothing of it ever reaches her page.
func TestNonMemberSeesNothing(t *testing.T) {
	e2e(t)
	srv := startServer(t)
	alice := srv.register(t, "alice", "Alice Martin")
	bob := srv.register(t, "bob", "Bob Stone")
	carol := srv.register(t, "carol", "Carol Diaz")
	private := srv.direct(t, alice, bob)
	srv.send(t, alice, private, "PRIVATE: the surprise party is on Friday")
	shared := srv.direct(t, alice, carol)
	srv.send(t, alice, shared, "Hi Carol!")

	c := newTab(t, newProfile(t, newBrowser(t)), "carol")
	// Watch every change of the page from its first byte for the marker.
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
		window.leaks = [];
		new MutationObserver(() => {
			const html = document.documentElement.outerHTML + document.title;
			if (html.includes('PRIVATE')) window.leaks.push(html);
		}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});`}); err != nil {
		t.Fatal(err)
	}
	c.open(srv.URL + "/#c=" + private) // a link to a conversation she is not in
	c.login(carol)
	c.waitStatus("live", 10*time.Second)
	c.waitFor("her own conversation listed", jsConv(shared), 10*time.Second)

	// Alice and Bob keep talking, and Alice types; then Alice writes to
	// Carol. That message comes after all of it, so once Carol sees it,
	// anything of theirs would have reached her page too.
	srv.send(t, bob, private, "PRIVATE: don't tell Carol")
	srv.call(t, "POST", "/v1/conversations/"+private+"/typing", alice.Token, map[string]bool{"typing": true}, nil)
	srv.send(t, alice, private, "PRIVATE: I won't")
	srv.send(t, alice, shared, "Free on Friday evening?")
	c.waitFor("Alice's message in the list", jsConv(shared)+`.querySelector('.conv-preview').textContent === 'Alice Martin: Free on Friday evening?'`, 10*time.Second)
	c.click(`#conversation-list li.conversation[data-id="` + shared + `"] button.conversation-open`)
	c.waitFor("her conversation open", jsShows("Free on Friday evening?"), 10*time.Second)
	c.checkMessages("Hi Carol!", "Free on Friday evening?")

	checkNoLeak(t, c)

	// And the link again, after a reload.
	mustEval[string](c, `history.replaceState(null, '', '#c=`+private+`'); location.hash`)
	c.do(chromedp.Reload())
	c.waitStatus("live", 10*time.Second)
	c.waitFor("her conversation listed", jsConv(shared), 10*time.Second)
	checkNoLeak(t, c)
}

// checkNoLeak asserts that carol's page has no trace of the private
// conversation, and never had since it loaded.
func checkNoLeak(t *testing.T, c *tab) {
	t.Helper()
	if n := mustEval[int](c, `document.querySelectorAll('#conversation-list li.conversation').length`); n != 1 {
		t.Errorf("carol's list has %d conversations, want 1", n)
	}
	if html := mustEval[string](c, `document.documentElement.outerHTML`); strings.Contains(html, "PRIVATE") {
		t.Errorf("carol's page shows the private conversation:\n%s", html)
	}
	if leaks := mustEval[[]string](c, `window.leaks`); len(leaks) > 0 {
		t.Errorf("carol's page showed the private conversation %d times, first:\n%s", len(leaks), leaks[0])
	}
}
