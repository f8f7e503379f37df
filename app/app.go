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
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/google/uuid"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/metrics"
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
	}
}

func (d Deps) withDefaults() Deps {
	if d.Log == nil {
		d.Log = slog.Default()
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

	f.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	f.Get("/readyz", h.readyz)
	f.Get("/openapi.json", openAPI)
	f.Get("/.well-known/jwks.json", h.jwks)

	v1 := f.Group("/v1")
	v1.Post("/auth/login", h.login)
	v1.Post("/auth/refresh", h.refresh)
	v1.Post("/oauth/introspect", h.introspect)
	auth := v1.Group("", h.authenticate)
	auth.Get("/auth/verify", h.verify)
	auth.Post("/auth/logout", h.logout)
	auth.Post("/auth/logout-all", h.logoutAll)
	auth.Get("/me", h.me)
	auth.Put("/me/password", h.changePassword)
	auth.Get("/me/events", h.myEvents)
	auth.Get("/sessions", h.listSessions)
	auth.Delete("/sessions", h.revokeOtherSessions)
	auth.Delete("/sessions/:id", h.revokeSession)

	admin := auth.Group("/admin", h.requireAdmin)
	admin.Post("/users", h.createUser)
	admin.Get("/users", h.findUsers)
	admin.Get("/users/:id", h.getUser)
	admin.Patch("/users/:id", h.patchUser)
	admin.Delete("/users/:id", h.deleteUser)
	admin.Get("/events", h.adminEvents)
	admin.Get("/users/:id/sessions", h.userSessions)
	admin.Delete("/users/:id/sessions", h.forceLogout)
	admin.Delete("/users/:id/sessions/:sid", h.forceLogoutOne)

	h.console(f)

	f.Use(func(c *fiber.Ctx) error {
		c.Locals(unmatchedKey{}, true)
		return errNotFound
	})
	return f
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// requestMeta gives every request an unguessable id, security headers and a
// log line. Nothing logged carries a token, password or query string.
func (h *handlers) requestMeta(c *fiber.Ctx) error {
	id := setResponseMeta(c, h.forwardedRequestID(c))
	// Checked first: building the line costs allocations, when the handler
	// would drop the line.
	logging := h.Log.Enabled(c.UserContext(), slog.LevelInfo)
	var start time.Time
	if logging || h.Metrics != nil {
		start = time.Now()
	}
	err := c.Next()
	if err != nil {
		// Render now so the log line and metrics have the final status.
		if herr := c.App().ErrorHandler(c, err); herr != nil {
			return herr
		}
	}
	status := c.Response().StatusCode()
	if h.Metrics != nil {
		route := c.Route().Path
		if c.Locals(unmatchedKey{}) != nil {
			route = "unmatched" // the catch-all 404: no client's path as a label
		}
		h.Metrics.Request(route, c.Method(), status, time.Since(start))
	}
	if logging {
		// A record without a caller (pc 0): Logger.LogAttrs would walk the
		// stack for one on every request, though no handler prints it.
		r := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
		r.AddAttrs(slog.String("request_id", id),
			slog.String("method", c.Method()), slog.String("path", c.Path()),
			slog.Int("status", status), slog.Int64("duration_us", r.Time.Sub(start).Microseconds()),
			slog.String("ip", h.clientIP(c)), slog.String("user_id", callerOf(c).UserID))
		_ = h.Log.Handler().Handle(c.UserContext(), r)
	}
	return nil
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

// setResponseMeta gives the response its request id (id, or a new random
// one) and the headers every response carries, and returns the id. The error
// handler calls it too, for the answers fasthttp gives before any middleware
// runs (413, 431).
func setResponseMeta(c *fiber.Ctx, id string) string {
	if id == "" {
		id = uuid.NewString()
	}
	c.Locals(ridKey{}, id)
	c.Set("X-Request-Id", id)
	c.Set("Cache-Control", "no-store")
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("X-Frame-Options", "DENY")
	c.Set("Referrer-Policy", "no-referrer")
	c.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	return id
}

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
