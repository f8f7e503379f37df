package app

// The web console: pages for people (my devices, my security activity) and
// admins (find an account, change it, end its sessions), served under
// /console/ by sessiond itself. It is server-rendered HTML with no
// JavaScript, so its Content-Security-Policy allows no script at all.
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
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
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
	consoleDevice   = "Web console"
	consolePlatform = "web"
	// csrfContext separates the console's CSRF tokens from any other use of
	// a hash of the session token.
	csrfContext = "sessiond console csrf\x00"
	// consolePageSize is how many accounts, and how many events, a page shows.
	consolePageSize = 20
)

//go:embed console/*.html console/console.css
var consoleFiles embed.FS

var (
	consoleCSS   = mustRead("console/console.css")
	consolePages = parseConsolePages()
)

func mustRead(name string) []byte {
	b, err := consoleFiles.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// parseConsolePages parses each page with the layout it fills in.
func parseConsolePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2 Jan 2006, 15:04 UTC")
		},
		"iso":       rfc3339,
		"eventText": eventText,
		"orDash": func(s string) string {
			if s == "" {
				return "—"
			}
			return s
		},
		"sessionTable": func(id, caption, base string, rows []sessionRow) tableData[sessionRow] {
			return tableData[sessionRow]{ID: id, Caption: caption, Base: base, Rows: rows}
		},
		"eventTable": func(id, caption string, rows []eventRow) tableData[eventRow] {
			return tableData[eventRow]{ID: id, Caption: caption, Rows: rows}
		},
	}
	layout := template.Must(template.New("layout.html").Funcs(funcs).
		ParseFS(consoleFiles, "console/layout.html", "console/partials.html"))
	names, err := fs.Glob(consoleFiles, "console/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(name, "console/"), ".html")
		if base == "layout" || base == "partials" {
			continue
		}
		pages[base] = template.Must(template.Must(layout.Clone()).ParseFS(consoleFiles, name))
	}
	return pages
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
	con.Get("/login", h.consoleLoginPage)
	con.Post("/login", h.consoleLogin)

	in := con.Group("", h.consoleAuth)
	in.Post("/logout", h.consoleLogout)
	in.Get("/", h.consoleDevices)
	in.Get("/sessions/revoke-others", h.consoleConfirmMine("others"))
	in.Post("/sessions/revoke-others", h.consoleRevokeOthers)
	in.Get("/sessions/revoke-all", h.consoleConfirmMine("all"))
	in.Post("/sessions/revoke-all", h.consoleRevokeAll)
	in.Get("/sessions/:id/revoke", h.consoleConfirmMine("one"))
	in.Post("/sessions/:id/revoke", h.consoleRevokeOne)

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
// browser goes to the sign-in page. A POST must also carry the session's
// CSRF token.
func (h *handlers) consoleAuth(c *fiber.Ctx) error {
	token := c.Cookies(consoleCookie)
	if token == "" {
		return c.Redirect(consolePath+"/login", fiber.StatusSeeOther)
	}
	err := h.checkSession(c, token)
	switch {
	case errcode.Of(err) == errcode.Unauthorized:
		return h.consoleEnded(c)
	case err != nil:
		return err
	}
	c.Locals(consoleTokenKey{}, token)
	if c.Method() == fiber.MethodPost {
		got := formValue(c, "csrf")
		if subtle.ConstantTimeCompare([]byte(got), []byte(csrfToken(token))) != 1 {
			return errConsoleCSRF
		}
	}
	return c.Next()
}

// consoleEnded clears a cookie whose session is over and sends the browser
// to sign in again.
func (h *handlers) consoleEnded(c *fiber.Ctx) error {
	clearConsoleCookie(c)
	return c.Redirect(consolePath+"/login?done=ended", fiber.StatusSeeOther)
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
	Title  string
	Nav    string // which part of the navigation is the current page
	Me     consoleUserInfo
	CSRF   string
	Status string // a message about what was just done (role="status")
	Error  string // what went wrong (role="alert")
	Data   any
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
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		return err
	}
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Send(buf.Bytes())
}

