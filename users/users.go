// Package users owns accounts: the User record, usernames, roles, bcrypt
// password hashes, the last-admin rule and the failed-login limits. It
// reaches Redis through the layout in internal/keys and the plumbing in
// internal/redisx; it knows nothing about sessions or HTTP.
package users

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/redis/rueidis"
	"golang.org/x/crypto/bcrypt"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/internal/seal"
	"github.com/sessiond/sessiond/scripts"
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

// TooManyAttemptsError is returned while a login (or a password check) is
// locked out.
type TooManyAttemptsError struct {
	// Wait is how long until the window ends.
	Wait time.Duration
}

// RetryAfter is how long until the window ends.
func (e *TooManyAttemptsError) RetryAfter() time.Duration { return e.Wait }

func (e *TooManyAttemptsError) Error() string {
	return "too many failed attempts; try again later"
}

// ErrorCode is errcode.TooManyAttempts.
func (e *TooManyAttemptsError) ErrorCode() string { return errcode.TooManyAttempts }

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

// limit is one failed-login budget: an entry of a limiter hash and its cap.
type limit struct {
	entry string
	max   int
	// reset on a successful login: the pair's and the account's counters are
	// the login's own. The IP's is not, or one valid account would let its
	// owner clear the way for guessing at everyone else's.
	reset bool
}

// limiter is one limiter hash (keys.FailIP, keys.FailNames) and the budgets
// a login takes from it.
type limiter struct {
	key string
	// capacity is how many evictable entries (pairs, names) it keeps: past it
	// the one with the fewest failures makes room and its count becomes the
	// floor every entry the hash lacks counts from (attempt_settle.lua), so the
	// hash stays small and a limit never forgets failures.
	capacity int
	limits   []limit
}

// Shape of the limiter. Names are spread over nameShards hashes of at most
// shardCapacity entries: 102,400 names failing in one window before any is
// evicted, at about 35 bytes each (a small hash stays a listpack under 128
// fields, in-flight attempts included). An address keeps at most
// pairsPerIP pairs, however many names it tries.
const (
	nameShards    = 1024
	shardCapacity = 100
	pairsPerIP    = 100
)

// Entries of the limiter hashes: the address's own count ('*': never
// evicted), a (name, address) pair's in the address's hash, a name's in its
// shard.
const (
	entryIP   = "*"
	entryPair = "p"
	entryName = "n"
)

// limiters are the budgets a login from ip for username is subject to. The
// name is hashed with the limiter's salt: at login it is arbitrary input and
// must not shape keys, and an outsider who cannot compute the hash cannot
// aim many names at one shard.
func (s *Store) limiters(ctx context.Context, username, ip string) ([]limiter, error) {
	salt, err := s.salt(ctx)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(salt + "\x00" + strings.ToLower(username)))
	name := hex.EncodeToString(sum[2:8])
	shard := int(binary.BigEndian.Uint16(sum[:2])) % nameShards
	var out []limiter
	addr := limiter{key: s.k.FailIP(ip), capacity: pairsPerIP}
	if s.o.MaxFailures > 0 {
		addr.limits = append(addr.limits, limit{entryPair + name, s.o.MaxFailures, true})
	}
	if s.o.MaxFailuresPerIP > 0 {
		addr.limits = append(addr.limits, limit{entryIP, s.o.MaxFailuresPerIP, false})
	}
	if len(addr.limits) > 0 {
		out = append(out, addr)
	}
	if s.o.MaxFailuresPerAccount > 0 {
		out = append(out, limiter{key: s.k.FailNames(shard), capacity: shardCapacity,
			limits: []limit{{entryName + name, s.o.MaxFailuresPerAccount, true}}})
	}
	return out, nil
}

// salt is the limiter's salt for names' hashes, one per deployment, made by
// whichever replica needs it first; read through the client-side cache, so a
// Redis that lost it (and with it every count) gets a new one everywhere.
func (s *Store) salt(ctx context.Context) (string, error) {
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	v, err := s.c.DoCache(ctx, s.c.B().Get().Key(s.k.FailSalt()).Cache(), time.Minute).ToString()
	if err == nil && v != "" {
		return v, nil
	}
	if err != nil && !rueidis.IsRedisNil(err) {
		return "", redisx.Unavailable("read the limiter's salt", err)
	}
	fresh := make([]byte, 16)
	_, _ = rand.Read(fresh)
	res := s.c.DoMulti(ctx,
		s.c.B().Set().Key(s.k.FailSalt()).Value(hex.EncodeToString(fresh)).Nx().Build(),
		s.c.B().Get().Key(s.k.FailSalt()).Build())
	if err := res[0].Error(); err != nil && !rueidis.IsRedisNil(err) {
		return "", redisx.Unavailable("make the limiter's salt", err)
	}
	v, err = res[1].ToString()
	if err != nil {
		return "", redisx.Unavailable("read the limiter's salt", err)
	}
	return v, nil
}

