package app_test

import (
	"fmt"
	"strings"
	"testing"
)

func TestBadRequestBodies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", "")
	for _, c := range []struct {
		name, body, contentType, detail string
	}{
		{"malformed JSON", `{"username":`, "application/json", "not valid JSON"},
		{"no content type", `{"username":"alice","password":"password123"}`, "", "Content-Type"},
		{"text/plain", `{"username":"alice","password":"password123"}`, "text/plain", "Content-Type"},
		{"empty body", ``, "application/json", "empty"},
		{"array body", `[1,2]`, "application/json", "JSON object"},
		{"wrong type", `{"username":5,"password":"password123"}`, "application/json", "username"},
		{"missing username", `{"password":"password123"}`, "application/json", "username"},
		{"missing password", `{"username":"alice"}`, "application/json", "password"},
		{"trailing data", `{"username":"alice","password":"password123"} {}`, "application/json", "nothing after"},
		{"device name too long", `{"username":"alice","password":"password123","device":{"name":"` + strings.Repeat("n", 129) + `"}}`, "application/json", "device.name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/v1/auth/login", "", c.body, "Content-Type", c.contentType)
			wantProblem(t, r, 400, "invalid_request")
			if d := r.JSON(t)["detail"].(string); !strings.Contains(d, c.detail) {
				t.Fatalf("detail %q does not mention %q", d, c.detail)
			}
		})
	}
	// charset parameters are fine.
	if r := e.do("POST", "/v1/auth/login", "", `{"username":"alice","password":"password123"}`, "Content-Type", "application/json; charset=utf-8"); r.Status != 201 {
		t.Fatalf("with charset: %d %s", r.Status, r.Body)
	}
}

func TestBodyOver64KiB(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	body := `{"username":"` + strings.Repeat("a", 64<<10) + `","password":"x"}`
	r := e.raw(fmt.Sprintf("POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	wantProblem(t, r, 413, "payload_too_large")
}

// What the client says about its device is stored and returned verbatim, as
// a JSON string, whatever it contains; the user agent is cut at 512 bytes.
func TestDeviceMetadataVerbatim(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", "")
	name := "Bob's \"phone\"\r\nX-Injected: yes <script>alert(1)</script> ✓"
	ua := strings.Repeat("u", 600)
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "alice", "password": "password123",
		"device": map[string]string{"name": name, "platform": "android"}}, "User-Agent", ua)
	if r.Status != 201 {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("X-Injected") != "" {
		t.Fatal("device name leaked into response headers")
	}
	tok := r.JSON(t)["token"].(string)
	s := e.do("GET", "/v1/sessions", tok, nil).JSON(t)["sessions"].([]any)[0].(map[string]any)
	if s["device_name"] != name {
		t.Fatalf("device_name %q, want %q", s["device_name"], name)
	}
	if got := s["user_agent"].(string); len(got) != 512 || !strings.HasPrefix(ua, got) {
		t.Fatalf("user_agent of %d bytes stored as %d bytes", len(ua), len(got))
	}
}

// X-Forwarded-For names the client only when a trusted proxy sent it.
func TestClientIPFromTrustedProxiesOnly(t *testing.T) {
	t.Parallel()
	direct := newEnv(t, envOpts{})
	direct.createUser("alice", "password123", "")
	proxied := newEnv(t, envOpts{TrustedProxies: "0.0.0.0/32,10.0.0.0/8"})
	proxied.createUser("alice", "password123", "")
	ipOf := func(e *env, xff string) string {
		r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "password123"}, "X-Forwarded-For", xff)
		return r.JSON(t)["session"].(map[string]any)["ip"].(string)
	}
	if ip := ipOf(direct, "203.0.113.9"); ip != "0.0.0.0" {
		t.Fatalf("untrusted peer set the client IP to %s", ip)
	}
	// The rightmost hop that is not a trusted proxy is the client; what the
	// client itself wrote further left is not believed.
	if ip := ipOf(proxied, "198.51.100.1, 203.0.113.9, 10.1.2.3"); ip != "203.0.113.9" {
		t.Fatalf("behind trusted proxies: ip %s, want 203.0.113.9", ip)
	}
}

// A full flow leaves no token, password or password hash in the logs, and
// every request is logged with its request id.
func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	_, admin := e.admin()
	e.do("POST", "/v1/admin/users", admin, map[string]string{"username": "alice", "password": "first-secret-pw"})
	tok, _ := e.login("alice", "first-secret-pw")
	e.do("GET", "/v1/me?token="+tok, tok, nil)
	r := e.do("PUT", "/v1/me/password", tok, map[string]string{"current_password": "first-secret-pw", "new_password": "second-secret-pw"})
	e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "wrong-secret-pw"})
	logs := e.Logs.String()
	for _, secret := range []string{tok, tok[:40], admin, "first-secret-pw", "second-secret-pw", "wrong-secret-pw", "root-password", "$2a$"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain %q:\n%s", secret, logs)
		}
	}
	if id := r.Header.Get("X-Request-Id"); id == "" || !strings.Contains(logs, "request_id="+id) {
		t.Fatalf("request id %q not in the logs:\n%s", id, logs)
	}
}
