package app_test

// Second factors and step-up through the HTTP API, against real Redis: TOTP
// enrollment, the sign-in that waits for a code, recovery codes, the step-up
// of a session in place, and the policies (a fresh session, an aal 2 admin).

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/users"
)

const mfaKey = "mfa-key-mfa-key-mfa-key-mfa-key-0123456789"

// mfaEnv is a replica with second factors configured and a clock the test
// moves (each TOTP time step is accepted once, so a test moves 30 s between
// codes).
func mfaEnv(t *testing.T, o envOpts) (*env, *clock) {
	t.Helper()
	clk := &clock{}
	if o.Now == nil {
		o.Now = clk.Now
	}
	if o.Env == nil {
		o.Env = map[string]string{}
	}
	if _, set := o.Env["MFA_ENCRYPTION_KEY"]; !set {
		o.Env["MFA_ENCRYPTION_KEY"] = mfaKey
	}
	return newEnv(t, o), clk
}

// codeAt is what an authenticator app shows for secret at t.
func codeAt(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wrongCode is a well-formed code that no step within the allowed drift of
// at shows, so a test's wrong code is never right by chance.
func wrongCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	near := []string{codeAt(t, secret, at.Add(-30*time.Second)), codeAt(t, secret, at), codeAt(t, secret, at.Add(30*time.Second))}
	for n := 100000; ; n++ {
		if c := strconv.Itoa(n); !slices.Contains(near, c) {
			return c
		}
	}
}

// authenticator is an authenticator app: it shows the code of a time step
// no code was accepted for yet. A step is accepted once and only within one
// step of the server's clock, so it takes the earliest step still allowed
// after the last one it showed (and still allowed a few seconds on, by when
// the server has checked it), and waits for the clock to move on when none
// is left (after three codes within 30 s). Tokens are checked against the
// real time, so tests do not move the clock to get fresh steps.
type authenticator struct {
	secret string
	last   int64
	clk    *clock
}

func (c *clock) offset() time.Duration { c.mu.Lock(); defer c.mu.Unlock(); return c.off }

func (a *authenticator) next(t *testing.T) string {
	t.Helper()
	for {
		at := a.clk.Now()
		now := at.Unix() / 30
		// The step before this one is allowed only until this one ends:
		// within 5 s of that, the server could read its clock past it, so
		// the earliest step is this one.
		lowest := now - 1
		if time.Unix((now+1)*30, 0).Sub(at) < 5*time.Second {
			lowest = now
		}
		step := max(a.last+1, lowest)
		if step <= now+1 {
			a.last = step
			return codeAt(t, a.secret, time.Unix(step*30, 0))
		}
		time.Sleep(time.Until(time.Unix((now+1)*30, 0).Add(-a.clk.offset())) + 10*time.Millisecond)
	}
}

// lastCode is the code next showed last (spent, if the server took it).
func (a *authenticator) lastCode(t *testing.T) string {
	return codeAt(t, a.secret, time.Unix(a.last*30, 0))
}

// enroll enrolls TOTP for the session of token and returns the
// authenticator app and the recovery codes.
func (e *env) enroll(t *testing.T, clk *clock, token string) (*authenticator, []string) {
	t.Helper()
	r := e.do("POST", "/v1/me/mfa/totp", token, map[string]any{})
	if r.Status != 201 {
		t.Fatalf("start enrollment: %d %s", r.Status, r.Body)
	}
	app := &authenticator{secret: str(r.JSON(t)["secret"]), clk: clk}
	r = e.do("POST", "/v1/me/mfa/totp/confirm", token, map[string]string{"code": app.next(t)})
	if r.Status != 200 {
		t.Fatalf("confirm enrollment: %d %s", r.Status, r.Body)
	}
	var codes []string
	for _, c := range r.JSON(t)["recovery_codes"].([]any) {
		codes = append(codes, c.(string))
	}
	return app, codes
}

