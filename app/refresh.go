package app

import (
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/dpop"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/tokens"
)

// Refresh tokens for mobile apps (ACCESS_TOKEN_TTL), bound to the device by
// DPoP (RFC 9449) at the refresh step only: access tokens stay plain bearer
// tokens and requests are not proof-checked, so the hot path costs what it
// did. What binding protects is the long-lived credential.

// headerDPoP carries a DPoP proof.
const headerDPoP = "DPoP"

// refreshError is a refused refresh, whose 401 challenges as RFC 6750 (a
// token was sent and is bad) or RFC 9449 §7.1 (the proof is).
type refreshError struct {
	error
	challenge string
}

func (e refreshError) Unwrap() error     { return e.error }
func (e refreshError) Challenge() string { return e.challenge }

const (
	bearerInvalid = `Bearer error="invalid_token"`
	dpopInvalid   = `DPoP error="invalid_dpop_proof"`
)

// refreshOutcomes name a refused refresh's outcome for the metrics.
var refreshOutcomes = map[error]string{
	sessions.ErrRefreshInvalid: "refused", sessions.ErrRefreshReused: "reuse_detected",
	sessions.ErrProofRequired: "invalid_dpop_proof",
}

// withRefresh gives a sign-in refresh tokens when ACCESS_TOKEN_TTL is set,
// bound to the key of the DPoP proof the request carries, if any: a bad
// proof refuses the sign-in (400) before its password is checked. Unset,
// the sign-in is what it always was and a DPoP header means nothing.
func (h *handlers) withRefresh(c *fiber.Ctx, m *sessions.Meta) error {
	if h.AccessTokenTTL <= 0 {
		return nil
	}
	m.Refresh = true
	proof := c.Get(headerDPoP)
	if proof == "" {
		return nil
	}
	p, err := dpop.Verify(proof, fiber.MethodPost, h.requestURL(c), c.Context().Time())
	if err != nil {
		return invalid(err.Error())
	}
	m.Proof = sessionProof(p)
	return nil
}

func sessionProof(p dpop.Proof) *sessions.Proof {
	return &sessions.Proof{Key: p.KeyThumbprint, ID: p.ID, Remember: dpop.ReplayWindow}
}

// requestURL is the URL a DPoP proof for this request names in htu:
// PUBLIC_URL and the path when it is set (behind a proxy the service does
// not see the public URL), else the request's own.
func (h *handlers) requestURL(c *fiber.Ctx) string {
	if h.PublicURL != "" {
		return h.PublicURL + c.Path()
	}
	return c.BaseURL() + c.Path()
}

// accessExpiry is the exp of a token issued at iat for sess: the session's
// absolute end, or, for a session with refresh tokens, ACCESS_TOKEN_TTL
// after iat when that is sooner. With ACCESS_TOKEN_TTL unset since, a
// refresh answers a token to the session's end.
func (h *handlers) accessExpiry(sess sessions.Session, iat time.Time) time.Time {
	if sess.RefreshToken == "" || h.AccessTokenTTL <= 0 {
		return sess.ExpiresAt
	}
	if exp := iat.Add(h.AccessTokenTTL).Truncate(time.Second); exp.Before(sess.ExpiresAt) {
		return exp
	}
	return sess.ExpiresAt
}

// signedIn is the answer of a sign-in or a refresh: the token issued at iat,
// the session, and its refresh token when it has one.
func (h *handlers) signedIn(sess sessions.Session, token string, iat time.Time) fiber.Map {
	m := fiber.Map{"token": token, "token_type": "Bearer", "expires_at": rfc3339(h.accessExpiry(sess, iat)),
		"session": toSessionJSON(sess, sess.ID)}
	if sess.RefreshToken != "" {
		m["refresh_token"], m["refresh_expires_at"] = sess.RefreshToken, rfc3339(sess.RefreshExpiresAt)
	}
	return m
}

func (h *handlers) refresh(c *fiber.Ctx) error {
	outcome, err := h.refreshSession(c)
	h.Metrics.Refresh(outcome)
	return err
}

// refreshSession is POST /v1/auth/refresh: the refresh token in the body
// (no bearer), a DPoP proof in the header for a bound session. It returns
// the outcome for the metrics.
func (h *handlers) refreshSession(c *fiber.Ctx) (string, error) {
	var req struct {
		RefreshToken *string `json:"refresh_token"`
	}
	if err := decodeBody(c, &req); err != nil {
		return "refused", err
	}
	if err := required("refresh_token", req.RefreshToken); err != nil {
		return "refused", err
	}
	ctx, ip := c.UserContext(), h.clientIP(c)
	if err := h.Users.RefreshAllowed(ctx, ip); err != nil {
		return refreshOutcomeOf(err, "throttled"), err
	}
	p := sessions.Presenter{IP: ip, UserAgent: truncateUTF8(c.Get(fiber.HeaderUserAgent), maxUserAgent)}
	var proofErr error
	if proof := c.Get(headerDPoP); proof != "" {
		// A bad proof is no proof: a bound session refuses the refresh, an
		// unbound one does not need one.
		var pr dpop.Proof
		if pr, proofErr = dpop.Verify(proof, fiber.MethodPost, h.requestURL(c), c.Context().Time()); proofErr == nil {
			p.Proof = sessionProof(pr)
		}
	}
	r, err := h.Sessions.Refresh(ctx, *req.RefreshToken, p)
	if err != nil {
		for refusal, outcome := range refreshOutcomes {
			if errors.Is(err, refusal) {
				return outcome, h.refused(c, ip, err, proofErr)
			}
		}
		return refreshOutcomeOf(err, "unavailable"), err
	}
	token, err := h.Tokens.Sign(tokens.Claims{UserID: r.UserID, SessionID: r.ID, IssuedAt: r.LastSeenAt,
		ExpiresAt: h.accessExpiry(r.Session, r.LastSeenAt), Username: r.Username, AccountCreatedAt: r.AccountCreatedAt})
	if err != nil {
		return "unavailable", err
	}
	outcome := "succeeded"
	if r.Retry {
		outcome = "retried"
	}
	return outcome, c.JSON(h.signedIn(r.Session, token, r.LastSeenAt))
}

// refused counts a refused refresh against its address and gives the
// error its challenge; a DPoP refusal says what was wrong with the proof.
func (h *handlers) refused(c *fiber.Ctx, ip string, err, proofErr error) error {
	h.Users.RefreshFailed(c.UserContext(), ip)
	switch {
	case errors.Is(err, sessions.ErrRefreshReused):
		h.Metrics.Revoked("refresh_reuse", 1)
	case errors.Is(err, sessions.ErrProofRequired):
		if proofErr != nil {
			err = errcode.New(errcode.InvalidDPoPProof, sessions.ErrProofRequired.Message+"; "+proofErr.Error())
		}
		return refreshError{err, dpopInvalid}
	}
	return refreshError{err, bearerInvalid}
}

// refreshOutcomeOf is the metrics' outcome of a refresh error that is no refusal: a
// store's limit (too many attempts) or failure.
func refreshOutcomeOf(err error, limited string) string {
	switch errcode.Of(err) {
	case errcode.TooManyAttempts:
		return limited
	case errcode.Unavailable:
		return "unavailable"
	}
	return "internal"
}
