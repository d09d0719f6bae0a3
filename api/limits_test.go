package api_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
)

// wantRateLimited fails unless r is a 429 rate_limited problem with a
// Retry-After of at least a second.
func wantRateLimited(t *testing.T, r resp) {
	t.Helper()
	r.wantProblem(t, http.StatusTooManyRequests, "rate_limited")
	if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
}

// TestSendLimitPerUser hammers sends from one account, from many
// goroutines at once: no more than the burst (plus what refilled meanwhile)
// is stored, the rest get 429 with Retry-After, and another account in the
// same conversation still sends.
func TestSendLimitPerUser(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.SendsPerSecond, cfg.SendBurst = 1, 5
		e := newEnv(t, store, cfg)
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		path := "/v1/conversations/" + g.ID + "/messages"

		start := time.Now()
		var created, limited atomic.Int64
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := range 5 {
					r := e.doCtx(context.Background(), "POST", path, alice.Token, map[string]string{"body": "spam " + strconv.Itoa(w*10+i)})
					switch r.status {
					case http.StatusCreated:
						created.Add(1)
					case http.StatusTooManyRequests:
						limited.Add(1)
					default:
						t.Errorf("send: %d %s", r.status, r.body)
					}
				}
			})
		}
		wg.Wait()
		refilled := int64(time.Since(start).Seconds()) + 1
		if n := created.Load(); n < 5 || n > 5+refilled {
			t.Fatalf("%d of 40 sends accepted in %v, want the burst of 5 (+%d refilled)", n, time.Since(start), refilled)
		}
		if limited.Load()+created.Load() != 40 {
			t.Fatalf("%d created + %d limited of 40", created.Load(), limited.Load())
		}
		// Exactly the accepted sends are stored.
		var page struct{ Messages []message }
		e.must(http.StatusOK, "GET", path+"?limit=100", bob.Token, nil).decode(t, &page)
		if int64(len(page.Messages)) != created.Load() {
			t.Fatalf("%d messages stored, %d accepted", len(page.Messages), created.Load())
		}

		// Through the contract checker: a 429 problem with Retry-After.
		wantRateLimited(t, e.do("POST", path, alice.Token, map[string]string{"body": "one more"}))
		// Bob is not slowed by alice.
		for range 5 {
			e.send(bob, g.ID, "bob is fine")
		}
	})
}

// TestGroupAndMemberAddLimits tries to pull strangers into groups faster
// than the per-user limits allow, through group creation and through
// member additions; another user is unaffected.
func TestGroupAndMemberAddLimits(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.GroupsPerMinute, cfg.MemberAddsPerMinute = 2, 3
		e := newEnv(t, store, cfg)
		alice, bob := e.register("alice"), e.register("bob")
		var strangers []user
		for range 6 {
			strangers = append(strangers, e.register("stranger"))
		}
		ids := func(us ...user) []string {
			out := []string{}
			for _, u := range us {
				out = append(out, u.ID)
			}
			return out
		}
		create := func(u user, others ...user) resp {
			return e.do("POST", "/v1/conversations", u.Token, map[string]any{"kind": "group", "member_ids": ids(others...)})
		}
		before := e.state()

		// More others than a minute's additions: refused outright, nothing
		// spent (yourself and repeats do not count).
		r := create(alice, slices.Concat(strangers[:4], []user{alice, strangers[0]})...)
		r.wantProblem(t, http.StatusBadRequest, "invalid_field")
		if after := e.state(); after != before {
			t.Fatalf("a refused group changed stored data:\n%s", after)
		}

		// Two others: one group, two additions.
		var g conversation
		r = create(alice, strangers[0], strangers[0], strangers[1])
		if r.status != http.StatusCreated {
			t.Fatalf("first group: %d %s", r.status, r.body)
		}
		r.decode(t, &g)
		// Two more others would make four additions in the minute.
		wantRateLimited(t, create(alice, strangers[2], strangers[3]))
		// One more: the second group, the third addition.
		if r := create(alice, strangers[2]); r.status != http.StatusCreated {
			t.Fatalf("second group: %d %s", r.status, r.body)
		}
		// No group is left, nor an addition.
		wantRateLimited(t, create(alice))
		wantRateLimited(t, e.do("POST", "/v1/conversations/"+g.ID+"/members", alice.Token, map[string]string{"user_id": strangers[4].ID}))
		var list struct{ Conversations []conversation }
		e.must(http.StatusOK, "GET", "/v1/conversations", alice.Token, nil).decode(t, &list)
		if len(list.Conversations) != 2 {
			t.Fatalf("alice is in %d conversations, want 2", len(list.Conversations))
		}
		if len(e.stream(strangers[4])) != 0 || len(e.stream(strangers[3])) != 0 {
			t.Fatal("a refused request reached a stranger")
		}

		// Bob has limits of his own: he adds to alice's group and creates one.
		var b conversation
		if r := create(bob, strangers[3]); r.status != http.StatusCreated {
			t.Fatalf("bob's group: %d %s", r.status, r.body)
		} else {
			r.decode(t, &b)
		}
		e.must(http.StatusOK, "POST", "/v1/conversations/"+b.ID+"/members", bob.Token, map[string]string{"user_id": strangers[4].ID})
	})
}

