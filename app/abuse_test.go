package app_test

import (
	"fmt"
	"testing"
)

// behindProxy makes app.Test's peer (0.0.0.0) a trusted proxy, so each
// request can name its client IP in X-Forwarded-For.
const behindProxy = "0.0.0.0/32"

func (e *env) loginFrom(ip, name, password string) resp {
	e.t.Helper()
	return e.do("POST", "/v1/auth/login", "", map[string]string{"username": name, "password": password},
		"X-Forwarded-For", ip)
}

// Credential stuffing: one IP failing across many accounts is stopped, while
// other IPs are not.
func TestLoginLimitPerIPAcrossAccounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{TrustedProxies: behindProxy, MaxPerIP: 5})
	e.createUser("victim", "password123", "")
	for i := range 5 {
		if r := e.loginFrom("198.51.100.1", fmt.Sprintf("guess%d", i), "wrong-password"); r.Status != 401 {
			t.Fatalf("failure %d: %d", i, r.Status)
		}
	}
	r := e.loginFrom("198.51.100.1", "victim", "password123")
	if r.Status != 429 || r.Code(t) != "too_many_attempts" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("6th attempt from a stuffing IP: %d %s; want 429 with Retry-After", r.Status, r.Body)
	}
	if r := e.loginFrom("198.51.100.2", "victim", "password123"); r.Status != 201 {
		t.Fatalf("another IP was locked out too: %d %s", r.Status, r.Body)
	}
}

// Distributed guessing: one account failing from many IPs is stopped, even
// with the right password, until the window ends; a success before the cap
// resets the account's count.
func TestLoginLimitPerAccountAcrossIPs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{TrustedProxies: behindProxy, MaxPerAccount: 4})
	e.createUser("target", "password123", "")
	e.createUser("bystander", "password123", "")
	fail := func(from int, n int) {
		t.Helper()
		for i := range n {
			if r := e.loginFrom(fmt.Sprintf("203.0.113.%d", from+i), "target", "wrong-password"); r.Status != 401 {
				t.Fatalf("failure from IP %d: %d", from+i, r.Status)
			}
		}
	}
	fail(1, 3)
	if r := e.loginFrom("203.0.113.200", "target", "password123"); r.Status != 201 {
		t.Fatalf("success below the cap: %d", r.Status)
	}
	fail(10, 3) // the success reset the count: 3 more are still below 4
	if r := e.loginFrom("203.0.113.201", "target", "password123"); r.Status != 201 {
		t.Fatalf("count was not reset by the success: %d %s", r.Status, r.Body)
	}
	fail(20, 4)
	if r := e.loginFrom("203.0.113.202", "target", "password123"); r.Status != 429 || r.Code(t) != "too_many_attempts" {
		t.Fatalf("after 4 failures from 4 IPs: %d %s; want 429", r.Status, r.Body)
	}
	if r := e.loginFrom("203.0.113.203", "bystander", "password123"); r.Status != 201 {
		t.Fatalf("another account was locked out too: %d", r.Status)
	}
}

// A client that is not a trusted proxy cannot dodge the limit by sending its
// own X-Forwarded-For: the socket address is what counts.
func TestLoginLimitIgnoresSpoofedForwardedFor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxFailures: 3})
	e.createUser("dave", "password123", "")
	for i := range 3 {
		if r := e.loginFrom(fmt.Sprintf("192.0.2.%d", i+1), "dave", "wrong-password"); r.Status != 401 {
			t.Fatalf("failure %d: %d", i, r.Status)
		}
	}
	if r := e.loginFrom("192.0.2.99", "dave", "password123"); r.Status != 429 {
		t.Fatalf("spoofed X-Forwarded-For dodged the limit: %d %s", r.Status, r.Body)
	}
}
