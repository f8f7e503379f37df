// Package scripts holds sessiond's Lua scripts. Every change that touches more
// than one key runs as one of these, so no interleaving of requests can leave a
// session alive that should be dead. Each script validates everything before its
// first write: Redis keeps the writes a script made before it errored.
package scripts

import (
	_ "embed"

	"github.com/redis/rueidis"
)

var (
	//go:embed create.lua
	createSrc string
	//go:embed touch.lua
	touchSrc string
	// RevokeSrc and RevokeAllSrc are the sources, for sending a revocation
	// by EVAL in one pipeline with a WAIT for replicas.
	//go:embed revoke.lua
	RevokeSrc string
	//go:embed revoke_all.lua
	RevokeAllSrc string
	//go:embed update_account.lua
	updateAccountSrc string
	//go:embed attempt.lua
	attemptSrc string
	//go:embed attempt_settle.lua
	attemptSettleSrc string
	//go:embed rehash.lua
	rehashSrc string
	//go:embed admin_release.lua
	adminReleaseSrc string
	//go:embed max_cost.lua
	maxCostSrc string
)

// The scripts, loaded once per process. rueidis runs them by EVALSHA and falls
// back to EVAL on NOSCRIPT, so they reload by themselves after a Redis restart.
var (
	// Create writes a new session hash and its index entry after checking the
	// account is enabled and its credential version unchanged.
	Create = rueidis.NewLuaScript(createSrc)
	// Touch records use of a session and slides its idle expiry.
	Touch = rueidis.NewLuaScript(touchSrc)
	// Revoke deletes one session of one user.
	Revoke = rueidis.NewLuaScript(RevokeSrc)
	// RevokeAll deletes a user's sessions (optionally keeping one), bumps the
	// credential version and applies account changes in the same step.
	RevokeAll = rueidis.NewLuaScript(RevokeAllSrc)
	// UpdateAccount sets account fields that end no session and copies a new
	// role into every live session of the account in the same step.
	UpdateAccount = rueidis.NewLuaScript(updateAccountSrc)
	// Attempt takes one login attempt from a fixed-window budget, or refuses
	// it once the budget is spent.
	Attempt = rueidis.NewLuaScript(attemptSrc)
	// AttemptSettle ends an attempt: a failure, a success that clears the
	// count, or neither.
	AttemptSettle = rueidis.NewLuaScript(attemptSettleSrc)
	// Rehash replaces a password hash with one at the configured cost,
	// unless the password changed meanwhile.
	Rehash = rueidis.NewLuaScript(rehashSrc)
	// AdminRelease takes an account out of the enabled admins unless it is
	// the last one.
	AdminRelease = rueidis.NewLuaScript(adminReleaseSrc)
	// MaxCost raises the highest bcrypt cost in use.
	MaxCost = rueidis.NewLuaScript(maxCostSrc)
)
