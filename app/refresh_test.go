package app_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/dpop"
	"github.com/sessiond/sessiond/internal/keys"
)

// Refresh tokens (ACCESS_TOKEN_TTL) and their DPoP binding, through the API.

// ownURL is what a request sent by env.do is, to Fiber: httptest's host.
const ownURL = "http://example.com"

// pair is a sign-in's or a refresh's answer.
type pair struct {
	Token, Refresh string
	ExpiresAt      time.Time
	RefreshExpires time.Time
	SID            string
	Session        map[string]any
}

func toPair(t testing.TB, r resp) pair {
	t.Helper()
	m := r.JSON(t)
	p := pair{Token: str(m["token"]), Refresh: str(m["refresh_token"])}
	p.ExpiresAt, _ = time.Parse(time.RFC3339, str(m["expires_at"]))
	p.RefreshExpires, _ = time.Parse(time.RFC3339, str(m["refresh_expires_at"]))
	p.Session, _ = m["session"].(map[string]any)
	p.SID = str(p.Session["id"])
	return p
}

func str(v any) string { s, _ := v.(string); return s }

// signIn signs in through the API, with a refresh token.
func (e *env) signIn(name, password string, headers ...string) pair {
	e.t.Helper()
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": name, "password": password,
		"device": map[string]string{"name": "phone", "platform": "ios"}}, headers...)
	if r.Status != 201 {
		e.t.Fatalf("login %s: %d %s", name, r.Status, r.Body)
	}
	p := toPair(e.t, r)
	if p.Refresh == "" {
		e.t.Fatalf("login %s: no refresh_token: %s", name, r.Body)
	}
	return p
}

// refresh presents a refresh token, with headers (a DPoP proof).
func (e *env) refresh(rt string, headers ...string) resp {
	e.t.Helper()
	return e.do("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": rt}, headers...)
}

// mustRefresh refreshes and fails the test unless it answers 200.
func (e *env) mustRefresh(rt string, headers ...string) pair {
	e.t.Helper()
	r := e.refresh(rt, headers...)
	if r.Status != 200 {
		e.t.Fatalf("refresh: %d %s\n%s", r.Status, r.Body, e.Logs.String())
	}
	return toPair(e.t, r)
}

// wantRefused is a refresh refused with 401 code and its challenge (a
// DPoP refusal challenges for DPoP, not Bearer: wantProblem would refuse it).
func wantRefused(t *testing.T, r resp, code, challenge string) {
	t.Helper()
	if got := r.Header.Get("WWW-Authenticate"); r.Status != 401 || r.Code(t) != code || got != challenge {
		t.Fatalf("got %d %s, WWW-Authenticate %q; want 401 %s with %q", r.Status, r.Body, got, code, challenge)
	}
	if m := r.JSON(t); str(m["detail"]) == "" || r.Header.Get("X-Request-Id") == "" {
		t.Fatalf("refusal without detail or request id: %s", r.Body)
	}
}

const (
	bearerInvalid = `Bearer error="invalid_token"`
	dpopInvalid   = `DPoP error="invalid_dpop_proof"`
)

// clock is a store clock a test moves forward.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// Without ACCESS_TOKEN_TTL nothing changes: one token to the session's end,
// no refresh token, and a DPoP header (even a bad one) means nothing.
func TestRefreshIsOffByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("olive", "password123", "")
	r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "olive", "password": "password123"}, "DPoP", "not a proof")
	if r.Status != 201 {
		t.Fatalf("login with a DPoP header: %d %s", r.Status, r.Body)
	}
	m := r.JSON(t)
	sess := m["session"].(map[string]any)
	if _, ok := m["refresh_token"]; ok || m["refresh_expires_at"] != nil || sess["dpop_bound"] != nil {
		t.Fatalf("refresh fields without ACCESS_TOKEN_TTL: %s", r.Body)
	}
	if m["expires_at"] != sess["expires_at"] {
		t.Fatalf("expires_at %v, want the session's end %v", m["expires_at"], sess["expires_at"])
	}
	wantRefused(t, e.refresh("AQ"+strings.Repeat("A", 112)), "unauthorized", bearerInvalid)
}

