// Package users owns accounts: the User record, usernames, roles, bcrypt
// password hashes, the last-admin rule and the failed-login limits. It
// reaches Redis through the layout in internal/keys and the plumbing in
// internal/redisx; it knows nothing about sessions or HTTP.
package users

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
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

	"github.com/sessiond/sessiond/internal/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redisx"
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
	ErrNotFound           = errcode.New(errcode.NotFound, "no such user")
	ErrUsernameTaken      = errcode.New(errcode.UsernameTaken, "that username is taken")
	ErrInvalidCredentials = errcode.New(errcode.InvalidCredentials, "the username or password is wrong")
	ErrAccountDisabled    = errcode.New(errcode.AccountDisabled, "this account is disabled")
	ErrInvalidUsername    = errcode.New(errcode.Invalid, "username: must be 1 to 64 characters of letters, digits and . _ @ + -")
	ErrPasswordTooShort   = errcode.New(errcode.Invalid, fmt.Sprintf("password: must be at least %d characters", MinPasswordChars))
	ErrPasswordTooLong    = errcode.New(errcode.Invalid, fmt.Sprintf("password: must be at most %d bytes", MaxPasswordBytes))
	ErrInvalidRole        = errcode.New(errcode.Invalid, `role: must be "user" or "admin"`)
	ErrInvalidCursor      = errcode.New(errcode.Invalid, "cursor: is not one this service issued")
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

// limit is one failed-login counter and its cap.
type limit struct {
	key string
	max int
	// reset on a successful login: the pair's and the account's counters are
	// the login's own. The IP's is not, or one valid account would let its
	// owner clear the way for guessing at everyone else's.
	reset bool
}

// limits are the counters a login from ip for username is subject to.
func (s *Store) limits(username, ip string) []limit {
	// The name is hashed: at login it is arbitrary input and must not shape keys.
	sum := sha256.Sum256([]byte(strings.ToLower(username)))
	name := hex.EncodeToString(sum[:16])
	all := []limit{
		{s.k.FailPair(name, ip), s.o.MaxFailures, true},
		{s.k.FailAccount(name), s.o.MaxFailuresPerAccount, true},
		{s.k.FailIP(ip), s.o.MaxFailuresPerIP, false},
	}
	out := all[:0]
	for _, l := range all {
		if l.max > 0 {
			out = append(out, l)
		}
	}
	return out
}

// inFlightStale is how long an attempt may be in flight before the limits
// take it to have died with its process and stop counting it. A bcrypt check
// takes a second at most, even at cost 14 on a loaded machine.
const inFlightStale = 30 * time.Second

// maxAttemptWait bounds how long an attempt waits for others in flight to
// settle before it is refused as over the limit.
const maxAttemptWait = 10 * time.Second

// attempt is a login attempt taken from every counter it is subject to.
type attempt struct {
	id     string
	limits []limit
}

