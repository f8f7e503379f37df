package app

import (
	"cmp"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"mime"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/users"
)

// What the app's other backends and gateways use to know who is calling
// without holding a key that mints tokens.

// jwks publishes the public keys that verify tokens. Resource servers cache
// it: a key is added to JWT_PRIVATE_KEYS (second, verifying) well before it
// moves first and signs, so an hour's caching never misses a signer.
func (h *handlers) jwks(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, "public, max-age=3600")
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(h.Tokens.JWKS())
}

// verify is forward auth (nginx auth_request, Traefik ForwardAuth, Envoy
// ext_authz): the same checks as GET /v1/me, answered with the caller in
// headers and an empty body, so it costs what /v1/me costs.
func (h *handlers) verify(c *fiber.Ctx) error {
	cl := callerOf(c)
	c.Set("X-User-Id", cl.UserID)
	c.Set("X-Username", cl.Username)
	c.Set("X-User-Role", cmp.Or(cl.Role, users.RoleUser))
	c.Set("X-Session-Id", cl.SessionID)
	c.Set("X-Session-AAL", strconv.Itoa(cl.AAL))
	c.Set("X-Auth-Time", strconv.FormatInt(cl.AuthTime.Unix(), 10))
	c.Status(fiber.StatusOK) // and no body: SendStatus would write "OK"
	return nil
}

// clientAuthError is a failed HTTP Basic client authentication: its 401
// challenges for Basic, not Bearer.
type clientAuthError struct{}

func (clientAuthError) Error() string {
	return "introspection needs HTTP Basic credentials of a client in INTROSPECTION_CLIENTS"
}

// ErrorCode is errcode.Unauthorized.
func (clientAuthError) ErrorCode() string { return errcode.Unauthorized }

// Challenge is the WWW-Authenticate of the 401.
func (clientAuthError) Challenge() string { return `Basic realm="sessiond introspection"` }

var errBadClient error = clientAuthError{}

// inactive is the whole answer about a token that is not active: RFC 7662
// §2.2 says nothing more, so nothing leaks about why.
var inactive = []byte(`{"active":false}`)

// introspect is RFC 7662 token introspection, for gateways that speak it.
// The caller authenticates as a client of INTROSPECTION_CLIENTS with HTTP
// Basic; failed client authentication counts against limits of its own per
// (client id, address) and per address (users.Store.GuardClient), never per
// client id alone, so strangers elsewhere cannot lock the real client out.
func (h *handlers) introspect(c *fiber.Ctx) error {
	id, secret, ok := basicAuth(c)
	if !ok || len(h.IntrospectionClients) == 0 {
		return errBadClient
	}
	err := h.Users.GuardClient(c.UserContext(), id, h.actor(c), func() (known, match bool) {
		want, known := h.IntrospectionClients[id]
		got := sha256.Sum256([]byte(secret))
		// Compared in constant time, and compared even for an unknown id,
		// so the time does not tell which ids exist.
		match = subtle.ConstantTimeCompare(got[:], want[:]) == 1
		return known, match && known
	})
	h.Metrics.ClientAuth(outcomeOf(err))
	switch {
	case errors.Is(err, users.ErrInvalidCredentials):
		return errBadClient
	case err != nil:
		return err
	}
	if mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType)); err != nil || mt != fiber.MIMEApplicationForm {
		return invalid("Content-Type must be application/x-www-form-urlencoded")
	}
	// RFC 7662 §2.1: a parameter of the form body. Fiber's FormValue would
	// take the query string's first, and a token in a URL leaks into logs.
	token := formValue(c, "token")
	if token == "" {
		return invalid("token: is required")
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	claims, err := h.Tokens.VerifyAt(token, c.Context().Time())
	if err != nil {
		return c.Send(inactive)
	}
	// Asked on a client's behalf by a gateway: the session's use is not
	// recorded (the address would be the gateway's).
	acc, err := h.Sessions.Check(c.UserContext(), claims.UserID, claims.SessionID)
	if errors.Is(err, sessions.ErrNotFound) {
		return c.Send(inactive)
	}
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"active": true, "sub": claims.UserID, "username": claims.Username,
		"role": cmp.Or(acc.Role, users.RoleUser), "sid": claims.SessionID, "iss": h.Tokens.Issuer(),
		"aud": h.Tokens.Audience(), "iat": claims.IssuedAt.Unix(), "exp": claims.ExpiresAt.Unix(),
		"token_type": "Bearer", "acr": strconv.Itoa(acc.AAL), "amr": acc.AMR, "auth_time": acc.AuthTime.Unix()})
}

// basicAuth reads HTTP Basic credentials (RFC 7617).
func basicAuth(c *fiber.Ctx) (id, secret string, ok bool) {
	scheme, rest, found := strings.Cut(strings.TrimSpace(c.Get(fiber.HeaderAuthorization)), " ")
	if !found || !strings.EqualFold(scheme, "basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false
	}
	id, secret, ok = strings.Cut(string(raw), ":")
	return id, secret, ok && id != ""
}
