package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/sessiond/sessiond/app"
)

// openAPIPath is the document, relative to this package's directory (where
// go test runs).
const openAPIPath = "openapi.json"

var openAPI struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// openAPIDoc loads, validates and routes app/openapi.json once per test binary.
func openAPIDoc() (*openapi3.T, routers.Router, error) {
	openAPI.once.Do(func() {
		loader := openapi3.NewLoader() // external $refs stay refused
		doc, err := loader.LoadFromFile(openAPIPath)
		if err != nil {
			openAPI.err = fmt.Errorf("loading %s: %w", openAPIPath, err)
			return
		}
		if !doc.IsOpenAPI31OrLater() {
			openAPI.err = fmt.Errorf("%s: openapi %q, want 3.1.x", openAPIPath, doc.OpenAPI)
			return
		}
		// Validate applies the 3.1 rules (JSON Schema 2020-12) itself for a
		// 3.1 document; examples are checked against their schemas too.
		if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
			openAPI.err = fmt.Errorf("%s is not a valid OpenAPI document: %w", openAPIPath, err)
			return
		}
		router, err := gorillamux.NewRouter(doc)
		if err != nil {
			openAPI.err = fmt.Errorf("routing %s: %w", openAPIPath, err)
			return
		}
		openAPI.doc, openAPI.router = doc, router
	})
	return openAPI.doc, openAPI.router, openAPI.err
}

// loadOpenAPI is app/openapi.json, loaded and validated once, and a router
// over its operations.
func loadOpenAPI(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	doc, router, err := openAPIDoc()
	if err != nil {
		t.Fatal(err)
	}
	return doc, router
}

// errNotInDocument is returned by validateResponse for a request the document
// has no operation for, answered with anything but 404 or 405.
var errNotInDocument = errors.New("the route is not in app/openapi.json")

// validateOptions are the filter's options: every status must be documented,
// authentication is not checked (only responses are validated), "uuid" is
// enforced like "date-time" is, and each schema error is one line naming
// where in the body it is (the library's own messages dump the whole schema
// and value).
var validateOptions = func() *openapi3filter.Options {
	o := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{
			openapi3.WithStringFormatValidator("uuid",
				openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562)),
		},
	}
	o.WithCustomSchemaErrorFunc(func(err *openapi3.SchemaError) string {
		msg := fmt.Sprintf("at %q: %s", "/"+strings.Join(err.JSONPointer(), "/"), err.Reason)
		switch err.SchemaField {
		case "allOf", "anyOf", "oneOf", "not":
			if err.Origin != nil {
				msg += " (" + err.Origin.Error() + ")" // which branch failed, and why
			}
		}
		return msg
	})
	return o
}()

// validateResponse checks one response against app/openapi.json: that the
// operation exists and documents the status, the Content-Type, the body's
// schema and the required response headers, and that a response documented
// without content has an empty body. Requests are not validated (tests send
// bad ones on purpose). A request for a route the document does not have is
// fine when the server answered 404 or 405, and then nothing is checked.
//
// path is the request target as sent: a path with an optional query.
func validateResponse(method, path string, reqHeader http.Header, status int, respHeader http.Header, body []byte) error {
	_, router, err := openAPIDoc()
	if err != nil {
		return err
	}
	req, err := http.NewRequest(method, "http://sessiond.test"+path, nil)
	if err != nil {
		if status == http.StatusBadRequest || status == http.StatusNotFound {
			return nil // a target no route could match, refused as such
		}
		return fmt.Errorf("request target %q: %w", path, err)
	}
	if reqHeader != nil {
		req.Header = reqHeader.Clone()
	}
	if method == http.MethodHead {
		// Fiber answers HEAD for every GET route: the GET operation's
		// response without its body (the filter skips HEAD altogether).
		get := req.Clone(req.Context())
		get.Method = http.MethodGet
		route, _, err := findRoute(router, get)
		switch {
		case err != nil && (status == http.StatusNotFound || status == http.StatusMethodNotAllowed):
			return nil
		case err != nil:
			return fmt.Errorf("%w: HEAD %s answered %d (%v)", errNotInDocument, req.URL.Path, status, err)
		case route.Operation.Responses.Status(status) == nil:
			return fmt.Errorf("HEAD %s (operation %s): status %d is not documented", route.Path, route.Operation.OperationID, status)
		case len(body) > 0:
			return fmt.Errorf("HEAD %s: a body of %d bytes", route.Path, len(body))
		}
		return nil
	}
	route, params, err := findRoute(router, req)
	if err != nil {
		if errors.Is(err, routers.ErrPathNotFound) || errors.Is(err, routers.ErrMethodNotAllowed) {
			if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
				return nil // an unknown route, answered as one
			}
			return fmt.Errorf("%w: %s %s answered %d (%v)", errNotInDocument, method, req.URL.Path, status, err)
		}
		return fmt.Errorf("finding %s %s in the document: %w", method, req.URL.Path, err)
	}
	if respHeader == nil {
		respHeader = http.Header{}
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route, Options: validateOptions,
		},
		Status:  status,
		Header:  respHeader,
		Options: validateOptions,
	}
	input.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
		return fmt.Errorf("%s %s (operation %s): %w", method, route.Path, route.Operation.OperationID, err)
	}
	// The filter skips the body of a response documented without content:
	// there must be none (204, and GET /v1/auth/verify's 200).
	if r := route.Operation.Responses.Status(status); r != nil && r.Value != nil && len(r.Value.Content) == 0 && len(body) > 0 {
		return fmt.Errorf("%s %s (operation %s): status %d is documented without a body, got %d bytes (Content-Type %q)",
			method, route.Path, route.Operation.OperationID, status, len(body), respHeader.Get("Content-Type"))
	}
	return nil
}

