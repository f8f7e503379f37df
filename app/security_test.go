package app_test

// What a hostile review of v1 found open, each through the real HTTP app over
// real Redis.

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/users"
)

// changePassword sends PUT /v1/me/password.
func (e *env) changePassword(tok, current, next string) resp {
	e.t.Helper()
	return e.do("PUT", "/v1/me/password", tok, map[string]string{"current_password": current, "new_password": next})
}

// canLogin reports whether a login with that password succeeds.
func (e *env) canLogin(name, password string) bool {
	e.t.Helper()
	r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": name, "password": password})
	return r.Status == 201
}

// A thief holding a stolen session keeps changing the password with the
// current one; the admin resets it. Once the admin's reset has answered 200,
// the admin's password is the one that works: a change that checked the old
// password before the reset must not land after it.
func TestAdminResetBeatsAThiefChangingThePassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxFailures: 1000})
	victim := e.createUser("victim", "original-pw", "")
	_, admin := e.admin()
	for trial := range 8 {
		current := fmt.Sprintf("original-%d", trial)
		if r := e.do("PATCH", "/v1/admin/users/"+victim.ID, admin, map[string]string{"password": current}); r.Status != 200 {
			t.Fatalf("setting up trial %d: %d %s", trial, r.Status, r.Body)
		}
		var thieves []string
		for range 8 {
			tok, _ := e.login("victim", current)
			thieves = append(thieves, tok)
		}
		var wg sync.WaitGroup
		for i, tok := range thieves {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.changePassword(tok, current, fmt.Sprintf("thief-%d-%d", trial, i))
			}()
		}
		reset := fmt.Sprintf("admin-reset-%d", trial)
		if r := e.do("PATCH", "/v1/admin/users/"+victim.ID, admin, map[string]string{"password": reset}); r.Status != 200 {
			t.Fatalf("admin reset: %d %s", r.Status, r.Body)
		}
		wg.Wait()
		if !e.canLogin("victim", reset) {
			t.Fatalf("trial %d: after the admin's reset answered 200, its password no longer works: a thief's change landed over it", trial)
		}
	}
}

// Eight sessions of one user change the password at once, all with the right
// current password: exactly one wins, its caller stays signed in, and its
// password is the one that works.
func TestRacingPasswordChangesOneWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxFailures: 1000})
	e.createUser("racer", "password123", "")
	toks := make([]string, 8)
	for i := range toks {
		toks[i], _ = e.login("racer", "password123")
	}
	statuses := make([]int, len(toks))
	var wg sync.WaitGroup
	for i, tok := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = e.changePassword(tok, "password123", fmt.Sprintf("new-password-%d", i)).Status
		}()
	}
	wg.Wait()
	winner := slices.Index(statuses, 204)
	if n := len(slices.DeleteFunc(slices.Clone(statuses), func(s int) bool { return s != 204 })); n != 1 {
		t.Fatalf("statuses %v: want exactly one 204", statuses)
	}
	for i, s := range statuses {
		if i != winner && s != 401 {
			t.Errorf("loser %d answered %d, want 401", i, s)
		}
	}
	if r := e.do("GET", "/v1/me", toks[winner], nil); r.Status != 200 {
		t.Fatalf("the winner's session did not survive its own change: %d", r.Status)
	}
	if !e.canLogin("racer", fmt.Sprintf("new-password-%d", winner)) {
		t.Fatal("the winner's password does not work")
	}
}

// Wrong current passwords count against the failed-login limits, as logins
// do, and are answered 429 past them, even when the right one comes next.
func TestPasswordChangeGuessesAreLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxFailures: 3})
	e.createUser("guessed", "password123", "")
	tok, _ := e.login("guessed", "password123")
	for i := range 3 {
		wantProblem(t, e.changePassword(tok, fmt.Sprintf("guess-%d-xx", i), "new-password"), 401, "invalid_credentials")
	}
	r := e.changePassword(tok, "password123", "new-password")
	wantProblem(t, r, 429, "too_many_attempts")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	// The same counters as login: signing in from the same address is locked too.
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "guessed", "password": "password123"}),
		429, "too_many_attempts")
}

