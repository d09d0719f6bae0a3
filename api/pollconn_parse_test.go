package api

import "testing"

func TestParsePollHead(t *testing.T) {
	head := "GET /v1/events/poll?session_id=s1&cursor=1-2&timeout=3 HTTP/1.1\r\nHost: localhost:18690\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nAuthorization: Bearer tok\r\n"
	r, ok := parsePoll(head)
	if !ok || r.token != "tok" || r.sessionID != "s1" || r.cursor != "1-2" || r.timeout != "3" || r.userAgent != "curl/7.88.1" {
		t.Fatalf("%v %+v", ok, r)
	}
	if n := headEnd([]byte(head + "\r\nGET")); n != len(head) {
		t.Fatalf("headEnd %d, want %d", n, len(head))
	}
}