// A sign-in answers an access token that ends ACCESS_TOKEN_TTL from now and
// a refresh token; a refresh answers the same session with new ones, spends
// the one presented, and is a use of the session.
func TestRefreshRotates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{AccessTokenTTL: 15 * time.Minute, IdleTimeout: time.Hour, MaxLifetime: 2 * time.Hour})
	e.createUser("rita", "password123", "")
	before := time.Now()
	first := e.signIn("rita", "password123")

	cl, err := e.Tokens.Verify(first.Token)
	if err != nil {
		t.Fatal(err)
	}
	if !cl.ExpiresAt.Equal(first.ExpiresAt) || cl.ExpiresAt.Before(before.Add(15*time.Minute-2*time.Second)) || cl.ExpiresAt.After(time.Now().Add(15*time.Minute)) {
		t.Fatalf("access token exp %s, expires_at %s; want both now + 15m", cl.ExpiresAt, first.ExpiresAt)
	}
	if len(first.Refresh) < 43 || strings.Count(first.Refresh, ".") != 0 {
		t.Fatalf("refresh token %q: want an opaque token of at least 256 bits, not a JWT", first.Refresh)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(first.Refresh); err != nil || len(raw) < 32 {
		t.Fatalf("refresh token %q is not base64url of at least 32 bytes", first.Refresh)
	}
	seen, _ := time.Parse(time.RFC3339, str(first.Session["last_seen_at"]))
	if d := first.RefreshExpires.Sub(seen); d < time.Hour-time.Second || d > time.Hour {
		t.Fatalf("refresh_expires_at %s, last seen %s: want last use + the idle timeout", first.RefreshExpires, seen)
	}
	// Only a digest is stored: neither the token nor its secret part is in
	// the session's hash.
	raw, _ := base64.RawURLEncoding.DecodeString(first.Refresh)
	for f, v := range e.hash(t, first) {
		if strings.Contains(v, first.Refresh) || strings.Contains(v, string(raw[37:69])) {
			t.Fatalf("the session hash holds the refresh token in %s", f)
		}
	}

	time.Sleep(1100 * time.Millisecond) // last_seen_at is in whole seconds on the wire
	next := e.mustRefresh(first.Refresh)
	if next.SID != first.SID || next.Session["current"] != true || next.Token == first.Token || next.Refresh == first.Refresh || next.Refresh == "" {
		t.Fatalf("refresh: session %s (first %s), token changed %v, refresh token changed %v",
			next.SID, first.SID, next.Token != first.Token, next.Refresh != first.Refresh)
	}
	if e.meStatus(next.Token) != 200 {
		t.Fatal("the new access token does not work")
	}
	if e.meStatus(first.Token) != 200 {
		t.Fatal("refreshing revoked the old access token; it lives to its exp")
	}
	seen2, _ := time.Parse(time.RFC3339, str(next.Session["last_seen_at"]))
	if !seen2.After(seen) {
		t.Fatalf("last_seen_at %s after the refresh, %s before: a refresh is a use", seen2, seen)
	}
	if d := next.RefreshExpires.Sub(seen2); d < time.Hour-time.Second || d > time.Hour {
		t.Fatalf("refresh_expires_at %s after a use at %s", next.RefreshExpires, seen2)
	}
	// The new refresh token refreshes again; each generation is new.
	third := e.mustRefresh(next.Refresh)
	if third.SID != first.SID || third.Refresh == next.Refresh || third.Refresh == first.Refresh {
		t.Fatal("the second refresh did not rotate")
	}
	var list struct{ Sessions []map[string]any }
	if err := json.Unmarshal(e.do("GET", "/v1/sessions", third.Token, nil).Body, &list); err != nil || len(list.Sessions) != 1 {
		t.Fatalf("sessions after two refreshes: %v (%v); want the one", list.Sessions, err)
	}
}

