package app_test

import (
	"strings"
	"testing"
)

// With the verified-token cache on (the default), a token's session is
// still checked on every request: a cached token stops working the moment
// its session is revoked, for the API, forward auth and introspection.
func TestCachedTokenStillRevoked(t *testing.T) {
	gw := strings.Repeat("g", 32)
	e := newEnv(t, envOpts{Env: map[string]string{"INTROSPECTION_CLIENTS": "kong:" + gw}})
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	other, _ := e.login("alice", "password123")
	for range 3 {
		if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
			t.Fatalf("GET /v1/me: %d %s", r.Status, r.Body)
		}
		if r := e.do("GET", "/v1/auth/verify", other, nil); r.Status != 200 {
			t.Fatalf("GET /v1/auth/verify: %d", r.Status)
		}
	}
	if st := e.Tokens.CacheStats(); st.Hits < 4 || st.Entries != 2 {
		t.Fatalf("cache %+v: want both tokens held, their later uses hits", st)
	}
	if r := e.do("POST", "/v1/auth/logout", tok, nil); r.Status != 204 {
		t.Fatalf("logout: %d", r.Status)
	}
	if r := e.do("GET", "/v1/me", tok, nil); r.Status != 401 || r.Code(t) != "unauthorized" {
		t.Fatalf("the revoked, cached token: %d %s", r.Status, r.Body)
	}
	if r := e.introspect("kong", gw, tok); string(r.Body) != `{"active":false}` {
		t.Fatalf("introspection of the revoked, cached token: %s", r.Body)
	}
	if r := e.do("POST", "/v1/auth/logout-all", other, nil); r.Status != 200 {
		t.Fatalf("logout-all: %d", r.Status)
	}
	if r := e.do("GET", "/v1/auth/verify", other, nil); r.Status != 401 {
		t.Fatalf("forward auth with the revoked, cached token: %d", r.Status)
	}
}

// Forged and garbage bearer tokens sent to the API add nothing to the cache.
func TestForgedTokensNotCached(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	parts := strings.Split(tok, ".")
	for i := range 200 {
		bad := []string{"garbage" + strings.Repeat("x", i), parts[0] + "." + parts[1] + "." + strings.Repeat("A", 42) + "Q",
			parts[0] + "." + parts[1] + "x." + parts[2]}[i%3]
		if r := e.do("GET", "/v1/me", bad, nil); r.Status != 401 {
			t.Fatalf("%q: %d", bad, r.Status)
		}
	}
	if st := e.Tokens.CacheStats(); st.Entries != 0 || st.Bytes != 0 || st.Hits != 0 {
		t.Fatalf("after 200 forged tokens: %+v, want nothing held", st)
	}
}
