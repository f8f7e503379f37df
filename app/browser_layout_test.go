package app_test

// Every console page in headless Chromium, with an account as people have
// them (13 sessions: phones, a TV, a tablet, desktops, a 128-character
// device name, right-to-left text, an HTML payload, IPv6 addresses), at a
// small phone's width (320 px), a phone's (390) and a desktop's (1280): the
// page never scrolls sideways, every device's Sign-out button is on screen,
// and Deque's axe-core finds no violation of any impact.
//
// axe-core comes from npm: `npm ci --prefix app/testdata/axe` installs the
// version app/testdata/axe/package-lock.json pins. Without it the test
// skips, except with SESSIOND_TEST_REQUIRE_REDIS=1 (CI), where it fails.
// SESSIOND_SCREENSHOTS=1 writes docs/screenshots/<page>-<phone|desktop>.png.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/users"
)

// axePath is axe-core as npm ci installs it, from the app package's directory.
const axePath = "testdata/axe/node_modules/axe-core/axe.min.js"

var axeOnce = sync.OnceValues(func() ([]byte, error) { return os.ReadFile(axePath) })

// axeSource is axe-core's script, or skips saying how to install it (fails
// in CI).
func axeSource(t *testing.T) string {
	t.Helper()
	src, err := axeOnce()
	if err == nil && len(src) > 0 {
		return string(src)
	}
	why := fmt.Sprintf("no axe-core at app/%s (%v): run `npm ci --prefix app/testdata/axe`", axePath, err)
	if os.Getenv(redistest.RequireEnv) == "1" {
		t.Fatalf("%s, and %s=1: CI must check the console with axe-core", why, redistest.RequireEnv)
	}
	t.Skip(why)
	return ""
}

// viewport is a width the pages must fit, and whether to screenshot it
// (as what).
type viewport struct {
	w, h   int64
	mobile bool
	shot   string
}

var viewports = []viewport{
	{320, 640, true, ""},
	{390, 844, true, "phone"},
	{1280, 800, false, "desktop"},
}

// axeViolation is one rule axe-core found broken, with where.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// axeRun runs every axe-core rule on the page and returns what it found
// broken. The script is injected from DevTools, which the page's policy
// (no script at all) does not govern.
func (b *tab) axeRun(t *testing.T, src string) []axeViolation {
	t.Helper()
	if !eval[bool](t, b, `typeof axe === "object"`) {
		run(t, b, chromedp.Evaluate[any](src+"\n;undefined"))
	}
	return run(t, b, chromedp.Evaluate[[]axeViolation](`axe.run(document, {resultTypes: ["violations"]}).then(r =>
  r.violations.map(v => ({id: v.id, impact: v.impact || "", help: v.help,
    nodes: v.nodes.map(n => n.target.join(" ") + ": " + (n.failureSummary || "").replace(/\s+/g, " "))})))`,
		chromedp.EvalAwaitPromise))
}

// layout is how the page lays out: its width and the content's, its zoom,
// and where each device's Sign-out button is.
type layout struct {
	Width       float64 `json:"width"`
	ScrollWidth float64 `json:"scrollWidth"`
	Scale       float64 `json:"scale"`
	Buttons     []struct {
		Text  string  `json:"text"`
		Left  float64 `json:"left"`
		Right float64 `json:"right"`
		Width float64 `json:"width"`
	} `json:"buttons"`
	// Wider are the elements that stick out past the viewport.
	Wider []string `json:"wider"`
}

const layoutJS = `(() => {
  const w = innerWidth, out = [];
  for (const e of document.querySelectorAll("body *")) {
    const r = e.getBoundingClientRect();
    if (r.width > 0 && (r.right > w + 0.5 || r.left < -0.5) && out.length < 5)
      out.push(e.tagName.toLowerCase() + (e.className ? "." + String(e.className).replace(/ /g, ".") : "") + " " + Math.round(r.left) + ".." + Math.round(r.right));
  }
  return {
    width: w, scrollWidth: document.documentElement.scrollWidth, scale: visualViewport.scale,
    buttons: Array.from(document.querySelectorAll("main .device-actions a.button")).map(a => {
      const r = a.getBoundingClientRect();
      return {text: a.textContent.trim(), left: r.left, right: r.right, width: r.width};
    }),
    wider: out,
  };
})()`