// inFlightStale is how long an attempt may be in flight before the limits
// take it to have died with its process and stop counting it. A bcrypt check
// takes a second at most, even at cost 14 on a loaded machine.
const inFlightStale = 30 * time.Second

// maxAttemptWait bounds how long an attempt waits for others in flight to
// settle before it is refused as over the limit.
const maxAttemptWait = 10 * time.Second

// attempt is a login attempt taken from every limiter it is subject to.
type attempt struct {
	id       string
	limiters []limiter
}

// newAttemptID is a short random id: it is stored in a hash field per
// attempt in flight.
func newAttemptID() string {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// takeAttempt takes one attempt from every budget before the password is
// checked, so a burst of concurrent guesses gets no more checks than the
// limits allow. Past any limit (failures alone) it returns
// *TooManyAttemptsError. Where only attempts still in flight fill a budget it
// waits for them to settle, so a burst of right passwords is never refused:
// they settle as successes. The attempt must be settled.
func (s *Store) takeAttempt(ctx context.Context, limiters []limiter) (attempt, error) {
	a := attempt{id: newAttemptID()}
	if len(limiters) == 0 {
		return a, nil
	}
	window := strconv.FormatInt(s.o.FailureWindow.Milliseconds(), 10)
	stale := strconv.FormatInt(inFlightStale.Milliseconds(), 10)
	giveUp := time.Now().Add(maxAttemptWait)
	for pause := 5 * time.Millisecond; ; pause = min(pause*2, 100*time.Millisecond) {
		now := strconv.FormatInt(s.o.Now().UnixMilli(), 10)
		execs := make([]rueidis.LuaExec, len(limiters))
		for i, l := range limiters {
			args := []string{now, window, a.id, stale}
			for _, b := range l.limits {
				args = append(args, b.entry, strconv.Itoa(b.max))
			}
			execs[i] = rueidis.LuaExec{Keys: []string{l.key}, Args: args}
		}
		var (
			wait  time.Duration
			busy  bool
			fault error
		)
		a.limiters = a.limiters[:0]
		rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
		for i, r := range scripts.Attempt.ExecMulti(rctx, s.c, execs...) {
			res, err := r.AsIntSlice()
			switch {
			case err != nil || len(res) != 2:
				fault = cmp.Or(err, errors.New("unexpected reply"))
			case res[0] == 1:
				a.limiters = append(a.limiters, limiters[i])
			case res[0] == 2:
				busy = true
			default:
				wait = max(wait, retryAfter(res[1], s.o.FailureWindow))
			}
		}
		cancel()
		if fault == nil && wait == 0 && !busy {
			return a, nil
		}
		// Nothing will be checked this round: it is no failure.
		s.settle(ctx, a, "return")
		switch {
		case fault != nil:
			return attempt{}, redisx.Unavailable("check login limit", fault)
		case wait > 0:
			return attempt{}, &TooManyAttemptsError{Wait: wait}
		case time.Now().After(giveUp):
			return attempt{}, &TooManyAttemptsError{Wait: time.Second}
		}
		select {
		case <-ctx.Done():
			return attempt{}, redisx.Unavailable("check login limit", ctx.Err())
		case <-time.After(pause):
		}
	}
}

// settle ends an attempt on every limiter it took: "fail" counts a failed
// guess, "ok" clears the failures of the budgets a success clears and just
// ends it on the others, "return" just ends it (no password was checked).
// It is best effort where Redis cannot be reached: the attempt then stops
// counting after inFlightStale.
func (s *Store) settle(ctx context.Context, a attempt, outcome string) {
	if len(a.limiters) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
	defer cancel()
	now := strconv.FormatInt(s.o.Now().UnixMilli(), 10)
	window := strconv.FormatInt(s.o.FailureWindow.Milliseconds(), 10)
	execs := make([]rueidis.LuaExec, len(a.limiters))
	for i, l := range a.limiters {
		args := []string{a.id, now, window, strconv.Itoa(l.capacity)}
		for _, b := range l.limits {
			o := outcome
			if o == "ok" {
				o = "return"
				if b.reset {
					o = "reset"
				}
			}
			args = append(args, b.entry, o)
		}
		execs[i] = rueidis.LuaExec{Keys: []string{l.key}, Args: args}
	}
	scripts.AttemptSettle.ExecMulti(ctx, s.c, execs...)
}

// Guard runs one credential check under the failed-attempt limits of
// (username, clientIP), the limits logins are under: the attempt is taken
// before check runs, and counted as a failure unless check reports the
// credential right. Past a limit it returns *TooManyAttemptsError without
// running check; a wrong credential is ErrInvalidCredentials. Introspection
// clients' secrets have limits of their own (GuardClient).
func (s *Store) Guard(ctx context.Context, username, clientIP string, check func() (bool, error)) error {
	limiters, err := s.limiters(ctx, username, clientIP)
	if err != nil {
		return err
	}
	a, err := s.takeAttempt(ctx, limiters)
	if err != nil {
		return err
	}
	ok, err := check()
	switch {
	case err != nil:
		s.settle(ctx, a, "return") // no password was checked
		return err
	case !ok:
		s.settle(ctx, a, "fail")
		return ErrInvalidCredentials
	}
	s.settle(ctx, a, "ok")
	return nil
}

// ValidUsername reports whether a name may be registered: ASCII letters,
// digits and . _ @ + -, so case-insensitive matching is plain ASCII folding.
func ValidUsername(name string) bool {
	if name == "" || len(name) > MaxUsernameLen {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("._@+-", r):
		default:
			return false
		}
	}
	return true
}

