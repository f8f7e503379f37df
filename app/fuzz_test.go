package app_test

import (
	"strings"
	"testing"
)

// Every JSON body the API takes, fuzzed through the real app: whatever the
// bytes, the answer is never a 5xx and every error is problem+json with a code.
func FuzzJSONBodies(f *testing.F) {
	for _, seed := range []string{
		`{"username":"alice","password":"password123","device":{"name":"iPhone","platform":"ios"}}`,
		`{"username":"alice","password":"x"}`, `{"username":5}`, `{"device":"x"}`, `[]`, `null`, `{}`, ``,
		`{"current_password":"password123","new_password":"new-password-1"}`,
		`{"username":"bob","password":"password123","role":"admin"}`,
		`{"disabled":true,"role":"user","password":"another-password"}`, `{"disabled":"yes"}`,
		`{"username":"a\u0000b","password":"` + strings.Repeat("é", 40) + `"}`, `{"a":1}{"b":2}`, `{"username":"x"`,
	} {
		for path := range 4 {
			f.Add(uint8(path), []byte(seed))
		}
	}
	e := newEnv(f, envOpts{})
	target := e.createUser("target", "password123", "")
	e.createUser("alice", "password123", "")
	_, admin := e.admin()
	user, _ := e.login("alice", "password123")
	routes := []struct{ method, path, token string }{
		{"POST", "/v1/auth/login", ""},
		{"PUT", "/v1/me/password", user},
		{"POST", "/v1/admin/users", admin},
		{"PATCH", "/v1/admin/users/" + target.ID, admin},
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		rt := routes[int(which)%len(routes)]
		e.t = t
		r := e.do(rt.method, rt.path, rt.token, string(body))
		if r.Status >= 500 {
			t.Fatalf("%s %s with %q: %d %s", rt.method, rt.path, body, r.Status, r.Body)
		}
		if r.Status >= 400 && r.Code(t) == "" {
			t.Fatalf("%s %s with %q: error without a code: %s", rt.method, rt.path, body, r.Body)
		}
	})
}

// The Authorization header, fuzzed through the real app: only our own
// tokens are ever accepted, and nothing else is a 5xx.
func FuzzAuthorizationHeader(f *testing.F) {
	e := newEnv(f, envOpts{})
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	for _, seed := range []string{"Bearer " + tok, "bearer " + tok, "BEARER  " + tok + " ", "Bearer", "Bearer ",
		"Basic YWxpY2U6cGFzc3dvcmQxMjM=", "Bearer " + tok + "x", "Bearer " + strings.Replace(tok, ".", "..", 1),
		"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "Bearer a b", "Token " + tok, "\x00Bearer " + tok} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		e.t = t
		r, err := e.try("GET", "/v1/me", "", nil, "Authorization", header)
		if err != nil {
			t.Skipf("not a parsable HTTP request: %v", err) // refused before any of our code runs
		}
		switch {
		case r.Status == 200:
			scheme, rest, _ := strings.Cut(strings.TrimSpace(header), " ")
			if !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(rest) != tok {
				t.Fatalf("accepted %q, which is not our token", header)
			}
		case r.Status == 401:
			if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("401 without WWW-Authenticate: Bearer for %q", header)
			}
		case r.Status >= 500:
			t.Fatalf("%q: %d %s", header, r.Status, r.Body)
		}
	})
}