// doneMessages say what the action a browser was redirected from did
// (?done=, with ?n= for how many). Only these texts are shown: nothing of
// the query string is echoed.
var doneMessages = map[string]string{
	"signed-out":     "You have signed out.",
	"everywhere":     "You have been signed out everywhere.",
	"ended":          "Your session has ended. Sign in again.",
	"revoked":        "The device was signed out.",
	"others":         "Signed out of your other devices: %n ended.",
	"forced":         "Signed out everywhere: %n ended.",
	"session-ended":  "The session was ended.",
	"disabled":       "The account is disabled and all its sessions ended.",
	"enabled":        "The account is enabled.",
	"made-admin":     "The account is now an admin.",
	"made-user":      "The account is now a regular user.",
	"password-reset": "The password was reset and all the account's sessions ended.",
	"deleted":        "The account was deleted.",
}

func doneMessage(c *fiber.Ctx) string {
	msg := doneMessages[c.Query("done")]
	if strings.Contains(msg, "%n") {
		n, err := strconv.Atoi(c.Query("n"))
		if err != nil || n < 0 {
			n = 0
		}
		msg = strings.Replace(msg, "%n", plural(n, "session"), 1)
	}
	return msg
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// sentence makes an error's message a sentence: capitalized, with a stop.
func sentence(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[n:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// consoleError renders an error (answered by answerError, as the API's
// are) as an HTML page with its status.
func (h *handlers) consoleError(c *fiber.Ctx, err error) error {
	p, _ := h.answerError(c, err)
	setConsoleHeaders(c)
	msg := sentence(p.Detail)
	switch {
	case errors.Is(err, errNotFound):
		msg = "There is no such page."
	case p.Code == errcode.Unavailable:
		msg = "The service is unavailable, try again."
	case p.Code == errcode.Internal:
		msg = "Something went wrong on our side."
	}
	if rerr := h.renderConsole(c, p.Status, "error", consolePage{Title: p.Title, Error: msg,
		Data: struct{ Title string }{p.Title}}); rerr != nil {
		c.Status(p.Status)
		c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
		return c.SendString(msg)
	}
	return nil
}

// Signing in and out.

type loginData struct{ Username string }

// loginRefusals are what the sign-in form says about the refusals it shows
// itself, by code (%s: how long to wait); any other error is an error page.
var loginRefusals = map[string]string{
	errcode.InvalidCredentials: "The username or password is wrong.",
	errcode.AccountDisabled:    "This account is disabled.",
	errcode.TooManyAttempts:    "Too many attempts, try again in %s.",
	errcode.Unavailable:        "The service is unavailable, try again.",
}

func (h *handlers) consoleLoginPage(c *fiber.Ctx) error {
	return h.renderConsole(c, fiber.StatusOK, "login", consolePage{Title: "Sign in", Data: loginData{}})
}

// consoleLogin signs in as POST /v1/auth/login does, and keeps the token in
// the console's cookie.
func (h *handlers) consoleLogin(c *fiber.Ctx) error {
	username, password := formValue(c, "username"), formValue(c, "password")
	if username == "" || password == "" {
		return h.renderConsole(c, fiber.StatusUnprocessableEntity, "login", consolePage{Title: "Sign in",
			Error: "Enter your username and password.", Data: loginData{username}})
	}
	meta := sessions.Meta{DeviceName: consoleDevice, Platform: consolePlatform,
		UserAgent: truncateUTF8(c.Get(fiber.HeaderUserAgent), maxUserAgent), IP: h.clientIP(c)}
	sess, token, err := h.openSession(c, username, password, meta)
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
		msg = strings.Replace(msg, "%s", plural(retry, "second"), 1)
		return h.renderConsole(c, status, "login", consolePage{Title: "Sign in", Error: msg, Data: loginData{username}})
	}
	setConsoleCookie(c, token, sess.ExpiresAt)
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

type sessionRow struct {
	sessions.Session
	Label   string
	Current bool
}

type eventRow struct {
	audit.Event
	By string // who did it, when it was not the account itself
}

// tableData is a table of sessions or events: the heading that labels it
// (its id), its caption, the rows, and for sessions the path their sign-out
// links start with.
type tableData[R any] struct {
	ID, Caption, Base string
	Rows              []R
}

type devicesData struct {
	Sessions []sessionRow
	Events   []eventRow
}

// deviceLabel names a session's device for people.
func deviceLabel(s sessions.Session) string {
	switch {
	case s.DeviceName != "":
		return s.DeviceName
	case s.Platform != "":
		return "a device (" + s.Platform + ")"
	}
	return "an unnamed device"
}

func sessionRows(list []sessions.Session, current string) []sessionRow {
	rows := make([]sessionRow, len(list))
	for i, s := range list {
		rows[i] = sessionRow{Session: s, Label: deviceLabel(s), Current: current != "" && s.ID == current}
	}
	return rows
}

func eventRows(evs []audit.Event) []eventRow {
	rows := make([]eventRow, len(evs))
	for i, e := range evs {
		rows[i] = eventRow{Event: e}
		switch {
		case strings.HasPrefix(e.ActorID, "cli:"):
			rows[i].By = "by an operator"
		case e.ActorID != "" && e.ActorID != e.UserID:
			rows[i].By = "by an administrator"
		}
	}
	return rows
}

// eventWords are the event types in plain words.
var eventWords = map[string]string{
	audit.LoginSucceeded:     "Signed in",
	audit.LoginFailed:        "Failed sign-in attempt",
	audit.LoginThrottled:     "Sign-in blocked after too many attempts",
	audit.SessionRevoked:     "Session signed out",
	audit.SessionsRevokedAll: "Sessions signed out",
	audit.PasswordChanged:    "Password changed",
	audit.AccountCreated:     "Account created",
	audit.AccountDisabled:    "Account disabled",
	audit.AccountEnabled:     "Account enabled",
	audit.AccountRoleChanged: "Role changed",
	audit.AccountDeleted:     "Account deleted",
	audit.ClientAuthFailed:   "Failed client authentication",
}

func eventText(typ string) string {
	if w, ok := eventWords[typ]; ok {
		return w
	}
	return typ
}

func (h *handlers) consoleDevices(c *fiber.Ctx) error {
	cl := callerOf(c)
	ctx := c.UserContext()
	list, err := h.Sessions.List(ctx, cl.UserID)
	if err != nil {
		return err
	}
	evs, _, err := h.Audit.List(ctx, audit.Filter{UserID: cl.UserID, Limit: consolePageSize})
	if err != nil {
		return err
	}
	return h.renderConsole(c, fiber.StatusOK, "devices", consolePage{Title: "My devices", Nav: "devices",
		Data: devicesData{Sessions: sessionRows(list, cl.SessionID), Events: eventRows(evs)}})
}

// confirmData is a confirmation page: a question and the POST form that
// does it.
type confirmData struct {
	Heading  string
	Question string
	Explain  string
	Action   string // where the form posts
	Button   string
	Danger   bool
	Password bool // the form asks for a new password
	Cancel   string
}

func (h *handlers) renderConfirm(c *fiber.Ctx, status int, d confirmData, errMsg string) error {
	return h.renderConsole(c, status, "confirm", consolePage{Title: d.Heading, Nav: navOf(d.Cancel), Error: errMsg, Data: d})
}

func navOf(path string) string {
	if strings.HasPrefix(path, consolePath+"/admin/") {
		return "admin"
	}
	return "devices"
}

// consoleConfirmMine asks before signing out one of my devices ("one"), all
// the others ("others") or all of them ("all").
func (h *handlers) consoleConfirmMine(which string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		d := confirmData{Button: "Sign out", Danger: true, Cancel: consolePath + "/"}
		switch which {
		case "others":
			d.Heading, d.Question = "Sign out other devices", "Sign out all your other devices?"
			d.Explain = "Every device but this browser will need to sign in again."
			d.Action, d.Button = consolePath+"/sessions/revoke-others", "Sign out other devices"
		case "all":
			d.Heading, d.Question = "Sign out everywhere", "Sign out everywhere, this browser included?"
			d.Explain = "Every device, this one too, will need to sign in again."
			d.Action, d.Button = consolePath+"/sessions/revoke-all", "Sign out everywhere"
		default:
			cl := callerOf(c)
			s, err := h.findSession(c, cl.UserID, c.Params("id"))
			if err != nil {
				return err
			}
			d.Heading, d.Question = "Sign out a device", "Sign out "+deviceLabel(s)+"?"
			d.Explain = "It will need to sign in again."
			if s.ID == cl.SessionID {
				d.Question = "Sign out " + deviceLabel(s) + ", the browser you are using now?"
				d.Explain = "You will need to sign in again."
			}
			d.Action = consolePath + "/sessions/" + s.ID + "/revoke"
		}
		return h.renderConfirm(c, fiber.StatusOK, d, "")
	}
}

// findSession is one live session of a user.
func (h *handlers) findSession(c *fiber.Ctx, uid, sid string) (sessions.Session, error) {
	if !validID(sid) {
		return sessions.Session{}, sessions.ErrNotFound
	}
	list, err := h.Sessions.List(c.UserContext(), uid)
	if err != nil {
		return sessions.Session{}, err
	}
	for _, s := range list {
		if s.ID == sid {
			return s, nil
		}
	}
	return sessions.Session{}, sessions.ErrNotFound
}

func (h *handlers) consoleRevokeOne(c *fiber.Ctx) error {
	cl := callerOf(c)
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	if err := h.Sessions.Revoke(c.UserContext(), cl.UserID, id, h.actor(c)); err != nil {
		return err
	}
	h.Metrics.Revoked("revoke_one", 1)
	if id == cl.SessionID {
		clearConsoleCookie(c)
		return c.Redirect(consolePath+"/login?done=signed-out", fiber.StatusSeeOther)
	}
	return c.Redirect(consolePath+"/?done=revoked", fiber.StatusSeeOther)
}

func (h *handlers) consoleRevokeOthers(c *fiber.Ctx) error {
	cl := callerOf(c)
	n, err := h.Sessions.RevokeAll(c.UserContext(), cl.UserID, cl.SessionID, h.actor(c))
	if err != nil {
		return err
	}
	h.Metrics.Revoked("revoke_others", n)
	return c.Redirect(consolePath+"/?done=others&n="+strconv.Itoa(n), fiber.StatusSeeOther)
}

func (h *handlers) consoleRevokeAll(c *fiber.Ctx) error {
	n, err := h.Sessions.RevokeAll(c.UserContext(), callerOf(c).UserID, "", h.actor(c))
	if err != nil {
		return err
	}
	h.Metrics.Revoked("logout_all", n)
	clearConsoleCookie(c)
	return c.Redirect(consolePath+"/login?done=everywhere", fiber.StatusSeeOther)
}

// Administration.

// consoleRequireAdmin is requireAdmin for console pages: the role is read
// from the account as it is now.
func (h *handlers) consoleRequireAdmin(c *fiber.Ctx) error {
	ok, err := h.callerIsAdmin(c)
	if err != nil {
		return err
	}
	if !ok {
		return errConsoleNotAdmin
	}
	return c.Next()
}

type usersData struct {
	Users    []users.User
	Searched bool
	Username string
	Next     string // the next page's URL, "" on the last
	Paged    bool   // this is not the first page
}

// consoleUsers finds an account by username, or lists them page by page.
func (h *handlers) consoleUsers(c *fiber.Ctx) error {
	ctx := c.UserContext()
	d := usersData{Username: strings.TrimSpace(c.Query("username"))}
	if d.Username != "" {
		d.Searched = true
		u, err := h.Users.FindByUsername(ctx, d.Username)
		switch {
		case err == nil:
			d.Users = []users.User{u}
		case !errors.Is(err, errcode.ErrUserNotFound):
			return err
		}
	} else {
		cursor := c.Query("cursor")
		list, next, err := h.Users.List(ctx, cursor, consolePageSize)
		if err != nil {
			return err
		}
		d.Users, d.Paged = list, cursor != ""
		if next != "" {
			d.Next = consolePath + "/admin/users?cursor=" + next
		}
	}
	return h.renderConsole(c, fiber.StatusOK, "users", consolePage{Title: "Accounts", Nav: "admin", Data: d})
}

type userData struct {
	User     users.User
	Sessions []sessionRow
	Events   []eventRow
	Self     bool
}

func (h *handlers) consoleUser(c *fiber.Ctx) error {
	return h.renderUser(c, fiber.StatusOK, "")
}

// renderUser is an account's page: the account, its sessions, its newest
// events, and what an admin can do to it; errMsg says what just failed.
func (h *handlers) renderUser(c *fiber.Ctx, status int, errMsg string) error {
	u, err := h.adminTarget(c)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	list, err := h.Sessions.List(ctx, u.ID)
	if err != nil {
		return err
	}
	evs, _, err := h.Audit.List(ctx, audit.Filter{UserID: u.ID, Limit: consolePageSize})
	if err != nil {
		return err
	}
	cl := callerOf(c)
	current := ""
	if u.ID == cl.UserID {
		current = cl.SessionID
	}
	return h.renderConsole(c, status, "user", consolePage{Title: u.Username, Nav: "admin", Error: errMsg,
		Data: userData{User: u, Sessions: sessionRows(list, current), Events: eventRows(evs), Self: u.ID == cl.UserID}})
}

func userPath(u users.User) string { return consolePath + "/admin/users/" + u.ID }

// adminAction is one thing an admin does to an account, behind a
// confirmation page.
type adminAction struct {
	confirm func(u users.User) confirmData
	// do does it and says what was done (a doneMessages key) and how many
	// sessions it ended.
	do func(h *handlers, c *fiber.Ctx, u users.User) (done string, n int, err error)
}

func adminChange(h *handlers, c *fiber.Ctx, u users.User, ch users.Change) (int, error) {
	_, n, err := h.admin().Change(c.UserContext(), u.ID, ch, h.actor(c))
	return n, err
}

var adminActions = map[string]adminAction{
	"force-logout": {
		confirm: func(u users.User) confirmData {
			return confirmData{Heading: "Sign out everywhere", Question: "Sign " + u.Username + " out of every device?",
				Explain: "Every session of this account ends; it can sign in again.", Button: "Sign out everywhere", Danger: true}
		},
		do: func(h *handlers, c *fiber.Ctx, u users.User) (string, int, error) {
			n, err := h.admin().ForceLogout(c.UserContext(), u.ID, h.actor(c))
			h.Metrics.Revoked("force_logout", n)
			return "forced", n, err
		},
	},
	"disable": {
		confirm: func(u users.User) confirmData {
			return confirmData{Heading: "Disable the account", Question: "Disable " + u.Username + "?",
				Explain: "Every session of this account ends and it cannot sign in until it is enabled again.",
				Button:  "Disable", Danger: true}
		},
		do: func(h *handlers, c *fiber.Ctx, u users.User) (string, int, error) {
			yes := true
			n, err := adminChange(h, c, u, users.Change{Disabled: &yes})
			h.Metrics.Revoked("disable", n)
			return "disabled", n, err
		},
	},
	"enable": {
		confirm: func(u users.User) confirmData {
			return confirmData{Heading: "Enable the account", Question: "Enable " + u.Username + "?",
				Explain: "It can sign in again.", Button: "Enable"}
		},
		do: func(h *handlers, c *fiber.Ctx, u users.User) (string, int, error) {
			no := false
			n, err := adminChange(h, c, u, users.Change{Disabled: &no})
			return "enabled", n, err
		},
	},
	"make-admin": {
		confirm: func(u users.User) confirmData {
			return confirmData{Heading: "Make an admin", Question: "Make " + u.Username + " an admin?",
				Explain: "Admins can change and delete every account.", Button: "Make admin"}
		},
		do: func(h *handlers, c *fiber.Ctx, u users.User) (string, int, error) {
			role := users.RoleAdmin
			n, err := adminChange(h, c, u, users.Change{Role: &role})
			return "made-admin", n, err
		},
	},
	"make-user": {
		confirm: func(u users.User) confirmData {
			return confirmData{Heading: "Remove the admin role", Question: "Make " + u.Username + " a regular user?",
				Explain: "The account loses access to administration at once.", Button: "Make regular user", Danger: true}
		},
		do: func(h *handlers, c *fiber.Ctx, u users.User) (string, int, error) {
			role := users.RoleUser
			n, err := adminChange(h, c, u, users.Change{Role: &role})
			return "made-user", n, err
		},
	},
	"password": {
		confirm: func(u users.User) confirmData {
			return confirmData{Heading: "Reset the password", Question: "Set a new password for " + u.Username + ".",
				Explain: "Every session of this account ends; it signs in with the new password.",
				Button:  "Reset password", Danger: true, Password: true}
		},
		do: func(h *handlers, c *fiber.Ctx, u users.User) (string, int, error) {
			password := formValue(c, "password")
			if password == "" {
				return "", 0, errcode.New(errcode.Invalid, "enter a new password")
			}
			n, err := adminChange(h, c, u, users.Change{Password: &password})
			h.Metrics.Revoked("password_reset", n)
			return "password-reset", n, err
		},
	},
	"delete": {
		confirm: func(u users.User) confirmData {
			return confirmData{Heading: "Delete the account", Question: "Delete " + u.Username + "?",
				Explain: "Every session ends and the username becomes free; the account's history stays. This cannot be undone.",
				Button:  "Delete account", Danger: true}
		},
		do: func(h *handlers, c *fiber.Ctx, u users.User) (string, int, error) {
			n, err := h.admin().Delete(c.UserContext(), u.ID, h.actor(c))
			h.Metrics.Revoked("delete", n)
			return "deleted", n, err
		},
	},
}

func (h *handlers) consoleConfirmAdmin(name string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		u, err := h.adminTarget(c)
		if err != nil {
			return err
		}
		return h.renderConfirm(c, fiber.StatusOK, adminConfirm(name, u), "")
	}
}

func adminConfirm(name string, u users.User) confirmData {
	d := adminActions[name].confirm(u)
	d.Action, d.Cancel = userPath(u)+"/"+name, userPath(u)
	return d
}

// consoleAdminDo does an admin action and goes back to the account's page,
// or shows why it was refused: on the password form for a password that
// breaks a rule, on the account's page for the rest (the last admin).
func (h *handlers) consoleAdminDo(name string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		u, err := h.adminTarget(c)
		if err != nil {
			return err
		}
		done, n, err := adminActions[name].do(h, c, u)
		code := errcode.Of(err)
		switch {
		case err == nil && name == "delete":
			return c.Redirect(consolePath+"/admin/users?done=deleted", fiber.StatusSeeOther)
		case err == nil:
			return c.Redirect(userPath(u)+"?done="+done+"&n="+strconv.Itoa(n), fiber.StatusSeeOther)
		case code == errcode.Invalid && name == "password":
			return h.renderConfirm(c, fiber.StatusBadRequest, adminConfirm(name, u), passwordMessage(err))
		case code == errcode.Invalid || code == errcode.LastAdmin:
			return h.renderUser(c, statusOf[code].status, sentence(errcode.Message(err)))
		}
		return err
	}
}

