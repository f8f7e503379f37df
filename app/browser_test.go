package app_test

// The web console in a real browser: headless Chromium, driven through the
// DevTools protocol (chromedp), against a sessiond served on a loopback port
// over real Redis. What only a browser shows: that the sign-in form works by
// keyboard alone, that the pages' own forms (cookie, hidden CSRF field,
// Origin) do what they say, that the cookie is out of the page's reach, that
// the browser gets the strict policy, and how the pages look at phone and
// desktop widths.
//
// CI needs Chromium (.ci/run installs Debian's): without it the test skips,
// except with SESSIOND_TEST_REQUIRE_REDIS=1, where it fails. How every page
// lays out at phone and desktop widths, and what axe-core finds, is
// browser_layout_test.go's.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/users"
)

// browserTimeout bounds each step in the browser: generous, for a loaded CI
// machine running the package's tests in parallel under -race.
const browserTimeout = 60 * time.Second

// screenshotsEnv, when "1", makes TestConsoleLayoutInBrowser write its
// screenshots to docs/screenshots/ (the committed ones); otherwise it only
// checks the layouts it would have taken.
const screenshotsEnv = "SESSIOND_SCREENSHOTS"

// chromiumPath finds Debian's Chromium, or skips saying why (fails in CI).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	const why = "no Chromium (neither /usr/bin/chromium nor chromium on PATH)"
	if os.Getenv(redistest.RequireEnv) == "1" {
		t.Fatalf("%s, and %s=1: CI must drive the console in a browser (.ci/run installs chromium)", why, redistest.RequireEnv)
	}
	t.Skipf("needs Chromium to drive the console in a browser: %s", why)
	return ""
}

// startBrowser starts headless Chromium with a fresh profile, closed when the
// test ends, and returns its context: each tab is a child of it.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	out := &syncBuffer{}
	// The whole browser lives at most this long, so nothing can hang past it.
	life, endLife := context.WithTimeout(context.Background(), 5*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(life,
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		// The machine has no network: nothing may call home.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.CombinedOutput(out),
	)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		_ = chromedp.Cancel(browserCtx) // closes the browser gracefully
		cancelBrowser()
		cancelAlloc() // and waits for the process to end
		endLife()
		if t.Failed() {
			t.Logf("chromium output:\n%s", lastLines(out.String(), 40))
		}
	})
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("starting %s: %v\n%s", path, err, lastLines(out.String(), 40))
	}
	return browserCtx
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// tab is a browser tab in a browser context of its own (its own cookies),
// as a separate person's browser is.
type tab struct {
	ctx  context.Context
	base string // the console's server, http://127.0.0.1:port (or http://localhost:port)

	mu       sync.Mutex
	docs     []*network.Response // every HTML document the tab received
	messages []string            // what the browser logged to the page's console
}

// newTab opens a tab in a new browser context at desktop size, recording
// every document response and console message, closed when the test ends.
func newTab(t *testing.T, browser context.Context, base string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	b := &tab{ctx: ctx, base: base}
	// The first action on a context opens its tab for the context's life:
	// not under a timeout, which would close it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*network.EventResponseReceived); ok && ev.Type == network.ResourceTypeDocument {
			b.mu.Lock()
			b.docs = append(b.docs, ev.Response)
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.messages = append(b.messages, string(m.Type)+": "+m.Text)
			b.mu.Unlock()
		}
	}()
	b.do(t, desktop(),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			// Screenshots in the light scheme, whatever the machine's.
			_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "light"}}})
			return err
		}))
	return b
}

func desktop() chromedp.Action[chromedp.Void] { return chromedp.EmulateViewport(1280, 800) }

// do runs actions in the tab, each call within browserTimeout.
func (b *tab) do(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("in the browser: %v", err)
	}
}

