package app

// Passkeys in the console: adding one on the Security page, listing and
// removing them, signing in with one (discoverable: no username), and one
// as the step-up of the "Confirm it's you" page.
//
// WebAuthn is a browser API, so these are the console's only script:
// console/passkeys.js, embedded and served from the console's own origin,
// loaded by the three pages that can use it (consoleScriptPages) when
// passkeys are configured. Those pages alone get a policy that allows
// script, and only files of this origin ('self'); every other page, and
// every page of a server without passkeys, still allows no script at all.
// Without the script (or a browser without WebAuthn) the pages work as
// before: the passkey buttons stay hidden.
//
// The script cannot call the API: the API takes a bearer token, and the
// console's token is in an HttpOnly cookie the script never sees. So the
// console has JSON endpoints of its own, doing what the API's passkey
// handlers do (the same passkeys.Store calls, and passkeySignIn, which
// makes the session): the cookie authenticates them, consoleGuard refuses
// them from another site, and a signed-in one carries the session's CSRF
// token in the X-CSRF-Token header. A begin writes nothing (the ceremony is
// sealed into its challenge id); a finish that signs in counts its refusals
// against the address, as the API's does.

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/passkeys"
	"github.com/sessiond/sessiond/sessions"
)

// csrfHeader carries the CSRF token of passkeys.js's requests.
const csrfHeader = "X-CSRF-Token"

// consoleScriptPages are the pages that carry passkeys.js: where a person
// signs in, adds or removes a passkey, or confirms it is them.
var consoleScriptPages = map[string]bool{"login": true, "security": true, "reauth": true}

// consolePasskeyLogin adds signing in with a passkey, beside the sign-in
// form (before the signed-in group's middleware, as the form is).
func (h *handlers) consolePasskeyLogin(con fiber.Router) {
	if h.Passkeys == nil {
		return
	}
	con.Post("/login/passkey/begin", h.consolePasskeyLoginBegin)
	con.Post("/login/passkey/finish", h.consolePasskeyLoginFinish)
}

// consolePasskeys adds the signed-in passkey routes. Adding and removing
// need a fresh session, as the API's do; consoleFresh sends a request of
// the script to the step-up page, which the script then opens.
func (h *handlers) consolePasskeys(in fiber.Router) {
	if h.Passkeys == nil {
		return
	}
	in.Post("/passkeys/register/begin", h.consoleFresh, h.consolePasskeyRegisterBegin)
	in.Post("/passkeys/register/finish", h.consoleFresh, h.consolePasskeyRegisterFinish)
	in.Post("/reauth/passkey/begin", h.consolePasskeyReauthBegin)
	in.Post("/reauth/passkey/finish", h.consolePasskeyReauthFinish)
	in.Get("/security/passkeys/:id/remove", h.consoleFresh, h.consoleConfirmRemovePasskey)
	in.Post("/security/passkeys/:id/remove", h.consoleFresh, h.consoleRemovePasskey)
}

// wantsJSON reports whether a request is one of passkeys.js's: a JSON body.
// Its errors are answered in JSON, for the script to show on its page.
func wantsJSON(c *fiber.Ctx) bool {
	mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	return err == nil && mt == fiber.MIMEApplicationJSON
}

// consoleJSONError answers a refused request of passkeys.js: {"message"},
// in words for the person at the page, with the error's status.
func consoleJSONError(c *fiber.Ctx, status int, err error, msg string) error {
	switch {
	case errors.Is(err, passkeys.ErrUnauthorized):
		msg = "That passkey could not be verified. Try again."
	case errors.Is(err, passkeys.ErrRegistered):
		msg = "That passkey is added already."
	case errors.Is(err, passkeys.ErrTooMany):
		msg = fmt.Sprintf("You have %d passkeys already: remove one first.", passkeys.MaxPasskeys)
	case errors.Is(err, passkeys.ErrInvalidName):
		msg = fmt.Sprintf("Give the passkey a name of at most %d characters.", passkeys.MaxNameLen)
	case errors.Is(err, passkeys.ErrNoPasskeys):
		msg = "You have no passkey yet: confirm with your password."
	case errors.Is(err, errConsoleCSRF):
		msg = "This page has expired. Reload it and try again."
	}
	c.Status(status)
	return c.JSON(fiber.Map{"message": msg})
}

// passkeyRequest is what passkeys.js sends to finish a ceremony.
type passkeyRequest struct {
	ChallengeID *string         `json:"challenge_id"`
	Credential  json.RawMessage `json:"credential"`
	Name        string          `json:"name"` // of a passkey being added
	Next        string          `json:"next"` // the page to go to after
}

// readPasskeyRequest reads a finish: a challenge id and a credential.
func readPasskeyRequest(c *fiber.Ctx) (passkeyRequest, []byte, error) {
	var req passkeyRequest
	if err := decodeBody(c, &req); err != nil {
		return req, nil, err
	}
	cred, err := passkeyCredential(req.ChallengeID, req.Credential)
	return req, cred, err
}

// emptyJSON reads a begin's body: {} and nothing else, as JSON (which a
// form of another site cannot send without the browser asking first).
func emptyJSON(c *fiber.Ctx) error {
	var req struct{}
	return decodeBody(c, &req)
}

// redirectTo answers a finished ceremony: the page for the script to open.
func redirectTo(c *fiber.Ctx, path string) error {
	return c.JSON(fiber.Map{"redirect": path})
}

