package app_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/sessiond/sessiond/app"
)

// serveBench runs GET /v1/me with token through handler, in process (no
// sockets), b.N times across GOMAXPROCS goroutines.
func serveBench(b *testing.B, handler fasthttp.RequestHandler, token string) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		for pb.Next() {
			ctx.Request.Reset()
			ctx.Response.Reset()
			ctx.Request.SetRequestURI("/v1/me")
			ctx.Request.Header.Set("Authorization", "Bearer "+token)
			handler(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
	})
}

// GET /v1/me through the whole app: signature, session check (client-side
// cache on real Redis), JSON.
func BenchmarkMe(b *testing.B) {
	e := newEnv(b, envOpts{})
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	// Request logging off, as in the baseline: this measures the handlers; the
	// load command (go run ./bench) measures the shipped logging too.
	a := app.New(app.Deps{Users: e.Users, Sessions: e.Sessions, Tokens: e.Tokens, Log: slog.New(slog.DiscardHandler)})
	serveBench(b, a.Handler(), tok)
}

// The signature-only baseline: the same token verified, the same JSON
// shape answered, no revocation check.
func BenchmarkSignatureOnly(b *testing.B) {
	e := newEnv(b, envOpts{})
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	f := fiber.New(app.FiberConfig(app.Deps{}))
	f.Get("/v1/me", func(c *fiber.Ctx) error {
		claims, err := e.Tokens.Verify(strings.TrimPrefix(c.Get("Authorization"), "Bearer "))
		if err != nil {
			return c.SendStatus(401)
		}
		return c.JSON(userJSONShape{ID: claims.UserID, Username: claims.Username, Role: "user", CreatedAt: claims.AccountCreatedAt.UTC().Format(time.RFC3339)})
	})
	serveBench(b, f.Handler(), tok)
}

type userJSONShape struct {
	ID        string `json:"id"`
	Username  string `json:"username"`
	Role      string `json:"role"`
	Disabled  bool   `json:"disabled"`
	CreatedAt string `json:"created_at"`
}
