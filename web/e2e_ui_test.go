package web_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Browser tests of the UI itself: a phone-sized screen, group membership,
// right-to-left text and accessibility.

// back is the browser's Back button (a phone's back gesture). Unlike
// chromedp.NavigateBack it does not wait for a page load, which a
// same-document entry never has.
var back = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	res, err := cdp.Call(ctx, t, page.GetNavigationHistory, cdp.Empty{})
	if err != nil {
		return err
	}
	if res.CurrentIndex <= 0 {
		return errors.New("no history entry to go back to")
	}
	_, err = cdp.Call(ctx, t, page.NavigateToHistoryEntry, page.NavigateToHistoryEntryParams{EntryID: res.Entries[res.CurrentIndex-1].ID})
	return err
})

// jsCutShort is true when the element shows its text cut with an ellipsis.
func jsCutShort(sel string) string {
	return `(e => e && e.scrollWidth > e.clientWidth && getComputedStyle(e).textOverflow === 'ellipsis')(document.querySelector(` + jsString(sel) + `))`
}

// jsFits is true when nothing makes the page wider than the screen.
const jsFits = `document.documentElement.scrollWidth <= innerWidth`

// TestPhone: on a 390 px screen long names are cut with an ellipsis instead
// of widening the page; opening a conversation adds a history entry, so Back
// returns to the list rather than leaving the app; and a #c=<id> typed into
// the address bar opens that conversation.
func TestPhone(t *testing.T) {
	e2e(t)
	srv := startServer(t)
	long := "Maximiliana Konstantina Featherstonehaugh-Wolfeschlegel" // 55 characters
	if n := len([]rune(long)); n != 55 {
		t.Fatalf("the long name has %d characters", n)
	}
	alice := srv.register(t, "alice", long)
	bob := srv.register(t, "bob", "Bartholomew Alexander Montgomery-Fitzwilliam Cholmondeley")
	carol := srv.register(t, "carol", "Carol Diaz")
	withBob := srv.direct(t, alice, bob)
	srv.send(t, bob, withBob, "Hello from the man with the long name")
	withCarol := srv.direct(t, alice, carol)
	srv.send(t, carol, withCarol, "Hi Alice!")

	a := newTab(t, newProfile(t, newBrowser(t)), "alice")
	a.do(chromedp.EmulateViewport(390, 800))
	a.open(srv.URL + "/")
	a.login(alice)
	a.waitStatus("live", 10*time.Second)
	a.waitFor("both conversations listed", jsConv(withBob)+` && `+jsConv(withCarol), 10*time.Second)
	mustEval[bool](a, `window.sameDocument = true`)
	a.waitFor("the list fits the screen, the long names cut short", jsFits+` && `+jsCutShort("#me-name")+` && `+
		jsCutShort(`#conversation-list li.conversation[data-id="`+withBob+`"] .conv-title`), 5*time.Second)

	a.click(`#conversation-list li.conversation[data-id="` + withBob + `"] button.conversation-open`)
	a.waitFor("the conversation shown alone, fitting the screen", `document.body.dataset.view === 'chat' && `+
		jsShows("Hello from the man with the long name")+` && `+jsFits+` && `+jsCutShort("#chat-title"), 10*time.Second)
	a.screenshot("phone-chat")

	// Back returns to the list, in the same page.
	a.do(back)
	a.waitFor("the list again after Back", `document.body.dataset.view === 'list' && document.querySelector('#chat-pane').hidden && location.hash === ''`, 5*time.Second)
	if !mustEval[bool](a, `window.sameDocument === true`) {
		t.Fatal("Back left the app")
	}

	// A conversation's address typed in: it opens.
	mustEval[string](a, `location.hash = 'c=`+withCarol+`'`)
	a.waitFor("Carol's conversation from the address", `document.body.dataset.view === 'chat' && `+
		`document.querySelector('#chat-title').textContent === 'Carol Diaz' && `+jsShows("Hi Alice!"), 10*time.Second)
	mustEval[string](a, `location.hash = 'c=`+withBob+`'`)
	a.waitFor("Bob's conversation from the address", jsShows("Hello from the man with the long name"), 10*time.Second)
	if !mustEval[bool](a, `window.sameDocument === true`) {
		t.Fatal("the page was reloaded")
	}
}