// passwordStep signs in with a password and expects mfa_required; it
// returns the mfa_token.
func (e *env) passwordStep(t *testing.T, name, password string) string {
	t.Helper()
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": name, "password": password,
		"device": map[string]string{"name": "Pixel 8", "platform": "android"}})
	wantProblem(t, r, 401, "mfa_required")
	m := r.JSON(t)
	if got := r.Header.Get("WWW-Authenticate"); got != "Bearer" {
		t.Fatalf("mfa_required WWW-Authenticate %q, want Bearer", got)
	}
	methods, _ := m["methods"].([]any)
	if len(methods) != 2 || methods[0] != "totp" || methods[1] != "recovery_code" {
		t.Fatalf("methods %v, want [totp recovery_code]", m["methods"])
	}
	tok := str(m["mfa_token"])
	if len(tok) < 40 {
		t.Fatalf("mfa_token %q is not a strong random token", tok)
	}
	return tok
}

func (e *env) finishMFA(token string, factor map[string]string) resp {
	e.t.Helper()
	body := map[string]string{"mfa_token": token}
	for k, v := range factor {
		body[k] = v
	}
	return e.do("POST", "/v1/auth/login/mfa", "", body)
}

// session is the caller's own session as GET /v1/sessions shows it.
func (e *env) session(t *testing.T, token string) map[string]any {
	t.Helper()
	r := e.do("GET", "/v1/sessions", token, nil)
	if r.Status != 200 {
		t.Fatalf("list sessions: %d %s", r.Status, r.Body)
	}
	for _, s := range r.JSON(t)["sessions"].([]any) {
		if m := s.(map[string]any); m["current"] == true {
			return m
		}
	}
	t.Fatalf("no current session in %s", r.Body)
	return nil
}

func wantAssurance(t *testing.T, s map[string]any, aal int, amr ...string) {
	t.Helper()
	var got []string
	for _, v := range s["amr"].([]any) {
		got = append(got, v.(string))
	}
	if int(s["aal"].(float64)) != aal || !slices.Equal(got, amr) {
		t.Fatalf("session aal %v amr %v, want %d %v", s["aal"], s["amr"], aal, amr)
	}
	if _, err := time.Parse(time.RFC3339, str(s["auth_time"])); err != nil {
		t.Fatalf("auth_time %v: %v", s["auth_time"], err)
	}
}