// hash is the Redis hash of the session of a sign-in or refresh.
func (e *env) hash(t *testing.T, p pair) map[string]string {
	t.Helper()
	h, err := e.Client.Do(context.Background(), e.Client.B().Hgetall().Key(e.Keys.Session(e.uidOf(t, p), p.SID)).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// uidOf is the user of a sign-in's session: its token's subject.
func (e *env) uidOf(t *testing.T, p pair) string {
	t.Helper()
	cl, err := e.Tokens.Verify(p.Token)
	if err != nil {
		t.Fatal(err)
	}
	return cl.UserID
}

// The access token never outlives its session, and the refresh token never
// its absolute end.
func TestRefreshNeverPastTheAbsoluteEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{AccessTokenTTL: time.Hour, MaxLifetime: time.Hour + 30*time.Minute, IdleTimeout: 24 * time.Hour})
	e.createUser("abe", "password123", "")
	p := e.signIn("abe", "password123")
	end, _ := time.Parse(time.RFC3339, str(p.Session["expires_at"]))
	if !p.RefreshExpires.Equal(end) {
		t.Fatalf("refresh_expires_at %s, want the absolute end %s (the idle timeout is longer)", p.RefreshExpires, end)
	}
	e2 := newEnv(t, envOpts{AccessTokenTTL: time.Hour, MaxLifetime: time.Hour})
	e2.createUser("abe", "password123", "")
	p = e2.signIn("abe", "password123")
	end, _ = time.Parse(time.RFC3339, str(p.Session["expires_at"]))
	if cl, _ := e2.Tokens.Verify(p.Token); !p.ExpiresAt.Equal(end) || !cl.ExpiresAt.Equal(end) {
		t.Fatalf("ACCESS_TOKEN_TTL = SESSION_MAX_LIFETIME: expires_at %s, exp %s; want the session's end %s", p.ExpiresAt, cl.ExpiresAt, end)
	}
	r := e2.mustRefresh(p.Refresh)
	uid := e2.uidOf(t, p)
	pexp, _ := e2.Client.Do(context.Background(), e2.Client.B().Pexpiretime().Key(e2.Keys.Session(uid, p.SID)).Build()).AsInt64()
	if cl, _ := e2.Tokens.Verify(r.Token); cl.ExpiresAt.After(end) || !r.RefreshExpires.Equal(end) || pexp > end.UnixMilli() {
		t.Fatalf("after a refresh: exp %s, refresh_expires_at %s, key expiry %d; none may pass the end %s", cl.ExpiresAt, r.RefreshExpires, pexp, end)
	}
}

// A lost response: the client presents the spent token again within the
// grace and gets the same successor and a working access token.
func TestRefreshRetryGetsTheSameSuccessor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{AccessTokenTTL: time.Minute})
	e.createUser("lou", "password123", "")
	p := e.signIn("lou", "password123")
	lost := e.mustRefresh(p.Refresh) // the client never saw this answer
	retry := e.mustRefresh(p.Refresh)
	if retry.Refresh != lost.Refresh || retry.SID != p.SID {
		t.Fatalf("the retry got another successor (%v) or session", retry.Refresh != lost.Refresh)
	}
	if e.meStatus(retry.Token) != 200 {
		t.Fatal("the retry's access token does not work")
	}
	// The successor is current: it refreshes normally.
	n := e.mustRefresh(retry.Refresh)
	if n.Refresh == retry.Refresh || e.meStatus(n.Token) != 200 {
		t.Fatal("the successor of a retry did not refresh")
	}
}