// TestGroupMembers: Bob leaves a group, after confirming; everyone left sees
// "Bob Stone left" and, when Alice adds Dave, a line for that too. Bob's
// messages keep his name, also for Carol after a reload, when the member
// list no longer has him.
func TestGroupMembers(t *testing.T) {
	e2e(t)
	srv := startServer(t)
	alice := srv.register(t, "alice", "Alice Martin")
	bob := srv.register(t, "bob", "Bob Stone")
	carol := srv.register(t, "carol", "Carol Diaz")
	dave := srv.register(t, "dave", "Dave Ross")
	var group conversation
	srv.call(t, "POST", "/v1/conversations", alice.Token, map[string]any{"kind": "group", "title": "Road trip", "member_ids": []string{bob.ID, carol.ID}}, &group)
	srv.send(t, bob, group.ID, "I can drive")

	browser := newBrowser(t)
	b := newTab(t, newProfile(t, browser), "bob")
	c := newTab(t, newProfile(t, browser), "carol")
	for _, x := range []struct {
		tab *tab
		u   *user
	}{{b, bob}, {c, carol}} {
		x.tab.open(srv.URL + "/#c=" + group.ID)
		x.tab.login(x.u)
		x.tab.waitStatus("live", 10*time.Second)
		x.tab.waitFor("the group open", jsShows("I can drive"), 10*time.Second)
	}
	const jsBobsMessage = `[...document.querySelectorAll('#messages li.message')].find(li => li.querySelector('.body').textContent === 'I can drive')?.querySelector('.sender').textContent`
	c.waitFor("Bob's name on his message", jsBobsMessage+` === 'Bob Stone'`, 5*time.Second)

	// Leave asks first; Stay keeps him in.
	b.click("#leave-btn")
	b.waitFor("the question", `document.querySelector('#leave-dialog').open && document.querySelector('#leave-text').textContent.includes('Road trip')`, 5*time.Second)
	b.click("#leave-cancel")
	b.waitFor("the question gone", `!document.querySelector('#leave-dialog').open`, 5*time.Second)
	if !mustEval[bool](b, jsConv(group.ID)+` !== null && !document.querySelector('#chat-pane').hidden`) {
		t.Fatal("Bob left the group although he chose to stay")
	}
	b.click("#leave-btn")
	b.click("#leave-confirm")
	b.waitFor("the group gone from Bob's list", jsConv(group.ID)+` === null && document.querySelector('#chat-pane').hidden`, 10*time.Second)

	const jsLines = `[...document.querySelectorAll('#messages li.system')].map(li => li.textContent)`
	c.waitFor("the line saying Bob left", jsLines+`.includes('Bob Stone left')`, 10*time.Second)
	c.waitFor("two members left", `document.querySelector('#chat-members').textContent.startsWith('2 members')`, 10*time.Second)

	srv.call(t, "POST", "/v1/conversations/"+group.ID+"/members", alice.Token, map[string]string{"user_id": dave.ID}, nil)
	// "joined" until the server says who added someone (a `by` in member.joined).
	c.waitFor("the line saying Dave came in", jsLines+`.some(s => s === 'Alice Martin added Dave Ross' || s === 'Dave Ross joined')`, 10*time.Second)
	c.screenshot("group-lines")
	srv.send(t, dave, group.ID, "Thanks for having me")
	c.waitFor("Dave's message after the lines", `[...document.querySelectorAll('#message-list > li')].at(-1).textContent.includes('Thanks for having me')`, 10*time.Second)

	// After a reload Bob is no longer in the member list; his name is kept.
	c.do(chromedp.Reload())
	c.waitStatus("live", 10*time.Second)
	c.waitFor("the group open again", jsShows("Thanks for having me"), 10*time.Second)
	c.waitFor("Bob's name still on his message", jsBobsMessage+` === 'Bob Stone'`, 5*time.Second)
}

