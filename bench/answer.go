package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// This file reads a long-poll answer as the streams read their frames
// (sseOnce): by scanning for what the load tool checks, not by decoding it
// into structures. http.ReadResponse and encoding/json cost the load tool
// about 9 µs and 32 allocations per answer (BenchmarkReadAnswer), against
// about 1 µs for a stream's frame; the load tool shares the server's
// cores, so that difference showed as server latency that only long-poll
// paid.

// readAnswer reads one HTTP/1.1 answer from br and, if its status is 2xx,
// scans its body into out. The body is kept in *buf, which out's events'
// Data point into until the next answer. closing reports a "Connection:
// close" answer.
func readAnswer(br *bufio.Reader, buf *[]byte, out *pollJSON) (status int, closing bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("poll answer: bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, false, fmt.Errorf("poll answer: bad status line %q", line)
	}
	length, chunked := -1, false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("poll answer: bad header %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, false, fmt.Errorf("poll answer: bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			closing = bytes.EqualFold(value, []byte("close"))
		}
	}
	body := (*buf)[:0]
	switch {
	case chunked:
		body, err = readChunked(br, body)
	case length >= 0:
		body = append(body, make([]byte, length)...)
		_, err = io.ReadFull(br, body)
	default:
		return 0, false, errors.New("poll answer: neither Content-Length nor chunked")
	}
	*buf = body
	if err != nil {
		return 0, false, err
	}
	if status/100 != 2 {
		return status, closing, nil
	}
	*out = pollJSON{Events: out.Events[:0]}
	if err := scanAnswer(body, out); err != nil {
		return 0, false, fmt.Errorf("poll answer: %w", err)
	}
	return status, closing, nil
}

// readChunked appends a chunked body to body, and reads its trailer.
func readChunked(br *bufio.Reader, body []byte) ([]byte, error) {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return body, err
		}
		size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		n, err := strconv.ParseInt(string(size), 16, 32)
		if err != nil || n < 0 {
			return body, fmt.Errorf("poll answer: bad chunk size %q", line)
		}
		if n == 0 {
			for { // the trailer, up to its empty line
				line, err := br.ReadSlice('\n')
				if err != nil {
					return body, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return body, nil
				}
			}
		}
		start := len(body)
		body = append(body, make([]byte, n+2)...) // and its CRLF
		if _, err := io.ReadFull(br, body[start:]); err != nil {
			return body, err
		}
		body = body[:len(body)-2]
	}
}

// scanAnswer reads a poll answer's JSON body: the events' positions, types
// and data (kept as the bytes of body), the cursor, session and reset.
// Other fields are skipped, as a client that does not know them would.
func scanAnswer(body []byte, out *pollJSON) error {
	s := scanner{b: body}
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "events":
			return s.array(func() error {
				var e pollEvent
				err := s.object(func(key []byte) error {
					switch string(key) {
					case "position":
						return s.strTo(&e.Position)
					case "type":
						v, err := s.str()
						e.Type = eventType(v)
						return err
					case "data":
						v, err := s.value()
						e.Data = v
						return err
					}
					_, err := s.value()
					return err
				})
				out.Events = append(out.Events, e)
				return err
			})
		case "cursor":
			return s.strTo(&out.Cursor)
		case "session_id":
			return s.strTo(&out.SessionID)
		case "reset":
			v, err := s.value()
			out.Reset = string(v) == "true"
			return err
		}
		_, err := s.value()
		return err
	})
	if err != nil {
		return err
	}
	if s.space(); s.i != len(s.b) {
		return s.fail("data after the answer")
	}
	return nil
}

// scanner walks JSON text. It checks the structure it walks (strings,
// nesting, separators), not the grammar of numbers and literals.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) fail(what string) error {
	return fmt.Errorf("JSON offset %d: %s", s.i, what)
}

func (s *scanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// expect consumes c, after any space.
func (s *scanner) expect(c byte) error {
	if s.space(); s.i >= len(s.b) || s.b[s.i] != c {
		return s.fail("want " + strconv.QuoteRune(rune(c)))
	}
	s.i++
	return nil
}

// peek reports whether c comes next, after any space, and consumes it if so.
func (s *scanner) peek(c byte) bool {
	if s.space(); s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string. Its contents are returned as they are: the strings
// read (positions, ids, type names) hold no escapes; one that does comes
// back decoded.
func (s *scanner) str() ([]byte, error) {
	if err := s.expect('"'); err != nil {
		return nil, err
	}
	start, escaped := s.i, false
	for ; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i++
		case '"':
			v := s.b[start:s.i]
			s.i++
			if escaped {
				var d string
				if err := json.Unmarshal(s.b[start-1:s.i], &d); err != nil {
					return nil, err
				}
				return []byte(d), nil
			}
			return v, nil
		}
	}
	return nil, s.fail("unterminated string")
}

// strTo reads a string into *dst.
func (s *scanner) strTo(dst *string) error {
	v, err := s.str()
	*dst = string(v)
	return err
}

// value skips one value and returns its text.
func (s *scanner) value() ([]byte, error) {
	s.space()
	start := s.i
	if s.i >= len(s.b) {
		return nil, s.fail("want a value")
	}
	var err error
	switch s.b[s.i] {
	case '"':
		_, err = s.str()
	case '{':
		err = s.object(func([]byte) error { _, err := s.value(); return err })
	case '[':
		err = s.array(func() error { _, err := s.value(); return err })
	default: // a number or a literal
		for s.i < len(s.b) && strings.IndexByte(",}] \t\r\n", s.b[s.i]) < 0 {
			s.i++
		}
		if s.i == start {
			return nil, s.fail("want a value")
		}
	}
	return s.b[start:s.i], err
}

// object reads an object, calling member with each key once the scanner
// stands before its value; member must read the value.
func (s *scanner) object(member func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek('}') {
		return nil
	}
	for {
		key, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := member(key); err != nil {
			return err
		}
		if s.peek('}') {
			return nil
		}
		if err := s.expect(','); err != nil {
			return err
		}
	}
}

// array reads an array, calling elem with the scanner before each element;
// elem must read it.
func (s *scanner) array(elem func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek(']') {
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		if s.peek(']') {
			return nil
		}
		if err := s.expect(','); err != nil {
			return err
		}
	}
}
