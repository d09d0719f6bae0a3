package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// Each test drives its own headless Chromium. A user is a browser context
// (a separate profile: its own localStorage, cookies, Web Locks and
// BroadcastChannels); a tab is a page in one of them.

// newBrowser starts Chromium for the test and closes it at cleanup.
// chromedp gives every browser a fresh, temporary user-data-dir.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromePath),
		chromedp.NoSandbox, // we may be root, as in CI containers
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1100, 720),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx
		cancel()
		acancel()
		noBrowser(t, fmt.Errorf("cannot start %s: %w", chromePath, err))
	}
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	return ctx
}

// newProfile opens a fresh browser context (one user's "browser"). Its
// first, blank tab stays open for the whole test, so closing one of the
// user's tabs never disposes of the profile.
func newProfile(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("new browser context: %v", err)
	}
	return ctx
}

// tab is one page, with what it wrote to the console (shown on failure).
type tab struct {
	t       *testing.T
	name    string
	ctx     context.Context
	console *syncBuffer
}

// newTab opens a tab (in its own window, so it is visible) in the profile.
func newTab(t *testing.T, profile context.Context, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(profile)
	b := &tab{t: t, name: name, ctx: ctx, console: &syncBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s console:\n%s", name, tail(b.console.String(), 3000))
		}
		cancel()
	})
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1100, 700)); err != nil {
		t.Fatalf("%s: new tab: %v", name, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			fmt.Fprintf(b.console, "%s %s\n", m.Time.Format("15:04:05.000"), m)
		}
	}()
	return b
}

// evalJS evaluates a JavaScript expression in the tab.
func evalJS[T any](b *tab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// mustEval evaluates expr or fails the test.
func mustEval[T any](b *tab, expr string) T {
	b.t.Helper()
	v, err := evalJS[T](b, expr)
	if err != nil {
		b.t.Fatalf("%s: %s: %v\n%s", b.name, expr, err, b.describe())
	}
	return v
}

// do runs actions, bounded, or fails the test.
func (b *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\n%s", b.name, err, b.describe())
	}
}

// waitFor polls the page until the JavaScript expression is truthy, or
// fails the test after within. A navigation in between only makes a poll
// come back false.
func (b *tab) waitFor(what, expr string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := evalJS[bool](b, "!!("+expr+")")
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: not within %v: %s (last error: %v)\n%s", b.name, within, what, err, b.describe())
		}
		<-tick.C
	}
}

// click clicks the element as soon as it exists. The page clicks it itself,
// in one step, so a re-render between finding the element and clicking it
// (the app repaints lists and message footers) cannot make the click miss.
func (b *tab) click(selector string) {
	b.t.Helper()
	b.waitFor("to click "+selector, `(() => { const e = document.querySelector(`+jsString(selector)+`); e?.click(); return !!e })()`, 10*time.Second)
}

// describe is what the tab shows, for failure messages.
func (b *tab) describe() string {
	s, err := evalJS[string](b, `JSON.stringify({
		url: location.href,
		status: document.querySelector('#status')?.dataset.status,
		pill: document.querySelector('#status .status-text')?.textContent,
		debug: window.confabDebug && {...window.confabDebug, status: confabDebug.status, position: confabDebug.position,
			isLeader: confabDebug.isLeader, transport: confabDebug.transport},
		conversations: [...document.querySelectorAll('#conversation-list li.conversation')].map(li => li.dataset.id + ' unread=' + li.dataset.unread + ' ' + li.innerText.replace(/\s+/g, ' ')),
		messages: [...document.querySelectorAll('#messages li.message')].map(li => (li.dataset.seq || '-') + ' ' + li.dataset.state + ' ' + li.querySelector('.body')?.textContent),
		typing: document.querySelector('#typing')?.textContent,
	}, null, 1)`)
	if err != nil {
		return "(page state unavailable: " + err.Error() + ")"
	}
	return s
}

// open navigates the tab to url and waits for the app's first paint.
func (b *tab) open(url string) {
	b.t.Helper()
	b.do(chromedp.Navigate(url))
	b.waitFor("the app started", `window.confabDebug && !(document.querySelector('#login-view').hidden && document.querySelector('#chat-view').hidden)`, 10*time.Second)
}

