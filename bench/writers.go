package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// writeResult is what the writers of one round did.
type writeResult struct {
	post  []int64 // POST latencies from the scheduled send, ns
	acked []int64 // per conversation: messages answered 2xx
	// scheduled is how many sends the pace asked for within the duration
	// (with no pace: how many were attempted).
	scheduled int64
	errs      map[string]int64
	elapsed   time.Duration
}

// write runs writers writers on fx until d has passed. Writer i posts to
// conversation i mod C as one of its members, paced so all writers together
// send `rate` messages a second (0: each as fast as it can).
//
// A paced send has a slot on a fixed schedule, and its latency (the POST's,
// and the delivery's: the body carries the slot's time) is measured from
// that slot, not from when the request went out: a writer held up by a slow
// answer sends its next messages late, and their wait counts. Measuring
// from the send would leave that wait out (coordinated omission), making a
// server that stalls look as if it answered the few requests it was sent
// quickly. A writer behind its schedule sends back to back until it has
// caught up; slots it had not reached by the end are scheduled and unsent.
func write(ctx context.Context, c *client, fx *fixture, writers int, rate float64, d time.Duration, round int64) writeResult {
	res := writeResult{acked: make([]int64, len(fx.convs)), errs: map[string]int64{}}
	if writers == 0 {
		return res
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for i := range writers {
		conv := i % len(fx.convs)
		m := fx.members[conv]
		sender := fx.users[m[(i/len(fx.convs))%len(m)]]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var post []int64
			var acked, scheduled int64
			errs := map[string]int64{}
			var interval time.Duration
			next := start
			if rate > 0 {
				interval = time.Duration(float64(writers) / rate * float64(time.Second))
				next = start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			}
			path := c.base + "/v1/conversations/" + fx.convs[conv] + "/messages"
			var body []byte
			for ctx.Err() == nil {
				slot := time.Now()
				if interval > 0 {
					slot = next
					if !slot.Before(end) {
						break
					}
					scheduled++
					if wait := time.Until(slot); wait > 0 {
						t := time.NewTimer(wait)
						select {
						case <-ctx.Done():
						case <-t.C:
						}
						t.Stop()
					}
					next = next.Add(interval)
				}
				// A slot within the duration is sent if the writer reaches it
				// within one interval of the end (a timer may fire late).
				if !time.Now().Before(end.Add(interval)) || ctx.Err() != nil {
					break
				}
				if interval == 0 {
					scheduled++
				}
				t0 := int64(slot.Sub(epoch))
				body = strconv.AppendInt(append(strconv.AppendInt(append(body[:0], `{"body":"bench:`...), round, 10), ':'), t0, 10)
				body = append(body, `"}`...)
				err := c.post(ctx, path, sender.Access, body)
				post = append(post, since()-t0)
				if err != nil {
					errs[errKind(err)]++
					continue
				}
				acked++
			}
			// The slots the writer did not reach before the end.
			for interval > 0 && next.Before(end) {
				scheduled++
				next = next.Add(interval)
			}
			mu.Lock()
			defer mu.Unlock()
			res.post = append(res.post, post...)
			res.acked[conv] += acked
			res.scheduled += scheduled
			for k, v := range errs {
				res.errs[k] += v
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// post sends one message and reads the answer.
func (c *client) post(ctx context.Context, url, token string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return &statusError{status: res.StatusCode}
	}
	return nil
}
