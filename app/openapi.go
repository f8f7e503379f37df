package app

import (
	_ "embed"

	"github.com/gofiber/fiber/v2"
)

// openAPIDoc is the OpenAPI 3.1 description of this API, the reference
// clients are generated from. The HTTP contract tests validate every
// response they see against it, so it cannot drift from the code.
//
//go:embed openapi.json
var openAPIDoc []byte

func openAPI(c *fiber.Ctx) error {
	// The document changes only with a release.
	c.Set(fiber.HeaderCacheControl, "public, max-age=3600")
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(openAPIDoc)
}
