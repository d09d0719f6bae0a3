package api

import "testing"

// TestParsePoll: the fast path serves only the polls it reads exactly as
// net/http and the router would; the rest go back to net/http.
func TestParsePoll(t *testing.T) {
	const line = "GET /v1/events/poll?session_id=s1&cursor=1-2&timeout=3 HTTP/1.1\r\n"
	const host = "Host: localhost:18690\r\n"
	r, ok := parsePoll(line + host + "User-Agent: curl/7.88.1\r\nAccept: */*\r\nAuthorization: Bearer tok\r\n")
	if !ok || r.token != "tok" || r.sessionID != "s1" || r.cursor != "1-2" || r.timeout != "3" || r.userAgent != "curl/7.88.1" {
		t.Fatalf("plain poll: %v %+v", ok, r)
	}
	if r, ok := parsePoll("GET /v1/events/poll?session_id=s1&cursor=1-2&access_token=q HTTP/1.1\r\n" + host); !ok || r.token != "q" {
		t.Fatalf("query token: %v %+v", ok, r)
	}
	if r, ok := parsePoll(line + host + "Authorization: Bearer tok\r\nConnection: close\r\n"); !ok || !r.close {
		t.Fatalf("Connection: close: %v %+v", ok, r)
	}
	for name, head := range map[string]string{
		"no host":             line + "Authorization: Bearer tok\r\n",
		"two hosts":           line + host + host + "Authorization: Bearer tok\r\n",
		"bad host":            line + "Host: a b\r\nAuthorization: Bearer tok\r\n",
		"HTTP/1.0":            "GET /v1/events/poll?session_id=s1&cursor=1-2 HTTP/1.0\r\n" + host + "Authorization: Bearer tok\r\n",
		"HEAD":                "HEAD /v1/events/poll?session_id=s1&cursor=1-2 HTTP/1.1\r\n" + host + "Authorization: Bearer tok\r\n",
		"absolute target":     "GET http://x/v1/events/poll?session_id=s1&cursor=1-2 HTTP/1.1\r\n" + host + "Authorization: Bearer tok\r\n",
		"escaped query":       "GET /v1/events/poll?session_id=s%31&cursor=1-2 HTTP/1.1\r\n" + host + "Authorization: Bearer tok\r\n",
		"no session":          "GET /v1/events/poll?cursor=1-2 HTTP/1.1\r\n" + host + "Authorization: Bearer tok\r\n",
		"no token":            line + host,
		"empty first auth":    line + host + "Authorization: \r\nAuthorization: Bearer tok\r\n",
		"cookie only":         line + host + "Cookie: confab_token=x\r\n",
		"body":                line + host + "Authorization: Bearer tok\r\nContent-Length: 5\r\n",
		"chunked":             line + host + "Authorization: Bearer tok\r\nTransfer-Encoding: chunked\r\n",
		"expect":              line + host + "Authorization: Bearer tok\r\nExpect: 100-continue\r\n",
		"origin":              line + host + "Authorization: Bearer tok\r\nOrigin: https://a.test\r\n",
		"proxied":             line + host + "Authorization: Bearer tok\r\nX-Forwarded-For: 10.0.0.1\r\n",
		"upgrade":             line + host + "Authorization: Bearer tok\r\nConnection: Upgrade\r\n",
		"folded header":       line + host + "Authorization: Bearer tok\r\nX-A: 1\r\n 2\r\n",
		"space before colon":  line + host + "Authorization : Bearer tok\r\n",
		"control in a value":  line + host + "Authorization: Bearer tok\r\nX-A: \x00\r\n",
		"control in a target": "GET /v1/events/poll?session_id=s\x7f&cursor=1-2 HTTP/1.1\r\n" + host + "Authorization: Bearer tok\r\n",
	} {
		if r, ok := parsePoll(head); ok {
			t.Errorf("%s: served by the fast path: %+v", name, r)
		}
	}
}

func TestHeadEnd(t *testing.T) {
	for _, tc := range []struct {
		data string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 25},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET", 25},
		{"GET / HTTP/1.1\r\nHost: a\r\n", -1},
		{"GET / HTTP/1.1\nHost: a\n\n", -2},
		{"GET / HTTP/1.1\r\nHost: a\n\r\n", -2},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /\n", 25}, // the next head is the next call's
	} {
		if got := headEnd([]byte(tc.data)); got != tc.want {
			t.Errorf("headEnd(%q) = %d, want %d", tc.data, got, tc.want)
		}
	}
}
