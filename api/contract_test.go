package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/confab-chat/confab"
)

// contractSkipRequestHeader, set to "1" on a request, skips the validation of
// that request against openapi.yaml. Tests that send invalid input on purpose
// set it; the header is removed before the request leaves. The response is
// validated all the same.
const contractSkipRequestHeader = "X-Contract-Skip-Request"

// contract is openapi.yaml, parsed and validated once per test binary.
var contract struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// loadContract parses confab.OpenAPI, validates it as an OpenAPI 3.1
// document (JSON Schema 2020-12) and builds a router that matches on the
// path alone: the document declares no servers, so any host and port match.
func loadContract() (*openapi3.T, routers.Router, error) {
	contract.once.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(confab.OpenAPI)
		if err != nil {
			contract.err = fmt.Errorf("parse openapi.yaml: %w", err)
			return
		}
		if !doc.IsOpenAPI31OrLater() {
			contract.err = fmt.Errorf("openapi.yaml declares OpenAPI %q, want 3.1", doc.OpenAPI)
			return
		}
		if err := doc.Validate(context.Background(), openapi3.IsOpenAPI31OrLater()); err != nil {
			contract.err = fmt.Errorf("validate openapi.yaml: %w", err)
			return
		}
		router, err := legacy.NewRouter(doc, openapi3.IsOpenAPI31OrLater())
		if err != nil {
			contract.err = fmt.Errorf("route openapi.yaml: %w", err)
			return
		}
		contract.doc, contract.router = doc, router
	})
	return contract.doc, contract.router, contract.err
}

// newContractTransport returns an http.RoundTripper over
// http.DefaultTransport that validates every request it sends and every
// response it receives against openapi.yaml, and reports each mismatch with
// tb.Errorf (it may run on other goroutines than the test's).
//
// Requests carrying "X-Contract-Skip-Request: 1" skip request validation.
// Responses are always validated: the status must be declared for the
// operation, declared headers must be present and match, and the body must
// match its schema, except for text/event-stream bodies, which never end.
// Authentication is the server's business, so any credentials pass.
func newContractTransport(tb testing.TB) http.RoundTripper {
	tb.Helper()
	doc, router, err := loadContract()
	if err != nil {
		tb.Fatalf("contract: %v", err)
	}
	return &contractTransport{tb: tb, base: http.DefaultTransport, doc: doc, router: router}
}

type contractTransport struct {
	tb     testing.TB
	base   http.RoundTripper
	doc    *openapi3.T
	router routers.Router
}

func (t *contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	skipRequest := req.Header.Get(contractSkipRequestHeader) == "1"

	// Read the body once: it is both validated and sent.
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("contract: read request body: %w", err)
		}
	}
	out := req.Clone(req.Context())
	out.Header.Del(contractSkipRequestHeader)
	contractSetBody(out, body)

	where := fmt.Sprintf("%s %s", req.Method, req.URL.RequestURI())
	route, pathParams, routeErr := t.router.FindRoute(out)
	var input *openapi3filter.RequestValidationInput
	if routeErr == nil {
		// The validator reads (and may rewrite) the request: give it a copy.
		vreq := out.Clone(out.Context())
		contractSetBody(vreq, body)
		opts := &openapi3filter.Options{
			AuthenticationFunc:                openapi3filter.NoopAuthenticationFunc,
			SkipSettingDefaults:               true,
			RejectWhenRequestBodyNotSpecified: true,
		}
		opts.WithCustomSchemaErrorFunc(contractSchemaErrorMessage)
		input = &openapi3filter.RequestValidationInput{
			Request:    vreq,
			PathParams: pathParams,
			Route:      route,
			Options:    opts,
		}
		if !skipRequest {
			if err := openapi3filter.ValidateRequest(out.Context(), input); err != nil {
				t.tb.Errorf("contract: request %s does not match openapi.yaml: %v", where, err)
			}
		}
	}

	resp, err := t.base.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	where = fmt.Sprintf("%s -> %d", where, resp.StatusCode)
	if routeErr != nil {
		t.checkUnroutedResponse(where, routeErr, resp)
		return resp, nil
	}
	t.checkResponse(where, input, resp)
	return resp, nil
}

