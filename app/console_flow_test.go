package app_test

// The console's newer paths through the real app: signing in back to the
// page that was asked for (and nowhere else), why a session ended, changing
// my password, a device I do not recognise, finding accounts by the start
// of their name, the activity pages, error pages people can read.

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/sessiond/sessiond/admin"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/users"
)

func TestConsoleSignInReturnsToThePageAskedFor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", users.RoleUser)
	signIn := func(next string) resp {
		t.Helper()
		return e.console("POST", "/console/login", "", url.Values{"username": {"alice"}, "password": {"password123"},
			"next": {next}}, "Origin", sameOrigin)
	}

	// A page asked for while signed out: to sign in, and back to it.
	r := e.console("GET", "/console/activity?cursor=1-0", "", nil)
	wantRedirect(t, r, "/console/login?next=%2Fconsole%2Factivity%3Fcursor%3D1-0")
	wantPage(t, e.console("GET", r.Header.Get("Location"), "", nil), 200,
		`<input type="hidden" name="next" value="/console/activity?cursor=1-0">`)
	wantRedirect(t, signIn("/console/activity?cursor=1-0"), "/console/activity?cursor=1-0")
	wantRedirect(t, signIn("/console"), "/console")
	wantRedirect(t, signIn(""), "/console/")

	// Anywhere else, or anything that a browser could read as elsewhere: the
	// front page, and the sign-in form does not carry it.
	for _, next := range []string{
		"https://evil.example/", "//evil.example/", "/console//evil.example", "///evil.example", "/\\evil.example",
		"/console/\\evil.example", "/console\\..\\..\\x", "javascript:alert(1)", "/consolex", "/v1/me", "evil.example",
		"/console/../v1/me", "/console/%2e%2e/v1/me", "/console/%2E%2e/", "/console/%2f%2fevil.example", "/console/%5cevil",
		"/console/\r\nSet-Cookie:x=1", "/console/ x", "/console/\x00", "http:/console/", "/console/" + strings.Repeat("a", 1100),
		" /console/", "\t/console/",
	} {
		wantRedirect(t, signIn(next), "/console/")
		page := e.console("GET", "/console/login?next="+url.QueryEscape(next), "", nil)
		wantPage(t, page, 200)
		if strings.Contains(page.text(), `name="next"`) {
			t.Fatalf("the sign-in form carries next=%q:\n%s", next, page.Body)
		}
	}
	// A refused sign-in keeps where to go.
	r = e.console("POST", "/console/login", "", url.Values{"username": {"alice"}, "password": {"wrong-password"},
		"next": {"/console/password"}}, "Origin", sameOrigin)
	wantPage(t, r, 422, `name="next" value="/console/password"`)
	// A POST is not a page to come back to.
	wantRedirect(t, e.console("POST", "/console/sessions/revoke-all", "", url.Values{}), "/console/login")
}

