package api_test

import (
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/confab-chat/confab/repository"
)

// countEvents counts the events of type typ in u's stream.
func (e *env) countEvents(u user, typ string) int {
	e.t.Helper()
	n := 0
	for _, ev := range e.stream(u) {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

func memberIDs(c conversation) []string {
	var ids []string
	for _, m := range c.Members {
		ids = append(ids, m.UserID)
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids ...string) []string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

func TestDirectConversation(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		direct := func(to user) map[string]any {
			return map[string]any{"kind": "direct", "member_ids": []string{to.ID}}
		}

		var c conversation
		e.must(http.StatusCreated, "POST", "/v1/conversations", alice.Token, direct(bob)).decode(t, &c)
		if c.Kind != "direct" || c.Title != nil || !slices.Equal(memberIDs(c), sorted(alice.ID, bob.ID)) || c.LastMessage != nil {
			t.Fatalf("created %+v", c)
		}
		for _, from := range []user{alice, bob} {
			to := bob
			if from == bob {
				to = alice
			}
			var again conversation
			e.must(http.StatusOK, "POST", "/v1/conversations", from.Token, direct(to)).decode(t, &again)
			if again.ID != c.ID {
				t.Fatalf("%s got another direct conversation: %s, not %s", from.Username, again.ID, c.ID)
			}
		}
		e.do("POST", "/v1/conversations", alice.Token, direct(alice)).wantProblem(t, http.StatusBadRequest, "invalid_field")
		for _, u := range []user{alice, bob} {
			if n := e.countEvents(u, repository.EventConversationCreated); n != 1 {
				t.Fatalf("%s has %d conversation.created events", u.Username, n)
			}
		}

		// Both sides creating it at once still make one conversation.
		carol, dave := e.register("carol"), e.register("dave")
		var wg sync.WaitGroup
		results := make([]resp, 6)
		for i := range results {
			from, to := carol, dave
			if i%2 == 1 {
				from, to = dave, carol
			}
			wg.Go(func() { results[i] = e.do("POST", "/v1/conversations", from.Token, direct(to)) })
		}
		wg.Wait()
		created, id := 0, ""
		for _, r := range results {
			var got conversation
			r.decode(t, &got)
			switch {
			case r.status == http.StatusCreated:
				created++
			case r.status != http.StatusOK:
				t.Fatalf("concurrent create: %d %s", r.status, r.body)
			}
			if id == "" {
				id = got.ID
			}
			if got.ID != id {
				t.Fatalf("two direct conversations: %s and %s", id, got.ID)
			}
		}
		if created != 1 || e.countEvents(carol, repository.EventConversationCreated) != 1 {
			t.Fatalf("%d of the concurrent creates answered 201", created)
		}
	})
}

func TestGroupConversation(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob, carol := e.register("alice"), e.register("bob"), e.register("carol")
		var g conversation
		e.must(http.StatusCreated, "POST", "/v1/conversations", alice.Token, map[string]any{
			"kind": "group", "member_ids": []string{bob.ID, carol.ID, bob.ID, alice.ID}, "title": "  Lunch  ",
		}).decode(t, &g)
		if g.Kind != "group" || g.Title == nil || *g.Title != "Lunch" || g.UnreadCount != 0 || g.LastMessage != nil ||
			!slices.Equal(memberIDs(g), sorted(alice.ID, bob.ID, carol.ID)) {
			t.Fatalf("created %+v", g)
		}
		for _, u := range []user{alice, bob, carol} {
			var got conversation
			e.must(http.StatusOK, "GET", "/v1/conversations/"+g.ID, u.Token, nil).decode(t, &got)
			if got.ID != g.ID || !slices.Equal(memberIDs(got), memberIDs(g)) {
				t.Fatalf("%s sees %+v", u.Username, got)
			}
			if n := e.countEvents(u, repository.EventConversationCreated); n != 1 {
				t.Fatalf("%s has %d conversation.created events", u.Username, n)
			}
		}
		// A blank title is no title; a group may start with its creator alone.
		var solo conversation
		e.must(http.StatusCreated, "POST", "/v1/conversations", alice.Token, map[string]any{"kind": "group", "member_ids": []string{}, "title": " "}).decode(t, &solo)
		if solo.Title != nil || !slices.Equal(memberIDs(solo), []string{alice.ID}) {
			t.Fatalf("solo group %+v", solo)
		}
	})
}

