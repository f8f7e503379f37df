package app

// The console's second factors: the code step of a sign-in, the security
// page (an authenticator app with its QR code, recovery codes), and the
// step-up page that sensitive pages send to. The QR code is drawn here, in
// the binary, and served from the console's own origin: the strict policy
// (img-src 'self') allows it, and no third party ever sees the secret.

import (
	"bytes"
	"errors"
	"image/png"
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/users"
)

// consoleMFA adds the second-factor pages of a signed-in console (in) to
// its routes; the code step of a sign-in is before that (console.go), as the
// sign-in form is: a route added after the signed-in group's middleware
// would run behind it.
func (h *handlers) consoleMFA(in fiber.Router) {
	in.Get("/security", h.consoleSecurity)
	in.Get("/reauth", h.consoleReauthPage)
	in.Post("/reauth", h.consoleReauth)
	in.Post("/security/totp", h.consoleFresh, h.consoleBeginTOTP)
	in.Get("/security/totp", h.consoleFresh, h.consoleSetupTOTP)
	in.Get("/security/totp/qr.png", h.consoleTOTPQR)
	in.Post("/security/totp/confirm", h.consoleFresh, h.consoleConfirmTOTP)
	in.Get("/security/totp/remove", h.consoleFresh, h.consoleConfirmRemoveTOTP)
	in.Post("/security/totp/remove", h.consoleFresh, h.consoleRemoveTOTP)
	in.Post("/security/recovery-codes", h.consoleFresh, h.consoleNewRecoveryCodes)
}

// codeData is the code step of a sign-in.
type codeData struct {
	MFAToken string
	Next     string
}

// consoleMFAStep shows the code step of a sign-in whose password was right.
func (h *handlers) consoleMFAStep(c *fiber.Ctx, mfaToken, next, errMsg string, status int) error {
	return h.renderConsole(c, status, "login_code", consolePage{Title: "Enter your code", Error: errMsg,
		Data: codeData{MFAToken: mfaToken, Next: next}})
}

// consoleLoginCode finishes a sign-in with a TOTP or recovery code, as POST
// /v1/auth/login/mfa does.
func (h *handlers) consoleLoginCode(c *fiber.Ctx) error {
	mfaToken, next := formValue(c, "mfa_token"), returnTo(formValue(c, "next"))
	code, recovery := strings.TrimSpace(formValue(c, "code")), strings.TrimSpace(formValue(c, "recovery_code"))
	if code != "" && recovery != "" {
		recovery = ""
	}
	if mfaToken == "" || code == "" && recovery == "" {
		return h.consoleMFAStep(c, mfaToken, next, "Enter the code your authenticator app shows, or one of your recovery codes.", fiber.StatusUnprocessableEntity)
	}
	meta := sessions.Meta{UserAgent: truncateUTF8(c.Get(fiber.HeaderUserAgent), maxUserAgent), IP: h.clientIP(c)}
	sess, token, err := h.finishSignIn(c, mfaToken, code, recovery, meta)
	if err != nil {
		p, retry := h.answerError(c, err)
		switch p.Code {
		case errcode.InvalidCredentials:
			return h.consoleMFAStep(c, mfaToken, next, "That code is not right. Try the code your app shows now.", fiber.StatusUnprocessableEntity)
		case errcode.Unauthorized:
			return h.renderConsole(c, fiber.StatusUnauthorized, "login", consolePage{Title: "Sign in",
				Error: "This sign-in has expired or had too many wrong codes. Sign in again.", Data: loginData{}})
		case errcode.TooManyAttempts:
			return h.consoleMFAStep(c, mfaToken, next, "Too many attempts, try again in "+waitWords(retry)+".", p.Status)
		}
		return err
	}
	setConsoleCookie(c, token, sess.ExpiresAt)
	return c.Redirect(next, fiber.StatusSeeOther)
}

// returnTo is where to go after signing in or stepping up: next when it is
// a console page (safeNext), else the front page.
func returnTo(next string) string {
	if next = safeNext(next); next != "" {
		return next
	}
	return consolePath + "/"
}

