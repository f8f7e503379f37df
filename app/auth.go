package app

import (
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/tokens"
	"github.com/sessiond/sessiond/users"
)

// caller is who an authenticated request comes from.
type caller struct {
	UserID    string
	SessionID string
	// The account as the token and the session describe it: enough for
	// GET /v1/me without reading the account. Role is empty for the default
	// role.
	Username         string
	AccountCreatedAt time.Time
	Role             string
	// Assurance is the session's, as it is now (a step-up raises it in
	// place, so it is never read from the token).
	sessions.Assurance
}

type callerKey struct{}

func callerOf(c *fiber.Ctx) caller {
	cl, _ := c.Locals(callerKey{}).(caller)
	return cl
}

// maxTokenLen bounds what is handed to the JWT parser; ours are ~300 bytes.
const maxTokenLen = 4096

// bearerToken takes the token from "Authorization: Bearer <token>" and from
// nowhere else: tokens in URLs or cookies leak into logs and proxies. The
// scheme name is case-insensitive (RFC 9110).
func bearerToken(header string) (token string, ok bool) {
	scheme, rest, found := strings.Cut(strings.TrimSpace(header), " ")
	if !found || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(rest)
	if token == "" || len(token) > maxTokenLen || strings.IndexByte(token, ' ') >= 0 || strings.IndexByte(token, '\t') >= 0 {
		return "", false
	}
	return token, true
}

// authenticate requires a bearer token that checkSession accepts.
func (h *handlers) authenticate(c *fiber.Ctx) error {
	// A view of the request's bytes, not the copy c.Get makes under
	// Immutable: the token is only read during the request, and the token
	// cache copies what it keeps.
	header := utils.UnsafeString(c.Request().Header.Peek(fiber.HeaderAuthorization))
	if header == "" {
		return errNoToken
	}
	token, ok := bearerToken(header)
	if !ok {
		return errBadHeader
	}
	if err := h.checkSession(c, token); err != nil {
		return err
	}
	return c.Next()
}

// checkSession is the one check of a session's token, whether it came as a
// bearer token or in the console's cookie: a good signature and a live
// session in Redis. A good signature alone is never enough: revocation bites
// on the next request. It records the session's use and makes its account
// the request's caller. A token that is no good, or whose session has ended,
// is an errcode.Unauthorized error; Redis trouble is errcode.Unavailable.
func (h *handlers) checkSession(c *fiber.Ctx, token string) error {
	if len(token) > maxTokenLen {
		return tokens.ErrInvalidToken
	}
	// The request's time, read once by the server: no clock read of our own.
	claims, err := h.Tokens.VerifyAt(token, c.Context().Time())
	if err != nil {
		return err
	}
	acc, err := h.Sessions.Use(c.UserContext(), claims.UserID, claims.SessionID, h.clientIP(c))
	if errors.Is(err, sessions.ErrNotFound) {
		return errSessionEnded
	}
	if err != nil {
		return err
	}
	c.Locals(callerKey{}, caller{UserID: claims.UserID, SessionID: claims.SessionID,
		Username: claims.Username, AccountCreatedAt: claims.AccountCreatedAt, Role: acc.Role, Assurance: acc.Assurance})
	return nil
}

// requireAdmin reads the caller's role from the account as it is now, not from
// the token, so a demoted or disabled admin loses access on the next request.
func (h *handlers) requireAdmin(c *fiber.Ctx) error {
	ok, err := h.callerIsAdmin(c)
	if err != nil {
		return err
	}
	if !ok {
		return errForbidden
	}
	if h.AdminRequiresAAL2 && callerOf(c).AAL < 2 {
		return errStepUp
	}
	return c.Next()
}

// callerIsAdmin reports whether the caller's account is an enabled admin
// now, read from the account rather than the token.
func (h *handlers) callerIsAdmin(c *fiber.Ctx) (bool, error) {
	u, err := h.Users.Get(c.UserContext(), callerOf(c).UserID)
	if errors.Is(err, errcode.ErrUserNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return u.Role == users.RoleAdmin && !u.Disabled, nil
}

// actor is who makes a request's change: the signed-in caller (none before
// sign-in), from the client's address and user agent.
func (h *handlers) actor(c *fiber.Ctx) audit.Actor {
	return audit.Actor{ID: callerOf(c).UserID, IP: h.clientIP(c),
		UserAgent: truncateUTF8(c.Get(fiber.HeaderUserAgent), maxUserAgent)}
}

// clientIP is the socket's address, unless that is a trusted proxy: then,
// walking X-Forwarded-For from the right (every line of the header, in
// order, as one list), the first address that is not itself a trusted proxy.
// A client cannot spoof its address by sending the header itself: what it
// wrote stands left of what its proxies appended. An entry that is not a
// plain IP (a port, an IPv6 zone, garbage) ends the walk at the proxy that
// forwarded it, so no arbitrary text becomes a session's ip or a rate-limit key.
func (h *handlers) clientIP(c *fiber.Ctx) string {
	remote, _ := netip.AddrFromSlice(c.Context().RemoteIP())
	remote = remote.Unmap()
	if !h.trusted(remote) {
		return remote.String()
	}
	lines := c.Request().Header.PeekAll(fiber.HeaderXForwardedFor)
	for l := len(lines) - 1; l >= 0; l-- {
		hops := strings.Split(string(lines[l]), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil || a.Zone() != "" {
				return remote.String()
			}
			a = a.Unmap()
			if !h.trusted(a) {
				return a.String()
			}
			remote = a
		}
	}
	return remote.String()
}

func (h *handlers) trusted(a netip.Addr) bool {
	for _, p := range h.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