// N concurrent refreshes with the same token all get the same successor,
// round after round, and no session is lost.
func TestConcurrentRefreshesGetOneSuccessor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{AccessTokenTTL: time.Minute})
	e.createUser("nina", "password123", "")
	p := e.signIn("nina", "password123")
	const clients, rounds = 50, 100
	current := p.Refresh
	for round := range rounds {
		got := make([]pair, clients)
		errs := make([]string, clients)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := e.refreshChecking(current, round == 0 || i == round%clients)
				switch {
				case err != nil:
					errs[i] = err.Error()
				case r.Status != 200:
					errs[i] = fmt.Sprintf("%d %s", r.Status, r.Body)
				default:
					var m map[string]any
					_ = json.Unmarshal(r.Body, &m)
					sess, _ := m["session"].(map[string]any)
					got[i] = pair{Token: str(m["token"]), Refresh: str(m["refresh_token"]), SID: str(sess["id"])}
				}
			}()
		}
		wg.Wait()
		for i := range clients {
			if errs[i] != "" {
				t.Fatalf("round %d, client %d: %s", round, i, errs[i])
			}
			if got[i].Refresh != got[0].Refresh || got[i].SID != p.SID || got[i].Refresh == current {
				t.Fatalf("round %d: client %d got successor %q, client 0 %q (session %s)", round, i, got[i].Refresh, got[0].Refresh, got[i].SID)
			}
		}
		if e.meStatus(got[round%clients].Token) != 200 {
			t.Fatalf("round %d: an access token of the round does not work", round)
		}
		current = got[0].Refresh
	}
	if n := e.mustRefresh(current); n.SID != p.SID {
		t.Fatal("the session was lost")
	}
}

// refreshChecking is e.try for a refresh, checking the response against the
// OpenAPI document only when check is set: the concurrent test's answers of
// one round are all of one shape, and validating each of its 5,000 would
// cost minutes (kin-openapi compiles the schema for every response).
func (e *env) refreshChecking(rt string, check bool) (resp, error) {
	body, _ := json.Marshal(map[string]string{"refresh_token": rt})
	req := httptest.NewRequest("POST", "/v1/auth/refresh", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := e.App.Test(req, -1)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if check {
		checkResponse(e.t, "POST", "/v1/auth/refresh", req.Header, res.StatusCode, res.Header, b)
	}
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}, nil
}

// A spent token after the grace is theft: the whole session ends at once
// (its access tokens and its current refresh token), the reuse is recorded
// with the presenter's ip and user agent, and no other session of the user
// is touched. A token several generations old counts as spent too.
func TestRefreshReuseAfterGraceEndsTheSession(t *testing.T) {
	t.Parallel()
	for _, generations := range []int{1, 5} {
		t.Run(fmt.Sprintf("%d generations old", generations), func(t *testing.T) {
			t.Parallel()
			clk := &clock{}
			e := newEnv(t, envOpts{AccessTokenTTL: time.Minute, Now: clk.Now, MaxPerIP: 100})
			e.createUser("vic", "password123", "")
			other := e.signIn("vic", "password123")
			p := e.signIn("vic", "password123")
			stolen := p.Refresh
			cur := p
			for range generations {
				cur = e.mustRefresh(cur.Refresh)
			}
			// Another replica, its client-side cache warm with the session.
			b := newEnv(t, envOpts{Prefix: e.Prefix, AccessTokenTTL: time.Minute, Now: clk.Now})
			if b.meStatus(cur.Token) != 200 || b.meStatus(cur.Token) != 200 {
				t.Fatal("the other replica refused the session before the reuse")
			}
			clk.Advance(31 * time.Second)
			r := e.refresh(stolen, "User-Agent", "thief/1.0")
			wantRefused(t, r, "unauthorized", bearerInvalid)
			for what, tok := range map[string]string{"the sign-in's access token": p.Token, "the last access token": cur.Token} {
				if s := e.meStatus(tok); s != 401 {
					t.Fatalf("%s after the reuse: %d, want 401", what, s)
				}
			}
			eventually(t, time.Second, "the other replica refuses the session's access token", func() bool {
				return b.meStatus(cur.Token) == 401
			})
			wantRefused(t, b.refresh(cur.Refresh), "unauthorized", bearerInvalid)
			if e.meStatus(other.Token) != 200 || b.meStatus(other.Token) != 200 {
				t.Fatal("the reuse ended another session of the user")
			}
			if o := e.mustRefresh(other.Refresh); o.SID != other.SID {
				t.Fatal("the other session's refresh token stopped working")
			}
			evs, _ := e.events("/v1/me/events", other.Token)
			var found map[string]any
			for _, ev := range evs {
				if ev["type"] == "session.reuse_detected" {
					found = ev
				}
			}
			if found == nil || found["session_id"] != p.SID || found["ip"] != "0.0.0.0" || found["user_agent"] != "thief/1.0" {
				t.Fatalf("reuse event %v; want session.reuse_detected for %s with the presenter's ip and user agent (events %v)", found, p.SID, types(evs))
			}
		})
	}
}

