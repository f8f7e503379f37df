package app_test

// Passkeys in the console in headless Chromium, with the DevTools virtual
// authenticator (a platform authenticator that holds discoverable
// credentials and verifies its user): sign in with a password, add a named
// passkey, sign out, sign in with the passkey without typing a name (a
// session at aal 2: administration under ADMIN_REQUIRES_AAL2 opens at
// once), confirm it's you with the passkey when the sign-in has grown old,
// remove it, and see it refused afterwards; and, in a browser whose
// PublicKeyCredential lacks its JSON methods, add one and sign in with it
// through the script's own base64url. What only a browser shows: that
// passkeys.js loads under the page's policy and runs the WebAuthn calls,
// that the passkey parts stay hidden until it does, and how the pages look.
//
// WebAuthn needs a secure context: http://localhost is one, so the console
// is served on a loopback port and opened as http://localhost:port, with
// WEBAUTHN_RP_ID=localhost and that origin.

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/sessiond/sessiond/users"
)

// addAuthenticator gives the tab a virtual authenticator, as a phone's or
// a laptop's built-in one: CTAP2, internal, discoverable credentials, user
// verification that succeeds, presence without a touch.
func (b *tab) addAuthenticator(t *testing.T) webauthn.AuthenticatorID {
	t.Helper()
	return run(t, b, func(ctx context.Context, tg *chromedp.Target) (webauthn.AuthenticatorID, error) {
		if _, err := cdp.Call(ctx, tg, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return "", err
		}
		r, err := cdp.Call(ctx, tg, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
			Options: &webauthn.VirtualAuthenticatorOptions{Protocol: webauthn.AuthenticatorProtocolCtap2,
				Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
				IsUserVerified: true, AutomaticPresenceSimulation: true}})
		return r.AuthenticatorID, err
	})
}

// credentials are the credentials the virtual authenticator holds.
func (b *tab) credentials(t *testing.T, id webauthn.AuthenticatorID) []*webauthn.Credential {
	t.Helper()
	return run(t, b, func(ctx context.Context, tg *chromedp.Target) ([]*webauthn.Credential, error) {
		r, err := cdp.Call(ctx, tg, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: id})
		return r.Credentials, err
	})
}

// passkeyLoad clicks a passkey button and waits for the page passkeys.js
// then opens; if none opens, it fails with what the page says.
func (b *tab) passkeyLoad(t *testing.T, button string) *network.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	r, err := chromedp.RunResponse(ctx, chromedp.Click(button))
	if err != nil || r == nil {
		b.mu.Lock()
		messages := strings.Join(b.messages, "\n")
		b.mu.Unlock()
		t.Fatalf("clicking %s opened no page (%v); the page says:\n%s\nthe browser's console:\n%s", button, err,
			eval[string](t, b, "document.body ? document.body.innerText : ''"), messages)
	}
	return r
}

// passkeyShown waits until passkeys.js has shown a page's passkey part.
func (b *tab) passkeyShown(t *testing.T, part string) {
	t.Helper()
	b.waitTrue(t, fmt.Sprintf(`(() => { const e = document.querySelector('[data-passkey=%q]'); return !!e && !e.hidden && e.offsetHeight > 0 })()`, part))
}

