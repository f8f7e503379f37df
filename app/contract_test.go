package app_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/tokens"
)

// wantProblem fails unless r is a problem+json error with that status and code.
func wantProblem(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.Status != status || r.Code(t) != code {
		t.Fatalf("got %d %s; want %d %s", r.Status, r.Body, status, code)
	}
	m := r.JSON(t)
	for _, f := range []string{"type", "title", "detail"} {
		if s, _ := m[f].(string); s == "" {
			t.Fatalf("problem lacks %q: %s", f, r.Body)
		}
	}
	if int(m["status"].(float64)) != status {
		t.Fatalf("problem status %v, HTTP status %d", m["status"], status)
	}
	// Every response, errors included (also those fasthttp answers before
	// any middleware runs), carries these.
	if r.Header.Get("X-Request-Id") == "" || r.Header.Get("Cache-Control") != "no-store" ||
		r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("%d response lacks X-Request-Id, Cache-Control: no-store or nosniff: %v", status, r.Header)
	}
	if status == 401 && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("401 without WWW-Authenticate: Bearer: %v", r.Header)
	}
}

func TestLoginReturnsTokenAndSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", "")
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "Alice", "password": "password123",
		"device": map[string]string{"name": "Alice's iPhone", "platform": "ios"}}, "User-Agent", "MyApp/3.2 (iPhone; iOS 18.1)")
	if r.Status != 201 {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	m := r.JSON(t)
	if m["token_type"] != "Bearer" || m["token"] == "" {
		t.Fatalf("token fields: %s", r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token response is cacheable: %q", r.Header.Get("Cache-Control"))
	}
	s := m["session"].(map[string]any)
	want := map[string]any{"device_name": "Alice's iPhone", "platform": "ios", "user_agent": "MyApp/3.2 (iPhone; iOS 18.1)",
		"ip": "0.0.0.0", "current": true}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("session.%s = %v, want %v", k, s[k], v)
		}
	}
	for _, k := range []string{"created_at", "last_seen_at", "expires_at"} {
		if _, err := time.Parse(time.RFC3339, s[k].(string)); err != nil {
			t.Errorf("session.%s = %v: not RFC 3339", k, s[k])
		}
	}
	exp, _ := time.Parse(time.RFC3339, m["expires_at"].(string))
	if d := time.Until(exp); d < 2159*time.Hour || d > 2160*time.Hour {
		t.Errorf("expires_at %v is not the 90-day absolute lifetime", exp)
	}
	if m["expires_at"] != s["expires_at"] {
		t.Errorf("token expires_at %v differs from the session's %v", m["expires_at"], s["expires_at"])
	}
	// The token names the session and the user.
	claims, err := e.Tokens.Verify(m["token"].(string))
	if err != nil || claims.SessionID != s["id"] {
		t.Fatalf("token claims %+v (%v), session id %v", claims, err, s["id"])
	}

	// Device is optional: empty strings then.
	r = e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "password123"})
	s = r.JSON(t)["session"].(map[string]any)
	if r.Status != 201 || s["device_name"] != "" || s["platform"] != "" {
		t.Fatalf("login without device: %d %s", r.Status, r.Body)
	}
}

func TestLoginFailuresLookAlike(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	long := strings.Repeat("p", 72)
	e.createUser("alice", long, "")
	disabled := e.createUser("dora", "password123", "")
	e.do("PATCH", "/v1/admin/users/"+disabled.ID, e.adminToken(), map[string]any{"disabled": true})

	wrong := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "wrong-password"})
	unknown := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "nobody", "password": "wrong-password"})
	wantProblem(t, wrong, 401, "invalid_credentials")
	wantProblem(t, unknown, 401, "invalid_credentials")
	if string(wrong.Body) != string(unknown.Body) {
		t.Fatalf("unknown user and wrong password differ:\n%s\n%s", unknown.Body, wrong.Body)
	}
	// bcrypt reads 72 bytes: the right 72 plus more must not pass.
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": long + "extra"}), 401, "invalid_credentials")
	if r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": long}); r.Status != 201 {
		t.Fatalf("the 72-byte password itself: %d", r.Status)
	}
	// A disabled account says so only to someone who knows its password.
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "dora", "password": "password123"}), 403, "account_disabled")
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "dora", "password": "nope-nope"}), 401, "invalid_credentials")
}

