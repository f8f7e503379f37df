package app_test

// Passkeys through the HTTP API, with a software authenticator
// (virtualwebauthn) against real Redis: registration from a fresh session,
// sign-in by username and discoverable at aal 2, replays refused, the
// counter checked, the passkey as a step-up, removal, the admin's reset, and
// the routes absent when WebAuthn is not configured.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/sessiond/sessiond/users"
)

const (
	webauthnRPID   = "example.com"
	webauthnOrigin = "https://login.example.com"
)

var webauthnRP = virtualwebauthn.RelyingParty{ID: webauthnRPID, Name: "sessiond", Origin: webauthnOrigin}

// passkeyEnv is a replica with passkeys (and second factors) configured.
func passkeyEnv(t *testing.T, o envOpts) (*env, *clock) {
	t.Helper()
	if o.Env == nil {
		o.Env = map[string]string{}
	}
	o.Env["WEBAUTHN_RP_ID"], o.Env["WEBAUTHN_ORIGINS"] = webauthnRPID, webauthnOrigin
	return mfaEnv(t, o)
}

// p256Credential is a new credential whose key virtualwebauthn encodes
// right: it drops the leading zero bytes of a coordinate (big.Int.Bytes),
// which go-webauthn rightly refuses, so about one key in 128 would fail a
// test by chance; such keys are skipped.
func p256Credential(t *testing.T) virtualwebauthn.Credential {
	t.Helper()
	for {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := k.PublicKey.Bytes()
		if err != nil || pub[1] == 0 || pub[33] == 0 {
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return virtualwebauthn.NewCredentialWithImportedKey(virtualwebauthn.KeyTypeEC2, der)
	}
}

// ceremonyOf reads a begin's answer.
func ceremonyOf(t *testing.T, r resp) (string, string) {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("begin: %d %s", r.Status, r.Body)
	}
	var m struct {
		ChallengeID string          `json:"challenge_id"`
		Options     json.RawMessage `json:"options"`
	}
	if err := json.Unmarshal(r.Body, &m); err != nil || m.ChallengeID == "" || len(m.Options) == 0 {
		t.Fatalf("begin answered %s", r.Body)
	}
	return m.ChallengeID, string(m.Options)
}

// registerPasskey registers a new credential of a through the API.
func (e *env) registerPasskey(t *testing.T, token string, a *virtualwebauthn.Authenticator, name string) (*virtualwebauthn.Credential, map[string]any) {
	t.Helper()
	id, opts := ceremonyOf(t, e.do("POST", "/v1/me/passkeys/register/begin", token, map[string]any{}))
	parsed, err := virtualwebauthn.ParseAttestationOptions(opts)
	if err != nil {
		t.Fatalf("creation options: %v\n%s", err, opts)
	}
	var sel struct {
		AuthenticatorSelection struct {
			UserVerification string `json:"userVerification"`
			ResidentKey      string `json:"residentKey"`
		} `json:"authenticatorSelection"`
	}
	if err := json.Unmarshal([]byte(opts), &sel); err != nil || sel.AuthenticatorSelection.UserVerification != "required" ||
		sel.AuthenticatorSelection.ResidentKey != "preferred" {
		t.Fatalf("creation options: %v %s; want user verification required, resident key preferred", err, opts)
	}
	cred := p256Credential(t)
	att := virtualwebauthn.CreateAttestationResponse(webauthnRP, *a, cred, *parsed)
	a.AddCredential(cred)
	r := e.do("POST", "/v1/me/passkeys/register/finish", token, map[string]any{"challenge_id": id, "name": name, "credential": json.RawMessage(att)})
	if r.Status != 201 {
		t.Fatalf("finish registration: %d %s", r.Status, r.Body)
	}
	return &a.Credentials[len(a.Credentials)-1], r.JSON(t)
}