// validRole reports whether role is one of the roles.
func validRole(role string) bool { return role == RoleUser || role == RoleAdmin }

// ValidPassword checks a new password's length rules: ErrPasswordTooLong
// or ErrPasswordTooShort.
func ValidPassword(password string) error {
	if len(password) > MaxPasswordBytes {
		return ErrPasswordTooLong
	}
	if utf8.RuneCountInString(password) < MinPasswordChars {
		return ErrPasswordTooShort
	}
	return nil
}

// hashPassword checks a new password's length rules and hashes it.
func (s *Store) hashPassword(password string) (string, error) {
	if err := ValidPassword(password); err != nil {
		return "", err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.o.BcryptCost)
	return string(h), err
}

// Create registers an account. The username is unique case-insensitively;
// role "" means RoleUser.
//
// Creation is whole or nothing. Its keys are in four cluster slots (the
// username's claim, the record with its history, the listing, the admin
// set), so no one script can write them all; instead the record is written
// pending: an account whose creation has not finished is no account to
// anyone (not found, cannot sign in), and its claim and record expire by
// themselves (pendingTTL). The listing and the admin set are written while
// it is pending, then the claim is made permanent, then the record is
// finished together with its account.created event. A failure on the way
// answers unavailable after undoing what it wrote; if the undo fails too,
// what is left expires, and a retry of the same creation (same username,
// password and role) within pendingTTL finishes it instead. An admin that
// is pending is a member of the admin set that ReleaseAdmin does not count.
func (s *Store) Create(ctx context.Context, username, password, role string, by audit.Actor) (User, error) {
	if role == "" {
		role = RoleUser
	}
	if !ValidUsername(username) {
		return User{}, ErrInvalidUsername
	}
	if !validRole(role) {
		return User{}, ErrInvalidRole
	}
	hash, err := s.hashPassword(password)
	if err != nil {
		return User{}, err
	}
	u := User{ID: uuid.NewString(), Username: username, Role: role,
		CreatedAt: s.o.Now().UTC().Truncate(time.Millisecond), CredentialVersion: "0", hash: hash}
	lower := strings.ToLower(username)
	created := by.Event(audit.AccountCreated, u.ID, "", "role "+role)
	// Twice at most: the second claim follows one freed as a leftover.
	for range 2 {
		err := s.create(ctx, u, lower, created)
		if err == nil {
			s.o.Audit.Feed(ctx, created)
			return u, nil
		}
		if !errors.Is(err, errClaimed) {
			return User{}, err
		}
		other, retry, err := s.claimedBy(ctx, lower, password, role, by)
		if !retry {
			return other, err
		}
	}
	return User{}, ErrUsernameTaken
}

// errClaimed is create's report that the username is claimed.
var errClaimed = errors.New("the username is claimed")

// pendingTTL is how long an account being created may stay unfinished: its
// claim and record expire after it, when a failed creation could not undo
// them. A creation's steps all run within one Redis timeout and its undo
// within another, so twice that and a margin.
func (s *Store) pendingTTL() time.Duration { return 2*s.o.Timeout + time.Second }

// create claims the username for u and runs every step of its creation;
// errClaimed when the name is taken (nothing written). On any other failure
// it undoes what it wrote.
func (s *Store) create(ctx context.Context, u User, lower string, created audit.Event) error {
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	// The claim is what makes the name unique; it expires unless the
	// creation finishes.
	ok, err := s.c.Do(rctx, s.c.B().Set().Key(s.k.Username(lower)).Value(u.ID).Nx().
		Px(s.pendingTTL()).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return errClaimed
	}
	if err == nil && ok != "OK" {
		err = fmt.Errorf("unexpected reply %q", ok)
	}
	if err != nil {
		// A timeout may have claimed it: undo as for any later step.
		s.abandon(ctx, u.ID, lower)
		return redisx.Unavailable("claim username", err)
	}
	n, err := scripts.CreateAccount.Exec(rctx, s.c, []string{s.k.User(u.ID)}, []string{
		strconv.FormatInt(s.pendingTTL().Milliseconds(), 10),
		keys.UserID, u.ID, keys.UserName, u.Username, keys.UserHash, u.hash, keys.UserRole, u.Role, keys.UserDisabled, "0",
		keys.UserCreated, strconv.FormatInt(u.CreatedAt.UnixMilli(), 10), keys.UserVersion, "0"}).AsInt64()
	if err == nil && n != 1 {
		err = errors.New("an account with this new id exists") // a UUID v4 collision
	}
	if err == nil {
		err = s.complete(rctx, u, lower, created)
	}
	if err != nil {
		s.abandon(ctx, u.ID, lower)
		return redisx.Unavailable("create user", err)
	}
	return nil
}

