package events

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestSubscriptionChannelsOnFirstUse: a subscription consumed through
// Notify, as the writer pool consumes streams, never makes the channels it
// would select on; one that asks for them late finds them in the state
// they would have had: a token on Ready for what was queued, CaughtUp and
// Done closed when that has happened.
func TestSubscriptionChannelsOnFirstUse(t *testing.T) {
	f := newHubFixture(t, "sqlite", HubConfig{Buffer: 16, Page: 16, Ring: 64, SlowAfter: time.Minute}, 2)
	pooled := subscribe(f.hub, f.users[1], f.created)
	var woken atomic.Int32
	pooled.Notify(func() { woken.Add(1) })
	late := subscribe(f.hub, f.users[1], f.created)
	deadline := time.Now().Add(10 * time.Second)
	for !pooled.isCaughtUp() || !late.isCaughtUp() {
		if time.Now().After(deadline) {
			t.Fatal("the subscriptions did not catch up")
		}
		time.Sleep(time.Millisecond)
	}

	sent := f.send(t, "queued before anyone asked")
	f.waitTail(t, sent)
	select {
	case <-late.Ready():
	default:
		t.Fatal("Ready made after an event was queued holds no token")
	}
	if evs := late.Take(nil); len(evs) != 1 || evs[0].Pos != sent {
		t.Fatalf("took %v, want the event at %v", evs, sent)
	}
	select {
	case <-late.CaughtUp():
	default:
		t.Fatal("CaughtUp asked for after catching up is not closed")
	}
	if woken.Load() == 0 || len(pooled.Take(nil)) != 1 {
		t.Fatal("the Notify consumer was not woken for the event")
	}

	f.hub.close()
	if !pooled.Ended() || pooled.Err() != ErrShutdown {
		t.Fatalf("after shutdown: ended %v, err %v", pooled.Ended(), pooled.Err())
	}
	pooled.qmu.Lock()
	made := pooled.ready != nil || pooled.done != nil
	pooled.qmu.Unlock()
	f.hub.mu.Lock()
	made = made || pooled.caught != nil
	f.hub.mu.Unlock()
	if made {
		t.Fatal("a subscription consumed through Notify made a channel")
	}
	select {
	case <-pooled.Done():
	default:
		t.Fatal("Done asked for after the end is not closed")
	}
}
