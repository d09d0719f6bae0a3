package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/confab-chat/confab/repository"
)

// TestDeletedUserIsUnauthorized: a valid access token whose user no longer
// exists gets 401 on every endpoint, the stream endpoints included, and no
// 500: whether the token was seen before the user went or not.
func TestDeletedUserIsUnauthorized(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		seen, unseen := e.register("seen"), e.register("unseen")
		e.must(http.StatusOK, "GET", "/v1/me", seen.Token, nil) // remembered as verified
		for _, u := range []user{seen, unseen} {
			if _, err := store.DB().NewDelete().TableExpr("users").Where("id = ?", u.ID).Exec(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		for _, path := range []string{"/v1/events/poll?timeout=0", "/v1/events/poll?timeout=0&cursor=0-0", "/v1/events"} {
			for _, u := range []user{seen, unseen} {
				if r := e.do("GET", path, u.Token, nil); r.status != http.StatusUnauthorized || r.problemCode() != "unauthorized" {
					t.Errorf("%s as %s: %d %s", path, u.Username, r.status, r.body)
				}
			}
		}
		if r := e.do("GET", "/v1/me", seen.Token, nil); r.status != http.StatusUnauthorized {
			t.Errorf("/v1/me as seen: %d %s", r.status, r.body)
		}
		for _, path := range []string{"/v1/me", "/v1/conversations", "/v1/sessions"} {
			if r := e.do("GET", path, unseen.Token, nil); r.status != http.StatusUnauthorized {
				t.Errorf("%s as unseen: %d %s", path, r.status, r.body)
			}
		}
	})
}
