// Package keys is sessiond's Redis layout in one place: the key of every
// record, the field names of the account and session hashes, and the typed
// account change that the users store makes and the session scripts apply.
// The stores, the Lua scripts (through scripts/), the tests and the bench all
// name keys and fields through it. It knows nothing about HTTP.
//
// Everything of one user carries the hash tag {uid}, so every script that
// touches a user's account, sessions and index touches one cluster slot.
package keys

import (
	"strconv"
	"strings"
)

// Layout names the keys under one prefix.
type Layout struct{ prefix string }

// New returns the layout under prefix (REDIS_KEY_PREFIX). The prefix must not
// hold { or }: it would open a hash tag of its own.
func New(prefix string) Layout { return Layout{prefix: prefix} }

// Prefix is what every key starts with.
func (l Layout) Prefix() string { return l.prefix }

// User is a user's account hash (fields User*).
func (l Layout) User(uid string) string { return l.prefix + "user:{" + uid + "}" }

// Username claims a lowercased username for one account id (SET NX).
func (l Layout) Username(lower string) string { return l.prefix + "username:" + lower }

// Users is a sorted set of "lowercased name \x00 uid", all scored 0, so
// ZRANGE BYLEX pages through accounts in username order.
func (l Layout) Users() string { return l.prefix + "users" }

// Admins is the set of enabled admins' ids, for the last-admin rule: always
// a subset of them (an account joins after it became one and leaves before it
// stops).
func (l Layout) Admins() string { return l.prefix + "admins" }

// MaxCost holds the highest bcrypt cost any replica was configured with.
func (l Layout) MaxCost() string { return l.prefix + "bcrypt:maxcost" }

// The failed-login limiter's hashes (layout: scripts/attempt.lua) hold
// counts as fields, so what an outsider makes them count costs a small hash
// field, never a key, and each hash keeps a bounded number of them.
//
// FailIP is one client address's: its own count across usernames, and the
// count of each (username, address) pair tried from it (at most a hundred).
func (l Layout) FailIP(ip string) string { return l.prefix + "fail:addr:" + ip }

// FailNames is one of a fixed number of hashes of per-username counts,
// across addresses, by a salted hash of the name (an account's or not).
func (l Layout) FailNames(shard int) string { return l.prefix + "fail:names:" + strconv.Itoa(shard) }

// FailSalt is the random salt of the names' hashes in the limiter, so an
// outsider cannot aim names at one of its hashes.
func (l Layout) FailSalt() string { return l.prefix + "fail:salt" }

// FailClientIP is the failed client-authentication limiter of one address
// (introspection clients; a hash as FailIP's: its own count and its
// (client, address) pairs), apart from the login limiter: a login never
// spends a client's budget, nor a client a login's.
func (l Layout) FailClientIP(ip string) string { return l.prefix + "fail:clientip:" + ip }

// ClientFailRecorded marks that a failed client authentication of (client,
// ip) is in the feed this failure window, so a flood records it once. name
// is a hash of the client id, or of "" for an id that is no client.
func (l Layout) ClientFailRecorded(name, ip string) string {
	return l.prefix + "fail:clientev:" + name + ":" + ip
}

// Events is a user's security history: a stream, in the user's slot so the
// scripts that change the account record its events in the same step.
func (l Layout) Events(uid string) string { return l.prefix + "events:{" + uid + "}" }

// EventFeed is the cross-user feed of events, for admins: one stream in a
// slot of its own, written after each change (no script spans two slots).
func (l Layout) EventFeed() string { return l.prefix + "events" }

// Recovery is a user's set of recovery-code digests, in the user's slot.
func (l Layout) Recovery(uid string) string { return l.prefix + "recovery:{" + uid + "}" }

// MFAPending is a sign-in waiting for its second factor: a hash named by
// the digest of its mfa_token (the token itself is never stored).
func (l Layout) MFAPending(digest string) string { return l.prefix + "mfa:" + digest }

// MFAEnrolled exists once any account has confirmed a second factor: from
// then on the encryption key of the secrets is required at start-up.
func (l Layout) MFAEnrolled() string { return l.prefix + "mfa:enrolled" }

