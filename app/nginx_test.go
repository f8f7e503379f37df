package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/redistest"
)

// The nginx example, docs/nginx-forward-auth.conf, run as written through a
// real nginx, with only its three addresses rewritten.
const nginxExample = "../docs/nginx-forward-auth.conf"

// The addresses the example is written with, which the tests rewrite.
const (
	exampleSessiond = "127.0.0.1:3000"
	exampleApp      = "127.0.0.1:8080"
	exampleListen   = "listen 8000;"
)

// nginxBinary finds nginx: on PATH, else Debian's /usr/sbin/nginx (not every
// PATH has sbin). Without it the test skips, saying why, except in CI
// (SESSIOND_TEST_REQUIRE_REDIS=1, where .ci/run installs it): there it fails.
func nginxBinary(t *testing.T) string {
	t.Helper()
	missing := func(why string) string {
		if os.Getenv(redistest.RequireEnv) == "1" {
			t.Fatalf("%s, and %s=1: CI must run the nginx forward-auth example (.ci/run installs nginx)", why, redistest.RequireEnv)
		}
		t.Skipf("needs nginx to run docs/nginx-forward-auth.conf: %s", why)
		return ""
	}
	path, err := exec.LookPath("nginx")
	if err != nil {
		path = "/usr/sbin/nginx"
		if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return missing("no nginx on PATH nor at /usr/sbin/nginx")
		}
	}
	out, err := exec.Command(path, "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -V: %v\n%s", path, err, out)
	}
	if !strings.Contains(string(out), "http_auth_request_module") {
		return missing(path + " is built without http_auth_request_module")
	}
	return path
}

// startNginx runs the example through nginx with its upstreams at sessiond
// and app, until the test ends, and returns nginx's base URL.
func startNginx(t *testing.T, sessiond, app string) string {
	t.Helper()
	bin := nginxBinary(t)
	example, err := os.ReadFile(nginxExample)
	if err != nil {
		t.Fatal(err)
	}
	port, err := freeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	site := string(example)
	for _, r := range [][2]string{
		{exampleSessiond, sessiond},
		{exampleApp, app},
		{exampleListen, "listen " + listen + ";"},
	} {
		if !strings.Contains(site, r[0]) {
			t.Fatalf("%s no longer contains %q, which the test rewrites", nginxExample, r[0])
		}
		site = strings.ReplaceAll(site, r[0], r[1])
	}

	dir := t.TempDir()
	// As root the master would run its workers as nobody, who cannot enter
	// the test's private temp dir (request bodies are buffered there).
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`daemon off;
%[2]s
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/forward-auth.conf;
}
`, dir, user)
	if err := os.WriteFile(filepath.Join(dir, "forward-auth.conf"), []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	// -e: the log of startup, before the configuration names its own, also
	// in the temp dir and not in /var/log/nginx.
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "nginx.conf"), "-p", dir, "-e", filepath.Join(dir, "error.log"))
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// Its own process group, so the cleanup can kill the workers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	logs := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return fmt.Sprintf("nginx output:\n%s\nerror.log:\n%s", stderr.String(), b)
	}
	t.Cleanup(func() {
		// SIGTERM is nginx's fast shutdown: the master stops its workers.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Log(logs())
		}
	})

	base := "http://" + listen
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("nginx exited at startup: %v\n%s", cmd.ProcessState, logs())
		default:
		}
		// Any answer (a 401 here) means nginx is serving.
		if res, err := c.Get(base + "/"); err == nil {
			res.Body.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not answer on %s within 10s\n%s", listen, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// seen is what the protected app received, as it echoes it.
type seen struct {
	Method       string `json:"method"`
	Path         string `json:"path"`
	Body         string `json:"body"`
	UserID       string `json:"x_user_id"`
	Username     string `json:"x_username"`
	UserRole     string `json:"x_user_role"`
	SessionID    string `json:"x_session_id"`
	SessionAAL   string `json:"x_session_aal"`
	AuthTime     string `json:"x_auth_time"`
	ForwardedFor string `json:"x_forwarded_for"`
	RequestID    string `json:"x_request_id"`
	// UserHeaders are the names of every header the app got that starts
	// with X-User or X_User.
	UserHeaders []string `json:"user_headers"`
}

// protectedApp is the app behind nginx: it echoes the identity headers it
// gets as JSON, and counts the requests that reach it.
type protectedApp struct {
	*httptest.Server
	mu   sync.Mutex
	hits int
}

func newProtectedApp(t *testing.T) *protectedApp {
	a := &protectedApp{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.hits++
		a.mu.Unlock()
		var names []string
		for k := range r.Header {
			if l := strings.ToLower(k); strings.HasPrefix(l, "x-user") || strings.HasPrefix(l, "x_user") {
				names = append(names, k)
			}
		}
		slices.Sort(names)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{Method: r.Method, Path: r.URL.RequestURI(), Body: string(body),
			UserID: r.Header.Get("X-User-Id"), Username: r.Header.Get("X-Username"),
			UserRole: r.Header.Get("X-User-Role"), SessionID: r.Header.Get("X-Session-Id"),
			SessionAAL: r.Header.Get("X-Session-AAL"), AuthTime: r.Header.Get("X-Auth-Time"),
			ForwardedFor: r.Header.Get("X-Forwarded-For"), RequestID: r.Header.Get("X-Request-Id"),
			UserHeaders: names})
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *protectedApp) Hits() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hits
}