// complete runs the steps of a creation after its pending record: the
// listing, the admin set, the claim made permanent, the record finished with
// its account.created event. Each is idempotent, so a retry may run them
// again.
func (s *Store) complete(ctx context.Context, u User, lower string, created audit.Event) error {
	if err := s.c.Do(ctx, s.c.B().Zadd().Key(s.k.Users()).ScoreMember().ScoreMember(0, lower+"\x00"+u.ID).Build()).Error(); err != nil {
		return fmt.Errorf("list the account: %w", err)
	}
	if u.Role == RoleAdmin && !u.Disabled {
		// Before the account is finished: once it is, it must be in the set,
		// or the last-admin rule would not guard it.
		if err := s.c.Do(ctx, s.c.B().Sadd().Key(s.k.Admins()).Member(u.ID).Build()).Error(); err != nil {
			return fmt.Errorf("record the admin: %w", err)
		}
	}
	n, err := scripts.PersistName.Exec(ctx, s.c, []string{s.k.Username(lower)}, []string{u.ID}).AsInt64()
	if err == nil && n != 1 {
		err = errors.New("the claim expired before the account was finished")
	}
	if err != nil {
		return fmt.Errorf("keep the username: %w", err)
	}
	n, err = scripts.FinishAccount.Exec(ctx, s.c, []string{s.k.User(u.ID), s.k.Events(u.ID)},
		[]string{audit.Spec(u.CreatedAt, created)}).AsInt64()
	if err == nil && n == 0 {
		err = errors.New("the record expired before the account was finished")
	}
	if err != nil {
		return fmt.Errorf("finish the account: %w", err)
	}
	return nil
}

// abandon undoes what a failed creation of account id wrote, best effort:
// the record unless it finished after all (then the account is whole and
// stays), then its admin-set membership, its listing and its claim. What it
// cannot undo expires (pendingTTL), or a retry finishes it.
func (s *Store) abandon(ctx context.Context, id, lower string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
	defer cancel()
	n, err := scripts.AbandonAccount.Exec(ctx, s.c, []string{s.k.User(id)}, nil).AsInt64()
	if err != nil || n == 2 {
		return
	}
	s.c.DoMulti(ctx,
		s.c.B().Srem().Key(s.k.Admins()).Member(id).Build(),
		s.c.B().Zrem().Key(s.k.Users()).Member(lower+"\x00"+id).Build())
	scripts.ReleaseName.Exec(ctx, s.c, []string{s.k.Username(lower)}, []string{id})
}

// claimedBy decides a creation whose username is claimed: ErrUsernameTaken
// for an account (finished, or another creation's with another password
// or role); the account itself when the claim is an unfinished creation of
// this password and role (a retry: it is finished now); retry when the
// claim is gone or was a leftover, now freed.
func (s *Store) claimedBy(ctx context.Context, lower, password, role string, by audit.Actor) (u User, retry bool, err error) {
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	claim := s.k.Username(lower)
	id, err := s.c.Do(rctx, s.c.B().Get().Key(claim).Build()).ToString()
	var h map[string]string
	if err == nil {
		h, err = s.c.Do(rctx, s.c.B().Hgetall().Key(s.k.User(id)).Build()).AsStrMap()
	}
	var ttl int64
	if err == nil && h[keys.UserID] == "" {
		ttl, err = s.c.Do(rctx, s.c.B().Pttl().Key(claim).Build()).AsInt64()
	}
	cancel()
	switch {
	case rueidis.IsRedisNil(err):
		return User{}, true, nil // freed meanwhile
	case err != nil:
		return User{}, false, redisx.Unavailable("read the username's account", err)
	case h[keys.UserID] == "" && ttl > 0:
		// A creation that has claimed the name and not yet written its
		// record, or failed a moment ago: in a moment it is an account, or
		// the name is free.
		return User{}, false, redisx.Unavailable("create user", errors.New("a creation of this username is under way"))
	case h[keys.UserID] == "":
		// A permanent claim without an account: left by a creation whose
		// record expired unfinished, or a deletion that could not free the
		// name. Free it, unless it changed meanwhile.
		rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
		defer cancel()
		if err := scripts.ReleaseName.Exec(rctx, s.c, []string{claim}, []string{id}).Error(); err != nil {
			return User{}, false, redisx.Unavailable("free username", err)
		}
		return User{}, true, nil
	case h[keys.UserPending] == "":
		return User{}, false, ErrUsernameTaken
	}
	// An unfinished creation. Only the same creation retried may finish it:
	// the same role and password (bcrypt, outside the Redis deadline).
	u = fields(h)
	if u.Role != role || bcrypt.CompareHashAndPassword([]byte(u.hash), []byte(password)) != nil {
		return User{}, false, ErrUsernameTaken
	}
	created := by.Event(audit.AccountCreated, u.ID, "", "role "+role)
	rctx, cancel = redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	if err := s.complete(rctx, u, lower, created); err != nil {
		s.abandon(ctx, u.ID, lower)
		return User{}, false, redisx.Unavailable("create user", err)
	}
	s.o.Audit.Feed(ctx, created)
	return u, false, nil
}

