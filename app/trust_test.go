package app_test

// Tokens the rest of the stack can trust: key rotation, Ed25519 and the
// JWKS, forward auth, introspection.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

const (
	secretA = "first-secret-first-secret-first-secret!!"
	secretB = "second-secret-second-secret-second-secret"
)

// header decodes a token's JOSE header.
func header(t *testing.T, tok string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// Rotating JWT_SECRET signs no one out while the old one stays in
// JWT_PREVIOUS_SECRETS; once it is dropped, its tokens get 401.
func TestSecretRotationKeepsSessions(t *testing.T) {
	t.Parallel()
	before := newEnv(t, envOpts{Env: map[string]string{"JWT_SECRET": secretA}})
	before.createUser("alice", "password123", "")
	old, _ := before.login("alice", "password123")

	rotated := newEnv(t, envOpts{Prefix: before.Prefix, Env: map[string]string{"JWT_SECRET": secretB, "JWT_PREVIOUS_SECRETS": secretA}})
	if r := rotated.do("GET", "/v1/me", old, nil); r.Status != 200 {
		t.Fatalf("a token signed before the rotation, after it: %d %s", r.Status, r.Body)
	}
	fresh, _ := rotated.login("alice", "password123")
	if header(t, fresh)["kid"] == header(t, old)["kid"] || header(t, fresh)["kid"] == "" {
		t.Fatalf("kids: old %v, new %v; want two different ones", header(t, old)["kid"], header(t, fresh)["kid"])
	}
	if header(t, fresh)["alg"] != "HS256" {
		t.Fatalf("alg %v", header(t, fresh)["alg"])
	}

	dropped := newEnv(t, envOpts{Prefix: before.Prefix, Env: map[string]string{"JWT_SECRET": secretB}})
	wantProblem(t, dropped.do("GET", "/v1/me", old, nil), 401, "unauthorized")
	if r := dropped.do("GET", "/v1/me", fresh, nil); r.Status != 200 {
		t.Fatalf("a token of the current secret: %d", r.Status)
	}
	// A previous secret verifies and never signs.
	if r := before.do("GET", "/v1/me", fresh, nil); r.Status != 401 {
		t.Fatalf("a replica without the new secret accepted its token: %d", r.Status)
	}
}

// writeKeys writes Ed25519 private keys as one PKCS#8 PEM file.
func writeKeys(t *testing.T, keys ...ed25519.PrivateKey) string {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		_ = pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	path := filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// jwksOf fetches and parses the JWKS.
func jwksOf(t *testing.T, e *env) (jose.JSONWebKeySet, resp) {
	t.Helper()
	r := e.do("GET", "/.well-known/jwks.json", "", nil)
	if r.Status != 200 {
		t.Fatalf("jwks: %d %s", r.Status, r.Body)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatalf("jwks is not a JWK set: %v: %s", err, r.Body)
	}
	return set, r
}

// With JWT_PRIVATE_KEYS the first key signs (EdDSA), every key verifies and
// is published, and another service can check a token with the JWKS alone.
func TestEd25519KeysAndJWKS(t *testing.T) {
	t.Parallel()
	first, second := newKey(t), newKey(t)
	e := newEnv(t, envOpts{Env: map[string]string{"JWT_SECRET": "", "JWT_PRIVATE_KEYS": writeKeys(t, first, second)}})
	u := e.createUser("alice", "password123", "")
	tok, sid := e.login("alice", "password123")
	h := header(t, tok)
	if h["alg"] != "EdDSA" {
		t.Fatalf("alg %v, want EdDSA", h["alg"])
	}
	if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
		t.Fatalf("me: %d %s", r.Status, r.Body)
	}

	set, r := jwksOf(t, e)
	if len(set.Keys) != 2 {
		t.Fatalf("jwks has %d keys, want both: %s", len(set.Keys), r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") || strings.Contains(cc, "no-store") {
		t.Fatalf("jwks Cache-Control %q: resource servers should be able to cache it", cc)
	}
	if strings.Contains(string(r.Body), `"d"`) {
		t.Fatalf("the JWKS publishes a private part: %s", r.Body)
	}
	for _, k := range set.Keys {
		if k.KeyID == "" || k.Algorithm != "EdDSA" || k.Use != "sig" || !k.IsPublic() {
			t.Fatalf("key %+v: want kid, alg EdDSA, use sig, public", k)
		}
	}
	// A resource server verifies the token with the published key its kid names.
	keys := set.Key(h["kid"].(string))
	if len(keys) != 1 || !keys[0].Key.(ed25519.PublicKey).Equal(first.Public()) {
		t.Fatalf("the token's kid %v does not name the first key in the JWKS", h["kid"])
	}
	parsed, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return keys[0].Key, nil },
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer("sessiond"), jwt.WithAudience("sessiond"))
	if err != nil || !parsed.Valid {
		t.Fatalf("verifying with the JWKS: %v", err)
	}

	// The second key verifies too (a key added ahead of a rotation).
	claims := jwt.MapClaims{"iss": "sessiond", "aud": "sessiond", "sub": u.ID, "jti": sid,
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "preferred_username": u.Username,
		"account_created_at": u.CreatedAt.Unix()}
	sign := func(m jwt.SigningMethod, kid string, key any) string {
		tk := jwt.NewWithClaims(m, claims)
		tk.Header["kid"] = kid
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var secondKID string
	for _, k := range set.Keys {
		if k.Key.(ed25519.PublicKey).Equal(second.Public()) {
			secondKID = k.KeyID
		}
	}
	if r := e.do("GET", "/v1/me", sign(jwt.SigningMethodEdDSA, secondKID, second), nil); r.Status != 200 {
		t.Fatalf("a token of the second key: %d", r.Status)
	}
	// A token cannot choose its algorithm or key.
	pub := []byte(first.Public().(ed25519.PublicKey))
	for name, bad := range map[string]string{
		"HS256 with the public key as secret": sign(jwt.SigningMethodHS256, h["kid"].(string), append(pub, pub...)),
		"an unknown kid":                      sign(jwt.SigningMethodEdDSA, "no-such-key", first),
		"a key that is not ours":              sign(jwt.SigningMethodEdDSA, h["kid"].(string), newKey(t)),
		"no kid":                              sign(jwt.SigningMethodEdDSA, "", first),
	} {
		if r := e.do("GET", "/v1/me", bad, nil); r.Status != 401 {
			t.Errorf("%s: %d, want 401", name, r.Status)
		}
	}
}

// A secret is never published: with only HMAC secrets the JWKS is empty.
func TestJWKSNeverPublishesASecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{Env: map[string]string{"JWT_PREVIOUS_SECRETS": secretA}})
	set, r := jwksOf(t, e)
	if len(set.Keys) != 0 || strings.Contains(string(r.Body), "secret") {
		t.Fatalf("jwks with only HMAC secrets: %s", r.Body)
	}
}