// checkLayout loads the tab's page afresh at every width and fails unless it
// fits (nothing scrolls sideways, shown at 100%), every device's Sign-out
// button is inside the viewport, and axe-core finds nothing. With
// SESSIOND_SCREENSHOTS=1 and a name it writes the phone and desktop
// screenshots. It returns how many Sign-out buttons the page has, and
// leaves the tab at desktop width.
func (b *tab) checkLayout(t *testing.T, name, axe string) int {
	t.Helper()
	buttons := 0
	for _, v := range viewports {
		var opts []chromedp.EmulateViewportOption
		if v.mobile {
			opts = append(opts, chromedp.EmulateMobile, chromedp.EmulatePortrait)
		}
		b.do(t, chromedp.EmulateViewport(v.w, v.h, opts...), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("main h1")))
		l := eval[layout](t, b, layoutJS)
		if l.Width != float64(v.w) || l.ScrollWidth > l.Width || l.Scale < 0.99 {
			t.Errorf("%s at %dpx: lays out %.0fpx wide with %.0fpx of content, shown at %.0f%%; want it to fit at 100%% (sticking out: %v)",
				name, v.w, l.Width, l.ScrollWidth, 100*l.Scale, l.Wider)
		}
		for _, btn := range l.Buttons {
			if btn.Width <= 0 || btn.Left < 0 || btn.Right > l.Width {
				t.Errorf("%s at %dpx: %q spans %.0f..%.0fpx, outside the %.0fpx viewport", name, v.w, btn.Text, btn.Left, btn.Right, l.Width)
			}
		}
		buttons = len(l.Buttons)
		if vs := b.axeRun(t, axe); len(vs) > 0 {
			var lines []string
			for _, x := range vs {
				lines = append(lines, fmt.Sprintf("%s (%s): %s\n    %s", x.ID, x.Impact, x.Help, strings.Join(x.Nodes, "\n    ")))
			}
			t.Errorf("%s at %dpx: axe-core found %d violations:\n  %s", name, v.w, len(vs), strings.Join(lines, "\n  "))
		}
		if v.shot != "" && name != "" && os.Getenv(screenshotsEnv) == "1" {
			b.screenshot(t, name+"-"+v.shot, v)
		}
	}
	b.do(t, desktop())
	return buttons
}

// screenshot writes the page, whole when it is short, else its top two
// screens, to docs/screenshots/<file>.png.
func (b *tab) screenshot(t *testing.T, file string, v viewport) {
	t.Helper()
	height := min(eval[float64](t, b, "document.documentElement.scrollHeight"), float64(2*v.h))
	png := run(t, b, func(ctx context.Context, tg *chromedp.Target) ([]byte, error) {
		r, err := cdp.Call(ctx, tg, page.CaptureScreenshot, page.CaptureScreenshotParams{
			Format: page.CaptureScreenshotFormatPng, CaptureBeyondViewport: new(true), FromSurface: new(true),
			Clip: &page.Viewport{Width: float64(v.w), Height: height, Scale: 1}})
		return r.Data, err
	})
	path := filepath.Join("..", "docs", "screenshots", file+".png")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", path, len(png))
}