// adminToken signs in a fresh admin for env e.
func (e *env) adminToken() string {
	e.t.Helper()
	_, tok := e.admin()
	return tok
}

func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxFailures: 3})
	e.createUser("alice", "password123", "")
	login := func(pw string) resp {
		return e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": pw})
	}
	login("wrong-1")
	login("wrong-2")
	if r := login("password123"); r.Status != 201 {
		t.Fatalf("success below the limit: %d", r.Status)
	}
	for range 3 { // the success reset the count
		wantProblem(t, login("wrong-again"), 401, "invalid_credentials")
	}
	r := login("password123")
	wantProblem(t, r, 429, "too_many_attempts")
	if ra := r.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("429 Retry-After = %q", ra)
	}
}

func TestBearerAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	u := e.createUser("alice", "password123", "")
	tok, sid := e.login("alice", "password123")

	r := e.do("GET", "/v1/me", "", nil, "Authorization", "bearer "+tok)
	if r.Status != 200 {
		t.Fatalf("lowercase scheme: %d", r.Status)
	}
	me := r.JSON(t)
	if me["id"] != u.ID || me["username"] != "alice" || me["role"] != "user" || me["disabled"] != false || me["created_at"] == "" {
		t.Fatalf("me: %s", r.Body)
	}

	none := e.do("GET", "/v1/me", "", nil)
	wantProblem(t, none, 401, "unauthorized")
	if h := none.Header.Get("WWW-Authenticate"); h != "Bearer" {
		t.Fatalf("no token: WWW-Authenticate %q, want plain Bearer", h)
	}
	other, _ := tokens.New(tokens.Keyring{Secret: []byte(strings.Repeat("z", 32))}, "sessiond", "sessiond")
	foreignIss, _ := tokens.New(tokens.Keyring{Secret: testSecret}, "someone-else", "sessiond")
	foreignAud, _ := tokens.New(tokens.Keyring{Secret: testSecret}, "sessiond", "another-app")
	now := time.Now()
	sess := sessions.Session{ID: sid, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	expired := sessions.Session{ID: sid, UserID: u.ID, CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}
	sign := func(tk *tokens.Tokens, s sessions.Session) string {
		v, err := tk.Sign(tokens.Claims{UserID: s.UserID, SessionID: s.ID, IssuedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt,
			Username: u.Username, AccountCreatedAt: u.CreatedAt})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for name, bad := range map[string]string{
		"garbage":          "not-a-jwt",
		"other secret":     sign(other, sess),
		"other issuer":     sign(foreignIss, sess),
		"other audience":   sign(foreignAud, sess),
		"expired":          sign(e.Tokens, expired),
		"unknown session":  sign(e.Tokens, sessions.Session{ID: "5f0c8a4e-3a3b-4c1e-9d5e-000000000000", UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}),
		"someone else sub": sign(e.Tokens, sessions.Session{ID: sid, UserID: "6a1d7c1e-0000-4000-8000-000000000000", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}),
	} {
		r := e.do("GET", "/v1/me", bad, nil)
		wantProblem(t, r, 401, "unauthorized")
		if h := r.Header.Get("WWW-Authenticate"); h != `Bearer error="invalid_token"` {
			t.Errorf("%s: WWW-Authenticate %q", name, h)
		}
	}
	// Never from the query string or a cookie.
	wantProblem(t, e.do("GET", "/v1/me?token="+tok, "", nil), 401, "unauthorized")
	wantProblem(t, e.do("GET", "/v1/me?access_token="+tok, "", nil), 401, "unauthorized")
	wantProblem(t, e.do("GET", "/v1/me", "", nil, "Cookie", "token="+tok), 401, "unauthorized")
	wantProblem(t, e.do("GET", "/v1/me", "", nil, "Authorization", "Basic "+tok), 401, "unauthorized")
}

func TestLogoutAndLogoutAll(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", "")
	t1, _ := e.login("alice", "password123")
	t2, _ := e.login("alice", "password123")
	t3, _ := e.login("alice", "password123")

	if r := e.do("POST", "/v1/auth/logout", t1, nil); r.Status != 204 {
		t.Fatalf("logout: %d", r.Status)
	}
	wantProblem(t, e.do("GET", "/v1/me", t1, nil), 401, "unauthorized")
	if r := e.do("GET", "/v1/me", t2, nil); r.Status != 200 {
		t.Fatalf("logout ended another session: %d", r.Status)
	}
	r := e.do("POST", "/v1/auth/logout-all", t2, nil)
	if r.Status != 200 || r.JSON(t)["revoked"] != float64(2) {
		t.Fatalf("logout-all: %d %s; want revoked 2", r.Status, r.Body)
	}
	for _, tok := range []string{t2, t3} {
		wantProblem(t, e.do("GET", "/v1/me", tok, nil), 401, "unauthorized")
	}
	if keys, _ := srv.Do(t, "EXISTS", e.Prefix+"sessions:{"+mustUserID(t, e, "alice")+"}").AsInt64(); keys != 0 {
		t.Fatal("logout-all left the session index behind")
	}
}

func mustUserID(t *testing.T, e *env, name string) string {
	t.Helper()
	u, err := e.Users.FindByUsername(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

func TestChangePassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", "")
	caller, _ := e.login("alice", "password123")
	other, _ := e.login("alice", "password123")

	wantProblem(t, e.do("PUT", "/v1/me/password", caller, map[string]string{"current_password": "wrong-one", "new_password": "new-password-1"}), 401, "invalid_credentials")
	for _, bad := range []string{"short", strings.Repeat("x", 73)} {
		r := e.do("PUT", "/v1/me/password", caller, map[string]string{"current_password": "password123", "new_password": bad})
		wantProblem(t, r, 400, "invalid_request")
		if !strings.Contains(r.JSON(t)["detail"].(string), "new_password") {
			t.Fatalf("detail does not name new_password: %s", r.Body)
		}
	}
	if r := e.do("PUT", "/v1/me/password", caller, map[string]string{"current_password": "password123", "new_password": "new-password-1"}); r.Status != 204 {
		t.Fatalf("change: %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/v1/me", caller, nil); r.Status != 200 {
		t.Fatalf("the calling session was revoked: %d", r.Status)
	}
	wantProblem(t, e.do("GET", "/v1/me", other, nil), 401, "unauthorized")
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "password123"}), 401, "invalid_credentials")
	e.login("alice", "new-password-1")
}