// A token that is not the session's current one and never was — forged,
// mangled, an access token, another session's — is refused and ends
// nothing; so is anything malformed.
func TestRefreshRefusesWhatIsNotACurrentToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{AccessTokenTTL: time.Minute})
	e.createUser("fay", "password123", "")
	p := e.signIn("fay", "password123")
	raw, _ := base64.RawURLEncoding.DecodeString(p.Refresh)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	for name, tok := range map[string]string{
		"garbage":                  "garbage",
		"the access token":         p.Token,
		"the secret changed":       flip(50),
		"the generation forged":    flip(36),
		"the MAC changed":          flip(len(raw) - 1),
		"another session named":    flip(20),
		"padded":                   p.Refresh + "=",
		"a random token, same ids": base64.RawURLEncoding.EncodeToString(append(append([]byte(nil), raw[:37]...), make([]byte, len(raw)-37)...)),
	} {
		wantRefused(t, e.refresh(tok), "unauthorized", bearerInvalid)
		if e.meStatus(p.Token) != 200 {
			t.Fatalf("%s: the session ended", name)
		}
	}
	wantProblem(t, e.do("POST", "/v1/auth/refresh", "", map[string]string{}), 400, "invalid_request")
	wantProblem(t, e.do("POST", "/v1/auth/refresh", "", `{"refresh_token": 5}`), 400, "invalid_request")
	wantProblem(t, e.do("POST", "/v1/auth/refresh", "", "not json"), 400, "invalid_request")
	// A bearer token is not how a refresh authenticates: it is ignored.
	if r := e.do("POST", "/v1/auth/refresh", p.Token, map[string]string{"refresh_token": p.Refresh}); r.Status != 200 {
		t.Fatalf("refresh with a bearer token beside it: %d %s", r.Status, r.Body)
	}
}

// Every way a session ends, ends its refresh tokens; a password change ends
// the others' but not the changing session's.
func TestRefreshEndsWithTheSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{AccessTokenTTL: time.Minute, MaxPerUser: 2})
	_, admin := e.admin()
	for _, c := range []struct {
		name string
		end  func(u string, p pair)
	}{
		{"logout", func(u string, p pair) { e.do("POST", "/v1/auth/logout", p.Token, nil) }},
		{"logout-all", func(u string, p pair) { e.do("POST", "/v1/auth/logout-all", p.Token, nil) }},
		{"revoked from another session", func(u string, p pair) {
			o, _ := e.login(u, "password123")
			e.do("DELETE", "/v1/sessions/"+p.SID, o, nil)
		}},
		{"force-logout", func(u string, p pair) { e.do("DELETE", "/v1/admin/users/"+e.idOf(u)+"/sessions", admin, nil) }},
		{"admin revokes it", func(u string, p pair) { e.do("DELETE", "/v1/admin/users/"+e.idOf(u)+"/sessions/"+p.SID, admin, nil) }},
		{"disable", func(u string, p pair) {
			e.do("PATCH", "/v1/admin/users/"+e.idOf(u), admin, map[string]any{"disabled": true})
		}},
		{"password reset", func(u string, p pair) {
			e.do("PATCH", "/v1/admin/users/"+e.idOf(u), admin, map[string]any{"password": "another-password"})
		}},
		{"password changed by another session", func(u string, p pair) {
			o := e.signIn(u, "password123")
			if r := e.do("PUT", "/v1/me/password", o.Token, map[string]string{"current_password": "password123", "new_password": "new-password-1"}); r.Status != 204 {
				t.Fatalf("password change: %d %s", r.Status, r.Body)
			}
			if n := e.mustRefresh(o.Refresh); n.SID != o.SID {
				t.Fatal("the session that changed the password lost its refresh token")
			}
		}},
		{"deletion", func(u string, p pair) { e.do("DELETE", "/v1/admin/users/"+e.idOf(u), admin, nil) }},
		{"eviction", func(u string, p pair) { e.login(u, "password123"); e.login(u, "password123") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := "end-" + strings.ReplaceAll(c.name, " ", "-")
			e.createUser(u, "password123", "")
			p := e.signIn(u, "password123")
			c.end(u, p)
			wantRefused(t, e.refresh(p.Refresh), "unauthorized", bearerInvalid)
		})
	}
}