// passkeyLogin signs in with cred (by username, or discoverable with "").
func (e *env) passkeyLogin(t *testing.T, username string, a *virtualwebauthn.Authenticator, cred *virtualwebauthn.Credential) (resp, string, []byte) {
	t.Helper()
	body := map[string]any{}
	if username != "" {
		body["username"] = username
	}
	id, opts := ceremonyOf(t, e.do("POST", "/v1/auth/passkey/begin", "", body))
	parsed, err := virtualwebauthn.ParseAssertionOptions(opts)
	if err != nil {
		t.Fatalf("request options: %v\n%s", err, opts)
	}
	asn := []byte(virtualwebauthn.CreateAssertionResponse(webauthnRP, *a, *cred, *parsed))
	return e.passkeyFinish(id, asn), id, asn
}

func (e *env) passkeyFinish(id string, asn []byte) resp {
	e.t.Helper()
	return e.do("POST", "/v1/auth/passkey/finish", "", map[string]any{"challenge_id": id, "credential": json.RawMessage(asn),
		"device": map[string]string{"name": "Pixel 9", "platform": "android"}})
}

func TestPasskeyRegistrationAndSignIn(t *testing.T) {
	e, _ := passkeyEnv(t, envOpts{})
	u := e.createUser("alice", "alice-password", users.RoleUser)
	tok, _ := e.login("alice", "alice-password")
	a := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(u.ID)})
	cred, pk := e.registerPasskey(t, tok, &a, "Alice's Pixel")
	if pk["name"] != "Alice's Pixel" || str(pk["id"]) == "" || str(pk["created_at"]) == "" {
		t.Fatalf("registered passkey: %v", pk)
	}
	list := e.do("GET", "/v1/me/passkeys", tok, nil).JSON(t)["passkeys"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["id"] != pk["id"] {
		t.Fatalf("passkeys listed: %v", list)
	}
	if m := e.do("GET", "/v1/me/mfa", tok, nil).JSON(t); m["passkeys"] != 1.0 {
		t.Fatalf("GET /v1/me/mfa: %v", m)
	}

	// By username and discoverable: a session at aal 2, hwk and mfa.
	for _, name := range []string{"alice", ""} {
		r, id, asn := e.passkeyLogin(t, name, &a, cred)
		if r.Status != 201 {
			t.Fatalf("passkey sign-in (username %q): %d %s", name, r.Status, r.Body)
		}
		p := toPair(t, r)
		wantAssurance(t, p.Session, 2, "hwk", "mfa")
		if p.Session["device_name"] != "Pixel 9" {
			t.Fatalf("device: %v", p.Session)
		}
		if got := e.do("GET", "/v1/me", p.Token, nil); got.Status != 200 || got.JSON(t)["id"] != u.ID {
			t.Fatalf("the passkey session's token: %d %s", got.Status, got.Body)
		}
		// The same assertion again: refused, whoever sends it.
		wantProblem(t, e.passkeyFinish(id, asn), 401, "unauthorized")
	}
	evs := string(e.do("GET", "/v1/me/events?limit=100", tok, nil).Body)
	if !strings.Contains(evs, `"passkey.added"`) {
		t.Fatalf("no passkey.added in %s", evs)
	}
}