// checkResponse validates a response to a declared operation.
func (t *contractTransport) checkResponse(where string, input *openapi3filter.RequestValidationInput, resp *http.Response) {
	stream := contractIsMediaType(resp.Header.Get("Content-Type"), "text/event-stream")
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		ExcludeResponseBody:   stream,
	}
	opts.WithCustomSchemaErrorFunc(contractSchemaErrorMessage)
	rinput := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                opts,
	}
	if stream {
		// Never read a stream to its end: check that the operation declares
		// one for this status, then the status and headers.
		if ref := input.Route.Operation.Responses.Status(resp.StatusCode); ref != nil && ref.Value != nil &&
			ref.Value.Content.Get("text/event-stream") == nil {
			t.tb.Errorf("contract: response %s is text/event-stream, which openapi.yaml does not declare for it", where)
		}
	} else {
		data, err := contractReadAndRestore(resp)
		if err != nil {
			// The caller sees the error when it reads; nothing to validate.
			return
		}
		rinput.SetBodyBytes(data)
		if len(data) > 0 && input.Request.Method != http.MethodHead {
			if ref := input.Route.Operation.Responses.Status(resp.StatusCode); ref != nil && ref.Value != nil &&
				len(ref.Value.Content) == 0 {
				t.tb.Errorf("contract: response %s has a body (%q), which openapi.yaml does not declare", where, contractTruncate(data))
			}
		}
	}
	if err := openapi3filter.ValidateResponse(input.Request.Context(), rinput); err != nil {
		t.tb.Errorf("contract: response %s does not match openapi.yaml: %v", where, err)
	}
}

// checkUnroutedResponse handles a request openapi.yaml has no operation for.
// The server must then answer with a 404 or 405 problem document; anything
// else is an endpoint the contract is missing.
func (t *contractTransport) checkUnroutedResponse(where string, routeErr error, resp *http.Response) {
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		t.tb.Errorf("contract: %s is not an operation of openapi.yaml (%v), so the answer must be a 404 or 405 problem", where, routeErr)
		return
	}
	if ct := resp.Header.Get("Content-Type"); !contractIsMediaType(ct, "application/problem+json") {
		t.tb.Errorf("contract: response %s: Content-Type %q, want application/problem+json", where, ct)
		return
	}
	data, err := contractReadAndRestore(resp)
	if err != nil {
		return
	}
	if err := t.checkProblem(data, resp.StatusCode); err != nil {
		t.tb.Errorf("contract: response %s does not match openapi.yaml: %v", where, err)
	}
}

// checkProblem validates a problem document against the Problem schema and
// checks that its status member repeats the HTTP status.
func (t *contractTransport) checkProblem(data []byte, status int) error {
	var value any
	if err := json.Unmarshal(data, &value); err != nil {
		return fmt.Errorf("problem body is not JSON: %w (%q)", err, contractTruncate(data))
	}
	schema := t.doc.Components.Schemas["Problem"]
	if schema == nil || schema.Value == nil {
		return errors.New("openapi.yaml has no Problem schema")
	}
	if err := schema.Value.VisitJSON(value, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse(),
		openapi3.SetSchemaErrorMessageCustomizer(contractSchemaErrorMessage)); err != nil {
		return fmt.Errorf("problem body doesn't match schema Problem: %w", err)
	}
	if got, _ := value.(map[string]any)["status"].(float64); int(got) != status {
		return fmt.Errorf("problem status %v differs from the HTTP status %d", got, status)
	}
	return nil
}

// contractSchemaErrorMessage says where a value breaks its schema, and why, without
// the schema dump that the default message appends.
func contractSchemaErrorMessage(err *openapi3.SchemaError) string {
	value, _ := json.Marshal(err.Value)
	return fmt.Sprintf("at /%s: %s (value: %s)", strings.Join(err.JSONPointer(), "/"), err.Reason, contractTruncate(value))
}

// contractSetBody makes body the (re-readable) body of req.
func contractSetBody(req *http.Request, body []byte) {
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body = http.NoBody
		req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		return
	}
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.Body, _ = req.GetBody()
}

// contractReadAndRestore reads the whole response body and puts an equivalent one
// back, which ends with the same error if reading failed.
func contractReadAndRestore(resp *http.Response) ([]byte, error) {
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var rest io.Reader = bytes.NewReader(data)
	if err != nil {
		rest = io.MultiReader(rest, contractErrReader{err})
	}
	resp.Body = io.NopCloser(rest)
	return data, err
}

type contractErrReader struct{ err error }

func (r contractErrReader) Read([]byte) (int, error) { return 0, r.err }

func contractIsMediaType(contentType, want string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == want
}

func contractTruncate(data []byte) string {
	const limit = 200
	if len(data) > limit {
		return string(data[:limit]) + "..."
	}
	return string(data)
}
