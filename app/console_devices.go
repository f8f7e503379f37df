package app

import (
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/uagent"
	"github.com/sessiond/sessiond/sessions"
)

// The console's pages for people: my devices, my activity, signing a device
// (or all others, or everything) out.

// deviceCard is a session as a device list shows it.
type deviceCard struct {
	ID string
	// Name heads the card: the name the device gave itself, else its user
	// agent in words, else its platform.
	Name string
	// Agent is the user agent in words ("Safari on iPhone"), shown under a
	// name the device gave itself.
	Agent string
	Kind  uagent.Kind
	// UserAgent and Platform are as the device sent them (the details).
	UserAgent, Platform string
	IP                  string
	LastSeen, Created   relTime
	Current, DPoPBound  bool
}

// cardsData is a list of device cards: the heading that labels it (its
// id), where their sign-out links start, and whether they are the
// caller's own (then a device can be reported as not recognised).
type cardsData struct {
	ID, Base string
	Mine     bool
	Cards    []deviceCard
}

type eventItem struct {
	What  string // the event in words
	At    relTime
	Agent string // the user agent in words, else as it was sent
	IP    string
	// Detail and who did it, when it was not the account itself.
	Detail, By string
}

type eventsData struct {
	ID    string
	Items []eventItem
	// Older is the next page's URL ("" on the last, or where there are no
	// pages); Paged is set past the first.
	Older string
	Paged bool
}

type devicesData struct {
	Devices cardsData
	Events  eventsData
	// AddPasskey suggests adding a passkey (configured, and none yet).
	AddPasskey bool
}

// deviceLabel names a session's device for people: its name, else its user
// agent in words ("Chrome on Windows"), else its platform.
func deviceLabel(s sessions.Session) string {
	switch {
	case s.DeviceName != "":
		return s.DeviceName
	}
	if l := uagent.Parse(s.UserAgent, s.Platform).Label(); l != "" {
		return l
	}
	if s.Platform != "" {
		return "a device (" + s.Platform + ")"
	}
	return "an unnamed device"
}

func deviceCards(list []sessions.Session, current string, now time.Time) []deviceCard {
	cards := make([]deviceCard, len(list))
	for i, s := range list {
		ua := uagent.Parse(s.UserAgent, s.Platform)
		c := deviceCard{ID: s.ID, Name: deviceLabel(s), Kind: ua.Kind, UserAgent: s.UserAgent, Platform: s.Platform,
			IP: s.IP, LastSeen: activeTime(s.LastSeenAt, now), Created: relativeTime(s.CreatedAt, now),
			Current: current != "" && s.ID == current, DPoPBound: s.DPoPBound}
		if l := ua.Label(); l != c.Name {
			c.Agent = l
		}
		cards[i] = c
	}
	return cards
}

func eventItems(evs []audit.Event, now time.Time) []eventItem {
	items := make([]eventItem, len(evs))
	for i, e := range evs {
		it := eventItem{What: eventText(e.Type), At: relativeTime(e.At, now), IP: e.IP, Detail: e.Detail}
		if it.Agent = uagent.Parse(e.UserAgent, "").Label(); it.Agent == "" {
			it.Agent = e.UserAgent
		}
		switch {
		case strings.HasPrefix(e.ActorID, "cli:"):
			it.By = "by an operator"
		case e.ActorID != "" && e.ActorID != e.UserID:
			it.By = "by an administrator"
		}
		items[i] = it
	}
	return items
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
	audit.PasskeyAdded:       "Passkey added",
	audit.PasskeyRemoved:     "Passkey removed",
	audit.PasskeyCloned:      "Passkey refused: its counter went backwards, so it may have been copied",
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
	evs, more, err := h.Audit.List(ctx, audit.Filter{UserID: cl.UserID, Limit: devicesEvents})
	if err != nil {
		return err
	}
	now := c.Context().Time()
	older := ""
	if more != "" {
		older = consolePath + "/activity"
	}
	addPasskey, err := h.passkeysToAdd(c)
	if err != nil {
		return err
	}
	return h.renderConsole(c, fiber.StatusOK, "devices", consolePage{Title: "My devices", Nav: "devices",
		Data: devicesData{
			Devices:    cardsData{ID: "devices-heading", Base: consolePath, Mine: true, Cards: deviceCards(list, cl.SessionID, now)},
			Events:     eventsData{ID: "activity-heading", Items: eventItems(evs, now), Older: older},
			AddPasskey: addPasskey,
		}})
}

