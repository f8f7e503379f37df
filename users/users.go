// Package users owns accounts: the User record, usernames, roles, bcrypt
// password hashes, the last-admin rule and the failed-login limits. It
// reaches Redis through the layout in internal/keys and the plumbing in
// internal/redisx; it knows nothing about sessions or HTTP.
package users

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/rueidis"
	"golang.org/x/crypto/bcrypt"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/internal/seal"
)

// Roles.
const (
	RoleUser  = keys.DefaultRole
	RoleAdmin = "admin"
)

// Password and username limits. bcrypt reads only the first 72 bytes of a
// password, so a longer one would silently share its hash with its prefix.
const (
	MinPasswordChars = 8
	MaxPasswordBytes = 72
	MaxUsernameLen   = 64
)

// Errors callers branch on, each with its code (internal/errcode).
var (
	ErrUsernameTaken      = errcode.New(errcode.UsernameTaken, "that username is taken")
	ErrInvalidCredentials = errcode.New(errcode.InvalidCredentials, "the username or password is wrong")
	ErrInvalidUsername    = errcode.New(errcode.Invalid, "username: must be 1 to 64 characters of letters, digits and . _ @ + -")
	ErrPasswordTooShort   = errcode.New(errcode.Invalid, fmt.Sprintf("password: must be at least %d characters", MinPasswordChars))
	ErrPasswordTooLong    = errcode.New(errcode.Invalid, fmt.Sprintf("password: must be at most %d bytes", MaxPasswordBytes))
	ErrInvalidRole        = errcode.New(errcode.Invalid, `role: must be "user" or "admin"`)
	ErrLastAdmin          = errcode.New(errcode.LastAdmin, "this is the last enabled admin: make another admin first")
)

// User is an account.
type User struct {
	ID        string
	Username  string
	Role      string
	Disabled  bool
	CreatedAt time.Time
	// CredentialVersion changes whenever the account's sessions are revoked
	// together (password change, disable, force-logout). A session may only be
	// created for the version its password was checked against.
	CredentialVersion string

	hash string
	// totp and totpPending are the sealed TOTP secrets, active and waiting
	// for confirmation ("" when none).
	totp, totpPending string
}

// Options configure a Store; each is required unless it says otherwise (the
// service's defaults are its configuration's, not the store's).
type Options struct {
	// Keys is the Redis layout, under the service's key prefix.
	Keys keys.Layout
	// BcryptCost is the work factor of new hashes.
	BcryptCost int
	// Timeout bounds every Redis call.
	Timeout time.Duration
	// MaxFailures failed logins per (username, client IP) per FailureWindow
	// lock that pair out until the window ends; 0 disables the limit.
	MaxFailures int
	// MaxFailuresPerIP failed logins from one client IP, across accounts, per
	// FailureWindow lock that IP out (credential stuffing); 0 disables it.
	MaxFailuresPerIP int
	// MaxFailuresPerAccount failed logins on one username, from any IP, per
	// FailureWindow lock that username out (distributed guessing); 0 disables it.
	MaxFailuresPerAccount int
	// FailureWindow is the window of the limits above.
	FailureWindow time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Audit records account events: creations, failed and throttled
	// sign-ins and password checks.
	Audit *audit.Log
	// Seal encrypts TOTP secrets at rest; nil or empty means second factors
	// cannot be enrolled (MFA_ENCRYPTION_KEY unset).
	Seal *seal.Ring
	// TOTPIssuer names the service in authenticator apps.
	TOTPIssuer string
	// Liveness lets the client-side cache answer only while its
	// connections are proven live (redisx.Liveness); nil: whenever rueidis
	// has the hash, for a client nothing watches.
	Liveness *redisx.Liveness
}

// Store keeps accounts in Redis.
type Store struct {
	c rueidis.Client
	o Options
	k keys.Layout
	// dummies are hashes checked against when the username does not exist,
	// so unknown users and wrong passwords take the same time: one per bcrypt
	// cost (int → dummy), made on first use.
	dummies sync.Map
}

// New returns a Store over a rueidis client. It computes one bcrypt hash at
// the configured cost, for the unknown-user path.
func New(c rueidis.Client, o Options) (*Store, error) {
	switch {
	case o.BcryptCost < bcrypt.MinCost || o.BcryptCost > bcrypt.MaxCost:
		return nil, fmt.Errorf("users: bcrypt cost %d out of range", o.BcryptCost)
	case o.Timeout <= 0:
		return nil, errors.New("users: a Redis timeout is required")
	case o.FailureWindow <= 0:
		return nil, errors.New("users: a failure window is required")
	case o.Audit == nil:
		return nil, errors.New("users: an audit log is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Store{c: c, o: o, k: o.Keys}
	start := time.Now()
	h, err := bcrypt.GenerateFromPassword([]byte(uuid.NewString()), o.BcryptCost)
	if err != nil {
		return nil, err
	}
	s.dummies.Store(o.BcryptCost, dummy{hash: h, took: time.Since(start)})
	return s, nil
}
