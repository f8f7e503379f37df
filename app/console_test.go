package app_test

// The web console under /console/, through the real Fiber app over real
// Redis: what a browser sends (form posts, the cookie, Origin) and what it
// gets back (HTML pages, redirects, headers). Console pages are HTML, not the
// API: they are not in app/openapi.json, so these requests go through
// e.console, not e.do (which checks every response against the document).

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/admin"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/users"
)

const (
	consoleCookie = "sessiond_console"
	// wantConsoleCSP is the console's policy, exactly.
	wantConsoleCSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; " +
		"frame-ancestors 'none'; base-uri 'none'"
	// wantScriptCSP is the policy of a page that carries passkeys.js: script
	// files and fetch of the console's own origin, still nothing inline and
	// no eval.
	wantScriptCSP = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; " +
		"img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	// scriptTag is how a page loads passkeys.js: the one script a page may
	// have.
	scriptTag = `<script src="/console/static/passkeys.js" defer></script>`
	// sameOrigin is the Origin of a form the console itself served:
	// httptest requests are for http://example.com.
	sameOrigin = "http://example.com"
)

// console sends a request to the console as a browser would, through the
// real app, and does not follow redirects. cookie, when set, is the
// console's cookie; form, when not nil, is sent form-encoded. headers are
// key, value pairs.
func (e *env) console(method, path, cookie string, form url.Values, headers ...string) resp {
	e.t.Helper()
	if form == nil {
		return e.consoleSend(method, path, cookie, nil, "", headers...)
	}
	return e.consoleSend(method, path, cookie, strings.NewReader(form.Encode()), "application/x-www-form-urlencoded", headers...)
}

// consoleSend sends a console request with a body of contentType (none
// when body is nil), the console's cookie when set, and headers as key,
// value pairs.
func (e *env) consoleSend(method, path, cookie string, body io.Reader, contentType string, headers ...string) resp {
	e.t.Helper()
	req := httptest.NewRequest(method, path, body)
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: consoleCookie, Value: cookie})
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.App.Test(req, -1)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// text is the body as a string with HTML entities decoded, for matching
// what a person reads.
func (r resp) text() string { return html.UnescapeString(string(r.Body)) }

// setCookie is the console cookie a response sets, or nil.
func (r resp) setCookie() *http.Cookie {
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == consoleCookie {
			return c
		}
	}
	return nil
}

// wantRedirect fails unless r is a 303 to location.
func wantRedirect(t *testing.T, r resp, location string) {
	t.Helper()
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != location {
		t.Fatalf("got %d Location %q; want 303 to %q\n%s", r.Status, r.Header.Get("Location"), location, r.Body)
	}
}

// wantPage fails unless r is an HTML page with that status, the console's
// headers and every text in want.
func wantPage(t *testing.T, r resp, status int, want ...string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d\n%s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q, want text/html; charset=utf-8", ct)
	}
	wantConsoleHeaders(t, r)
	body := r.text()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Fatalf("the page lacks %q:\n%s", w, body)
		}
	}
	// The policy allows no inline script and no inline style: the pages use
	// none, and no script but passkeys.js, loaded once.
	page := string(r.Body)
	if n := strings.Count(page, scriptTag); n > 1 {
		t.Fatalf("the page loads passkeys.js %d times:\n%s", n, page)
	}
	page = strings.Replace(page, scriptTag, "", 1)
	for _, banned := range []string{"<script", "<style", " style=", "javascript:", " on"} {
		if banned == " on" {
			if regexp.MustCompile(`\son[a-z]+=`).MatchString(page) {
				t.Fatalf("the page has an inline event handler:\n%s", r.Body)
			}
			continue
		}
		if strings.Contains(strings.ToLower(page), banned) {
			t.Fatalf("the page has %q:\n%s", banned, r.Body)
		}
	}
}

// wantConsoleHeaders fails unless r carries the console's policy and the
// headers every response carries. The policy is the one without script,
// except on a page that loads passkeys.js: that one's allows script files of
// the console's own origin, and nothing inline.
func wantConsoleHeaders(t *testing.T, r resp) {
	t.Helper()
	csp, want := r.Header.Get("Content-Security-Policy"), wantConsoleCSP
	if strings.Contains(string(r.Body), scriptTag) {
		want = wantScriptCSP
	}
	if csp != want {
		t.Fatalf("Content-Security-Policy %q, want %q", csp, want)
	}
	if strings.Contains(csp, "unsafe-") || strings.Contains(csp, "'strict-dynamic'") || strings.Contains(csp, "data:") ||
		strings.Contains(csp, "*") || (want == wantConsoleCSP && strings.Contains(csp, "script-src")) {
		t.Fatalf("Content-Security-Policy %q allows script or inline code", csp)
	}
	if n := len(r.Header.Values("Content-Security-Policy")); n != 1 {
		t.Fatalf("%d Content-Security-Policy headers, want 1", n)
	}
	for h, want := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
		"X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"} {
		if got := r.Header.Get(h); got != want {
			t.Fatalf("%s %q, want %q", h, got, want)
		}
	}
	if r.Header.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id")
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