// idOf is the id of the account named name.
func (e *env) idOf(name string) string {
	e.t.Helper()
	u, err := e.Users.FindByUsername(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.ID
}

// Redis down: 503, and the client keeps its refresh token: once Redis is
// back the same token refreshes (if Redis had spent it before the answer was
// lost, the retry gets the same successor).
func TestRefreshFailsClosed(t *testing.T) {
	t.Parallel()
	rs, client := ownRedis(t, "pauses redis-server")
	e := newEnv(t, envOpts{Client: client, RedisTimeout: 300 * time.Millisecond, AccessTokenTTL: time.Minute, MaxPerIP: 100})
	e.createUser("dot", "password123", "")
	p := e.signIn("dot", "password123")
	if err := rs.Pause(); err != nil {
		t.Fatal(err)
	}
	assertUnavailable(t, e.refresh(p.Refresh), "refresh")
	if err := rs.Resume(); err != nil {
		t.Fatal(err)
	}
	var n pair
	eventually(t, 10*time.Second, "a refresh after Redis is back", func() bool {
		r := e.refresh(p.Refresh)
		if r.Status == 503 {
			return false
		}
		if r.Status != 200 {
			t.Fatalf("refresh after the outage: %d %s", r.Status, r.Body)
		}
		n = toPair(t, r)
		return true
	})
	if e.meStatus(n.Token) != 200 || e.mustRefresh(n.Refresh).SID != p.SID {
		t.Fatal("the session did not survive the outage")
	}
	rs.Stop()
	assertUnavailable(t, e.refresh(n.Refresh), "refresh with Redis stopped")
}

// Failed refreshes are limited per client address only: past the limit even
// a good token waits (429), other addresses and sign-ins are unaffected.
func TestRefreshFailuresAreLimitedPerAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{AccessTokenTTL: time.Minute, MaxPerIP: 3, TrustedProxies: behindProxy})
	e.createUser("ivy", "password123", "")
	p := e.signIn("ivy", "password123", "X-Forwarded-For", "198.51.100.7")
	from := func(ip string) []string { return []string{"X-Forwarded-For", ip} }
	for range 3 {
		wantRefused(t, e.refresh("garbage", from("203.0.113.9")...), "unauthorized", bearerInvalid)
	}
	r := e.refresh(p.Refresh, from("203.0.113.9")...)
	wantProblem(t, r, 429, "too_many_attempts")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	if n := e.mustRefresh(p.Refresh, from("198.51.100.7")...); n.SID != p.SID {
		t.Fatal("another address was limited")
	}
	if r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "ivy", "password": "password123"}, from("203.0.113.9")...); r.Status != 201 {
		t.Fatalf("a sign-in from the limited address: %d; failed refreshes must not lock sign-ins", r.Status)
	}
}

// DPoP proofs (RFC 9449) for the tests, made as a Go client makes them.

type deviceKey struct{ priv crypto.Signer }

func newES256(t testing.TB) deviceKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return deviceKey{k}
}

func newEdDSA(t testing.TB) deviceKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return deviceKey{k}
}

func (k deviceKey) name() string { return fmt.Sprintf("%T", k.priv) }