// Thirty concurrent right logins of one account from one address all
// succeed: attempts in flight are not failures.
func TestConcurrentCorrectLoginsAreNotRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxFailures: 10})
	e.createUser("busy", "password123", "")
	statuses := make([]int, 30)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = e.do("POST", "/v1/auth/login", "", map[string]string{"username": "busy", "password": "password123"}).Status
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 201 {
			t.Fatalf("login %d of 30 answered %d (all: %v)", i, s, statuses)
		}
	}
}

// A panic in a handler is a 500 problem with the request's id, logged
// without secrets, and the service goes on answering.
func TestPanicIsA500AndTheServiceGoesOn(t *testing.T) {
	t.Parallel()
	base := newEnv(t, envOpts{})
	logs := &syncBuffer{}
	panicky := &env{t: t, Users: base.Users, Sessions: base.Sessions, Tokens: base.Tokens, Logs: logs,
		App: app.New(app.Deps{Users: base.Users, Sessions: base.Sessions, Tokens: base.Tokens,
			Ping: func(context.Context) error { panic("boom in readyz") },
			Log:  slog.New(slog.NewTextHandler(logs, nil))})}
	for range 2 {
		r := panicky.do("GET", "/readyz", "", nil)
		wantProblem(t, r, 500, "internal")
		if strings.Contains(string(r.Body), "boom") {
			t.Fatalf("the panic's text reached the client: %s", r.Body)
		}
		if id := r.Header.Get("X-Request-Id"); !strings.Contains(logs.String(), id) {
			t.Fatalf("the panic was not logged with request id %s:\n%s", id, logs.String())
		}
	}
	if r := panicky.do("GET", "/healthz", "", nil); r.Status != 200 {
		t.Fatalf("after a panic: /healthz %d", r.Status)
	}
}

// Behind a trusted proxy, a client's own X-Forwarded-For line, sent before
// the line the proxy appends, does not make its address the client's; an
// entry that is not a plain IP is never stored.
func TestForwardedForAcrossHeaderLines(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{TrustedProxies: behindProxy, MaxFailures: 1000})
	e.createUser("alice", "password123", "")
	ipOf := func(lines ...string) string {
		var h []string
		for _, l := range lines {
			h = append(h, "X-Forwarded-For", l)
		}
		r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "password123"}, h...)
		if r.Status != 201 {
			t.Fatalf("login: %d %s", r.Status, r.Body)
		}
		return r.JSON(t)["session"].(map[string]any)["ip"].(string)
	}
	for _, c := range []struct {
		lines []string
		want  string
	}{
		{[]string{"6.6.6.6", "203.0.113.9"}, "203.0.113.9"},
		{[]string{"6.6.6.6, 7.7.7.7", "203.0.113.9, 0.0.0.0"}, "203.0.113.9"},
		{[]string{"fe80::1%anything"}, "0.0.0.0"},
		{[]string{"203.0.113.9:4444"}, "0.0.0.0"},
		{[]string{"198.51.100.7", "not an address"}, "0.0.0.0"},
	} {
		if got := ipOf(c.lines...); got != c.want {
			t.Errorf("X-Forwarded-For lines %q: client ip %q, want %q", c.lines, got, c.want)
		}
	}
}

