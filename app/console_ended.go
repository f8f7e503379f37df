package app

import (
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/audit"
)

// Signing in again: to the page that was asked for, and, when a session
// ended under a browser's feet, saying why.

// maxNext bounds the page to return to.
const maxNext = 1024

// safeNext is next when it is a console page of this site to return to
// after signing in, else "": a path under the console's own prefix, with no
// "//" (another host), no backslash (which browsers read as a slash), no
// dot segments, nothing encoded that could become one, and no control
// character or space. Anything else could send a person who just signed in
// to another site (an open redirect).
func safeNext(next string) string {
	if len(next) > maxNext || !(next == consolePath || strings.HasPrefix(next, consolePath+"/")) {
		return ""
	}
	lower := strings.ToLower(next)
	for _, bad := range []string{"//", "\\", "/.", "%2e", "%2f", "%5c", "%00"} {
		if strings.Contains(lower, bad) {
			return ""
		}
	}
	for i := 0; i < len(next); i++ {
		if b := next[i]; b <= ' ' || b >= 0x7f {
			return ""
		}
	}
	return next
}

// nextOf is the page a request was for, to come back to after signing in:
// pages only (GET), and none for the console's front page, where signing
// in goes anyway.
func nextOf(c *fiber.Ctx) string {
	if c.Method() != fiber.MethodGet {
		return ""
	}
	p := c.OriginalURL()
	if p == consolePath || p == consolePath+"/" {
		return ""
	}
	return safeNext(p)
}

// loginURL is the sign-in page saying done, coming back to next.
func loginURL(done, next string) string {
	q := url.Values{}
	if done != "" {
		q.Set("done", done)
	}
	if next = safeNext(next); next != "" {
		q.Set("next", next)
	}
	if len(q) == 0 {
		return consolePath + "/login"
	}
	return consolePath + "/login?" + q.Encode()
}

// consoleEnded clears a cookie whose session is over and sends the browser
// to sign in again, saying why the session ended when sessiond knows.
func (h *handlers) consoleEnded(c *fiber.Ctx, token string) error {
	clearConsoleCookie(c)
	return c.Redirect(loginURL(h.whyEnded(c, token), nextOf(c)), fiber.StatusSeeOther)
}

// whyEnded finds why the session of a token ended, as a doneMessages key:
// the account's history says, for a token whose signature is good, which
// recorded change ended it (its session's revocation, a sign-out
// everywhere, a password change or reset, disabling, deletion). A session
// no change ended expired. Only a token the service signed learns this, and
// only about its own account. When that cannot be told (a token that no
// longer verifies, Redis failing), it is just "ended".
func (h *handlers) whyEnded(c *fiber.Ctx, token string) string {
	claims, err := h.Tokens.VerifyAt(token, c.Context().Time())
	if err != nil {
		return "ended"
	}
	evs, _, err := h.Audit.List(c.UserContext(), audit.Filter{UserID: claims.UserID, Limit: whyEndedScan})
	if err != nil {
		return "ended"
	}
	uid, sid := claims.UserID, claims.SessionID
	why := "ended-expired"
	// Newest first, back to the session's own sign-in: the last match is
	// the oldest change since the session began, the one that ended it.
	for _, e := range evs {
		if (e.Type == audit.LoginSucceeded && e.SessionID == sid) || e.At.Before(claims.IssuedAt) {
			break
		}
		byUser := e.ActorID == uid
		switch {
		case e.Type == audit.SessionRevoked && e.SessionID == sid:
			switch {
			case strings.HasPrefix(e.Detail, "evicted"):
				why = "ended-evicted"
			case byUser:
				why = "ended-elsewhere"
			default:
				why = "ended-admin"
			}
		case e.Type == audit.SessionReuseDetected && e.SessionID == sid:
			why = "ended-elsewhere"
		case e.SessionID == sid:
			// A change this session made and survived.
		case e.Type == audit.SessionsRevokedAll && byUser && e.SessionID != "":
			// "Sign out other devices", from the one it kept.
			why = "ended-elsewhere"
		case e.Type == audit.SessionsRevokedAll && byUser:
			why = "ended-everywhere"
		case e.Type == audit.SessionsRevokedAll:
			why = "ended-admin-all"
		case e.Type == audit.PasswordChanged && byUser:
			why = "ended-password"
		case e.Type == audit.PasswordChanged:
			why = "ended-reset"
		case e.Type == audit.AccountDisabled:
			why = "ended-disabled"
		case e.Type == audit.AccountDeleted:
			why = "ended-deleted"
		}
	}
	return why
}

// whyEndedScan is how many of the newest events whyEnded reads: a session
// that ended has been gone at most its idle timeout, and an account records
// few events in that time.
const whyEndedScan = 50
