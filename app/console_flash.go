package app

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// What the page a browser was sent to after an action says about it
// (?done=, with ?n= for how many and ?what= for what it was done to). Only
// the texts here are shown. A name (?what=, "Signed out Pixel 8 Pro") is
// shown only with the signature the console gave it for this session
// (?sig=): a link from elsewhere cannot make a page say what it likes.

// doneMessages: %n is a count of sessions, %s the name of what it was done to.
var doneMessages = map[string]string{
	"signed-out":       "You have signed out of the console.",
	"everywhere":       "You have been signed out everywhere.",
	"revoked":          "Signed out %s.",
	"unrecognised":     "Signed out %s. If that was not you, choose a new password now: it signs out your other devices too.",
	"others":           "Signed out of your other devices: %n ended.",
	"password-changed": "Your password was changed. Your other devices were signed out: %n ended.",
	"forced":           "Signed out everywhere: %n ended.",
	"session-ended":    "Ended the session on %s.",
	"disabled":         "The account is disabled and all its sessions ended.",
	"enabled":          "The account is enabled.",
	"made-admin":       "The account is now an admin.",
	"made-user":        "The account is now a regular user.",
	"password-reset":   "The password was reset and all the account's sessions ended.",
	"deleted":          "The account was deleted.",
	"totp-removed":     "The authenticator app was removed: signing in needs only your password now.",
	"mfa-reset":        "Every second factor of the account was removed: it signs in with its password alone until it sets them up again.",
	"passkey-added":    "Added the passkey “%s”: you can sign in with it now.",
	"passkey-removed":  "Removed the passkey “%s”: it no longer signs you in.",
	// Why a session ended, when sessiond knows (consoleEnded).
	"ended":            "Your session has ended. Sign in again.",
	"ended-expired":    "Your session expired. Sign in again.",
	"ended-elsewhere":  "This browser was signed out from another of your devices. Sign in again.",
	"ended-everywhere": "You signed out everywhere from another device. Sign in again.",
	"ended-admin":      "An administrator signed this browser out. Sign in again.",
	"ended-admin-all":  "An administrator signed you out of every device. Sign in again.",
	"ended-password":   "Your password was changed on another device, so this browser was signed out. Sign in with the new password.",
	"ended-reset":      "An administrator reset your password, so this browser was signed out. Sign in with the new password.",
	"ended-disabled":   "Your account was disabled, so this browser was signed out.",
	"ended-deleted":    "Your account was deleted, so this browser was signed out.",
	"ended-evicted":    "This browser was signed out because you signed in on more devices than the limit allows. Sign in again.",
}

// doneUnnamed is what a message with %s says without a good signature.
var doneUnnamed = map[string]string{
	"revoked":         "The device was signed out.",
	"unrecognised":    "The device was signed out. If that was not you, choose a new password now: it signs out your other devices too.",
	"session-ended":   "The session was ended.",
	"passkey-added":   "The passkey was added: you can sign in with it now.",
	"passkey-removed": "The passkey was removed: it no longer signs you in.",
}

// flashContext separates the signatures of names from any other use of a
// hash of the session token (csrfContext).
const flashContext = "sessiond console flash\x00"

// maxFlashName bounds a name carried in a URL: a device name is at most 128
// characters.
const maxFlashName = 600

func flashSig(token, done, what string) string {
	key := sha256.Sum256([]byte(flashContext + token))
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(done + "\x00" + what))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// doneURL is path with the query that makes its page say done, about n
// sessions and what, signed for the caller's session.
func doneURL(c *fiber.Ctx, path, done string, n int, what string) string {
	q := url.Values{"done": {done}}
	if strings.Contains(doneMessages[done], "%n") {
		q.Set("n", strconv.Itoa(n))
	}
	if what != "" && len(what) <= maxFlashName {
		if token := consoleToken(c); token != "" {
			q.Set("what", what)
			q.Set("sig", flashSig(token, done, what))
		}
	}
	return path + "?" + q.Encode()
}

func doneMessage(c *fiber.Ctx) string {
	done := c.Query("done")
	msg := doneMessages[done]
	if strings.Contains(msg, "%n") {
		n, err := strconv.Atoi(c.Query("n"))
		if err != nil || n < 0 {
			n = 0
		}
		msg = strings.Replace(msg, "%n", plural(n, "session"), 1)
	}
	if strings.Contains(msg, "%s") {
		what, token := c.Query("what"), consoleToken(c)
		sig := flashSig(token, done, what)
		if token == "" || what == "" || len(what) > maxFlashName || !hmac.Equal([]byte(c.Query("sig")), []byte(sig)) {
			return doneUnnamed[done]
		}
		msg = strings.Replace(msg, "%s", what, 1)
	}
	return msg
}
