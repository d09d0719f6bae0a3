package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// decode reads a JSON request body into dst (a pointer to a struct) and
// answers the client itself when the body is unusable. json/v2 is strict
// where encoding/json is lenient: it refuses invalid UTF-8 and lone
// surrogate escapes (encoding/json turns both into U+FFFD), duplicate keys,
// and data after the value, and it matches keys exactly (encoding/json
// matches them case-insensitively); RejectUnknownMembers refuses the rest.
// The body must be declared application/json: a browser sends text/plain,
// form and multipart bodies cross-site without a CORS preflight, so
// accepting them would let any page post JSON-looking forms with the
// victim's cookies.
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
	// json/v2 decodes null into a struct as "nothing to set" and has no
	// option against it: only an object is a request.
	if body := bytes.TrimLeft(data, " \t\r\n"); (len(body) == 0 || body[0] != '{') && utf8.Valid(data) {
		problem(c, http.StatusBadRequest, CodeInvalidJSON, "the body must be a JSON object")
		return false
	}
	err = json.Unmarshal(data, dst, json.RejectUnknownMembers(true))
	if err == nil {
		return true
	}
	if se, ok := errors.AsType[*json.SemanticError](err); ok && se.JSONPointer != "" && se.GoType != nil && !errors.Is(err, json.ErrUnknownName) {
		problem(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("%s must be of type %s", strings.TrimPrefix(string(se.JSONPointer), "/"), jsonType(se.GoType)))
		return false
	}
	// jsontext exports no error for bad UTF-8 or a lone surrogate escape
	// (both are a SyntacticError with an unexported cause), so they are
	// told apart here: the raw bytes, and the escape where the error is.
	if se, ok := errors.AsType[*jsontext.SyntacticError](err); ok && (!utf8.Valid(data) || isSurrogateEscape(data, se.ByteOffset)) {
		problem(c, http.StatusBadRequest, CodeInvalidUTF8, "")
		return false
	}
	problem(c, http.StatusBadRequest, CodeInvalidJSON, err.Error())
	return false
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

// isSurrogateEscape reports a \uD800-\uDFFF escape at offset: where
// jsontext reports an unpaired surrogate.
func isSurrogateEscape(data []byte, offset int64) bool {
	if offset < 0 || offset+6 > int64(len(data)) || data[offset] != '\\' || data[offset+1] != 'u' {
		return false
	}
	r, err := strconv.ParseUint(string(data[offset+2:offset+6]), 16, 16)
	return err == nil && r >= 0xD800 && r <= 0xDFFF
}
