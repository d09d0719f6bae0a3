package web_test

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser client end to end, in headless Chromium against a real
// `confab serve` (see e2e_server_test.go and e2e_browser_test.go). Each
// test waits for what the page shows by polling the DOM with a deadline.
// CONFAB_SCREENSHOTS=1 (make screenshots) also saves docs/screenshots/*.png.

// jsShows is true when the open conversation shows a confirmed message with
// this body.
func jsShows(body string) string {
	return `[...document.querySelectorAll('#messages li.message[data-state="sent"] .body')].some(e => e.textContent === ` + jsString(body) + `)`
}

// jsConv is the conversation list's entry for id.
func jsConv(id string) string {
	return `document.querySelector('#conversation-list li.conversation[data-id=` + jsString(id) + `]')`
}

// jsOrder is the conversation list's ids, top to bottom, joined by commas.
const jsOrder = `[...document.querySelectorAll('#conversation-list li.conversation')].map(li => li.dataset.id).join()`

// jsTyping is the open conversation's typing line.
const jsTyping = `document.querySelector('#typing').textContent`

// TestChat: two users in two browser contexts. Alice starts a conversation
// from the people search (Bob shows as online at once) and writes; Bob sees it live, with the unread badge
// and the list order following; he opens it, replies, and sees Alice's
// typing indicator, which clears by itself.
func TestChat(t *testing.T) {
	e2e(t)
	const ttl = 2 * time.Second
	srv := startServer(t, "-typing-ttl", ttl.String())
	alice := srv.register(t, "alice", "Alice Martin")
	bob := srv.register(t, "bob", "Bob Stone")
	carol := srv.register(t, "carol", "Carol Diaz")
	carolConv := srv.direct(t, carol, bob)
	srv.send(t, carol, carolConv, "Are we still on for Friday?")

	browser := newBrowser(t)
	a := newTab(t, newProfile(t, browser), "alice")
	b := newTab(t, newProfile(t, browser), "bob")

	b.open(srv.URL + "/")
	b.screenshot("login")
	b.login(bob)
	b.waitStatus("live", 10*time.Second)
	b.waitFor("Carol's message, unread", jsConv(carolConv)+`?.dataset.unread === '1'`, 10*time.Second)

	// Alice finds Bob and starts a direct conversation.
	a.open(srv.URL + "/")
	a.login(alice)
	a.waitStatus("live", 10*time.Second)
	a.do(chromedp.SendKeys(chromedp.CSS("#new-direct"), "bo"))
	a.click(`#user-results li.user-result[data-username="bob"] button.start-direct`)
	a.waitFor("the conversation with Bob open", `!document.querySelector('#chat-pane').hidden && document.querySelector('#chat-title').textContent === 'Bob Stone'`, 10*time.Second)
	conv := mustEval[string](a, `new URLSearchParams(location.hash.slice(1)).get('c')`)
	// Bob is a new contact for Alice: his presence comes with the new conversation.
	a.waitFor("Bob shown online", `document.querySelector('#chat-members').textContent === 'Bob Stone (online) and you' && `+
		jsConv(conv)+`.classList.contains('online')`, 10*time.Second)
	// Nothing below reloads a page: a reload would drop this mark.
	for _, x := range []*tab{a, b} {
		mustEval[bool](x, `window.sameDocument = true`)
	}

	// Bob's list gains it live, on top (the newest activity).
	b.waitFor("Alice's new conversation on top", jsOrder+` === `+jsString(conv+","+carolConv), 10*time.Second)
	// Carol writes again: her conversation goes back on top, 2 unread.
	srv.send(t, carol, carolConv, "Let me know!")
	b.waitFor("Carol's conversation back on top with 2 unread", jsOrder+` === `+jsString(carolConv+","+conv)+` && `+
		jsConv(carolConv)+`.dataset.unread === '2' && `+jsConv(carolConv)+`.querySelector('.unread').textContent === '2'`, 10*time.Second)

	// Alice writes (Enter sends): on top of Bob's list, with a badge.
	a.write("Hi Bob! Lunch at noon?")
	a.waitFor("Alice's message confirmed", jsShows("Hi Bob! Lunch at noon?"), 10*time.Second)
	b.waitFor("Alice's conversation on top, 1 unread, with a preview", jsOrder+` === `+jsString(conv+","+carolConv)+` && `+
		jsConv(conv)+`.dataset.unread === '1' && `+jsConv(conv)+`.querySelector('.unread')?.textContent === '1' && `+
		jsConv(conv)+`.querySelector('.conv-preview').textContent === 'Alice Martin: Hi Bob! Lunch at noon?'`, 10*time.Second)

	// Bob opens it: the message is there, the badge goes.
	b.click(`#conversation-list li.conversation[data-id="` + conv + `"] button.conversation-open`)
	b.waitFor("the message shown and read", jsShows("Hi Bob! Lunch at noon?")+` && `+jsConv(conv)+`.dataset.unread === '0' && !`+
		jsConv(conv)+`.querySelector('.unread')`, 10*time.Second)

	// Bob replies; Alice sees it without a reload.
	b.write("Noon works. The usual place?")
	a.waitFor("Bob's reply", jsShows("Noon works. The usual place?"), 10*time.Second)
	a.write("Yes! I'll book a table for two.")
	b.waitFor("Alice's answer", jsShows("Yes! I'll book a table for two."), 10*time.Second)

	// Alice types and stops without sending: Bob sees it, then it expires.
	// The ping cannot reach the server before typed, so it lasts until at
	// least typed+ttl; an indicator gone sooner was ended by something else.
	typed := time.Now()
	a.do(chromedp.SendKeys(chromedp.CSS("#composer"), "Should we ask Carol to"))
	b.waitFor("Alice is typing", jsTyping+` === 'Alice Martin is typing…' && `+
		jsConv(conv)+`.querySelector('.conv-preview').textContent === 'Alice Martin is typing…'`, 5*time.Second)
	b.screenshot("chat")
	b.waitFor("the typing indicator cleared by itself", jsTyping+` === '' && !`+jsConv(conv)+`.querySelector('.conv-preview.is-typing')`, ttl+5*time.Second)
	if shown := time.Since(typed); shown < ttl-250*time.Millisecond {
		t.Errorf("the typing indicator went after %v; a ping lasts %v (did something send a stop?)", shown, ttl)
	}

	want := []string{"Hi Bob! Lunch at noon?", "Noon works. The usual place?", "Yes! I'll book a table for two."}
	a.checkMessages(want...)
	b.checkMessages(want...)
	for _, x := range []*tab{a, b} {
		x.checkReceived()
		if !mustEval[bool](x, `window.sameDocument === true`) {
			t.Errorf("%s's page was reloaded", x.name)
		}
	}

	if strings.Contains(mustEval[string](b, `document.body.innerText`), "Should we ask Carol") {
		t.Error("Bob sees Alice's unsent draft")
	}
	b.darkMode(true)
	b.waitFor("the dark theme", `matchMedia('(prefers-color-scheme: dark)').matches`, 5*time.Second)
	b.screenshot("chat-dark")
}