// devicesEvents is how many of the newest events the devices page shows;
// the activity page has them all.
const devicesEvents = 10

// consoleActivity is my security history, page by page, newest first.
func (h *handlers) consoleActivity(c *fiber.Ctx) error {
	cl := callerOf(c)
	cursor := c.Query("cursor")
	evs, next, err := h.Audit.List(c.UserContext(), audit.Filter{UserID: cl.UserID, Limit: consolePageSize, Cursor: cursor})
	if err != nil {
		return err
	}
	d := eventsData{ID: "events-heading", Items: eventItems(evs, c.Context().Time()), Paged: cursor != ""}
	if next != "" {
		d.Older = consolePath + "/activity?cursor=" + url.QueryEscape(next)
	}
	return h.renderConsole(c, fiber.StatusOK, "activity", consolePage{Title: "Security activity", Nav: "activity", Data: d})
}

// confirmData is a confirmation page: a question and the POST form that
// does it.
type confirmData struct {
	Heading  string
	Device   string // the device it is about, if one
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
	switch {
	case strings.HasPrefix(path, consolePath+"/admin/"):
		return "admin"
	case path == consolePath+"/security":
		return "security"
	}
	return "devices"
}

// consoleConfirmMine asks before signing out one of my devices ("one"),
// one I do not recognise ("unrecognised": then to the password form), all
// the others ("others") or all of them ("all").
func (h *handlers) consoleConfirmMine(which string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		d := confirmData{Danger: true, Cancel: consolePath + "/"}
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
			name := deviceLabel(s)
			d.Device = name
			d.Heading, d.Question = "Sign out a device", "Sign out "+name+"?"
			d.Explain = "It will need to sign in again."
			d.Action, d.Button = consolePath+"/sessions/"+s.ID+"/"+which, "Sign out "+name
			switch {
			case which == "unrecognised" && s.ID == cl.SessionID:
				return sessions.ErrNotFound // this browser is no stranger
			case which == "unrecognised":
				d.Heading, d.Question = "A device you do not recognise", "Sign out "+name+" and change your password?"
				d.Explain = "If you did not sign in on this device, someone else may know your password. " +
					"Sign the device out now; the next page asks for a new password, and changing it signs out every other device too."
			case s.ID == cl.SessionID:
				d.Question = "Sign out " + name + ", the browser you are using now?"
				d.Explain = "You will need to sign in again."
			}
			if which == "one" {
				d.Action = consolePath + "/sessions/" + s.ID + "/revoke"
			}
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

// consoleRevokeOne signs out one of my devices and says which; after
// ".../unrecognised", the password form follows.
func (h *handlers) consoleRevokeOne(c *fiber.Ctx) error {
	cl := callerOf(c)
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	// Its name before it goes, for the message.
	s, err := h.findSession(c, cl.UserID, id)
	if err != nil {
		return err
	}
	unrecognised := strings.HasSuffix(c.Path(), "/unrecognised")
	if unrecognised && id == cl.SessionID {
		return sessions.ErrNotFound
	}
	if err := h.Sessions.Revoke(c.UserContext(), cl.UserID, id, h.actor(c)); err != nil {
		return err
	}
	h.Metrics.Revoked("revoke_one", 1)
	switch {
	case id == cl.SessionID:
		clearConsoleCookie(c)
		return c.Redirect(loginURL("signed-out", ""), fiber.StatusSeeOther)
	case unrecognised:
		return c.Redirect(doneURL(c, consolePath+"/password", "unrecognised", 0, deviceLabel(s)), fiber.StatusSeeOther)
	}
	return c.Redirect(doneURL(c, consolePath+"/", "revoked", 0, deviceLabel(s)), fiber.StatusSeeOther)
}

func (h *handlers) consoleRevokeOthers(c *fiber.Ctx) error {
	cl := callerOf(c)
	n, err := h.Sessions.RevokeAll(c.UserContext(), cl.UserID, cl.SessionID, h.actor(c))
	if err != nil {
		return err
	}
	h.Metrics.Revoked("revoke_others", n)
	return c.Redirect(doneURL(c, consolePath+"/", "others", n, ""), fiber.StatusSeeOther)
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