// call sends one request over real HTTP; headers are key, value pairs.
func call(t *testing.T, method, url, token, body string, headers ...string) resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// reached decodes what the app saw from a 200 that came through nginx.
func reached(t *testing.T, r resp, what string) seen {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("%s: status %d, want 200 from the app: %s", what, r.Status, r.Body)
	}
	var s seen
	if err := json.Unmarshal(r.Body, &s); err != nil {
		t.Fatalf("%s: not the app's echo: %v: %s", what, err, r.Body)
	}
	return s
}

// refused asserts nginx's answer is sessiond's refusal, as problem+json
// with the given status and code.
func refused(t *testing.T, r resp, status int, code, what string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.Status, status, r.Body)
	}
	if got := r.Code(t); got != code {
		t.Fatalf("%s: code %q, want %q", what, got, code)
	}
}

// The example nginx configuration puts sessiond's forward auth in front of
// an app: a live token reaches the app with the caller in headers no client
// can forge, anything else is refused at nginx with sessiond's 401, and a
// logout bites on the very next request.
func TestNginxForwardAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{TrustedProxies: "127.0.0.1/32"})
	sessiond := "http://" + e.listen()
	app := newProtectedApp(t)
	nginx := startNginx(t, strings.TrimPrefix(sessiond, "http://"), strings.TrimPrefix(app.URL, "http://"))
	startupHits := app.Hits() // none: startNginx's probe is refused

	u := e.createUser("alice", "password123", "")
	tok, sid := e.login("alice", "password123")
	me := e.do("GET", "/v1/me", tok, nil).JSON(t)
	if me["id"] != u.ID {
		t.Fatalf("/v1/me: %v, want id %s", me, u.ID)
	}
	// The caller, as the app must see it.
	type who struct{ UserID, Username, UserRole, SessionID string }
	want := who{u.ID, "alice", "user", sid}
	identity := func(s seen) who { return who{s.UserID, s.Username, s.UserRole, s.SessionID} }

	t.Run("live token reaches the app with the caller", func(t *testing.T) {
		r := call(t, "GET", nginx+"/orders/42?page=2", tok, "", "X-Forwarded-For", "203.0.113.7")
		s := reached(t, r, "GET with a live token")
		if identity(s) != want {
			t.Fatalf("the app saw %+v, want %+v", identity(s), want)
		}
		if me["username"] != s.Username || me["role"] != s.UserRole {
			t.Fatalf("the app saw %q/%q, /v1/me says %v", s.Username, s.UserRole, me)
		}
		if s.Method != "GET" || s.Path != "/orders/42?page=2" {
			t.Fatalf("the app got %s %s", s.Method, s.Path)
		}
		if s.ForwardedFor != "203.0.113.7, 127.0.0.1" || len(s.RequestID) != 32 {
			t.Fatalf("the app got X-Forwarded-For %q, X-Request-Id %q", s.ForwardedFor, s.RequestID)
		}
		// nginx is a trusted proxy: sessiond took the client's address from
		// the X-Forwarded-For nginx sent it.
		eventually(t, 2*time.Second, "sessiond logging the verify from the forwarded address", func() bool {
			for _, l := range strings.Split(e.Logs.String(), "\n") {
				if strings.Contains(l, "path=/v1/auth/verify") && strings.Contains(l, "ip=203.0.113.7") {
					return true
				}
			}
			return false
		})
	})

	t.Run("admin role", func(t *testing.T) {
		e.createUser("root", "root-password", "admin")
		adminTok, adminSID := e.login("root", "root-password")
		s := reached(t, call(t, "GET", nginx+"/", adminTok, ""), "GET with an admin's token")
		if s.Username != "root" || s.UserRole != "admin" || s.SessionID != adminSID {
			t.Fatalf("the app saw %+v", identity(s))
		}
	})

	t.Run("client-sent identity headers are overwritten", func(t *testing.T) {
		r := call(t, "GET", nginx+"/", tok, "", "X-User-Id", "someone-else", "X-User-Id", "another",
			"X-Username", "mallory", "X-User-Role", "admin", "X-Session-Id", "forged",
			"X_User_Id", "someone-else", "X-Session-AAL", "2", "X-Auth-Time", "9999999999")
		s := reached(t, r, "GET with a live token and forged X-User-*")
		if identity(s) != want {
			t.Fatalf("the app saw %+v, want %+v", identity(s), want)
		}
		if s.SessionAAL != "1" || s.AuthTime != authTime(t, e, tok) {
			t.Fatalf("the app saw X-Session-AAL %q, X-Auth-Time %q; want sessiond's 1 and %s", s.SessionAAL, s.AuthTime, authTime(t, e, tok))
		}
		// One of each, nginx's: neither the second X-User-Id line nor the
		// underscored spelling got through.
		if want := []string{"X-User-Id", "X-User-Role", "X-Username"}; !slices.Equal(s.UserHeaders, want) {
			t.Fatalf("the app got headers %q, want %q", s.UserHeaders, want)
		}
	})

	t.Run("forged X-User-Id without a token never reaches the app", func(t *testing.T) {
		before := app.Hits()
		r := call(t, "GET", nginx+"/", "", "", "X-User-Id", u.ID, "X-Username", "alice", "X-Session-Id", sid)
		refused(t, r, 401, "unauthorized", "forged X-User-Id without a token")
		if app.Hits() != before {
			t.Fatal("a request without a token reached the app")
		}
	})

	t.Run("no token: 401 with sessiond's challenge", func(t *testing.T) {
		before := app.Hits()
		r := call(t, "GET", nginx+"/page.html", "", "")
		refused(t, r, 401, "unauthorized", "no token")
		if got := r.Header.Values("WWW-Authenticate"); len(got) != 1 || !strings.HasPrefix(got[0], "Bearer") {
			t.Fatalf("WWW-Authenticate %q, want one Bearer challenge", got)
		}
		if app.Hits() != before {
			t.Fatal("a request without a token reached the app")
		}
	})

	t.Run("bad token: 401 invalid_token", func(t *testing.T) {
		before := app.Hits()
		r := call(t, "GET", nginx+"/", "not-a-token", "")
		refused(t, r, 401, "unauthorized", "a bad token")
		if got := r.Header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != `Bearer error="invalid_token"` {
			t.Fatalf("WWW-Authenticate %q", got)
		}
		if app.Hits() != before {
			t.Fatal("a bad token reached the app")
		}
	})

	t.Run("the verify location is internal", func(t *testing.T) {
		before := app.Hits()
		if r := call(t, "GET", nginx+"/_sessiond_verify", tok, ""); r.Status != 404 {
			t.Fatalf("GET /_sessiond_verify from a client: %d %s, want 404", r.Status, r.Body)
		}
		if app.Hits() != before {
			t.Fatal("GET /_sessiond_verify reached the app")
		}
	})

	t.Run("POST with a body", func(t *testing.T) {
		body := `{"item":"book","qty":2}`
		r := call(t, "POST", nginx+"/orders", tok, body, "Content-Type", "application/json")
		s := reached(t, r, "POST with a live token")
		if s.Method != "POST" || s.Body != body || identity(s) != want {
			t.Fatalf("the app got %s %q as %+v", s.Method, s.Body, identity(s))
		}
		// Bigger than nginx's in-memory client body buffer (16k): buffered
		// to client_body_temp_path, and still the verify goes without it.
		big := strings.Repeat("x", 100<<10)
		r = call(t, "PUT", nginx+"/upload", tok, big, "Content-Type", "application/octet-stream")
		if s := reached(t, r, "PUT of 100 KiB with a live token"); s.Method != "PUT" || s.Body != big {
			t.Fatalf("the app got %s with %d bytes", s.Method, len(s.Body))
		}
	})

	t.Run("logout bites on the very next request", func(t *testing.T) {
		reached(t, call(t, "GET", nginx+"/", tok, ""), "GET before the logout")
		if r := call(t, "POST", sessiond+"/v1/auth/logout", tok, ""); r.Status != 204 {
			t.Fatalf("logout at sessiond: %d %s", r.Status, r.Body)
		}
		before := app.Hits()
		r := call(t, "GET", nginx+"/", tok, "")
		refused(t, r, 401, "unauthorized", "the token right after its logout")
		if got := r.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
			t.Fatalf("WWW-Authenticate %q", got)
		}
		if app.Hits() != before {
			t.Fatal("a logged-out token reached the app")
		}
	})

	// Every verify sessiond got was a GET, the POST's and PUT's included.
	verifies := 0
	for _, l := range strings.Split(e.Logs.String(), "\n") {
		if strings.Contains(l, "path=/v1/auth/verify") {
			verifies++
			if !strings.Contains(l, "method=GET") {
				t.Errorf("sessiond got a verify that is not a GET: %s", l)
			}
		}
	}
	if verifies == 0 {
		t.Error("sessiond logged no verify")
	}
	if n := app.Hits() - startupHits; n != 6 {
		t.Errorf("the app was reached %d times, want 6 (one per accepted request)", n)
	}
}

