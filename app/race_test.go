package app_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiond/sessiond/users"
)

// Two replicas on one Redis, each with its own client and client-side cache:
// a revocation through one is refused by the replica that made it at once,
// and by the other as soon as Redis's invalidation arrives.
func TestRevocationReachesOtherReplica(t *testing.T) {
	t.Parallel()
	a := newEnv(t, envOpts{})
	b := newEnv(t, envOpts{Prefix: a.Prefix}) // same data, its own connection and cache
	carol := a.createUser("carol", "password123", "")
	_, admin := a.admin()

	for _, c := range []struct {
		name   string
		revoke func(tok, sid string)
	}{
		{"logout", func(tok, sid string) { a.do("POST", "/v1/auth/logout", tok, nil) }},
		{"logout-all", func(tok, sid string) { a.do("POST", "/v1/auth/logout-all", tok, nil) }},
		{"revoke one", func(tok, sid string) {
			other, _ := a.login("carol", "password123")
			a.do("DELETE", "/v1/sessions/"+sid, other, nil)
		}},
		{"admin force-logout", func(tok, sid string) { a.do("DELETE", "/v1/admin/users/"+carol.ID+"/sessions", admin, nil) }},
		{"admin revokes one", func(tok, sid string) {
			a.do("DELETE", "/v1/admin/users/"+carol.ID+"/sessions/"+sid, admin, nil)
		}},
		{"password change", func(tok, sid string) {
			other, _ := a.login("carol", "password123")
			a.do("PUT", "/v1/me/password", other, map[string]string{"current_password": "password123", "new_password": "password123"})
		}},
		// Last: it leaves carol disabled.
		{"admin disables", func(tok, sid string) {
			a.do("PATCH", "/v1/admin/users/"+carol.ID, admin, map[string]any{"disabled": true})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok, sid := a.login("carol", "password123")
			// Warm both replicas' caches.
			for _, e := range []*env{a, b, a, b} {
				if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
					t.Fatalf("before revoke: %d %s", r.Status, r.Body)
				}
			}
			c.revoke(tok, sid)
			if r := a.do("GET", "/v1/me", tok, nil); r.Status != 401 {
				t.Fatalf("revoking replica accepted the token right after: %d", r.Status)
			}
			start := time.Now()
			eventually(t, time.Second, "other replica refuses the token", func() bool {
				return b.do("GET", "/v1/me", tok, nil).Status == 401
			})
			t.Logf("seen by the other replica after %s", time.Since(start))
		})
	}
}

// A login whose password check raced with disabling the account, or with an
// admin setting a new password, must never leave a live session.
func TestLoginRacingAccountChangesLeavesNoZombie(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		patch map[string]any
	}{
		{"disable", map[string]any{"disabled": true}},
		{"password reset", map[string]any{"password": "brand-new-password"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{MaxFailures: 1000})
			_, admin := e.admin()
			for i := range 15 {
				name := fmt.Sprintf("u%d", i)
				u := e.createUser(name, "old-password", "")
				var wg sync.WaitGroup
				tokens := make(chan string, 4)
				for range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": name, "password": "old-password"})
						if r.Status == 201 {
							tokens <- r.JSON(t)["token"].(string)
						}
					}()
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if r := e.do("PATCH", "/v1/admin/users/"+u.ID, admin, c.patch); r.Status != 200 {
						t.Errorf("patch: %d %s", r.Status, r.Body)
					}
				}()
				wg.Wait()
				close(tokens)
				for tok := range tokens {
					if r := e.do("GET", "/v1/me", tok, nil); r.Status != 401 {
						t.Fatalf("round %d: a login racing %s left a live session (status %d)", i, c.name, r.Status)
					}
				}
				if r := e.do("GET", "/v1/admin/users/"+u.ID+"/sessions", admin, nil); len(r.JSON(t)["sessions"].([]any)) != 0 {
					t.Fatalf("round %d: sessions listed after %s: %s", i, c.name, r.Body)
				}
			}
		})
	}
}

// GET /v1/me answers from the token and the session: a role change through
// one replica must still show on both, on every session of the account, at
// once (the replica that made it) or within the invalidation's milliseconds
// (the other), and agree with what the admin API says.
func TestRoleChangeReachesMeOnEveryReplica(t *testing.T) {
	t.Parallel()
	a := newEnv(t, envOpts{})
	b := newEnv(t, envOpts{Prefix: a.Prefix})
	dave := a.createUser("Dave", "password123", "")
	_, admin := a.admin()
	phone, _ := a.login("dave", "password123")
	laptop, _ := b.login("DAVE", "password123")
	role := func(e *env, tok string) any {
		r := e.do("GET", "/v1/me", tok, nil)
		if r.Status != 200 {
			t.Fatalf("me: %d %s", r.Status, r.Body)
		}
		return r.JSON(t)["role"]
	}
	for _, want := range []string{"admin", "user", "admin"} {
		for _, e := range []*env{a, b} { // warm both caches with the old role
			role(e, phone)
			role(e, laptop)
		}
		r := a.do("PATCH", "/v1/admin/users/"+dave.ID, admin, map[string]any{"role": want})
		if r.Status != 200 || r.JSON(t)["role"] != want {
			t.Fatalf("PATCH role %s: %d %s", want, r.Status, r.Body)
		}
		for _, e := range []*env{a, b} {
			for _, tok := range []string{phone, laptop} {
				eventually(t, time.Second, "GET /v1/me shows role "+want, func() bool { return role(e, tok) == want })
			}
		}
	}
	// The whole answer is the account's, as the admin API gives it.
	me := a.do("GET", "/v1/me", laptop, nil).JSON(t)
	acct := a.do("GET", "/v1/admin/users/"+dave.ID, admin, nil).JSON(t)
	for _, k := range []string{"id", "username", "role", "disabled", "created_at"} {
		if me[k] != acct[k] {
			t.Errorf("GET /v1/me %s = %v; the account has %v", k, me[k], acct[k])
		}
	}
}

// No release ever issued a token without a kid or the account's claims, so
// such a token is refused, even signed with the real secret for a live session.
func TestTokenWithoutKIDOrAccountClaimsIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	u := e.createUser("erin", "password123", users.RoleAdmin)
	tok, sid := e.login("erin", "password123")
	claims, err := e.Tokens.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	bare := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Issuer: "sessiond", Audience: jwt.ClaimStrings{"sessiond"}, Subject: u.ID, ID: sid,
		IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(claims.ExpiresAt),
	})
	noKID, err := bare.SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, _ := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	bare.Header["kid"] = parsed.Header["kid"]
	noClaims, err := bare.SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	for what, bad := range map[string]string{"no kid": noKID, "no account claims": noClaims} {
		if r := e.do("GET", "/v1/me", bad, nil); r.Status != 401 {
			t.Errorf("%s: %d %s, want 401", what, r.Status, r.Body)
		}
	}
	if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
		t.Fatalf("the session's own token: %d %s", r.Status, r.Body)
	}
}
