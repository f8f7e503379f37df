package app

// The web console: pages for people (my devices, my security activity) and
// admins (find an account, change it, end its sessions), served under
// /console/ by sessiond itself. It is server-rendered HTML; its
// Content-Security-Policy allows no script at all, except on the three pages
// that can use a passkey (console_passkeys.go), which load the one script the
// binary serves, and only when passkeys are configured.
//
// The console is its own small Fiber app, mounted under /console: it is not
// part of the API (app/openapi.json), its errors are HTML pages, and it
// authenticates with a cookie that only its own routes read. The API keeps
// ignoring cookies.
//
// Its cookie holds the session's JWT, HttpOnly and SameSite=Strict, on
// Path=/console. Every state-changing request is a POST form carrying a
// CSRF token derived from that JWT (stateless, bound to the session, valid
// on every replica); every POST whose Origin is another site's is refused.

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/passkeys"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/users"
)

const (
	consolePath   = "/console"
	consoleCookie = "sessiond_console"
	// consoleCSP allows the console's own stylesheet and forms, and nothing
	// else: no script of any kind, no inline style, no framing.
	consoleCSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; " +
		"frame-ancestors 'none'; base-uri 'none'"
	// consoleScriptCSP is consoleCSP for a page that carries passkeys.js:
	// script files from the console's own origin (never inline, never eval)
	// and fetch to it. 'self' admits no other script: no other response of
	// the origin is JavaScript (pages, CSS, PNG, JSON, text), and nosniff,
	// on every response, keeps a browser from running one as script.
	consoleScriptCSP = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; " +
		"img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	consoleDevice   = "Web console"
	consolePlatform = "web"
	// csrfContext separates the console's CSRF tokens from any other use of
	// a hash of the session token.
	csrfContext = "sessiond console csrf\x00"
	// consolePageSize is how many accounts, and how many events, a page shows.
	consolePageSize = 20
)

//go:embed console/*.html console/console.css console/passkeys.js
var consoleFiles embed.FS

var (
	consoleCSS    = mustRead("console/console.css")
	consoleScript = mustRead("console/passkeys.js")
	consolePages  = parseConsolePages()
)

func mustRead(name string) []byte {
	b, err := consoleFiles.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// consolePartials are the templates every page may use, beside the page's
// own file: the layout, and the pieces pages share (device cards, activity,
// icons). A new page is a new file in console/ and needs nothing here.
var consolePartials = []string{"layout", "cards", "icons"}

// parseConsolePages parses each page with the layout and the partials.
func parseConsolePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"when":      exactOrDash,
		"iso":       rfc3339,
		"eventText": eventText,
		"orDash": func(s string) string {
			if s == "" {
				return "—"
			}
			return s
		},
	}
	var files []string
	for _, p := range consolePartials {
		files = append(files, "console/"+p+".html")
	}
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(consoleFiles, files...))
	names, err := fs.Glob(consoleFiles, "console/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(name, "console/"), ".html")
		if slices.Contains(consolePartials, base) {
			continue
		}
		pages[base] = template.Must(template.Must(layout.Clone()).ParseFS(consoleFiles, name))
	}
	return pages
}

func exactOrDash(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return exactTime(t)
}

// Errors the console answers with its own pages.
var (
	errConsoleCrossSite = errcode.New(errcode.Forbidden,
		"this form was sent from another site, so it was refused")
	errConsoleCSRF = errcode.New(errcode.Forbidden,
		"this form has expired or did not come from this console; go back, reload the page and try again")
	errConsoleNotAdmin = errcode.New(errcode.Forbidden, "this page is for administrators")
)