// A browser whose session ended is told why, when sessiond knows.
func TestConsoleSaysWhyASessionEnded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxPerUser: 3})
	root, _ := e.admin()
	accounts := admin.Admin{Users: e.Users, Sessions: e.Sessions}
	byAdmin := audit.Actor{ID: root.ID}
	alice := e.createUser("alice", "password123", users.RoleUser)
	ended := func(cookie, page string) string {
		t.Helper()
		r := e.console("GET", page, cookie, nil)
		if r.Status != 303 || r.setCookie() == nil || r.setCookie().Value != "" {
			t.Fatalf("GET %s with an ended session: %d %q, cookie %q", page, r.Status, r.Header.Get("Location"), r.Header.Get("Set-Cookie"))
		}
		return r.Header.Get("Location")
	}
	for _, c := range []struct {
		name, done, says string
		end              func(cookie string)
	}{
		{"signed out from another device", "ended-elsewhere", "signed out from another of your devices", func(cookie string) {
			other := e.consoleSignIn("alice", "password123")
			sid := sessionOf(t, e, cookie)
			e.consolePost(t, other, "/console/sessions/"+sid+"/revoke", nil)
		}},
		{"others signed out", "ended-elsewhere", "signed out from another of your devices", func(string) {
			tok, _ := e.login("alice", "password123")
			if r := e.do("DELETE", "/v1/sessions", tok, nil); r.Status != 200 {
				t.Fatalf("revoke-others: %d", r.Status)
			}
		}},
		{"everywhere", "ended-everywhere", "You signed out everywhere from another device", func(string) {
			tok, _ := e.login("alice", "password123")
			if r := e.do("POST", "/v1/auth/logout-all", tok, nil); r.Status != 200 {
				t.Fatalf("logout-all: %d %s", r.Status, r.Body)
			}
		}},
		{"password changed", "ended-password", "Your password was changed on another device", func(string) {
			tok, _ := e.login("alice", "password123")
			if r := e.do("PUT", "/v1/me/password", tok, map[string]string{"current_password": "password123", "new_password": "password456"}); r.Status != 204 {
				t.Fatalf("password change: %d %s", r.Status, r.Body)
			}
			if r := e.do("PUT", "/v1/me/password", tok, map[string]string{"current_password": "password456", "new_password": "password123"}); r.Status != 204 {
				t.Fatalf("password change back: %d %s", r.Status, r.Body)
			}
		}},
		{"admin ended it", "ended-admin", "An administrator signed this browser out", func(cookie string) {
			if err := e.Sessions.Revoke(context.Background(), alice.ID, sessionOf(t, e, cookie), byAdmin); err != nil {
				t.Fatal(err)
			}
		}},
		{"admin force-logout", "ended-admin-all", "An administrator signed you out of every device", func(string) {
			if _, err := accounts.ForceLogout(context.Background(), alice.ID, byAdmin); err != nil {
				t.Fatal(err)
			}
		}},
		{"admin reset the password", "ended-reset", "An administrator reset your password", func(string) {
			pw := "password123"
			if _, _, err := accounts.Change(context.Background(), alice.ID, users.Change{Password: &pw}, byAdmin); err != nil {
				t.Fatal(err)
			}
		}},
		{"evicted", "ended-evicted", "more devices than the limit allows", func(string) {
			for range 3 {
				e.login("alice", "password123")
			}
		}},
		{"expired", "ended-expired", "Your session expired.", func(cookie string) {
			// As Redis expires an idle session: the key goes, nothing is recorded.
			if err := srv.Do(t, "DEL", e.Keys.Session(alice.ID, sessionOf(t, e, cookie))).Error(); err != nil {
				t.Fatal(err)
			}
		}},
		{"disabled", "ended-disabled", "Your account was disabled", func(string) {
			yes := true
			if _, _, err := accounts.Change(context.Background(), alice.ID, users.Change{Disabled: &yes}, byAdmin); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		cookie := e.consoleSignIn("alice", "password123")
		c.end(cookie)
		loc := ended(cookie, "/console/password")
		if want := "/console/login?done=" + c.done + "&next=%2Fconsole%2Fpassword"; loc != want {
			t.Fatalf("%s: to %q, want %q", c.name, loc, want)
		}
		wantPage(t, e.console("GET", loc, "", nil), 200, c.says, `name="next" value="/console/password"`)
	}
	// A cookie that is not a token learns nothing.
	wantRedirect(t, e.console("GET", "/console/", "not.a.token", nil), "/console/login?done=ended")
}

// sessionOf is the session a console cookie's token names.
func sessionOf(t *testing.T, e *env, cookie string) string {
	t.Helper()
	c, err := e.Tokens.Verify(cookie)
	if err != nil {
		t.Fatal(err)
	}
	return c.SessionID
}

func TestConsoleChangePassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxFailures: 3})
	e.createUser("alice", "password123", users.RoleUser)
	phone, _ := e.login("alice", "password123")
	cookie := e.consoleSignIn("alice", "password123")

	page := e.console("GET", "/console/password", cookie, nil)
	wantPage(t, page, 200, "<h1>Change your password</h1>", `<label for="current_password">Current password</label>`,
		`autocomplete="current-password"`, `<label for="new_password">New password</label>`, `autocomplete="new-password"`,
		`action="/console/password"`, `href="/console/password" aria-current="page"`)
	csrf := csrfOf(t, page)
	post := func(current, next string, headers ...string) resp {
		return e.console("POST", "/console/password", cookie, url.Values{"csrf": {csrf}, "current_password": {current},
			"new_password": {next}}, append([]string{"Origin", sameOrigin}, headers...)...)
	}
	// CSRF as every form: without the token, refused.
	wantPage(t, e.console("POST", "/console/password", cookie, url.Values{"current_password": {"password123"},
		"new_password": {"password456"}}, "Origin", sameOrigin), 403)
	for _, c := range []struct {
		current, next string
		status        int
		says, invalid string
	}{
		{"", "password456", 422, "Enter your current password.", "current_password"},
		{"password123", "", 422, "Enter a new password.", "new_password"},
		{"password123", "short", 400, "The new password must be at least 8 characters.", "new_password"},
		{"password123", strings.Repeat("x", 73), 400, "The new password must be at most 72 bytes.", "new_password"},
		{"wrong-password", "password456", 422, "Your current password is wrong.", "current_password"},
	} {
		r := post(c.current, c.next)
		wantPage(t, r, c.status, c.says, `role="alert"`)
		if !regexp.MustCompile(`id="` + c.invalid + `"[^>]*aria-invalid="true"`).Match(r.Body) {
			t.Fatalf("%q: the %s field is not marked invalid:\n%s", c.says, c.invalid, r.Body)
		}
	}
	if e.meStatus(phone) != 200 || !e.canLogin("alice", "password123") {
		t.Fatal("a refused change changed the account")
	}
	r := post("password123", "password456")
	// The phone's session and canLogin's ended.
	wantRedirect(t, r, "/console/?done=password-changed&n=2")
	wantPage(t, e.console("GET", r.Header.Get("Location"), cookie, nil), 200,
		"Your password was changed. Your other devices were signed out: 2 sessions ended.")
	if e.meStatus(phone) != 401 || e.meStatus(cookie) != 200 || !e.canLogin("alice", "password456") {
		t.Fatal("after the change: the other session lives, this one ended, or the new password does not work")
	}
	// Too many wrong current passwords: how long to wait, in words.
	for range 5 {
		if r = post("wrong-again", "password789"); r.Status != 422 {
			break
		}
	}
	wantPage(t, r, 429, "Too many wrong passwords. Try again in 15 minutes.")
}