func TestConversationListAndUnread(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		c1, c2, c3 := e.group(alice, bob), e.group(alice, bob), e.group(alice, bob)
		list := func(u user) []conversation {
			t.Helper()
			var out struct{ Conversations []conversation }
			e.must(http.StatusOK, "GET", "/v1/conversations", u.Token, nil).decode(t, &out)
			return out.Conversations
		}
		ids := func(cs []conversation) []string {
			var out []string
			for _, c := range cs {
				out = append(out, c.ID)
			}
			return out
		}
		if got := ids(list(bob)); !slices.Equal(got, []string{c3.ID, c2.ID, c1.ID}) {
			t.Fatalf("newest first: %v", got)
		}

		m1 := e.send(alice, c1.ID, "one")
		e.send(alice, c2.ID, "two")
		e.send(alice, c3.ID, "three")
		m2 := e.send(alice, c1.ID, "four")
		m3 := e.send(alice, c1.ID, "five")
		cs := list(bob)
		if got := ids(cs); !slices.Equal(got, []string{c1.ID, c3.ID, c2.ID}) {
			t.Fatalf("by last activity: %v", got)
		}
		if cs[0].LastMessage == nil || cs[0].LastMessage.ID != m3.ID || cs[1].LastMessage.Body != "three" || cs[2].LastMessage.Body != "two" {
			t.Fatalf("last messages: %+v", cs)
		}
		if cs[0].UnreadCount != 3 || cs[1].UnreadCount != 1 || cs[2].UnreadCount != 1 {
			t.Fatalf("bob's unread counts: %d %d %d", cs[0].UnreadCount, cs[1].UnreadCount, cs[2].UnreadCount)
		}
		for _, c := range list(alice) {
			if c.UnreadCount != 0 {
				t.Fatalf("alice has %d unread of her own messages", c.UnreadCount)
			}
		}

		unread := func(u user, convID string) int {
			t.Helper()
			var c conversation
			e.must(http.StatusOK, "GET", "/v1/conversations/"+convID, u.Token, nil).decode(t, &c)
			return c.UnreadCount
		}
		read := func(u user, m message) {
			t.Helper()
			e.must(http.StatusNoContent, "POST", "/v1/conversations/"+m.ConversationID+"/read", u.Token, map[string]string{"message_id": m.ID})
		}
		readEvents := e.countEvents(alice, repository.EventRead)
		read(bob, m2)
		if n := unread(bob, c1.ID); n != 1 {
			t.Fatalf("after reading m2: %d unread", n)
		}
		if n := e.countEvents(alice, repository.EventRead); n != readEvents+1 {
			t.Fatalf("alice got %d read events, want %d", n, readEvents+1)
		}
		// Never backwards, and a no-op announces nothing.
		read(bob, m1)
		read(bob, m2)
		if n := unread(bob, c1.ID); n != 1 {
			t.Fatalf("after reading an older message: %d unread", n)
		}
		if n := e.countEvents(alice, repository.EventRead); n != readEvents+1 {
			t.Fatalf("a marker that did not move was announced (%d read events)", n)
		}
		read(bob, m3)
		if n := unread(bob, c1.ID); n != 0 {
			t.Fatalf("after reading the last message: %d unread", n)
		}
		// Reading moves nothing in the list order.
		if got := ids(list(bob)); !slices.Equal(got, []string{c1.ID, c3.ID, c2.ID}) {
			t.Fatalf("order after reads: %v", got)
		}
		// A reply counts as read up to itself.
		e.send(alice, c2.ID, "six")
		e.send(bob, c2.ID, "seven")
		if n := unread(bob, c2.ID); n != 0 {
			t.Fatalf("bob replied and has %d unread", n)
		}
		if n := unread(alice, c2.ID); n != 1 {
			t.Fatalf("alice has %d unread after bob's reply", n)
		}
	})
}

