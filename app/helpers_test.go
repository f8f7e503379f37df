package app_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/tokens"
	"github.com/sessiond/sessiond/users"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

// testSecret is the HMAC key of test apps: at least 32 bytes.
var testSecret = []byte("test-secret-test-secret-test-secret!")

// env is one sessiond replica over the package's Redis, with its own key
// prefix unless it shares one with another replica. It is built by
// server.Open, exactly as `sessiond serve` builds the service.
type env struct {
	t        testing.TB
	Server   *server.Server
	App      *fiber.App
	Users    *users.Store
	Sessions *sessions.Store
	Tokens   *tokens.Tokens
	Client   rueidis.Client
	Prefix   string
	Keys     keys.Layout
	Logs     *syncBuffer
}

// envOpts tune a test replica, as configuration: each is the environment
// variable in its comment, and a zero value leaves the service's default,
// except the per-IP and per-account login limits, which are off unless set.
// bcrypt runs at cost 4 (below what configuration allows) to keep tests fast.
type envOpts struct {
	Prefix         string        // REDIS_KEY_PREFIX; share one to run several replicas on the same data
	IdleTimeout    time.Duration // SESSION_IDLE_TIMEOUT
	MaxLifetime    time.Duration // SESSION_MAX_LIFETIME
	MaxPerUser     int           // MAX_SESSIONS_PER_USER
	MaxFailures    int           // LOGIN_MAX_FAILURES
	MaxPerIP       int           // LOGIN_MAX_FAILURES_PER_IP
	MaxPerAccount  int           // LOGIN_MAX_FAILURES_PER_ACCOUNT
	FailureWindow  time.Duration // LOGIN_FAILURE_WINDOW
	TrustedProxies string        // TRUSTED_PROXIES
	RedisTimeout   time.Duration // REDIS_TIMEOUT
	WaitReplicas   int           // REDIS_WAIT_REPLICAS
	BcryptCost     int           // BCRYPT_COST (default here 4)
	ReadTimeout    time.Duration // how long reading a request may take (and keep-alive idle)
	AccessTokenTTL time.Duration // ACCESS_TOKEN_TTL (zero: unset, one token per sign-in)
	ReuseGrace     string        // REFRESH_REUSE_GRACE ("" for the default; "0s" is a grace of none)
	PublicURL      string        // PUBLIC_URL
	// Env is more configuration, by variable name.
	Env map[string]string
	// Client replaces the package's Redis (a server of the test's own).
	Client rueidis.Client
	// RedisURL, when set, is REDIS_URL, and the replica connects by itself
	// as `sessiond serve` does (its client options, its cache's liveness
	// gate) instead of using a client the test made.
	RedisURL string
	// DialRedis, with RedisURL, opens the replica's every Redis connection
	// (server.Options.TestOnlyDialRedis): a test routes each node through a
	// proxy of its own.
	DialRedis func(ctx context.Context, addr string) (net.Conn, error)
	// Now is the stores' clock.
	Now func() time.Time
}

// config is the configuration of a test replica, read by server.LoadConfig
// as `sessiond serve` reads its environment.
func (o envOpts) config(t testing.TB) server.Config {
	t.Helper()
	vars := map[string]string{
		"REDIS_URL": cmp.Or(o.RedisURL, "redis://"+srv.Addr+"/0"), "JWT_SECRET": string(testSecret), "REDIS_KEY_PREFIX": o.Prefix,
		"LOGIN_MAX_FAILURES_PER_IP": strconv.Itoa(o.MaxPerIP), "LOGIN_MAX_FAILURES_PER_ACCOUNT": strconv.Itoa(o.MaxPerAccount),
		"TRUSTED_PROXIES": o.TrustedProxies,
	}
	set := func(name string, v any, zero bool) {
		if !zero {
			vars[name] = fmt.Sprint(v)
		}
	}
	set("SESSION_IDLE_TIMEOUT", o.IdleTimeout, o.IdleTimeout == 0)
	set("SESSION_MAX_LIFETIME", o.MaxLifetime, o.MaxLifetime == 0)
	set("MAX_SESSIONS_PER_USER", o.MaxPerUser, o.MaxPerUser == 0)
	set("LOGIN_MAX_FAILURES", o.MaxFailures, o.MaxFailures == 0)
	set("LOGIN_FAILURE_WINDOW", o.FailureWindow, o.FailureWindow == 0)
	set("REDIS_TIMEOUT", o.RedisTimeout, o.RedisTimeout == 0)
	set("REDIS_WAIT_REPLICAS", o.WaitReplicas, o.WaitReplicas == 0)
	set("ACCESS_TOKEN_TTL", o.AccessTokenTTL, o.AccessTokenTTL == 0)
	set("REFRESH_REUSE_GRACE", o.ReuseGrace, o.ReuseGrace == "")
	set("PUBLIC_URL", o.PublicURL, o.PublicURL == "")
	for k, v := range o.Env {
		vars[k] = v
	}
	cfg, err := server.LoadConfig(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.BcryptCost = 4
	if o.BcryptCost != 0 {
		cfg.BcryptCost = o.BcryptCost
	}
	if o.ReadTimeout != 0 {
		cfg.ReadTimeout, cfg.KeepAliveTimeout = o.ReadTimeout, o.ReadTimeout
	}
	return cfg
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	if o.Prefix == "" {
		o.Prefix = redistest.Prefix(t)
	}
	if o.Client == nil && o.RedisURL == "" {
		o.Client = srv.Client(t)
	}
	logs := &syncBuffer{}
	s, err := server.Open(context.Background(), o.config(t), server.Options{
		Client: o.Client, Now: o.Now, Log: slog.New(slog.NewTextHandler(logs, nil)), TestOnlyDialRedis: o.DialRedis})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &env{t: t, Server: s, App: s.App, Users: s.Users, Sessions: s.Sessions, Tokens: s.Tokens,
		Client: s.Client, Prefix: o.Prefix, Keys: keys.New(o.Prefix), Logs: logs}
}

// syncBuffer collects log output from concurrent requests.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// resp is a response with its body read.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic map.
func (r resp) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// Code is the problem+json "code" of an error response.
func (r resp) Code(t testing.TB) string {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("error Content-Type = %q, want application/problem+json (status %d, body %s)", ct, r.Status, r.Body)
	}
	c, _ := r.JSON(t)["code"].(string)
	return c
}

