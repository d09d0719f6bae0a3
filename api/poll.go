package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/confab-chat/confab/events"
	"github.com/gin-gonic/gin"
)

const maxPollTimeout = 60

// maxPollBatch bounds the events one poll answer waits for; the client
// polls again from the returned cursor for the rest.
const maxPollBatch = 500

type pollEvent struct {
	Seq  int64           `json:"seq"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

type pollResponse struct {
	Events    []pollEvent     `json:"events"`
	Cursor    int64           `json:"cursor"`
	Typing    []events.Typing `json:"typing"`
	Reset     bool            `json:"reset"`
	SessionID string          `json:"session_id"`
}

// poll serves GET /v1/events/poll: the long-poll transport. It answers at
// once when events after the cursor exist, else waits up to timeout seconds;
// a typing change also answers early so pollers see indicators.
func (s *Server) poll(c *gin.Context) {
	cursor, given, err := parseCursor(c.Query("cursor"))
	if err != nil {
		problem(c, http.StatusBadRequest, CodeInvalidCursor, "cursor must be a non-negative integer")
		return
	}
	timeout := 25
	if v := c.Query("timeout"); v != "" {
		if timeout, err = strconv.Atoi(v); err != nil || timeout < 0 || timeout > maxPollTimeout {
			problem(c, http.StatusBadRequest, CodeInvalidField, "timeout must be an integer from 0 to 60")
			return
		}
	}
	ctx, uid := c.Request.Context(), userID(c)
	start, last, reset, ok := s.startCursor(c, cursor, given)
	if !ok {
		return
	}
	sessionID, done, err := s.broker.PollSession(ctx, uid, c.Query("session_id"), c.Request.UserAgent())
	if err != nil {
		s.fail(c, err)
		return
	}
	defer done()
	out := pollResponse{Events: []pollEvent{}, Cursor: start, Reset: reset, SessionID: sessionID}
	if given && !reset {
		wait := time.Duration(timeout) * time.Second
		if start < last {
			// Events exist: answer as soon as the hub hands them over,
			// whatever the timeout.
			wait = max(wait, 10*time.Second)
		}
		out.Events, out.Cursor = s.wait(c, start, wait, last)
	}
	if out.Typing, err = s.broker.TypingFor(ctx, uid); err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	// The answer may come a minute after the request: its write gets a
	// deadline of its own, like a stream's.
	http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(s.cfg.StreamWriteTimeout)) //nolint:errcheck // best effort
	c.JSON(http.StatusOK, out)
}

// wait collects the events after cursor, waiting up to timeout for the
// first one; it shares the hub's subscription path with the SSE stream.
// head is the stream's last seq when the poll began: events up to it exist,
// so the answer waits for them (a typing change does not answer first).
func (s *Server) wait(c *gin.Context, cursor int64, timeout time.Duration, head int64) ([]pollEvent, int64) {
	sub := s.broker.Subscribe(userID(c), cursor)
	defer sub.Close()
	open := s.broker.Metrics.Open.WithLabelValues(events.TransportLongPoll)
	open.Inc()
	defer open.Dec()
	delivered := s.broker.Metrics.Delivered.WithLabelValues(events.TransportLongPoll)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	out := []pollEvent{}
	for {
		select {
		case ev := <-sub.Events():
			if ev.Type == events.TypePresence {
				continue // not part of the poll answer
			}
			if ev.Type == events.TypeTyping {
				if cursor < head {
					continue // events are on their way; the answer will carry typing too
				}
				return out, cursor // the answer carries the typing state
			}
			for {
				out = append(out, pollEvent{Seq: ev.Seq, Type: ev.Type, Data: ev.Data})
				cursor = ev.Seq
				s.observe(ev, delivered)
				// Everything up to the head known when the poll began is
				// committed: wait for it (the hub may hand it over in more
				// than one batch), then take whatever else is queued.
				if cursor < head && len(out) < maxPollBatch {
					var ok bool
					if ev, ok = nextDurable(c, sub, timer); ok {
						continue
					}
					return out, cursor
				}
				select {
				case ev = <-sub.Events():
					if ev.Seq > 0 {
						continue
					}
				default:
				}
				return out, cursor
			}
		case <-timer.C:
			return out, cursor
		case <-sub.Done():
			return out, cursor
		case <-c.Request.Context().Done():
			return out, cursor
		}
	}
}

// nextDurable waits for the subscription's next durable event, skipping
// ephemeral ones, until the timer, the subscription or the request ends.
func nextDurable(c *gin.Context, sub *events.Subscription, timer *time.Timer) (*events.Event, bool) {
	for {
		select {
		case ev := <-sub.Events():
			if ev.Seq > 0 {
				return ev, true
			}
		case <-timer.C:
			return nil, false
		case <-sub.Done():
			return nil, false
		case <-c.Request.Context().Done():
			return nil, false
		}
	}
}
