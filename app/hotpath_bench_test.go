package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/internal/metrics"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/tokens"
)

// serveBench runs GET path through handler, in process (no sockets), b.N
// times across GOMAXPROCS goroutines, each request with one of toks (each
// goroutine walks them in its own order).
func serveBench(b *testing.B, handler fasthttp.RequestHandler, path string, toks ...string) {
	b.ReportAllocs()
	defer reportCPU(b)()
	var seed atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(1)) * 7919
		var ctx fasthttp.RequestCtx
		for pb.Next() {
			ctx.Request.Reset()
			ctx.Response.Reset()
			ctx.Request.SetRequestURI(path)
			ctx.Request.Header.Set("Authorization", "Bearer "+toks[i%len(toks)])
			i += 31
			handler(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
	})
}

// reportCPU reports the process's CPU time per op (user and system, every
// goroutine, GC included) from now until the returned func runs: on a
// machine other processes share, wall time per op says how busy they were,
// CPU time what a request costs.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	start := cpu()
	return func() {
		b.StopTimer()
		b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
	}
}

// GET /v1/me through the whole app: signature (or the verified-token
// cache), session check (client-side cache on real Redis), JSON. Request
// logging and metrics off, as in the signature-only baseline: this
// measures the handlers.
func BenchmarkMe(b *testing.B) {
	e := newEnv(b, envOpts{})
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	a := app.New(app.Deps{Users: e.Users, Sessions: e.Sessions, Tokens: e.Tokens, Log: slog.New(slog.DiscardHandler)})
	serveBench(b, a.Handler(), "/v1/me", tok)
}

// shipped is the app as `sessiond serve` runs it by default: a request line
// per request through server.NewLogger, to a file, and metrics on.
func shipped(b *testing.B, e *env) *fiber.App {
	f, err := os.Create(filepath.Join(b.TempDir(), "sessiond.log"))
	if err != nil {
		b.Fatal(err)
	}
	log, flush := server.NewLogger(e.Server.Config, f)
	b.Cleanup(func() { flush(); f.Close() })
	return app.New(app.Deps{Users: e.Users, Sessions: e.Sessions, Tokens: e.Tokens, Metrics: metrics.New(nil), Log: log})
}

// GET /v1/me with the shipped defaults: the request line and metrics too.
func BenchmarkMeShipped(b *testing.B) {
	e := newEnv(b, envOpts{})
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	serveBench(b, shipped(b, e).Handler(), "/v1/me", tok)
}

// GET /v1/auth/verify (forward auth) with the shipped defaults.
func BenchmarkVerifyShipped(b *testing.B) {
	e := newEnv(b, envOpts{})
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	serveBench(b, shipped(b, e).Handler(), "/v1/auth/verify", tok)
}

// GET /v1/me with the shipped defaults over 2,000 sessions of 40 users, a
// different token each request.
func BenchmarkMeShipped2000Sessions(b *testing.B) {
	e := newEnv(b, envOpts{})
	ctx := context.Background()
	var toks []string
	for u := range 40 {
		usr := e.createUser(fmt.Sprint("user-", u), "password123", "")
		for range 50 {
			sess, err := e.Sessions.Create(ctx, usr.ID, usr.CredentialVersion, sessions.Meta{DeviceName: "d", Platform: "ios", IP: "192.0.2.1"})
			if err != nil {
				b.Fatal(err)
			}
			tok, err := e.Tokens.Sign(tokens.Claims{UserID: usr.ID, SessionID: sess.ID, IssuedAt: sess.CreatedAt,
				ExpiresAt: sess.ExpiresAt, Username: usr.Username, AccountCreatedAt: usr.CreatedAt})
			if err != nil {
				b.Fatal(err)
			}
			toks = append(toks, tok)
		}
	}
	serveBench(b, shipped(b, e).Handler(), "/v1/me", toks...)
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
	serveBench(b, f.Handler(), "/v1/me", tok)
}

// The server an app would otherwise write (issue 18's baseline): Fiber's
// defaults, golang-jwt's Parse with MapClaims, HS256, no log, no extra
// headers.
func BenchmarkBare(b *testing.B) {
	e := newEnv(b, envOpts{})
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	f := fiber.New()
	keyFunc := func(*jwt.Token) (any, error) { return testSecret, nil }
	f.Get("/v1/me", func(c *fiber.Ctx) error {
		t, err := jwt.Parse(strings.TrimPrefix(c.Get("Authorization"), "Bearer "), keyFunc,
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer("sessiond"), jwt.WithAudience("sessiond"))
		if err != nil {
			return c.SendStatus(401)
		}
		claims := t.Claims.(jwt.MapClaims)
		created, _ := claims["account_created_at"].(float64)
		return c.JSON(userJSONShape{ID: claims["sub"].(string), Username: claims["preferred_username"].(string), Role: "user",
			CreatedAt: time.Unix(int64(created), 0).UTC().Format(time.RFC3339)})
	})
	serveBench(b, f.Handler(), "/v1/me", tok)
}

type userJSONShape struct {
	ID        string `json:"id"`
	Username  string `json:"username"`
	Role      string `json:"role"`
	Disabled  bool   `json:"disabled"`
	CreatedAt string `json:"created_at"`
}