// securityData is the security page.
type securityData struct {
	TOTP          bool
	CodesLeft     int
	Fresh         bool
	Pending       bool   // an enrollment waits for its code
	Secret        string // the pending secret, as text, beside its QR code
	RecoveryCodes []string
	Enabled       bool // second factors are configured on this server
	PasskeysOn    bool // passkeys are configured on this server
	Passkeys      []passkeyItem
}

func (h *handlers) consoleSecurity(c *fiber.Ctx) error {
	return h.renderSecurity(c, fiber.StatusOK, securityData{}, "")
}

func (h *handlers) renderSecurity(c *fiber.Ctx, status int, d securityData, errMsg string) error {
	st, err := h.Users.MFAStatus(c.UserContext(), callerOf(c).UserID)
	if err != nil {
		return err
	}
	d.TOTP, d.CodesLeft, d.Fresh, d.Enabled = st.TOTP, st.RecoveryCodesLeft, h.fresh(c), h.Users.MFAEnabled()
	if d.PasskeysOn = h.Passkeys != nil; d.PasskeysOn {
		if d.Passkeys, err = h.myPasskeys(c); err != nil {
			return err
		}
	}
	return h.renderConsole(c, status, "security", consolePage{Title: "Security", Nav: "security", Error: errMsg, Data: d})
}

// consoleFresh sends a session that authenticated too long ago to the
// step-up page, then back.
func (h *handlers) consoleFresh(c *fiber.Ctx) error {
	if h.fresh(c) {
		return c.Next()
	}
	back := consolePath + "/security"
	if c.Method() == fiber.MethodGet {
		back = c.OriginalURL()
	}
	return c.Redirect(consolePath+"/reauth?next="+url.QueryEscape(back), fiber.StatusSeeOther)
}

func (h *handlers) consoleBeginTOTP(c *fiber.Ctx) error {
	u, err := h.Users.Get(c.UserContext(), callerOf(c).UserID)
	if err != nil {
		return err
	}
	_, _, err = h.Users.BeginTOTP(c.UserContext(), u)
	if errors.Is(err, users.ErrMFANotConfigured) {
		return h.renderSecurity(c, fiber.StatusForbidden, securityData{}, "Second factors are not enabled on this server.")
	}
	if err != nil {
		return err
	}
	// To a page of its own: reloading it shows the same secret again
	// rather than posting for a new one.
	return c.Redirect(consolePath+"/security/totp", fiber.StatusSeeOther)
}

// consoleSetupTOTP shows the enrollment that waits for its code: the QR
// code and the secret as text.
func (h *handlers) consoleSetupTOTP(c *fiber.Ctx) error {
	secret, err := h.pendingSecret(c)
	if errors.Is(err, users.ErrNoPendingTOTP) {
		return c.Redirect(consolePath+"/security", fiber.StatusSeeOther)
	}
	if err != nil {
		return err
	}
	return h.renderSecurity(c, fiber.StatusOK, securityData{Pending: true, Secret: secret}, "")
}

// pendingSecret is the secret of the caller's enrollment that waits for its
// code, to show it again beside the QR code.
func (h *handlers) pendingSecret(c *fiber.Ctx) (string, error) {
	key, err := h.Users.PendingTOTP(c.UserContext(), callerOf(c).UserID)
	if err != nil {
		return "", err
	}
	return key.Secret(), nil
}

// consoleTOTPQR draws the pending enrollment's QR code.
func (h *handlers) consoleTOTPQR(c *fiber.Ctx) error {
	key, err := h.Users.PendingTOTP(c.UserContext(), callerOf(c).UserID)
	if errors.Is(err, users.ErrNoPendingTOTP) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	img, err := key.Image(240, 240)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "image/png")
	return c.Send(buf.Bytes())
}