// Forget frees a deleted account's username and takes it out of the
// listings (after sessions.Store.DeleteAccount removed its record: these
// keys are in other slots). A name claimed by another account since is left
// alone.
func (s *Store) Forget(ctx context.Context, u User) error {
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	lower := strings.ToLower(u.Username)
	for _, r := range s.c.DoMulti(ctx,
		s.c.B().Zrem().Key(s.k.Users()).Member(lower+"\x00"+u.ID).Build(),
		s.c.B().Srem().Key(s.k.Admins()).Member(u.ID).Build(),
	) {
		if err := r.Error(); err != nil {
			return redisx.Unavailable("forget account", err)
		}
	}
	if err := scripts.ReleaseName.Exec(ctx, s.c, []string{s.k.Username(lower)}, []string{u.ID}).Error(); err != nil {
		return redisx.Unavailable("free username", err)
	}
	return nil
}

// ReleaseAdmin must run before an account may stop being an enabled admin
// (demoted, disabled, deleted): it fails with ErrLastAdmin when the account
// is the last enabled admin, atomically, so two admins demoting each other at
// once cannot both succeed. It is a no-op for any other account. Call
// SyncAdmin after the change, whether it succeeded or not.
//
// The set may hold members that are no enabled admin: an admin whose
// creation has not finished joins before its record is finished (Create),
// and one whose creation failed and could not be undone, or whose deletion
// could not leave the set, stays until removed. So once the script has
// taken the account out, the admins that remain are read, and unless one of
// them is a finished, enabled admin the account is put back and the change
// refused. (Concurrent releases may then both be refused; never both pass.)
// Members without a record are dropped.
func (s *Store) ReleaseAdmin(ctx context.Context, id string) error {
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := scripts.AdminRelease.Exec(ctx, s.c, []string{s.k.Admins()}, []string{id}).AsInt64()
	switch {
	case err != nil:
		return redisx.Unavailable("check the last admin", err)
	case n == 0:
		return ErrLastAdmin
	case n == 2:
		return nil // no member: no enabled admin
	}
	others, err := s.otherAdmins(ctx)
	if err == nil && others > 0 {
		return nil
	}
	// Back in the set: it is still an admin until its change is made.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
	defer rcancel()
	if aerr := s.c.Do(rctx, s.c.B().Sadd().Key(s.k.Admins()).Member(id).Build()).Error(); aerr != nil && err == nil {
		err = aerr
	}
	if err != nil {
		return redisx.Unavailable("check the last admin", err)
	}
	return ErrLastAdmin
}

// otherAdmins counts the members of the admin set whose record is a
// finished, enabled admin, and drops members that have no record.
func (s *Store) otherAdmins(ctx context.Context) (int, error) {
	ids, err := s.c.Do(ctx, s.c.B().Smembers().Key(s.k.Admins()).Build()).AsStrSlice()
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	cmds := make(rueidis.Commands, len(ids))
	for i, m := range ids {
		cmds[i] = s.c.B().Hmget().Key(s.k.User(m)).Field(keys.UserID, keys.UserRole, keys.UserDisabled, keys.UserPending).Build()
	}
	n := 0
	var gone []string
	for i, r := range s.c.DoMulti(ctx, cmds...) {
		vals, err := r.ToArray()
		if err != nil || len(vals) != 4 {
			return 0, cmp.Or(err, errors.New("unexpected reply"))
		}
		str := func(j int) string { v, _ := vals[j].ToString(); return v }
		switch {
		case str(0) == "":
			gone = append(gone, ids[i])
		case str(1) == RoleAdmin && str(2) != "1" && str(3) == "":
			n++
		}
	}
	if len(gone) > 0 {
		s.c.Do(ctx, s.c.B().Srem().Key(s.k.Admins()).Member(gone...).Build())
	}
	return n, nil
}

