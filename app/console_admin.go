package app

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/users"
)

// The console's pages for admins: find an account, see it, change it, end
// its sessions; every action through a confirmation page.

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
	if h.AdminRequiresAAL2 && callerOf(c).AAL < 2 {
		if c.Method() != fiber.MethodGet {
			return errStepUp
		}
		return c.Redirect(consolePath+"/reauth?next="+url.QueryEscape(c.OriginalURL()), fiber.StatusSeeOther)
	}
	return c.Next()
}

type usersData struct {
	Users    []users.User
	Username string // the prefix searched for, "" for all accounts
	// Prev and Next are the neighbouring pages' URLs, "" when there is none.
	Prev, Next string
	Paged      bool // this is not the first page
}

// consoleUsers lists the accounts whose names start with what was typed
// (all of them when nothing was), page by page.
func (h *handlers) consoleUsers(c *fiber.Ctx) error {
	q := users.Query{Prefix: strings.TrimSpace(c.Query("username")), After: c.Query("after"),
		Before: c.Query("before"), Limit: consolePageSize}
	if q.After == "" {
		// The cursor of the listing's first pages (?cursor=) is an "after" one.
		q.After = c.Query("cursor")
	}
	page, err := h.Users.Search(c.UserContext(), q)
	if err != nil {
		return err
	}
	d := usersData{Users: page.Users, Username: q.Prefix, Paged: q.After != "" || q.Before != ""}
	link := func(dir, cursor string) string {
		v := url.Values{dir: {cursor}}
		if q.Prefix != "" {
			v.Set("username", q.Prefix)
		}
		return consolePath + "/admin/users?" + v.Encode()
	}
	if page.Prev != "" {
		d.Prev = link("before", page.Prev)
	}
	if page.Next != "" {
		d.Next = link("after", page.Next)
	}
	return h.renderConsole(c, fiber.StatusOK, "users", consolePage{Title: "Accounts", Nav: "admin", Data: d})
}

type userData struct {
	User    users.User
	Devices cardsData
	Events  eventsData
	Self    bool
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
	now := c.Context().Time()
	return h.renderConsole(c, status, "user", consolePage{Title: u.Username, Nav: "admin", Error: errMsg,
		Data: userData{User: u, Self: u.ID == cl.UserID,
			Devices: cardsData{ID: "sessions-heading", Base: userPath(u), Cards: deviceCards(list, current, now)},
			Events:  eventsData{ID: "events-heading", Items: eventItems(evs, now)},
		}})
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
	"mfa-reset": {
		confirm: func(u users.User) confirmData {
			return confirmData{Heading: "Remove second factors", Question: "Remove every second factor of " + u.Username + "?",
				Explain: "Its authenticator app, recovery codes and passkeys are removed (for someone who lost their phone); it then signs in with its password alone until it sets them up again. Its sessions stay.",
				Button:  "Remove second factors", Danger: true}
		},
		do: func(h *handlers, c *fiber.Ctx, u users.User) (string, int, error) {
			err := h.admin().ResetMFA(c.UserContext(), u.ID, h.actor(c))
			if err == nil {
				h.Metrics.MFAChange("reset")
			}
			return "mfa-reset", 0, err
		},
	},
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

func (h *handlers) consoleConfirmAdminRevoke(c *fiber.Ctx) error {
	u, err := h.adminTarget(c)
	if err != nil {
		return err
	}
	s, err := h.findSession(c, u.ID, c.Params("sid"))
	if err != nil {
		return err
	}
	name := deviceLabel(s)
	return h.renderConfirm(c, fiber.StatusOK, confirmData{Heading: "End a session", Device: name,
		Question: "Sign " + u.Username + " out of " + name + "?",
		Explain:  "That device will need to sign in again.", Button: "Sign out " + name, Danger: true,
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
	s, err := h.findSession(c, u.ID, sid)
	if err != nil {
		return err
	}
	if err := h.Sessions.Revoke(c.UserContext(), u.ID, sid, h.actor(c)); err != nil {
		return err
	}
	h.Metrics.Revoked("force_logout_one", 1)
	if sid == callerOf(c).SessionID {
		// An admin ending their own console session from their account page.
		clearConsoleCookie(c)
		return c.Redirect(loginURL("signed-out", ""), fiber.StatusSeeOther)
	}
	return c.Redirect(doneURL(c, userPath(u), "session-ended", 0, deviceLabel(s)), fiber.StatusSeeOther)
}