// TestAccessibility: no connection pill on the login screen; axe-core finds
// nothing on the login screen and in a conversation; right-to-left text and
// names are laid out right to left; the tab's title counts unread messages;
// the keyboard focus ring is fully visible inside the scrolling list.
func TestAccessibility(t *testing.T) {
	e2e(t)
	axe, err := os.ReadFile("testdata/axe.min.js")
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t)
	alice := srv.register(t, "alice", "Alice Martin")
	bob := srv.register(t, "bob", "Bob Stone")
	dana := srv.register(t, "dana", "דנה כהן")
	withBob := srv.direct(t, alice, bob)
	srv.send(t, bob, withBob, "Hi Alice!")
	withDana := srv.direct(t, alice, dana)
	srv.send(t, dana, withDana, "שלום, מה שלומך?")

	a := newTab(t, newProfile(t, newBrowser(t)), "alice")
	a.open(srv.URL + "/")
	a.waitFor("the login form", `!document.querySelector('#login-view').hidden`, 10*time.Second)
	if mustEval[bool](a, `document.querySelector('#status').checkVisibility()`) {
		t.Errorf("the login screen shows the connection pill (%q)", mustEval[string](a, `document.querySelector('#status').textContent.trim()`))
	}
	mustEval[bool](a, string(axe)+"\ntrue")
	checkAxe(t, a, "the login screen")

	a.login(alice)
	a.waitStatus("live", 10*time.Second)
	a.waitFor("the status pill shown", `document.querySelector('#status').checkVisibility()`, 5*time.Second)
	a.waitFor("2 unread in the title", `document.title === '(2) confab'`, 10*time.Second)
	a.click(`#conversation-list li.conversation[data-id="` + withDana + `"] button.conversation-open`)
	a.waitFor("Dana's message", jsShows("שלום, מה שלומך?"), 10*time.Second)
	a.waitFor("1 unread in the title", `document.title === '(1) confab'`, 10*time.Second)

	for sel, want := range map[string]string{
		"#messages li.message .body":   "rtl",
		"#messages li.message .sender": "rtl",
		"#chat-title":                  "rtl",
		`#conversation-list li.conversation[data-id="` + withDana + `"] .conv-title`: "rtl",
		`#conversation-list li.conversation[data-id="` + withBob + `"] .conv-title`:  "ltr",
	} {
		a.waitFor(sel+" laid out "+want, `(e => e && getComputedStyle(e).direction === `+jsString(want)+`)(document.querySelector(`+jsString(sel)+`))`, 5*time.Second)
	}
	a.screenshot("rtl")

	// With a message shown (a role=log holding list items); signing in
	// reloads nothing, so axe is still there.
	a.waitFor("Dana's message", jsShows("שלום, מה שלומך?"), 10*time.Second)
	checkAxe(t, a, "a conversation")

	// From the search box, Tab reaches the first conversation: its focus
	// ring must show whole, not clipped by the scrolling list.
	a.do(chromedp.Focus(chromedp.CSS("#new-direct")), chromedp.KeyEvent("\t"))
	a.waitFor("the first conversation focused by keyboard", `document.activeElement.matches('.conversation-open:focus-visible')`, 5*time.Second)
	if !mustEval[bool](a, `(() => {
		const e = document.activeElement, s = getComputedStyle(e);
		const w = parseFloat(s.outlineWidth), o = parseFloat(s.outlineOffset);
		const r = e.getBoundingClientRect(), box = e.closest('.conversation-list').getBoundingClientRect();
		return s.outlineStyle !== 'none' && w >= 2 && r.left - o - w >= box.left - 0.5 && r.right + o + w <= box.right + 0.5 &&
			r.top - o - w >= box.top - 0.5;
	})()`) {
		t.Errorf("the focus ring of a conversation is missing or clipped: %s", mustEval[string](a, `(s => s.outline + ' offset ' + s.outlineOffset)(getComputedStyle(document.activeElement))`))
	}
}

// checkAxe runs axe-core (already injected) on the page and reports every
// violation.
func checkAxe(t *testing.T, b *tab, where string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	type violation struct {
		ID, Impact, Help string
		Nodes            []string
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]violation](`axe.run(document).then(r => r.violations.map(v => ({
		id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)})))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("axe on %s: %v", where, err)
	}
	for _, v := range got {
		t.Errorf("axe on %s: %s (%s): %s\n  %v", where, v.ID, v.Impact, v.Help, v.Nodes)
	}
}

// TestSendFailures: a send the server refuses for good (400) fails with a
// Retry button; one it could not take just then (503) waits and goes out
// by itself, without a Retry button, with the same client_msg_id.
func TestSendFailures(t *testing.T) {
	e2e(t)
	srv := startServer(t)
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var busy atomic.Int32 // 503 answers still to give to "busy" sends
	busy.Store(2)
	upstream := httputil.NewSingleHostReverseProxy(target)
	upstream.FlushInterval = -1
	upstream.ErrorLog = log.New(io.Discard, "", 0)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/messages") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			problem := func(status int, code string) {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(status)
				fmt.Fprintf(w, `{"type":"about:blank","title":%q,"status":%d,"code":%q}`, http.StatusText(status), status, code)
			}
			switch {
			case bytes.Contains(body, []byte("refused")):
				problem(http.StatusBadRequest, "invalid_field")
				return
			case bytes.Contains(body, []byte("busy")) && busy.Add(-1) >= 0:
				problem(http.StatusServiceUnavailable, "unavailable")
				return
			}
		}
		upstream.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		proxy.CloseClientConnections()
		proxy.Close()
	})
	_, _, _, a, b := signedInPair(t, srv, proxy.URL, "first")
	a.waitStatus("live", 10*time.Second)
	a.waitFor("the history", jsShows("first"), 10*time.Second)

	a.write("refused for good")
	a.waitFor("the refused message failed, with Retry", `(li => li?.dataset.state === 'failed' && li.querySelector('button.retry'))(`+
		`[...document.querySelectorAll('#messages li.message')].find(li => li.querySelector('.body').textContent === 'refused for good'))`, 10*time.Second)

	a.write("busy for a moment")
	a.waitFor("the busy message waiting, without Retry", `(li => li?.dataset.state === 'queued' && !li.querySelector('button.retry'))(`+
		`[...document.querySelectorAll('#messages li.message')].find(li => li.querySelector('.body').textContent === 'busy for a moment'))`, 5*time.Second)
	for _, x := range []*tab{a, b} {
		x.waitFor("the busy message sent by itself", jsShows("busy for a moment"), 20*time.Second)
	}
	b.checkMessages("first", "busy for a moment")
}