func TestManageMyDevices(t *testing.T) {
	t.Parallel()
	// The first sign-ins happen two minutes ago by the stores' clock, past
	// the touch interval (a minute), so "most recently used" can be
	// observed. (Tokens are not issued in the future: they would not verify.)
	var ago atomic.Int64
	ago.Store(int64(2 * time.Minute))
	e := newEnv(t, envOpts{Now: func() time.Time { return time.Now().Add(-time.Duration(ago.Load())) }})
	e.createUser("alice", "password123", "")
	e.createUser("bob", "password123", "")
	phone, phoneID := e.login("alice", "password123")
	laptop, laptopID := e.login("alice", "password123")
	bobTok, bobID := e.login("bob", "password123")

	ago.Store(0)
	e.do("GET", "/v1/me", phone, nil) // the phone is now more recently used than the laptop
	desk, deskID := e.login("alice", "password123")

	r := e.do("GET", "/v1/sessions", desk, nil)
	list := r.JSON(t)["sessions"].([]any)
	if r.Status != 200 || len(list) != 3 {
		t.Fatalf("sessions: %d %s", r.Status, r.Body)
	}
	var ids []any
	var current []any
	for _, s := range list {
		ids = append(ids, s.(map[string]any)["id"])
		current = append(current, s.(map[string]any)["current"])
	}
	if ids[0] != deskID || ids[1] != phoneID || ids[2] != laptopID {
		t.Fatalf("order %v; want desk (new), phone (used), laptop (idle): %v %v %v", ids, deskID, phoneID, laptopID)
	}
	if current[0] != true || current[1] != false || current[2] != false {
		t.Fatalf("current flags %v; want only the calling desk session", current)
	}

	// Someone else's session, or no session: 404, and theirs lives on.
	wantProblem(t, e.do("DELETE", "/v1/sessions/"+bobID, laptop, nil), 404, "not_found")
	wantProblem(t, e.do("DELETE", "/v1/sessions/7b0a5d0e-1111-4222-8333-444444444444", laptop, nil), 404, "not_found")
	wantProblem(t, e.do("DELETE", "/v1/sessions/not-an-id", laptop, nil), 404, "not_found")
	if r := e.do("GET", "/v1/me", bobTok, nil); r.Status != 200 {
		t.Fatalf("bob's session after alice's attempt: %d", r.Status)
	}

	if r := e.do("DELETE", "/v1/sessions/"+phoneID, laptop, nil); r.Status != 204 {
		t.Fatalf("revoke my phone: %d", r.Status)
	}
	wantProblem(t, e.do("GET", "/v1/me", phone, nil), 401, "unauthorized")

	tablet, _ := e.login("alice", "password123")
	watch, _ := e.login("alice", "password123")
	r = e.do("DELETE", "/v1/sessions", laptop, nil)
	if r.Status != 200 || r.JSON(t)["revoked"] != float64(3) {
		t.Fatalf("revoke others: %d %s; want 3 (desk, tablet, watch)", r.Status, r.Body)
	}
	for _, tok := range []string{desk, tablet, watch} {
		wantProblem(t, e.do("GET", "/v1/me", tok, nil), 401, "unauthorized")
	}
	if r := e.do("GET", "/v1/me", laptop, nil); r.Status != 200 {
		t.Fatalf("the caller's session was revoked too: %d", r.Status)
	}
}