func TestTOTPEnrollmentAndSignIn(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{})
	e.createUser("alice", "alice-password", users.RoleUser)
	tok, _ := e.login("alice", "alice-password")
	wantAssurance(t, e.session(t, tok), 1, "pwd")
	if m := e.do("GET", "/v1/me/mfa", tok, nil).JSON(t); m["totp"] != false || m["recovery_codes_left"] != 0.0 || m["passkeys"] != 0.0 {
		t.Fatalf("before enrolling: %v", m)
	}

	// Started but not confirmed: nothing changes at sign-in.
	r := e.do("POST", "/v1/me/mfa/totp", tok, map[string]any{})
	if r.Status != 201 {
		t.Fatalf("start: %d %s", r.Status, r.Body)
	}
	m := r.JSON(t)
	secret := str(m["secret"])
	u, err := url.Parse(str(m["otpauth_url"]))
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Query().Get("secret") != secret || !strings.Contains(u.Path, "alice") {
		t.Fatalf("otpauth_url %q does not carry the secret and the account", m["otpauth_url"])
	}
	e.login("alice", "alice-password")
	wantProblem(t, e.do("POST", "/v1/me/mfa/totp/confirm", tok, map[string]string{"code": wrongCode(t, secret, clk.Now())}), 400, "invalid_request")
	if m := e.do("GET", "/v1/me/mfa", tok, nil).JSON(t); m["totp"] != false {
		t.Fatalf("a wrong confirmation activated TOTP: %v", m)
	}

	app := &authenticator{secret: secret, clk: clk}
	r = e.do("POST", "/v1/me/mfa/totp/confirm", tok, map[string]string{"code": app.next(t)})
	if r.Status != 200 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	codes := r.JSON(t)["recovery_codes"].([]any)
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes, want 10", len(codes))
	}
	// Confirming changes no session, this one included.
	wantAssurance(t, e.session(t, tok), 1, "pwd")
	if m := e.do("GET", "/v1/me/mfa", tok, nil).JSON(t); m["totp"] != true || m["recovery_codes_left"] != 10.0 {
		t.Fatalf("after enrolling: %v", m)
	}

	// The code the confirmation spent does not open a sign-in.
	mt := e.passwordStep(t, "alice", "alice-password")
	wantProblem(t, e.finishMFA(mt, map[string]string{"code": app.lastCode(t)}), 401, "invalid_credentials")
	code := app.next(t)
	r = e.finishMFA(mt, map[string]string{"code": code})
	if r.Status != 201 {
		t.Fatalf("finish with a right code: %d %s", r.Status, r.Body)
	}
	p := toPair(t, r)
	wantAssurance(t, p.Session, 2, "pwd", "otp", "mfa")
	if p.Session["device_name"] != "Pixel 8" || p.Session["platform"] != "android" {
		t.Fatalf("the session lost the device of the password step: %v", p.Session)
	}
	if got := e.do("GET", "/v1/me", p.Token, nil); got.Status != 200 {
		t.Fatalf("the new token: %d %s", got.Status, got.Body)
	}
	// Spent: the mfa_token finishes one sign-in; the code, one.
	wantProblem(t, e.finishMFA(mt, map[string]string{"code": code}), 401, "unauthorized")
	wantProblem(t, e.finishMFA(e.passwordStep(t, "alice", "alice-password"), map[string]string{"code": code}), 401, "invalid_credentials")

	// A recovery code works once, whatever its case and dashes.
	rc := codes[0].(string)
	r = e.finishMFA(e.passwordStep(t, "alice", "alice-password"), map[string]string{"recovery_code": strings.ToUpper(strings.ReplaceAll(rc, "-", ""))})
	if r.Status != 201 {
		t.Fatalf("recovery code: %d %s", r.Status, r.Body)
	}
	wantAssurance(t, toPair(t, r).Session, 2, "pwd", "mfa")
	wantProblem(t, e.finishMFA(e.passwordStep(t, "alice", "alice-password"), map[string]string{"recovery_code": rc}), 401, "invalid_credentials")
	if m := e.do("GET", "/v1/me/mfa", tok, nil).JSON(t); m["recovery_codes_left"] != 9.0 {
		t.Fatalf("after one recovery code: %v", m)
	}

	// What the history shows.
	evs := e.do("GET", "/v1/me/events?limit=100", tok, nil)
	for _, typ := range []string{"mfa.enrolled", "mfa.failed", "recovery_code.used"} {
		if !strings.Contains(string(evs.Body), `"type":"`+typ+`"`) {
			t.Fatalf("no %s in the history: %s", typ, evs.Body)
		}
	}
}

func TestMFATokenEnds(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{MaxFailures: 100})
	e.createUser("bob", "bob-password", users.RoleUser)
	tok, _ := e.login("bob", "bob-password")
	app, _ := e.enroll(t, clk, tok)

	// Five wrong codes end it: the sixth try, even right, is refused.
	mt := e.passwordStep(t, "bob", "bob-password")
	for range 5 {
		wantProblem(t, e.finishMFA(mt, map[string]string{"code": wrongCode(t, app.secret, clk.Now())}), 401, "invalid_credentials")
	}
	wantProblem(t, e.finishMFA(mt, map[string]string{"code": app.next(t)}), 401, "unauthorized")

	// Made-up tokens and bad bodies.
	wantProblem(t, e.finishMFA("not-a-token", map[string]string{"code": "123456"}), 401, "unauthorized")
	wantProblem(t, e.finishMFA("x", nil), 400, "invalid_request")
	wantProblem(t, e.finishMFA("x", map[string]string{"code": "1", "recovery_code": "2"}), 400, "invalid_request")
	wantProblem(t, e.do("POST", "/v1/auth/login/mfa", "", map[string]string{"code": "123456"}), 400, "invalid_request")
}