// The only enabled admin cannot demote or disable itself, and two admins
// demoting or disabling each other at once cannot both succeed.
func TestLastAdminCannotBeRemoved(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	root, tok := e.admin()
	wantProblem(t, e.do("PATCH", "/v1/admin/users/"+root.ID, tok, map[string]any{"role": "user"}), 409, "last_admin")
	wantProblem(t, e.do("PATCH", "/v1/admin/users/"+root.ID, tok, map[string]any{"disabled": true}), 409, "last_admin")
	if r := e.do("GET", "/v1/admin/users/"+root.ID, tok, nil); r.Status != 200 || r.JSON(t)["role"] != "admin" || r.JSON(t)["disabled"] != false {
		t.Fatalf("after the refusals: %d %s", r.Status, r.Body)
	}
	// With a second admin, stepping down is allowed; then the other is the last.
	other := e.createUser("other", "password123", users.RoleAdmin)
	if r := e.do("PATCH", "/v1/admin/users/"+root.ID, tok, map[string]any{"role": "user"}); r.Status != 200 {
		t.Fatalf("stepping down beside another admin: %d %s", r.Status, r.Body)
	}
	ot, _ := e.login("other", "password123")
	wantProblem(t, e.do("PATCH", "/v1/admin/users/"+other.ID, ot, map[string]any{"disabled": true}), 409, "last_admin")

	for trial := range 10 {
		pair := newEnv(t, envOpts{}) // exactly two admins
		a := pair.createUser("a", "password123", users.RoleAdmin)
		b := pair.createUser("b", "password123", users.RoleAdmin)
		ta, _ := pair.login("a", "password123")
		tb, _ := pair.login("b", "password123")
		var ra, rb resp
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			ra = pair.do("PATCH", "/v1/admin/users/"+b.ID, ta, map[string]any{"role": "user"})
		}()
		go func() {
			defer wg.Done()
			rb = pair.do("PATCH", "/v1/admin/users/"+a.ID, tb, map[string]any{"disabled": true})
		}()
		wg.Wait()
		ok := 0
		for _, r := range []resp{ra, rb} {
			switch {
			case r.Status == 200:
				ok++
			case r.Status == 409 && r.Code(t) == "last_admin", r.Status == 403, r.Status == 401:
				// 403/401: the other change landed first and took this admin's rights or session.
			default:
				t.Fatalf("trial %d: %d %s", trial, r.Status, r.Body)
			}
		}
		if ok != 1 {
			t.Fatalf("trial %d: %d of the two mutual removals succeeded (%d, %d); want exactly one", trial, ok, ra.Status, rb.Status)
		}
		admins := 0
		for _, id := range []string{a.ID, b.ID} {
			u, err := pair.Users.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if u.Role == users.RoleAdmin && !u.Disabled {
				admins++
			}
		}
		if admins != 1 {
			t.Fatalf("trial %d: %d enabled admins left", trial, admins)
		}
	}
}

