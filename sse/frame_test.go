package sse

import (
	"fmt"
	"testing"
	"time"

	"github.com/confab-chat/confab/events"
)

func TestFrames(t *testing.T) {
	var b []byte
	b = AppendRetry(b, 2*time.Second)
	b = AppendEvent(b, "7-3", "message.created", []byte(`{"a":1}`))
	b = AppendEvent(b, "", "presence", []byte("two\nlines"))
	b = AppendEvent(b, "", "x", []byte("cr\rcrlf\r\nend"))
	b = AppendComment(b, "ping")
	want := "retry: 2000\n\n" +
		"id: 7-3\nevent: message.created\ndata: {\"a\":1}\n\n" +
		"event: presence\ndata: two\ndata: lines\n\n" +
		"event: x\ndata: cr\ndata: crlf\ndata: end\n\n" +
		": ping\n\n"
	if string(b) != want {
		t.Fatalf("frames %q, want %q", b, want)
	}
}

func TestReason(t *testing.T) {
	for why, want := range map[error]string{
		fmt.Errorf("%w: broken pipe", ErrPeerGone): "client_gone",
		ErrExpired:             "expired",
		ErrWriteTimeout:        "write_timeout",
		events.ErrSlowConsumer: "slow_consumer",
		events.ErrTooMany:      "evicted",
		events.ErrShutdown:     "shutdown",
		fmt.Errorf("other"):    "error",
	} {
		if got := Reason(why); got != want {
			t.Errorf("Reason(%v) = %s, want %s", why, got, want)
		}
	}
}