// The mfa_token's key has Redis's own 5-minute expiry.
func TestMFATokenExpiresInRedis(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{})
	e.createUser("bob", "bob-password", users.RoleUser)
	tok, _ := e.login("bob", "bob-password")
	e.enroll(t, clk, tok)
	e.passwordStep(t, "bob", "bob-password")
	ks := slices.DeleteFunc(srv.Keys(t, e.Prefix+"mfa:*"), func(k string) bool { return k == e.Keys.MFAEnrolled() })
	if len(ks) != 1 {
		t.Fatalf("mfa_token keys %v, want one", ks)
	}
	ttl, err := e.Client.Do(context.Background(), e.Client.B().Pttl().Key(ks[0]).Build()).AsInt64()
	if err != nil || ttl <= 0 || ttl > (5*time.Minute).Milliseconds() {
		t.Fatalf("mfa_token key TTL %d ms (%v), want (0, 5 min]", ttl, err)
	}
}

func TestWrongCodesCountAgainstTheLoginLimit(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{MaxFailures: 3})
	e.createUser("carol", "carol-password", users.RoleUser)
	tok, _ := e.login("carol", "carol-password")
	app, _ := e.enroll(t, clk, tok)
	for range 3 {
		mt := e.passwordStep(t, "carol", "carol-password")
		wantProblem(t, e.finishMFA(mt, map[string]string{"code": wrongCode(t, app.secret, clk.Now())}), 401, "invalid_credentials")
	}
	// The budget of (carol, this address) is spent: the password step and
	// the code step are both refused until the window ends.
	r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "carol", "password": "carol-password"})
	wantProblem(t, r, 429, "too_many_attempts")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
}

// Whoever lacks the password learns nothing of the second factor: the same
// refusal, body for body, as for an account without one.
func TestMFARevealsNothingWithoutThePassword(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{})
	e.createUser("dave", "dave-password", users.RoleUser)
	e.createUser("erin", "erin-password", users.RoleUser)
	tok, _ := e.login("dave", "dave-password")
	e.enroll(t, clk, tok)
	a := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "dave", "password": "wrong-password"})
	b := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "erin", "password": "wrong-password"})
	wantProblem(t, a, 401, "invalid_credentials")
	wantProblem(t, b, 401, "invalid_credentials")
	if string(a.Body) != string(b.Body) {
		t.Fatalf("refusals differ:\n%s\n%s", a.Body, b.Body)
	}
}

// A Redis dump alone does not give the secret away.
func TestTOTPSecretIsSealedAtRest(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{})
	u := e.createUser("frank", "frank-password", users.RoleUser)
	tok, _ := e.login("frank", "frank-password")
	app, codes := e.enroll(t, clk, tok)
	secret := app.secret
	for _, k := range srv.Keys(t, e.Prefix+"*") {
		dump, err := e.Client.Do(context.Background(), e.Client.B().Dump().Key(k).Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range append([]string{secret, strings.ToLower(secret)}, codes...) {
			if strings.Contains(dump, s) {
				t.Fatalf("key %s holds a secret in the clear", k)
			}
		}
	}
	if _, err := e.Users.Get(context.Background(), u.ID); err != nil {
		t.Fatal(err)
	}
}

