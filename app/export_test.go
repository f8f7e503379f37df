package app

import (
	"time"

	"github.com/gofiber/fiber/v2"
)

// Pieces are the parts of the request path, one at a time, for the
// benchmarks of what each costs (pieces_bench_test.go).
type Pieces struct{ h *handlers }

func NewPieces(d Deps) Pieces { return Pieces{&handlers{d.withDefaults()}} }

func (Pieces) RequestID() string { return newRequestID() }

// Headers sets the headers every response carries, with the request id id.
func (Pieces) Headers(c *fiber.Ctx, id string) { setResponseMeta(c, id) }

func (p Pieces) LogLine(c *fiber.Ctx, id string, status int, start, end time.Time) {
	p.h.logRequest(c, id, status, start, end)
}

func (p Pieces) Metrics(c *fiber.Ctx, status int, took time.Duration) {
	p.h.Metrics.Request(c.Route().Path, c.Method(), status, took)
}

// Me answers GET /v1/me for a caller.
func (p Pieces) Me(c *fiber.Ctx, userID, sessionID, username string, created time.Time) error {
	c.Locals(callerKey{}, caller{UserID: userID, SessionID: sessionID, Username: username, AccountCreatedAt: created})
	return p.h.me(c)
}