// takeAttempt takes one attempt from every counter before the password is
// checked, so a burst of concurrent guesses gets no more checks than the
// limits allow. Past any limit (failures alone) it returns
// *TooManyAttemptsError. Where only attempts still in flight fill a budget it
// waits for them to settle, so a burst of right passwords is never refused:
// they settle as successes. The attempt must be settled.
func (s *Store) takeAttempt(ctx context.Context, limits []limit) (attempt, error) {
	a := attempt{id: uuid.NewString()}
	if len(limits) == 0 {
		return a, nil
	}
	window := strconv.FormatInt(s.o.FailureWindow.Milliseconds(), 10)
	stale := strconv.FormatInt(inFlightStale.Milliseconds(), 10)
	giveUp := time.Now().Add(maxAttemptWait)
	for pause := 5 * time.Millisecond; ; pause = min(pause*2, 100*time.Millisecond) {
		now := strconv.FormatInt(s.o.Now().UnixMilli(), 10)
		execs := make([]rueidis.LuaExec, len(limits))
		for i, l := range limits {
			execs[i] = rueidis.LuaExec{Keys: []string{l.key}, Args: []string{strconv.Itoa(l.max), window, a.id, now, stale}}
		}
		var (
			wait  time.Duration
			busy  bool
			fault error
		)
		a.limits = a.limits[:0]
		rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
		for i, r := range scripts.Attempt.ExecMulti(rctx, s.c, execs...) {
			res, err := r.AsIntSlice()
			switch {
			case err != nil || len(res) != 2:
				fault = cmp.Or(err, errors.New("unexpected reply"))
			case res[0] == 1:
				a.limits = append(a.limits, limits[i])
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

// settle ends an attempt on every counter it took: "fail" counts a failed
// guess, "ok" clears the failures of the counters a success clears and just
// ends it on the others, "return" just ends it (no password was checked).
// It is best effort where Redis cannot be reached: the attempt then stops
// counting after inFlightStale.
func (s *Store) settle(ctx context.Context, a attempt, outcome string) {
	if len(a.limits) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
	defer cancel()
	window := strconv.FormatInt(s.o.FailureWindow.Milliseconds(), 10)
	execs := make([]rueidis.LuaExec, len(a.limits))
	for i, l := range a.limits {
		o := outcome
		if o == "ok" {
			o = "return"
			if l.reset {
				o = "reset"
			}
		}
		execs[i] = rueidis.LuaExec{Keys: []string{l.key}, Args: []string{a.id, window, o}}
	}
	scripts.AttemptSettle.ExecMulti(ctx, s.c, execs...)
}

// Guard runs one credential check under the failed-attempt limits of
// (username, clientIP), the limits logins are under: the attempt is taken
// before check runs, and counted as a failure unless check reports the
// credential right. Past a limit it returns *TooManyAttemptsError without
// running check; a wrong credential is ErrInvalidCredentials. Other
// credentials than account passwords (an introspection client's secret) use
// a name of their own.
func (s *Store) Guard(ctx context.Context, username, clientIP string, check func() (bool, error)) error {
	a, err := s.takeAttempt(ctx, s.limits(username, clientIP))
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

	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	// Claim the name first: the claim is what makes it unique. The record and
	// the listing are in other cluster slots, so they follow as separate writes.
	ok, err := s.c.Do(ctx, s.c.B().Set().Key(s.k.Username(lower)).Value(u.ID).Nx().Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return User{}, ErrUsernameTaken
	}
	if err != nil || ok != "OK" {
		return User{}, redisx.Unavailable("claim username", err)
	}
	created := by.Event(audit.AccountCreated, u.ID, "", "role "+role)
	record := scripts.CreateAccount.Exec(ctx, s.c, []string{s.k.User(u.ID), s.k.Events(u.ID)}, []string{
		keys.UserID, u.ID, keys.UserName, u.Username, keys.UserHash, hash, keys.UserRole, role, keys.UserDisabled, "0",
		keys.UserCreated, strconv.FormatInt(u.CreatedAt.UnixMilli(), 10), keys.UserVersion, "0",
		audit.Spec(u.CreatedAt, created)})
	for _, r := range []rueidis.RedisResult{record,
		s.c.Do(ctx, s.c.B().Zadd().Key(s.k.Users()).ScoreMember().ScoreMember(0, lower+"\x00"+u.ID).Build()),
	} {
		if err := r.Error(); err != nil {
			// Release the name so the operator can simply retry.
			cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
			s.c.DoMulti(cctx,
				s.c.B().Del().Key(s.k.Username(lower)).Build(),
				s.c.B().Del().Key(s.k.User(u.ID)).Build(),
				s.c.B().Zrem().Key(s.k.Users()).Member(lower+"\x00"+u.ID).Build())
			ccancel()
			return User{}, redisx.Unavailable("create user", err)
		}
	}
	if role == RoleAdmin {
		if err := s.SyncAdmin(ctx, u.ID); err != nil {
			return User{}, err
		}
	}
	s.o.Audit.Feed(ctx, created)
	return u, nil
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
func (s *Store) ReleaseAdmin(ctx context.Context, id string) error {
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := scripts.AdminRelease.Exec(ctx, s.c, []string{s.k.Admins()}, []string{id}).AsInt64()
	if err != nil {
		return redisx.Unavailable("check the last admin", err)
	}
	if n == 0 {
		return ErrLastAdmin
	}
	return nil
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
	case err == nil || errors.Is(err, ErrNotFound):
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
// cost as one an account's hash may have, makes the dummy hash for the
// dearest such cost, and, on data from before sessiond kept them, builds the
// set of enabled admins and the highest cost in use from the accounts, once.
func (s *Store) Prepare(ctx context.Context) error {
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	exists, err := s.c.Do(rctx, s.c.B().Exists().Key(s.k.Indexed()).Build()).AsInt64()
	cancel()
	if err != nil {
		return redisx.Unavailable("read account indexes", err)
	}
	top := s.o.BcryptCost
	if exists == 0 {
		if top, err = s.index(ctx); err != nil {
			return err
		}
	}
	rctx, cancel = redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	if err := scripts.MaxCost.Exec(rctx, s.c, []string{s.k.MaxCost()}, []string{strconv.Itoa(max(top, s.o.BcryptCost))}).Error(); err != nil {
		return redisx.Unavailable("record bcrypt cost", err)
	}
	if err := s.c.Do(rctx, s.c.B().Set().Key(s.k.Indexed()).Value("1").Build()).Error(); err != nil {
		return redisx.Unavailable("record account indexes", err)
	}
	s.dummyAt(s.topCost(ctx))
	return nil
}

// index walks every account once, adding enabled admins to their set, and
// returns the highest bcrypt cost of their hashes.
func (s *Store) index(ctx context.Context) (int, error) {
	top, cursor := 0, ""
	for {
		page, next, err := s.List(ctx, cursor, 500)
		if err != nil {
			return 0, err
		}
		rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
		for _, u := range page {
			if c, err := bcrypt.Cost([]byte(u.hash)); err == nil {
				top = max(top, c)
			}
			if u.Role == RoleAdmin && !u.Disabled {
				if err := s.c.Do(rctx, s.c.B().Sadd().Key(s.k.Admins()).Member(u.ID).Build()).Error(); err != nil {
					cancel()
					return 0, redisx.Unavailable("record admins", err)
				}
			}
		}
		cancel()
		if next == "" {
			return top, nil
		}
		cursor = next
	}
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
var publicFields = []string{keys.UserID, keys.UserName, keys.UserRole, keys.UserDisabled, keys.UserCreated, keys.UserVersion}

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
	if str(0) == "" {
		return User{}, ErrNotFound
	}
	created, _ := strconv.ParseInt(str(4), 10, 64)
	return User{ID: str(0), Username: str(1), Role: str(2), Disabled: str(3) == "1",
		CreatedAt: time.UnixMilli(created).UTC(), CredentialVersion: cmp.Or(str(5), "0")}, nil
}

// FindByUsername returns the account with that name, case-insensitively,
// never from the cache: a password check must see the current hash.
func (s *Store) FindByUsername(ctx context.Context, username string) (User, error) {
	if !ValidUsername(username) {
		return User{}, ErrNotFound
	}
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	id, err := s.c.Do(ctx, s.c.B().Get().Key(s.k.Username(strings.ToLower(username))).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return User{}, ErrNotFound
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
			return nil, "", ErrInvalidCursor
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
// A correct password on a disabled account gives ErrAccountDisabled. Failed
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
		if err != nil && !errors.Is(err, ErrNotFound) {
			return false, err
		}
		if errors.Is(err, ErrNotFound) {
			s.compareUnknown(ctx, password)
			return false, nil
		}
		return s.compare(ctx, u.hash, password), nil
	})
	if err != nil {
		s.recordRefusal(ctx, err, u.ID, username, from, "")
		return User{}, err
	}
	s.rehash(ctx, u, password)
	if u.Disabled {
		return User{}, ErrAccountDisabled
	}
	return u, nil
}

// recordRefusal records a failed or throttled sign-in (or password check,
// named by what), in the account's history when there is an account (uid, or,
// for a refusal before any check, found by name), and in the feed. A name that is no account is not
// recorded: it may be a password typed in the wrong field.
func (s *Store) recordRefusal(ctx context.Context, err error, uid, username string, from audit.Actor, what string) {
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
	from.ID = "" // unknown until it succeeds
	_ = s.o.Audit.Record(ctx, from.Event(typ, uid, "", what))
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
		s.recordRefusal(ctx, err, u.ID, u.Username, from, "wrong current password at a password change")
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
	if !ok {
		cost, err := bcrypt.Cost([]byte(hash))
		if top := s.topCost(ctx); err == nil && cost < top {
			s.padTo(start, top)
		}
	}
	return ok
}

// compareUnknown does for a username that does not exist the work a wrong
// password costs for an account at the dearest cost any account may have.
func (s *Store) compareUnknown(ctx context.Context, password string) {
	_ = bcrypt.CompareHashAndPassword(s.dummyAt(s.topCost(ctx)).hash, []byte(password))
}

// dummy is a hash of a random password, checked against when a username does
// not exist, and how long making it took (about what one check costs).
type dummy struct {
	hash []byte
	took time.Duration
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

func decode(h map[string]string) (User, error) {
	if len(h) == 0 || h[keys.UserID] == "" {
		return User{}, ErrNotFound
	}
	created, _ := strconv.ParseInt(h[keys.UserCreated], 10, 64)
	return User{
		ID: h[keys.UserID], Username: h[keys.UserName], Role: h[keys.UserRole], Disabled: h[keys.UserDisabled] == "1",
		CreatedAt: time.UnixMilli(created).UTC(), CredentialVersion: cmp.Or(h[keys.UserVersion], "0"), hash: h[keys.UserHash],
	}, nil
}