// passwordMessage says which password rule a new password broke.
func passwordMessage(err error) string {
	msg := errcode.Message(err)
	if rule, ok := strings.CutPrefix(msg, "password: "); ok {
		return "The new password " + rule + "."
	}
	return sentence(msg)
}

func (h *handlers) consoleConfirmAdminRevoke(c *fiber.Ctx) error {
	u, err := h.adminTarget(c)
	if err != nil {
		return err
	}
	s, err := h.findSession(c, u.ID, c.Params("sid"))
	if err != nil {
		return err
	}
	return h.renderConfirm(c, fiber.StatusOK, confirmData{Heading: "End a session",
		Question: "Sign " + u.Username + " out of " + deviceLabel(s) + "?",
		Explain:  "That device will need to sign in again.", Button: "Sign out", Danger: true,
		Action: userPath(u) + "/sessions/" + s.ID + "/revoke", Cancel: userPath(u)}, "")
}

func (h *handlers) consoleAdminRevoke(c *fiber.Ctx) error {
	u, err := h.adminTarget(c)
	if err != nil {
		return err
	}
	sid, err := pathID(c, "sid")
	if err != nil {
		return err
	}
	if err := h.Sessions.Revoke(c.UserContext(), u.ID, sid, h.actor(c)); err != nil {
		return err
	}
	h.Metrics.Revoked("force_logout_one", 1)
	return c.Redirect(userPath(u)+"?done=session-ended", fiber.StatusSeeOther)
}