// Idle timeout slides with use; absolute lifetime does not.
func TestSessionLifetimes(t *testing.T) {
	t.Parallel()
	srv.RequireReal(t, "keys expire by Redis's own clock")
	// The shortest idle timeout configuration allows (1s). The absolute end
	// is whole seconds (it is the JWT's exp), so 4s after login is
	// somewhere from 3s to 4s.
	e := newEnv(t, envOpts{IdleTimeout: time.Second, MaxLifetime: 4 * time.Second})
	e.createUser("alice", "password123", "")
	used, _ := e.login("alice", "password123")
	idle, _ := e.login("alice", "password123")
	// Use one every 300ms (past the 250ms touch interval) for 1.8s: it
	// outlives the 1s idle timeout; the unused one does not.
	for range 6 {
		time.Sleep(300 * time.Millisecond)
		if r := e.do("GET", "/v1/me", used, nil); r.Status != 200 {
			t.Fatalf("a session in use idled out: %d", r.Status)
		}
	}
	wantProblem(t, e.do("GET", "/v1/me", idle, nil), 401, "unauthorized")
	// However much it is used, it ends at the absolute lifetime.
	eventually(t, 4*time.Second, "the absolute lifetime ends the session in use", func() bool {
		r := e.do("GET", "/v1/me", used, nil)
		if r.Status != 200 && r.Status != 401 {
			t.Fatalf("status %d", r.Status)
		}
		return r.Status == 401
	})
	if keys := srv.Keys(t, e.Prefix+"sess*"); len(keys) != 0 {
		t.Fatalf("expired sessions left keys: %v", keys)
	}
}

func TestOperationsAndUnknownRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	if r := e.do("GET", "/healthz", "", nil); r.Status != 200 || r.JSON(t)["status"] != "ok" {
		t.Fatalf("healthz: %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/readyz", "", nil); r.Status != 200 {
		t.Fatalf("readyz: %d", r.Status)
	}
	wantProblem(t, e.do("GET", "/v2/everything", "", nil), 404, "not_found")
	r := e.do(http.MethodGet, "/healthz", "", nil)
	if r.Header.Get("X-Request-Id") == "" || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("headers: %v", r.Header)
	}
}
