// Package scripts holds sessiond's Lua scripts. Every change that touches more
// than one key runs as one of these, so no interleaving of requests can leave a
// session alive that should be dead. Each script validates everything before its
// first write: Redis keeps the writes a script made before it errored.
//
// The contract every script keeps, for Redis Cluster: all keys a script
// touches are of one user and carry that user's hash tag {uid}, so they are
// in one slot. Most are passed in KEYS. Four scripts also touch a user's
// session hashes that they find in the user's index, by a key prefix passed
// in ARGV (the prefix ends in "{uid}:", so every key built from it is in the
// same slot as KEYS): create (evicting the least recently used sessions),
// revoke_all and delete_account (deleting them) and update_account (copying
// a new role into them). A user's history (a stream) is
// in the user's slot too and passed in KEYS: the scripts that change an
// account or its sessions record the change's events there in the same step.
// A DPoP proof's jti record is in the user's slot too, passed in KEYS, as
// are a user's passkeys and the spent mark of a passkey challenge.
// The failed-login limiter's hashes, a user's (or the unknown names')
// refusal records, the admin set and the bcrypt cost are single keys, each
// script touching exactly the one in KEYS[1].
//
// Field names are not written in the .lua files: they are filled in from
// internal/keys when the scripts load, so Go and Lua cannot disagree. This
// package holds no Go logic beyond loading the scripts; the stores decide
// what to run and what a reply means.
package scripts

import (
	"embed"
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
	"UserVersion": keys.UserVersion, "UserPending": keys.UserPending, "SessLastSeen": keys.SessLastSeen, "SessExpires": keys.SessExpires,
	"SessIP": keys.SessIP, "SessRole": keys.SessRole, "DefaultRole": keys.DefaultRole,
	"UserName": keys.UserName, "UserCreated": keys.UserCreated,
	"SessDevice": keys.SessDevice, "SessPlatform": keys.SessPlatform, "SessUserAgent": keys.SessUserAgent,
	"SessCreated": keys.SessCreated, "SessRefresh": keys.SessRefresh, "SessRefreshPrev": keys.SessRefreshPrev,
	"SessRefreshSpent": keys.SessRefreshSpent, "SessRefreshGen": keys.SessRefreshGen, "SessDPoPKey": keys.SessDPoPKey,
	"UserTOTP": keys.UserTOTP, "UserTOTPPending": keys.UserTOTPPending, "UserTOTPStep": keys.UserTOTPStep,
	"SessHashExpires": keys.SessHashExpires, "SessAAL": keys.SessAAL, "SessAMR": keys.SessAMR, "SessAuthTime": keys.SessAuthTime,
}

//go:embed *.lua lib/*.lua
var files embed.FS

// lib holds the Lua helpers (lib/*.lua). A script names each helper it uses
// with {{template "name.lua"}} ({{template "name.lua" .}} when the helper
// names fields), so a helper is written once and a script
// carries only the ones it calls.
var lib = template.Must(template.New("").Option("missingkey=error").ParseFS(files, "lib/*.lua"))

// load reads a script, fills in its helpers and field names, and loads it.
func load(name string) Script {
	src, err := files.ReadFile(name)
	if err != nil {
		panic(err) // a name below without its file: caught by any test
	}
	t := template.Must(template.Must(lib.Clone()).New(name).Parse(string(src)))
	var b strings.Builder
	if err := t.Execute(&b, fields); err != nil {
		panic(err) // a script names a field internal/keys lacks: caught by any test
	}
	return Script{Lua: rueidis.NewLuaScript(b.String()), Src: b.String()}
}

// The scripts, loaded once per process. rueidis runs them by EVALSHA and falls
// back to EVAL on NOSCRIPT, so they reload by themselves after a Redis restart.
var (
	// Create writes a new session hash and its index entry after checking the
	// account is enabled and its credential version unchanged.
	Create = load("create.lua")
	// Touch records use of a session and slides its idle expiry.
	Touch = load("touch.lua")
	// Reauth records a step-up of a session in place.
	Reauth = load("reauth.lua")
	// Refresh spends a session's refresh token and makes its successor
	// current, answers a retry within the grace, or ends the session when a
	// token spent before the grace comes back.
	Refresh = load("refresh.lua")
	// Revoke deletes one session of one user.
	Revoke = load("revoke.lua")
	// RevokeAll deletes a user's sessions (optionally keeping one), bumps the
	// credential version and applies account changes in the same step.
	RevokeAll = load("revoke_all.lua")
	// UpdateAccount sets account fields that end no session and copies a new
	// role into every live session of the account in the same step.
	UpdateAccount = load("update_account.lua")
	// Attempt takes one login attempt from fixed-window budgets of one
	// limiter hash, or refuses it once a budget is spent.
	Attempt = load("attempt.lua")
	// AttemptSettle ends an attempt on a limiter hash: per budget a failure,
	// a success that clears the count, or neither.
	AttemptSettle = load("attempt_settle.lua")
	// Refusal counts a refused sign-in in its window's record, or starts one.
	Refusal = load("refusal.lua")
	// Rehash replaces a password hash with one at the configured cost,
	// unless the password changed meanwhile.
	Rehash = load("rehash.lua")
	// AdminRelease takes an account out of the enabled admins unless it is
	// the last one.
	AdminRelease = load("admin_release.lua")
	// MaxCost raises the highest bcrypt cost in use.
	MaxCost = load("max_cost.lua")
	// CreateAccount writes a new account's record, marked pending until
	// FinishAccount, and expiring unless finished.
	CreateAccount = load("create_account.lua")
	// FinishAccount clears a new account's pending mark, keeps its record
	// for good and records account.created.
	FinishAccount = load("finish_account.lua")
	// AbandonAccount deletes a new account's record whose creation failed,
	// unless it finished.
	AbandonAccount = load("abandon_account.lua")
	// PersistName makes a username's claim permanent, if it is still the
	// account's.
	PersistName = load("persist_name.lua")
	// DeleteAccount deletes an account and every session of it, keeping its
	// history, where it records account.deleted.
	DeleteAccount = load("delete_account.lua")
	// ReleaseName frees a deleted account's username unless it was claimed again.
	ReleaseName = load("release_name.lua")
	// MFAConfirm activates a pending TOTP enrollment with its recovery codes.
	MFAConfirm = load("mfa_confirm.lua")
	// MFARemove removes every second factor of an account.
	MFARemove = load("mfa_remove.lua")
	// TOTPUse spends a TOTP code's time step, once.
	TOTPUse = load("totp_use.lua")
	// RecoveryUse spends a recovery code, once.
	RecoveryUse = load("recovery_use.lua")
	// RecoveryRegen replaces an account's recovery codes.
	RecoveryRegen = load("recovery_regen.lua")
	// PasskeyAdd registers a passkey, spending the challenge it answered.
	PasskeyAdd = load("passkey_add.lua")
	// PasskeyUse accepts a verified passkey assertion once, if its signature
	// counter moved forward, or records passkey.cloned.
	PasskeyUse = load("passkey_use.lua")
	// PasskeyRemove removes one passkey of an account, or every one.
	PasskeyRemove = load("passkey_remove.lua")
)
