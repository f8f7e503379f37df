package app_test

import "testing"

func TestSmokeLoginMeLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
		t.Fatalf("me: %d %s", r.Status, r.Body)
	}
	if r := e.do("POST", "/v1/auth/logout", tok, nil); r.Status != 204 {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/v1/me", tok, nil); r.Status != 401 || r.Code(t) != "unauthorized" {
		t.Fatalf("me after logout: %d %s", r.Status, r.Body)
	}
}