// csrfOf is the CSRF token of the forms of a page.
func csrfOf(t *testing.T, r resp) string {
	t.Helper()
	m := csrfField.FindSubmatch(r.Body)
	if m == nil {
		t.Fatalf("no csrf field on the page:\n%s", r.Body)
	}
	return string(m[1])
}

// consoleSignIn signs in through the console and returns the cookie's token.
func (e *env) consoleSignIn(name, password string) string {
	e.t.Helper()
	r := e.console("POST", "/console/login", "", url.Values{"username": {name}, "password": {password}},
		"Origin", sameOrigin, "User-Agent", "Firefox/140")
	if r.Status != http.StatusSeeOther || r.setCookie() == nil {
		e.t.Fatalf("console sign-in %s: %d %s", name, r.Status, r.Body)
	}
	return r.setCookie().Value
}

// consolePost opens a confirmation page and submits its form, as a person
// clicking through it does.
func (e *env) consolePost(t *testing.T, cookie, path string, form url.Values) resp {
	t.Helper()
	page := e.console("GET", path, cookie, nil)
	wantPage(t, page, 200, `method="post"`)
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", csrfOf(t, page))
	return e.console("POST", path, cookie, form, "Origin", sameOrigin)
}

// mustQuery is the query of a URL.
func mustQuery(t *testing.T, u string) url.Values {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Query()
}

// meStatus is the status of GET /v1/me with a bearer token.
func (e *env) meStatus(tok string) int {
	e.t.Helper()
	return e.do("GET", "/v1/me", tok, nil).Status
}

func TestConsoleSignIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxFailures: 3})
	e.createUser("alice", "password123", users.RoleUser)

	form := e.console("GET", "/console/login", "", nil)
	wantPage(t, form, 200, `<label for="username">`, `<label for="password">`, `autocomplete="username"`,
		`autocomplete="current-password"`, `action="/console/login"`, `href="/console/static/console.css"`,
		`class="skip" href="#main"`, `role="status"`, "<main", "<h1>")

	// Signing in sets the cookie and goes to my devices.
	r := e.console("POST", "/console/login", "", url.Values{"username": {"Alice"}, "password": {"password123"}},
		"Origin", sameOrigin)
	wantRedirect(t, r, "/console/")
	wantConsoleHeaders(t, r)
	c := r.setCookie()
	if c == nil {
		t.Fatalf("no %s cookie: %v", consoleCookie, r.Header.Values("Set-Cookie"))
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/console" || c.Secure {
		t.Fatalf("cookie %q: want HttpOnly, SameSite=Strict, Path=/console, not Secure over plain HTTP", r.Header.Get("Set-Cookie"))
	}
	// The cookie holds a session token like any other, and lasts as long as
	// its session can.
	claims, err := e.Tokens.Verify(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	list, err := e.Sessions.List(context.Background(), claims.UserID)
	if err != nil || len(list) != 1 || list[0].DeviceName != "Web console" || list[0].Platform != "web" {
		t.Fatalf("sessions after a console sign-in: %+v, %v", list, err)
	}
	if left := time.Until(list[0].ExpiresAt); c.MaxAge < int(left.Seconds())-5 || c.MaxAge > int(left.Seconds())+1 {
		t.Fatalf("cookie Max-Age %d, want the %v until the session's end", c.MaxAge, left.Round(time.Second))
	}

	// A wrong password and an unknown name get the same page, and no cookie.
	for _, f := range []url.Values{
		{"username": {"alice"}, "password": {"wrong-password"}},
		{"username": {"nobody"}, "password": {"password123"}},
	} {
		r := e.console("POST", "/console/login", "", f, "Origin", sameOrigin)
		wantPage(t, r, 422, "The username or password is wrong.", `role="alert"`, `aria-invalid="true"`)
		if r.setCookie() != nil || len(r.Header.Values("Set-Cookie")) != 0 {
			t.Fatalf("a failed sign-in set a cookie: %v", r.Header.Values("Set-Cookie"))
		}
		if f.Get("username") == "alice" && !strings.Contains(r.text(), `value="alice"`) {
			t.Fatal("the form does not keep the username typed")
		}
	}
	wantPage(t, e.console("POST", "/console/login", "", url.Values{"username": {"alice"}}, "Origin", sameOrigin),
		422, "Enter your username and password.")

	// Past the limit: how long to wait.
	for range 3 {
		r = e.console("POST", "/console/login", "", url.Values{"username": {"alice"}, "password": {"wrong-again"}}, "Origin", sameOrigin)
		if r.Status != 422 {
			break
		}
	}
	// In words, rounded up: the 15-minute window's wait is not "897 seconds".
	wantPage(t, r, 429, "Too many attempts. Try again in 15 minutes.")
	if r.Header.Get("Retry-After") == "" {
		t.Fatalf("429 without how long to wait: Retry-After %q\n%s", r.Header.Get("Retry-After"), r.Body)
	}

	// A disabled account is told so.
	bob := e.createUser("bob", "password123", users.RoleUser)
	yes := true
	accounts := admin.Admin{Users: e.Users, Sessions: e.Sessions}
	if _, _, err := accounts.Change(context.Background(), bob.ID, users.Change{Disabled: &yes}, audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	wantPage(t, e.console("POST", "/console/login", "", url.Values{"username": {"bob"}, "password": {"password123"}}, "Origin", sameOrigin),
		403, "This account is disabled.")

	// A sign-in form posted from another site is refused.
	r = e.console("POST", "/console/login", "", url.Values{"username": {"alice"}, "password": {"password123"}},
		"Origin", "http://evil.example")
	wantPage(t, r, 403, "another site")
	if r.setCookie() != nil {
		t.Fatal("a cross-site sign-in set a cookie")
	}
}

// X-Forwarded-Host and X-Forwarded-Proto are believed from TRUSTED_PROXIES
// only, as X-Forwarded-For is: a direct client naming another site passes no
// Origin check and gets no Secure cookie over plain HTTP, while behind a
// trusted proxy that terminated TLS the console sees the public origin.
func TestConsoleForwardedHeadersOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	direct := newEnv(t, envOpts{})
	direct.createUser("alice", "password123", users.RoleUser)
	form := url.Values{"username": {"alice"}, "password": {"password123"}}

	r := direct.console("POST", "/console/login", "", form,
		"X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https", "Origin", "https://evil.example")
	wantPage(t, r, 403, "another site")
	if r.setCookie() != nil {
		t.Fatal("a cross-site sign-in with forged forwarded headers set a cookie")
	}
	wantPage(t, direct.console("POST", "/console/login", "", form, "X-Forwarded-Proto", "https", "Origin", "https://example.com"),
		403, "another site")
	r = direct.console("POST", "/console/login", "", form, "X-Forwarded-Proto", "https", "Origin", sameOrigin)
	wantRedirect(t, r, "/console/")
	if c := r.setCookie(); c == nil || c.Secure {
		t.Fatalf("over plain HTTP with a forged X-Forwarded-Proto: cookie %q, want one, not Secure", r.Header.Get("Set-Cookie"))
	}

	// Behind a trusted proxy that terminated TLS for console.example.
	proxied := newEnv(t, envOpts{Prefix: direct.Prefix, TrustedProxies: behindProxy})
	behind := []string{"X-Forwarded-Host", "console.example", "X-Forwarded-Proto", "https"}
	r = proxied.console("POST", "/console/login", "", form, append(behind, "Origin", "https://console.example")...)
	wantRedirect(t, r, "/console/")
	c := r.setCookie()
	if c == nil || !c.Secure {
		t.Fatalf("over HTTPS behind a trusted proxy: cookie %q, want Secure", r.Header.Get("Set-Cookie"))
	}
	wantPage(t, proxied.console("POST", "/console/login", "", form, append(behind, "Origin", sameOrigin)...), 403, "another site")
	page := proxied.console("GET", "/console/", c.Value, nil, behind...)
	wantPage(t, page, 200, "alice")
	r = proxied.console("POST", "/console/logout", c.Value, url.Values{"csrf": {csrfOf(t, page)}},
		append(behind, "Origin", "https://console.example")...)
	wantRedirect(t, r, "/console/login?done=signed-out")
	if c := r.setCookie(); c == nil || c.Value != "" || !c.Secure {
		t.Fatalf("signing out behind a trusted proxy: cookie %q, want cleared and Secure", r.Header.Get("Set-Cookie"))
	}
}

