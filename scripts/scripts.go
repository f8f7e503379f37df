// Package scripts holds sessiond's Lua scripts. Every change that touches more
// than one key runs as one of these, so no interleaving of requests can leave a
// session alive that should be dead. Each script validates everything before its
// first write: Redis keeps the writes a script made before it errored.
//
// The contract every script keeps, for Redis Cluster: all keys a script
// touches are of one user and carry that user's hash tag {uid}, so they are
// in one slot. Most are passed in KEYS. Three scripts also touch a user's
// session hashes that they find in the user's index, by a key prefix passed
// in ARGV (the prefix ends in "{uid}:", so every key built from it is in the
// same slot as KEYS): create (evicting the least recently used sessions),
// revoke_all (deleting them) and update_account (copying a new role into
// them), and delete_account (deleting them). A user's history (a stream) is
// in the user's slot too and passed in KEYS: the scripts that change an
// account or its sessions record the change's events there in the same step.
// The failed-login counters, the admin set and the bcrypt cost are single
// keys, each script touching exactly the one in KEYS[1].
//
// Field names are not written in the .lua files: they are filled in from
// internal/keys when the scripts load, so Go and Lua cannot disagree. This
// package holds no Go logic beyond loading the scripts; the stores decide
// what to run and what a reply means.
package scripts

import (
	_ "embed"
	"strings"
	"text/template"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/keys"
)

// Script is a loaded script and its source (for sending it by EVAL in one
// pipeline with a WAIT for replicas).
type Script struct {
	*rueidis.Lua
	Src string
}

// fields are what the .lua files name as {{.Name}}.
var fields = map[string]string{
	"UserHash": keys.UserHash, "UserRole": keys.UserRole, "UserDisabled": keys.UserDisabled,
	"UserVersion": keys.UserVersion, "SessLastSeen": keys.SessLastSeen, "SessExpires": keys.SessExpires,
	"SessIP": keys.SessIP, "SessRole": keys.SessRole, "DefaultRole": keys.DefaultRole,
	"Failures": keys.FieldFailures,
}

// recorder is prepended to the scripts that record events: they decode the
// events to record (audit.Spec) before their first write, and record them
// after their last.
const recorder = `-- decode_spec reads the events to record (audit.Spec); nil when malformed.
local function decode_spec(s)
  local ok, spec = pcall(cjson.decode, s)
  if not ok or type(spec) ~= 'table' or type(spec.ev) ~= 'table' or not tonumber(spec.max)
    or type(spec.minid) ~= 'string' then
    return nil
  end
  return spec
end
-- record appends spec's events (each a field, value list) to a user's
-- history and trims it by count and age; {count} in a value becomes count.
local function record(key, spec, count)
  for _, e in ipairs(spec.ev) do
    local fv = {}
    for i, v in ipairs(e) do fv[i] = (string.gsub(tostring(v), '{count}', tostring(count))) end
    redis.call('XADD', key, 'MAXLEN', '~', spec.max, '*', unpack(fv))
  end
  redis.call('XTRIM', key, 'MINID', '~', spec.minid)
end
`

// deleter is prepended to the scripts that end many sessions at once.
const deleter = `-- delete_sessions deletes the session hashes prefix..id of ids, but keep's,
-- and returns how many existed. unpack is bounded by the Lua stack, so it
-- deletes in chunks of 500.
local function delete_sessions(prefix, ids, keep)
  local n, batch, nb = 0, {}, 0
  for _, id in ipairs(ids) do
    if id ~= keep then
      nb = nb + 1
      batch[nb] = prefix .. id
      if nb == 500 then
        n = n + redis.call('DEL', unpack(batch, 1, nb))
        nb = 0
      end
    end
  end
  if nb > 0 then n = n + redis.call('DEL', unpack(batch, 1, nb)) end
  return n
end
`

func load(src string) Script {
	if strings.Contains(src, "record(") {
		src = recorder + src
	}
	if strings.Contains(src, "delete_sessions(") {
		src = deleter + src
	}
	t := template.Must(template.New("").Option("missingkey=error").Parse(src))
	var b strings.Builder
	if err := t.Execute(&b, fields); err != nil {
		panic(err) // a script names a field internal/keys lacks: caught by any test
	}
	return Script{Lua: rueidis.NewLuaScript(b.String()), Src: b.String()}
}

var (
	//go:embed create.lua
	createSrc string
	//go:embed touch.lua
	touchSrc string
	//go:embed revoke.lua
	revokeSrc string
	//go:embed revoke_all.lua
	revokeAllSrc string
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
	//go:embed create_account.lua
	createAccountSrc string
	//go:embed delete_account.lua
	deleteAccountSrc string
	//go:embed release_name.lua
	releaseNameSrc string
)

// The scripts, loaded once per process. rueidis runs them by EVALSHA and falls
// back to EVAL on NOSCRIPT, so they reload by themselves after a Redis restart.
var (
	// Create writes a new session hash and its index entry after checking the
	// account is enabled and its credential version unchanged.
	Create = load(createSrc)
	// Touch records use of a session and slides its idle expiry.
	Touch = load(touchSrc)
	// Revoke deletes one session of one user.
	Revoke = load(revokeSrc)
	// RevokeAll deletes a user's sessions (optionally keeping one), bumps the
	// credential version and applies account changes in the same step.
	RevokeAll = load(revokeAllSrc)
	// UpdateAccount sets account fields that end no session and copies a new
	// role into every live session of the account in the same step.
	UpdateAccount = load(updateAccountSrc)
	// Attempt takes one login attempt from a fixed-window budget, or refuses
	// it once the budget is spent.
	Attempt = load(attemptSrc)
	// AttemptSettle ends an attempt: a failure, a success that clears the
	// count, or neither.
	AttemptSettle = load(attemptSettleSrc)
	// Rehash replaces a password hash with one at the configured cost,
	// unless the password changed meanwhile.
	Rehash = load(rehashSrc)
	// AdminRelease takes an account out of the enabled admins unless it is
	// the last one.
	AdminRelease = load(adminReleaseSrc)
	// MaxCost raises the highest bcrypt cost in use.
	MaxCost = load(maxCostSrc)
	// CreateAccount writes a new account and its account.created event.
	CreateAccount = load(createAccountSrc)
	// DeleteAccount deletes an account and every session of it, keeping its
	// history, where it records account.deleted.
	DeleteAccount = load(deleteAccountSrc)
	// ReleaseName frees a deleted account's username unless it was claimed again.
	ReleaseName = load(releaseNameSrc)
)