func TestReauthenticateRaisesTheSameSession(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{Env: map[string]string{"INTROSPECTION_CLIENTS": "gw:" + strings.Repeat("s", 32)}})
	e.createUser("gina", "gina-password", users.RoleUser)
	tok, _ := e.login("gina", "gina-password")
	app, _ := e.enroll(t, clk, tok)
	before := e.session(t, tok)
	clk.Advance(2 * time.Minute)

	wantProblem(t, e.do("POST", "/v1/auth/reauthenticate", tok, map[string]string{"password": "wrong-password"}), 401, "invalid_credentials")
	wantProblem(t, e.do("POST", "/v1/auth/reauthenticate", tok, map[string]string{"code": wrongCode(t, app.secret, clk.Now())}), 401, "invalid_credentials")
	wantProblem(t, e.do("POST", "/v1/auth/reauthenticate", tok, map[string]any{}), 400, "invalid_request")

	r := e.do("POST", "/v1/auth/reauthenticate", tok, map[string]string{"code": app.next(t)})
	if r.Status != 200 {
		t.Fatalf("step-up: %d %s", r.Status, r.Body)
	}
	s := r.JSON(t)
	if s["id"] != before["id"] || s["token"] != nil || s["current"] != true {
		t.Fatalf("step-up answered another session or a token: %s", r.Body)
	}
	wantAssurance(t, s, 2, "pwd", "otp", "mfa")
	at, _ := time.Parse(time.RFC3339, str(s["auth_time"]))
	was, _ := time.Parse(time.RFC3339, str(before["auth_time"]))
	if at.Sub(was) < time.Minute {
		t.Fatalf("auth_time %v did not move from %v", at, was)
	}
	// Seen on the next request, with the same token, by every view.
	wantAssurance(t, e.session(t, tok), 2, "pwd", "otp", "mfa")
	v := e.do("GET", "/v1/auth/verify", tok, nil)
	if v.Status != 200 || v.Header.Get("X-Session-AAL") != "2" || v.Header.Get("X-Auth-Time") != strconv.FormatInt(at.Unix(), 10) {
		t.Fatalf("verify: %d AAL %q auth time %q, want 2 %d", v.Status, v.Header.Get("X-Session-AAL"), v.Header.Get("X-Auth-Time"), at.Unix())
	}
	ir := e.introspect("gw", strings.Repeat("s", 32), tok)
	if ir.Status != 200 {
		t.Fatalf("introspect: %d %s", ir.Status, ir.Body)
	}
	in := ir.JSON(t)
	if in["acr"] != "2" || in["auth_time"] != float64(at.Unix()) || len(in["amr"].([]any)) != 3 {
		t.Fatalf("introspection: %v", in)
	}
	if n := len(e.do("GET", "/v1/sessions", tok, nil).JSON(t)["sessions"].([]any)); n != 1 {
		t.Fatalf("%d sessions after the step-up, want the one", n)
	}
	// A password alone later keeps the second factor and moves auth_time.
	clk.Advance(time.Minute)
	r = e.do("POST", "/v1/auth/reauthenticate", tok, map[string]string{"password": "gina-password"})
	if r.Status != 200 {
		t.Fatalf("password step-up: %d %s", r.Status, r.Body)
	}
	wantAssurance(t, r.JSON(t), 2, "pwd", "otp", "mfa")
	if !strings.Contains(string(e.do("GET", "/v1/me/events", tok, nil).Body), `"session.reauthenticated"`) {
		t.Fatal("no session.reauthenticated in the history")
	}
}

func TestFactorsNeedAFreshSession(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{Env: map[string]string{"STEP_UP_MAX_AGE": "5m"}})
	e.createUser("hank", "hank-password", users.RoleUser)
	tok, _ := e.login("hank", "hank-password")
	clk.Advance(5*time.Minute + time.Second)
	for _, r := range []struct{ method, path string }{
		{"POST", "/v1/me/mfa/totp"}, {"POST", "/v1/me/mfa/totp/confirm"}, {"DELETE", "/v1/me/mfa/totp"}, {"POST", "/v1/me/mfa/recovery-codes"},
	} {
		wantProblem(t, e.do(r.method, r.path, tok, map[string]string{"code": "123456"}), 403, "reauthentication_required")
	}
	// Reading is not guarded.
	if r := e.do("GET", "/v1/me/mfa", tok, nil); r.Status != 200 {
		t.Fatalf("GET /v1/me/mfa: %d", r.Status)
	}
	if r := e.do("POST", "/v1/auth/reauthenticate", tok, map[string]string{"password": "hank-password"}); r.Status != 200 {
		t.Fatalf("reauthenticate: %d %s", r.Status, r.Body)
	}
	app, _ := e.enroll(t, clk, tok)

	// Removing, later, needs a fresh session again.
	clk.Advance(6 * time.Minute)
	wantProblem(t, e.do("DELETE", "/v1/me/mfa/totp", tok, nil), 403, "reauthentication_required")
	if r := e.do("POST", "/v1/auth/reauthenticate", tok, map[string]string{"code": app.next(t)}); r.Status != 200 {
		t.Fatalf("reauthenticate: %d %s", r.Status, r.Body)
	}
	if r := e.do("DELETE", "/v1/me/mfa/totp", tok, nil); r.Status != 204 {
		t.Fatalf("remove: %d %s", r.Status, r.Body)
	}
	e.login("hank", "hank-password") // no second factor asked
	if !strings.Contains(string(e.do("GET", "/v1/me/events", tok, nil).Body), `"mfa.removed"`) {
		t.Fatal("no mfa.removed in the history")
	}
}

