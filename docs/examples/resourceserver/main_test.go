package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/users"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

// sessiond is a real sessiond, built by server.Open as `sessiond serve`
// builds it, served over HTTP on a loopback port.
type sessiond struct {
	*server.Server
	URL string
	Key ed25519.PrivateKey // its signing key
	KID string
}

func startSessiond(t *testing.T, client rueidis.Client, redisAddr string, env map[string]string) *sessiond {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemPath := filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"REDIS_URL": "redis://" + redisAddr + "/0", "JWT_PRIVATE_KEYS": pemPath,
		"REDIS_KEY_PREFIX": redistest.Prefix(t), "BCRYPT_COST": "10"}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := server.LoadConfig(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.BcryptCost = 4 // below what configuration allows: fast tests
	s, err := server.Open(context.Background(), cfg, server.Options{Client: client, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.App.Listener(ln) }()
	t.Cleanup(func() { _ = s.App.Shutdown() })
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(s.Tokens.JWKS(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("sessiond's JWKS: %v %s", err, s.Tokens.JWKS())
	}
	return &sessiond{Server: s, URL: "http://" + ln.Addr().String(), Key: key, KID: set.Keys[0].KeyID}
}

// login signs a new account in through sessiond's HTTP API.
func (s *sessiond) login(t *testing.T, name, role string) (token string, u users.User, sid string) {
	t.Helper()
	u, err := s.Users.Create(context.Background(), name, "password123", role, audit.Actor{})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"username": name, "password": "password123"})
	resp, err := http.Post(s.URL+"/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Token   string
		Session struct{ ID string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 201 || out.Token == "" {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	return out.Token, u, out.Session.ID
}

// counter counts the requests the example makes to sessiond, by path.
type counter struct {
	verify, jwks atomic.Int64
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	switch r.URL.Path {
	case "/v1/auth/verify":
		c.verify.Add(1)
	case "/.well-known/jwks.json":
		c.jwks.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// example serves the example's handler in front of sessiondURL.
func example(t *testing.T, sessiondURL string) (string, *counter) {
	t.Helper()
	c := &counter{}
	rs := httptest.NewServer(newHandler(sessiondURL, &http.Client{Transport: c, Timeout: 5 * time.Second}, "sessiond", "sessiond"))
	t.Cleanup(rs.Close)
	return rs.URL, c
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// get sends GET /hello with an Authorization header, unless it is "".
func get(t *testing.T, base, authorization string) response {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/hello", nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, body}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A live token is served with the identity sessiond vouches for; after
// logout the same token is refused on the very next request.
func TestLiveTokenThenLogout(t *testing.T) {
	sd := startSessiond(t, srv.Client(t), srv.Addr, nil)
	token, u, sid := sd.login(t, "alice", "")
	base, calls := example(t, sd.URL)

	r := get(t, base, "Bearer "+token)
	if r.Status != 200 {
		t.Fatalf("live token: %d %s", r.Status, r.Body)
	}
	var got Identity
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("body %s: %v", r.Body, err)
	}
	if want := (Identity{UserID: u.ID, Username: "alice", Role: users.RoleUser, SessionID: sid}); got != want {
		t.Fatalf("identity %+v, want %+v", got, want)
	}
	if n := calls.verify.Load(); n != 1 {
		t.Fatalf("%d verify calls for one request, want 1", n)
	}

	req, _ := http.NewRequest("POST", sd.URL+"/v1/auth/logout", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if r := get(t, base, "Bearer "+token); r.Status != 401 || r.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("the token after logout: %d %q %s, want 401 with a challenge", r.Status, r.Header.Get("WWW-Authenticate"), r.Body)
	}
	if n := calls.verify.Load(); n != 2 {
		t.Fatalf("%d verify calls for two requests, want 2", n)
	}
}

// Tokens that fail local verification are refused with 401 and never reach
// sessiond's verify endpoint, even those validly signed by sessiond's own key
// but for another issuer or audience, expired, or with no exp.
func TestBadTokensNeverReachVerify(t *testing.T) {
	sd := startSessiond(t, srv.Client(t), srv.Addr, nil)
	_, u, sid := sd.login(t, "bob", "")
	base, calls := example(t, sd.URL)

	_, other, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "sessiond", "aud": []string{"sessiond"}, "sub": u.ID, "jti": sid,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "preferred_username": "bob",
			"account_created_at": now.Add(-time.Hour).Unix()}
		if change != nil {
			change(c)
		}
		return c
	}
	good := claims(nil)
	noneToken, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for _, c := range []struct{ name, authorization string }{
		{"no token", ""},
		{"not Bearer", "Basic Ym9iOnBhc3N3b3JkMTIz"},
		{"empty Bearer", "Bearer "},
		{"garbage", "Bearer garbage"},
		{"three garbage parts", "Bearer a.b.c"},
		{"alg none", "Bearer " + noneToken},
		{"another Ed25519 key, sessiond's kid", "Bearer " + sign(t, jwt.SigningMethodEdDSA, other, sd.KID, good)},
		{"HS256 with the public key as secret", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(sd.Key.Public().(ed25519.PublicKey)), sd.KID, good)},
		{"unknown kid", "Bearer " + sign(t, jwt.SigningMethodEdDSA, other, "made-up", good)},
		{"no kid", "Bearer " + sign(t, jwt.SigningMethodEdDSA, sd.Key, "", good)},
		{"another issuer", "Bearer " + sign(t, jwt.SigningMethodEdDSA, sd.Key, sd.KID, claims(func(c jwt.MapClaims) { c["iss"] = "evil" }))},
		{"another audience", "Bearer " + sign(t, jwt.SigningMethodEdDSA, sd.Key, sd.KID, claims(func(c jwt.MapClaims) { c["aud"] = "other-app" }))},
		{"expired", "Bearer " + sign(t, jwt.SigningMethodEdDSA, sd.Key, sd.KID, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }))},
		{"no exp", "Bearer " + sign(t, jwt.SigningMethodEdDSA, sd.Key, sd.KID, claims(func(c jwt.MapClaims) { delete(c, "exp") }))},
		{"no sub", "Bearer " + sign(t, jwt.SigningMethodEdDSA, sd.Key, sd.KID, claims(func(c jwt.MapClaims) { delete(c, "sub") }))},
	} {
		if r := get(t, base, c.authorization); r.Status != 401 {
			t.Errorf("%s: %d %s, want 401", c.name, r.Status, r.Body)
		}
	}
	if n := calls.verify.Load(); n != 0 {
		t.Fatalf("sessiond's verify was called %d times for tokens that fail local verification", n)
	}
	// Made-up kids refetch the JWKS at most once a minute: here, the first
	// fetch and no more.
	for range 5 {
		get(t, base, "Bearer "+sign(t, jwt.SigningMethodEdDSA, other, rand.Text(), good))
	}
	if n := calls.jwks.Load(); n != 1 {
		t.Fatalf("the JWKS was fetched %d times, want once", n)
	}
	// The one token here that sessiond signed for this audience is served.
	if r := get(t, base, "Bearer "+sign(t, jwt.SigningMethodEdDSA, sd.Key, sd.KID, good)); r.Status != 200 {
		t.Fatalf("a token signed with sessiond's key: %d %s", r.Status, r.Body)
	}
}

func assertUnavailable(t *testing.T, r response, what string) {
	t.Helper()
	if r.Status != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("%s: %d, Retry-After %q, %s; want 503 with Retry-After", what, r.Status, r.Header.Get("Retry-After"), r.Body)
	}
}

