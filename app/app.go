// Package app is sessiond's HTTP side: the Fiber app, its routes and
// handlers, bearer authentication, request metadata, and the one table that
// turns errors into problem+json. It reaches Redis only through the sessions
// and users stores it is given; it does not read the environment, build Redis
// clients or know the embedded store (server/ does).
package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/metrics"
	"github.com/sessiond/sessiond/passkeys"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/tokens"
	"github.com/sessiond/sessiond/users"
)

// BodyLimit is the largest request body accepted.
const BodyLimit = 64 << 10

// Deps are what the HTTP app is built on.
type Deps struct {
	Users    *users.Store
	Sessions *sessions.Store
	Tokens   *tokens.Tokens
	Audit    *audit.Log
	// Metrics records requests, sign-ins, revocations and Redis failures;
	// nil records nothing.
	Metrics *metrics.Metrics
	// TrustedProxies may set the client IP with X-Forwarded-For.
	TrustedProxies []netip.Prefix
	// IntrospectionClients may call the introspection endpoint: client id →
	// SHA-256 of its secret. None: it answers 401 to everyone.
	IntrospectionClients map[string][32]byte
	// Ping answers whether Redis is reachable, for /readyz.
	Ping func(context.Context) error
	Log  *slog.Logger
	// AccessTokenTTL, when set, makes sign-ins return access tokens that
	// end this long after they are issued (or at the session's end), with
	// refresh tokens (ACCESS_TOKEN_TTL); 0 keeps one token per sign-in.
	AccessTokenTTL time.Duration
	// PublicURL is the service's public base URL, without a trailing slash
	// ("": the request's own), that DPoP proofs name in htu.
	PublicURL string
	// StepUpMaxAge is how recent a session's auth_time must be to add or
	// remove a factor (STEP_UP_MAX_AGE); 0 means its default, 10m.
	StepUpMaxAge time.Duration
	// AdminRequiresAAL2 makes every admin route answer 403 step_up_required
	// to an admin whose session is at aal 1 (ADMIN_REQUIRES_AAL2).
	AdminRequiresAAL2 bool
	// Passkeys serves WebAuthn sign-in and registration; nil (WEBAUTHN_RP_ID
	// unset): their routes are not there (404).
	Passkeys *passkeys.Store
	// ReadTimeout bounds reading a request, headers and body, so a slow
	// client cannot hold a connection; KeepAliveTimeout bounds a keep-alive
	// connection between requests. Both are required.
	ReadTimeout, KeepAliveTimeout time.Duration
}

type handlers struct {
	Deps
}

// FiberConfig is the Fiber configuration New serves with: limits, timeouts,
// error rendering, JSON. It is exported so a benchmark baseline can serve
// with exactly the same server.
func FiberConfig(d Deps) fiber.Config {
	d = d.withDefaults()
	return fiber.Config{
		AppName:               "sessiond",
		BodyLimit:             BodyLimit,
		ErrorHandler:          errorHandler(&handlers{d}),
		DisableStartupMessage: true,
		// Fiber reuses request buffers; handlers keep strings past the request
		// (session metadata, logs), so make them immutable.
		Immutable: true,
		// Slow clients must not hold connections open.
		ReadTimeout:  d.ReadTimeout,
		WriteTimeout: 10 * time.Second,
		IdleTimeout:  d.KeepAliveTimeout,
		JSONEncoder:  jsonMarshal,
		JSONDecoder:  json.Unmarshal,
		// X-Forwarded-Host and -Proto (c.Hostname, c.Protocol: the console's
		// Origin check and Secure cookie) are believed from TRUSTED_PROXIES
		// only, as X-Forwarded-For is (clientIP); Fiber believes them from
		// anyone otherwise.
		EnableTrustedProxyCheck: true,
		TrustedProxies:          proxies(d.TrustedProxies),
	}
}