func (h *handlers) consolePasskeyLoginBegin(c *fiber.Ctx) error {
	if err := emptyJSON(c); err != nil {
		return err
	}
	// Discoverable: the authenticator offers the passkeys it holds for this
	// site, and the one chosen names its account.
	id, options, err := h.Passkeys.BeginLogin(c.UserContext(), "")
	if err != nil {
		return err
	}
	return ceremony(c, id, options)
}

// consolePasskeyLoginFinish signs in with a passkey, as POST
// /v1/auth/passkey/finish does (a session at aal 2), and keeps the token in
// the console's cookie.
func (h *handlers) consolePasskeyLoginFinish(c *fiber.Ctx) error {
	req, cred, err := readPasskeyRequest(c)
	if err != nil {
		return err
	}
	meta := sessions.Meta{DeviceName: consoleDevice, Platform: consolePlatform,
		UserAgent: truncateUTF8(c.Get(fiber.HeaderUserAgent), maxUserAgent), IP: h.clientIP(c),
		AAL: 2, AMR: amrPasskey}
	sess, token, err := h.passkeySignIn(c, *req.ChallengeID, cred, meta)
	if err != nil {
		return err
	}
	setConsoleCookie(c, token, sess.ExpiresAt)
	return redirectTo(c, returnTo(req.Next))
}

func (h *handlers) consolePasskeyRegisterBegin(c *fiber.Ctx) error {
	if err := emptyJSON(c); err != nil {
		return err
	}
	return h.registrationCeremony(c)
}

func (h *handlers) consolePasskeyRegisterFinish(c *fiber.Ctx) error {
	p, err := h.addPasskey(c)
	if err != nil {
		return err
	}
	return redirectTo(c, doneURL(c, consolePath+"/security", "passkey-added", 0, p.Name))
}

func (h *handlers) consolePasskeyReauthBegin(c *fiber.Ctx) error {
	if err := emptyJSON(c); err != nil {
		return err
	}
	return h.reauthCeremony(c)
}

// consolePasskeyReauthFinish steps the console's session up in place with a
// passkey, as POST /v1/auth/reauthenticate does with one: two factors in
// one, so the session is then at aal 2.
func (h *handlers) consolePasskeyReauthFinish(c *fiber.Ctx) error {
	req, cred, err := readPasskeyRequest(c)
	if err != nil {
		return err
	}
	if err := h.passkeyStepUp(c, *req.ChallengeID, cred); err != nil {
		return err
	}
	if _, err := h.raise(c, 2, amrPasskey); err != nil {
		return err
	}
	return redirectTo(c, returnTo(req.Next))
}

// passkeyItem is a passkey as the Security page lists it.
type passkeyItem struct {
	ID, Name string
	Added    relTime
	LastUsed relTime // Zero: never used to sign in
}

// myPasskeys lists the caller's passkeys for the Security page.
func (h *handlers) myPasskeys(c *fiber.Ctx) ([]passkeyItem, error) {
	list, err := h.Passkeys.List(c.UserContext(), callerOf(c).UserID)
	if err != nil {
		return nil, err
	}
	now := c.Context().Time()
	items := make([]passkeyItem, len(list))
	for i, p := range list {
		items[i] = passkeyItem{ID: p.ID, Name: p.Name, Added: relativeTime(p.CreatedAt, now)}
		// A passkey's last use starts as its registration (passkeys/):
		// until a sign-in or step-up moves it on, it was not used.
		if p.LastUsedAt.After(p.CreatedAt) {
			items[i].LastUsed = relativeTime(p.LastUsedAt, now)
		} else {
			items[i].LastUsed = relTime{Zero: true}
		}
	}
	return items, nil
}

// myPasskey is one of the caller's passkeys, by the id in the path.
func (h *handlers) myPasskey(c *fiber.Ctx) (passkeys.Passkey, error) {
	list, err := h.Passkeys.List(c.UserContext(), callerOf(c).UserID)
	if err != nil {
		return passkeys.Passkey{}, err
	}
	for _, p := range list {
		if p.ID == c.Params("id") {
			return p, nil
		}
	}
	return passkeys.Passkey{}, passkeys.ErrNotFound
}

func (h *handlers) consoleConfirmRemovePasskey(c *fiber.Ctx) error {
	p, err := h.myPasskey(c)
	if err != nil {
		return err
	}
	return h.renderConfirm(c, fiber.StatusOK, confirmData{Heading: "Remove a passkey",
		Question: "Remove the passkey “" + p.Name + "”?",
		Explain:  "It will no longer sign you in. Remove it from the device or password manager that holds it too.",
		Action:   consolePath + "/security/passkeys/" + p.ID + "/remove", Button: "Remove passkey", Danger: true,
		Cancel: consolePath + "/security"}, "")
}

func (h *handlers) consoleRemovePasskey(c *fiber.Ctx) error {
	p, err := h.myPasskey(c)
	if err != nil {
		return err
	}
	if err := h.Passkeys.Remove(c.UserContext(), callerOf(c).UserID, p.ID, h.actor(c)); err != nil {
		return err
	}
	h.Metrics.MFAChange("passkey_removed")
	return c.Redirect(doneURL(c, consolePath+"/security", "passkey-removed", 0, p.Name), fiber.StatusSeeOther)
}

// passkeysToAdd reports whether the devices page suggests adding a passkey:
// they are configured, and the caller has none yet.
func (h *handlers) passkeysToAdd(c *fiber.Ctx) (bool, error) {
	if h.Passkeys == nil {
		return false, nil
	}
	n, err := h.Passkeys.Count(c.UserContext(), callerOf(c).UserID)
	return n == 0, err
}
