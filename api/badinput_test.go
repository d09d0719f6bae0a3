package api_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/confab-chat/confab/repository"
)

// TestBadInput sends every kind of malformed request the API can get and
// checks that each gets its own 4xx problem, never a 5xx, and that nothing
// stored changed.
func TestBadInput(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		m := e.send(alice, g.ID, "the first message")
		var d conversation
		e.must(http.StatusCreated, "POST", "/v1/conversations", alice.Token, map[string]any{"kind": "direct", "member_ids": []string{bob.ID}}).decode(t, &d)
		other := e.group(bob)
		otherMsg := e.send(bob, other.ID, "elsewhere")

		conv := "/v1/conversations/" + g.ID
		send := conv + "/messages"
		const unknown = "01890000-0000-7000-8000-000000000000"
		long := func(s string, n int) string { return strings.Repeat(s, n) }

		cases := []struct {
			name         string
			method, path string
			body         any // string or []byte, sent verbatim
			status       int
			code         string
			// validRequest: the request matches openapi.yaml (the answer is
			// still an error); otherwise its contract check is skipped.
			validRequest bool
			noAuth       bool
		}{
			// Not JSON, or not one JSON object.
			{name: "truncated JSON", method: "POST", path: send, body: `{"body":`, status: 400, code: "invalid_json"},
			{name: "syntax error", method: "POST", path: send, body: `{body: "x"}`, status: 400, code: "invalid_json"},
			{name: "array", method: "POST", path: send, body: `["x"]`, status: 400, code: "invalid_json"},
			{name: "null", method: "POST", path: send, body: `null`, status: 400, code: "invalid_json"},
			{name: "string", method: "POST", path: send, body: `"x"`, status: 400, code: "invalid_json"},
			{name: "empty body", method: "POST", path: send, body: ``, status: 400, code: "invalid_json"},
			{name: "whitespace body", method: "POST", path: send, body: " \r\n\t ", status: 400, code: "invalid_json"},
			{name: "trailing object", method: "POST", path: send, body: `{"body":"x"} {"body":"y"}`, status: 400, code: "invalid_json"},
			{name: "trailing garbage", method: "POST", path: send, body: `{"body":"x"}x`, status: 400, code: "invalid_json"},
			{name: "trailing NUL byte", method: "POST", path: send, body: "{\"body\":\"x\"}\x00", status: 400, code: "invalid_json"},
			{name: "raw NUL in string", method: "POST", path: send, body: "{\"body\":\"a\x00b\"}", status: 400, code: "invalid_json"},
			{name: "duplicate key", method: "POST", path: send, body: `{"body":"a","body":"b"}`, status: 400, code: "invalid_json"},
			{name: "duplicate key, different values types", method: "POST", path: send, body: `{"body":"a","client_msg_id":"k","client_msg_id":null}`, status: 400, code: "invalid_json"},
			{name: "differently-cased key", method: "POST", path: send, body: `{"Body":"x"}`, status: 400, code: "invalid_json"},
			{name: "differently-cased duplicate", method: "POST", path: send, body: `{"body":"a","BODY":"b"}`, status: 400, code: "invalid_json"},
			{name: "unknown key", method: "POST", path: send, body: `{"body":"x","sender_id":"` + bob.ID + `"}`, status: 400, code: "invalid_json"},

			// Not UTF-8.
			{name: "invalid UTF-8 bytes", method: "POST", path: send, body: []byte("{\"body\":\"\xff\xfe\"}"), status: 400, code: "invalid_utf8"},
			{name: "UTF-8 encoded surrogate", method: "POST", path: send, body: []byte("{\"body\":\"\xed\xa0\x80\"}"), status: 400, code: "invalid_utf8"},
			{name: "overlong UTF-8", method: "POST", path: send, body: []byte("{\"body\":\"\xc0\xaf\"}"), status: 400, code: "invalid_utf8"},
			{name: "invalid UTF-8 in a key", method: "POST", path: send, body: []byte("{\"bo\xffdy\":\"x\"}"), status: 400, code: "invalid_utf8"},
			{name: "lone high surrogate escape", method: "POST", path: send, body: `{"body":"a\ud800b"}`, status: 400, code: "invalid_utf8"},
			{name: "lone low surrogate escape", method: "POST", path: send, body: `{"body":"\udc00"}`, status: 400, code: "invalid_utf8"},
			{name: "reversed surrogate pair", method: "POST", path: send, body: `{"body":"\udc00\ud800"}`, status: 400, code: "invalid_utf8"},
			{name: "high surrogate then non-surrogate", method: "POST", path: send, body: `{"body":"\ud83d\u0041"}`, status: 400, code: "invalid_utf8"},

			// Wrong types and values.
			{name: "body is a number", method: "POST", path: send, body: `{"body":123}`, status: 400, code: "invalid_field"},
			{name: "body is an object", method: "POST", path: send, body: `{"body":{"text":"x"}}`, status: 400, code: "invalid_field"},
			{name: "client_msg_id is a number", method: "POST", path: send, body: `{"body":"x","client_msg_id":5}`, status: 400, code: "invalid_field"},
			{name: "missing body", method: "POST", path: send, body: `{}`, status: 400, code: "invalid_field"},
			{name: "empty message", method: "POST", path: send, body: `{"body":""}`, status: 400, code: "invalid_field"},
			{name: "blank message", method: "POST", path: send, body: `{"body":" \n\t"}`, status: 400, code: "invalid_field"},
			{name: "escaped NUL in message", method: "POST", path: send, body: `{"body":"a\u0000b"}`, status: 400, code: "invalid_field"},
			{name: "4001 characters", method: "POST", path: send, body: `{"body":"` + long("x", 4001) + `"}`, status: 400, code: "invalid_field"},
			{name: "4001 two-byte characters", method: "POST", path: send, body: `{"body":"` + long("é", 4001) + `"}`, status: 400, code: "invalid_field"},
			{name: "4001 escaped characters", method: "POST", path: send, body: `{"body":"` + long(`\u00e9`, 4001) + `"}`, status: 400, code: "invalid_field"},
			{name: "empty client_msg_id", method: "POST", path: send, body: `{"body":"x","client_msg_id":""}`, status: 400, code: "invalid_field"},
			{name: "65-byte client_msg_id", method: "POST", path: send, body: `{"body":"x","client_msg_id":"` + long("k", 65) + `"}`, status: 400, code: "invalid_field"},
			{name: "NUL in client_msg_id", method: "POST", path: send, body: `{"body":"x","client_msg_id":"a\u0000"}`, status: 400, code: "invalid_field"},

			// Too large.
			{name: "2 MiB request", method: "POST", path: send, body: `{"body":"` + long("x", 2<<20) + `"}`, status: 413, code: "body_too_large"},
			{name: "just over 64 KiB", method: "POST", path: send, body: `{"body":"` + long("x", 64<<10) + `"}`, status: 413, code: "body_too_large"},
			{name: "2 MiB registration", method: "POST", path: "/v1/auth/register", body: `{"username":"big","password":"` + long("p", 2<<20) + `"}`, status: 413, code: "body_too_large", noAuth: true},

			// Unknown ids and ids that cannot exist.
			{name: "send to unknown conversation", method: "POST", path: "/v1/conversations/" + unknown + "/messages", body: `{"body":"x"}`, status: 404, code: "not_found", validRequest: true},
			{name: "get unknown conversation", method: "GET", path: "/v1/conversations/" + unknown, status: 404, code: "not_found", validRequest: true},
			{name: "history of unknown conversation", method: "GET", path: "/v1/conversations/" + unknown + "/messages", status: 404, code: "not_found", validRequest: true},
			{name: "NUL conversation id", method: "GET", path: "/v1/conversations/%00", status: 404, code: "not_found"},
			{name: "NUL conversation id, send", method: "POST", path: "/v1/conversations/a%00b/messages", body: `{"body":"x"}`, status: 404, code: "not_found"},
			{name: "invalid UTF-8 conversation id", method: "GET", path: "/v1/conversations/%ff%fe/messages", status: 404, code: "not_found"},
			{name: "before unknown message", method: "GET", path: send + "?before=" + unknown, status: 404, code: "not_found", validRequest: true},
			{name: "before a message of another conversation", method: "GET", path: send + "?before=" + otherMsg.ID, status: 404, code: "not_found", validRequest: true},
			{name: "before NUL", method: "GET", path: send + "?before=%00", status: 404, code: "not_found"},
			{name: "read unknown message", method: "POST", path: conv + "/read", body: `{"message_id":"` + unknown + `"}`, status: 404, code: "not_found", validRequest: true},
			{name: "read a message of another conversation", method: "POST", path: conv + "/read", body: `{"message_id":"` + otherMsg.ID + `"}`, status: 404, code: "not_found", validRequest: true},
			{name: "read NUL message id", method: "POST", path: conv + "/read", body: `{"message_id":"\u0000"}`, status: 404, code: "not_found"},
			{name: "read without message_id", method: "POST", path: conv + "/read", body: `{}`, status: 400, code: "invalid_field"},
			{name: "read with a numeric message_id", method: "POST", path: conv + "/read", body: `{"message_id":1}`, status: 400, code: "invalid_field"},
			{name: "add unknown user", method: "POST", path: conv + "/members", body: `{"user_id":"` + unknown + `"}`, status: 404, code: "not_found", validRequest: true},
			{name: "add NUL user", method: "POST", path: conv + "/members", body: `{"user_id":"\u0000"}`, status: 404, code: "not_found"},
			{name: "add empty user id", method: "POST", path: conv + "/members", body: `{"user_id":""}`, status: 400, code: "invalid_field"},
			{name: "add numeric user id", method: "POST", path: conv + "/members", body: `{"user_id":7}`, status: 400, code: "invalid_field"},
			{name: "remove unknown user", method: "DELETE", path: conv + "/members/" + unknown, status: 404, code: "not_found", validRequest: true},
			{name: "remove NUL user", method: "DELETE", path: conv + "/members/%00", status: 404, code: "not_found"},
			{name: "remove from a direct conversation", method: "DELETE", path: "/v1/conversations/" + d.ID + "/members/" + bob.ID, status: 409, code: "not_a_group", validRequest: true},
			{name: "add to a direct conversation", method: "POST", path: "/v1/conversations/" + d.ID + "/members", body: `{"user_id":"` + bob.ID + `"}`, status: 409, code: "not_a_group", validRequest: true},

			// Paging.
			{name: "limit 0", method: "GET", path: send + "?limit=0", status: 400, code: "invalid_field"},
			{name: "limit 101", method: "GET", path: send + "?limit=101", status: 400, code: "invalid_field"},
			{name: "negative limit", method: "GET", path: send + "?limit=-1", status: 400, code: "invalid_field"},
			{name: "fractional limit", method: "GET", path: send + "?limit=1.5", status: 400, code: "invalid_field"},
			{name: "text limit", method: "GET", path: send + "?limit=ten", status: 400, code: "invalid_field"},
			{name: "huge limit", method: "GET", path: send + "?limit=99999999999999999999", status: 400, code: "invalid_field"},

			// Creating conversations.
			{name: "unknown kind", method: "POST", path: "/v1/conversations", body: `{"kind":"channel","member_ids":[]}`, status: 400, code: "invalid_field"},
			{name: "missing kind", method: "POST", path: "/v1/conversations", body: `{"member_ids":["` + bob.ID + `"]}`, status: 400, code: "invalid_field"},
			{name: "member_ids is a string", method: "POST", path: "/v1/conversations", body: `{"kind":"group","member_ids":"` + bob.ID + `"}`, status: 400, code: "invalid_field"},
			{name: "member_ids of numbers", method: "POST", path: "/v1/conversations", body: `{"kind":"group","member_ids":[1,2]}`, status: 400, code: "invalid_field"},
			{name: "direct with two others", method: "POST", path: "/v1/conversations", body: `{"kind":"direct","member_ids":["` + bob.ID + `","` + unknown + `"]}`, status: 400, code: "invalid_field"},
			{name: "direct with nobody", method: "POST", path: "/v1/conversations", body: `{"kind":"direct","member_ids":[]}`, status: 400, code: "invalid_field"},
			{name: "direct with self", method: "POST", path: "/v1/conversations", body: `{"kind":"direct","member_ids":["` + alice.ID + `"]}`, status: 400, code: "invalid_field", validRequest: true},
			{name: "direct with unknown user", method: "POST", path: "/v1/conversations", body: `{"kind":"direct","member_ids":["` + unknown + `"]}`, status: 404, code: "not_found", validRequest: true},
			{name: "direct with NUL user", method: "POST", path: "/v1/conversations", body: `{"kind":"direct","member_ids":["\u0000"]}`, status: 404, code: "not_found"},
			{name: "group with unknown user", method: "POST", path: "/v1/conversations", body: `{"kind":"group","member_ids":["` + bob.ID + `","` + unknown + `"]}`, status: 404, code: "not_found", validRequest: true},
			{name: "NUL in title", method: "POST", path: "/v1/conversations", body: `{"kind":"group","member_ids":[],"title":"a\u0000b"}`, status: 400, code: "invalid_field"},
			{name: "newline in title", method: "POST", path: "/v1/conversations", body: `{"kind":"group","member_ids":[],"title":"a\nb"}`, status: 400, code: "invalid_field"},
			{name: "201-character title", method: "POST", path: "/v1/conversations", body: `{"kind":"group","member_ids":[],"title":"` + long("t", 201) + `"}`, status: 400, code: "invalid_field"},
			{name: "title is a number", method: "POST", path: "/v1/conversations", body: `{"kind":"group","member_ids":[],"title":5}`, status: 400, code: "invalid_field"},

			// Searching users.
			{name: "33-character query", method: "GET", path: "/v1/users?q=" + long("a", 33), status: 400, code: "invalid_field"},
			{name: "NUL in query", method: "GET", path: "/v1/users?q=a%00", status: 400, code: "invalid_field"},

			// Registering.
			{name: "username too short", method: "POST", path: "/v1/auth/register", body: `{"username":"ab","password":"long enough"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "username too long", method: "POST", path: "/v1/auth/register", body: `{"username":"` + long("a", 33) + `","password":"long enough"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "upper-case username", method: "POST", path: "/v1/auth/register", body: `{"username":"Carol","password":"long enough"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "username with a space", method: "POST", path: "/v1/auth/register", body: `{"username":"car ol","password":"long enough"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "username with a slash", method: "POST", path: "/v1/auth/register", body: `{"username":"car/ol","password":"long enough"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "username with a non-ASCII letter", method: "POST", path: "/v1/auth/register", body: `{"username":"cärol","password":"long enough"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "username with NUL", method: "POST", path: "/v1/auth/register", body: `{"username":"carol\u0000","password":"long enough"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "username with trailing newline", method: "POST", path: "/v1/auth/register", body: `{"username":"carol\n","password":"long enough"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "missing username", method: "POST", path: "/v1/auth/register", body: `{"password":"long enough"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "username is a number", method: "POST", path: "/v1/auth/register", body: `{"username":12345,"password":"long enough"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "password too short", method: "POST", path: "/v1/auth/register", body: `{"username":"carol","password":"1234567"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "password too long", method: "POST", path: "/v1/auth/register", body: `{"username":"carol","password":"` + long("p", 257) + `"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "password too long in bytes", method: "POST", path: "/v1/auth/register", body: `{"username":"carol","password":"` + long("é", 129) + `"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "missing password", method: "POST", path: "/v1/auth/register", body: `{"username":"carol"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "display name too long", method: "POST", path: "/v1/auth/register", body: `{"username":"carol","password":"long enough","display_name":"` + long("d", 65) + `"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "display name with a control character", method: "POST", path: "/v1/auth/register", body: `{"username":"carol","password":"long enough","display_name":"a\u001bb"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "username taken", method: "POST", path: "/v1/auth/register", body: `{"username":"` + alice.Username + `","password":"long enough"}`, status: 409, code: "username_taken", noAuth: true, validRequest: true},

			// Logging in and tokens.
			{name: "login without password", method: "POST", path: "/v1/auth/login", body: `{"username":"` + alice.Username + `"}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "login with a NUL username", method: "POST", path: "/v1/auth/login", body: `{"username":"alice\u0000","password":"correct horse"}`, status: 401, code: "invalid_credentials", noAuth: true, validRequest: true},
			{name: "login with an invalid username", method: "POST", path: "/v1/auth/login", body: `{"username":"ALICE","password":"correct horse"}`, status: 401, code: "invalid_credentials", noAuth: true, validRequest: true},
			{name: "refresh without token", method: "POST", path: "/v1/auth/refresh", body: `{"refresh_token":""}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "refresh with a number", method: "POST", path: "/v1/auth/refresh", body: `{"refresh_token":1}`, status: 400, code: "invalid_field", noAuth: true},
			{name: "refresh with an unknown token", method: "POST", path: "/v1/auth/refresh", body: `{"refresh_token":"nope"}`, status: 401, code: "invalid_refresh_token", noAuth: true, validRequest: true},
			{name: "refresh with a NUL token", method: "POST", path: "/v1/auth/refresh", body: `{"refresh_token":"\u0000"}`, status: 401, code: "invalid_refresh_token", noAuth: true, validRequest: true},

			// Routing.
			{name: "unknown route", method: "GET", path: "/v1/nope", status: 404, code: "not_found"},
			{name: "wrong method", method: "PUT", path: "/v1/conversations", body: `{}`, status: 405, code: "method_not_allowed"},
		}

		before := e.state()
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				token := alice.Token
				if tc.noAuth {
					token = ""
				}
				r := e.do(tc.method, tc.path, token, tc.body, !tc.validRequest)
				r.wantProblem(t, tc.status, tc.code)
				if after := e.state(); after != before {
					before = after // report each case that changes data once
					t.Fatalf("stored data changed:\n%s", after)
				}
			})
		}

		t.Run("chunked 2 MiB request", func(t *testing.T) {
			// Without a Content-Length the limit is enforced while reading.
			// (The contract transport always sets one, so this goes direct.)
			body := io.MultiReader(strings.NewReader(`{"body":"`), bytes.NewReader(bytes.Repeat([]byte("x"), 2<<20)), strings.NewReader(`"}`))
			req, err := http.NewRequest("POST", e.url+send, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+alice.Token)
			req.Header.Set("Content-Type", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(res.Body)
			res.Body.Close()
			resp{status: res.StatusCode, header: res.Header, body: data}.wantProblem(t, 413, "body_too_large")
			if after := e.state(); after != before {
				t.Fatalf("stored data changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})

		// The limits are exact: what is just inside them is stored as sent.
		t.Run("accepted at the limits", func(t *testing.T) {
			for _, body := range []string{long("é", 4000), long("😀", 4000), "a😀b", "x"} {
				got := e.send(alice, g.ID, body)
				if got.Body != body {
					t.Fatalf("stored %d bytes, sent %d", len(got.Body), len(body))
				}
			}
			var got message
			e.must(http.StatusCreated, "POST", send, alice.Token, `{"body":"\ud83d\ude00 \u00e9"}`).decode(t, &got)
			if got.Body != "😀 é" {
				t.Fatalf("escaped pair stored as %q", got.Body)
			}
			var page struct{ Messages []message }
			e.must(http.StatusOK, "GET", send+"?limit=100", bob.Token, nil).decode(t, &page)
			if len(page.Messages) != 6 || page.Messages[0].ID != m.ID || page.Messages[2].Body != long("😀", 4000) {
				t.Fatalf("history after the bad input: %d messages", len(page.Messages))
			}
		})
	})
}
