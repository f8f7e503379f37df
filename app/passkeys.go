package app

// Passkeys (WebAuthn) over HTTP: registration from a fresh session, sign-in
// by username or discoverable, and a passkey as the step-up of
// POST /v1/auth/reauthenticate. The ceremonies are passkeys/'s; here they
// become sessions (aal 2, amr hwk mfa: user verification is required, so a
// passkey is two factors in one) and answers.

import (
	"encoding/json"
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/passkeys"
	"github.com/sessiond/sessiond/sessions"
)

// amrPasskey are the methods of a passkey with user verification.
var amrPasskey = []string{"hwk", "mfa"}

type passkeyJSON struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	CreatedAt  string `json:"created_at"`
	LastUsedAt string `json:"last_used_at"`
}

func toPasskeyJSON(p passkeys.Passkey) passkeyJSON {
	last := ""
	if !p.LastUsedAt.IsZero() {
		last = rfc3339(p.LastUsedAt)
	} else {
		last = rfc3339(p.CreatedAt)
	}
	return passkeyJSON{ID: p.ID, Name: p.Name, CreatedAt: rfc3339(p.CreatedAt), LastUsedAt: last}
}

// ceremony is the answer of a begin: the challenge's id and the options the
// browser's WebAuthn call takes.
func ceremony(c *fiber.Ctx, id string, options json.RawMessage) error {
	return c.JSON(fiber.Map{"challenge_id": id, "options": options})
}

// passkeyCredential checks the two fields every ceremony's finish sends:
// the challenge's id, and the credential, a JSON object kept raw for
// go-webauthn to parse.
func passkeyCredential(challengeID *string, raw json.RawMessage) ([]byte, error) {
	if err := required("challenge_id", challengeID); err != nil {
		return nil, err
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, invalid("credential: is required: the RegistrationResponseJSON or AuthenticationResponseJSON of the browser's WebAuthn call")
	}
	return raw, nil
}

func (h *handlers) passkeyRegisterBegin(c *fiber.Ctx) error {
	if err := emptyBody(c); err != nil {
		return err
	}
	return h.registrationCeremony(c)
}

// registrationCeremony begins adding a passkey to the caller's account,
// through the API or the console (whose body rule is its own).
func (h *handlers) registrationCeremony(c *fiber.Ctx) error {
	u, err := h.Users.Get(c.UserContext(), callerOf(c).UserID)
	if err != nil {
		return err
	}
	id, options, err := h.Passkeys.BeginRegistration(c.UserContext(), u)
	if err != nil {
		return err
	}
	return ceremony(c, id, options)
}

func (h *handlers) passkeyRegisterFinish(c *fiber.Ctx) error {
	p, err := h.addPasskey(c)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(toPasskeyJSON(p))
}

// addPasskey finishes adding a passkey to the caller's account, through the
// API or the console.
func (h *handlers) addPasskey(c *fiber.Ctx) (passkeys.Passkey, error) {
	req, cred, err := readPasskeyRequest(c)
	if err != nil {
		return passkeys.Passkey{}, err
	}
	p, err := h.Passkeys.FinishRegistration(c.UserContext(), callerOf(c).UserID, *req.ChallengeID, req.Name, cred, h.actor(c))
	if err != nil {
		return passkeys.Passkey{}, err
	}
	h.Metrics.MFAChange("passkey_added")
	return p, nil
}

func (h *handlers) listPasskeys(c *fiber.Ctx) error {
	list, err := h.Passkeys.List(c.UserContext(), callerOf(c).UserID)
	if err != nil {
		return err
	}
	out := make([]passkeyJSON, len(list))
	for i, p := range list {
		out[i] = toPasskeyJSON(p)
	}
	return c.JSON(fiber.Map{"passkeys": out})
}

func (h *handlers) removePasskey(c *fiber.Ctx) error {
	if err := h.Passkeys.Remove(c.UserContext(), callerOf(c).UserID, c.Params("id"), h.actor(c)); err != nil {
		return err
	}
	h.Metrics.MFAChange("passkey_removed")
	return c.SendStatus(fiber.StatusNoContent)
}