// Devices as people have them: what each sends at sign-in.
var realisticDevices = []struct {
	name, platform, ip, ua string
}{
	{"Alice's iPhone", "ios", "203.0.113.7",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1"},
	{"Pixel 8 Pro", "android", "2001:db8:85a3:1234:5678:8a2e:370:7334",
		"Mozilla/5.0 (Linux; Android 15; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/137.0.0.0 Mobile Safari/537.36"},
	{"Living room TV", "android-tv", "198.51.100.40",
		"Mozilla/5.0 (Linux; Android 12; BRAVIA 4K VH2 Build/STT2.230405.002; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/114.0.5735.196 Mobile Safari/537.36"},
	{"", "ipados", "198.51.100.41",
		"Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"},
	{"", "", "192.0.2.10", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
	{"", "", "192.0.2.11",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"},
	{strings.Repeat("Workstation-", 10) + "long-nam", "linux", "2001:db8:1111:2222:3333:4444:5555:6666",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/137.0.0.0 Safari/537.36 Edg/137.0.0.0"},
	{"הטלפון של אליס", "android", "203.0.113.8",
		"Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/136.0.0.0 Mobile Safari/537.36"},
	{`<img src=x onerror=alert(1)><script>alert("pwned")</script>`, "web", "203.0.113.9",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/137.0.0.0 Safari/537.36"},
	{"Office desktop", "windows", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/137.0.0.0 Safari/537.36"},
	{"Galaxy Tab", "android", "198.51.100.42",
		"Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"},
	{"Build server", "", "192.0.2.99", "curl/8.5.0"},
}

func TestConsoleLayoutInBrowser(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	axe := axeSource(t)
	e := newEnv(t, envOpts{TrustedProxies: behindProxy})
	base := "http://" + e.listen()
	alice := e.createUser("alice", "password123", users.RoleUser)
	e.createUser("root", "root-password", users.RoleAdmin)
	for i := range 23 {
		e.createUser(fmt.Sprintf("user%02d", i), "password123", users.RoleUser)
	}
	var pixel string
	for _, d := range realisticDevices {
		body := map[string]any{"username": "alice", "password": "password123"}
		if d.name != "" || d.platform != "" {
			body["device"] = map[string]string{"name": d.name, "platform": d.platform}
		}
		r := e.do("POST", "/v1/auth/login", "", body, "X-Forwarded-For", d.ip, "User-Agent", d.ua)
		if r.Status != 201 {
			t.Fatalf("login from %q: %d %s", d.name, r.Status, r.Body)
		}
		if d.name == "Pixel 8 Pro" {
			pixel = r.JSON(t)["session"].(map[string]any)["id"].(string)
		}
	}

	b := newTab(t, browser, base)
	b.open(t, "/console/login")
	// Its screenshot is of the page as a server with passkeys shows it
	// (browser_passkeys_test.go).
	b.checkLayout(t, "", axe)
	b.do(t, chromedp.SendKeys(chromedp.ID("username"), "alice"), chromedp.SendKeys(chromedp.ID("password"), "password123"))
	b.wantPage(t, b.load(t, chromedp.Click(chromedp.CSS(`main form button[type="submit"]`))), 200)

	// 13 devices: the 12 above and this browser, each with its button on
	// screen at every width.
	cards := b.deviceCards(t)
	if len(cards) != 13 {
		t.Fatalf("%d devices listed, want 13: %+v", len(cards), cards)
	}
	if n := b.checkLayout(t, "devices", axe); n != 13 {
		t.Fatalf("%d Sign-out buttons, want 13", n)
	}
	// The HTML payload is text; right-to-left text is isolated.
	if n := eval[int](t, b, `document.querySelectorAll("main img, main script").length`); n != 0 {
		t.Fatalf("a device name became %d elements", n)
	}
	names := map[string]deviceCard{}
	for _, c := range cards {
		names[c.Name] = c
	}
	for name, agent := range map[string]string{"Alice's iPhone": "Safari on iPhone", "Pixel 8 Pro": "Chrome on Pixel 8 Pro",
		"Safari on iPad": "", "Firefox on Linux": "", "Safari on macOS": "", "Office desktop": "Chrome on Windows",
		`<img src=x onerror=alert(1)><script>alert("pwned")</script>`: "Chrome on Windows", "Build server": "curl"} {
		if c, ok := names[name]; !ok || c.Agent != agent {
			t.Errorf("device %q: %+v, want it listed with %q", name, c, agent)
		}
	}
	if ip := names["Pixel 8 Pro"].IP; ip != "2001:db8:85a3:1234:5678:8a2e:370:7334" {
		t.Errorf("the Pixel's address reads %q", ip)
	}

	b.open(t, "/console/sessions/"+pixel+"/revoke")
	if got := b.text(t, `main form button[type="submit"]`); got != "Sign out Pixel 8 Pro" {
		t.Fatalf("the confirmation's button reads %q", got)
	}
	b.checkLayout(t, "confirm", axe)
	b.open(t, "/console/sessions/"+pixel+"/unrecognised")
	b.checkLayout(t, "", axe)
	b.open(t, "/console/password")
	b.checkLayout(t, "password", axe)
	// A form's refusal, and a page's message about what was done.
	b.do(t, chromedp.SendKeys(chromedp.ID("current_password"), "wrong-password"), chromedp.SendKeys(chromedp.ID("new_password"), "new-password-1"))
	b.wantPage(t, b.load(t, chromedp.Click(chromedp.CSS(`main form button[type="submit"]`))), 422)
	if got := b.text(t, `[role="alert"] p`); got != "Your current password is wrong." {
		t.Fatalf("the password form says %q", got)
	}
	b.open(t, "/console/?done=others&n=2")
	b.checkLayout(t, "", axe)
	b.open(t, "/console/activity")
	b.checkLayout(t, "activity", axe)
	r := b.load(t, chromedp.Navigate(base+"/console/nothing-here"))
	b.wantPage(t, r, 404)
	b.checkLayout(t, "", axe)
	// The check can fail: an image without a text alternative is found.
	run(t, b, chromedp.Evaluate[any](`document.querySelector("main").append(document.createElement("img")); undefined`))
	if vs := b.axeRun(t, axe); len(vs) != 1 || vs[0].ID != "image-alt" {
		t.Fatalf("axe-core on a page with an unlabelled image found %+v, want image-alt", vs)
	}

	admin := newTab(t, browser, base)
	admin.open(t, "/console/admin/users/"+alice.ID)
	admin.do(t, chromedp.SendKeys(chromedp.ID("username"), "root"), chromedp.SendKeys(chromedp.ID("password"), "root-password"))
	// Signing in goes back to the page that was asked for.
	admin.wantPage(t, admin.load(t, chromedp.Click(chromedp.CSS(`main form button[type="submit"]`))), 200)
	if loc := admin.location(t); loc != base+"/console/admin/users/"+alice.ID {
		t.Fatalf("after signing in for alice's page, the browser is at %s", loc)
	}
	if n := admin.checkLayout(t, "admin-user", axe); n != 13 {
		t.Fatalf("%d Sign-out buttons on alice's page, want 13", n)
	}
	admin.open(t, "/console/admin/users")
	admin.checkLayout(t, "admin-users", axe)
	admin.open(t, "/console/admin/users?username=user")
	admin.load(t, chromedp.Click(chromedp.CSS(`nav.pager a[rel="next"]`)))
	if got := admin.text(t, `nav.pager a[rel="prev"]`); got != "Previous page" {
		t.Fatalf("the second page of results links back with %q", got)
	}
	admin.checkLayout(t, "", axe)
	b.checkDocs(t)
	admin.checkDocs(t)
}