// TestReload: Bob reloads the page while Alice sends 5 messages; afterwards
// every message is there once, in order (the client resumes from the seq it
// kept in sessionStorage and the view deduplicates by id).
func TestReload(t *testing.T) {
	e2e(t)
	srv := startServer(t)
	alice := srv.register(t, "alice", "Alice Martin")
	bob := srv.register(t, "bob", "Bob Stone")
	conv := srv.direct(t, alice, bob)
	want := []string{"first", "second"}
	for _, body := range want {
		srv.send(t, alice, conv, body)
	}

	b := newTab(t, newProfile(t, newBrowser(t)), "bob")
	b.open(srv.URL + "/#c=" + conv)
	b.login(bob)
	b.waitStatus("live", 10*time.Second)
	b.waitFor("the history", jsShows("second"), 10*time.Second)

	sent := make(chan error, 1)
	go func() {
		for i := 1; i <= 5; i++ {
			if err := srv.request("POST", "/v1/conversations/"+conv+"/messages", alice.Token, map[string]string{"body": fmt.Sprint("burst ", i)}, nil); err != nil {
				sent <- err
				return
			}
			time.Sleep(60 * time.Millisecond) // pace the burst across the reload
		}
		sent <- nil
	}()
	for i := 1; i <= 5; i++ {
		want = append(want, fmt.Sprint("burst ", i))
	}
	b.waitFor("the first burst message", jsShows("burst 1"), 10*time.Second)
	b.do(chromedp.Reload())
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	b.waitStatus("live", 10*time.Second)
	b.waitFor("every burst message", jsShows("burst 5"), 10*time.Second)
	// One more message as a barrier: anything still in flight comes first.
	srv.send(t, alice, conv, "after the reload")
	want = append(want, "after the reload")
	b.waitFor("the message after the reload", jsShows("after the reload"), 10*time.Second)
	b.checkMessages(want...)
	b.checkReceived()
}

