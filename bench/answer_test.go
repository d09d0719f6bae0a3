package bench

import (
	"bufio"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// answerBody is a poll answer as confab writes it for one message.
const answerBody = `{"events":[{"position":"0000000000000123-0000000000000456","type":"message.created","data":{"id":"0193b3f2-8a4c-7b7e-9c1d-1234567890ab","conversation_id":"0193b3f2-8a4c-7b7e-9c1d-1234567890cd","seq":42,"sender_id":"0193b3f2-8a4c-7b7e-9c1d-1234567890ef","body":"bench:1:1733430000000000000","created_at":"2026-12-05T21:00:00.123456Z"}}],"cursor":"0000000000000123-0000000000000456","session_id":"0193b3f2-8a4c-7b7e-9c1d-123456789000"}`

func answer(status int, body string, headers ...string) string {
	h := "HTTP/1.1 " + strconv.Itoa(status) + " " + "Whatever\r\nContent-Type: application/json\r\n"
	for _, x := range headers {
		h += x + "\r\n"
	}
	if !strings.Contains(h, "chunked") {
		h += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	return h + "\r\n" + body
}

// TestReadAnswer checks the scan of answers against encoding/json's decode.
func TestReadAnswer(t *testing.T) {
	bodies := []string{
		answerBody,
		`{"events":[],"cursor":"c1","session_id":"s"}`,
		`{"events":[],"cursor":"c2","reset":true,"typing":[{"user_id":"u","conversation_id":"c"}]}`,
		` { "unknown" : [1, {"a": "}]\"{"}, null, -1.5e3] , "events" : [ { "type":"x" , "data" : "a\"b\\" , "position":"p" } , {"position":"q","type":"typing","data":{"n":[{}],"s":"]"}} ] , "cursor" : "c\u0033" } `,
	}
	for _, body := range bodies {
		var want pollJSON
		if err := json.Unmarshal([]byte(body), &want); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		var buf []byte
		var got pollJSON
		_, _, err := readAnswer(bufio.NewReader(strings.NewReader(answer(200, body))), &buf, &got)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if len(want.Events) == 0 {
			want.Events = nil
		}
		if len(got.Events) == 0 {
			got.Events = nil
		}
		for i := range want.Events {
			want.Events[i].Data = []byte(strings.TrimSpace(string(want.Events[i].Data)))
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", body, got, want)
		}
	}

	// Two answers on one connection, the second chunked and closing it,
	// then an error.
	chunked := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
		"5\r\n{\"cur\r\n" + strconv.FormatInt(int64(len(`sor":"c9"}`)), 16) + ";ext=1\r\n" + `sor":"c9"}` + "\r\n0\r\nX-Trailer: 1\r\n\r\n"
	br := bufio.NewReader(strings.NewReader(answer(200, answerBody) + chunked + answer(429, `{"code":"rate_limited"}`, "Connection: close")))
	var buf []byte
	var got pollJSON
	if status, closing, err := readAnswer(br, &buf, &got); err != nil || status != 200 || closing || got.SessionID == "" || len(got.Events) != 1 {
		t.Fatalf("first: %d %v %v %+v", status, closing, err, got)
	}
	if status, closing, err := readAnswer(br, &buf, &got); err != nil || status != 200 || !closing || got.Cursor != "c9" || len(got.Events) != 0 {
		t.Fatalf("chunked: %d %v %v %+v", status, closing, err, got)
	}
	if status, closing, err := readAnswer(br, &buf, &got); err != nil || status != 429 || !closing || string(buf) != `{"code":"rate_limited"}` {
		t.Fatalf("error: %d %v %v %s", status, closing, err, buf)
	}

	for _, bad := range []string{
		answer(200, `{"events":[{"position":"p"}`),
		answer(200, `{"events":[]} x`),
		answer(200, `{"cursor":"c}`),
		answer(200, `{"events":[1,]}`),
		"HTTP/1.1 200 OK\r\n\r\n{}",
		"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}",
	} {
		if _, _, err := readAnswer(bufio.NewReader(strings.NewReader(bad)), &buf, &got); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

// BenchmarkReadAnswer is the load tool's cost of reading one answer.
func BenchmarkReadAnswer(b *testing.B) {
	msg := answer(200, answerBody)
	rd := strings.NewReader(msg)
	br := bufio.NewReaderSize(rd, 16<<10)
	var buf []byte
	var out pollJSON
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(msg)
		br.Reset(rd)
		if _, _, err := readAnswer(br, &buf, &out); err != nil || len(out.Events) != 1 {
			b.Fatal(err)
		}
	}
}