// SyncAdmin puts an account in the set of enabled admins when it is one now
// (after it was created as, promoted to or re-enabled as an admin, or after a
// change that ReleaseAdmin allowed failed), and takes it out otherwise.
func (s *Store) SyncAdmin(ctx context.Context, id string) error {
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	u, err := s.getWithHash(ctx, id)
	var cmd rueidis.Completed
	switch {
	case err == nil && u.Role == RoleAdmin && !u.Disabled:
		cmd = s.c.B().Sadd().Key(s.k.Admins()).Member(id).Build()
	case err == nil || errors.Is(err, errcode.ErrUserNotFound):
		cmd = s.c.B().Srem().Key(s.k.Admins()).Member(id).Build()
	default:
		return err
	}
	if err := s.c.Do(ctx, cmd).Error(); err != nil {
		return redisx.Unavailable("record admins", err)
	}
	return nil
}

// Prepare readies the store at start-up: it records this replica's bcrypt
// cost as one an account's hash may have, makes the limiter's salt if no
// replica has, and makes the dummy hash for the dearest such cost.
func (s *Store) Prepare(ctx context.Context) error {
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	if err := scripts.MaxCost.Exec(rctx, s.c, []string{s.k.MaxCost()}, []string{strconv.Itoa(s.o.BcryptCost)}).Error(); err != nil {
		return redisx.Unavailable("record bcrypt cost", err)
	}
	if _, err := s.salt(rctx); err != nil {
		return err
	}
	s.dummyAt(s.topCost(ctx))
	return nil
}

// Get returns an account by id as Redis has it now. Use it where a change
// must bite at once (admin rights).
func (s *Store) Get(ctx context.Context, id string) (User, error) {
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	return s.getWithHash(ctx, id)
}

// publicFields are the fields GetCached reads: never the password hash, so
// no hash sits in the process's client-side cache.
var publicFields = []string{keys.UserID, keys.UserName, keys.UserRole, keys.UserDisabled, keys.UserCreated, keys.UserVersion, keys.UserPending}

// GetCached returns an account by id from the client-side cache when it can
// (and its connections are proven live). Redis invalidates the entry on any
// change, within milliseconds.
func (s *Store) GetCached(ctx context.Context, id string) (User, error) {
	vals, _, err := redisx.CachedHMGet(ctx, s.c, s.o.Liveness, s.o.Now(), s.k.User(id), publicFields, time.Minute, s.o.Timeout)
	if err != nil {
		return User{}, err
	}
	// Positional, no map.
	str := func(i int) string { v, _ := vals[i].ToString(); return v }
	if str(0) == "" || str(6) != "" {
		return User{}, errcode.ErrUserNotFound // none, or not finished
	}
	created, _ := strconv.ParseInt(str(4), 10, 64)
	return User{ID: str(0), Username: str(1), Role: str(2), Disabled: str(3) == "1",
		CreatedAt: time.UnixMilli(created).UTC(), CredentialVersion: cmp.Or(str(5), "0")}, nil
}

// FindByUsername returns the account with that name, case-insensitively,
// never from the cache: a password check must see the current hash.
func (s *Store) FindByUsername(ctx context.Context, username string) (User, error) {
	if !ValidUsername(username) {
		return User{}, errcode.ErrUserNotFound
	}
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	id, err := s.c.Do(ctx, s.c.B().Get().Key(s.k.Username(strings.ToLower(username))).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return User{}, errcode.ErrUserNotFound
	}
	if err != nil {
		return User{}, redisx.Unavailable("find user", err)
	}
	return s.getWithHash(ctx, id)
}

// List returns up to limit accounts in username order after cursor ("" for
// the first page), and the cursor of the next page ("" on the last). A limit
// below 1 is taken as 1.
func (s *Store) List(ctx context.Context, cursor string, limit int) ([]User, string, error) {
	limit = max(limit, 1)
	from := "-"
	if cursor != "" {
		after, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || !strings.Contains(string(after), "\x00") {
			return nil, "", errcode.ErrInvalidCursor
		}
		from = "(" + string(after)
	}
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	members, err := s.c.Do(ctx, s.c.B().Zrange().Key(s.k.Users()).Min(from).Max("+").Bylex().
		Limit(0, int64(limit)+1).Build()).AsStrSlice()
	if err != nil {
		return nil, "", redisx.Unavailable("list users", err)
	}
	next := ""
	if len(members) > limit {
		members = members[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(members[limit-1]))
	}
	out := make([]User, 0, len(members))
	if len(members) == 0 {
		return out, next, nil
	}
	cmds := make(rueidis.Commands, len(members))
	for i, m := range members {
		cmds[i] = s.c.B().Hgetall().Key(s.k.User(m[strings.IndexByte(m, 0)+1:])).Build()
	}
	for _, r := range s.c.DoMulti(ctx, cmds...) {
		h, err := r.AsStrMap()
		if err != nil {
			return nil, "", redisx.Unavailable("list users", err)
		}
		if u, err := decode(h); err == nil {
			out = append(out, u)
		}
	}
	return out, next, nil
}