// The API reads its token from Authorization: Bearer and nowhere else, the
// console's cookie included; the console reads only its cookie.
func TestConsoleCookieIsNotAnAPIToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", users.RoleUser)
	cookie := e.consoleSignIn("alice", "password123")
	for _, path := range []string{"/v1/me", "/v1/sessions", "/v1/auth/verify"} {
		wantProblem(t, e.do("GET", path, "", nil, "Cookie", consoleCookie+"="+cookie), 401, "unauthorized")
	}
	// A bearer token is not a console sign-in.
	tok, _ := e.login("alice", "password123")
	r := e.console("GET", "/console/", "", nil, "Authorization", "Bearer "+tok)
	wantRedirect(t, r, "/console/login")
	// The console's page works with the cookie.
	wantPage(t, e.console("GET", "/console/", cookie, nil), 200, "alice")
	// Outside the console, responses keep the API's policy.
	if csp := e.do("GET", "/healthz", "", nil).Header.Get("Content-Security-Policy"); csp != "default-src 'none'; frame-ancestors 'none'" {
		t.Fatalf("/healthz Content-Security-Policy %q", csp)
	}
}

func TestConsoleDevices(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	alice := e.createUser("alice", "password123", users.RoleUser)
	phone, phoneSID := e.login("alice", "password123", "User-Agent", "MyApp/3.2 (iPhone)")
	tablet, _ := e.login("alice", "password123")
	cookie := e.consoleSignIn("alice", "password123")
	claims, _ := e.Tokens.Verify(cookie)

	// The page lists every session and marks this one.
	r := e.console("GET", "/console/", cookie, nil)
	wantPage(t, r, 200, "<h1>My devices</h1>", "test device", "App on iPhone", "<code>MyApp/3.2 (iPhone)</code>",
		"Web console", "<code>Firefox/140</code>", "This device", "Active now", "Recent security activity", "Signed in",
		"Signed in as <strong><bdi>alice</bdi></strong>", "Sign out of console",
		`href="/console/sessions/revoke-others"`, `href="/console/sessions/revoke-all"`)
	if strings.Count(r.text(), "This device") != 1 {
		t.Fatalf("want exactly one session marked as this device:\n%s", r.Body)
	}
	if !regexp.MustCompile(`(?s)<li class="device current">.*?<h3 class="device-name"><bdi>Web console`).MatchString(r.text()) {
		t.Fatalf("the current card is not the console's session:\n%s", r.Body)
	}
	// Times read "2 hours ago", with the exact time for machines and a tooltip.
	if !regexp.MustCompile(`<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" title="\d+ \w+ \d{4}, \d\d:\d\d UTC">Active now</time>`).MatchString(r.text()) {
		t.Fatalf("no relative time with its exact time:\n%s", r.Body)
	}
	if strings.Contains(r.text(), "Administration") {
		t.Fatal("a user is shown the administration link")
	}
	// The page's CSRF token is the session's: base64url(SHA-256(context + token)).
	sum := sha256.Sum256([]byte("sessiond console csrf\x00" + cookie))
	if got, want := csrfOf(t, r), base64.RawURLEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("csrf %q, want %q", got, want)
	}

	// Revoking the phone: a confirmation page first, then the POST.
	path := "/console/sessions/" + phoneSID + "/revoke"
	confirm := e.console("GET", path, cookie, nil)
	wantPage(t, confirm, 200, "Sign out test device?", `action="`+path+`"`,
		`<button type="submit" class="danger"><bdi>Sign out test device</bdi></button>`, `href="/console/">Cancel</a>`)
	if e.meStatus(phone) != 200 {
		t.Fatal("the confirmation page revoked the session")
	}
	// Without a CSRF token, with a wrong one, or from another site: refused,
	// and nothing revoked.
	for _, c := range []struct {
		form   url.Values
		origin string
	}{
		{url.Values{}, sameOrigin},
		{url.Values{"csrf": {"forged"}}, sameOrigin},
		{url.Values{"csrf": {base64.RawURLEncoding.EncodeToString(make([]byte, 32))}}, ""},
		{url.Values{"csrf": {csrfOf(t, confirm)}}, "http://evil.example"},
		{url.Values{"csrf": {csrfOf(t, confirm)}}, "null"},
	} {
		r := e.console("POST", path, cookie, c.form, "Origin", c.origin)
		wantPage(t, r, 403)
		if e.meStatus(phone) != 200 {
			t.Fatalf("a refused POST (%v, Origin %q) revoked the session", c.form, c.origin)
		}
	}
	// The CSRF token is read from the form, not from the query string.
	wantPage(t, e.console("POST", path+"?csrf="+url.QueryEscape(csrfOf(t, confirm)), cookie, url.Values{}), 403)
	// A browser that says the request is cross-site is refused even without Origin.
	wantPage(t, e.console("POST", path, cookie, url.Values{"csrf": {csrfOf(t, confirm)}}, "Sec-Fetch-Site", "cross-site"), 403)
	if e.meStatus(phone) != 200 {
		t.Fatal("a refused POST revoked the session")
	}

	r = e.console("POST", path, cookie, url.Values{"csrf": {csrfOf(t, confirm)}}, "Origin", sameOrigin)
	done := r.Header.Get("Location")
	if r.Status != 303 || !strings.HasPrefix(done, "/console/?done=revoked&") {
		t.Fatalf("revoking: %d to %q", r.Status, done)
	}
	if e.meStatus(phone) != 401 {
		t.Fatal("the revoked device's token still works")
	}
	// The message names the device.
	r = e.console("GET", done, cookie, nil)
	wantPage(t, r, 200, `<div class="status" role="status" aria-live="polite"><p>Signed out test device.</p>`)
	// A name the console did not sign for this session is not shown.
	for _, q := range []string{"?done=revoked&what=Call+555-0100", "?done=revoked&what=Call+555-0100&sig=" + mustQuery(t, done).Get("sig")} {
		r := e.console("GET", "/console/"+q, cookie, nil)
		wantPage(t, r, 200, "<p>The device was signed out.</p>")
		if strings.Contains(r.text(), "555") {
			t.Fatalf("the page shows a name from a link: %s", r.Body)
		}
	}
	if other := e.consoleSignIn("alice", "password123"); true {
		r := e.console("GET", done, other, nil)
		wantPage(t, r, 200, "<p>The device was signed out.</p>")
		e.console("POST", "/console/logout", other, url.Values{"csrf": {csrfOf(t, r)}}, "Origin", sameOrigin)
	}
	if strings.Contains(r.text(), path) {
		t.Fatalf("the revoked device is still listed:\n%s", r.Body)
	}
	// Its activity shows the revocation.
	wantPage(t, r, 200, "Session signed out")
	// Someone else's session, an unknown one or a malformed id: not found.
	bob := e.createUser("bob", "password123", users.RoleUser)
	_, bobSID := e.login("bob", "password123")
	for _, id := range []string{bobSID, phoneSID, "not-an-id"} {
		wantPage(t, e.console("GET", "/console/sessions/"+id+"/revoke", cookie, nil), 404)
		wantPage(t, e.console("POST", "/console/sessions/"+id+"/revoke", cookie, url.Values{"csrf": {csrfOf(t, confirm)}}), 404)
	}
	if list, _ := e.Sessions.List(context.Background(), bob.ID); len(list) != 1 {
		t.Fatalf("bob's sessions: %d, want 1", len(list))
	}

	// Signing out the others keeps this one.
	r = e.consolePost(t, cookie, "/console/sessions/revoke-others", nil)
	wantRedirect(t, r, "/console/?done=others&n=1")
	if e.meStatus(tablet) != 401 {
		t.Fatal("the other device's token still works")
	}
	wantPage(t, e.console("GET", "/console/?done=others&n=1", cookie, nil), 200, "1 session ended")

	// Signing out everywhere ends the console's session too.
	second := e.consoleSignIn("alice", "password123")
	r = e.consolePost(t, cookie, "/console/sessions/revoke-all", nil)
	wantRedirect(t, r, "/console/login?done=everywhere")
	if c := r.setCookie(); c == nil || c.Value != "" || c.Path != "/console" || !c.Expires.Before(time.Now()) {
		t.Fatalf("signing out everywhere does not clear the cookie: %v", r.Header.Values("Set-Cookie"))
	}
	for _, tok := range []string{cookie, second} {
		if e.meStatus(tok) != 401 {
			t.Fatal("a console session outlived signing out everywhere")
		}
	}
	// The dead cookie sends the browser to sign in, saying why, and is cleared.
	r = e.console("GET", "/console/", cookie, nil)
	wantRedirect(t, r, "/console/login?done=ended-everywhere")
	if c := r.setCookie(); c == nil || c.Value != "" {
		t.Fatal("a dead session's cookie is not cleared")
	}
	wantPage(t, e.console("GET", "/console/login?done=ended-everywhere", "", nil), 200, "You signed out everywhere from another device.")
	wantPage(t, e.console("GET", "/console/login?done=ended", "", nil), 200, "Your session has ended.")
	if _, err := e.Sessions.Use(context.Background(), alice.ID, claims.SessionID, ""); err == nil {
		t.Fatal("the console session is live")
	}
}

func TestConsoleSignOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", users.RoleUser)
	cookie := e.consoleSignIn("alice", "password123")
	page := e.console("GET", "/console/", cookie, nil)
	wantPage(t, page, 200, `action="/console/logout"`)

	// Without the CSRF token: refused, still signed in.
	wantPage(t, e.console("POST", "/console/logout", cookie, url.Values{}), 403)
	wantPage(t, e.console("GET", "/console/", cookie, nil), 200)

	r := e.console("POST", "/console/logout", cookie, url.Values{"csrf": {csrfOf(t, page)}}, "Origin", sameOrigin)
	wantRedirect(t, r, "/console/login?done=signed-out")
	if c := r.setCookie(); c == nil || c.Value != "" || !c.Expires.Before(time.Now()) || !c.HttpOnly {
		t.Fatalf("sign-out does not clear the cookie: %v", r.Header.Values("Set-Cookie"))
	}
	if e.meStatus(cookie) != 401 {
		t.Fatal("the signed-out session's token still works")
	}
	// (The token is replayed here; a browser's cookie was cleared. The
	// session was signed out by its own account, so "from another device".)
	wantRedirect(t, e.console("GET", "/console/", cookie, nil), "/console/login?done=ended-elsewhere")

	// No cookie, or one that is not a token: to the sign-in page.
	wantRedirect(t, e.console("GET", "/console/", "", nil), "/console/login")
	wantRedirect(t, e.console("POST", "/console/sessions/revoke-all", "", url.Values{}), "/console/login")
	wantRedirect(t, e.console("GET", "/console/", "not.a.token", nil), "/console/login?done=ended")
}

func TestConsoleAdminNeedsTheAdminRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	root, _ := e.admin()
	e.createUser("alice", "password123", users.RoleUser)
	cookie := e.consoleSignIn("alice", "password123")
	page := e.console("GET", "/console/", cookie, nil)
	for _, c := range []struct{ method, path string }{
		{"GET", "/console/admin/users"},
		{"GET", "/console/admin/users?username=root"},
		{"GET", "/console/admin/users/" + root.ID},
		{"GET", "/console/admin/users/" + root.ID + "/make-user"},
		{"POST", "/console/admin/users/" + root.ID + "/make-user"},
		{"POST", "/console/admin/users/" + root.ID + "/delete"},
		{"POST", "/console/admin/users/" + root.ID + "/force-logout"},
	} {
		var form url.Values
		if c.method == "POST" {
			form = url.Values{"csrf": {csrfOf(t, page)}}
		}
		wantPage(t, e.console(c.method, c.path, cookie, form), 403, "This page is for administrators.")
	}
	if u, _ := e.Users.Get(context.Background(), root.ID); u.Role != users.RoleAdmin {
		t.Fatal("a user changed an admin")
	}
	// Signed out: to sign in, and back, not a 403.
	wantRedirect(t, e.console("GET", "/console/admin/users", "", nil), "/console/login?next=%2Fconsole%2Fadmin%2Fusers")
}

