package app_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/sessiond/sessiond/app"
)

// GET /v1/me with an access token of a session with refresh tokens
// (ACCESS_TOKEN_TTL set, DPoP-bound): the hot path does the same work as
// without (BenchmarkMe), since requests are not proof-checked and the
// session read is the same three fields.
func BenchmarkMeWithRefreshTokens(b *testing.B) {
	e := newEnv(b, envOpts{AccessTokenTTL: 15 * time.Minute})
	e.createUser("alice", "password123", "")
	p := e.signIn("alice", "password123", "DPoP", newES256(b).proof(b, ownURL+"/v1/auth/login"))
	a := app.New(app.Deps{Users: e.Users, Sessions: e.Sessions, Tokens: e.Tokens, Log: slog.New(slog.DiscardHandler),
		AccessTokenTTL: 15 * time.Minute})
	serveBench(b, a.Handler(), p.Token)
}