// Forward auth: 200 with the caller in headers and an empty body while the
// session lives, 401 with WWW-Authenticate as soon as it is revoked.
func TestVerifyForwardAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	u := e.createUser("alice", "password123", "")
	tok, sid := e.login("alice", "password123")
	r := e.do("GET", "/v1/auth/verify", tok, nil)
	if r.Status != 200 || len(r.Body) != 0 {
		t.Fatalf("verify: %d %q", r.Status, r.Body)
	}
	for k, want := range map[string]string{"X-User-Id": u.ID, "X-Username": "alice", "X-User-Role": "user", "X-Session-Id": sid} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	wantProblem(t, e.do("GET", "/v1/auth/verify", "", nil), 401, "unauthorized")
	e.do("POST", "/v1/auth/logout", tok, nil)
	r = e.do("GET", "/v1/auth/verify", tok, nil)
	wantProblem(t, r, 401, "unauthorized")
	if r.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
		t.Fatalf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
	}
}

// introspect posts a token as an introspection client.
func (e *env) introspect(client, secret, token string) resp {
	e.t.Helper()
	h := []string{"Content-Type", "application/x-www-form-urlencoded"}
	if client != "" {
		h = append(h, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(client+":"+secret)))
	}
	return e.do("POST", "/v1/oauth/introspect", "", "token="+url.QueryEscape(token), h...)
}

