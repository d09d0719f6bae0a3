package repository_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository/dbtest"
)

// TestPresenceMaxMembers: presence goes through conversations up to the
// limit only, and the member count it is judged by follows joins and
// leaves.
func TestPresenceMaxMembers(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			opts := dbtest.Options(t, dialect)
			opts.PresenceMaxMembers = 3
			store := dbtest.OpenWith(t, opts)
			ctx := context.Background()
			ids := createUsers(t, store, "ann", "ben", "cat", "dan")
			ann, ben, cat, dan := ids[0], ids[1], ids[2], ids[3]
			if _, err := store.HeartbeatNode(ctx, "n1"); err != nil {
				t.Fatal(err)
			}
			for _, u := range ids {
				if _, err := store.CreateSession(ctx, u, "sse", "n1", "test"); err != nil {
					t.Fatal(err)
				}
			}
			check := func(why string, want ...string) {
				t.Helper()
				slices.Sort(want)
				got, err := store.CoMembers(ctx, ann)
				if err != nil {
					t.Fatal(err)
				}
				online, err := store.OnlineCoMembers(ctx, ann, time.Now().Add(-time.Minute))
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(got)
				slices.Sort(online)
				if !slices.Equal(got, want) || !slices.Equal(online, want) {
					t.Fatalf("%s: ann shares presence with %v (online %v), want %v", why, got, online, want)
				}
			}
			g, err := store.CreateGroup(ctx, ann, []string{ben, cat}, nil, 10)
			if err != nil {
				t.Fatal(err)
			}
			check("a group of three", ben, cat)
			if _, err := store.AddMember(ctx, ann, g.ID, dan, 10); err != nil {
				t.Fatal(err)
			}
			check("the group grew to four")
			if _, _, err := store.CreateDirect(ctx, ann, dan); err != nil {
				t.Fatal(err)
			}
			check("a direct conversation with dan", dan)
			if err := store.RemoveMember(ctx, cat, g.ID, cat); err != nil {
				t.Fatal(err)
			}
			check("cat left: three again", ben, dan)
		})
	}
}