func proxies(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func (d Deps) withDefaults() Deps {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.StepUpMaxAge <= 0 {
		d.StepUpMaxAge = stepUpMaxAge
	}
	return d
}

// New builds the Fiber app.
func New(d Deps) *fiber.App {
	d = d.withDefaults()
	h := &handlers{d}
	f := fiber.New(FiberConfig(d))
	f.Use(h.requestMeta)
	// A panic in a handler becomes a 500 problem (logged with the request id
	// by the error handler), never the end of the process.
	f.Use(recover.New())

	r := &router{f: f}
	r.add(fiber.MethodGet, "/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	r.add(fiber.MethodGet, "/readyz", h.readyz)
	r.add(fiber.MethodGet, "/openapi.json", openAPI)
	r.add(fiber.MethodGet, "/.well-known/jwks.json", h.jwks)

	r.add(fiber.MethodPost, "/v1/auth/login", h.login)
	r.add(fiber.MethodPost, "/v1/auth/refresh", h.refresh)
	r.add(fiber.MethodPost, "/v1/auth/login/mfa", h.loginMFA)
	r.add(fiber.MethodPost, "/v1/oauth/introspect", h.introspect)
	// The token is checked by each route, not by a middleware over /v1: a
	// refusal is then counted under its route's pattern, and a method the
	// path never takes is 405 before any token is asked for.
	authed := func(method, path string, handler fiber.Handler) { r.add(method, path, h.authenticate, handler) }
	authed(fiber.MethodGet, "/v1/auth/verify", h.verify)
	authed(fiber.MethodPost, "/v1/auth/logout", h.logout)
	authed(fiber.MethodPost, "/v1/auth/logout-all", h.logoutAll)
	authed(fiber.MethodGet, "/v1/me", h.me)
	authed(fiber.MethodPut, "/v1/me/password", h.changePassword)
	authed(fiber.MethodGet, "/v1/me/events", h.myEvents)
	authed(fiber.MethodPost, "/v1/auth/reauthenticate", h.reauthenticate)
	authed(fiber.MethodGet, "/v1/me/mfa", h.mfaStatus)
	fresh := func(method, path string, handler fiber.Handler) {
		r.add(method, path, h.authenticate, h.requireFresh, handler)
	}
	fresh(fiber.MethodPost, "/v1/me/mfa/totp", h.beginTOTP)
	fresh(fiber.MethodPost, "/v1/me/mfa/totp/confirm", h.confirmTOTP)
	fresh(fiber.MethodDelete, "/v1/me/mfa/totp", h.removeTOTP)
	fresh(fiber.MethodPost, "/v1/me/mfa/recovery-codes", h.regenerateRecoveryCodes)
	if h.Passkeys != nil {
		r.add(fiber.MethodPost, "/v1/auth/passkey/begin", h.passkeyBegin)
		r.add(fiber.MethodPost, "/v1/auth/passkey/finish", h.passkeyFinish)
		authed(fiber.MethodPost, "/v1/auth/reauthenticate/passkey", h.passkeyReauthBegin)
		authed(fiber.MethodGet, "/v1/me/passkeys", h.listPasskeys)
		fresh(fiber.MethodPost, "/v1/me/passkeys/register/begin", h.passkeyRegisterBegin)
		fresh(fiber.MethodPost, "/v1/me/passkeys/register/finish", h.passkeyRegisterFinish)
		fresh(fiber.MethodDelete, "/v1/me/passkeys/:id", h.removePasskey)
	}
	authed(fiber.MethodGet, "/v1/sessions", h.listSessions)
	authed(fiber.MethodDelete, "/v1/sessions", h.revokeOtherSessions)
	authed(fiber.MethodDelete, "/v1/sessions/:id", h.revokeSession)

	admin := func(method, path string, handler fiber.Handler) {
		r.add(method, "/v1/admin"+path, h.authenticate, h.requireAdmin, handler)
	}
	admin(fiber.MethodPost, "/users", h.createUser)
	admin(fiber.MethodGet, "/users", h.findUsers)
	admin(fiber.MethodGet, "/users/:id", h.getUser)
	admin(fiber.MethodPatch, "/users/:id", h.patchUser)
	admin(fiber.MethodDelete, "/users/:id", h.deleteUser)
	admin(fiber.MethodGet, "/events", h.adminEvents)
	admin(fiber.MethodGet, "/users/:id/sessions", h.userSessions)
	admin(fiber.MethodDelete, "/users/:id/sessions", h.forceLogout)
	admin(fiber.MethodDelete, "/users/:id/sessions/:sid", h.forceLogoutOne)
	admin(fiber.MethodDelete, "/users/:id/mfa", h.adminRemoveMFA)

	h.console(f)

	f.Use(func(c *fiber.Ctx) error {
		if pattern, allow := r.allowed(c.Path()); allow != "" {
			// A path of the API asked with a method it does not take.
			c.Locals(routeKey{}, pattern)
			c.Set(fiber.HeaderAllow, allow)
			return errMethodNotAllowed
		}
		c.Locals(unmatchedKey{}, true)
		return errNotFound
	})
	return f
}

// errMethodNotAllowed is answered, with Allow, for a path of the API asked
// with a method it does not take.
var errMethodNotAllowed = errcode.New(codeMethodNotAllowed, "this path does not take that method; Allow lists those it does")

// router registers the API's routes and remembers which methods each path
// pattern takes, for the Allow header of a 405.
type router struct {
	f        *fiber.App
	patterns []pattern
}

// pattern is a route's path, split into segments ("" for a parameter), and
// the methods registered for it.
type pattern struct {
	path    string
	segs    []string
	methods []string
}

// add registers handlers for method and path; a GET route answers HEAD too,
// as Fiber's Get does.
func (r *router) add(method, path string, handlers ...fiber.Handler) {
	methods := []string{method}
	if method == fiber.MethodGet {
		methods = append(methods, fiber.MethodHead)
	}
	for _, m := range methods {
		r.f.Add(m, path, handlers...)
	}
	for i := range r.patterns {
		if r.patterns[i].path == path {
			r.patterns[i].methods = append(r.patterns[i].methods, methods...)
			return
		}
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i, s := range segs {
		if strings.HasPrefix(s, ":") {
			segs[i] = ""
		}
	}
	r.patterns = append(r.patterns, pattern{path: path, segs: segs, methods: methods})
}

// allowed returns the pattern a request path matches and the methods it
// takes ("" when it matches none), matching as Fiber's router does with its
// defaults: case-insensitive, a trailing slash ignored, a parameter one
// non-empty segment.
func (r *router) allowed(path string) (string, string) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
next:
	for _, p := range r.patterns {
		if len(p.segs) != len(segs) {
			continue
		}
		for i, s := range p.segs {
			if s == "" && segs[i] == "" || s != "" && !strings.EqualFold(s, segs[i]) {
				continue next
			}
		}
		m := slices.Clone(p.methods)
		slices.Sort(m)
		return p.path, strings.Join(m, ", ")
	}
	return "", ""
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// requestMeta gives every request an unguessable id, security headers and a
// log line. Nothing logged carries a token, password or query string.
func (h *handlers) requestMeta(c *fiber.Ctx) error {
	id := setResponseMeta(c, h.forwardedRequestID(c))
	// Checked first: building the line costs allocations, when the handler
	// would drop the line.
	logging := h.Log.Enabled(c.UserContext(), slog.LevelInfo)
	timed := logging || h.Metrics != nil
	var start time.Time
	if timed {
		// When fasthttp handed the request over: it read the clock then.
		if start = c.Context().Time(); start.IsZero() {
			start = time.Now()
		}
	}
	err := c.Next()
	if err != nil {
		// Render now so the log line and metrics have the final status.
		if herr := c.App().ErrorHandler(c, err); herr != nil {
			return herr
		}
	}
	status := c.Response().StatusCode()
	var end time.Time // one clock read for the metrics and the line
	if timed {
		end = time.Now()
	}
	if h.Metrics != nil {
		route := c.Route().Path
		if p, ok := c.Locals(routeKey{}).(string); ok {
			route = p // a 405: the pattern the path matched
		} else if c.Locals(unmatchedKey{}) != nil {
			route = "unmatched" // the catch-all 404: no client's path as a label
		}
		h.Metrics.Request(route, c.Method(), status, end.Sub(start))
	}
	if logging {
		h.logRequest(c, id, status, start, end)
	}
	return nil
}

// logRequest writes a request's line.
func (h *handlers) logRequest(c *fiber.Ctx, id string, status int, start, end time.Time) {
	// A record without a caller (pc 0): Logger.LogAttrs would walk the
	// stack for one on every request, though no handler prints it.
	r := slog.NewRecord(end, slog.LevelInfo, "request", 0)
	r.AddAttrs(slog.String("request_id", id),
		slog.String("method", c.Method()), slog.String("path", c.Path()),
		slog.Int("status", status), slog.Int64("duration_us", end.Sub(start).Microseconds()),
		slog.String("ip", h.clientIP(c)), slog.String("user_id", callerOf(c).UserID))
	_ = h.Log.Handler().Handle(c.UserContext(), r)
}

// forwardedRequestID is the X-Request-Id a trusted proxy set (so one id
// follows a request through the proxy's logs and ours), when it is a plain
// token; "" otherwise, and from anyone else.
func (h *handlers) forwardedRequestID(c *fiber.Ctx) string {
	if len(h.TrustedProxies) == 0 {
		return ""
	}
	v := c.Get(fiber.HeaderXRequestID)
	if v == "" || len(v) > 128 {
		return ""
	}
	for i := 0; i < len(v); i++ {
		b := v[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.' || b == ':') {
			return ""
		}
	}
	remote, _ := netip.AddrFromSlice(c.Context().RemoteIP())
	if !h.trusted(remote.Unmap()) {
		return ""
	}
	return v
}

type ridKey struct{}

// unmatchedKey marks a request no route took.
type unmatchedKey struct{}

// routeKey holds the route pattern of a request that no route took but
// whose path one matches (a 405), for its metrics label.
type routeKey struct{}

// setResponseMeta gives the response its request id (id, or a new random
// one) and the headers every response carries, and returns the id. The error
// handler calls it too, for the answers fasthttp gives before any middleware
// runs (413, 431).
func setResponseMeta(c *fiber.Ctx, id string) string {
	if id == "" {
		id = newRequestID()
	}
	c.Locals(ridKey{}, id)
	h := &c.Response().Header
	// Names already canonical, values known clean (the id is ours or a
	// checked plain token): set as they are, without c.Set's normalizing
	// copy of each.
	h.SetCanonical(headerRequestID, []byte(id))
	for _, kv := range securityHeaders {
		h.SetCanonical(kv[0], kv[1])
	}
	return id
}

var (
	headerRequestID = []byte("X-Request-Id")
	securityHeaders = [][2][]byte{
		{[]byte("Cache-Control"), []byte("no-store")},
		{[]byte("X-Content-Type-Options"), []byte("nosniff")},
		{[]byte("X-Frame-Options"), []byte("DENY")},
		{[]byte("Referrer-Policy"), []byte("no-referrer")},
		{[]byte("Content-Security-Policy"), []byte("default-src 'none'; frame-ancestors 'none'")},
	}
)

func requestID(c *fiber.Ctx) string {
	id, _ := c.Locals(ridKey{}).(string)
	return id
}

func (h *handlers) readyz(c *fiber.Ctx) error {
	if h.Ping == nil {
		return c.JSON(fiber.Map{"status": "ready"})
	}
	if err := h.Ping(c.UserContext()); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"status": "ready"})
}
