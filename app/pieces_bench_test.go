package app_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/internal/metrics"
	"github.com/sessiond/sessiond/server"
)

// What each piece of the request path around the handlers costs, alone:
// run with -bench Piece. BenchmarkMeShipped is them all together.

// pieceCtx is a Fiber context for GET /v1/me with a token, as the app's
// configuration makes it.
func pieceCtx(b *testing.B, cfg fiber.Config) (*fiber.Ctx, func()) {
	f := fiber.New(cfg)
	var rc fasthttp.RequestCtx
	rc.Request.SetRequestURI("/v1/me")
	rc.Request.Header.Set("Authorization", "Bearer "+benchToken)
	c := f.AcquireCtx(&rc)
	return c, func() { f.ReleaseCtx(c) }
}

// benchToken is a token's length of bytes (ours are about 400).
var benchToken = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzLUFBQUFBQUFBQUFBQSIsInR5cCI6IkpXVCJ9." +
	"eyJpc3MiOiJzZXNzaW9uZCIsInN1YiI6IjdmMWM3YTJlLTExMTEtNDIyMi04MzMzLTQ0NDQ0NDQ0NDQ0NCIsImF1ZCI6WyJzZXNzaW9uZCJdLCJleHAiOjE3OTk5OTk5OTksImlhdCI6MTc2NzIyNTYwMCwianRpIjoiNmYxYzdhMmUtMTExMS00MjIyLTgzMzMtNDQ0NDQ0NDQ0NDQ0IiwicHJlZmVycmVkX3VzZXJuYW1lIjoiYWxpY2VAZXhhbXBsZS5jb20iLCJhY2NvdW50X2NyZWF0ZWRfYXQiOjE3NjcyMjU2MDB9." +
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

func BenchmarkPieceRequestID(b *testing.B) {
	p := app.NewPieces(app.Deps{})
	defer reportCPU(b)()
	for b.Loop() {
		_ = p.RequestID()
	}
}

func BenchmarkPieceHeaders(b *testing.B) {
	c, done := pieceCtx(b, app.FiberConfig(app.Deps{}))
	defer done()
	p := app.NewPieces(app.Deps{})
	defer reportCPU(b)()
	for b.Loop() {
		c.Response().Header.Reset()
		p.Headers(c, "6f1c7a2e-1111-4222-8333-444444444444")
	}
}

// The request line, through the service's logger (buffered, to a file), in
// both formats.
func BenchmarkPieceLogLine(b *testing.B) {
	for _, format := range []string{"text", "json"} {
		b.Run(format, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "log"))
			if err != nil {
				b.Fatal(err)
			}
			log, flush := server.NewLogger(server.Config{LogLevel: slog.LevelInfo, LogFormat: format}, f)
			defer func() { flush(); f.Close() }()
			c, done := pieceCtx(b, app.FiberConfig(app.Deps{}))
			defer done()
			p := app.NewPieces(app.Deps{Log: log})
			start := time.Now()
			defer reportCPU(b)()
			for b.Loop() {
				p.LogLine(c, "6f1c7a2e-1111-4222-8333-444444444444", 200, start, start.Add(42*time.Microsecond))
			}
		})
	}
}

func BenchmarkPieceMetrics(b *testing.B) {
	c, done := pieceCtx(b, app.FiberConfig(app.Deps{}))
	defer done()
	p := app.NewPieces(app.Deps{Metrics: metrics.New(nil)})
	defer reportCPU(b)()
	for b.Loop() {
		p.Metrics(c, 200, 42*time.Microsecond)
	}
}

// What Immutable costs the hot path's reads of the request: the
// Authorization header (authenticate) and the path (the log line).
func BenchmarkPieceImmutable(b *testing.B) {
	for _, immutable := range []bool{true, false} {
		name := "on"
		if !immutable {
			name = "off"
		}
		b.Run(name, func(b *testing.B) {
			cfg := app.FiberConfig(app.Deps{})
			cfg.Immutable = immutable
			c, done := pieceCtx(b, cfg)
			defer done()
			defer reportCPU(b)()
			for b.Loop() {
				if len(c.Get(fiber.HeaderAuthorization)) == 0 || len(c.Path()) == 0 {
					b.Fatal("empty")
				}
			}
		})
	}
}

// The body of GET /v1/me, from what the token and session said.
func BenchmarkPieceMeJSON(b *testing.B) {
	c, done := pieceCtx(b, app.FiberConfig(app.Deps{}))
	defer done()
	p := app.NewPieces(app.Deps{})
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	defer reportCPU(b)()
	for b.Loop() {
		if err := p.Me(c, "7f1c7a2e-1111-4222-8333-444444444444", "6f1c7a2e-1111-4222-8333-444444444444", "alice@example.com", created); err != nil {
			b.Fatal(err)
		}
	}
}