// Authenticate checks a username and password from clientIP. Unknown user and
// wrong password both give ErrInvalidCredentials after the same bcrypt work.
// A correct password on a disabled account gives errcode.ErrAccountDisabled. Failed
// attempts are counted in Redis, so the limits hold across replicas: per
// (username, clientIP), per clientIP and per username; past any of them,
// *TooManyAttemptsError until its window ends. An attempt is counted before
// its password is checked, so concurrent guesses cannot overrun a limit.
// A right password whose hash has another cost than the configured one is
// rehashed at the configured cost.
func (s *Store) Authenticate(ctx context.Context, username, password string, from audit.Actor) (User, error) {
	// Each Redis step has its own deadline: bcrypt in between may take longer
	// than one (cost 14 is about a second, more on a loaded machine).
	var u User
	err := s.Guard(ctx, username, from.IP, func() (bool, error) {
		var err error
		u, err = s.FindByUsername(ctx, username)
		if err != nil && !errors.Is(err, errcode.ErrUserNotFound) {
			return false, err
		}
		if errors.Is(err, errcode.ErrUserNotFound) {
			s.compareUnknown(ctx, password)
			return false, nil
		}
		return s.compare(ctx, u.hash, password), nil
	})
	if err != nil {
		s.recordRefusal(ctx, err, u.ID, username, from, audit.KindSignIn)
		return User{}, err
	}
	s.rehash(ctx, u, password)
	if u.Disabled {
		return User{}, errcode.ErrAccountDisabled
	}
	return u, nil
}

// recordRefusal records a failed or throttled sign-in (or password check, of
// kind), in the account's refusal records when there is an account (uid, or,
// for a refusal before any check, found by name), else in those of names
// that are no account, without the name: it may be a password typed in the
// wrong field. Each is one record per window however many there are
// (audit.Log.Refused).
func (s *Store) recordRefusal(ctx context.Context, err error, uid, username string, from audit.Actor, kind string) {
	typ := audit.LoginFailed
	var tooMany *TooManyAttemptsError
	switch {
	case errors.As(err, &tooMany):
		typ = audit.LoginThrottled
	case !errors.Is(err, ErrInvalidCredentials):
		return // Redis: nothing was decided
	}
	if uid == "" && typ == audit.LoginThrottled {
		// Refused before the check looked the name up; after it, no uid
		// means no such account.
		if u, ferr := s.FindByUsername(ctx, username); ferr == nil {
			uid = u.ID
		}
	}
	_ = s.o.Audit.Refused(ctx, audit.Refusal{Type: typ, UserID: uid, Kind: kind, IP: from.IP, UserAgent: from.UserAgent},
		s.o.FailureWindow)
}

// CheckPassword verifies an account's current password (for a password
// change) from clientIP, under the same failed-attempt limits as a login of
// that account. ErrInvalidCredentials when it is wrong, *TooManyAttemptsError
// past a limit. The returned User's CredentialVersion is the one checked.
func (s *Store) CheckPassword(ctx context.Context, id, password string, from audit.Actor) (User, error) {
	u, err := s.Get(ctx, id)
	if err != nil {
		return User{}, err
	}
	err = s.Guard(ctx, u.Username, from.IP, func() (bool, error) {
		return s.compare(ctx, u.hash, password), nil
	})
	if err != nil {
		s.recordRefusal(ctx, err, u.ID, u.Username, from, audit.KindPasswordChange)
		return User{}, err
	}
	s.rehash(ctx, u, password)
	return u, nil
}

// compare reports whether password is the one hashed. bcrypt would compare
// only the first 72 bytes: a longer password is simply wrong, after the same
// work as any other. A wrong password for a hash cheaper than the dearest
// an account may still have takes as long as that one would, so the time of a
// refusal never tells one account from another, nor from an unknown name.
func (s *Store) compare(ctx context.Context, hash, password string) bool {
	start := time.Now()
	ok := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil && len(password) <= MaxPasswordBytes
	cost, err := bcrypt.Cost([]byte(hash))
	if err == nil {
		s.observe(cost, time.Since(start))
	}
	if !ok {
		if top := s.topCost(ctx); err == nil && cost < top {
			s.padTo(start, top)
		}
	}
	return ok
}

// compareUnknown does for a username that does not exist the work a wrong
// password costs for an account at the dearest cost any account may have.
func (s *Store) compareUnknown(ctx context.Context, password string) {
	top := s.topCost(ctx)
	d := s.dummyAt(top)
	start := time.Now()
	_ = bcrypt.CompareHashAndPassword(d.hash, []byte(password))
	s.observe(top, time.Since(start))
}

// dummy is a hash of a random password, checked against when a username does
// not exist, and about how long one check at its cost takes now.
type dummy struct {
	hash []byte
	took time.Duration
}

// observe folds how long a check at cost just took into its dummy's
// estimate, so padding follows what checks take now: one sample, taken when
// the dummy was made, under another load than now, made a padded refusal
// three times faster or slower than a real check (seen under -race on a
// loaded machine).
func (s *Store) observe(cost int, took time.Duration) {
	if v, ok := s.dummies.Load(cost); ok {
		d := v.(dummy)
		d.took = (d.took + took) / 2
		s.dummies.Store(cost, d)
	}
}