// load runs actions that end in a navigation (a click on a link or a form's
// button, a key that submits), waits for the page to load, and returns the
// response of its document (the last one, after redirects).
func (b *tab) load(t *testing.T, actions ...chromedp.Action[chromedp.Void]) *network.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	r, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		t.Fatalf("in the browser, loading a page: %v", err)
	}
	if r == nil {
		t.Fatal("in the browser: the page loaded without a document response")
	}
	return r
}

// open navigates to a console path and wants a 200 page.
func (b *tab) open(t *testing.T, path string) *network.Response {
	t.Helper()
	r := b.load(t, chromedp.Navigate(b.base+path))
	b.wantPage(t, r, 200)
	return r
}

// run is one action in the tab that returns a value.
func run[T any](t *testing.T, b *tab, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("in the browser: %v", err)
	}
	return v
}

// eval evaluates an expression in the page (from DevTools: the page's
// policy, which allows no script, does not apply to it).
func eval[T any](t *testing.T, b *tab, expr string) T {
	t.Helper()
	return run(t, b, chromedp.Evaluate[T](expr))
}

// waitTrue waits until expr is true in the page. (chromedp.Poll would build
// a function with `new Function` in the page, which the page's policy
// forbids, so this asks again from DevTools.)
func (b *tab) waitTrue(t *testing.T, expr string) {
	t.Helper()
	deadline := time.Now().Add(browserTimeout)
	for !eval[bool](t, b, expr) {
		if time.Now().After(deadline) {
			t.Fatalf("in the browser: %s is still false after %v", expr, browserTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *tab) location(t *testing.T) string {
	t.Helper()
	return run(t, b, chromedp.Location())
}

// text is the visible text of the first element the CSS selector finds,
// once it is visible.
func (b *tab) text(t *testing.T, css string) string {
	t.Helper()
	b.do(t, chromedp.WaitVisible(chromedp.CSS(css)))
	return strings.TrimSpace(run(t, b, chromedp.Text(chromedp.CSS(css))))
}

// consoleCookie is the console's cookie as the browser holds it, or nil.
func (b *tab) consoleCookie(t *testing.T) *network.Cookie {
	t.Helper()
	res := run(t, b, func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/console/"}})
	})
	for _, c := range res.Cookies {
		if c.Name == consoleCookie {
			return c
		}
	}
	return nil
}

// respHeader is a response header, by name in any case.
func respHeader(r *network.Response, name string) string {
	for k, v := range r.Headers {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// wantPage fails unless the tab got a console page with that status and the
// console's policy: the one without script, or, on a page whose only script
// is passkeys.js, the one that allows script files of the console's origin.
func (b *tab) wantPage(t *testing.T, r *network.Response, status int) {
	t.Helper()
	if r.Status != int64(status) {
		t.Fatalf("%s: status %d, want %d; the page reads:\n%s", r.URL, r.Status, status,
			eval[string](t, b, "document.body ? document.body.innerText : ''"))
	}
	switch scripts := eval[[]string](t, b, `Array.from(document.scripts).map(s => s.getAttribute("src") || "(inline)")`); {
	case len(scripts) == 0:
		wantBrowserCSP(t, r)
	case len(scripts) == 1 && scripts[0] == "/console/static/passkeys.js":
		wantPolicy(t, r, wantScriptCSP)
	default:
		t.Fatalf("%s: the page has scripts %q; the console's only script is /console/static/passkeys.js", r.URL, scripts)
	}
}

// wantBrowserCSP fails unless a response carried exactly the console's
// policy without script: no script of any kind, no inline code.
func wantBrowserCSP(t *testing.T, r *network.Response) {
	t.Helper()
	wantPolicy(t, r, wantConsoleCSP)
}

// wantPolicy fails unless a response carried exactly the policy want, which
// allows no inline code and no eval (and, unless it is wantScriptCSP, no
// script at all).
func wantPolicy(t *testing.T, r *network.Response, want string) {
	t.Helper()
	csp := respHeader(r, "Content-Security-Policy")
	if csp != want {
		t.Fatalf("%s: Content-Security-Policy %q, want %q", r.URL, csp, want)
	}
	if strings.Contains(csp, "unsafe-") || strings.Contains(csp, "*") || strings.Contains(csp, "data:") ||
		(want != wantScriptCSP && strings.Contains(csp, "script-src")) {
		t.Fatalf("%s: Content-Security-Policy %q allows script or inline code", r.URL, csp)
	}
}

// focus describes the element that has the keyboard focus.
type focus struct {
	Tag          string  `json:"tag"`
	ID           string  `json:"id"`
	Class        string  `json:"class"`
	Text         string  `json:"text"`
	Label        string  `json:"label"` // the text of its <label>
	Outline      string  `json:"outline"`
	OutlineWidth float64 `json:"outlineWidth"`
	InView       bool    `json:"inView"`
}

func (f focus) String() string {
	s := f.Tag
	if f.ID != "" {
		s += "#" + f.ID
	}
	if f.Class != "" {
		s += "." + strings.ReplaceAll(f.Class, " ", ".")
	}
	if f.Text != "" {
		s += fmt.Sprintf(" %q", f.Text)
	}
	if f.Label != "" {
		s += fmt.Sprintf(" labelled %q", f.Label)
	}
	return s
}

const focusJS = `(() => {
  const a = document.activeElement;
  if (!a || a === document.body || a === document.documentElement) return {tag: "body"};
  const r = a.getBoundingClientRect(), s = getComputedStyle(a);
  return {
    tag: a.tagName.toLowerCase(), id: a.id, class: a.getAttribute("class") || "",
    text: (a.tagName === "INPUT" ? "" : a.innerText || "").trim(),
    label: a.labels && a.labels.length ? a.labels[0].innerText.trim() : "",
    outline: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth) || 0,
    inView: r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 &&
      r.bottom <= innerHeight && r.right <= innerWidth,
  };
})()`

func (b *tab) focused(t *testing.T) focus {
	t.Helper()
	return eval[focus](t, b, focusJS)
}

// tabTo presses Tab and returns what has the focus then, which must be seen:
// in the viewport, with a visible outline.
func (b *tab) tabTo(t *testing.T) focus {
	t.Helper()
	b.do(t, chromedp.KeyEvent(kb.Tab))
	f := b.focused(t)
	if f.Tag == "body" {
		t.Fatal("Tab left nothing focused")
	}
	if !f.InView || f.Outline == "none" || f.OutlineWidth < 2 {
		t.Fatalf("the focused %s is not visibly focused: in view %v, outline %s %vpx", f, f.InView, f.Outline, f.OutlineWidth)
	}
	return f
}

// deviceCard is a device card as a person reads it.
type deviceCard struct {
	Name    string `json:"name"`
	Agent   string `json:"agent"`
	Current bool   `json:"current"`
	Active  string `json:"active"` // "Active now", "Active 2 hours ago"
	IP      string `json:"ip"`
	Raw     string `json:"raw"`     // the user agent, behind Details
	SignOut string `json:"signOut"` // the Sign-out link's path
}

func (b *tab) deviceCards(t *testing.T) []deviceCard {
	t.Helper()
	return eval[[]deviceCard](t, b, `Array.from(document.querySelectorAll("main .devices > li.device")).map(li => {
  const text = sel => { const e = li.querySelector(sel); return e ? e.textContent.trim() : ""; };
  return {
    name: text(".device-name"), agent: text(".agent"), current: li.classList.contains("current"),
    active: text(".facts-inline div:first-child dd"), ip: text(".ip"), raw: text(".raw code"),
    signOut: li.querySelector(".device-actions a.button").getAttribute("href"),
  };
})`)
}

// checkDocs fails unless every document the tab received had one of the
// console's two policies, exactly (which one each page must have is
// wantPage's check, which sees the page's scripts), and the browser
// reported no policy violation.
func (b *tab) checkDocs(t *testing.T) int {
	t.Helper()
	b.mu.Lock()
	docs, messages := append([]*network.Response(nil), b.docs...), append([]string(nil), b.messages...)
	b.mu.Unlock()
	for _, r := range docs {
		if !strings.HasPrefix(r.URL, b.base+"/console") {
			continue
		}
		if respHeader(r, "Content-Security-Policy") == wantScriptCSP {
			wantPolicy(t, r, wantScriptCSP)
		} else {
			wantBrowserCSP(t, r)
		}
	}
	for _, m := range messages {
		if strings.Contains(m, "Content Security Policy") || strings.Contains(m, "Refused to") {
			t.Fatalf("the browser reported a policy violation: %s", m)
		}
	}
	return len(docs)
}

func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	// The API's requests (through the app, from 0.0.0.0) come through a
	// trusted proxy that names the device's address; the browser connects
	// directly from 127.0.0.1.
	e := newEnv(t, envOpts{TrustedProxies: behindProxy})
	base := "http://" + e.listen()
	alice := e.createUser("alice", "password123", users.RoleUser)
	e.createUser("root", "root-password", users.RoleAdmin)

	// Alice is also signed in on her phone and her laptop, through the API.
	apiLogin := func(device, platform, ip, ua string) (token, sid string) {
		t.Helper()
		r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "alice", "password": "password123",
			"device": map[string]string{"name": device, "platform": platform}}, "X-Forwarded-For", ip, "User-Agent", ua)
		if r.Status != 201 {
			t.Fatalf("login from %s: %d %s", device, r.Status, r.Body)
		}
		m := r.JSON(t)
		return m["token"].(string), m["session"].(map[string]any)["id"].(string)
	}
	const (
		phoneUA  = "AliceApp/4.1 (iPhone; iOS 18.5)"
		laptopUA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:128.0) Gecko/20100101 Firefox/128.0"
	)
	phone, phoneSID := apiLogin("Alice's iPhone", "ios", "203.0.113.7", phoneUA)
	laptop, _ := apiLogin("Alice's laptop", "macos", "198.51.100.23", laptopUA)

	aliceTab := newTab(t, browser, base)
	var aliceConsoleToken string

	// Keyboard only: from the top of the page, Tab moves the focus, keys type,
	// Enter submits. Nothing is clicked and nothing is focused by selector.
	if !t.Run("sign in by keyboard", func(t *testing.T) {
		b := aliceTab
		r := b.open(t, "/console/login")
		if ct := respHeader(r, "Content-Type"); ct != "text/html; charset=utf-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		if f := b.focused(t); f.Tag != "body" {
			t.Fatalf("%s has the focus before any key", f)
		}
		// The focus order of the page, each stop visibly focused.
		var order []string
		for range 5 {
			order = append(order, b.tabTo(t).String())
		}
		want := []string{
			`a.skip "Skip to main content"`,
			`a "sessiond console"`,
			`input#username labelled "Username"`,
			`input#password labelled "Password"`,
			`button "Sign in"`,
		}
		if strings.Join(order, "\n") != strings.Join(want, "\n") {
			t.Fatalf("focus order:\n%s\nwant:\n%s", strings.Join(order, "\n"), strings.Join(want, "\n"))
		}
		// The skip link is hidden until focused, then seen; Enter follows it
		// to the main content, and the next Tab is the first field.
		b.open(t, "/console/login")
		if eval[bool](t, b, `document.querySelector("a.skip").getBoundingClientRect().bottom > 0`) {
			t.Fatal("the skip link shows before it has the focus")
		}
		if f := b.tabTo(t); f.Class != "skip" {
			t.Fatalf("first Tab: %s, want the skip link", f)
		}
		b.do(t, chromedp.KeyEvent(kb.Enter))
		b.waitTrue(t, `document.activeElement === document.querySelector("main")`)
		if loc := b.location(t); !strings.HasSuffix(loc, "/console/login#main") {
			t.Fatalf("after the skip link: %s", loc)
		}
		if f := b.tabTo(t); f.ID != "username" || f.Label != "Username" {
			t.Fatalf("Tab after the skip link: %s, want the username field", f)
		}
		b.do(t, chromedp.KeyEvent("alice"))
		if f := b.tabTo(t); f.ID != "password" || f.Label != "Password" {
			t.Fatalf("Tab after the username: %s, want the password field", f)
		}
		b.do(t, chromedp.KeyEvent("password123"))
		// Enter in the password field submits the form.
		r = b.load(t, chromedp.KeyEvent(kb.Enter))
		b.wantPage(t, r, 200)
		if loc := b.location(t); loc != base+"/console/" {
			t.Fatalf("signed in, the browser is at %s, want %s/console/", loc, base)
		}
		if got := b.text(t, "main h1"); got != "My devices" {
			t.Fatalf("h1 %q after signing in", got)
		}
		if got := b.text(t, "li.device.current .badge"); got != "This device" {
			t.Fatalf("the current session's marker reads %q", got)
		}
		if got := b.text(t, ".signout strong"); got != "alice" {
			t.Fatalf("signed in as %q", got)
		}
		c := b.consoleCookie(t)
		if c == nil {
			t.Fatal("no console cookie after signing in")
		}
		aliceConsoleToken = c.Value
	}) {
		t.FailNow()
	}

	if !t.Run("my devices", func(t *testing.T) {
		b := aliceTab
		cards := b.deviceCards(t)
		if len(cards) != 3 {
			t.Fatalf("%d devices listed, want 3: %+v", len(cards), cards)
		}
		byName := map[string]deviceCard{}
		for _, c := range cards {
			byName[c.Name] = c
		}
		for _, w := range []struct{ device, agent, ua, ip string }{
			{"Alice's iPhone", "App on iPhone", phoneUA, "203.0.113.7"},
			{"Alice's laptop", "Firefox on macOS", laptopUA, "198.51.100.23"},
		} {
			c, ok := byName[w.device]
			if !ok {
				t.Fatalf("%s is not listed: %+v", w.device, cards)
			}
			if c.Current || c.Agent != w.agent || c.Raw != w.ua || c.IP != w.ip || !strings.HasPrefix(c.Active, "Active ") {
				t.Fatalf("%s listed as %+v, want %s (%s), ip %s, not this device", w.device, c, w.agent, w.ua, w.ip)
			}
		}
		// The console's own session: marked, seen from the browser.
		me, ok := byName["Web console"]
		if !ok || !me.Current || me.Agent != "Headless Chrome on Linux" || !strings.Contains(me.Raw, "Chrome/") ||
			me.IP != "127.0.0.1" || me.Active != "Active now" {
			t.Fatalf("the console's own session: %+v (all: %+v)", me, cards)
		}
		if n := eval[int](t, b, `document.querySelectorAll("li.device.current").length`); n != 1 {
			t.Fatalf("%d devices marked current, want 1", n)
		}
		// The raw user agent is behind Details, closed until opened.
		if eval[bool](t, b, `document.querySelector("li.device details").open`) {
			t.Fatal("a device's details are open before they are asked for")
		}
		// Each sign-out link names its device for screen readers.
		link := fmt.Sprintf(`a[href="/console/sessions/%s/revoke"]`, phoneSID)
		if got := strings.TrimSpace(run(t, b, chromedp.TextContent(chromedp.CSS(link)))); got != "Sign out Alice's iPhone" {
			t.Fatalf("the phone's sign-out link reads %q", got)
		}
		// The stylesheet loaded under the policy: the skip link is placed.
		if pos := eval[string](t, b, `getComputedStyle(document.querySelector("a.skip")).position`); pos != "absolute" {
			t.Fatalf("the console's stylesheet is not applied (skip link position %q)", pos)
		}
	}) {
		t.FailNow()
	}

	if !t.Run("cookie and policy", func(t *testing.T) {
		b := aliceTab
		// The page cannot read the cookie: HttpOnly.
		if got := eval[string](t, b, "document.cookie"); strings.Contains(got, consoleCookie) {
			t.Fatalf("document.cookie shows the console's cookie: %q", got)
		}
		c := b.consoleCookie(t)
		if c == nil || !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/console" || c.Secure {
			t.Fatalf("the browser's console cookie: %+v; want HttpOnly, SameSite=Strict, Path=/console, not Secure over http", c)
		}
		// The pages carry no script, and the policy would run none.
		if n := eval[int](t, b, "document.scripts.length"); n != 0 {
			t.Fatalf("the page has %d scripts", n)
		}
		r := b.open(t, "/console/")
		for h, want := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
			"X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"} {
			if got := respHeader(r, h); got != want {
				t.Fatalf("%s %q, want %q", h, got, want)
			}
		}
		if n := b.checkDocs(t); n < 4 {
			t.Fatalf("the browser recorded %d documents, want every page so far", n)
		}
	}) {
		t.FailNow()
	}

	// A form whose CSRF field was changed is refused, and nothing happens.
	if !t.Run("CSRF refused", func(t *testing.T) {
		b := aliceTab
		path := "/console/sessions/" + phoneSID + "/revoke"
		b.open(t, path)
		field := chromedp.CSS(`main form input[type="hidden"][name="csrf"]`)
		good := run(t, b, chromedp.Value(field))
		if good == "" {
			t.Fatal("the confirmation form has no CSRF token")
		}
		b.do(t, chromedp.SetValue(field, "forged"+good[6:]))
		r := b.load(t, chromedp.Click(chromedp.CSS(`main form button[type="submit"]`)))
		b.wantPage(t, r, 403)
		if got := b.text(t, `[role="alert"]`); !strings.Contains(got, "did not come from this console") {
			t.Fatalf("the refusal says %q", got)
		}
		if e.meStatus(phone) != 200 {
			t.Fatal("a forged form revoked the phone's session")
		}
		if list, err := e.Sessions.List(context.Background(), alice.ID); err != nil || len(list) != 3 {
			t.Fatalf("alice's sessions after a refused form: %d, %v; want 3", len(list), err)
		}
	}) {
		t.FailNow()
	}

	if !t.Run("revoke a device", func(t *testing.T) {
		b := aliceTab
		b.open(t, "/console/")
		link := chromedp.CSS(fmt.Sprintf(`a[href="/console/sessions/%s/revoke"]`, phoneSID))
		b.wantPage(t, b.load(t, chromedp.Click(link)), 200)
		if got := b.text(t, "main .question"); got != "Sign out Alice's iPhone?" {
			t.Fatalf("the confirmation asks %q", got)
		}
		// The header's button signs out of the console, the form's the device.
		if got := b.text(t, "header .signout button"); got != "Sign out of console" {
			t.Fatalf("the header's button reads %q", got)
		}
		if got := b.text(t, `main form button[type="submit"]`); got != "Sign out Alice's iPhone" {
			t.Fatalf("the confirmation's button reads %q", got)
		}
		if e.meStatus(phone) != 200 {
			t.Fatal("the confirmation page revoked the session")
		}
		r := b.load(t, chromedp.Click(chromedp.CSS(`main form button[type="submit"]`)))
		b.wantPage(t, r, 200)
		if loc := b.location(t); !strings.HasPrefix(loc, base+"/console/?done=revoked&") {
			t.Fatalf("after signing the phone out: %s", loc)
		}
		if got := b.text(t, `[role="status"] p`); got != "Signed out Alice's iPhone." {
			t.Fatalf("status %q", got)
		}
		// The revocation bites on the phone's next request.
		if got := e.meStatus(phone); got != 401 {
			t.Fatalf("GET /v1/me with the revoked phone's token: %d, want 401", got)
		}
		if e.meStatus(laptop) != 200 {
			t.Fatal("revoking the phone ended the laptop's session")
		}
		for _, c := range b.deviceCards(t) {
			if c.Name == "Alice's iPhone" {
				t.Fatal("the revoked phone is still listed")
			}
		}
	}) {
		t.FailNow()
	}

	t.Run("admin force-logout", func(t *testing.T) {
		b := newTab(t, browser, base) // another person's browser
		r := b.open(t, "/console/login")
		if b.consoleCookie(t) != nil {
			t.Fatal("a new browser context has alice's cookie")
		}
		wantBrowserCSP(t, r)
		b.do(t, chromedp.SendKeys(chromedp.ID("username"), "root"), chromedp.SendKeys(chromedp.ID("password"), "root-password"))
		b.wantPage(t, b.load(t, chromedp.Click(chromedp.CSS(`main form button[type="submit"]`))), 200)
		if got := b.text(t, ".signout strong"); got != "root" {
			t.Fatalf("signed in as %q", got)
		}

		// Find alice by name.
		b.wantPage(t, b.load(t, chromedp.Click(chromedp.CSS(`nav a[href="/console/admin/users"]`))), 200)
		if got := b.text(t, "main h1"); got != "Accounts" {
			t.Fatalf("the administration page is %q", got)
		}
		b.do(t, chromedp.SendKeys(chromedp.ID("username"), "alice"))
		b.wantPage(t, b.load(t, chromedp.Click(chromedp.CSS(`form[role="search"] button[type="submit"]`))), 200)
		if loc := b.location(t); loc != base+"/console/admin/users?username=alice" {
			t.Fatalf("the search went to %s", loc)
		}
		userPage := "/console/admin/users/" + alice.ID
		found := chromedp.CSS(`main .accounts a[href="` + userPage + `"]`)
		if got := b.text(t, string(found)); got != "alice" {
			t.Fatalf("the search found %q", got)
		}
		b.wantPage(t, b.load(t, chromedp.Click(found)), 200)
		if got := b.text(t, "main h1"); got != "alice" {
			t.Fatalf("the account page is %q", got)
		}
		var devices []string
		for _, c := range b.deviceCards(t) {
			devices = append(devices, c.Name)
		}
		if strings.Join(devices, ",") != "Alice's laptop,Web console" && strings.Join(devices, ",") != "Web console,Alice's laptop" {
			t.Fatalf("alice's sessions as the admin sees them: %q", devices)
		}

		// Sign her out everywhere: a confirmation first.
		b.wantPage(t, b.load(t, chromedp.Click(chromedp.CSS(`main a[href="`+userPage+`/force-logout"]`))), 200)
		if got := b.text(t, "main .question"); got != "Sign alice out of every device?" {
			t.Fatalf("the confirmation asks %q", got)
		}
		if e.meStatus(laptop) != 200 {
			t.Fatal("the confirmation page signed alice out")
		}
		b.wantPage(t, b.load(t, chromedp.Click(chromedp.CSS(`main form button[type="submit"]`))), 200)
		if loc := b.location(t); loc != base+userPage+"?done=forced&n=2" {
			t.Fatalf("after the force-logout: %s", loc)
		}
		if got := b.text(t, `[role="status"] p`); got != "Signed out everywhere: 2 sessions ended." {
			t.Fatalf("status %q", got)
		}
		// Every token alice had left stops working at once: the laptop's,
		// and her console's.
		for name, tok := range map[string]string{"laptop": laptop, "console": aliceConsoleToken} {
			if got := e.meStatus(tok); got != 401 {
				t.Fatalf("GET /v1/me with alice's %s token after the force-logout: %d, want 401", name, got)
			}
		}
		// Her browser is sent to sign in again, its cookie cleared.
		a := aliceTab
		a.wantPage(t, a.load(t, chromedp.Navigate(base+"/console/")), 200)
		if loc := a.location(t); loc != base+"/console/login?done=ended-admin-all" {
			t.Fatalf("alice's browser after the force-logout: %s", loc)
		}
		if got := a.text(t, `[role="status"] p`); got != "An administrator signed you out of every device. Sign in again." {
			t.Fatalf("alice's browser says %q", got)
		}
		if c := a.consoleCookie(t); c != nil {
			t.Fatalf("alice's browser keeps the cookie of an ended session: %+v", c)
		}
		a.checkDocs(t)
		b.checkDocs(t)
	})
}
