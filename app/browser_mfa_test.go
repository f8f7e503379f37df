package app_test

// The console's second factors in headless Chromium: setting up an
// authenticator app from its QR code (drawn by the binary, under the strict
// policy), the code step at sign-in, recovery codes, and the step-up that
// administration (ADMIN_REQUIRES_AAL2) and removing a factor ask for.

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sessiond/sessiond/users"
)

func TestConsoleSecondFactorInBrowser(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	e, clk := mfaEnv(t, envOpts{Env: map[string]string{"ADMIN_REQUIRES_AAL2": "true", "STEP_UP_MAX_AGE": "10m"}})
	base := "http://" + e.listen()
	e.createUser("root", "root-password", users.RoleAdmin)
	b := newTab(t, browser, base)

	signIn := func(t *testing.T) {
		t.Helper()
		b.open(t, "/console/login")
		b.do(t, chromedp.SendKeys("#username", "root"), chromedp.SendKeys("#password", "root-password"))
		b.wantPage(t, b.load(t, chromedp.Click(`form button[type="submit"]`)), 200)
	}
	signOut := func(t *testing.T) {
		t.Helper()
		b.wantPage(t, b.load(t, chromedp.Click(".signout button")), 200)
	}

	// Administration at aal 1 asks for a second factor first.
	signIn(t)
	b.open(t, "/console/admin/users")
	if loc := b.location(t); !strings.HasPrefix(loc, base+"/console/reauth?next=") {
		t.Fatalf("administration at aal 1 went to %s, want the step-up page", loc)
	}
	if got := b.text(t, "main h1"); got != "Confirm it's you" {
		t.Fatalf("step-up page h1 %q", got)
	}
	if !strings.Contains(b.text(t, "main form"), "Security") {
		t.Fatal("the step-up page of an account without a second factor does not say where to set one up")
	}

	// Set up the authenticator app from the QR code.
	var app *authenticator
	var codes []string
	t.Run("enroll", func(t *testing.T) {
		b.open(t, "/console/security")
		if !strings.Contains(b.text(t, "#totp-heading + p"), "Off.") {
			t.Fatalf("security page before enrolling: %q", b.text(t, "#totp-heading + p"))
		}
		b.wantPage(t, b.load(t, chromedp.Click(`form[action="/console/security/totp"] button`)), 200)
		// The QR code loads from the console's own origin under its policy.
		b.waitTrue(t, `(() => { const i = document.querySelector("img.qr"); return i && i.complete && i.naturalWidth >= 200 })()`)
		secret := b.text(t, "#totp-secret")
		if len(secret) < 16 {
			t.Fatalf("secret shown as %q", secret)
		}
		app = &authenticator{secret: secret, clk: clk}
		b.checkLayout(t, "security-setup", axeSource(t))
		b.do(t, chromedp.SendKeys("#code", app.next(t)))
		b.wantPage(t, b.load(t, chromedp.Click(`form[action="/console/security/totp/confirm"] button`)), 200)
		codes = eval[[]string](t, b, `Array.from(document.querySelectorAll("ul.codes code")).map(c => c.textContent)`)
		if len(codes) != 10 {
			t.Fatalf("%d recovery codes shown, want 10", len(codes))
		}
		b.open(t, "/console/security")
		b.checkLayout(t, "security", axeSource(t))
		if got := b.text(t, "#totp-heading + p"); !strings.Contains(got, "On.") || !strings.Contains(got, "10 recovery codes left") {
			t.Fatalf("security page after enrolling: %q", got)
		}
	})
	if app == nil {
		t.FailNow()
	}

	// Signing in now asks for the code, and then administration is open.
	t.Run("sign in with a code", func(t *testing.T) {
		signOut(t)
		signIn(t)
		if got := b.text(t, "main h1"); got != "Enter your code" {
			t.Fatalf("after the password: h1 %q, want the code step", got)
		}
		// A POST's answer: checked where it is, not reloaded (which would
		// post the password again).
		if vs := b.axeRun(t, axeSource(t)); len(vs) > 0 {
			t.Errorf("the code step: axe-core found %v", vs)
		}
		b.do(t, chromedp.SendKeys("#code", app.next(t)))
		b.wantPage(t, b.load(t, chromedp.Click(`form button[type="submit"]`)), 200)
		if got := b.text(t, "main h1"); got != "My devices" {
			t.Fatalf("after the code: h1 %q: %s", got, eval[string](t, b, "document.body.innerText"))
		}
		b.open(t, "/console/admin/users")
		if loc := b.location(t); loc != base+"/console/admin/users" {
			t.Fatalf("administration at aal 2 went to %s", loc)
		}
	})

	// New recovery codes replace the old ones; one of them signs in.
	t.Run("recovery codes", func(t *testing.T) {
		b.open(t, "/console/security")
		b.wantPage(t, b.load(t, chromedp.Click(`form[action="/console/security/recovery-codes"] button`)), 200)
		fresh := eval[[]string](t, b, `Array.from(document.querySelectorAll("ul.codes code")).map(c => c.textContent)`)
		if len(fresh) != 10 || fresh[0] == codes[0] {
			t.Fatalf("new recovery codes %v (old %v)", fresh, codes)
		}
		signOut(t)
		signIn(t)
		b.do(t, chromedp.Click("details summary"), chromedp.SendKeys("#recovery_code", codes[0]))
		b.wantPage(t, b.load(t, chromedp.Click(`form button[type="submit"]`)), 422)
		if got := b.text(t, ".alert p"); !strings.Contains(got, "not right") {
			t.Fatalf("an old recovery code: %q", got)
		}
		b.do(t, chromedp.Click("details summary"), chromedp.SendKeys("#recovery_code", fresh[1]))
		b.wantPage(t, b.load(t, chromedp.Click(`form button[type="submit"]`)), 200)
		if got := b.text(t, "main h1"); got != "My devices" {
			t.Fatalf("after a new recovery code: h1 %q", got)
		}
	})

	// Removing the factor later needs a fresh session: the console asks,
	// then goes back to where it was.
	t.Run("step up to remove", func(t *testing.T) {
		clk.Advance(11 * time.Minute)
		b.open(t, "/console/security/totp/remove")
		if loc := b.location(t); !strings.HasPrefix(loc, base+"/console/reauth?next=") {
			t.Fatalf("removing with an old sign-in went to %s, want the step-up page", loc)
		}
		b.checkLayout(t, "", axeSource(t)) // its screenshots are the passkey test's
		b.do(t, chromedp.SendKeys("#password", "root-password"), chromedp.SendKeys("#code", app.next(t)))
		b.wantPage(t, b.load(t, chromedp.Click(`form[action="/console/reauth"] button`)), 200)
		if loc := b.location(t); loc != base+"/console/security/totp/remove" {
			t.Fatalf("after the step-up: %s, want the page that asked", loc)
		}
		b.wantPage(t, b.load(t, chromedp.Click(`form[action="/console/security/totp/remove"] button`)), 200)
		if got := b.text(t, ".status p"); !strings.Contains(got, "authenticator app was removed") {
			t.Fatalf("after removing: status %q", got)
		}
	})
	b.checkDocs(t)
}