func TestPasskeyRefusals(t *testing.T) {
	e, _ := passkeyEnv(t, envOpts{})
	u := e.createUser("bob", "bob-password", users.RoleUser)
	tok, _ := e.login("bob", "bob-password")
	a := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(u.ID)})
	cred, _ := e.registerPasskey(t, tok, &a, "")

	// From another origin.
	id, opts := ceremonyOf(t, e.do("POST", "/v1/auth/passkey/begin", "", map[string]any{}))
	parsed, _ := virtualwebauthn.ParseAssertionOptions(opts)
	evil := virtualwebauthn.RelyingParty{ID: webauthnRPID, Name: "x", Origin: "https://evil.example.net"}
	wantProblem(t, e.passkeyFinish(id, []byte(virtualwebauthn.CreateAssertionResponse(evil, a, *cred, *parsed))), 401, "unauthorized")

	// A counter that goes backwards: a cloned authenticator.
	cred.Counter = 100
	if r, _, _ := e.passkeyLogin(t, "bob", &a, cred); r.Status != 201 {
		t.Fatalf("counter 100: %d %s", r.Status, r.Body)
	}
	cred.Counter = 50
	r, _, _ := e.passkeyLogin(t, "bob", &a, cred)
	wantProblem(t, r, 401, "unauthorized")
	if evs := string(e.do("GET", "/v1/me/events?limit=100", tok, nil).Body); !strings.Contains(evs, `"passkey.cloned"`) {
		t.Fatalf("no passkey.cloned in %s", evs)
	}

	// Made-up bodies.
	wantProblem(t, e.passkeyFinish("not-a-challenge", []byte(`{"id":"x"}`)), 401, "unauthorized")
	wantProblem(t, e.do("POST", "/v1/auth/passkey/finish", "", map[string]any{"challenge_id": "x"}), 400, "invalid_request")

	// An unknown name is answered like a known one.
	_, known := ceremonyOf(t, e.do("POST", "/v1/auth/passkey/begin", "", map[string]string{"username": "bob"}))
	_, unknown := ceremonyOf(t, e.do("POST", "/v1/auth/passkey/begin", "", map[string]string{"username": "nobody"}))
	count := func(opts string) int {
		var o struct {
			Allow []any `json:"allowCredentials"`
		}
		json.Unmarshal([]byte(opts), &o)
		return len(o.Allow)
	}
	if count(known) != 1 || count(unknown) != 1 {
		t.Fatalf("allowCredentials: %d for an account, %d for no account; want the same shape", count(known), count(unknown))
	}
}

// Registering and removing need a fresh session; a passkey can itself be the
// step-up, and an admin's reset removes passkeys too.
func TestPasskeyFreshnessStepUpAndReset(t *testing.T) {
	e, clk := passkeyEnv(t, envOpts{})
	u := e.createUser("carl", "carl-password", users.RoleUser)
	tok, sid := e.login("carl", "carl-password")
	a := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(u.ID)})
	cred, pk := e.registerPasskey(t, tok, &a, "key")

	clk.Advance(11 * time.Minute)
	wantProblem(t, e.do("POST", "/v1/me/passkeys/register/begin", tok, map[string]any{}), 403, "reauthentication_required")
	wantProblem(t, e.do("DELETE", "/v1/me/passkeys/"+str(pk["id"]), tok, nil), 403, "reauthentication_required")

	// The passkey as the step-up: the same session, now at aal 2.
	id, opts := ceremonyOf(t, e.do("POST", "/v1/auth/reauthenticate/passkey", tok, map[string]any{}))
	parsed, _ := virtualwebauthn.ParseAssertionOptions(opts)
	asn := virtualwebauthn.CreateAssertionResponse(webauthnRP, a, *cred, *parsed)
	r := e.do("POST", "/v1/auth/reauthenticate", tok, map[string]any{"challenge_id": id, "credential": json.RawMessage(asn)})
	if r.Status != 200 {
		t.Fatalf("passkey step-up: %d %s", r.Status, r.Body)
	}
	s := r.JSON(t)
	if s["id"] != sid {
		t.Fatalf("step-up answered session %v, want %s", s["id"], sid)
	}
	wantAssurance(t, s, 2, "hwk", "mfa")
	if r := e.do("POST", "/v1/auth/reauthenticate", tok, map[string]any{"challenge_id": id, "credential": json.RawMessage(asn)}); r.Status != 401 {
		t.Fatalf("the step-up's assertion again: %d %s, want 401", r.Status, r.Body)
	}
	if r := e.do("DELETE", "/v1/me/passkeys/"+str(pk["id"]), tok, nil); r.Status != 204 {
		t.Fatalf("remove: %d %s", r.Status, r.Body)
	}
	wantProblem(t, e.do("DELETE", "/v1/me/passkeys/"+str(pk["id"]), tok, nil), 404, "not_found")
}