// dummyAt returns the dummy hash at a bcrypt cost, made on first use.
func (s *Store) dummyAt(cost int) dummy {
	if d, ok := s.dummies.Load(cost); ok {
		return d.(dummy)
	}
	start := time.Now()
	h, err := bcrypt.GenerateFromPassword([]byte(uuid.NewString()), cost)
	if err != nil {
		// Out of range only; the configured cost's dummy is made in New.
		d, _ := s.dummies.Load(s.o.BcryptCost)
		return d.(dummy)
	}
	d, _ := s.dummies.LoadOrStore(cost, dummy{hash: h, took: time.Since(start)})
	return d.(dummy)
}

// padTo sleeps until a check that started at start has taken as long as one
// at cost would (sleeping, not hashing: the padding costs no CPU).
func (s *Store) padTo(start time.Time, cost int) {
	if d := s.dummyAt(cost).took - time.Since(start); d > 0 {
		time.Sleep(d)
	}
}

// topCost is the highest bcrypt cost an account's hash may have: the
// highest any replica was ever configured with (maxCostKey), and at least
// this one's. Read through the client-side cache: it changes only when a
// replica starts with a higher cost.
func (s *Store) topCost(ctx context.Context) int {
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := s.c.DoCache(ctx, s.c.B().Get().Key(s.k.MaxCost()).Cache(), time.Minute).AsInt64()
	if err != nil {
		return s.o.BcryptCost
	}
	return max(int(n), s.o.BcryptCost)
}

// rehash stores a right password's hash again at the configured cost when
// its cost differs, so an account's refusals cost what everyone's do and a
// raised cost reaches accounts as their owners sign in. Best effort: the old
// hash still works if this fails, and a password change meanwhile wins.
func (s *Store) rehash(ctx context.Context, u User, password string) {
	if cost, err := bcrypt.Cost([]byte(u.hash)); err != nil || cost == s.o.BcryptCost {
		return
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.o.BcryptCost)
	if err != nil {
		return
	}
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	scripts.Rehash.Exec(ctx, s.c, []string{s.k.User(u.ID)}, []string{u.hash, string(h)})
}

func retryAfter(ttlMS int64, window time.Duration) time.Duration {
	if ttlMS <= 0 {
		return window
	}
	return time.Duration(ttlMS) * time.Millisecond
}

func (s *Store) getWithHash(ctx context.Context, id string) (User, error) {
	h, err := s.c.Do(ctx, s.c.B().Hgetall().Key(s.k.User(id)).Build()).AsStrMap()
	if err != nil {
		return User{}, redisx.Unavailable("read user", err)
	}
	return decode(h)
}

// Change is an administrative change to an account; nil fields stay as they are.
type Change struct {
	Role     *string
	Disabled *bool
	Password *string
}

// CheckChange validates a change and turns it into the update the session
// scripts apply (hashing a new password). Apply it with the sessions store:
// one that EndsSessions together with ending them, any other together with
// copying a new role into them.
func (s *Store) CheckChange(ch Change) (keys.AccountUpdate, error) {
	u := keys.AccountUpdate{Role: ch.Role, Disabled: ch.Disabled}
	if ch.Role != nil && !validRole(*ch.Role) {
		return keys.AccountUpdate{}, ErrInvalidRole
	}
	if ch.Password != nil {
		hash, err := s.hashPassword(*ch.Password)
		if err != nil {
			return keys.AccountUpdate{}, err
		}
		u.PasswordHash = hash
	}
	return u, nil
}

// RemovesAdmin reports whether a change may leave the account no enabled
// admin (a demotion or a disable), so ReleaseAdmin must allow it first.
func (ch Change) RemovesAdmin() bool {
	return (ch.Role != nil && *ch.Role != RoleAdmin) || (ch.Disabled != nil && *ch.Disabled)
}

// decode reads an account's record: errcode.ErrUserNotFound when there is
// none, or its creation has not finished (Create).
func decode(h map[string]string) (User, error) {
	if len(h) == 0 || h[keys.UserID] == "" || h[keys.UserPending] != "" {
		return User{}, errcode.ErrUserNotFound
	}
	return fields(h), nil
}

// fields are an account record's fields, whether or not it is finished.
func fields(h map[string]string) User {
	created, _ := strconv.ParseInt(h[keys.UserCreated], 10, 64)
	return User{
		ID: h[keys.UserID], Username: h[keys.UserName], Role: h[keys.UserRole], Disabled: h[keys.UserDisabled] == "1",
		CreatedAt: time.UnixMilli(created).UTC(), CredentialVersion: cmp.Or(h[keys.UserVersion], "0"), hash: h[keys.UserHash],
		totp: h[keys.UserTOTP], totpPending: h[keys.UserTOTPPending],
	}
}