func TestMembership(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.MaxGroupMembers = 3
		e := newEnv(t, store, cfg)
		alice, bob, carol, dave := e.register("alice"), e.register("bob"), e.register("carol"), e.register("dave")
		g := e.group(alice, bob)
		p := "/v1/conversations/" + g.ID

		var got conversation
		e.must(http.StatusOK, "POST", p+"/members", bob.Token, map[string]string{"user_id": carol.ID}).decode(t, &got)
		if !slices.Equal(memberIDs(got), sorted(alice.ID, bob.ID, carol.ID)) {
			t.Fatalf("after adding carol: %+v", got)
		}
		for _, u := range []user{alice, bob, carol} {
			if n := e.countEvents(u, repository.EventMemberJoined); n != 1 {
				t.Fatalf("%s has %d member.joined events", u.Username, n)
			}
		}
		e.must(http.StatusOK, "GET", p+"/messages", carol.Token, nil)

		// Adding a member again changes and announces nothing.
		before := e.state()
		e.must(http.StatusOK, "POST", p+"/members", alice.Token, map[string]string{"user_id": carol.ID}).decode(t, &got)
		if !slices.Equal(memberIDs(got), sorted(alice.ID, bob.ID, carol.ID)) || e.state() != before {
			t.Fatalf("adding a member twice changed something: %+v", got)
		}

		// The group is full at 3; creating one larger fails too.
		e.do("POST", p+"/members", alice.Token, map[string]string{"user_id": dave.ID}).wantProblem(t, http.StatusConflict, "group_full")
		e.do("POST", "/v1/conversations", alice.Token, map[string]any{"kind": "group", "member_ids": []string{bob.ID, carol.ID, dave.ID}}).
			wantProblem(t, http.StatusConflict, "group_full")
		e.group(alice, bob, carol) // exactly at the cap

		// Direct conversations have exactly their two members.
		var d conversation
		e.must(http.StatusCreated, "POST", "/v1/conversations", alice.Token, map[string]any{"kind": "direct", "member_ids": []string{bob.ID}}).decode(t, &d)
		e.do("POST", "/v1/conversations/"+d.ID+"/members", alice.Token, map[string]string{"user_id": carol.ID}).wantProblem(t, http.StatusConflict, "not_a_group")
		e.do("DELETE", "/v1/conversations/"+d.ID+"/members/"+alice.ID, alice.Token, nil).wantProblem(t, http.StatusConflict, "not_a_group")

		// Removing someone, and leaving: 204, then 404 for them.
		e.must(http.StatusNoContent, "DELETE", p+"/members/"+carol.ID, alice.Token, nil)
		e.do("GET", p, carol.Token, nil).wantProblem(t, http.StatusNotFound, "not_found")
		e.do("DELETE", p+"/members/"+carol.ID, alice.Token, nil).wantProblem(t, http.StatusNotFound, "not_found")
		e.must(http.StatusNoContent, "DELETE", p+"/members/"+bob.ID, bob.Token, nil)
		for _, path := range []string{p, p + "/messages"} {
			e.do("GET", path, bob.Token, nil).wantProblem(t, http.StatusNotFound, "not_found")
		}
		e.do("POST", p+"/messages", bob.Token, map[string]string{"body": "still here?"}).wantProblem(t, http.StatusNotFound, "not_found")
		e.must(http.StatusOK, "GET", p, alice.Token, nil).decode(t, &got)
		if !slices.Equal(memberIDs(got), []string{alice.ID}) {
			t.Fatalf("after carol was removed and bob left: %+v", got)
		}
		// Everyone concerned heard of both departures, the ones who left included.
		for u, want := range map[user]int{alice: 2, bob: 2, carol: 1} {
			if n := e.countEvents(u, repository.EventMemberLeft); n != want {
				t.Fatalf("%s has %d member.left events, want %d", u.Username, n, want)
			}
		}
		// There is room again, and a former member can come back.
		e.must(http.StatusOK, "POST", p+"/members", alice.Token, map[string]string{"user_id": bob.ID})
		e.must(http.StatusOK, "GET", p+"/messages", bob.Token, nil)
	})
}