func TestPasskeyAdminReset(t *testing.T) {
	e, _ := passkeyEnv(t, envOpts{})
	u := e.createUser("carl", "carl-password", users.RoleUser)
	tok2, _ := e.login("carl", "carl-password")
	a := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(u.ID)})
	e.registerPasskey(t, tok2, &a, "second")
	_, adm := e.admin()
	if r := e.do("DELETE", "/v1/admin/users/"+u.ID+"/mfa", adm, nil); r.Status != 204 {
		t.Fatalf("reset: %d %s", r.Status, r.Body)
	}
	if n := len(e.do("GET", "/v1/me/passkeys", tok2, nil).JSON(t)["passkeys"].([]any)); n != 0 {
		t.Fatalf("%d passkeys after the admin's reset", n)
	}
}

// With refresh tokens a passkey sign-in gets them as any sign-in does.
func TestPasskeySignInWithRefreshTokens(t *testing.T) {
	e, _ := passkeyEnv(t, envOpts{AccessTokenTTL: time.Minute})
	u := e.createUser("dana", "dana-password", users.RoleUser)
	p := e.signIn("dana", "dana-password")
	a := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(u.ID)})
	cred, _ := e.registerPasskey(t, p.Token, &a, "key")
	r, _, _ := e.passkeyLogin(t, "", &a, cred)
	if r.Status != 201 || toPair(t, r).Refresh == "" {
		t.Fatalf("passkey sign-in with ACCESS_TOKEN_TTL: %d %s", r.Status, r.Body)
	}
	wantAssurance(t, e.mustRefresh(toPair(t, r).Refresh).Session, 2, "hwk", "mfa")
}

// Without WEBAUTHN_RP_ID the passkey routes are not there.
func TestPasskeyRoutesNeedConfiguration(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.createUser("erin", "erin-password", users.RoleUser)
	tok, _ := e.login("erin", "erin-password")
	wantProblem(t, e.do("POST", "/v1/auth/passkey/begin", "", map[string]any{}), 404, "not_found")
	wantProblem(t, e.do("GET", "/v1/me/passkeys", tok, nil), 404, "not_found")
}

// Refused assertions count against the address's budget of failures
// (LOGIN_MAX_FAILURES_PER_IP a window, shared with failed refreshes): past
// it the address gets 429, even with a good passkey; another address does
// not.
func TestPasskeyRefusalsAreLimitedPerAddress(t *testing.T) {
	e, _ := passkeyEnv(t, envOpts{TrustedProxies: behindProxy, MaxPerIP: 3})
	u := e.createUser("fay", "fay-password", users.RoleUser)
	tok, _ := e.login("fay", "fay-password")
	a := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(u.ID)})
	cred, _ := e.registerPasskey(t, tok, &a, "key")
	finish := func(ip string, id string, asn []byte) resp {
		return e.do("POST", "/v1/auth/passkey/finish", "", map[string]any{"challenge_id": id, "credential": json.RawMessage(asn)},
			"X-Forwarded-For", ip)
	}
	for range 3 {
		wantProblem(t, finish("198.51.100.7", "forged", []byte(`{"id":"AAAA"}`)), 401, "unauthorized")
	}
	id, opts := ceremonyOf(t, e.do("POST", "/v1/auth/passkey/begin", "", map[string]any{}))
	parsed, _ := virtualwebauthn.ParseAssertionOptions(opts)
	asn := []byte(virtualwebauthn.CreateAssertionResponse(webauthnRP, a, *cred, *parsed))
	r := finish("198.51.100.7", id, asn)
	wantProblem(t, r, 429, "too_many_attempts")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	if r := finish("203.0.113.9", id, asn); r.Status != 201 {
		t.Fatalf("the same assertion from another address: %d %s", r.Status, r.Body)
	}
}
