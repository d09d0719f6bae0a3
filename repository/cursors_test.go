package repository_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// TestEventsAfterCursors: each cursor gets the window of up to limit events
// after it; overlapping windows of one user return each row once, in user
// and seq order, however many cursors there are.
func TestEventsAfterCursors(t *testing.T) {
	for _, d := range dbtest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			store := dbtest.Open(t, d)
			ctx := context.Background()
			var ids []string
			for i := range 3 {
				u, err := store.CreateUser(ctx, fmt.Sprintf("cursor%d", i), "", "x")
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, u.ID)
			}
			conv, _, err := store.CreateGroup(ctx, ids[0], ids[1:], nil, 10)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 { // every stream: 1 conversation.created + 10 messages
				if _, _, _, err := store.SendMessage(ctx, ids[i%3], conv.ID, "hi", nil); err != nil {
					t.Fatal(err)
				}
			}
			a, b, c := ids[0], ids[1], ids[2]
			type row struct {
				user string
				seq  int64
			}
			seqs := func(user string, from, to int64) []row {
				var out []row
				for s := from; s <= to; s++ {
					out = append(out, row{user, s})
				}
				return out
			}
			for _, tc := range []struct {
				name    string
				cursors []repository.Cursor
				want    []row
			}{
				{"overlapping windows", []repository.Cursor{{UserID: a, After: 0}, {UserID: a, After: 3}, {UserID: b, After: 9}, {UserID: c, After: 11}},
					append(seqs(a, 1, 8), seqs(b, 10, 11)...)},
				{"one cursor many times", slices.Repeat([]repository.Cursor{{UserID: a, After: 4}, {UserID: b, After: 0}}, 150),
					append(seqs(a, 5, 9), seqs(b, 1, 5)...)},
				{"none", nil, nil},
			} {
				evs, err := store.EventsAfterCursors(ctx, tc.cursors, 5)
				if err != nil {
					t.Fatal(err)
				}
				var got []row
				for _, e := range evs {
					got = append(got, row{e.UserID, e.Seq})
				}
				want := tc.want
				slices.SortFunc(want, func(x, y row) int {
					return cmp.Or(strings.Compare(x.user, y.user), cmp.Compare(x.seq, y.seq))
				})
				if !slices.Equal(got, want) {
					t.Errorf("%s: got %v, want %v", tc.name, got, want)
				}
			}
		})
	}
}