// With sessiond unreachable the example fails closed: 503 with Retry-After,
// never the handler, whether it already holds sessiond's keys or not.
func TestSessiondUnreachable(t *testing.T) {
	sd := startSessiond(t, srv.Client(t), srv.Addr, nil)
	token, _, _ := sd.login(t, "carol", "")
	base, _ := example(t, sd.URL)
	if r := get(t, base, "Bearer "+token); r.Status != 200 {
		t.Fatalf("live token: %d %s", r.Status, r.Body)
	}

	if err := sd.App.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		assertUnavailable(t, get(t, base, "Bearer "+token), "keys cached, sessiond down")
	}

	// A fresh example that never got the keys, in front of a dead port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	fresh, calls := example(t, dead)
	assertUnavailable(t, get(t, fresh, "Bearer "+token), "no keys, sessiond down")
	if n := calls.verify.Load(); n != 0 {
		t.Fatalf("verify was called %d times with no keys to check the token", n)
	}
}

// With sessiond's Redis down, sessiond's 503 becomes the example's 503, and
// never a 401 (the client would drop a good token). sessiond may answer the
// first requests from its client-side Redis cache (what Redis held a moment
// before it died, when nothing could revoke) until it finds the connection
// dead; from then on, only 503s.
func TestSessiondRedisDown(t *testing.T) {
	srv.RequireReal(t, "kills a redis-server")
	rs, err := redistest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	sd := startSessiond(t, rs.Client(t), rs.Addr, map[string]string{"REDIS_TIMEOUT": "300ms"})
	token, _, _ := sd.login(t, "dave", "")
	base, _ := example(t, sd.URL)
	if r := get(t, base, "Bearer "+token); r.Status != 200 {
		t.Fatalf("live token: %d %s", r.Status, r.Body)
	}

	rs.Stop()
	start, cached := time.Now(), 0
	for r := get(t, base, "Bearer "+token); r.Status != 503; r = get(t, base, "Bearer "+token) {
		if r.Status != 200 || time.Since(start) > time.Second {
			t.Fatalf("sessiond's Redis down: %d %s; want 503 within a second", r.Status, r.Body)
		}
		cached++
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d request(s) answered from sessiond's cache, %s after the kill", cached, time.Since(start).Round(time.Millisecond))
	for range 3 {
		assertUnavailable(t, get(t, base, "Bearer "+token), "sessiond's Redis down")
	}
}