// RFC 7662 introspection for configured clients only: an active token's
// claims, and exactly {"active": false} for anything else.
func TestIntrospection(t *testing.T) {
	t.Parallel()
	const gw = "gateway-secret-gateway-secret-gateway!!"
	e := newEnv(t, envOpts{MaxFailures: 3, Env: map[string]string{"INTROSPECTION_CLIENTS": "kong:" + gw}})
	u := e.createUser("alice", "password123", "")
	tok, sid := e.login("alice", "password123")

	r := e.introspect("kong", gw, tok)
	if r.Status != 200 {
		t.Fatalf("introspect: %d %s", r.Status, r.Body)
	}
	m := r.JSON(t)
	for k, want := range map[string]any{"active": true, "sub": u.ID, "username": "alice", "role": "user", "sid": sid,
		"iss": "sessiond", "aud": "sessiond", "token_type": "Bearer"} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if exp, _ := m["exp"].(float64); time.Until(time.Unix(int64(exp), 0)) < time.Hour {
		t.Errorf("exp %v", m["exp"])
	}
	for name, token := range map[string]string{"garbage": "not-a-token", "empty-ish": "a.b.c"} {
		if r := e.introspect("kong", gw, token); r.Status != 200 || string(r.Body) != `{"active":false}` {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	e.do("POST", "/v1/auth/logout", tok, nil)
	if r := e.introspect("kong", gw, tok); string(r.Body) != `{"active":false}` {
		t.Fatalf("revoked: %s", r.Body)
	}

	// Client authentication: missing, unknown or wrong is 401 with a Basic
	// challenge; failures are limited like logins.
	for name, c := range map[string][2]string{"no credentials": {"", ""}, "wrong secret": {"kong", gw + "x"}} {
		r := e.introspect(c[0], c[1], tok)
		if r.Status != 401 || r.Code(t) != "unauthorized" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
		if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: WWW-Authenticate %q", name, r.Header.Get("WWW-Authenticate"))
		}
	}
	e.introspect("kong", "wrong-wrong", tok)
	e.introspect("kong", "wrong-wrong", tok)
	wantProblem(t, e.introspect("kong", gw, tok), 429, "too_many_attempts")

	// Without INTROSPECTION_CLIENTS the endpoint answers 401 to everyone.
	none := newEnv(t, envOpts{})
	if r := none.introspect("kong", gw, tok); r.Status != 401 || r.Code(t) != "unauthorized" {
		t.Fatalf("no clients configured: %d %s", r.Status, r.Body)
	}
}

// introspectFrom is introspect as a gateway at ip behind a trusted proxy
// (the env's TRUSTED_PROXIES must be behindProxy).
func (e *env) introspectFrom(ip, client, secret, token string) resp {
	e.t.Helper()
	return e.do("POST", "/v1/oauth/introspect", "", "token="+url.QueryEscape(token),
		"Content-Type", "application/x-www-form-urlencoded", "X-Forwarded-For", ip,
		"Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(client+":"+secret)))
}

// scrape is the env's metrics as Prometheus serves them (METRICS_ADDR set).
func (e *env) scrape() string {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.Server.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// metricValue is the value of one sample line (name and labels as printed),
// or -1 when there is none.
func metricValue(metrics, sample string) float64 {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// A stranger guessing a client's secret from many addresses locks out only
// those addresses: the real client, from its own, keeps working. Each
// (client, address) is in the admins' feed once per window however many
// times it failed, an id that is no client without the id, and the
// failures are counted in the metrics.
func TestIntrospectionStrangersCannotLockOutTheClient(t *testing.T) {
	t.Parallel()
	const secret = "tyk-secret-tyk-secret-tyk-secret-tyk!!"
	e := newEnv(t, envOpts{TrustedProxies: behindProxy, MaxFailures: 10, MaxPerIP: 100, MaxPerAccount: 100,
		Env: map[string]string{"INTROSPECTION_CLIENTS": "tyk:" + secret, "METRICS_ADDR": "127.0.0.1:9"}})
	_, adminTok := e.admin()
	tok, _ := e.login("root", "root-password")

	for a := range 10 {
		for range 10 {
			if r := e.introspectFrom(fmt.Sprintf("198.51.100.%d", a+1), "tyk", "wrong-secret", tok); r.Status != 401 {
				t.Fatalf("a wrong secret from address %d: %d %s", a+1, r.Status, r.Body)
			}
		}
	}
	// The real client, from an address that did not fail.
	if r := e.introspectFrom("192.0.2.10", "tyk", secret, tok); r.Status != 200 || r.JSON(t)["active"] != true {
		t.Fatalf("the real client after strangers' failures elsewhere: %d %s", r.Status, r.Body)
	}
	// An address that failed is locked out, right secret or not.
	wantProblem(t, e.introspectFrom("198.51.100.1", "tyk", secret, tok), 429, "too_many_attempts")
	// Ids that are no client: 401 the same, recorded as one unknown client.
	for i := range 5 {
		if r := e.introspectFrom("198.51.100.20", fmt.Sprintf("made-up-%d", i), "x", tok); r.Status != 401 {
			t.Fatalf("an unknown client: %d %s", r.Status, r.Body)
		}
	}

	evs, _ := e.events("/v1/admin/events?type=client_auth.failed&limit=100", adminTok)
	if len(evs) != 11 {
		t.Fatalf("%d client_auth.failed events, want one per (client, address): 10 for tyk, 1 unknown: %v", len(evs), evs)
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		ip, _ := ev["ip"].(string)
		detail, _ := ev["detail"].(string)
		if ev["user_id"] != "" || ev["actor_id"] != "" {
			t.Errorf("a client's failure is no account's: %v", ev)
		}
		switch {
		case ip == "198.51.100.20" && detail == "unknown client":
		case strings.HasPrefix(ip, "198.51.100.") && detail == `client "tyk"`:
		default:
			t.Errorf("event %v: want ip of a failing address and the client named (or unknown)", ev)
		}
		if strings.Contains(detail, "made-up") {
			t.Errorf("an unknown id is recorded: %v", ev)
		}
		seen[ip+" "+detail] = true
	}
	if len(seen) != 11 {
		t.Fatalf("events repeat a (client, address): %v", evs)
	}

	m := e.scrape()
	for sample, want := range map[string]float64{
		`sessiond_client_auth_total{outcome="failed"}`:    105,
		`sessiond_client_auth_total{outcome="throttled"}`: 1,
		`sessiond_client_auth_total{outcome="succeeded"}`: 1,
	} {
		if v := metricValue(m, sample); v != want {
			t.Errorf("%s = %v, want %v", sample, v, want)
		}
	}
}

// One address cannot fill Redis with counters of made-up client ids: past
// LOGIN_MAX_FAILURES_PER_IP failures it gets 429 whatever id it names, a
// client's included (so the answers do not tell which ids are clients),
// while every other address is untouched.
func TestIntrospectionFailuresPerAddressAreBounded(t *testing.T) {
	t.Parallel()
	const secret = "tyk-secret-tyk-secret-tyk-secret-tyk!!"
	e := newEnv(t, envOpts{TrustedProxies: behindProxy, MaxFailures: 10, MaxPerIP: 5,
		Env: map[string]string{"INTROSPECTION_CLIENTS": "tyk:" + secret}})
	_, adminTok := e.admin()
	tok, _ := e.login("root", "root-password")
	for i := range 20 {
		want := 401
		if i >= 5 {
			want = 429
		}
		if r := e.introspectFrom("198.51.100.7", fmt.Sprintf("made-up-%d", i), "x", tok); r.Status != want {
			t.Fatalf("made-up id %d from one address: %d, want %d", i, r.Status, want)
		}
	}
	wantProblem(t, e.introspectFrom("198.51.100.7", "tyk", secret, tok), 429, "too_many_attempts")
	if r := e.introspectFrom("192.0.2.10", "tyk", secret, tok); r.Status != 200 {
		t.Fatalf("the client from another address: %d %s", r.Status, r.Body)
	}
	keys, err := e.Client.Do(context.Background(), e.Client.B().Keys().Pattern(e.Prefix+"fail:client*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	// The address's counter, at most 5 of (id, address), and the marker of
	// the one event.
	if len(keys) > 7 {
		t.Fatalf("%d failure keys after 20 attempts from one address: %v", len(keys), keys)
	}
	if evs, _ := e.events("/v1/admin/events?type=client_auth.failed", adminTok); len(evs) != 1 {
		t.Fatalf("%d client_auth.failed events, want 1: %v", len(evs), evs)
	}
}

// RFC 7662 §2.1: the token is a parameter of the form body. One in the query
// string is not read: alone it is no token (400), and it never wins over the
// body's.
func TestIntrospectionReadsTheTokenFromTheBodyOnly(t *testing.T) {
	t.Parallel()
	const gw = "gateway-secret-gateway-secret-gateway!!"
	e := newEnv(t, envOpts{Env: map[string]string{"INTROSPECTION_CLIENTS": "kong:" + gw}})
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("kong:"+gw))
	form := []string{"Content-Type", "application/x-www-form-urlencoded", "Authorization", basic}

	wantProblem(t, e.do("POST", "/v1/oauth/introspect?token="+url.QueryEscape(tok), "", "", form...), 400, "invalid_request")
	r := e.do("POST", "/v1/oauth/introspect?token="+url.QueryEscape(tok), "", "token=not-a-token", form...)
	if r.Status != 200 || string(r.Body) != `{"active":false}` {
		t.Fatalf("a query token beside the body's: %d %s; want the body's answered", r.Status, r.Body)
	}
	r = e.do("POST", "/v1/oauth/introspect?token=not-a-token", "", "token="+url.QueryEscape(tok), form...)
	if r.Status != 200 || r.JSON(t)["active"] != true {
		t.Fatalf("the body's token beside a query one: %d %s", r.Status, r.Body)
	}
}
