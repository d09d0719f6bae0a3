package repository_test

import (
	"context"
	"slices"
	"testing"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// TestStreamFollowsMembership attacks invariant 2 of docs/ARCHITECTURE.md on UserEvents: a
// user's stream holds a conversation's events from the one that made them
// a member (conversation.created, member.joined) to their member.left, both
// included, and nothing else of it, however far back they resume from;
// leaving and rejoining leaves a hole. Paging through a stream in small
// pages gives the same events.
func TestStreamFollowsMembership(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			store := dbtest.Open(t, dialect)
			ctx := context.Background()
			ids := createUsers(t, store, "ann", "ben", "cat")
			ann, ben, cat := ids[0], ids[1], ids[2]
			committed := recordCommits(store)
			one := func(what string) repository.LogEvent {
				t.Helper()
				evs := committed.take()
				if len(evs) != 1 {
					t.Fatalf("%s committed %v", what, types(evs))
				}
				return evs[0]
			}
			g, err := store.CreateGroup(ctx, ann, []string{ben}, nil, 10)
			if err != nil {
				t.Fatal(err)
			}
			created := one("create")
			send := func(from, body string) repository.LogEvent {
				t.Helper()
				if _, _, err := store.SendMessage(ctx, from, g.ID, body, nil); err != nil {
					t.Fatal(err)
				}
				return one("send " + body)
			}
			add := func(who string) repository.LogEvent {
				t.Helper()
				if _, err := store.AddMember(ctx, ann, g.ID, who, 10); err != nil {
					t.Fatal(err)
				}
				return one("add")
			}
			remove := func(by, who string) repository.LogEvent {
				t.Helper()
				if err := store.RemoveMember(ctx, by, g.ID, who); err != nil {
					t.Fatal(err)
				}
				return one("remove")
			}
			m1 := send(ann, "m1")
			catJoined := add(cat)
			m2 := send(cat, "m2")
			benLeft := remove(ben, ben) // ben leaves
			m3 := send(ann, "m3")       // while ben is out
			benBack := add(ben)
			m4 := send(ben, "m4")
			catRemoved := remove(ann, cat) // cat is removed
			m5 := send(ann, "m5")
			// Another conversation of cat's, after cat left g.
			if _, _, err := store.CreateDirect(ctx, cat, ann); err != nil {
				t.Fatal(err)
			}
			direct := one("direct")
			head := direct.Position()
			zero := repository.Position{}

			for _, tc := range []struct {
				name        string
				user        string
				after, upTo repository.Position
				want        []repository.LogEvent
			}{
				{"ann sees all", ann, zero, head, []repository.LogEvent{created, m1, catJoined, m2, benLeft, m3, benBack, m4, catRemoved, m5, direct}},
				{"ben misses what was said while he was out", ben, zero, head, []repository.LogEvent{created, m1, catJoined, m2, benLeft, benBack, m4, catRemoved, m5}},
				{"ben resumes from before he left", ben, m1.Position(), head, []repository.LogEvent{catJoined, m2, benLeft, benBack, m4, catRemoved, m5}},
				{"ben up to his leaving: his member.left last", ben, m1.Position(), m3.Position(), []repository.LogEvent{catJoined, m2, benLeft}},
				{"ben from his member.left", ben, benLeft.Position(), head, []repository.LogEvent{benBack, m4, catRemoved, m5}},
				{"ben from a position he never saw", ben, m3.Position(), head, []repository.LogEvent{benBack, m4, catRemoved, m5}},
				{"cat from her member.joined on", cat, zero, head, []repository.LogEvent{catJoined, m2, benLeft, m3, benBack, m4, catRemoved, direct}},
				{"cat resumes from before she was removed", cat, m2.Position(), head, []repository.LogEvent{benLeft, m3, benBack, m4, catRemoved, direct}},
				{"cat after her member.left", cat, catRemoved.Position(), head, []repository.LogEvent{direct}},
				{"cat up to before she joined", cat, zero, m1.Position(), nil},
			} {
				want := positions(tc.want)
				got, err := store.UserEvents(ctx, tc.user, tc.after, tc.upTo, 100)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(positions(got), want) {
					t.Errorf("%s: %v, want %v", tc.name, types(got), types(tc.want))
					continue
				}
				for i := range got {
					if got[i].Data != tc.want[i].Data || got[i].ConversationID != tc.want[i].ConversationID {
						t.Errorf("%s: event %d read back as %s %q", tc.name, i, got[i].Type, got[i].Data)
					}
				}
				// Page by page, as a subscriber catching up does.
				for _, limit := range []int{1, 2, 3} {
					var paged []repository.LogEvent
					for after := tc.after; ; {
						page, err := store.UserEvents(ctx, tc.user, after, tc.upTo, limit)
						if err != nil {
							t.Fatal(err)
						}
						paged = append(paged, page...)
						if len(page) < limit {
							break
						}
						after = page[len(page)-1].Position()
					}
					if !slices.Equal(positions(paged), want) {
						t.Errorf("%s, pages of %d: %v", tc.name, limit, types(paged))
					}
				}
			}

			// The spans behind it.
			spans, err := store.Spans(ctx, ben, zero)
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(spans, func(a, b repository.Span) int { return a.Join.Compare(b.Join) })
			if len(spans) != 2 || spans[0].Join != created.Position() || spans[0].Left == nil || *spans[0].Left != benLeft.Position() ||
				spans[1].Join != benBack.Position() || spans[1].Left != nil {
				t.Fatalf("ben's spans: %+v", spans)
			}
			if !spans[0].Holds(benLeft.Position()) || spans[0].Holds(m3.Position()) || !spans[0].Holds(created.Position()) || spans[1].Holds(m3.Position()) {
				t.Fatal("a span does not hold exactly its join to its leave")
			}
			// A span that ended at or before `after` is of no use after it.
			if spans, err := store.Spans(ctx, ben, benLeft.Position()); err != nil || len(spans) != 1 || spans[0].Join != benBack.Position() {
				t.Fatalf("ben's spans after he left: %+v (%v)", spans, err)
			}
			if spans, err := store.Spans(ctx, cat, catRemoved.Position()); err != nil || len(spans) != 1 || spans[0].ConversationID == g.ID {
				t.Fatalf("cat's spans after she was removed: %+v (%v)", spans, err)
			}
		})
	}
}