func TestRecoveryCodesRegenerate(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{})
	e.createUser("ivy", "ivy-password", users.RoleUser)
	tok, _ := e.login("ivy", "ivy-password")
	_, old := e.enroll(t, clk, tok)
	r := e.do("POST", "/v1/me/mfa/recovery-codes", tok, map[string]any{})
	if r.Status != 200 {
		t.Fatalf("regenerate: %d %s", r.Status, r.Body)
	}
	fresh := r.JSON(t)["recovery_codes"].([]any)
	if len(fresh) != 10 || slices.Contains(old, fresh[0].(string)) {
		t.Fatalf("new codes %v", fresh)
	}
	wantProblem(t, e.finishMFA(e.passwordStep(t, "ivy", "ivy-password"), map[string]string{"recovery_code": old[0]}), 401, "invalid_credentials")
	if r := e.finishMFA(e.passwordStep(t, "ivy", "ivy-password"), map[string]string{"recovery_code": fresh[0].(string)}); r.Status != 201 {
		t.Fatalf("a new code: %d %s", r.Status, r.Body)
	}
}

func TestAdminRequiresAAL2(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{Env: map[string]string{"ADMIN_REQUIRES_AAL2": "true"}})
	e.createUser("user", "user-password", users.RoleUser)
	user, _ := e.login("user", "user-password")
	_, adm := e.admin()
	wantProblem(t, e.do("GET", "/v1/admin/users", user, nil), 403, "forbidden")
	wantProblem(t, e.do("GET", "/v1/admin/users", adm, nil), 403, "step_up_required")
	wantProblem(t, e.do("GET", "/v1/admin/events", adm, nil), 403, "step_up_required")

	app, _ := e.enroll(t, clk, adm)
	wantProblem(t, e.do("GET", "/v1/admin/users", adm, nil), 403, "step_up_required")
	if r := e.do("POST", "/v1/auth/reauthenticate", adm, map[string]string{"code": app.next(t)}); r.Status != 200 {
		t.Fatalf("step-up: %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/v1/admin/users", adm, nil); r.Status != 200 {
		t.Fatalf("after the step-up: %d %s", r.Status, r.Body)
	}
	// A sign-in with both factors is at aal 2 from the start.
	r := e.finishMFA(e.passwordStep(t, "root", "root-password"), map[string]string{"code": app.next(t)})
	if r.Status != 201 {
		t.Fatalf("admin sign-in: %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/v1/admin/users", toPair(t, r).Token, nil); r.Status != 200 {
		t.Fatalf("admin at aal 2: %d %s", r.Status, r.Body)
	}
}

// Without ADMIN_REQUIRES_AAL2 an admin at aal 1 is an admin.
func TestAdminAtAAL1ByDefault(t *testing.T) {
	e, _ := mfaEnv(t, envOpts{})
	_, adm := e.admin()
	if r := e.do("GET", "/v1/admin/users", adm, nil); r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
}

func TestAdminResetsSecondFactors(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{})
	u := e.createUser("jack", "jack-password", users.RoleUser)
	tok, _ := e.login("jack", "jack-password")
	e.enroll(t, clk, tok)
	e.passwordStep(t, "jack", "jack-password")
	_, adm := e.admin()
	wantProblem(t, e.do("DELETE", "/v1/admin/users/"+u.ID+"/mfa", tok, nil), 403, "forbidden")
	wantProblem(t, e.do("DELETE", "/v1/admin/users/6f1c0000-0000-4000-8000-000000000000/mfa", adm, nil), 404, "not_found")
	if r := e.do("DELETE", "/v1/admin/users/"+u.ID+"/mfa", adm, nil); r.Status != 204 {
		t.Fatalf("reset: %d %s", r.Status, r.Body)
	}
	e.login("jack", "jack-password")
	if m := e.do("GET", "/v1/me/mfa", tok, nil).JSON(t); m["totp"] != false || m["recovery_codes_left"] != 0.0 {
		t.Fatalf("after the reset: %v", m)
	}
	// The account's sessions stay: they were signed in rightly.
	if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
		t.Fatalf("session after the reset: %d", r.Status)
	}
}