func (h *handlers) passkeyBegin(c *fiber.Ctx) error {
	var req struct {
		Username string `json:"username"`
	}
	if len(c.Body()) > 0 {
		if err := decodeBody(c, &req); err != nil {
			return err
		}
	}
	if len(req.Username) > 256 {
		return invalid("username: is too long")
	}
	id, options, err := h.Passkeys.BeginLogin(c.UserContext(), req.Username)
	if err != nil {
		return err
	}
	return ceremony(c, id, options)
}

// passkeyFinish signs in with a passkey: a session at aal 2.
func (h *handlers) passkeyFinish(c *fiber.Ctx) (err error) {
	var req struct {
		ChallengeID *string         `json:"challenge_id"`
		Credential  json.RawMessage `json:"credential"`
		Device      *device         `json:"device"`
	}
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	cred, err := passkeyCredential(req.ChallengeID, req.Credential)
	if err != nil {
		return err
	}
	meta, err := h.signInMeta(c, req.Device)
	if err != nil {
		return err
	}
	meta.AAL, meta.AMR = 2, amrPasskey
	sess, token, err := h.passkeySignIn(c, *req.ChallengeID, cred, meta)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(h.signedIn(sess, token, sess.CreatedAt))
}

// passkeySignIn checks an assertion and starts its session, through the API
// or the console. Refused assertions from an address count against its
// budget of failures (the one failed refreshes use): an assertion names no
// account an outsider could lock out, so only the address is limited.
func (h *handlers) passkeySignIn(c *fiber.Ctx, challengeID string, cred []byte, meta sessions.Meta) (_ sessions.Session, _ string, err error) {
	defer func() { h.Metrics.Login(outcomeOf(err)) }()
	ctx := c.UserContext()
	if err := h.Users.RefreshAllowed(ctx, meta.IP); err != nil {
		return sessions.Session{}, "", err
	}
	u, err := h.Passkeys.FinishLogin(ctx, challengeID, cred, h.actor(c))
	if errors.Is(err, passkeys.ErrUnauthorized) {
		h.Users.RefreshFailed(ctx, meta.IP)
	}
	if err != nil {
		return sessions.Session{}, "", err
	}
	sess, token, err := h.issue(c, u, u.CredentialVersion, meta)
	if errors.Is(err, sessions.ErrStale) {
		return sessions.Session{}, "", errSignInChanged
	}
	return sess, token, err
}

// passkeyReauthBegin starts a passkey step-up of the caller's own session;
// POST /v1/auth/reauthenticate finishes it with the assertion.
func (h *handlers) passkeyReauthBegin(c *fiber.Ctx) error {
	if err := emptyBody(c); err != nil {
		return err
	}
	return h.reauthCeremony(c)
}

// reauthCeremony begins a passkey step-up of the caller's own session,
// through the API or the console.
func (h *handlers) reauthCeremony(c *fiber.Ctx) error {
	id, options, err := h.Passkeys.BeginReauth(c.UserContext(), callerOf(c).UserID)
	if err != nil {
		return err
	}
	return ceremony(c, id, options)
}

// passkeyStepUp checks the assertion of a passkey step-up.
func (h *handlers) passkeyStepUp(c *fiber.Ctx, challengeID string, cred []byte) error {
	if h.Passkeys == nil {
		return invalid("credential: passkeys are not enabled on this server")
	}
	_, err := h.Passkeys.FinishReauth(c.UserContext(), callerOf(c).UserID, challengeID, cred, h.actor(c))
	return err
}

// passkeyCount is how many passkeys an account has (none while passkeys
// are not configured).
func (h *handlers) passkeyCount(c *fiber.Ctx, uid string) (int, error) {
	if h.Passkeys == nil {
		return 0, nil
	}
	return h.Passkeys.Count(c.UserContext(), uid)
}
