package api

import (
	"testing"
	"time"
)

// TestVerifiedTokensExpire: a token remembered as verified is still
// refused once it expires (after the same leeway the parser allows), and
// a token with a bad signature is never remembered.
func TestVerifiedTokensExpire(t *testing.T) {
	tk := newTokens([]byte("test-secret-test-secret-test-secret!"), "confab", "confab", time.Minute)
	now := time.Now()
	tk.now = func() time.Time { return now }
	raw, _, err := tk.issue("u1")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second parse is answered from memory
		v, err := tk.parse(t.Context(), raw)
		if err != nil || v.userID != "u1" || v.user != "u1" || v.expiry != v.exp {
			t.Fatalf("parse: %+v, %v", v, err)
		}
	}
	if len(tk.verified) != 1 {
		t.Fatalf("%d tokens remembered", len(tk.verified))
	}
	now = now.Add(time.Minute + tokenLeeway - time.Second)
	if _, err := tk.parse(t.Context(), raw); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	now = now.Add(2 * time.Second)
	if _, err := tk.parse(t.Context(), raw); err == nil {
		t.Fatal("an expired remembered token was accepted")
	}
	if _, err := tk.parse(t.Context(), raw[:len(raw)-2]+"xx"); err == nil {
		t.Fatal("a forged signature was accepted")
	}
	if len(tk.verified) != 1 {
		t.Fatalf("%d tokens remembered", len(tk.verified))
	}
}
