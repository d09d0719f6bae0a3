package web_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Stream positions are opaque strings: the client stores them and sends
// them back, and never computes with them. positionProxy makes that
// testable: between the browser and the server it turns each position
// ("<xid>-<id>" today) into a string of another form that is not in order
// as text ("p:" and the characters reversed), and the strings the client
// sends back into the server's form again.

// opaque encodes a server position; plain decodes it.
func opaque(n string) string {
	r := []rune(n)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return "p:" + string(r)
}

func plain(p string) string {
	if !strings.HasPrefix(p, "p:") {
		return p // the server's form: what the proxy must never see from the client
	}
	return opaque(strings.TrimPrefix(p, "p:"))[2:]
}

var (
	sseID     = regexp.MustCompile(`^id: *(\d+-\d+)$`)
	sseCursor = regexp.MustCompile(`"cursor":"(\d+-\d+)"`)
)

// positionProxy serves upstream with opaque positions; buffered makes it
// buffer responses too (see bufferingProxy), so the client long-polls.
func positionProxy(t *testing.T, upstream string, buffered bool) (*httptest.Server, *syncBuffer) {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	sent := &syncBuffer{} // every position the client sent back, one a line
	proxy := &httputil.ReverseProxy{}
	proxy.Rewrite = func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host
		req := pr.Out
		q := req.URL.Query()
		for _, k := range []string{"last_event_id", "cursor"} {
			if v := q.Get(k); v != "" {
				fmt.Fprintln(sent, v)
				q.Set(k, plain(v))
			}
		}
		req.URL.RawQuery = q.Encode()
		if v := req.Header.Get("Last-Event-ID"); v != "" {
			fmt.Fprintln(sent, v)
			req.Header.Set("Last-Event-ID", plain(v))
		}
	}
	proxy.FlushInterval = -1
	proxy.ModifyResponse = func(res *http.Response) error {
		switch {
		case strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream"):
			pr, pw := io.Pipe()
			go func(body io.ReadCloser) {
				defer body.Close()
				sc := bufio.NewScanner(body)
				sc.Buffer(make([]byte, 64*1024), 1<<20)
				for sc.Scan() {
					line := sc.Text()
					if m := sseID.FindStringSubmatch(line); m != nil {
						line = "id: " + opaque(m[1])
					} else if strings.HasPrefix(line, "data:") {
						line = sseCursor.ReplaceAllStringFunc(line, func(s string) string {
							return `"cursor":"` + opaque(sseCursor.FindStringSubmatch(s)[1]) + `"`
						})
					}
					if _, err := io.WriteString(pw, line+"\n"); err != nil {
						return
					}
				}
				pw.CloseWithError(sc.Err())
			}(res.Body)
			res.Body = pr
		case res.Request.URL.Path == "/v1/events/poll" && res.StatusCode == http.StatusOK:
			var answer map[string]any
			d := json.NewDecoder(res.Body)
			d.UseNumber()
			err := d.Decode(&answer)
			res.Body.Close()
			if err != nil {
				return err
			}
			if c, ok := answer["cursor"].(string); ok {
				answer["cursor"] = opaque(c)
			}
			events, _ := answer["events"].([]any)
			for _, e := range events {
				ev := e.(map[string]any)
				if s, ok := ev["position"].(string); ok {
					ev["position"] = opaque(s)
				}
			}
			body, err := json.Marshal(answer)
			if err != nil {
				return err
			}
			res.Body = io.NopCloser(bytes.NewReader(body))
			res.ContentLength = int64(len(body))
			res.Header.Set("Content-Length", strconv.Itoa(len(body)))
		}
		return nil
	}
	if buffered {
		proxy.Transport = bufferingTransport{http.DefaultTransport.(*http.Transport).Clone()}
	}
	proxy.ErrorLog = log.New(io.Discard, "", 0) // abandoned streams are expected
	ts := httptest.NewServer(proxy)
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	return ts, sent
}

// TestOpaquePositions: with positions that are neither numbers nor in
// order as text, over SSE and over long-poll, messages arrive live, once
// and in order, also across a reload (which resumes from the stored
// position), and the client only ever sends back positions it was given.
func TestOpaquePositions(t *testing.T) {
	for _, mode := range []string{"live", "longpoll"} {
		t.Run(mode, func(t *testing.T) {
			e2e(t)
			srv := startServer(t)
			proxy, sent := positionProxy(t, srv.URL, mode == "longpoll")
			alice, bob, conv, a, b := signedInPair(t, srv, proxy.URL, "first")
			for _, x := range []*tab{a, b} {
				x.waitStatus(mode, 20*time.Second)
				x.waitFor("the history", jsShows("first"), 10*time.Second)
			}
			want := []string{"first"}
			for i := 1; i <= 12; i++ { // reversed, positions do not sort as text
				body := fmt.Sprint("message ", i)
				u := alice
				if i%2 == 0 {
					u = bob
				}
				srv.send(t, u, conv, body)
				want = append(want, body)
			}
			b.write("typed by Bob")
			want = append(want, "typed by Bob")
			for _, x := range []*tab{a, b} {
				x.waitFor("every message, live", jsShows("message 12")+` && `+jsShows("typed by Bob"), 15*time.Second)
			}

			// A reload resumes from the stored position.
			b.do(chromedp.Reload())
			b.waitStatus(mode, 20*time.Second)
			srv.send(t, alice, conv, "after the reload")
			want = append(want, "after the reload")
			for _, x := range []*tab{a, b} {
				x.waitFor("the message after the reload", jsShows("after the reload"), 15*time.Second)
				x.checkMessages(want...)
				for _, p := range x.checkReceived() {
					if !strings.HasPrefix(p, "p:") {
						t.Errorf("%s delivered position %q, not one the server gave", x.name, p)
					}
				}
			}
			for _, p := range strings.Fields(sent.String()) {
				if !strings.HasPrefix(p, "p:") {
					t.Errorf("the client sent back the position %q, not one the server gave", p)
				}
			}
		})
	}
}