// With refresh tokens: a refreshed session keeps its aal and auth_time, and
// a step-up shows on the next request without a new access token.
func TestAssuranceWithRefreshTokens(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{AccessTokenTTL: time.Minute})
	e.createUser("kate", "kate-password", users.RoleUser)
	p := e.signIn("kate", "kate-password")
	app, _ := e.enroll(t, clk, p.Token)

	r := e.finishMFA(e.passwordStep(t, "kate", "kate-password"), map[string]string{"code": app.next(t)})
	if r.Status != 201 {
		t.Fatalf("mfa sign-in: %d %s", r.Status, r.Body)
	}
	two := toPair(t, r)
	if two.Refresh == "" {
		t.Fatalf("an mfa sign-in with ACCESS_TOKEN_TTL got no refresh token: %s", r.Body)
	}
	// Within the tokens' 5 s of clock skew: a later refresh, with a token
	// the real clock accepts.
	clk.Advance(3 * time.Second)
	next := e.mustRefresh(two.Refresh)
	wantAssurance(t, next.Session, 2, "pwd", "otp", "mfa")
	if next.Session["auth_time"] != two.Session["auth_time"] {
		t.Fatalf("refresh moved auth_time: %v → %v", two.Session["auth_time"], next.Session["auth_time"])
	}

	// The first session, at aal 1, steps up; its access token stays.
	if v := e.do("GET", "/v1/auth/verify", p.Token, nil); v.Header.Get("X-Session-AAL") != "1" {
		t.Fatalf("before the step-up: %d %q", v.Status, v.Header.Get("X-Session-AAL"))
	}
	p = e.mustRefresh(p.Refresh)
	if r := e.do("POST", "/v1/auth/reauthenticate", p.Token, map[string]string{"code": app.next(t)}); r.Status != 200 {
		t.Fatalf("step-up: %d %s", r.Status, r.Body)
	}
	if v := e.do("GET", "/v1/auth/verify", p.Token, nil); v.Header.Get("X-Session-AAL") != "2" {
		t.Fatalf("after the step-up, same token: %d %q", v.Status, v.Header.Get("X-Session-AAL"))
	}
	wantAssurance(t, e.mustRefresh(p.Refresh).Session, 2, "pwd", "otp", "mfa")
}

