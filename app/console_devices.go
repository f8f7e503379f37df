package app

import (
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/sessions"
)

// The console's pages for people: my devices, my activity, signing a device
// (or all others, or everything) out.

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
