package app_test

// Passkeys in the console, through the real app (no browser): the one
// script, served by the binary; the pages that load it and their policy;
// the console's JSON endpoints refusing a request without the session's
// CSRF token, from another site, or not as JSON; and the whole of adding,
// signing in with (no username), stepping up with and removing a passkey,
// with a software authenticator (virtualwebauthn). In Chromium, with its
// virtual authenticator: browser_passkeys_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/sessiond/sessiond/users"
)

// consoleJSON sends a request of passkeys.js: a JSON body, the console's
// cookie when set; headers are key, value pairs (Origin, X-CSRF-Token).
func (e *env) consoleJSON(path, cookie string, body any, headers ...string) resp {
	e.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.consoleSend("POST", path, cookie, bytes.NewReader(b), "application/json", headers...)
}

// wantJSONRefusal fails unless r is a JSON refusal with that status whose
// message says want.
func wantJSONRefusal(t *testing.T, r resp, status int, want string) {
	t.Helper()
	if r.Status != status || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q %s; want a %d JSON refusal", r.Status, r.Header.Get("Content-Type"), r.Body, status)
	}
	wantConsoleHeaders(t, r)
	if msg := str(r.JSON(t)["message"]); !strings.Contains(msg, want) {
		t.Fatalf("the refusal says %q, want %q", msg, want)
	}
}

// beginOf reads a begin's answer: its challenge id and options.
func beginOf(t *testing.T, r resp) (string, string) {
	t.Helper()
	if r.Status != 200 || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("begin: %d %q %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	wantConsoleHeaders(t, r)
	return ceremonyOf(t, r)
}

// redirectOf reads a finish's answer: the page the script is to open.
func redirectOf(t *testing.T, r resp) string {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("finish: %d %s", r.Status, r.Body)
	}
	wantConsoleHeaders(t, r)
	return str(r.JSON(t)["redirect"])
}

func TestConsolePasskeyScriptAndPolicy(t *testing.T) {
	t.Parallel()
	e, _ := passkeyEnv(t, envOpts{})
	e.createUser("alice", "password123", users.RoleUser)

	r := e.console("GET", "/console/static/passkeys.js", "", nil)
	if r.Status != 200 || r.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("GET /console/static/passkeys.js: %d %q", r.Status, r.Header.Get("Content-Type"))
	}
	wantConsoleHeaders(t, r)
	js := string(r.Body)
	for _, want := range []string{"parseCreationOptionsFromJSON", "parseRequestOptionsFromJSON", "toJSON", "X-CSRF-Token", "PublicKeyCredential"} {
		if !strings.Contains(js, want) {
			t.Fatalf("the script lacks %q", want)
		}
	}
	// Nothing from elsewhere, no code from text, no HTML from text.
	for _, banned := range []string{"http://", "https://", "eval(", "new Function", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "import("} {
		if strings.Contains(js, banned) {
			t.Fatalf("the script has %q", banned)
		}
	}

	// The sign-in page loads it, under the policy that allows it, with
	// its passkey part hidden until the script shows it.
	login := e.console("GET", "/console/login?next=%2Fconsole%2Factivity", "", nil)
	wantPage(t, login, 200, scriptTag, `data-passkey="login" data-next="/console/activity" hidden`, "Sign in with a passkey")
	if got := login.Header.Get("Content-Security-Policy"); got != wantScriptCSP {
		t.Fatalf("the sign-in page's policy %q", got)
	}
	cookie := e.consoleSignIn("alice", "password123")
	sec := e.console("GET", "/console/security", cookie, nil)
	wantPage(t, sec, 200, scriptTag, `data-passkey="register" hidden`, `<h2 id="passkeys-heading">Passkeys</h2>`, "None yet.", "data-passkey-fallback")
	// No passkey yet: the step-up page offers none.
	reauth := e.console("GET", "/console/reauth", cookie, nil)
	wantPage(t, reauth, 200, scriptTag)
	if strings.Contains(reauth.text(), "Use a passkey") {
		t.Fatal("the step-up page offers a passkey to an account without one")
	}
	// Every other page allows no script, and loads none.
	for _, path := range []string{"/console/", "/console/activity", "/console/password", "/console/sessions/revoke-all", "/console/nothing-here"} {
		r := e.console("GET", path, cookie, nil)
		if strings.Contains(string(r.Body), "<script") || r.Header.Get("Content-Security-Policy") != wantConsoleCSP {
			t.Fatalf("%s: policy %q, with a script: %v", path, r.Header.Get("Content-Security-Policy"), strings.Contains(string(r.Body), "<script"))
		}
	}
	// My devices suggests a passkey while there is none.
	wantPage(t, e.console("GET", "/console/", cookie, nil), 200, `href="/console/security#passkeys">add a passkey</a>`)

	// Without passkeys configured: no script anywhere, no passkey routes.
	plain := newEnv(t, envOpts{})
	plain.createUser("bob", "password123", users.RoleUser)
	r = plain.console("GET", "/console/login", "", nil)
	wantPage(t, r, 200)
	if strings.Contains(string(r.Body), "passkey") {
		t.Fatal("the sign-in page of a server without passkeys mentions them")
	}
	c := plain.consoleSignIn("bob", "password123")
	for _, path := range []string{"/console/security", "/console/reauth", "/console/"} {
		r := plain.console("GET", path, c, nil)
		wantPage(t, r, 200)
		if strings.Contains(strings.ToLower(string(r.Body)), "passkey") {
			t.Fatalf("%s of a server without passkeys mentions them", path)
		}
	}
	// (A path the console does not have asks to sign in first.)
	wantRedirect(t, plain.consoleJSON("/console/login/passkey/begin", "", map[string]any{}, "Origin", sameOrigin),
		"/console/login")
	if r := plain.consoleJSON("/console/passkeys/register/begin", c, map[string]any{}, "Origin", sameOrigin,
		"X-CSRF-Token", csrfOf(t, plain.console("GET", "/console/security", c, nil))); r.Status != 404 {
		t.Fatalf("adding a passkey on a server without passkeys: %d %s", r.Status, r.Body)
	}
}