// A replica on the same data sees another's step-up on its next request.
func TestStepUpSeenByAnotherReplica(t *testing.T) {
	a, clk := mfaEnv(t, envOpts{})
	b, _ := mfaEnv(t, envOpts{Prefix: a.Prefix, Now: clk.Now})
	a.createUser("liam", "liam-password", users.RoleUser)
	tok, _ := a.login("liam", "liam-password")
	app, _ := a.enroll(t, clk, tok)
	if v := b.do("GET", "/v1/auth/verify", tok, nil); v.Header.Get("X-Session-AAL") != "1" {
		t.Fatalf("before: %q", v.Header.Get("X-Session-AAL"))
	}
	if r := a.do("POST", "/v1/auth/reauthenticate", tok, map[string]string{"code": app.next(t)}); r.Status != 200 {
		t.Fatalf("step-up: %d %s", r.Status, r.Body)
	}
	// The other replica's cached read is invalidated by Redis: poll for it
	// briefly (the push is asynchronous), never past a second.
	deadline := time.Now().Add(time.Second)
	for b.do("GET", "/v1/auth/verify", tok, nil).Header.Get("X-Session-AAL") != "2" {
		if time.Now().After(deadline) {
			t.Fatal("the other replica still sees aal 1 a second after the step-up")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Start-up refuses to run without the key once an account has enrolled, and
// a rotated key opens what the previous one sealed.
func TestMFAKeyAtStartUp(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{})
	e.createUser("mona", "mona-password", users.RoleUser)
	tok, _ := e.login("mona", "mona-password")
	app, _ := e.enroll(t, clk, tok)

	cfg := envOpts{Prefix: e.Prefix}.config(t)
	_, err := server.Open(context.Background(), cfg, server.Options{Client: srv.Client(t)})
	var ce *server.ConfigError
	if !errors.As(err, &ce) || ce.Var != "MFA_ENCRYPTION_KEY" {
		t.Fatalf("start without the key: %v, want a MFA_ENCRYPTION_KEY config error", err)
	}

	rotated, _ := mfaEnv(t, envOpts{Prefix: e.Prefix, Now: clk.Now, Env: map[string]string{
		"MFA_ENCRYPTION_KEY": strings.Repeat("n", 40), "MFA_PREVIOUS_ENCRYPTION_KEYS": mfaKey}})
	r := rotated.finishMFA(rotated.passwordStep(t, "mona", "mona-password"), map[string]string{"code": app.next(t)})
	if r.Status != 201 {
		t.Fatalf("after rotating the key: %d %s", r.Status, r.Body)
	}
	wrong, _ := mfaEnv(t, envOpts{Prefix: e.Prefix, Now: clk.Now, Env: map[string]string{"MFA_ENCRYPTION_KEY": strings.Repeat("w", 40)}})
	r = wrong.finishMFA(wrong.passwordStep(t, "mona", "mona-password"), map[string]string{"code": app.next(t)})
	if r.Status != 500 || strings.Contains(string(r.Body), app.secret) {
		t.Fatalf("with a key that does not open the secret: %d %s, want 500 without the secret", r.Status, r.Body)
	}
	if !strings.Contains(wrong.Logs.String(), "MFA_ENCRYPTION_KEY") {
		t.Fatalf("the log does not say which key is wrong:\n%s", wrong.Logs.String())
	}
}

// Without MFA_ENCRYPTION_KEY nobody can enroll: a secret could not be kept.
func TestEnrollmentNeedsTheKey(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.createUser("nina", "nina-password", users.RoleUser)
	tok, _ := e.login("nina", "nina-password")
	wantProblem(t, e.do("POST", "/v1/me/mfa/totp", tok, map[string]any{}), 403, "forbidden")
}

// An admin removes an account's second factors from the console too: a
// confirmation, then the account signs in with its password alone.
func TestConsoleAdminResetsSecondFactors(t *testing.T) {
	e, clk := mfaEnv(t, envOpts{})
	e.admin()
	alice := e.createUser("alice", "alice-password", users.RoleUser)
	tok, _ := e.login("alice", "alice-password")
	e.enroll(t, clk, tok)
	e.passwordStep(t, "alice", "alice-password")

	cookie := e.consoleSignIn("root", "root-password")
	userPage := "/console/admin/users/" + alice.ID
	wantPage(t, e.console("GET", userPage, cookie, nil), 200, `href="`+userPage+`/mfa-reset"`)
	confirm := e.console("GET", userPage+"/mfa-reset", cookie, nil)
	wantPage(t, confirm, 200, "Remove every second factor of alice?", `href="`+userPage+`">Cancel</a>`)
	wantRedirect(t, e.consolePost(t, cookie, userPage+"/mfa-reset", nil), userPage+"?done=mfa-reset&n=0")
	wantPage(t, e.console("GET", userPage+"?done=mfa-reset&n=0", cookie, nil), 200, "Every second factor of the account was removed")
	e.login("alice", "alice-password") // no mfa_required
	if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
		t.Fatalf("alice's session after the reset: %d", r.Status)
	}
}