// When sessiond cannot answer — Redis down, or sessiond itself down — nginx
// answers 503 with Retry-After (auth_request alone would say 500), and the
// app is not reached: forward auth fails closed.
func TestNginxForwardAuthUnavailable(t *testing.T) {
	t.Parallel()
	nginxBinary(t) // skip before starting Redis when there is no nginx
	rs, client := ownRedis(t, "stops redis-server under nginx")
	// 1 s, not the 300 ms of the other fail-closed tests: the sign-up's
	// writes below ran past 300 ms once under -race beside the browser
	// tests. A stopped Redis refuses connections, so 503 still comes at once.
	e := newEnv(t, envOpts{Client: client, RedisTimeout: time.Second, TrustedProxies: "127.0.0.1/32"})
	app := newProtectedApp(t)
	nginx := startNginx(t, e.listen(), strings.TrimPrefix(app.URL, "http://"))
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	reached(t, call(t, "GET", nginx+"/", tok, ""), "GET with Redis up")

	rs.Stop()
	// As in TestRedisKilledFailsClosedAndRecovers: for an instant the
	// client-side cache may still answer; then only 503, never 401.
	var r resp
	eventually(t, 5*time.Second, "503 at nginx with Redis down", func() bool {
		r = call(t, "GET", nginx+"/", tok, "")
		if r.Status != 200 && r.Status != 503 {
			t.Fatalf("with Redis down: %d %s, want 503 (never 401: clients would drop their tokens)", r.Status, r.Body)
		}
		return r.Status == 503
	})
	before := app.Hits()
	for range 3 {
		r = call(t, "POST", nginx+"/orders", tok, `{"item":"book"}`)
		assertUnavailable(t, r, "POST through nginx")
	}
	assertUnavailable(t, call(t, "GET", nginx+"/admin/", tok, ""), "GET of the two-factor location through nginx")
	if app.Hits() != before {
		t.Fatal("a request reached the app while sessiond could not verify it")
	}

	t.Run("sessiond down", func(t *testing.T) {
		dead, err := freeTCPPort() // nothing listens there
		if err != nil {
			t.Fatal(err)
		}
		nginx := startNginx(t, fmt.Sprintf("127.0.0.1:%d", dead), strings.TrimPrefix(app.URL, "http://"))
		before := app.Hits()
		assertUnavailable(t, call(t, "GET", nginx+"/", tok, ""), "GET through nginx with sessiond down")
		if app.Hits() != before {
			t.Fatal("a request reached the app with sessiond down")
		}
	})
}