// findRoute routes req as Fiber does: paths are case-insensitive and a
// trailing slash is ignored (Fiber's defaults, CaseSensitive and
// StrictRouting off), so the same request is looked up that way too when it
// is not found as sent.
func findRoute(router routers.Router, req *http.Request) (*routers.Route, map[string]string, error) {
	route, params, err := router.FindRoute(req)
	if err == nil {
		return route, params, nil
	}
	p := req.URL.Path
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	if lp := strings.ToLower(p); lp != req.URL.Path {
		r2 := req.Clone(req.Context())
		r2.URL.Path, r2.URL.RawPath = lp, ""
		if route, params, err2 := router.FindRoute(r2); err2 == nil {
			return route, params, nil
		}
	}
	return nil, nil, err
}

// checkResponse fails the test when a response does not match
// app/openapi.json (see validateResponse).
func checkResponse(t testing.TB, method, path string, reqHeader http.Header, status int, respHeader http.Header, body []byte) {
	t.Helper()
	if err := validateResponse(method, path, reqHeader, status, respHeader, body); err != nil {
		const maxBody = 2000
		b := string(body)
		if len(b) > maxBody {
			b = b[:maxBody] + "…"
		}
		t.Errorf("OpenAPI: the response to %s %s (status %d) does not match app/openapi.json:\n%v\nbody: %s",
			method, path, status, err, b)
	}
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	if doc.Info == nil || !strings.Contains(doc.Info.Description, "reference") {
		t.Error("info.description must say the document is the API's reference")
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId (client generators name methods after it)", method, path)
			}
			for code, r := range op.Responses.Map() {
				if code[0] < '4' {
					continue
				}
				if r.Value == nil || r.Value.Content.Get("application/problem+json") == nil || len(r.Value.Content) != 1 {
					t.Errorf("%s %s: response %s is not application/problem+json alone", method, path, code)
				}
				if code == "401" && r.Value != nil && r.Value.Headers["WWW-Authenticate"] == nil {
					t.Errorf("%s %s: 401 without WWW-Authenticate", method, path)
				}
				if (code == "429" || code == "503") && r.Value != nil && r.Value.Headers["Retry-After"] == nil {
					t.Errorf("%s %s: %s without Retry-After", method, path, code)
				}
			}
		}
	}
}

// Every route the app serves is in the document. Documented operations the
// app does not serve yet are listed in the log.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	served := map[string]bool{}
	for _, r := range app.New(app.Deps{}).GetRoutes(true) {
		if r.Method == http.MethodHead || r.Method == "USE" {
			continue // Fiber adds HEAD to every GET
		}
		path := r.Path
		for _, p := range r.Params {
			path = strings.Replace(path, ":"+p, "{"+p+"}", 1)
		}
		served[r.Method+" "+path] = true
		item := doc.Paths.Value(path)
		if item == nil || item.GetOperation(r.Method) == nil {
			t.Errorf("the app serves %s %s, which app/openapi.json does not document", r.Method, path)
		}
	}
	var missing []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !served[method+" "+path] {
				missing = append(missing, method+" "+path)
			}
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Logf("documented but not served by this app yet: %s", strings.Join(missing, ", "))
	}
}