// do sends a request through the real Fiber app. body may be nil, a string
// (sent as is) or anything else (sent as JSON). headers are key, value pairs.
func (e *env) do(method, path, token string, body any, headers ...string) resp {
	e.t.Helper()
	r, err := e.try(method, path, token, body, headers...)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// try is do that returns the error of a request the server would not even
// parse (fasthttp refuses invalid header bytes before the app sees them).
func (e *env) try(method, path, token string, body any, headers ...string) (resp, error) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// A header named twice is sent as two lines, as proxies append them.
	named := map[string]bool{}
	for i := 0; i+1 < len(headers); i += 2 {
		if named[headers[i]] {
			req.Header.Add(headers[i], headers[i+1])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
		named[headers[i]] = true
	}
	res, err := e.App.Test(req, -1)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	// Every response a test sees must be one the OpenAPI document allows.
	checkResponse(e.t, method, path, req.Header, res.StatusCode, res.Header, b)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}, nil
}

// listen serves the app on a loopback port until the test ends and returns
// its address, for what only a real connection shows.
func (e *env) listen() string {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	return e.serve(ln)
}

// serve serves the app on a listener the test opened (to know its port
// before the replica is configured) until the test ends, and returns its
// address.
func (e *env) serve(ln net.Listener) string {
	e.t.Helper()
	go func() { _ = e.App.Listener(ln) }()
	e.t.Cleanup(func() { _ = e.App.Shutdown() })
	return ln.Addr().String()
}

// raw writes request bytes to the app over a real connection and returns
// the response: for what fasthttp refuses before the app runs (oversized
// headers or bodies), which app.Test cannot show. Write errors are ignored:
// the server may close before taking all of an oversized request.
func (e *env) raw(request string) resp {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.listen())
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(conn, request)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatalf("reading the response: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if method, target, ok := strings.Cut(strings.SplitN(request, "\r\n", 2)[0], " "); ok {
		target, _, _ = strings.Cut(target, " ")
		checkResponse(e.t, method, target, http.Header{}, res.StatusCode, res.Header, b)
	}
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// createUser makes an account directly in the store.
func (e *env) createUser(name, password, role string) users.User {
	e.t.Helper()
	u, err := e.Users.Create(context.Background(), name, password, role, audit.Actor{})
	if err != nil {
		e.t.Fatalf("create user %s: %v", name, err)
	}
	return u
}

// login signs in through the API and returns the token and session id.
func (e *env) login(name, password string, headers ...string) (token, sid string) {
	e.t.Helper()
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": name, "password": password,
		"device": map[string]string{"name": "test device", "platform": "ios"}}, headers...)
	if r.Status != 201 {
		e.t.Fatalf("login %s: status %d: %s\n%s", name, r.Status, r.Body, e.Logs.String())
	}
	m := r.JSON(e.t)
	sess, _ := m["session"].(map[string]any)
	return m["token"].(string), sess["id"].(string)
}

// admin creates an admin and signs it in.
func (e *env) admin() (users.User, string) {
	e.t.Helper()
	u := e.createUser("root", "root-password", users.RoleAdmin)
	tok, _ := e.login("root", "root-password")
	return u, tok
}

// getenv reads configuration from a map, as server.LoadConfig reads the
// environment.
func getenv(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}