// authTime is the auth_time of the session of token, in unix seconds as
// X-Auth-Time carries it.
func authTime(t *testing.T, e *env, token string) string {
	t.Helper()
	at, err := time.Parse(time.RFC3339, str(e.session(t, token)["auth_time"]))
	if err != nil {
		t.Fatalf("auth_time: %v", err)
	}
	return strconv.FormatInt(at.Unix(), 10)
}

// The example's two-factor location: a session at aal 1 reaches the app
// everywhere else and is refused there with 403 step_up_required (whatever
// X-Session-AAL the client sends); after a step-up with a TOTP code, the
// same token reaches it, and the app sees the raised assurance.
func TestNginxTwoFactorLocation(t *testing.T) {
	t.Parallel()
	e, clk := mfaEnv(t, envOpts{TrustedProxies: "127.0.0.1/32"})
	app := newProtectedApp(t)
	nginx := startNginx(t, e.listen(), strings.TrimPrefix(app.URL, "http://"))
	u := e.createUser("alice", "password123", "")
	tok, sid := e.login("alice", "password123")
	authenticator, _ := e.enroll(t, clk, tok)

	// At aal 1: the other locations let it through, with the assurance.
	for _, path := range []string{"/", "/orders/42", "/administrator"} {
		s := reached(t, call(t, "GET", nginx+path, tok, ""), "GET "+path+" at aal 1")
		if s.UserID != u.ID || s.SessionID != sid || s.SessionAAL != "1" || s.AuthTime != authTime(t, e, tok) {
			t.Fatalf("GET %s at aal 1: the app saw %+v", path, s)
		}
	}
	// ... and the two-factor location refuses it before the app.
	before := app.Hits()
	for _, r := range []resp{
		call(t, "GET", nginx+"/admin/", tok, ""),
		call(t, "POST", nginx+"/admin/users", tok, `{"username":"bob"}`, "Content-Type", "application/json"),
		call(t, "GET", nginx+"/admin/users", tok, "", "X-Session-AAL", "2"),
	} {
		refused(t, r, 403, "step_up_required", "the two-factor location at aal 1")
		if ct, cc := r.Header.Get("Content-Type"), r.Header.Get("Cache-Control"); ct != "application/problem+json" || cc != "no-store" {
			t.Fatalf("403 with Content-Type %q, Cache-Control %q", ct, cc)
		}
	}
	refused(t, call(t, "GET", nginx+"/admin/", "", ""), 401, "unauthorized", "the two-factor location without a token")
	refused(t, call(t, "GET", nginx+"/admin/", "not-a-token", "", "X-Session-AAL", "2"), 401, "unauthorized", "the two-factor location with a bad token")
	if app.Hits() != before {
		t.Fatal("a request below aal 2 reached the app through the two-factor location")
	}

	// Step up the same session at sessiond, then the same token passes.
	r := call(t, "POST", "http://"+e.listen()+"/v1/auth/reauthenticate", tok, `{"code":"`+authenticator.next(t)+`"}`, "Content-Type", "application/json")
	if r.Status != 200 {
		t.Fatalf("POST /v1/auth/reauthenticate with a code: %d %s", r.Status, r.Body)
	}
	for _, path := range []string{"/admin/", "/admin/users?page=2", "/orders/42"} {
		s := reached(t, call(t, "GET", nginx+path, tok, "", "X-Session-AAL", "1", "X-User-Id", "forged"), "GET "+path+" at aal 2")
		if s.Path != path || s.UserID != u.ID || s.Username != "alice" || s.UserRole != "user" || s.SessionID != sid ||
			s.SessionAAL != "2" || s.AuthTime != authTime(t, e, tok) || s.ForwardedFor != "127.0.0.1" || len(s.RequestID) != 32 {
			t.Fatalf("GET %s at aal 2: the app saw %+v", path, s)
		}
	}
	body := `{"username":"bob"}`
	if s := reached(t, call(t, "POST", nginx+"/admin/users", tok, body, "Content-Type", "application/json"), "POST at aal 2"); s.Method != "POST" || s.Body != body {
		t.Fatalf("the app got %s %q", s.Method, s.Body)
	}

	// A logout bites there too, on the very next request.
	if r := call(t, "POST", "http://"+e.listen()+"/v1/auth/logout", tok, ""); r.Status != 204 {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	refused(t, call(t, "GET", nginx+"/admin/", tok, ""), 401, "unauthorized", "the two-factor location after the logout")
}
