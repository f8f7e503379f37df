package app

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/users"
)

// Second factors and step-up: the sign-in that waits for a TOTP or recovery
// code, enrollment, the step-up of a session in place, and the policies that
// ask for them (a fresh session, an aal 2 admin).

// mfaMethods are the second factors a sign-in can finish with.
var mfaMethods = []string{users.MethodTOTP, users.MethodRecovery}

// Methods (RFC 8176) of a sign-in or step-up.
var (
	amrPassword = []string{"pwd"}
	amrTOTP     = []string{"pwd", "otp", "mfa"}
)

// mfaRequiredError answers a right password for an account with a second
// factor: 401 mfa_required with the mfa_token to finish with.
type mfaRequiredError struct {
	token   string
	methods []string
}

func (e *mfaRequiredError) Error() string {
	return "the password is right; send a second factor with the mfa_token to finish signing in"
}

// ErrorCode is errcode.MFARequired.
func (e *mfaRequiredError) ErrorCode() string { return errcode.MFARequired }

var (
	errReauthenticate = errcode.New(errcode.ReauthenticationRequired,
		"this needs a recent sign-in: re-authenticate with POST /v1/auth/reauthenticate, then try again")
	errStepUp = errcode.New(errcode.StepUpRequired,
		"this needs a two-factor session: step up with POST /v1/auth/reauthenticate and a code")
	// errSignInChanged: the account's credentials changed (a password
	// change, a force-logout) between the check of a sign-in's factor (a
	// code, a passkey) and its session.
	errSignInChanged = errcode.New(errcode.Unauthorized, "the account changed during this sign-in (a password change, a force-logout): sign in again")
)

// secondFactor reads exactly one of code and recovery_code.
func secondFactor(code, recovery *string) (string, string, error) {
	c, r := deref(code), deref(recovery)
	switch {
	case c == "" && r == "":
		return "", "", invalid("code: is required (or recovery_code)")
	case c != "" && r != "":
		return "", "", invalid("code: send either code or recovery_code, not both")
	case len(c) > 64 || len(r) > 64:
		return "", "", invalid("code: is too long")
	}
	return c, r, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(*s)
}

// amrOf is the methods of a second factor that passed.
func amrOf(method string) []string {
	if method == users.MethodRecovery {
		return []string{"pwd", "mfa"}
	}
	return amrTOTP
}

// loginMFA finishes a sign-in that answered mfa_required.
func (h *handlers) loginMFA(c *fiber.Ctx) error {
	var req struct {
		MFAToken     *string `json:"mfa_token"`
		Code         *string `json:"code"`
		RecoveryCode *string `json:"recovery_code"`
	}
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := required("mfa_token", req.MFAToken); err != nil {
		return err
	}
	code, recovery, err := secondFactor(req.Code, req.RecoveryCode)
	if err != nil {
		return err
	}
	meta := sessions.Meta{UserAgent: truncateUTF8(c.Get(fiber.HeaderUserAgent), maxUserAgent), IP: h.clientIP(c)}
	if err := h.withRefresh(c, &meta); err != nil {
		return err
	}
	sess, token, err := h.finishSignIn(c, *req.MFAToken, code, recovery, meta)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(h.signedIn(sess, token, sess.CreatedAt))
}

// finishSignIn checks the second factor of the sign-in an mfa_token waits
// for and, when it passes, spends the token and starts the session at aal 2:
// through the API or the console.
func (h *handlers) finishSignIn(c *fiber.Ctx, mfaToken, code, recovery string, meta sessions.Meta) (_ sessions.Session, _ string, err error) {
	defer func() {
		if errcode.Of(err) == errcode.Unauthorized {
			h.Metrics.Login("failed")
		} else {
			h.Metrics.Login(outcomeOf(err))
		}
	}()
	ctx := c.UserContext()
	p, err := h.Users.PendingMFA(ctx, mfaToken)
	if err != nil {
		return sessions.Session{}, "", err
	}
	method, err := h.Users.VerifySecondFactor(ctx, p.UserID, code, recovery, h.actor(c), "")
	h.Metrics.SecondFactor(method, outcomeOf(err))
	switch {
	case errors.Is(err, users.ErrInvalidCredentials):
		if werr := h.Users.WrongMFA(ctx, mfaToken); werr != nil {
			return sessions.Session{}, "", werr
		}
		return sessions.Session{}, "", err
	case errors.Is(err, errcode.ErrUserNotFound):
		return sessions.Session{}, "", users.ErrMFATokenInvalid
	case err != nil:
		return sessions.Session{}, "", err
	}
	// Spent before the session starts: a token finishes one sign-in however
	// many race with right codes.
	if ok, err := h.Users.FinishMFA(ctx, mfaToken); err != nil {
		return sessions.Session{}, "", err
	} else if !ok {
		return sessions.Session{}, "", users.ErrMFATokenInvalid
	}
	u, err := h.Users.Get(ctx, p.UserID)
	if errors.Is(err, errcode.ErrUserNotFound) {
		return sessions.Session{}, "", errSignInChanged
	}
	if err != nil {
		return sessions.Session{}, "", err
	}
	meta.DeviceName, meta.Platform = p.DeviceName, p.Platform
	meta.AAL, meta.AMR = 2, amrOf(method)
	sess, token, err := h.issue(c, u, p.CredentialVersion, meta)
	if errors.Is(err, sessions.ErrStale) || errors.Is(err, errcode.ErrUserNotFound) {
		return sessions.Session{}, "", errSignInChanged
	}
	return sess, token, err
}