func TestHistoryPaging(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		var sent []message
		for _, body := range []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7"} {
			from := alice
			if len(sent)%2 == 1 {
				from = bob
			}
			sent = append(sent, e.send(from, g.ID, body))
		}
		page := func(query string) ([]string, bool) {
			t.Helper()
			var out struct {
				Messages []message `json:"messages"`
				HasMore  bool      `json:"has_more"`
			}
			e.must(http.StatusOK, "GET", "/v1/conversations/"+g.ID+"/messages"+query, bob.Token, nil).decode(t, &out)
			var bodies []string
			for i, m := range out.Messages {
				bodies = append(bodies, m.Body)
				if i > 0 && m.Seq != out.Messages[i-1].Seq+1 {
					t.Fatalf("page %s is not in order: %+v", query, out.Messages)
				}
			}
			return bodies, out.HasMore
		}
		for _, tc := range []struct {
			query string
			want  []string
			more  bool
		}{
			{"", []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7"}, false},
			{"?limit=7", []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7"}, false},
			{"?limit=6", []string{"m2", "m3", "m4", "m5", "m6", "m7"}, true},
			{"?limit=3", []string{"m5", "m6", "m7"}, true},
			{"?limit=3&before=" + sent[4].ID, []string{"m2", "m3", "m4"}, true},
			{"?limit=3&before=" + sent[1].ID, []string{"m1"}, false},
			{"?before=" + sent[0].ID, nil, false},
			{"?before=" + sent[6].ID + "&limit=1", []string{"m6"}, true},
			{"?limit=100", []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7"}, false},
		} {
			got, more := page(tc.query)
			if !slices.Equal(got, tc.want) || more != tc.more {
				t.Errorf("%s: %v has_more=%v, want %v has_more=%v", tc.query, got, more, tc.want, tc.more)
			}
		}

		// Walking back page by page visits every message once.
		var all []string
		query := "?limit=2"
		for {
			var out struct {
				Messages []message `json:"messages"`
				HasMore  bool      `json:"has_more"`
			}
			e.must(http.StatusOK, "GET", "/v1/conversations/"+g.ID+"/messages"+query, alice.Token, nil).decode(t, &out)
			var bodies []string
			for _, m := range out.Messages {
				bodies = append(bodies, m.Body)
			}
			all = append(bodies, all...)
			if !out.HasMore {
				break
			}
			query = "?limit=2&before=" + out.Messages[0].ID
		}
		if !slices.Equal(all, []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7"}) {
			t.Fatalf("walked %v", all)
		}

		// before must name a message of this conversation.
		other := e.group(alice, bob)
		elsewhere := e.send(alice, other.ID, "elsewhere")
		e.do("GET", "/v1/conversations/"+g.ID+"/messages?before="+elsewhere.ID, bob.Token, nil).wantProblem(t, http.StatusNotFound, "not_found")
	})
}

// TestNewMemberHasNothingUnread: the history before someone joined is there
// to scroll back through, not counted as unread.
func TestNewMemberHasNothingUnread(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob, carol := e.register("alice"), e.register("bob"), e.register("carol")
		g := e.group(alice, bob)
		for range 3 {
			e.send(alice, g.ID, "before carol")
		}
		e.must(http.StatusOK, "POST", "/v1/conversations/"+g.ID+"/members", alice.Token, map[string]string{"user_id": carol.ID})
		var c conversation
		e.must(http.StatusOK, "GET", "/v1/conversations/"+g.ID, carol.Token, nil).decode(t, &c)
		if c.UnreadCount != 0 {
			t.Fatalf("carol joins with %d unread", c.UnreadCount)
		}
		e.send(alice, g.ID, "after carol")
		e.must(http.StatusOK, "GET", "/v1/conversations/"+g.ID, carol.Token, nil).decode(t, &c)
		if c.UnreadCount != 1 {
			t.Fatalf("carol has %d unread, want 1", c.UnreadCount)
		}
	})
}