func TestConsolePasskeysInBrowser(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	axe := axeSource(t)
	// The port first: the origin names it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	e, clk := mfaEnv(t, envOpts{Env: map[string]string{"WEBAUTHN_RP_ID": "localhost", "WEBAUTHN_ORIGINS": base,
		"ADMIN_REQUIRES_AAL2": "true", "STEP_UP_MAX_AGE": "10m"}})
	e.serve(ln)
	root := e.createUser("root", "root-password", users.RoleAdmin)
	b := newTab(t, browser, base)
	auth := b.addAuthenticator(t)

	signOut := func(t *testing.T) {
		t.Helper()
		b.wantPage(t, b.load(t, chromedp.Click(".signout button")), 200)
		if loc := b.location(t); loc != base+"/console/login?done=signed-out" {
			t.Fatalf("signed out, the browser is at %s", loc)
		}
	}
	// consoleSession is root's one console session, as the store has it.
	consoleSession := func(t *testing.T) (aal int, amr []string) {
		t.Helper()
		list, err := e.Sessions.List(context.Background(), root.ID)
		if err != nil || len(list) != 1 {
			t.Fatalf("root's sessions: %+v, %v; want one", list, err)
		}
		return list[0].AAL, list[0].AMR
	}

	t.Run("sign in with the password", func(t *testing.T) {
		b.open(t, "/console/login")
		b.passkeyShown(t, "login")
		b.checkLayout(t, "sign-in", axe)
		b.do(t, chromedp.SendKeys("#username", "root"), chromedp.SendKeys("#password", "root-password"))
		// Enter in the password field still submits the password form.
		b.wantPage(t, b.load(t, chromedp.Click(`form[action="/console/login"] button[type="submit"]`)), 200)
		if got := b.text(t, "main h1"); got != "My devices" {
			t.Fatalf("after the password: h1 %q", got)
		}
		if aal, _ := consoleSession(t); aal != 1 {
			t.Fatalf("the password's session at aal %d", aal)
		}
		// Administration asks for a second factor first.
		b.open(t, "/console/admin/users")
		if loc := b.location(t); !strings.HasPrefix(loc, base+"/console/reauth?next=") {
			t.Fatalf("administration at aal 1 went to %s", loc)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("add a passkey", func(t *testing.T) {
		b.open(t, "/console/")
		// My devices points to it.
		b.wantPage(t, b.load(t, chromedp.Click(`main a[href="/console/security#passkeys"]`)), 200)
		b.passkeyShown(t, "register")
		if eval[bool](t, b, `!document.querySelector("[data-passkey-fallback]").hidden`) {
			t.Fatal("the page still says passkeys need another browser")
		}
		if got := b.text(t, "#passkeys-heading + p + p"); got != "None yet." {
			t.Fatalf("before adding: %q", got)
		}
		b.do(t, chromedp.SendKeys("#passkey-name", "Work laptop"))
		b.wantPage(t, b.passkeyLoad(t, `form[data-passkey="register"] button[type="submit"]`), 200)
		if loc := b.location(t); !strings.HasPrefix(loc, base+"/console/security?done=passkey-added&") {
			t.Fatalf("after adding: %s", loc)
		}
		if got := b.text(t, ".status p"); got != "Added the passkey “Work laptop”: you can sign in with it now." {
			t.Fatalf("after adding: status %q", got)
		}
		if got := b.text(t, "li.passkey .passkey-name"); got != "Work laptop" {
			t.Fatalf("listed as %q", got)
		}
		if got := b.text(t, "li.passkey .facts-inline div:last-child dd"); got != "Not used yet" {
			t.Fatalf("last used: %q", got)
		}
		// The authenticator holds it as a discoverable credential of this
		// site, for this account.
		creds := b.credentials(t, auth)
		if len(creds) != 1 || !creds[0].IsResidentCredential || creds[0].RpID != "localhost" || string(creds[0].UserHandle) != root.ID {
			t.Fatalf("the authenticator holds %+v", creds)
		}
		b.checkLayout(t, "security-passkeys", axe)
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("sign in with the passkey", func(t *testing.T) {
		signOut(t)
		b.passkeyShown(t, "login")
		if got := eval[string](t, b, `document.querySelector("#username").value`); got != "" {
			t.Fatalf("the username field holds %q", got)
		}
		// No username: the authenticator offers the site's passkey.
		b.wantPage(t, b.passkeyLoad(t, `[data-passkey="login"] button`), 200)
		if loc := b.location(t); loc != base+"/console/" {
			t.Fatalf("after the passkey: %s", loc)
		}
		if got := b.text(t, ".signout strong"); got != "root" {
			t.Fatalf("signed in as %q", got)
		}
		if aal, amr := consoleSession(t); aal != 2 || !slices.Equal(amr, []string{"hwk", "mfa"}) {
			t.Fatalf("the passkey's session: aal %d amr %v, want 2 [hwk mfa]", aal, amr)
		}
		// Two factors in one: administration opens without a step-up.
		b.open(t, "/console/admin/users")
		if loc := b.location(t); loc != base+"/console/admin/users" {
			t.Fatalf("administration after a passkey sign-in went to %s", loc)
		}
		b.open(t, "/console/security")
		if got := b.text(t, "li.passkey .facts-inline div:last-child dd"); got != "just now" {
			t.Fatalf("last used after signing in: %q", got)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// A browser without PublicKeyCredential's JSON methods (older ones):
	// the script's own base64url does their work, both ways.
	t.Run("without the JSON methods", func(t *testing.T) {
		// (Before the clock moves on: a sign-in after that would get a
		// token from the future.)
		o := newTab(t, browser, base) // another browser, its own authenticator
		o.addAuthenticator(t)
		withoutJSON := func(t *testing.T) {
			t.Helper()
			if !eval[bool](t, o, `typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function"`) {
				t.Fatal("this Chromium has no parseCreationOptionsFromJSON: the fallback is all it tests")
			}
			run(t, o, chromedp.Evaluate[any](`delete PublicKeyCredential.parseCreationOptionsFromJSON;
delete PublicKeyCredential.parseRequestOptionsFromJSON; delete PublicKeyCredential.prototype.toJSON; undefined`))
			if eval[bool](t, o, `"toJSON" in PublicKeyCredential.prototype || "parseRequestOptionsFromJSON" in PublicKeyCredential`) {
				t.Fatal("the JSON methods are still there")
			}
		}
		o.open(t, "/console/login?next=%2Fconsole%2Fsecurity")
		o.do(t, chromedp.SendKeys("#username", "root"), chromedp.SendKeys("#password", "root-password"))
		o.wantPage(t, o.load(t, chromedp.Click(`form[action="/console/login"] button[type="submit"]`)), 200)
		o.passkeyShown(t, "register")
		withoutJSON(t)
		o.do(t, chromedp.SendKeys("#passkey-name", "Old browser"))
		o.wantPage(t, o.passkeyLoad(t, `form[data-passkey="register"] button[type="submit"]`), 200)
		if got := o.text(t, "li.passkey:last-child .passkey-name"); got != "Old browser" {
			t.Fatalf("listed as %q", got)
		}
		o.wantPage(t, o.load(t, chromedp.Click(".signout button")), 200)
		o.passkeyShown(t, "login")
		withoutJSON(t)
		o.wantPage(t, o.passkeyLoad(t, `[data-passkey="login"] button`), 200)
		if loc := o.location(t); loc != base+"/console/" {
			t.Fatalf("after the passkey: %s", loc)
		}
		// At aal 2: administration opens.
		o.open(t, "/console/admin/users")
		if loc := o.location(t); loc != base+"/console/admin/users" {
			t.Fatalf("administration after the passkey went to %s", loc)
		}
		o.checkDocs(t)
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("remove it", func(t *testing.T) {
		// Later, removing asks to confirm it's you: with the passkey.
		clk.Advance(11 * time.Minute)
		b.open(t, "/console/security")
		b.wantPage(t, b.load(t, chromedp.Click(`li.passkey a.button`)), 200)
		if loc := b.location(t); !strings.HasPrefix(loc, base+"/console/reauth?next=") {
			t.Fatalf("removing with an old sign-in went to %s", loc)
		}
		b.passkeyShown(t, "reauth")
		b.checkLayout(t, "reauth", axe)
		r := b.passkeyLoad(t, `[data-passkey="reauth"] button`)
		b.wantPage(t, r, 200)
		if loc := b.location(t); !strings.HasPrefix(loc, base+"/console/security/passkeys/") || !strings.HasSuffix(loc, "/remove") {
			t.Fatalf("after confirming with the passkey: %s, want the page that asked", loc)
		}
		if got := b.text(t, "main .question"); got != "Remove the passkey “Work laptop”?" {
			t.Fatalf("the confirmation asks %q", got)
		}
		b.checkLayout(t, "", axe)
		b.wantPage(t, b.load(t, chromedp.Click(`main form button[type="submit"]`)), 200)
		if got := b.text(t, ".status p"); got != "Removed the passkey “Work laptop”: it no longer signs you in." {
			t.Fatalf("after removing: status %q", got)
		}
		if got := eval[[]string](t, b, `Array.from(document.querySelectorAll("li.passkey .passkey-name")).map(e => e.textContent)`); !slices.Equal(got, []string{"Old browser"}) {
			t.Fatalf("passkeys listed after removing: %q, want the other browser's only", got)
		}

		// The authenticator still holds it, but it signs nobody in: the
		// page says so, and stays.
		signOut(t)
		b.passkeyShown(t, "login")
		b.do(t, chromedp.Click(`[data-passkey="login"] button`))
		b.waitTrue(t, `!!document.querySelector('[data-passkey="login"] [role="alert"] p')`)
		if got := b.text(t, `[data-passkey="login"] [role="alert"] p`); got != "That passkey could not be verified. Try again." {
			t.Fatalf("a removed passkey's sign-in says %q", got)
		}
		if loc := b.location(t); loc != base+"/console/login?done=signed-out" {
			t.Fatalf("after the refusal the browser is at %s", loc)
		}
		if eval[bool](t, b, `document.querySelector('[data-passkey="login"] button').disabled`) {
			t.Fatal("the passkey button stays disabled after a refusal")
		}
		if vs := b.axeRun(t, axe); len(vs) > 0 {
			t.Errorf("the sign-in page with the refusal: axe-core found %v", vs)
		}
	})
	b.checkDocs(t)
}