// Timing: after BCRYPT_COST was lowered, an account still hashed at the old
// cost and an unknown name are refused after the same work; a right password
// rehashes the account at the configured cost.
func TestRefusalTimingAfterACostChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxFailures: 1000, MaxPerAccount: 0})
	// Another replica, configured at a higher cost, made this account.
	high := newEnv(t, envOpts{Prefix: e.Prefix, BcryptCost: 10}).Users
	if _, err := high.Create(context.Background(), "oldcost", "password123", "", audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	e.createUser("newcost", "password123", "")
	refusal := func(name string) time.Duration {
		var ds []time.Duration
		for range 5 {
			start := time.Now()
			wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": name, "password": "wrong-password"}), 401, "invalid_credentials")
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	old, unknown, fresh := refusal("oldcost"), refusal("nosuchuser"), refusal("newcost")
	t.Logf("median refusal: account at cost 10 %s, unknown name %s, account at cost 4 %s", old, unknown, fresh)
	for name, d := range map[string]time.Duration{"unknown name": unknown, "account at the configured cost": fresh} {
		if d < old/3 || d > old*3 {
			t.Errorf("%s refused in %s against %s for the account at the old cost: tells them apart", name, d, old)
		}
	}
	if !e.canLogin("oldcost", "password123") {
		t.Fatal("the right password failed")
	}
	hash, err := e.Client.Do(context.Background(), e.Client.B().Hget().Key(e.Keys.User(mustFind(t, e.Users, "oldcost"))).Field("hash").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	if cost, _ := bcrypt.Cost([]byte(hash)); cost != 4 {
		t.Fatalf("after a right login the hash has cost %d, want the configured 4", cost)
	}
	if !e.canLogin("oldcost", "password123") {
		t.Fatal("the rehashed password failed")
	}
}

// A token whose header has "crit" with an extension the server does not
// understand is refused, even naming a live session.
func TestCritHeaderTokenRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	u := e.createUser("alice", "password123", "")
	real, sid := e.login("alice", "password123")
	parsed, _, _ := jwt.NewParser().ParseUnverified(real, jwt.MapClaims{})
	kid := parsed.Header["kid"]
	now := time.Now()
	claims := jwt.MapClaims{"iss": "sessiond", "aud": "sessiond", "sub": u.ID, "jti": sid,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "preferred_username": "alice",
		"account_created_at": u.CreatedAt.Unix()}
	signed := func(tok *jwt.Token) string {
		tok.Header["kid"] = kid
		s, err := tok.SignedString(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	plain := signed(jwt.NewWithClaims(jwt.SigningMethodHS256, claims))
	if r := e.do("GET", "/v1/me", plain, nil); r.Status != 200 {
		t.Fatalf("the control token: %d %s", r.Status, r.Body)
	}
	crit := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	crit.Header["crit"] = []string{"https://example.com/must-understand"}
	crit.Header["https://example.com/must-understand"] = true
	tok := signed(crit)
	wantProblem(t, e.do("GET", "/v1/me", tok, nil), 401, "unauthorized")
	stringExp := jwt.MapClaims{}
	for k, v := range claims {
		stringExp[k] = v
	}
	stringExp["exp"] = fmt.Sprint(now.Add(time.Hour).Unix())
	tok = signed(jwt.NewWithClaims(jwt.SigningMethodHS256, stringExp))
	wantProblem(t, e.do("GET", "/v1/me", tok, nil), 401, "unauthorized")
}

// What replicas guarantee, measured: the replica that revoked refuses the
// token on the very next request; another replica refuses it once Redis's
// invalidation push has reached it. This measures that window, which the
// README states, and fails if it grows past the bound stated there.
func TestRevocationWindowOnOtherReplica(t *testing.T) {
	srv.RequireReal(t, "client-side caching with invalidation pushes")
	a := newEnv(t, envOpts{})
	b := newEnv(t, envOpts{Prefix: a.Prefix})
	a.createUser("carol", "password123", "")
	const trials = 200
	var windows []time.Duration
	accepted := 0
	for range trials {
		tok, _ := a.login("carol", "password123")
		for range 2 { // warm b's cache
			if r := b.do("GET", "/v1/me", tok, nil); r.Status != 200 {
				t.Fatalf("before revoke: %d", r.Status)
			}
		}
		if r := a.do("POST", "/v1/auth/logout", tok, nil); r.Status != 204 {
			t.Fatalf("logout: %d", r.Status)
		}
		revoked := time.Now()
		if r := a.do("GET", "/v1/me", tok, nil); r.Status != 401 {
			t.Fatalf("the revoking replica accepted the token on the next request: %d", r.Status)
		}
		first := true
		for {
			r := b.do("GET", "/v1/me", tok, nil)
			if r.Status == 401 {
				break
			}
			if r.Status != 200 {
				t.Fatalf("other replica: %d %s", r.Status, r.Body)
			}
			if first {
				accepted++
			}
			first = false
			if time.Since(revoked) > time.Second {
				t.Fatal("the other replica still accepts the token a second after the revocation")
			}
		}
		windows = append(windows, time.Since(revoked))
	}
	slices.Sort(windows)
	p50, p99, worst := windows[trials/2], windows[trials*99/100], windows[trials-1]
	t.Logf("other replica: next request accepted in %d of %d trials; refused after p50 %s, p99 %s, max %s",
		accepted, trials, p50, p99, worst)
	// The README states a p99 under 100 ms, for a loaded machine under
	// -race (measured here it is a few ms), and none past a second (the loop
	// above). The maximum alone is one trial: on a shared machine one
	// descheduling of the test process took it to 107 ms.
	if p99 > 100*time.Millisecond {
		t.Fatalf("the window's p99 reached %s, past the 100 ms the README states", p99)
	}
}
