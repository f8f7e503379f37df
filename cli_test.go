package main

// The operators' commands, run as the built binary against a real Redis
// and a real running service, as an operator at a shell would.

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/redistest"
)

// cli runs `sessiond ARGS...` with env (and the test Redis) and stdin.
func cli(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(holdBinary(t), args...)
	cmd.Env = cleanEnv(withDefaults(t, env))
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatalf("sessiond %v: %v", args, err)
	}
	return 0, out.String(), errb.String()
}

// mustCLI runs a command that must succeed.
func mustCLI(t *testing.T, env map[string]string, stdin string, args ...string) string {
	t.Helper()
	code, out, errOut := cli(t, env, stdin, args...)
	if code != 0 {
		t.Fatalf("sessiond %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// revokedSoon waits for the service to refuse a token the CLI revoked. The
// CLI is another replica: the service refuses the token once Redis's cache
// invalidation reaches it, within milliseconds (the README's "What replicas
// guarantee"); a loaded CI machine gets half a second.
func revokedSoon(t *testing.T, base, tok, after string) {
	t.Helper()
	deadline := time.Now().Add(500 * time.Millisecond)
	for {
		r := call(t, "GET", base+"/v1/me", tok, nil)
		if r.status == 401 {
			return
		}
		if r.status != 200 || time.Now().After(deadline) {
			t.Fatalf("%s: the service still answers %d", after, r.status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Every account command, through the binary, against the data a running
// service uses: each bites on the service's next request, follows the
// last-admin rule and is recorded with the operator as actor.
func TestAdminCLI(t *testing.T) {
	t.Parallel()
	env := map[string]string{"REDIS_KEY_PREFIX": redistest.Prefix(t), "USER": "opsperson"}
	base, _ := startBinary(t, env)

	out := mustCLI(t, env, "root-password\n", "user", "add", "--username", "root", "--role", "admin")
	if !strings.Contains(out, `admin "root"`) {
		t.Fatalf("user add: %q", out)
	}
	mustCLI(t, env, "alice-password\n", "user", "add", "--username", "alice")
	for _, name := range []string{"root", "alice"} {
		if out := mustCLI(t, env, "", "user", "list"); !strings.Contains(out, name) {
			t.Fatalf("user list lacks %s:\n%s", name, out)
		}
	}
	out = mustCLI(t, env, "", "user", "find", "ALICE")
	if !strings.Contains(out, "alice") || !strings.Contains(out, "user") {
		t.Fatalf("user find: %s", out)
	}
	aliceTok := mustLogin(t, base, "alice", "alice-password").Token
	if out := mustCLI(t, env, "", "user", "show", "alice"); !strings.Contains(out, "envtest") {
		t.Fatalf("user show lacks the session's device:\n%s", out)
	}

	// Force-logout: the token dies on the service's next request.
	mustCLI(t, env, "", "user", "logout", "alice")
	revokedSoon(t, base, aliceTok, "after user logout")
	mustCLI(t, env, "", "user", "disable", "alice")
	if r, _ := login(t, base, "alice", "alice-password"); r.status != 403 {
		t.Fatalf("login after user disable: %d", r.status)
	}
	mustCLI(t, env, "", "user", "enable", "alice")
	aliceTok = mustLogin(t, base, "alice", "alice-password").Token
	mustCLI(t, env, "", "user", "role", "alice", "admin")
	var me struct{ Role string }
	decode(t, call(t, "GET", base+"/v1/me", aliceTok, nil), &me)
	if me.Role != "admin" {
		t.Fatalf("role after user role: %q", me.Role)
	}
	out = mustCLI(t, env, "new-alice-password\n", "user", "password", "alice")
	if strings.Contains(out, "new-alice-password") {
		t.Fatal("the password was echoed")
	}
	revokedSoon(t, base, aliceTok, "a session after user password")
	aliceTok = mustLogin(t, base, "alice", "new-alice-password").Token

	// The operator is the actor in the audit trail.
	var evs struct {
		Events []struct {
			Type    string `json:"type"`
			ActorID string `json:"actor_id"`
		} `json:"events"`
	}
	decode(t, call(t, "GET", base+"/v1/me/events?limit=100", aliceTok, nil), &evs)
	seen := map[string]string{}
	for _, e := range evs.Events {
		if _, ok := seen[e.Type]; !ok {
			seen[e.Type] = e.ActorID
		}
	}
	for _, typ := range []string{"account.created", "sessions.revoked_all", "account.disabled", "account.enabled", "account.role_changed", "password.changed"} {
		if seen[typ] != "cli:opsperson" {
			t.Errorf("%s: actor %q, want cli:opsperson (events %+v)", typ, seen[typ], evs.Events)
		}
	}

	// The last enabled admin stays: demote root while alice is admin, then
	// alice cannot demote herself.
	mustCLI(t, env, "", "user", "role", "root", "user")
	if code, _, errOut := cli(t, env, "", "user", "role", "alice", "user"); code != 1 || !strings.Contains(errOut, "last enabled admin") {
		t.Fatalf("demoting the last admin: exit %d, %q", code, errOut)
	}
	if code, _, errOut := cli(t, env, "", "user", "delete", "alice"); code != 1 || !strings.Contains(errOut, "last enabled admin") {
		t.Fatalf("deleting the last admin: exit %d, %q", code, errOut)
	}
	mustCLI(t, env, "", "user", "role", "root", "admin")
	out = mustCLI(t, env, "", "user", "delete", "alice")
	if !strings.Contains(out, "deleted") {
		t.Fatalf("user delete: %s", out)
	}
	revokedSoon(t, base, aliceTok, "a session after user delete")
	if code, _, errOut := cli(t, env, "", "user", "find", "alice"); code != 1 || !strings.Contains(errOut, "no such user") {
		t.Fatalf("find after delete: exit %d, %q", code, errOut)
	}

	// What the operator typed wrong is exit 2, with the usage.
	for _, args := range [][]string{{"user"}, {"user", "frobnicate"}, {"user", "role", "root"}, {"user", "role", "root", "superuser"}} {
		if code, _, errOut := cli(t, env, "", args...); code != 2 || errOut == "" {
			t.Errorf("sessiond %s: exit %d, %q; want 2 and a message", strings.Join(args, " "), code, errOut)
		}
	}
	if code, _, errOut := cli(t, env, "", "user", "password", "root"); code != 1 || !strings.Contains(errOut, "stdin") {
		t.Errorf("user password without a password on stdin: exit %d, %q", code, errOut)
	}
}

// `sessiond healthcheck` (the container's health check) is 0 while the
// service at LISTEN_ADDR is ready, 1 when nothing answers there.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	env := map[string]string{"LISTEN_ADDR": addr}
	if code, _, _ := cli(t, env, "", "healthcheck"); code != 1 {
		t.Fatalf("healthcheck with nothing listening: exit %d, want 1", code)
	}
	startBinary(t, env)
	if code, out, errOut := cli(t, env, "", "healthcheck"); code != 0 || !strings.Contains(out, "ready") {
		t.Fatalf("healthcheck of a running service: exit %d, %q %q", code, out, errOut)
	}
	// LISTEN_ADDR=:port probes loopback.
	_, port, _ := strings.Cut(addr, ":")
	if code, _, errOut := cli(t, map[string]string{"LISTEN_ADDR": ":" + port}, "", "healthcheck"); code != 0 {
		t.Fatalf("healthcheck with LISTEN_ADDR=:%s: exit %d, %q", port, code, errOut)
	}
}

// What a client wrote reaches the operator's terminal escaped: a device name
// or platform holding a newline, ESC or BEL can neither forge a row nor send
// the terminal an escape sequence.
func TestCLIEscapesWhatClientsWrote(t *testing.T) {
	t.Parallel()
	env := map[string]string{"REDIS_KEY_PREFIX": redistest.Prefix(t)}
	base, _ := startBinary(t, env)
	mustCLI(t, env, "alice-password\n", "user", "add", "--username", "alice")
	const evil = "phone\nffffffff-0000-0000-0000-000000000000  forged row\x1b[2J\x07"
	r := call(t, "POST", base+"/v1/auth/login", "", map[string]any{"username": "alice", "password": "alice-password",
		"device": map[string]string{"name": evil, "platform": "ios\x1b]0;owned\x07"}})
	if r.status != 201 {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	out := mustCLI(t, env, "", "user", "show", "alice")
	if strings.ContainsAny(out, "\x1b\x07\t") {
		t.Fatalf("user show printed control characters raw:\n%q", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "forged row") && !strings.Contains(line, `"phone\n`) {
			t.Fatalf("a device name's newline forged a row:\n%s", out)
		}
	}
	for _, want := range []string{`"phone\nffffffff-0000-0000-0000-000000000000  forged row\x1b[2J\a"`, `"ios\x1b]0;owned\a"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("user show lacks %s, escaped:\n%s", want, out)
		}
	}
}

// An argument that is one account's id and another's username names neither:
// the command refuses (exit 2), naming both, and changes nothing; id:ID and
// name:NAME say which.
func TestCLIAmbiguousAccountArgument(t *testing.T) {
	t.Parallel()
	env := map[string]string{"REDIS_KEY_PREFIX": redistest.Prefix(t)}
	startBinary(t, env)
	mustCLI(t, env, "root-password\n", "user", "add", "--username", "root", "--role", "admin")
	mustCLI(t, env, "alice-password\n", "user", "add", "--username", "alice")
	aliceID := idOf(t, mustCLI(t, env, "", "user", "find", "alice"), "alice")
	// An account named after alice's id.
	mustCLI(t, env, "mallory-password\n", "user", "add", "--username", aliceID)
	malloryID := idOf(t, mustCLI(t, env, "", "user", "find", aliceID), aliceID)

	for _, sub := range []string{"delete", "show", "disable"} {
		code, out, errOut := cli(t, env, "", "user", sub, aliceID)
		if code != 2 || !strings.Contains(errOut, `"alice"`) || !strings.Contains(errOut, malloryID) || out != "" {
			t.Fatalf("user %s <alice's id>, which is also an account's name: exit %d\nstdout %q\nstderr %q; want 2 naming both", sub, code, out, errOut)
		}
	}
	if out := mustCLI(t, env, "", "user", "list"); !strings.Contains(out, "alice") || strings.Count(out, aliceID) != 2 || strings.Contains(out, "true") {
		t.Fatalf("a refused command changed accounts:\n%s", out)
	}
	out := mustCLI(t, env, "", "user", "show", "id:"+aliceID)
	if !strings.Contains(out, "alice") {
		t.Fatalf("user show id:ID: %s", out)
	}
	mustCLI(t, env, "", "user", "delete", "name:"+aliceID)
	if out := mustCLI(t, env, "", "user", "find", "alice"); !strings.Contains(out, aliceID) {
		t.Fatalf("deleting name:<alice's id> deleted alice:\n%s", out)
	}
	if code, _, _ := cli(t, env, "", "user", "find", aliceID); code != 1 {
		t.Fatalf("the account named after alice's id is still there: exit %d", code)
	}
	// Unambiguous arguments work as before, by id or by name.
	mustCLI(t, env, "", "user", "disable", aliceID)
	mustCLI(t, env, "", "user", "enable", "alice")
}

// idOf is the id of the account named name in a printed user table.
func idOf(t *testing.T, table, name string) string {
	t.Helper()
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == name {
			return f[0]
		}
	}
	t.Fatalf("no account %q in:\n%s", name, table)
	return ""
}

// `sessiond user mfa-reset` is for a user who lost their authenticator: the
// account signs in with its password alone afterwards, its sessions stay,
// and the operator is the actor of the mfa.removed event.
func TestUserMFAResetCLI(t *testing.T) {
	t.Parallel()
	env := map[string]string{"REDIS_KEY_PREFIX": redistest.Prefix(t), "USER": "opsperson", "MFA_ENCRYPTION_KEY": mfaKeyA}
	base, _ := startBinary(t, env)
	mustCLI(t, env, "alice-password\n", "user", "add", "--username", "alice")
	tok := mustLogin(t, base, "alice", "alice-password").Token
	enrollTOTP(t, base, tok)
	if r, _ := login(t, base, "alice", "alice-password"); r.status != 401 || problemCode(r) != "mfa_required" {
		t.Fatalf("the password of an enrolled account: %d %s, want 401 mfa_required", r.status, r.body)
	}

	// The command opens no secret, so it runs without the key: an operator
	// who lost it can still let the account in.
	keyless := map[string]string{"REDIS_KEY_PREFIX": env["REDIS_KEY_PREFIX"], "USER": "opsperson"}
	out := mustCLI(t, keyless, "", "user", "mfa-reset", "alice")
	if !strings.Contains(out, `"alice"`) {
		t.Fatalf("user mfa-reset: %q, want the account named", out)
	}
	r, lr := login(t, base, "alice", "alice-password")
	if r.status != 201 || lr.Token == "" || strings.Contains(string(r.body), "mfa_required") {
		t.Fatalf("the password after user mfa-reset: %d %s, want 201 without mfa_required", r.status, r.body)
	}
	var st struct {
		TOTP bool `json:"totp"`
		Left int  `json:"recovery_codes_left"`
	}
	decode(t, call(t, "GET", base+"/v1/me/mfa", lr.Token, nil), &st)
	if st.TOTP || st.Left != 0 {
		t.Fatalf("GET /v1/me/mfa after user mfa-reset: %+v, want no TOTP and no recovery codes", st)
	}
	if s := call(t, "GET", base+"/v1/me", tok, nil).status; s != 200 {
		t.Fatalf("the session from before the reset: %d, want 200 (it stays)", s)
	}
	var evs struct {
		Events []struct {
			Type    string `json:"type"`
			ActorID string `json:"actor_id"`
		} `json:"events"`
	}
	decode(t, call(t, "GET", base+"/v1/me/events?limit=100", tok, nil), &evs)
	removed := false
	for _, e := range evs.Events {
		if e.Type == "mfa.removed" {
			removed = e.ActorID == "cli:opsperson"
			break
		}
	}
	if !removed {
		t.Fatalf("no mfa.removed event by cli:opsperson: %+v", evs.Events)
	}

	// An account that does not exist: a failure that says so, and no output.
	code, out, errOut := cli(t, env, "", "user", "mfa-reset", "nobody")
	if code == 0 || out != "" || !strings.Contains(errOut, "no such user") {
		t.Fatalf("user mfa-reset of an unknown account: exit %d, stdout %q, stderr %q; want a failure saying no such user", code, out, errOut)
	}
}