// TestConversationsPaging pages through a user's conversations, ties of
// last activity included, and checks the pages cover the list once, in
// order, on both stores.
func TestConversationsPaging(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.ConversationsPage, cfg.ConversationsPageMax = 3, 5
		e := newEnv(t, store, cfg)
		alice, bob := e.register("alice"), e.register("bob")
		e.group(bob) // not alice's

		// Four conversations share one instant, three follow a second apart.
		base := time.Now().UTC().Truncate(time.Second)
		var now atomic.Int64
		now.Store(base.UnixNano())
		store.SetClock(func() time.Time { return time.Unix(0, now.Load()).UTC() })
		var made []string
		for i := range 7 {
			if i >= 4 {
				now.Add(int64(time.Second))
			}
			made = append(made, e.group(alice, bob).ID)
		}
		// Most recent first; equal activity by id, descending.
		want := slices.Clone(made[4:])
		slices.Reverse(want)
		tied := slices.Clone(made[:4])
		slices.Sort(tied)
		slices.Reverse(tied)
		want = append(want, tied...)

		type page struct {
			Conversations []conversation `json:"conversations"`
			HasMore       bool           `json:"has_more"`
			NextCursor    *string        `json:"next_cursor"`
		}
		// Without parameters: the default page size.
		var p page
		e.must(http.StatusOK, "GET", "/v1/conversations", alice.Token, nil).decode(t, &p)
		if len(p.Conversations) != 3 || !p.HasMore || p.NextCursor == nil {
			t.Fatalf("first page: %d conversations, has_more %v", len(p.Conversations), p.HasMore)
		}
		for _, limit := range []int{1, 2, 3, 5} {
			var got []string
			path := "/v1/conversations?limit=" + strconv.Itoa(limit)
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatal("paging does not end")
				}
				var p page
				e.must(http.StatusOK, "GET", path, alice.Token, nil).decode(t, &p)
				for _, c := range p.Conversations {
					got = append(got, c.ID)
				}
				if !p.HasMore {
					if p.NextCursor != nil {
						t.Fatalf("last page with next_cursor %q", *p.NextCursor)
					}
					break
				}
				if len(p.Conversations) != limit || p.NextCursor == nil {
					t.Fatalf("limit %d: a page of %d with has_more", limit, len(p.Conversations))
				}
				path = "/v1/conversations?limit=" + strconv.Itoa(limit) + "&before=" + url.QueryEscape(*p.NextCursor)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("limit %d: pages give\n%v\nwant\n%v", limit, got, want)
			}
		}

		for _, q := range []string{"limit=0", "limit=6", "limit=x"} {
			e.do("GET", "/v1/conversations?"+q, alice.Token, nil, true).wantProblem(t, http.StatusBadRequest, "invalid_field")
		}
		nulID := base64.RawURLEncoding.EncodeToString([]byte(base.Format(time.RFC3339Nano) + " \x00"))
		for _, cursor := range []string{"nope!", "bm9wZQ", nulID} { // not base64; "nope"; a NUL id
			e.do("GET", "/v1/conversations?before="+url.QueryEscape(cursor), alice.Token, nil).wantProblem(t, http.StatusBadRequest, "invalid_cursor")
		}
	})
}