// login signs u in through the login form.
func (b *tab) login(u *user) {
	b.t.Helper()
	b.waitFor("the login form", `!document.querySelector('#login-view').hidden`, 10*time.Second)
	b.do(
		chromedp.SendKeys(chromedp.CSS("#username"), u.Username),
		chromedp.SendKeys(chromedp.CSS("#password"), u.Password),
	)
	b.click("#login-btn")
	b.waitFor("signed in as "+u.Username, `!document.querySelector('#chat-view').hidden && document.querySelector('#me-name').textContent === `+jsString(u.DisplayName), 10*time.Second)
}

// enter presses Enter as a keyboard does when the page cancels the keydown:
// a rawKeyDown and a keyUp. (SendKeys("\n") also sends a char event, which
// would put a newline into the composer the app has just emptied.)
var enter = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
		_, err := cdp.Call(ctx, t, input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
		})
		if err != nil {
			return err
		}
	}
	return nil
})

// write types body into the composer and sends it with Enter.
func (b *tab) write(body string) {
	b.t.Helper()
	b.do(chromedp.SendKeys(chromedp.CSS("#composer"), body), enter)
	b.waitFor("the composer emptied by sending", `document.querySelector('#composer').value === ''`, 5*time.Second)
}

// waitStatus waits for the connection pill to show status.
func (b *tab) waitStatus(status string, within time.Duration) {
	b.t.Helper()
	b.waitFor("the pill says "+status, `document.querySelector('#status').dataset.status === `+jsString(status), within)
}

// messages lists the open conversation's messages as the page shows them.
type shownMessage struct {
	ID    string `json:"id"`
	Seq   string `json:"seq"`
	State string `json:"state"`
	Body  string `json:"body"`
}

func (b *tab) messages() []shownMessage {
	b.t.Helper()
	return mustEval[[]shownMessage](b, `[...document.querySelectorAll('#messages li.message')].map(li => ({
		id: li.dataset.id || '', seq: li.dataset.seq || '', state: li.dataset.state, body: li.querySelector('.body').textContent}))`)
}

// received is confabDebug.received: the position of every durable event
// the tab delivered (opaque strings).
func (b *tab) received() []string {
	b.t.Helper()
	return mustEval[[]string](b, `window.confabDebug.received`)
}

// checkMessages asserts the open conversation shows exactly the bodies in
// want, in order, each once, all confirmed, with unique ids and rising seq.
func (b *tab) checkMessages(want ...string) {
	b.t.Helper()
	got := b.messages()
	var bodies []string
	ids := map[string]bool{}
	var last int64
	for _, m := range got {
		bodies = append(bodies, m.Body)
		seq, err := strconv.ParseInt(m.Seq, 10, 64)
		switch {
		case m.State != "sent" || m.ID == "" || err != nil:
			b.t.Errorf("%s: message %q is %s (id %q, seq %q), want confirmed", b.name, m.Body, m.State, m.ID, m.Seq)
		case ids[m.ID]:
			b.t.Errorf("%s: message %s (%q) is shown twice", b.name, m.ID, m.Body)
		case seq <= last:
			b.t.Errorf("%s: message %q has seq %d after %d: out of order", b.name, m.Body, seq, last)
		}
		ids[m.ID], last = true, seq
	}
	if fmt.Sprint(bodies) != fmt.Sprint(want) {
		b.t.Errorf("%s shows the messages\n%q\nwant\n%q", b.name, bodies, want)
	}
}

// checkReceived asserts confabDebug.received has no position twice.
func (b *tab) checkReceived() []string {
	b.t.Helper()
	got := b.received()
	seen := map[string]bool{}
	for _, s := range got {
		if seen[s] {
			b.t.Errorf("%s delivered position %s twice: %v", b.name, s, got)
		}
		seen[s] = true
	}
	return got
}

// darkMode makes the page prefer a dark color scheme (or not).
func (b *tab) darkMode(on bool) {
	b.t.Helper()
	feature := []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "light"}}
	if on {
		feature[0].Value = "dark"
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: feature}); err != nil {
		b.t.Fatal(err)
	}
}

// screenshot saves the viewport as docs/screenshots/<name>.png, only when
// CONFAB_SCREENSHOTS=1 (`make screenshots`): plain test runs write nothing.
func (b *tab) screenshot(name string) {
	b.t.Helper()
	if os.Getenv("CONFAB_SCREENSHOTS") != "1" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}