func TestConsolePasskeyEndpointsRefuse(t *testing.T) {
	t.Parallel()
	e, clk := passkeyEnv(t, envOpts{})
	e.createUser("alice", "password123", users.RoleUser)

	// Signing in begins without a session, but not from another site, and
	// only as JSON.
	beginOf(t, e.consoleJSON("/console/login/passkey/begin", "", map[string]any{}, "Origin", sameOrigin))
	wantJSONRefusal(t, e.consoleJSON("/console/login/passkey/begin", "", map[string]any{}, "Origin", "https://evil.example"), 403, "another site")
	wantJSONRefusal(t, e.consoleJSON("/console/login/passkey/begin", "", map[string]any{}, "Sec-Fetch-Site", "cross-site"), 403, "another site")
	wantJSONRefusal(t, e.consoleJSON("/console/login/passkey/finish", "", map[string]any{"challenge_id": "x", "credential": map[string]any{}},
		"Origin", "https://evil.example"), 403, "another site")
	form := e.console("POST", "/console/login/passkey/begin", "", url.Values{"x": {"1"}}, "Origin", sameOrigin)
	wantPage(t, form, 400, "Content-Type must be application/json")
	// A made-up assertion: refused, in words, no cookie.
	r := e.consoleJSON("/console/login/passkey/finish", "", map[string]any{"challenge_id": "not-one", "credential": map[string]any{"id": "x"}},
		"Origin", sameOrigin)
	wantJSONRefusal(t, r, 401, "could not be verified")
	if r.setCookie() != nil {
		t.Fatal("a refused passkey sign-in set a cookie")
	}

	cookie := e.consoleSignIn("alice", "password123")
	csrf := csrfOf(t, e.console("GET", "/console/security", cookie, nil))
	for _, path := range []string{"/console/passkeys/register/begin", "/console/reauth/passkey/begin"} {
		// Without the session's CSRF token, or with another, refused.
		wantJSONRefusal(t, e.consoleJSON(path, cookie, map[string]any{}, "Origin", sameOrigin), 403, "expired")
		wantJSONRefusal(t, e.consoleJSON(path, cookie, map[string]any{}, "Origin", sameOrigin, "X-CSRF-Token", "forged"+csrf[6:]), 403, "expired")
		// With it, from another site: refused.
		wantJSONRefusal(t, e.consoleJSON(path, cookie, map[string]any{}, "Origin", "https://evil.example", "X-CSRF-Token", csrf), 403, "another site")
		// Without a cookie: to the sign-in page (which the script opens).
		wantRedirect(t, e.consoleJSON(path, "", map[string]any{}, "Origin", sameOrigin, "X-CSRF-Token", csrf), "/console/login")
	}
	beginOf(t, e.consoleJSON("/console/passkeys/register/begin", cookie, map[string]any{}, "Origin", sameOrigin, "X-CSRF-Token", csrf))
	wantJSONRefusal(t, e.consoleJSON("/console/reauth/passkey/begin", cookie, map[string]any{}, "Origin", sameOrigin, "X-CSRF-Token", csrf),
		400, "no passkey yet")
	wantJSONRefusal(t, e.consoleJSON("/console/passkeys/register/finish", cookie, map[string]any{"challenge_id": "x"}, "Origin", sameOrigin,
		"X-CSRF-Token", csrf), 400, "is required")

	// Adding one needs a fresh session: to the step-up page.
	clk.Advance(11 * time.Minute)
	wantRedirect(t, e.consoleJSON("/console/passkeys/register/begin", cookie, map[string]any{}, "Origin", sameOrigin, "X-CSRF-Token", csrf),
		"/console/reauth?next=%2Fconsole%2Fsecurity")
}