// reauthenticate raises the caller's own session in place: auth_time now,
// and aal 2 when a second factor was given. No new session, no new token.
func (h *handlers) reauthenticate(c *fiber.Ctx) error {
	var req struct {
		Password     *string         `json:"password"`
		Code         *string         `json:"code"`
		RecoveryCode *string         `json:"recovery_code"`
		ChallengeID  *string         `json:"challenge_id"`
		Credential   json.RawMessage `json:"credential"`
	}
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.ChallengeID != nil || len(req.Credential) > 0 {
		// A passkey assertion (begun by POST /v1/auth/reauthenticate/passkey):
		// two factors in one.
		cred, err := passkeyCredential(req.ChallengeID, req.Credential)
		if err != nil {
			return err
		}
		if err := h.passkeyStepUp(c, *req.ChallengeID, cred); err != nil {
			return err
		}
		sess, err := h.raise(c, 2, amrPasskey)
		if err != nil {
			return err
		}
		return c.JSON(toSessionJSON(sess, sess.ID))
	}
	password := ""
	if req.Password != nil {
		password = *req.Password
	}
	var code, recovery string
	if deref(req.Code) != "" || deref(req.RecoveryCode) != "" {
		var err error
		if code, recovery, err = secondFactor(req.Code, req.RecoveryCode); err != nil {
			return err
		}
	} else if password == "" {
		return invalid("password: is required (or code)")
	}
	sess, err := h.stepUp(c, password, code, recovery)
	if err != nil {
		return err
	}
	return c.JSON(toSessionJSON(sess, sess.ID))
}

// stepUp checks what the caller gave (a password, a code, or both) and
// records the step-up on the caller's session; it returns the session as it
// is now.
func (h *handlers) stepUp(c *fiber.Ctx, password, code, recovery string) (sessions.Session, error) {
	ctx := c.UserContext()
	cl := callerOf(c)
	aal, amr := 1, amrPassword
	if password != "" {
		if _, err := h.Users.CheckPassword(ctx, cl.UserID, password, h.actor(c)); err != nil {
			return sessions.Session{}, err
		}
	}
	if code != "" || recovery != "" {
		method, err := h.Users.VerifySecondFactor(ctx, cl.UserID, code, recovery, h.actor(c), cl.SessionID)
		h.Metrics.SecondFactor(method, outcomeOf(err))
		if err != nil {
			return sessions.Session{}, err
		}
		aal, amr = 2, amrOf(method)
	}
	return h.raise(c, aal, amr)
}

// raise records a step-up that passed on the caller's session and returns
// the session as it is then.
func (h *handlers) raise(c *fiber.Ctx, aal int, amr []string) (sessions.Session, error) {
	cl := callerOf(c)
	if _, err := h.Sessions.Reauthenticate(c.UserContext(), cl.UserID, cl.SessionID, aal, amr, h.actor(c)); err != nil {
		if errors.Is(err, sessions.ErrNotFound) {
			return sessions.Session{}, errSessionEnded
		}
		return sessions.Session{}, err
	}
	return h.ownSession(c)
}

// ownSession is the caller's session as it is now.
func (h *handlers) ownSession(c *fiber.Ctx) (sessions.Session, error) {
	cl := callerOf(c)
	list, err := h.Sessions.List(c.UserContext(), cl.UserID)
	if err != nil {
		return sessions.Session{}, err
	}
	for _, s := range list {
		if s.ID == cl.SessionID {
			return s, nil
		}
	}
	return sessions.Session{}, errSessionEnded
}