func TestConsoleAdmin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	root, _ := e.admin()
	alice := e.createUser("alice", "password123", users.RoleUser)
	cookie := e.consoleSignIn("root", "root-password")
	userPage := "/console/admin/users/" + alice.ID

	wantPage(t, e.console("GET", "/console/", cookie, nil), 200, `href="/console/admin/users"`, "Administration")

	// Find by the start of the name, case-insensitively.
	var r resp
	for _, q := range []string{"ALICE", "al", "A"} {
		r := e.console("GET", "/console/admin/users?username="+q, cookie, nil)
		wantPage(t, r, 200, "Names starting with “"+q+"”", `<a href="`+userPage+`"><bdi>alice</bdi></a>`, `<label for="username">`)
	}
	wantPage(t, e.console("GET", "/console/admin/users?username=nobody", cookie, nil), 200, "No account’s name starts with “nobody”.")

	// The account's page: the account, its sessions, its events, its actions.
	tok, sid := e.login("alice", "password123")
	r = e.console("GET", userPage, cookie, nil)
	wantPage(t, r, 200, "<h1><bdi>alice</bdi></h1>", "test device", "Account created", "Signed in",
		`href="`+userPage+`/force-logout"`, `href="`+userPage+`/password"`, `href="`+userPage+`/disable"`,
		`href="`+userPage+`/make-admin"`, `href="`+userPage+`/delete"`, `href="`+userPage+`/sessions/`+sid+`/revoke"`)
	wantPage(t, e.console("GET", "/console/admin/users/"+"0d9b7a4c-5e6f-4a1b-8c2d-3e4f5a6b7c8d", cookie, nil), 404)
	wantPage(t, e.console("GET", "/console/admin/users/not-an-id", cookie, nil), 404)

	// End one session.
	r = e.consolePost(t, cookie, userPage+"/sessions/"+sid+"/revoke", nil)
	if loc := r.Header.Get("Location"); r.Status != 303 || !strings.HasPrefix(loc, userPage+"?done=session-ended&") {
		t.Fatalf("ending a session: %d to %q", r.Status, loc)
	} else {
		wantPage(t, e.console("GET", loc, cookie, nil), 200, "Ended the session on test device.")
	}
	if e.meStatus(tok) != 401 {
		t.Fatal("the session the admin ended still works")
	}

	// Force-logout: every session ends.
	tok1, _ := e.login("alice", "password123")
	tok2, _ := e.login("alice", "password123")
	confirm := e.console("GET", userPage+"/force-logout", cookie, nil)
	wantPage(t, confirm, 200, "Sign alice out of every device?", `href="`+userPage+`">Cancel</a>`)
	r = e.console("POST", userPage+"/force-logout", cookie, url.Values{"csrf": {csrfOf(t, confirm)}}, "Origin", sameOrigin)
	wantRedirect(t, r, userPage+"?done=forced&n=2")
	for _, tk := range []string{tok1, tok2} {
		if e.meStatus(tk) != 401 {
			t.Fatal("a session survived the force-logout")
		}
	}
	wantPage(t, e.console("GET", userPage+"?done=forced&n=2", cookie, nil), 200, "Signed out everywhere: 2 sessions ended.")

	// Disable, then enable.
	tok3, _ := e.login("alice", "password123")
	wantRedirect(t, e.consolePost(t, cookie, userPage+"/disable", nil), userPage+"?done=disabled&n=1")
	if e.meStatus(tok3) != 401 || e.canLogin("alice", "password123") {
		t.Fatal("the disabled account still has a session or can sign in")
	}
	wantPage(t, e.console("GET", userPage, cookie, nil), 200, "Disabled", `href="`+userPage+`/enable"`, "Account disabled")
	wantRedirect(t, e.consolePost(t, cookie, userPage+"/enable", nil), userPage+"?done=enabled&n=0")
	if !e.canLogin("alice", "password123") {
		t.Fatal("the enabled account cannot sign in")
	}

	// Make admin, then a regular user again.
	wantRedirect(t, e.consolePost(t, cookie, userPage+"/make-admin", nil), userPage+"?done=made-admin&n=0")
	if u, _ := e.Users.Get(context.Background(), alice.ID); u.Role != users.RoleAdmin {
		t.Fatalf("role %q after make-admin", u.Role)
	}
	wantRedirect(t, e.consolePost(t, cookie, userPage+"/make-user", nil), userPage+"?done=made-user&n=0")
	if u, _ := e.Users.Get(context.Background(), alice.ID); u.Role != users.RoleUser {
		t.Fatalf("role %q after make-user", u.Role)
	}

	// Reset the password: a password that breaks a rule is refused on the form.
	tok4, _ := e.login("alice", "password123")
	confirm = e.console("GET", userPage+"/password", cookie, nil)
	wantPage(t, confirm, 200, `<label for="password">New password</label>`, `autocomplete="new-password"`)
	for _, c := range []struct{ password, msg string }{
		{"short", "The new password must be at least 8 characters."},
		{strings.Repeat("x", 73), "The new password must be at most 72 bytes."},
		{"", "Enter a new password."},
	} {
		r := e.console("POST", userPage+"/password", cookie, url.Values{"csrf": {csrfOf(t, confirm)}, "password": {c.password}})
		wantPage(t, r, 400, c.msg, `role="alert"`, `aria-invalid="true"`)
	}
	if e.meStatus(tok4) != 200 || !e.canLogin("alice", "password123") {
		t.Fatal("a refused reset changed the account")
	}
	live, _ := e.Sessions.List(context.Background(), alice.ID)
	r = e.console("POST", userPage+"/password", cookie, url.Values{"csrf": {csrfOf(t, confirm)}, "password": {"new-password-1"}},
		"Origin", sameOrigin)
	wantRedirect(t, r, fmt.Sprintf("%s?done=password-reset&n=%d", userPage, len(live)))
	if e.meStatus(tok4) != 401 || e.canLogin("alice", "password123") || !e.canLogin("alice", "new-password-1") {
		t.Fatal("the reset did not take: old sessions or the old password still work")
	}

	// The only admin cannot demote, disable or delete itself: the page says why.
	rootPage := "/console/admin/users/" + root.ID
	for _, action := range []string{"make-user", "disable", "delete"} {
		r := e.consolePost(t, cookie, rootPage+"/"+action, nil)
		wantPage(t, r, 409, "This is the last enabled admin: make another admin first.", "<h1><bdi>root</bdi></h1>", `role="alert"`)
	}
	if u, _ := e.Users.Get(context.Background(), root.ID); u.Role != users.RoleAdmin || u.Disabled {
		t.Fatalf("the last admin was changed: %+v", u)
	}
	wantPage(t, e.console("GET", "/console/", cookie, nil), 200, "Administration")

	// Delete: back to the list, the account gone, its sessions ended.
	tok5, _ := e.login("alice", "new-password-1")
	confirm = e.console("GET", userPage+"/delete", cookie, nil)
	wantPage(t, confirm, 200, "Delete alice?", "cannot be undone")
	r = e.console("POST", userPage+"/delete", cookie, url.Values{"csrf": {csrfOf(t, confirm)}}, "Origin", sameOrigin)
	wantRedirect(t, r, "/console/admin/users?done=deleted")
	if _, err := e.Users.Get(context.Background(), alice.ID); err == nil {
		t.Fatal("the deleted account is still there")
	}
	if e.meStatus(tok5) != 401 {
		t.Fatal("the deleted account's session still works")
	}
	r = e.console("GET", "/console/admin/users?done=deleted", cookie, nil)
	wantPage(t, r, 200, "The account was deleted.", "All accounts")
	if strings.Contains(r.text(), "<bdi>alice</bdi>") {
		t.Fatal("the deleted account is still listed")
	}
	wantPage(t, e.console("GET", userPage, cookie, nil), 404)

	// A demoted admin loses the pages at once.
	other := e.createUser("other", "password123", users.RoleAdmin)
	otherCookie := e.consoleSignIn("other", "password123")
	wantPage(t, e.console("GET", "/console/admin/users", otherCookie, nil), 200)
	wantRedirect(t, e.consolePost(t, cookie, "/console/admin/users/"+other.ID+"/make-user", nil),
		"/console/admin/users/"+other.ID+"?done=made-user&n=0")
	wantPage(t, e.console("GET", "/console/admin/users", otherCookie, nil), 403)
}

