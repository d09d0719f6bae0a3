package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// decode reads a JSON request body into dst (a pointer to a struct) and
// answers the client itself when the body is unusable. It is strict where
// encoding/json is lenient: the raw bytes must be valid UTF-8 (json would
// turn bad bytes into U+FFFD), lone surrogate escapes are refused, keys must
// match a field exactly (json matches case-insensitively) and appear once,
// and nothing may follow the value. The body must be declared
// application/json: a browser sends text/plain, form and multipart bodies
// cross-site without a CORS preflight, so accepting them would let any page
// post JSON-looking forms with the victim's cookies.
func decode(c *gin.Context, dst any) bool {
	if !isJSONContentType(c.GetHeader("Content-Type")) {
		problem(c, http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "send the body with Content-Type: application/json")
		return false
	}
	data, err := io.ReadAll(c.Request.Body)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			problem(c, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "")
			return false
		}
		problem(c, http.StatusBadRequest, CodeInvalidJSON, "could not read the body")
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		problem(c, http.StatusBadRequest, CodeInvalidJSON, "the body is empty; send a JSON object")
		return false
	}
	if !utf8.Valid(data) {
		problem(c, http.StatusBadRequest, CodeInvalidUTF8, "")
		return false
	}
	if hasLoneSurrogate(data) {
		problem(c, http.StatusBadRequest, CodeInvalidUTF8, "the body escapes an unpaired UTF-16 surrogate")
		return false
	}
	if err := checkKeys(data, fieldNames(reflect.TypeOf(dst).Elem())); err != nil {
		problem(c, http.StatusBadRequest, CodeInvalidJSON, err.Error())
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			problem(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("%s must be of type %s", te.Field, jsonType(te.Type)))
			return false
		}
		problem(c, http.StatusBadRequest, CodeInvalidJSON, err.Error())
		return false
	}
	return true
}

// isJSONContentType accepts application/json, with no charset or UTF-8.
func isJSONContentType(header string) bool {
	mt, params, err := mime.ParseMediaType(header)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// isText reports whether a string from the client can be stored as text:
// valid UTF-8 without NUL. Postgres refuses NUL in text and the SQLite
// driver errors on it, so client strings that fail this never reach the
// database: an id that is not text names nothing (404), any other field is
// invalid (400).
func isText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// requireID checks a required id taken from a body: missing is a 400, and
// an id that cannot name anything (not valid text) is the 404 an unknown
// id gets.
func requireID(c *gin.Context, field, value string) bool {
	if value == "" {
		problem(c, http.StatusBadRequest, CodeInvalidField, field+" is required")
		return false
	}
	if !isText(value) {
		problem(c, http.StatusNotFound, CodeNotFound, "")
		return false
	}
	return true
}

func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "integer"
	case reflect.Slice:
		return "array"
	case reflect.Pointer:
		return jsonType(t.Elem())
	}
	return "object"
}

var fieldCache sync.Map // reflect.Type -> map[string]bool

// fieldNames returns the exact JSON keys a struct type accepts.
func fieldNames(t reflect.Type) map[string]bool {
	if v, ok := fieldCache.Load(t); ok {
		return v.(map[string]bool)
	}
	names := map[string]bool{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names[name] = true
		}
	}
	fieldCache.Store(t, names)
	return names
}

// checkKeys walks the document: the top level must be an object whose keys
// are all in allowed, and no object anywhere may repeat a key.
func checkKeys(data []byte, allowed map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return errors.New("the body must be a JSON object")
	}
	if err := walkObject(dec, allowed); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// walkObject consumes an object whose '{' was read. allowed, when not nil,
// restricts its keys.
func walkObject(dec *json.Decoder, allowed map[string]bool) error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string)
		if seen[key] {
			return fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		if allowed != nil && !allowed[key] {
			return fmt.Errorf("unknown field %q", key)
		}
		if err := walkValue(dec); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

func walkValue(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		return walkObject(dec, nil)
	case json.Delim('['):
		for dec.More() {
			if err := walkValue(dec); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return nil
}

// hasLoneSurrogate reports a \uD800-\uDFFF escape that is not a valid
// high-low pair; encoding/json would silently decode it to U+FFFD.
func hasLoneSurrogate(data []byte) bool {
	for i := 0; i+6 <= len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		if data[i+1] != 'u' {
			i++ // skip the escaped character, e.g. \\ or \"
			continue
		}
		r, ok := hex4(data[i+2 : i+6])
		if !ok {
			continue
		}
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if i+12 > len(data) || data[i+6] != '\\' || data[i+7] != 'u' {
				return true
			}
			lo, ok := hex4(data[i+8 : i+12])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		default:
			i += 5
		}
	}
	return false
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}