// proof is a new DPoP proof by k for a POST to htu.
func (k deviceKey) proof(t testing.TB, htu string) string {
	t.Helper()
	p, err := dpop.NewProof(k.priv, "POST", htu, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A sign-in with a DPoP proof binds the session to its key: a refresh needs
// a new, valid proof by that key, and without one answers 401
// invalid_dpop_proof without spending the token.
func TestDPoPBindsTheRefreshToken(t *testing.T) {
	t.Parallel()
	for _, mk := range []func(testing.TB) deviceKey{newES256, newEdDSA} {
		key := mk(t)
		t.Run(key.name(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{AccessTokenTTL: time.Minute, MaxPerIP: 1000})
			e.createUser("dana", "password123", "")
			login, refresh := ownURL+"/v1/auth/login", ownURL+"/v1/auth/refresh"
			p := e.signIn("dana", "password123", "DPoP", key.proof(t, login))
			if p.Session["dpop_bound"] != true {
				t.Fatalf("session %v: want dpop_bound true", p.Session)
			}
			var list struct{ Sessions []map[string]any }
			_ = json.Unmarshal(e.do("GET", "/v1/sessions", p.Token, nil).Body, &list)
			if len(list.Sessions) != 1 || list.Sessions[0]["dpop_bound"] != true {
				t.Fatalf("GET /v1/sessions: %v; want the session dpop_bound", list.Sessions)
			}
			if plain := e.signIn("dana", "password123"); plain.Session["dpop_bound"] != nil {
				t.Fatalf("a sign-in without a proof: dpop_bound %v, want it absent", plain.Session["dpop_bound"])
			}

			other := newES256(t)
			used := key.proof(t, refresh)
			for name, proof := range map[string]string{
				"no proof":               "",
				"a proof by another key": other.proof(t, refresh),
				"a proof for the login":  key.proof(t, login),
				"not a proof":            "garbage",
			} {
				var h []string
				if proof != "" {
					h = []string{"DPoP", proof}
				}
				t.Log(name)
				wantRefused(t, e.refresh(p.Refresh, h...), "invalid_dpop_proof", dpopInvalid)
			}
			// Not spent: the first good refresh is a refresh, not a retry, and
			// the token it spent then answers its successor (a retry).
			n := e.mustRefresh(p.Refresh, "DPoP", used)
			if n.SID != p.SID || n.Session["dpop_bound"] != true || e.meStatus(n.Token) != 200 {
				t.Fatalf("refresh with a good proof: %+v", n)
			}
			wantRefused(t, e.refresh(n.Refresh, "DPoP", used), "invalid_dpop_proof", dpopInvalid) // the jti again
			if again := e.mustRefresh(p.Refresh, "DPoP", key.proof(t, refresh)); again.Refresh != n.Refresh {
				t.Fatal("the retry of a bound session got another successor")
			}
			if m := e.mustRefresh(n.Refresh, "DPoP", key.proof(t, refresh)); m.SID != p.SID {
				t.Fatal("the successor did not refresh with a new proof")
			}
		})
	}
}

// A thief with a spent token of a bound session but without the device's
// key cannot end the session: reuse is judged only with the key's proof.
func TestDPoPReuseNeedsTheKey(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	e := newEnv(t, envOpts{AccessTokenTTL: time.Minute, Now: clk.Now})
	e.createUser("kim", "password123", "")
	key := newEdDSA(t)
	refresh := ownURL + "/v1/auth/refresh"
	p := e.signIn("kim", "password123", "DPoP", key.proof(t, ownURL+"/v1/auth/login"))
	n := e.mustRefresh(p.Refresh, "DPoP", key.proof(t, refresh))
	clk.Advance(time.Minute)
	wantRefused(t, e.refresh(p.Refresh), "invalid_dpop_proof", dpopInvalid)
	wantRefused(t, e.refresh(p.Refresh, "DPoP", newEdDSA(t).proof(t, refresh)), "invalid_dpop_proof", dpopInvalid)
	if e.meStatus(n.Token) != 200 {
		t.Fatal("a spent token without the key ended the session")
	}
	// With the key, a spent token after the grace is reuse.
	wantRefused(t, e.refresh(p.Refresh, "DPoP", key.proof(t, refresh)), "unauthorized", bearerInvalid)
	if e.meStatus(n.Token) != 401 {
		t.Fatal("reuse with the key did not end the session")
	}
}

// A bad proof at sign-in is 400 before the password is checked; htu is
// PUBLIC_URL and the path when PUBLIC_URL is set.
func TestDPoPAtSignIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{AccessTokenTTL: time.Minute, PublicURL: "https://auth.example.com/base/"})
	e.createUser("pat", "password123", "")
	key := newES256(t)
	login := func(proof string) resp {
		return e.do("POST", "/v1/auth/login", "", map[string]string{"username": "pat", "password": "password123"}, "DPoP", proof)
	}
	wantProblem(t, login("garbage"), 400, "invalid_request")
	wantProblem(t, login(key.proof(t, ownURL+"/v1/auth/login")), 400, "invalid_request") // not PUBLIC_URL
	wantProblem(t, login(key.proof(t, "https://auth.example.com/base/v1/auth/refresh")), 400, "invalid_request")
	good := key.proof(t, "https://auth.example.com/base/v1/auth/login")
	r := login(good)
	if r.Status != 201 || toPair(t, r).Session["dpop_bound"] != true {
		t.Fatalf("login with a proof for PUBLIC_URL: %d %s", r.Status, r.Body)
	}
	wantProblem(t, login(good), 400, "invalid_request") // the same proof (its jti) again
	p := toPair(t, r)
	wantRefused(t, e.refresh(p.Refresh, "DPoP", key.proof(t, ownURL+"/v1/auth/refresh")), "invalid_dpop_proof", dpopInvalid)
	e.mustRefresh(p.Refresh, "DPoP", key.proof(t, "https://auth.example.com/base/v1/auth/refresh"))
}