// fresh is true when the caller authenticated within STEP_UP_MAX_AGE.
func (h *handlers) fresh(c *fiber.Ctx) bool {
	return h.Sessions.Now().Sub(callerOf(c).AuthTime) <= h.StepUpMaxAge
}

// requireFresh guards adding and removing factors: 403
// reauthentication_required unless the caller authenticated recently.
func (h *handlers) requireFresh(c *fiber.Ctx) error {
	if !h.fresh(c) {
		return errReauthenticate
	}
	return c.Next()
}

// mfaStatus answers GET /v1/me/mfa.
func (h *handlers) mfaStatus(c *fiber.Ctx) error {
	ctx := c.UserContext()
	uid := callerOf(c).UserID
	st, err := h.Users.MFAStatus(ctx, uid)
	if err != nil {
		return err
	}
	n, err := h.passkeyCount(c, uid)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"totp": st.TOTP, "recovery_codes_left": st.RecoveryCodesLeft, "passkeys": n})
}

// beginTOTP starts an enrollment (not active until confirmed).
func (h *handlers) beginTOTP(c *fiber.Ctx) error {
	if err := emptyBody(c); err != nil {
		return err
	}
	u, err := h.Users.Get(c.UserContext(), callerOf(c).UserID)
	if err != nil {
		return err
	}
	secret, url, err := h.Users.BeginTOTP(c.UserContext(), u)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"secret": secret, "otpauth_url": url})
}

// errWrongEnrollmentCode: the code does not match the enrollment's secret;
// the session is fine, so it is a bad field, not a 401.
var errWrongEnrollmentCode = errcode.New(errcode.Invalid, "code: does not match the authenticator's current code; check the device's clock and try the next code")

// confirmTOTP activates the enrollment and answers the recovery codes, once.
func (h *handlers) confirmTOTP(c *fiber.Ctx) error {
	var req struct {
		Code *string `json:"code"`
	}
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := required("code", req.Code); err != nil {
		return err
	}
	codes, err := h.Users.ConfirmTOTP(c.UserContext(), callerOf(c).UserID, strings.TrimSpace(*req.Code), h.actor(c))
	if errors.Is(err, users.ErrInvalidCredentials) {
		return errWrongEnrollmentCode
	}
	if err != nil {
		return err
	}
	h.Metrics.MFAChange("enrolled")
	return c.JSON(fiber.Map{"recovery_codes": codes})
}

// removeTOTP removes the caller's TOTP factor and its recovery codes.
func (h *handlers) removeTOTP(c *fiber.Ctx) error {
	if err := h.Users.RemoveMFA(c.UserContext(), callerOf(c).UserID, h.actor(c)); err != nil {
		return err
	}
	h.Metrics.MFAChange("removed")
	return c.SendStatus(fiber.StatusNoContent)
}

// regenerateRecoveryCodes replaces the caller's recovery codes.
func (h *handlers) regenerateRecoveryCodes(c *fiber.Ctx) error {
	if err := emptyBody(c); err != nil {
		return err
	}
	codes, err := h.Users.RegenerateRecoveryCodes(c.UserContext(), callerOf(c).UserID, h.actor(c))
	if errors.Is(err, users.ErrNoSecondFactor) {
		return errcode.New(errcode.NotFound, "this account has no TOTP factor, so no recovery codes")
	}
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"recovery_codes": codes})
}

// adminRemoveMFA removes every second factor of an account (a user who lost
// their phone): TOTP, recovery codes and passkeys.
func (h *handlers) adminRemoveMFA(c *fiber.Ctx) error {
	u, err := h.adminTarget(c)
	if err != nil {
		return err
	}
	if err := h.admin().ResetMFA(c.UserContext(), u.ID, h.actor(c)); err != nil {
		return err
	}
	h.Metrics.MFAChange("reset")
	return c.SendStatus(fiber.StatusNoContent)
}

// emptyBody accepts the empty JSON object the API asks for (or no body at
// all) and refuses anything else.
func emptyBody(c *fiber.Ctx) error {
	if len(strings.TrimSpace(string(c.Body()))) == 0 {
		return nil
	}
	var req struct{}
	return decodeBody(c, &req)
}

// stepUpMaxAge is STEP_UP_MAX_AGE's default.
const stepUpMaxAge = 10 * time.Minute