// Passkeys is a user's WebAuthn credentials: a hash, in the user's slot,
// from each credential's id (base64url) to its record (passkeys/).
func (l Layout) Passkeys(uid string) string { return l.prefix + "passkeys:{" + uid + "}" }

// PasskeyChallengeUsed marks a passkey challenge as spent, so an assertion
// or attestation over it is accepted once across replicas. It is in the
// slot of the account whose credential verified (only that account's holder
// can make one) and expires with the challenge; digest is a digest of the
// challenge.
func (l Layout) PasskeyChallengeUsed(uid, digest string) string {
	return l.prefix + "passkey:used:{" + uid + "}:" + digest
}

// PasskeySalt is the random key of the decoy credential ids a passkey
// sign-in shows for a name that is no account (or one without passkeys),
// one per deployment, so they stay the same across replicas and restarts.
func (l Layout) PasskeySalt() string { return l.prefix + "passkeys:salt" }

// Refusals are a user's refused sign-ins (and refused password checks),
// coalesced per type and failure window into records that are updated in
// place (a hash: record id → record, plus which record is current), apart
// from the history, so what anyone can cause never pushes out what only the
// account's own use or an admin can.
func (l Layout) Refusals(uid string) string { return l.prefix + "refused:{" + uid + "}" }

// AnonRefusals are the refusals of names that are no account, coalesced per
// type and window for everyone together (no name is kept): the feed only.
func (l Layout) AnonRefusals() string { return l.prefix + "refused:anon" }

// RefusalFeed is the cross-user feed of refusal records: one small entry
// (type, user, record id) when a record starts, the record itself read from
// its hash.
func (l Layout) RefusalFeed() string { return l.prefix + "refused" }

// Session is one session's hash (fields Sess*). One concatenation, one
// allocation: it is on every request.
func (l Layout) Session(uid, sid string) string { return l.prefix + "sess:{" + uid + "}:" + sid }

// SessionUses is where a user's sessions' use is written back: a hash of
// sid → "<last seen, unix ms> <ip>", beside the session hashes, so that
// recording use does not change the hash every request reads through the
// client-side cache, and so does not make Redis invalidate that read. One
// hash a user, not a key a session: a field costs about 75 bytes, a key of
// its own about 225. It lives as long as the longest-lived session it
// records.
func (l Layout) SessionUses(uid string) string { return l.prefix + "use:{" + uid + "}" }

// SessionPrefix is what a user's session keys start with; scripts append
// the sid.
func (l Layout) SessionPrefix(uid string) string { return l.prefix + "sess:{" + uid + "}:" }

// SessionIndex is a user's sorted set of sids scored by their expiry (ms).
func (l Layout) SessionIndex(uid string) string { return l.prefix + "sessions:{" + uid + "}" }

// DPoPProof records that a DPoP proof was accepted for one of a user's
// sessions, so its jti is accepted once (RFC 9449 §11.1). It is in the
// user's slot, so the script that accepts the proof records it in the same
// step; only holders of a user's password or refresh token can make one.
// jti is a digest of the proof's jti, which is client input.
func (l Layout) DPoPProof(uid, jti string) string { return l.prefix + "dpop:{" + uid + "}:" + jti }

// FailRefreshIP is the failed-refresh counter of one address (a hash like
// the failed-login counters), kept apart from them: a burst of refreshes
// that fail for no fault of the address (every device signed out at once)
// must not lock its sign-ins.
func (l Layout) FailRefreshIP(ip string) string { return l.prefix + "fail:refresh:" + ip }

// Account hash fields.
const (
	UserID       = "id"
	UserName     = "username"
	UserHash     = "hash" // bcrypt hash of the password
	UserRole     = "role"
	UserDisabled = "disabled"   // "1" when disabled
	UserCreated  = "created_at" // unix ms
	// UserVersion is the credential version: bumped whenever the account's
	// sessions are revoked together, so a login or password change checked
	// against an older one cannot land after.
	UserVersion = "cv"
	// UserPending is "1" while the account's creation has not finished
	// (users.Store.Create): until then it is no account to anyone (not
	// found, cannot sign in), and its record expires by itself.
	UserPending = "pending"
	// UserTOTP is the active TOTP secret, sealed (internal/seal) with the
	// account id as context; UserTOTPPending an enrollment not yet confirmed;
	// UserTOTPStep the last time step a code was accepted for (each once).
	UserTOTP        = "tt"
	UserTOTPPending = "tp"
	UserTOTPStep    = "ts"
)

