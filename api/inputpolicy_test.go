package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/confab-chat/confab/repository"
)

// TestRegisterInputPolicy: display names that could pass for someone else
// or render as nothing, and passwords of only spaces or control characters,
// get a 400 naming the field and store nothing; real names in any script
// and strong passwords with spaces inside still pass.
func TestRegisterInputPolicy(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		e.register("alice") // the store is not empty
		register := func(displayName, pw string) resp {
			t.Helper()
			body, _ := json.Marshal(map[string]string{"username": "u_" + randomHex(4), "password": pw, "display_name": displayName})
			return e.do("POST", "/v1/auth/register", "", body)
		}
		before := e.state()
		for _, name := range []string{
			"alice\u202etxt.exe", // right-to-left override
			"\u2066alice\u2069",  // isolates
			"bob\u200f",          // right-to-left mark
			"\u061c",             // Arabic letter mark
			"\u200b\u200b\u200b", // only zero-width spaces
			"\u200d\ufeff\u2060", // zero-width joiner, BOM, word joiner
			"   ",                // only spaces
			"\u3164",             // Hangul filler: a "letter" that renders as nothing
			"\u2800\u2800",       // braille blank
			"\u0301\u0301",       // only combining marks
			"a\u0000b",           // NUL
			"a\tb",               // control
		} {
			r := register(name, password)
			r.wantProblem(t, http.StatusBadRequest, "invalid_field")
			if !strings.Contains(string(r.body), "display_name") {
				t.Errorf("display name %q: the problem does not name the field: %s", name, r.body)
			}
		}
		for _, pw := range []string{
			strings.Repeat(" ", 8),
			strings.Repeat("\u3000", 8), // ideographic spaces
			strings.Repeat("\x00", 8),
			"correct\x00horse",
			"correct\nhorse",
			"\tcorrect horse",
		} {
			r := register("", pw)
			r.wantProblem(t, http.StatusBadRequest, "invalid_field")
			if !strings.Contains(string(r.body), "password") {
				t.Errorf("password %q: the problem does not name the field: %s", pw, r.body)
			}
		}
		if after := e.state(); after != before {
			t.Fatalf("refused registrations stored data:\n%s", after)
		}
		for _, name := range []string{"Ann Ü. Smith", "علي", "👩\u200d💻 Ann", "Zoe\u0301", "ميلاد\u200cی", "李小龙", "x"} {
			if r := register(name, password); r.status != http.StatusCreated {
				t.Errorf("display name %q: %d %s", name, r.status, r.body)
			}
		}
		for _, pw := range []string{"  correct horse  ", "pässwört!", "        x"} {
			if r := register("", pw); r.status != http.StatusCreated {
				t.Errorf("password %q: %d %s", pw, r.status, r.body)
			}
		}
	})
}