func (h *handlers) consoleConfirmTOTP(c *fiber.Ctx) error {
	code := strings.TrimSpace(formValue(c, "code"))
	codes, err := h.Users.ConfirmTOTP(c.UserContext(), callerOf(c).UserID, code, h.actor(c))
	switch {
	case errors.Is(err, users.ErrInvalidCredentials):
		secret, err := h.pendingSecret(c)
		if err != nil {
			return err
		}
		return h.renderSecurity(c, fiber.StatusUnprocessableEntity, securityData{Pending: true, Secret: secret},
			"That code is not right. Check the time on your phone and enter the code the app shows now.")
	case errors.Is(err, users.ErrNoPendingTOTP):
		return h.renderSecurity(c, fiber.StatusUnprocessableEntity, securityData{}, "Start the setup again: it was replaced or finished.")
	case err != nil:
		return err
	}
	h.Metrics.MFAChange("enrolled")
	return h.renderSecurity(c, fiber.StatusOK, securityData{RecoveryCodes: codes}, "")
}

func (h *handlers) consoleConfirmRemoveTOTP(c *fiber.Ctx) error {
	return h.renderConfirm(c, fiber.StatusOK, confirmData{Heading: "Remove your authenticator app",
		Question: "Remove the authenticator app and your recovery codes?",
		Explain:  "Signing in will then need only your password.",
		Action:   consolePath + "/security/totp/remove", Button: "Remove authenticator app", Danger: true,
		Cancel: consolePath + "/security"}, "")
}

func (h *handlers) consoleRemoveTOTP(c *fiber.Ctx) error {
	if err := h.Users.RemoveMFA(c.UserContext(), callerOf(c).UserID, h.actor(c)); err != nil {
		return err
	}
	h.Metrics.MFAChange("removed")
	return c.Redirect(consolePath+"/security?done=totp-removed", fiber.StatusSeeOther)
}

func (h *handlers) consoleNewRecoveryCodes(c *fiber.Ctx) error {
	codes, err := h.Users.RegenerateRecoveryCodes(c.UserContext(), callerOf(c).UserID, h.actor(c))
	if errors.Is(err, users.ErrNoSecondFactor) {
		return h.renderSecurity(c, fiber.StatusUnprocessableEntity, securityData{}, "Set up an authenticator app first.")
	}
	if err != nil {
		return err
	}
	return h.renderSecurity(c, fiber.StatusOK, securityData{RecoveryCodes: codes}, "")
}

// reauthData is the step-up page.
type reauthData struct {
	Next        string
	HasTOTP     bool
	HasPasskeys bool
	Reason      string
}

func (h *handlers) consoleReauthPage(c *fiber.Ctx) error {
	return h.renderReauth(c, fiber.StatusOK, returnTo(c.Query("next")), "")
}

func (h *handlers) renderReauth(c *fiber.Ctx, status int, next, errMsg string) error {
	st, err := h.Users.MFAStatus(c.UserContext(), callerOf(c).UserID)
	if err != nil {
		return err
	}
	n, err := h.passkeyCount(c, callerOf(c).UserID)
	if err != nil {
		return err
	}
	reason := "For your security, confirm it is you before you change how you sign in."
	if strings.HasPrefix(next, consolePath+"/admin") {
		reason = "Administration needs a sign-in with your second factor."
	}
	return h.renderConsole(c, status, "reauth", consolePage{Title: "Confirm it's you", Error: errMsg,
		Data: reauthData{Next: next, HasTOTP: st.TOTP, HasPasskeys: n > 0, Reason: reason}})
}

// consoleReauth steps the console's session up in place, as POST
// /v1/auth/reauthenticate does, and goes back to the page that asked.
func (h *handlers) consoleReauth(c *fiber.Ctx) error {
	next := returnTo(formValue(c, "next"))
	password, code := formValue(c, "password"), strings.TrimSpace(formValue(c, "code"))
	if password == "" && code == "" {
		return h.renderReauth(c, fiber.StatusUnprocessableEntity, next, "Enter your password or a code from your authenticator app.")
	}
	_, err := h.stepUp(c, password, code, "")
	if err != nil {
		p, retry := h.answerError(c, err)
		switch p.Code {
		case errcode.InvalidCredentials:
			return h.renderReauth(c, fiber.StatusUnprocessableEntity, next, "That password or code is not right.")
		case errcode.TooManyAttempts:
			return h.renderReauth(c, p.Status, next, "Too many attempts, try again in "+waitWords(retry)+".")
		}
		return err
	}
	return c.Redirect(next, fiber.StatusSeeOther)
}