// console mounts the console under /console.
func (h *handlers) console(f *fiber.App) {
	con := fiber.New(fiber.Config{ErrorHandler: h.consoleError, DisableStartupMessage: true})
	con.Use(h.consoleGuard)
	con.Get("/static/console.css", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, "text/css; charset=utf-8")
		return c.Send(consoleCSS)
	})
	con.Get("/static/passkeys.js", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, "text/javascript; charset=utf-8")
		return c.Send(consoleScript)
	})
	con.Get("/login", h.consoleLoginPage)
	con.Post("/login", h.consoleLogin)
	con.Post("/login/code", h.consoleLoginCode)
	h.consolePasskeyLogin(con)

	in := con.Group("", h.consoleAuth)
	in.Post("/logout", h.consoleLogout)
	in.Get("/", h.consoleDevices)
	in.Get("/sessions/revoke-others", h.consoleConfirmMine("others"))
	in.Post("/sessions/revoke-others", h.consoleRevokeOthers)
	in.Get("/sessions/revoke-all", h.consoleConfirmMine("all"))
	in.Post("/sessions/revoke-all", h.consoleRevokeAll)
	in.Get("/sessions/:id/revoke", h.consoleConfirmMine("one"))
	in.Post("/sessions/:id/revoke", h.consoleRevokeOne)
	h.consoleMFA(in)
	h.consolePasskeys(in)
	in.Get("/sessions/:id/unrecognised", h.consoleConfirmMine("unrecognised"))
	in.Post("/sessions/:id/unrecognised", h.consoleRevokeOne)
	in.Get("/activity", h.consoleActivity)
	in.Get("/password", h.consolePasswordPage)
	in.Post("/password", h.consoleChangePassword)

	adm := in.Group("/admin", h.consoleRequireAdmin)
	adm.Get("/users", h.consoleUsers)
	adm.Get("/users/:id", h.consoleUser)
	adm.Get("/users/:id/sessions/:sid/revoke", h.consoleConfirmAdminRevoke)
	adm.Post("/users/:id/sessions/:sid/revoke", h.consoleAdminRevoke)
	for _, name := range slices.Sorted(maps.Keys(adminActions)) {
		adm.Get("/users/:id/"+name, h.consoleConfirmAdmin(name))
		adm.Post("/users/:id/"+name, h.consoleAdminDo(name))
	}
	// A path no console route takes falls through to the app's 404, which
	// the console's error handler renders as a page. Fiber adds a mounted
	// app's routes to the app's when it starts; they are pages, not API
	// operations, and app/openapi.json does not list them.
	f.Mount(consolePath, con)
}

// consoleGuard gives every console response its headers and refuses a POST
// from another site.
func (h *handlers) consoleGuard(c *fiber.Ctx) error {
	if p := c.Path(); len(p) > len(consolePath) && p[len(consolePath)] != '/' {
		// "/consolefoo" shares the prefix but is no console path.
		c.Locals(unmatchedKey{}, true)
		return errNotFound
	}
	setConsoleHeaders(c)
	if c.Method() == fiber.MethodPost && !sameOrigin(c) {
		return errConsoleCrossSite
	}
	return c.Next()
}

// setConsoleHeaders replaces the API's policy with the console's; the rest
// of what setResponseMeta set (request id, nosniff, no framing, no-store)
// stays.
func setConsoleHeaders(c *fiber.Ctx) {
	c.Set("Content-Security-Policy", consoleCSP)
	c.Set("Cache-Control", "no-store")
	// same-origin, not the API's no-referrer: under no-referrer a browser
	// sends "Origin: null" with the console's own form posts, which
	// sameOrigin must then refuse. Other sites still get no referrer.
	c.Set("Referrer-Policy", "same-origin")
}

// sameOrigin reports whether a POST may have come from the console itself:
// an Origin header, when there is one, must be the request's own
// scheme://host, and a browser that says the request is cross-site is
// refused too.
func sameOrigin(c *fiber.Ctx) bool {
	if origin := c.Get(fiber.HeaderOrigin); origin != "" {
		return strings.EqualFold(origin, c.Protocol()+"://"+c.Hostname())
	}
	return c.Get("Sec-Fetch-Site") != "cross-site"
}