// TestServerRestart: the server process dies and comes back on the same
// port and database. The pill goes red, then green; presence is not shown
// while disconnected; a message Alice sent while it was down waits, without
// a Retry button, and goes out by itself (once) when the connection is
// back; messages sent through the API right after the restart arrive once
// in both browsers.
func TestServerRestart(t *testing.T) {
	e2e(t)
	srv := startServer(t)
	_, bob, conv, a, b := signedInPair(t, srv, srv.URL, "before the restart")
	for _, x := range []*tab{a, b} {
		x.waitStatus("live", 10*time.Second)
		x.waitFor("the history", jsShows("before the restart"), 10*time.Second)
	}
	const jsOnline = `document.querySelector('#chat-members').textContent.includes('(online)')`
	a.waitFor("Bob online", jsOnline+` && `+jsConv(conv)+`.classList.contains('online')`, 10*time.Second)

	srv.kill()
	for _, x := range []*tab{a, b} {
		x.waitFor("the red pill", `document.querySelector('#status').dataset.status === 'reconnecting' && `+
			`document.querySelector('#status .status-text').textContent.startsWith('Reconnecting…')`, 10*time.Second)
	}
	a.waitFor("no presence while disconnected", `!(`+jsOnline+`) && !`+jsConv(conv)+`.classList.contains('online')`, 5*time.Second)
	a.write("sent while the server was down")
	a.waitFor("the message waiting, without a Retry button", `document.querySelector('#messages li.message[data-state="queued"]') && `+
		`!document.querySelector('#messages button.retry')`, 10*time.Second)
	a.screenshot("reconnecting")

	srv.start()
	// Before the browsers are back (they back off), two messages through the API.
	srv.send(t, bob, conv, "right after the restart 1")
	srv.send(t, bob, conv, "right after the restart 2")
	a.waitStatus("live", 20*time.Second)
	b.waitStatus("live", 20*time.Second)
	a.waitFor("Bob online again", jsOnline, 10*time.Second)

	want := []string{"before the restart", "right after the restart 1", "right after the restart 2", "sent while the server was down"}
	for _, x := range []*tab{a, b} {
		x.waitFor("every message", jsShows("sent while the server was down")+` && `+jsShows("right after the restart 2"), 10*time.Second)
	}
	// A barrier: anything still in flight arrives before it.
	srv.send(t, bob, conv, "barrier")
	want = append(want, "barrier")
	// The waiting message goes out when Alice's browser is back, which may
	// be before the second API send on a busy machine: both browsers show
	// the server's order.
	var list struct{ Messages []message }
	srv.call(t, "GET", "/v1/conversations/"+conv+"/messages", bob.Token, nil, &list)
	slices.SortFunc(list.Messages, func(x, y message) int { return cmp.Compare(x.Seq, y.Seq) })
	stored := make([]string, 0, len(list.Messages))
	for _, m := range list.Messages {
		stored = append(stored, m.Body)
	}
	if !slices.Equal(slices.Sorted(slices.Values(stored)), slices.Sorted(slices.Values(want))) {
		t.Fatalf("stored %q, want %q in some order", stored, want)
	}
	want = stored
	for _, x := range []*tab{a, b} {
		x.waitFor("the barrier", jsShows("barrier"), 10*time.Second)
		x.checkMessages(want...)
		x.checkReceived()
	}
}

// signedInPair registers alice and bob with a direct conversation holding
// first, and signs each in, in a browser profile of their own, on the page
// at base with the conversation open.
func signedInPair(t *testing.T, srv *server, base, first string) (alice, bob *user, conv string, a, b *tab) {
	t.Helper()
	alice = srv.register(t, "alice", "Alice Martin")
	bob = srv.register(t, "bob", "Bob Stone")
	conv = srv.direct(t, alice, bob)
	srv.send(t, alice, conv, first)
	browser := newBrowser(t)
	a = newTab(t, newProfile(t, browser), "alice")
	b = newTab(t, newProfile(t, browser), "bob")
	for _, x := range []struct {
		tab *tab
		u   *user
	}{{a, alice}, {b, bob}} {
		x.tab.open(base + "/#c=" + conv)
		x.tab.login(x.u)
	}
	return alice, bob, conv, a, b
}