// Session hash fields. The names are short because every byte of a field
// name is stored in every session (small hashes stay listpack-encoded); the
// user and session ids are not stored at all, since the key names both.
const (
	SessDevice    = "dn" // device name, as the client sent it
	SessPlatform  = "pf" // platform, as the client sent it
	SessUserAgent = "ua" // User-Agent the server saw
	SessIP        = "ip" // client IP the server saw at last use
	SessCreated   = "ca" // created at, unix seconds (fits listpack's 4-byte integers)
	SessLastSeen  = "ls" // last seen at, unix ms (the idle timeout may be short)
	SessExpires   = "ea" // absolute end, unix seconds (it is the JWT's exp)
	// SessHashExpires is when the hash itself expires (unix ms), set with
	// its expiry (create, slide): a touch that would not outlive it need
	// not rewrite the hash (sessions/touches.go).
	SessHashExpires = "he"
	// SessRole is the account's role unless it is the default, kept current
	// by the scripts so a request needs no account read.
	SessRole = "rl"
	// With refresh tokens (ACCESS_TOKEN_TTL): a token is stored only as its
	// SHA-256 digest (raw bytes), with the one it replaced and when that was
	// spent (the reuse grace runs from there), and the generation of the
	// current one (0 at sign-in, one more per refresh).
	SessRefresh      = "rt"
	SessRefreshPrev  = "rp"
	SessRefreshSpent = "rs" // unix ms
	SessRefreshGen   = "rg"
	// SessDPoPKey is the RFC 7638 thumbprint (base64url) of the DPoP key a
	// session's refresh tokens are bound to; absent when they are not.
	SessDPoPKey = "jk"
	// Assurance (aal, amr, auth_time), each stored only when it differs
	// from a password sign-in's (aal 1, amr pwd, auth_time = created), so
	// most sessions pay no byte for it. A step-up rewrites them in place.
	SessAAL      = "al" // "2" for two factors; absent: 1
	SessAMR      = "am" // RFC 8176 methods, space-separated; absent: "pwd"
	SessAuthTime = "at" // unix seconds of the last authentication; absent: created
)

// DefaultRole is the role a session hash stores no SessRole for: most
// sessions are of ordinary users, and the field would cost ~30 bytes each.
const DefaultRole = "user"

// FieldFailures is the failed-refresh count in a refresh limiter's hash
// (FailRefreshIP).
const FieldFailures = "f"

// AccountUpdate is a validated change to an account, as the users store
// makes it and the session scripts apply it: nil or empty parts stay as
// they are.
type AccountUpdate struct {
	Role         *string
	Disabled     *bool
	PasswordHash string
}

// EndsSessions reports whether the update must end every session of the
// account in the same step: disabling it, or setting its password.
func (u AccountUpdate) EndsSessions() bool {
	return u.PasswordHash != "" || (u.Disabled != nil && *u.Disabled)
}

// Empty reports whether the update changes nothing.
func (u AccountUpdate) Empty() bool {
	return u.Role == nil && u.Disabled == nil && u.PasswordHash == ""
}

// Fields are the account hash field, value pairs the update sets.
func (u AccountUpdate) Fields() []string {
	var f []string
	if u.Role != nil {
		f = append(f, UserRole, *u.Role)
	}
	if u.PasswordHash != "" {
		f = append(f, UserHash, u.PasswordHash)
	}
	if u.Disabled != nil {
		v := "0"
		if *u.Disabled {
			v = "1"
		}
		f = append(f, UserDisabled, v)
	}
	return f
}

// ValidPrefix reports whether a key prefix keeps every user's keys in one
// cluster slot: braces would open a hash tag of their own.
func ValidPrefix(p string) bool { return !strings.ContainsAny(p, "{}") }
