package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/tokens"
)

// The two servers sessiond is compared to. Both serve in this process, on
// loopback, and never log.

// serve runs f on a loopback port until the returned stop.
func serve(f *fiber.App) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() { _ = f.Listener(ln) }()
	return ln.Addr().String(), func() { _ = f.Shutdown() }, nil
}

// equalDuty serves GET /v1/me and GET /v1/auth/verify by verifying the JWT
// only, with sessiond's keyring: what a stateless service does, answering
// from the token's claims. It runs sessiond's Fiber configuration, sets the
// same response headers and answers the same JSON (for /v1/me) or identity
// headers and empty body (for /v1/auth/verify), so the difference is the
// revocation check (and, with the shipped defaults, the request log).
func equalDuty(tk *tokens.Tokens) (string, func(), error) {
	// The same server configuration as sessiond (timeouts, limits, JSON).
	f := fiber.New(app.FiberConfig(app.Deps{Log: slog.New(slog.DiscardHandler)}))
	f.Use(func(c *fiber.Ctx) error {
		c.Set("X-Request-Id", uuid.NewString())
		c.Set("Cache-Control", "no-store")
		c.Set("X-Content-Type-Options", "nosniff")
		c.Set("X-Frame-Options", "DENY")
		c.Set("Referrer-Policy", "no-referrer")
		c.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		return c.Next()
	})
	f.Get("/v1/me", func(c *fiber.Ctx) error {
		h := c.Get(fiber.HeaderAuthorization)
		claims, err := tk.Verify(strings.TrimPrefix(h, "Bearer "))
		if err != nil {
			return c.SendStatus(401)
		}
		return c.JSON(struct {
			ID        string `json:"id"`
			Username  string `json:"username"`
			Role      string `json:"role"`
			Disabled  bool   `json:"disabled"`
			CreatedAt string `json:"created_at"`
		}{claims.UserID, claims.Username, "user", false, claims.AccountCreatedAt.UTC().Format(time.RFC3339)})
	})
	f.Get("/v1/auth/verify", func(c *fiber.Ctx) error {
		h := c.Get(fiber.HeaderAuthorization)
		claims, err := tk.Verify(strings.TrimPrefix(h, "Bearer "))
		if err != nil {
			return c.SendStatus(401)
		}
		c.Set("X-User-Id", claims.UserID)
		c.Set("X-Username", claims.Username)
		c.Set("X-User-Role", "user")
		c.Set("X-Session-Id", claims.SessionID)
		c.Status(fiber.StatusOK) // and no body, as sessiond's
		return nil
	})
	return serve(f)
}

// bare is the server a user would write instead of running sessiond: Fiber
// with its defaults (fiber.New(); only the startup banner is off, which
// prints once and serves nothing), golang-jwt's jwt.Parse into
// jwt.MapClaims with an HS256 secret, the issuer and audience checked (and
// exp, which jwt.Parse checks by itself), no log, no extra headers.
// GET /v1/me answers a small JSON from the claims; GET /v1/auth/verify 200
// with an empty body and the X-User-* headers (the token has no role: every
// caller is a "user").
func bare(secret []byte, issuer, audience string) (string, func(), error) {
	f := fiber.New(fiber.Config{DisableStartupMessage: true})
	keyfunc := func(*jwt.Token) (any, error) { return secret, nil }
	claimsOf := func(c *fiber.Ctx) (jwt.MapClaims, bool) {
		tok, err := jwt.Parse(strings.TrimPrefix(c.Get("Authorization"), "Bearer "), keyfunc,
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(issuer), jwt.WithAudience(audience))
		if err != nil {
			return nil, false
		}
		claims, ok := tok.Claims.(jwt.MapClaims)
		return claims, ok
	}
	f.Get("/v1/me", func(c *fiber.Ctx) error {
		claims, ok := claimsOf(c)
		if !ok {
			return c.SendStatus(fiber.StatusUnauthorized)
		}
		return c.JSON(fiber.Map{"id": claims["sub"], "username": claims["preferred_username"]})
	})
	f.Get("/v1/auth/verify", func(c *fiber.Ctx) error {
		claims, ok := claimsOf(c)
		if !ok {
			return c.SendStatus(fiber.StatusUnauthorized)
		}
		sub, _ := claims["sub"].(string)
		name, _ := claims["preferred_username"].(string)
		c.Set("X-User-Id", sub)
		c.Set("X-Username", name)
		c.Set("X-User-Role", "user")
		c.Status(fiber.StatusOK) // SendStatus would write "OK"
		return nil
	})
	return serve(f)
}

// identityHeaders are what GET /v1/auth/verify answers with.
var identityHeaders = []string{"X-User-Id", "X-Username", "X-User-Role", "X-Session-Id"}

// answer is a GET's status, body and identity headers.
type answer struct {
	code    int
	body    string
	headers []string
}

func get(addr, path, token string) (answer, error) {
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI("http://" + addr + path)
	req.Header.Set("Authorization", "Bearer "+token)
	if err := fasthttp.DoTimeout(req, res, 10*time.Second); err != nil {
		return answer{}, err
	}
	a := answer{code: res.StatusCode(), body: string(res.Body())}
	for _, h := range identityHeaders {
		a.headers = append(a.headers, string(res.Header.Peek(h)))
	}
	return a, nil
}

// sameAnswer checks that sessiond and the equal-duty baseline answer GET path
// with token alike (status, body, identity headers), so the load compares
// like with like.
func sameAnswer(ours, base, path, token string) error {
	a, err := get(ours, path, token)
	if err != nil {
		return err
	}
	b, err := get(base, path, token)
	if err != nil {
		return err
	}
	if a.code != 200 || a.code != b.code || a.body != b.body || !slices.Equal(a.headers, b.headers) {
		return fmt.Errorf("GET %s: sessiond and the equal-duty baseline answer differently:\n  sessiond %d %q %q\n  baseline %d %q %q",
			path, a.code, a.body, a.headers, b.code, b.body, b.headers)
	}
	return nil
}

// bareAgrees checks that the bare server, given its token for the same
// session, names the same caller as sessiond: the id and username of
// /v1/me's JSON, the X-User-Id and X-Username of /v1/auth/verify (and its
// empty body).
func bareAgrees(ours, bareAddr, path, ourToken, bareToken string) error {
	a, err := get(ours, path, ourToken)
	if err != nil {
		return err
	}
	b, err := get(bareAddr, path, bareToken)
	if err != nil {
		return err
	}
	same := a.code == 200 && b.code == 200
	if path == "/v1/me" {
		var x, y struct{ ID, Username string }
		same = same && json.Unmarshal([]byte(a.body), &x) == nil && json.Unmarshal([]byte(b.body), &y) == nil &&
			x.ID != "" && x == y
	} else {
		same = same && b.body == "" && a.headers[0] == b.headers[0] && a.headers[1] == b.headers[1]
	}
	if !same {
		return fmt.Errorf("GET %s: sessiond and the bare server name different callers:\n  sessiond %d %q %q\n  bare     %d %q %q",
			path, a.code, a.body, a.headers, b.code, b.body, b.headers)
	}
	return nil
}