// "Don't recognise it?": the device is signed out, then the password form.
func TestConsoleUnrecognisedDevice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", users.RoleUser)
	stranger, sid := e.login("alice", "password123")
	cookie := e.consoleSignIn("alice", "password123")
	me := sessionOf(t, e, cookie)

	devices := e.console("GET", "/console/", cookie, nil)
	path := "/console/sessions/" + sid + "/unrecognised"
	wantPage(t, devices, 200, `href="`+path+`">Don’t recognise it?`)
	if strings.Contains(devices.text(), "/console/sessions/"+me+"/unrecognised") {
		t.Fatal("this browser is offered as a device not recognised")
	}
	wantPage(t, e.console("GET", "/console/sessions/"+me+"/unrecognised", cookie, nil), 404)
	confirm := e.console("GET", path, cookie, nil)
	wantPage(t, confirm, 200, "Sign out test device and change your password?", "someone else may know your password",
		`action="`+path+`"`, "<bdi>Sign out test device</bdi></button>")
	r := e.console("POST", path, cookie, url.Values{"csrf": {csrfOf(t, confirm)}}, "Origin", sameOrigin)
	loc := r.Header.Get("Location")
	if r.Status != 303 || !strings.HasPrefix(loc, "/console/password?done=unrecognised&") {
		t.Fatalf("after signing out a stranger: %d to %q", r.Status, loc)
	}
	if e.meStatus(stranger) != 401 {
		t.Fatal("the device not recognised is still signed in")
	}
	wantPage(t, e.console("GET", loc, cookie, nil), 200, "Signed out test device. If that was not you, choose a new password now",
		"<h1>Change your password</h1>")
	wantPage(t, e.console("POST", "/console/sessions/"+me+"/unrecognised", cookie, url.Values{"csrf": {csrfOf(t, confirm)}},
		"Origin", sameOrigin), 404)
	if e.meStatus(cookie) != 200 {
		t.Fatal("this browser was signed out as not recognised")
	}
}