// csrfToken is the CSRF token of the session whose JWT is token.
func csrfToken(token string) string {
	sum := sha256.Sum256([]byte(csrfContext + token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

type consoleTokenKey struct{}

func consoleToken(c *fiber.Ctx) string {
	t, _ := c.Locals(consoleTokenKey{}).(string)
	return t
}

// consoleAuth requires the console's cookie, checked as a bearer token is
// (checkSession). Without one, or with one whose session is over, the
// browser goes to the sign-in page, and comes back after it. A POST must also carry the session's
// CSRF token: in the form's csrf field, or (the JSON requests of
// passkeys.js) in the X-CSRF-Token header.
func (h *handlers) consoleAuth(c *fiber.Ctx) error {
	token := c.Cookies(consoleCookie)
	if token == "" {
		return c.Redirect(loginURL("", nextOf(c)), fiber.StatusSeeOther)
	}
	err := h.checkSession(c, token)
	switch {
	case errcode.Of(err) == errcode.Unauthorized:
		return h.consoleEnded(c, token)
	case err != nil:
		return err
	}
	c.Locals(consoleTokenKey{}, token)
	if c.Method() == fiber.MethodPost {
		got := c.Get(csrfHeader)
		if got == "" {
			got = formValue(c, "csrf")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(csrfToken(token))) != 1 {
			return errConsoleCSRF
		}
	}
	return c.Next()
}

func setConsoleCookie(c *fiber.Ctx, token string, expires time.Time) {
	c.Cookie(&fiber.Cookie{Name: consoleCookie, Value: token, Path: consolePath,
		MaxAge: max(int(time.Until(expires)/time.Second), 1), Secure: c.Protocol() == "https",
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode})
}

func clearConsoleCookie(c *fiber.Ctx) {
	c.Cookie(&fiber.Cookie{Name: consoleCookie, Value: "", Path: consolePath,
		Expires: time.Unix(0, 0), Secure: c.Protocol() == "https",
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode})
}

// consoleUserInfo is who is signed in, for the page header.
type consoleUserInfo struct {
	UserID   string
	Username string
	Admin    bool
}

// consolePage is what every console page is rendered with.
type consolePage struct {
	// Passkeys is set by renderConsole: the page carries passkeys.js (see
	// consoleScriptPages) and its policy allows it.
	Passkeys bool
	Title    string
	Nav      string // which part of the navigation is the current page
	Me       consoleUserInfo
	CSRF     string
	Status   string // a message about what was just done (role="status")
	Error    string // what went wrong (role="alert")
	Data     any
}

// renderConsole writes a page with the layout, as HTML with the given status.
func (h *handlers) renderConsole(c *fiber.Ctx, status int, name string, p consolePage) error {
	t, ok := consolePages[name]
	if !ok {
		return errors.New("console: no page " + name)
	}
	if token := consoleToken(c); token != "" {
		cl := callerOf(c)
		p.Me = consoleUserInfo{UserID: cl.UserID, Username: cl.Username, Admin: cl.Role == users.RoleAdmin}
		p.CSRF = csrfToken(token)
	}
	if p.Status == "" {
		p.Status = doneMessage(c)
	}
	if p.Passkeys = h.Passkeys != nil && consoleScriptPages[name]; p.Passkeys {
		c.Set("Content-Security-Policy", consoleScriptCSP)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		return err
	}
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Send(buf.Bytes())
}

// errorHeadings head the console's error pages, by status: what a person
// reads first, not the HTTP status's name.
var errorHeadings = map[int]string{
	400: "Something in the form is not right",
	403: "You cannot do that here",
	404: "Page not found",
	405: "Page not found",
	408: "That took too long",
	409: "That cannot be done now",
	413: "That is too much to send",
	429: "Too many attempts",
	431: "That is too much to send",
	500: "Something went wrong",
	503: "The service is unavailable",
}

// consoleError renders an error (answered by answerError, as the API's
// are) as an HTML page with its status.
func (h *handlers) consoleError(c *fiber.Ctx, err error) error {
	p, retry := h.answerError(c, err)
	setConsoleHeaders(c)
	heading, msg := errorHeadings[p.Status], sentence(p.Detail)
	if heading == "" {
		heading = "That did not work"
	}
	switch {
	case errors.Is(err, errConsoleCSRF):
		heading = "This form has expired"
	case errors.Is(err, errConsoleCrossSite):
		heading = "This form came from another site"
	case errors.Is(err, errConsoleNotAdmin):
		heading = "For administrators only"
	case errors.Is(err, sessions.ErrNotFound):
		msg = "That device is not signed in: it may have been signed out already."
	case errors.Is(err, passkeys.ErrNotFound):
		msg = "That passkey is not registered: it may have been removed already."
	case p.Code == errcode.NotFound:
		msg = "There is no such page."
	case p.Code == errcode.TooManyAttempts:
		msg = "Too many attempts. Try again in " + waitWords(retry) + "."
	case p.Code == errcode.Unavailable:
		msg = "The service is unavailable. Try again in a moment."
	case p.Code == errcode.Internal:
		msg = "Something went wrong on our side."
	}
	if wantsJSON(c) {
		// A request of passkeys.js: it shows the message where the
		// person is, on the page it was sent from.
		return consoleJSONError(c, p.Status, err, msg)
	}
	if rerr := h.renderConsole(c, p.Status, "error", consolePage{Title: heading, Error: msg,
		Data: struct{ Title string }{heading}}); rerr != nil {
		c.Status(p.Status)
		c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
		return c.SendString(msg)
	}
	return nil
}

// Signing in and out.

type loginData struct {
	Username string
	Next     string // the page to go to once signed in
}

// loginRefusals are what the sign-in form says about the refusals it shows
// itself, by code (%s: how long to wait); any other error is an error page.
var loginRefusals = map[string]string{
	errcode.InvalidCredentials: "The username or password is wrong.",
	errcode.AccountDisabled:    "This account is disabled.",
	errcode.TooManyAttempts:    "Too many attempts. Try again in %s.",
	errcode.Unavailable:        "The service is unavailable. Try again in a moment.",
}

func (h *handlers) consoleLoginPage(c *fiber.Ctx) error {
	return h.renderConsole(c, fiber.StatusOK, "login", consolePage{Title: "Sign in",
		Data: loginData{Next: safeNext(c.Query("next"))}})
}

// consoleLogin signs in as POST /v1/auth/login does, and keeps the token in
// the console's cookie.
func (h *handlers) consoleLogin(c *fiber.Ctx) error {
	username, password := formValue(c, "username"), formValue(c, "password")
	form := loginData{Username: username, Next: safeNext(formValue(c, "next"))}
	if username == "" || password == "" {
		return h.renderConsole(c, fiber.StatusUnprocessableEntity, "login", consolePage{Title: "Sign in",
			Error: "Enter your username and password.", Data: form})
	}
	meta := sessions.Meta{DeviceName: consoleDevice, Platform: consolePlatform,
		UserAgent: truncateUTF8(c.Get(fiber.HeaderUserAgent), maxUserAgent), IP: h.clientIP(c)}
	sess, token, err := h.openSession(c, username, password, meta)
	var mfa *mfaRequiredError
	if errors.As(err, &mfa) {
		return h.consoleMFAStep(c, mfa.token, returnTo(form.Next), "", fiber.StatusOK)
	}
	if err != nil {
		msg, ok := loginRefusals[errcode.Of(err)]
		if !ok {
			return err
		}
		// Answered as every error is (Retry-After, metrics, log), on the
		// sign-in form rather than an error page.
		p, retry := h.answerError(c, err)
		status := p.Status
		if p.Code == errcode.InvalidCredentials {
			// Not the API's 401: there is no Authorization to challenge,
			// only a form to correct.
			status = fiber.StatusUnprocessableEntity
		}
		msg = strings.Replace(msg, "%s", waitWords(retry), 1)
		return h.renderConsole(c, status, "login", consolePage{Title: "Sign in", Error: msg, Data: form})
	}
	setConsoleCookie(c, token, sess.ExpiresAt)
	if form.Next != "" {
		return c.Redirect(form.Next, fiber.StatusSeeOther)
	}
	return c.Redirect(consolePath+"/", fiber.StatusSeeOther)
}

// consoleLogout ends the console's own session.
func (h *handlers) consoleLogout(c *fiber.Ctx) error {
	if err := h.endOwnSession(c); err != nil {
		return err
	}
	clearConsoleCookie(c)
	return c.Redirect(consolePath+"/login?done=signed-out", fiber.StatusSeeOther)
}

// My devices.

// Administration.