func TestConsolePasskeys(t *testing.T) {
	t.Parallel()
	e, clk := passkeyEnv(t, envOpts{Env: map[string]string{"ADMIN_REQUIRES_AAL2": "true"}})
	root := e.createUser("root", "root-password", users.RoleAdmin)
	cookie := e.consoleSignIn("root", "root-password")
	csrf := csrfOf(t, e.console("GET", "/console/security", cookie, nil))
	hdr := []string{"Origin", sameOrigin, "X-CSRF-Token", csrf}
	a := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(root.ID)})

	// Add one, named.
	id, opts := beginOf(t, e.consoleJSON("/console/passkeys/register/begin", cookie, map[string]any{}, hdr...))
	parsed, err := virtualwebauthn.ParseAttestationOptions(opts)
	if err != nil {
		t.Fatal(err)
	}
	cred := p256Credential(t)
	att := virtualwebauthn.CreateAttestationResponse(webauthnRP, a, cred, *parsed)
	a.AddCredential(cred)
	next := redirectOf(t, e.consoleJSON("/console/passkeys/register/finish", cookie,
		map[string]any{"challenge_id": id, "name": "Work laptop", "credential": json.RawMessage(att)}, hdr...))
	if !strings.HasPrefix(next, "/console/security?done=passkey-added&") {
		t.Fatalf("after adding: to %q", next)
	}
	wantPage(t, e.console("GET", next, cookie, nil), 200, "Added the passkey “Work laptop”: you can sign in with it now.",
		`<h3 class="passkey-name"><bdi>Work laptop</bdi></h3>`, "Not used yet")
	if strings.Contains(e.console("GET", "/console/", cookie, nil).text(), "add a passkey") {
		t.Fatal("my devices suggests a passkey to an account that has one")
	}
	wantPage(t, e.console("GET", "/console/activity", cookie, nil), 200, "<strong>Passkey added</strong>")

	// Sign in with it, no username: a new console session at aal 2.
	id, opts = beginOf(t, e.consoleJSON("/console/login/passkey/begin", "", map[string]any{}, "Origin", sameOrigin))
	if strings.Contains(opts, "allowCredentials") {
		t.Fatalf("a discoverable sign-in names credentials: %s", opts)
	}
	req, err := virtualwebauthn.ParseAssertionOptions(opts)
	if err != nil {
		t.Fatal(err)
	}
	asn := virtualwebauthn.CreateAssertionResponse(webauthnRP, a, a.Credentials[0], *req)
	r := e.consoleJSON("/console/login/passkey/finish", "", map[string]any{"challenge_id": id, "credential": json.RawMessage(asn),
		"next": "/console/admin/users"}, "Origin", sameOrigin, "User-Agent", "Firefox/140")
	if got := redirectOf(t, r); got != "/console/admin/users" {
		t.Fatalf("after the passkey sign-in: to %q", got)
	}
	c := r.setCookie()
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/console" {
		t.Fatalf("the passkey sign-in's cookie: %+v", c)
	}
	claims, err := e.Tokens.Verify(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	list, err := e.Sessions.List(context.Background(), root.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.ID == claims.SessionID && (s.AAL != 2 || !slices.Equal(s.AMR, []string{"hwk", "mfa"}) || s.DeviceName != "Web console") {
			t.Fatalf("the passkey's console session: aal %d amr %v device %q", s.AAL, s.AMR, s.DeviceName)
		}
	}
	// Administration needs aal 2: it opens at once.
	wantPage(t, e.console("GET", "/console/admin/users", c.Value, nil), 200, "Accounts")
	// The same assertion again: refused.
	wantJSONRefusal(t, e.consoleJSON("/console/login/passkey/finish", "", map[string]any{"challenge_id": id, "credential": json.RawMessage(asn)},
		"Origin", sameOrigin), 401, "could not be verified")

	// The password session, grown old, steps up with the passkey: now aal
	// 2 and fresh, back where it was going.
	clk.Advance(11 * time.Minute)
	wantRedirect(t, e.console("GET", "/console/admin/users", cookie, nil), "/console/reauth?next=%2Fconsole%2Fadmin%2Fusers")
	wantPage(t, e.console("GET", "/console/reauth?next=%2Fconsole%2Fadmin%2Fusers", cookie, nil), 200,
		`data-passkey="reauth" data-next="/console/admin/users" hidden`, "Use a passkey")
	id, opts = beginOf(t, e.consoleJSON("/console/reauth/passkey/begin", cookie, map[string]any{}, hdr...))
	if req, err = virtualwebauthn.ParseAssertionOptions(opts); err != nil {
		t.Fatal(err)
	}
	asn = virtualwebauthn.CreateAssertionResponse(webauthnRP, a, a.Credentials[0], *req)
	if got := redirectOf(t, e.consoleJSON("/console/reauth/passkey/finish", cookie,
		map[string]any{"challenge_id": id, "credential": json.RawMessage(asn), "next": "/console/admin/users"}, hdr...)); got != "/console/admin/users" {
		t.Fatalf("after the step-up: to %q", got)
	}
	wantPage(t, e.console("GET", "/console/admin/users", cookie, nil), 200, "Accounts")
	sec := e.console("GET", "/console/security", cookie, nil)
	if strings.Contains(sec.text(), "Not used yet") {
		t.Fatal("the security page says a used passkey was not used")
	}

	// Remove it: a confirmation, then gone.
	m := regexpFind(t, sec, `href="(/console/security/passkeys/[A-Za-z0-9_-]+/remove)"`)
	// Its confirmation is a part of Security.
	wantPage(t, e.console("GET", m, cookie, nil), 200, "Remove the passkey “Work laptop”?",
		`<a href="/console/security" aria-current="page">Security</a>`)
	r = e.consolePost(t, cookie, m, nil)
	if r.Status != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/console/security?done=passkey-removed&") {
		t.Fatalf("removing: %d %q %s", r.Status, r.Header.Get("Location"), r.Body)
	}
	wantPage(t, e.console("GET", r.Header.Get("Location"), cookie, nil), 200, "Removed the passkey “Work laptop”: it no longer signs you in.", "None yet.")
	wantPage(t, e.console("GET", m, cookie, nil), 404, "That passkey is not registered")
	// Its sign-in no longer works.
	id, opts = beginOf(t, e.consoleJSON("/console/login/passkey/begin", "", map[string]any{}, "Origin", sameOrigin))
	if req, err = virtualwebauthn.ParseAssertionOptions(opts); err != nil {
		t.Fatal(err)
	}
	asn = virtualwebauthn.CreateAssertionResponse(webauthnRP, a, a.Credentials[0], *req)
	wantJSONRefusal(t, e.consoleJSON("/console/login/passkey/finish", "", map[string]any{"challenge_id": id, "credential": json.RawMessage(asn)},
		"Origin", sameOrigin), 401, "could not be verified")
}

// regexpFind is the first group of the first match of expr in a page.
func regexpFind(t *testing.T, r resp, expr string) string {
	t.Helper()
	m := regexp.MustCompile(expr).FindStringSubmatch(string(r.Body))
	if m == nil {
		t.Fatalf("no %s on the page:\n%s", expr, r.Body)
	}
	return m[1]
}