// Finding accounts by the start of their name, with Previous and Next.
func TestConsoleAdminSearchPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.admin()
	for i := range 45 {
		e.createUser(fmt.Sprintf("Sam%02d", i), "password123", users.RoleUser)
	}
	e.createUser("samantha", "password123", users.RoleUser)
	e.createUser("sebastian", "password123", users.RoleUser)
	cookie := e.consoleSignIn("root", "root-password")
	row := regexp.MustCompile(`<a href="/console/admin/users/[0-9a-f-]{36}"><bdi>([^<]+)</bdi></a>`)
	link := func(r resp, rel string) string {
		m := regexp.MustCompile(`<a href="([^"]+)" rel="` + rel + `">`).FindSubmatch(r.Body)
		if m == nil {
			return ""
		}
		return strings.ReplaceAll(string(m[1]), "&amp;", "&")
	}
	var pages [][]string
	path := "/console/admin/users?username=sAm"
	for path != "" {
		if len(pages) > 4 {
			t.Fatal("too many pages")
		}
		r := e.console("GET", path, cookie, nil)
		wantPage(t, r, 200, "Names starting with “sAm”")
		var names []string
		for _, m := range row.FindAllStringSubmatch(string(r.Body), -1) {
			names = append(names, m[1])
		}
		if (len(pages) == 0) != (link(r, "prev") == "") {
			t.Fatalf("page %d: previous link %q", len(pages), link(r, "prev"))
		}
		pages = append(pages, names)
		path = link(r, "next")
	}
	var all []string
	for _, p := range pages {
		all = append(all, p...)
	}
	if len(pages) != 3 || len(all) != 46 || all[0] != "Sam00" || all[44] != "Sam44" || all[45] != "samantha" {
		t.Fatalf("%d pages, %d names: %v", len(pages), len(all), all)
	}
	// Back from the last page gives the same pages.
	r := e.console("GET", "/console/admin/users?username=sAm", cookie, nil)
	r = e.console("GET", link(r, "next"), cookie, nil)
	r = e.console("GET", link(r, "next"), cookie, nil)
	r = e.console("GET", link(r, "prev"), cookie, nil)
	wantPage(t, r, 200, "<bdi>"+pages[1][0]+"</bdi>", "<bdi>"+pages[1][19]+"</bdi>")
	if link(r, "prev") == "" || link(r, "next") == "" {
		t.Fatal("the middle page, reached going back, lacks a link")
	}
	// A cursor of another search is refused, not mixed in.
	wantPage(t, e.console("GET", strings.Replace(link(r, "next"), "username=sAm", "username=seb", 1), cookie, nil), 400)
}

func TestConsoleActivityPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", users.RoleUser)
	for range 24 {
		e.login("alice", "password123", "User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
	}
	cookie := e.consoleSignIn("alice", "password123")
	devices := e.console("GET", "/console/", cookie, nil)
	wantPage(t, devices, 200, `<a href="/console/activity">All security activity</a>`, "Firefox on Linux")
	if n := strings.Count(devices.text(), `<li class="event">`); n != 10 {
		t.Fatalf("the devices page shows %d events, want the newest 10", n)
	}
	r := e.console("GET", "/console/activity", cookie, nil)
	wantPage(t, r, 200, "<h1>Security activity</h1>", `rel="next">Older events</a>`, `aria-current="page">Activity</a>`)
	if n := strings.Count(r.text(), `<li class="event">`); n != 20 {
		t.Fatalf("the activity page shows %d events, want 20", n)
	}
	older := regexp.MustCompile(`<a href="([^"]+)" rel="next">`).FindSubmatch(r.Body)
	r = e.console("GET", strings.ReplaceAll(string(older[1]), "&amp;", "&"), cookie, nil)
	wantPage(t, r, 200, "Older events", `<a href="/console/activity">Newest events</a>`, "Account created")
	wantPage(t, e.console("GET", "/console/activity?cursor=garbage", cookie, nil), 400, "<h1>Something in the form is not right</h1>")
}

// Error pages say what happened in words, under a heading people read.
func TestConsoleErrorPagesInWords(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", users.RoleUser)
	cookie := e.consoleSignIn("alice", "password123")
	page := e.console("GET", "/console/", cookie, nil)
	for _, c := range []struct {
		method, path string
		form         url.Values
		status       int
		heading, msg string
	}{
		{"GET", "/console/nothing", nil, 404, "Page not found", "There is no such page."},
		{"GET", "/console/sessions/0d9b7a4c-5e6f-4a1b-8c2d-3e4f5a6b7c8d/revoke", nil, 404, "Page not found", "That device is not signed in"},
		{"GET", "/console/admin/users", nil, 403, "For administrators only", "This page is for administrators."},
		{"POST", "/console/sessions/revoke-others", url.Values{"csrf": {"forged"}}, 403, "This form has expired", "reload the page"},
		{"POST", "/console/sessions/revoke-others", url.Values{"csrf": {csrfOf(t, page)}}, 403, "This form came from another site", "another site"},
	} {
		var headers []string
		if c.heading == "This form came from another site" {
			headers = []string{"Origin", "http://evil.example"}
		}
		r := e.console(c.method, c.path, cookie, c.form, headers...)
		wantPage(t, r, c.status, "<h1>"+c.heading+"</h1>", "<title>"+c.heading+" · sessiond console</title>", c.msg)
	}
}
