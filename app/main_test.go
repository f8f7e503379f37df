package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/users"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

// testSecret is the HMAC key of test apps: at least 32 bytes.
var testSecret = []byte("test-secret-test-secret-test-secret!")

// env is one sessiond replica over the package's Redis, with its own key
// prefix unless it shares one with another replica.
type env struct {
	t        testing.TB
	App      *fiber.App
	Users    *users.Store
	Sessions *sessions.Store
	Tokens   *sessions.Tokens
	Client   rueidis.Client
	Prefix   string
	Logs     *syncBuffer
}

// envOpts tune a test replica; zero values are the service defaults, except
// bcrypt at its minimum cost to keep tests fast.
type envOpts struct {
	Prefix         string // share one to run several replicas on the same data
	IdleTimeout    time.Duration
	MaxLifetime    time.Duration
	MaxPerUser     int
	MaxFailures    int
	MaxPerIP       int // failed logins per IP; 0 = off
	MaxPerAccount  int // failed logins per account; 0 = off
	FailureWindow  time.Duration
	TrustedProxies []netip.Prefix
	RedisTimeout   time.Duration
	WaitReplicas   int
	Client         rueidis.Client
	Now            func() time.Time
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	if o.Prefix == "" {
		o.Prefix = redistest.Prefix(t)
	}
	if o.Client == nil {
		o.Client = srv.Client(t)
	}
	if o.MaxFailures == 0 {
		o.MaxFailures = 10
	}
	if o.MaxPerUser == 0 {
		o.MaxPerUser = 50
	}
	us, err := users.New(o.Client, users.Options{Prefix: o.Prefix, BcryptCost: 4, Timeout: o.RedisTimeout,
		MaxFailures: o.MaxFailures, FailureWindow: o.FailureWindow,
		MaxFailuresPerIP: o.MaxPerIP, MaxFailuresPerAccount: o.MaxPerAccount})
	if err != nil {
		t.Fatal(err)
	}
	if err := us.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	ss := sessions.New(o.Client, sessions.Options{Prefix: o.Prefix, UserKey: us.Key, IdleTimeout: o.IdleTimeout,
		MaxLifetime: o.MaxLifetime, MaxPerUser: o.MaxPerUser, Timeout: o.RedisTimeout, Now: o.Now,
		WaitReplicas: o.WaitReplicas})
	tok, err := sessions.NewTokens(testSecret, "sessiond", "sessiond")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	a := app.New(app.Deps{Users: us, Sessions: ss, Tokens: tok, TrustedProxies: o.TrustedProxies,
		Ping: ss.Ping, Log: slog.New(slog.NewTextHandler(logs, nil))})
	return &env{t: t, App: a, Users: us, Sessions: ss, Tokens: tok, Client: o.Client, Prefix: o.Prefix, Logs: logs}
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
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// createUser makes an account directly in the store.
func (e *env) createUser(name, password, role string) users.User {
	e.t.Helper()
	u, err := e.Users.Create(context.Background(), name, password, role)
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