// The validator accepts what the contract says and reports what drifts from it.
func TestOpenAPIValidatorCatchesDrift(t *testing.T) {
	loadOpenAPI(t)
	const (
		uid  = "0d9b7a4c-5e6f-4a1b-8c2d-3e4f5a6b7c8d"
		sid  = "6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"
		when = "2025-01-02T03:04:05Z"
	)
	session := `{"id":"` + sid + `","device_name":"Alice's iPhone","platform":"ios","user_agent":"MyApp/3.2",` +
		`"ip":"203.0.113.7","created_at":"` + when + `","last_seen_at":"` + when + `","expires_at":"` + when + `","current":true,"aal":1,"amr":["pwd"],"auth_time":"` + when + `"}`
	noCurrent := strings.Replace(session, `,"current":true`, "", 1)
	user := `{"id":"` + uid + `","username":"alice","role":"user","disabled":false,"created_at":"` + when + `"}`
	prob := func(status int, code string) string {
		return fmt.Sprintf(`{"type":"urn:sessiond:problem:%s","title":%q,"status":%d,"detail":"x","code":%q}`,
			code, http.StatusText(status), status, code)
	}
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	problemCT := http.Header{"Content-Type": {"application/problem+json"}}
	with := func(h http.Header, kv ...string) http.Header {
		h = h.Clone()
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	verified := http.Header{"X-User-Id": {uid}, "X-Username": {"alice"}, "X-User-Role": {"user"}, "X-Session-Id": {sid},
		"X-Session-Aal": {"1"}, "X-Auth-Time": {"1700000000"}}

	for _, c := range []struct {
		name         string
		method, path string
		status       int
		header       http.Header
		body         string
		ok           bool
	}{
		{"a session list", "GET", "/v1/sessions", 200, jsonCT, `{"sessions":[` + session + `]}`, true},
		{"a session without current", "GET", "/v1/sessions", 200, jsonCT, `{"sessions":[` + noCurrent + `]}`, false},
		{"an empty session list", "GET", "/v1/sessions", 200, jsonCT, `{"sessions":[]}`, true},
		{"a null session list", "GET", "/v1/sessions", 200, jsonCT, `{"sessions":null}`, false},
		{"login", "POST", "/v1/auth/login", 201, jsonCT,
			`{"token":"a.b.c","token_type":"Bearer","expires_at":"` + when + `","session":` + session + `}`, true},
		{"login answering 200", "POST", "/v1/auth/login", 200, jsonCT,
			`{"token":"a.b.c","token_type":"Bearer","expires_at":"` + when + `","session":` + session + `}`, false},
		{"a user", "GET", "/v1/me", 200, jsonCT, user, true},
		{"a user with an unknown role", "GET", "/v1/me", 200, jsonCT, strings.Replace(user, `"user"`, `"owner"`, 1), false},
		{"a user with a bad time", "GET", "/v1/me", 200, jsonCT, strings.Replace(user, when, "yesterday", 1), false},
		{"a user with a bad id", "GET", "/v1/me", 200, jsonCT, strings.Replace(user, uid, "42", 1), false},
		{"a user as text", "GET", "/v1/me", 200, http.Header{"Content-Type": {"text/plain"}}, user, false},
		{"query and case as Fiber routes them", "GET", "/V1/Admin/Users/?limit=2", 200, jsonCT,
			`{"users":[` + user + `],"next_cursor":""}`, true},
		{"a 401", "GET", "/v1/me", 401, with(problemCT, "WWW-Authenticate", `Bearer error="invalid_token"`),
			prob(401, "unauthorized"), true},
		{"a 401 without WWW-Authenticate", "GET", "/v1/me", 401, problemCT, prob(401, "unauthorized"), false},
		{"a 401 as application/json", "GET", "/v1/me", 401, with(jsonCT, "WWW-Authenticate", "Bearer"),
			prob(401, "unauthorized"), false},
		{"a 401 with the code of a 403", "GET", "/v1/me", 401, with(problemCT, "WWW-Authenticate", "Bearer"),
			prob(401, "forbidden"), false},
		{"a problem whose status is not the response's", "GET", "/v1/me", 401,
			with(problemCT, "WWW-Authenticate", "Bearer"), strings.Replace(prob(401, "unauthorized"), "401", "400", 1), false},
		{"a problem without detail", "GET", "/v1/me", 401, with(problemCT, "WWW-Authenticate", "Bearer"),
			strings.Replace(prob(401, "unauthorized"), `"detail":"x",`, "", 1), false},
		{"a status the operation does not have", "GET", "/v1/me", 409, problemCT, prob(409, "username_taken"), false},
		{"a 503", "GET", "/v1/sessions", 503, with(problemCT, "Retry-After", "1"), prob(503, "unavailable"), true},
		{"a 503 without Retry-After", "GET", "/v1/sessions", 503, problemCT, prob(503, "unavailable"), false},
		{"a 204", "DELETE", "/v1/sessions/" + sid, 204, http.Header{}, "", true},
		{"a 204 with a body", "DELETE", "/v1/sessions/" + sid, 204, jsonCT, "{}", false},
		{"a 404 for a malformed id", "DELETE", "/v1/sessions/not-an-id", 404, problemCT, prob(404, "not_found"), true},
		{"verify", "GET", "/v1/auth/verify", 200, verified, "", true},
		{"verify with a body", "GET", "/v1/auth/verify", 200, verified, "OK", false},
		{"verify without X-Session-Id", "GET", "/v1/auth/verify", 200, with(verified, "X-Session-Id", ""), "", false},
		{"verify with an aal of 3", "GET", "/v1/auth/verify", 200, with(verified, "X-Session-AAL", "3"), "", false},
		{"a session without aal", "GET", "/v1/sessions", 200, jsonCT, `{"sessions":[` + strings.Replace(session, `"aal":1,`, "", 1) + `]}`, false},
		{"mfa_required with its token", "POST", "/v1/auth/login", 401, with(problemCT, "WWW-Authenticate", "Bearer"),
			strings.Replace(prob(401, "mfa_required"), "}", `,"mfa_token":"T","methods":["totp","recovery_code"]}`, 1), true},
		{"introspection, inactive", "POST", "/v1/oauth/introspect", 200, jsonCT, `{"active":false}`, true},
		{"introspection, inactive with more", "POST", "/v1/oauth/introspect", 200, jsonCT,
			`{"active":false,"sub":"` + uid + `"}`, false},
		{"introspection, active", "POST", "/v1/oauth/introspect", 200, jsonCT,
			`{"active":true,"sub":"` + uid + `","username":"alice","role":"admin","sid":"` + sid +
				`","iss":"sessiond","aud":"sessiond","iat":1700000000,"exp":1707776000,"token_type":"Bearer",` +
				`"acr":"2","amr":["pwd","otp","mfa"],"auth_time":1700000000}`, true},
		{"introspection, active without sid", "POST", "/v1/oauth/introspect", 200, jsonCT,
			`{"active":true,"sub":"` + uid + `","username":"alice","role":"admin",` +
				`"iss":"sessiond","aud":"sessiond","iat":1700000000,"exp":1707776000,"token_type":"Bearer",` +
				`"acr":"1","amr":["pwd"],"auth_time":1700000000}`, false},
		{"jwks, HMAC only", "GET", "/.well-known/jwks.json", 200, jsonCT, `{"keys":[]}`, true},
		{"a 431 on any route", "GET", "/v1/me", 431, problemCT, prob(431, "headers_too_large"), true},
		{"an unknown route", "GET", "/v2/everything", 404, problemCT, prob(404, "not_found"), true},
		{"an undocumented method", "PATCH", "/v1/me", 404, problemCT, prob(404, "not_found"), true},
		{"an undocumented route that answers", "GET", "/v1/everything", 200, jsonCT, `{}`, false},
		{"HEAD of a GET route", "HEAD", "/healthz", 200, jsonCT, "", true},
		{"HEAD with a status GET does not have", "HEAD", "/healthz", 401, problemCT, "", false},
	} {
		err := validateResponse(c.method, c.path, nil, c.status, c.header, []byte(c.body))
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: want it valid, got: %v", c.name, err)
		case !c.ok && err == nil:
			t.Errorf("%s: %s %s → %d %s passed; want an error", c.name, c.method, c.path, c.status, c.body)
		case !c.ok:
			t.Logf("%s: %v", c.name, err)
		}
	}
	if err := validateResponse("GET", "/v1/everything", nil, 200, jsonCT, []byte(`{}`)); !errors.Is(err, errNotInDocument) {
		t.Errorf("an undocumented route: %v, want errNotInDocument", err)
	}
}

// GET /openapi.json serves the repository's document itself.
func TestServesItsOpenAPIDocument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	r := e.do("GET", "/openapi.json", "", nil)
	want, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || !bytes.Equal(r.Body, want) || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json: %d %q, %d bytes; want 200, the %d bytes of %s", r.Status, r.Header.Get("Content-Type"), len(r.Body), len(want), openAPIPath)
	}
}
