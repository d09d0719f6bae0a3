// Package sse writes Server-Sent Events streams: the frames every stream
// writes, and the pool that serves HTTP/1.1 streams taken over from
// net/http, so that an idle stream holds a socket and a few words of state
// rather than a goroutine and its buffers.
package sse

import (
	"bytes"
	"strconv"
	"time"
)

// The frames follow the WHATWG EventSource rules. Event data is one line of
// JSON (encoding/json escapes line ends), so a message body holding "\n"
// or "event:" cannot break a frame; any other data gets one data line per
// line, whichever of CR, LF or CRLF ends it, as EventSource reads them.

// AppendEvent appends an event frame: an id line when id is set, the event
// type and its data.
func AppendEvent(b []byte, id, typ string, data []byte) []byte {
	if id != "" {
		b = AppendID(b, id)
	}
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: "...)
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			b = append(b, data...)
			break
		}
		b = append(b, data[:i]...)
		b = append(b, "\ndata: "...)
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, "\n\n"...)
}

// AppendID appends an id line: the id of the next event, which the client
// sends back as Last-Event-ID when it reconnects.
func AppendID(b []byte, id string) []byte {
	b = append(b, "id: "...)
	b = append(b, id...)
	return append(b, '\n')
}

// AppendRetry appends the reconnection delay a client should wait.
func AppendRetry(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, d.Milliseconds(), 10)
	return append(b, "\n\n"...)
}

// AppendComment appends a comment (": text"), which clients ignore: the
// heartbeat.
func AppendComment(b []byte, text string) []byte {
	b = append(b, ": "...)
	b = append(b, text...)
	return append(b, "\n\n"...)
}