// The refresh-token fields of a session's hash are the ones internal/keys
// names, so the scripts and Go agree (a typo would leave a session that
// refreshes with nothing stored).
func TestRefreshStoresDigestsInTheSessionHash(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{AccessTokenTTL: time.Minute})
	e.createUser("hal", "password123", "")
	bound := e.signIn("hal", "password123", "DPoP", newES256(t).proof(t, ownURL+"/v1/auth/login"))
	if h := e.hash(t, bound); len(h[keys.SessDPoPKey]) != 43 {
		t.Fatalf("a bound session's hash: %q; want its key's thumbprint in %s", h, keys.SessDPoPKey)
	}
	p := e.signIn("hal", "password123")
	h := e.hash(t, p)
	if len(h[keys.SessRefresh]) != 32 || h[keys.SessRefreshGen] != "0" || h[keys.SessDPoPKey] != "" || h[keys.SessRefreshPrev] != "" {
		t.Fatalf("hash after sign-in: %q", h)
	}
	e.mustRefresh(p.Refresh)
	h2 := e.hash(t, p)
	if h2[keys.SessRefreshPrev] != h[keys.SessRefresh] || h2[keys.SessRefreshGen] != "1" || h2[keys.SessRefreshSpent] == "" || h2[keys.SessRefresh] == h[keys.SessRefresh] {
		t.Fatalf("hash after a refresh: %q", h2)
	}
}

// Refreshes are counted by outcome, reuses among the sessions ended.
func TestRefreshMetrics(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	e := newEnv(t, envOpts{AccessTokenTTL: time.Minute, Now: clk.Now, Env: map[string]string{"METRICS_ADDR": "127.0.0.1:0"}})
	e.createUser("max", "password123", "")
	p := e.signIn("max", "password123")
	e.mustRefresh(p.Refresh)
	e.mustRefresh(p.Refresh) // a retry
	e.refresh("garbage")
	b := e.signIn("max", "password123", "DPoP", newES256(t).proof(t, ownURL+"/v1/auth/login"))
	e.refresh(b.Refresh)
	clk.Advance(time.Minute)
	e.refresh(p.Refresh) // reuse
	rec := httptest.NewRecorder()
	e.Server.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`sessiond_refreshes_total{outcome="succeeded"} 1`, `sessiond_refreshes_total{outcome="retried"} 1`,
		`sessiond_refreshes_total{outcome="refused"} 1`, `sessiond_refreshes_total{outcome="invalid_dpop_proof"} 1`,
		`sessiond_refreshes_total{outcome="reuse_detected"} 1`, `sessiond_sessions_revoked_total{kind="refresh_reuse"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