// Browsing every account, 20 to a page, with a Next link.
func TestConsoleAdminPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.admin()
	for i := range 24 {
		e.createUser(fmt.Sprintf("user%02d", i), "password123", users.RoleUser)
	}
	cookie := e.consoleSignIn("root", "root-password")
	link := regexp.MustCompile(`<a href="(/console/admin/users\?after=[^"]+)" rel="next">Next page</a>`)
	row := regexp.MustCompile(`<a href="/console/admin/users/[0-9a-f-]{36}"><bdi>([^<]+)</bdi></a>`)
	var names []string
	path := "/console/admin/users"
	for pages := 0; path != ""; pages++ {
		if pages > 3 {
			t.Fatal("too many pages")
		}
		r := e.console("GET", html.UnescapeString(path), cookie, nil)
		wantPage(t, r, 200, "All accounts")
		rows := row.FindAllStringSubmatch(string(r.Body), -1)
		if len(rows) > 20 {
			t.Fatalf("%d accounts on a page, want at most 20", len(rows))
		}
		for _, m := range rows {
			names = append(names, m[1])
		}
		path = ""
		if m := link.FindStringSubmatch(string(r.Body)); m != nil {
			path = m[1]
		}
	}
	if len(names) != 25 || names[0] != "root" || names[1] != "user00" || names[24] != "user23" {
		t.Fatalf("browsed %d accounts: %v; want root and user00…user23 in order", len(names), names)
	}
	wantPage(t, e.console("GET", "/console/admin/users?cursor=garbage!", cookie, nil), 400)
}

func TestConsoleStaticAndErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	r := e.console("GET", "/console/static/console.css", "", nil)
	if r.Status != 200 || r.Header.Get("Content-Type") != "text/css; charset=utf-8" || !strings.Contains(string(r.Body), ":focus-visible") {
		t.Fatalf("GET /console/static/console.css: %d %q, %d bytes", r.Status, r.Header.Get("Content-Type"), len(r.Body))
	}
	wantConsoleHeaders(t, r)
	// Nothing is fetched from elsewhere.
	if strings.Contains(string(r.Body), "url(") || strings.Contains(string(r.Body), "@import") {
		t.Fatal("the stylesheet loads another resource")
	}

	// An unknown console page is an HTML 404 with the console's headers; a
	// path that only shares the prefix is the API's 404.
	e.createUser("alice", "password123", users.RoleUser)
	cookie := e.consoleSignIn("alice", "password123")
	wantPage(t, e.console("GET", "/console/nothing-here", cookie, nil), 404, "<h1>Page not found</h1>", "There is no such page.", "My devices")
	wantPage(t, e.console("GET", "/console/admin/nothing-here", cookie, nil), 403)
	// Signed out, every console path but the sign-in page and the stylesheet
	// asks to sign in first.
	wantRedirect(t, e.console("GET", "/console/nothing-here", "", nil), "/console/login?next=%2Fconsole%2Fnothing-here")
	r = e.console("GET", "/consolex", "", nil)
	if r.Status != 404 || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("GET /consolex: %d %q", r.Status, r.Header.Get("Content-Type"))
	}
}
