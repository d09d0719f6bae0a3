package bench

import (
	"bufio"
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// poller is one long-poller's keep-alive connection, spoken by hand as a
// light client speaks it (a shell loop over one connection, a small
// library): write the request, read the answer (readAnswer).
//
// net/http's client costs far more per request than that (a goroutine
// hand-off each way, a context and a timer, header maps), more than the
// server spends on the poll; on the machine the server shares with the
// load tool, that cost showed in every latency measured, and long-poll
// makes one request per delivery where a stream makes one per run.
type poller struct {
	c    *client
	addr string // host:port
	host string // the Host header
	conn net.Conn
	br   *bufio.Reader
	req  []byte
	stop func() bool // ends the connection's watch of ctx
	// The last answer: its body, and what was read of it (which points
	// into body).
	body []byte
	ans  pollJSON
}

// newPoller makes a poller for c's server; nil if it is not plain HTTP
// (the pollers then use c).
func newPoller(c *client) *poller {
	u, err := url.Parse(c.base)
	if err != nil || u.Scheme != "http" || u.Path != "" {
		return nil
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &poller{c: c, addr: addr, host: u.Host}
}

// close closes the connection, if any.
func (p *poller) close() {
	if p.conn != nil {
		p.stop()
		p.conn.Close()
		p.conn = nil
	}
}

// poll polls from cursor (none: the head, at once) with the session of
// the last answer (none: a new one), waiting up to timeout seconds. The
// answer is good until the next poll.
func (p *poller) poll(ctx context.Context, token, cursor string, timeout int, session string) (*pollJSON, error) {
	if p.conn == nil {
		conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", p.addr)
		if err != nil {
			return nil, err
		}
		p.conn, p.br = conn, bufio.NewReaderSize(conn, 16<<10)
		p.stop = context.AfterFunc(ctx, func() { conn.Close() })
	}
	b := append(p.req[:0], "GET /v1/events/poll"...)
	if cursor != "" {
		b = append(b, "?cursor="...)
		b = append(b, url.QueryEscape(cursor)...)
		b = append(b, "&timeout="...)
		b = strconv.AppendInt(b, int64(timeout), 10)
		if session != "" {
			b = append(b, "&session_id="...)
			b = append(b, url.QueryEscape(session)...)
		}
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, p.host...)
	b = append(b, "\r\nAuthorization: Bearer "...)
	b = append(b, token...)
	b = append(b, "\r\nUser-Agent: confab-bench\r\n\r\n"...)
	p.req = b
	// The answer comes within the poll's timeout; a server that stalls
	// longer fails the poll.
	p.conn.SetDeadline(time.Now().Add(time.Duration(timeout)*time.Second + 30*time.Second)) //nolint:errcheck // a closed conn fails below
	out, err := p.roundTrip(b)
	if err != nil {
		p.close() // the next poll dials again
		return nil, err
	}
	return out, nil
}

func (p *poller) roundTrip(req []byte) (*pollJSON, error) {
	if _, err := p.conn.Write(req); err != nil {
		return nil, err
	}
	status, closing, err := readAnswer(p.br, &p.body, &p.ans)
	if err != nil {
		return nil, err
	}
	if closing {
		p.close()
	}
	if status/100 != 2 {
		return nil, &statusError{status: status, body: strings.TrimSpace(string(p.body[:min(len(p.body), 300)]))}
	}
	return &p.ans, nil
}
