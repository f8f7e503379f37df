// Package users owns accounts: the User record, usernames, roles, bcrypt
// password hashes and the failed-login limit. It knows nothing about sessions'
// keys or HTTP.
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
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/redis/rueidis"
	"golang.org/x/crypto/bcrypt"

	"github.com/sessiond/sessiond/internal/deadline"
	"github.com/sessiond/sessiond/scripts"
)

// Roles.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
)

// Password and username limits. bcrypt reads only the first 72 bytes of a
// password, so a longer one would silently share its hash with its prefix.
const (
	MinPasswordChars = 8
	MaxPasswordBytes = 72
	MaxUsernameLen   = 64
)

// Errors callers branch on.
var (
	ErrNotFound           = errors.New("user not found")
	ErrUsernameTaken      = errors.New("username taken")
	ErrInvalidCredentials = errors.New("invalid username or password")
	ErrAccountDisabled    = errors.New("account disabled")
	ErrInvalidUsername    = errors.New("username must be 1 to 64 characters of letters, digits and . _ @ + -")
	ErrPasswordTooShort   = fmt.Errorf("password must be at least %d characters", MinPasswordChars)
	ErrPasswordTooLong    = fmt.Errorf("password must be at most %d bytes", MaxPasswordBytes)
	ErrInvalidRole        = errors.New(`role must be "user" or "admin"`)
	ErrInvalidCursor      = errors.New("cursor is not one this service issued")
	// ErrUnavailable means Redis could not be reached or refused the command.
	ErrUnavailable = errors.New("user store unavailable")
)

// TooManyAttemptsError is returned by Authenticate while a login is locked out.
type TooManyAttemptsError struct {
	// RetryAfter is how long until the window ends.
	RetryAfter time.Duration
}

func (e *TooManyAttemptsError) Error() string {
	return fmt.Sprintf("too many failed logins; retry after %s", e.RetryAfter)
}

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

// Options configure a Store. Zero values take the defaults in the comments.
type Options struct {
	// Prefix is put before every key (default "sd:").
	Prefix string
	// BcryptCost is the work factor of new hashes (default 12).
	BcryptCost int
	// Timeout bounds every Redis call (default 2s).
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
	// FailureWindow is the window of the limits above (default 15m).
	FailureWindow time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Store keeps accounts in Redis.
type Store struct {
	c rueidis.Client
	o Options
	// dummy is checked against when the username does not exist, so unknown
	// users and wrong passwords take the same time.
	dummy []byte
}

// New returns a Store over a rueidis client. It computes one bcrypt hash at
// the configured cost, for the unknown-user path.
func New(c rueidis.Client, o Options) (*Store, error) {
	if o.Prefix == "" {
		o.Prefix = "sd:"
	}
	if o.BcryptCost == 0 {
		o.BcryptCost = 12
	}
	if o.BcryptCost < bcrypt.MinCost || o.BcryptCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("bcrypt cost %d out of range", o.BcryptCost)
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.FailureWindow <= 0 {
		o.FailureWindow = 15 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte(uuid.NewString()), o.BcryptCost)
	if err != nil {
		return nil, err
	}
	return &Store{c: c, o: o, dummy: dummy}, nil
}

// Key names a user's account hash. The {uid} hash tag puts it in the same
// cluster slot as the user's sessions.
func (s *Store) Key(uid string) string { return s.o.Prefix + "user:{" + uid + "}" }

func (s *Store) nameKey(lower string) string { return s.o.Prefix + "username:" + lower }

// listKey is a sorted set of "lowercased name\x00uid", all scored 0, so
// ZRANGE BYLEX pages through users in username order.
func (s *Store) listKey() string { return s.o.Prefix + "users" }

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
		{s.o.Prefix + "fail:pair:" + name + ":" + ip, s.o.MaxFailures, true},
		{s.o.Prefix + "fail:acct:" + name, s.o.MaxFailuresPerAccount, true},
		{s.o.Prefix + "fail:ip:" + ip, s.o.MaxFailuresPerIP, false},
	}
	out := all[:0]
	for _, l := range all {
		if l.max > 0 {
			out = append(out, l)
		}
	}
	return out
}

// takeAttempt takes one attempt from every counter before the password is
// checked, so a burst of concurrent guesses gets no more checks than the
// limits allow. Past any limit it gives back what it took and returns
// *TooManyAttemptsError. A taken attempt stays counted as a failure unless
// succeeded or giveBack returns it.
func (s *Store) takeAttempt(ctx context.Context, limits []limit) error {
	if len(limits) == 0 {
		return nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	window := strconv.FormatInt(s.o.FailureWindow.Milliseconds(), 10)
	execs := make([]rueidis.LuaExec, len(limits))
	for i, l := range limits {
		execs[i] = rueidis.LuaExec{Keys: []string{l.key}, Args: []string{strconv.Itoa(l.max), window}}
	}
	var (
		taken []limit
		wait  time.Duration
		fault error
	)
	for i, r := range scripts.Attempt.ExecMulti(ctx, s.c, execs...) {
		res, err := r.AsIntSlice()
		switch {
		case err != nil || len(res) != 2:
			fault = cmp.Or(err, errors.New("unexpected reply"))
		case res[0] == 1:
			taken = append(taken, limits[i])
		default:
			wait = max(wait, retryAfter(res[1], s.o.FailureWindow))
		}
	}
	if fault != nil || wait > 0 {
		// Nothing was checked: this attempt is no failure.
		s.giveBack(ctx, taken)
	}
	if fault != nil {
		return unavailable("check login limit", fault)
	}
	if wait > 0 {
		return &TooManyAttemptsError{RetryAfter: wait}
	}
	return nil
}

// giveBack returns taken attempts that were not failed guesses. It is best
// effort: where Redis cannot be reached, the attempt stays counted, which errs
// on the side of the limit.
func (s *Store) giveBack(ctx context.Context, limits []limit) {
	if len(limits) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
	defer cancel()
	execs := make([]rueidis.LuaExec, len(limits))
	for i, l := range limits {
		execs[i] = rueidis.LuaExec{Keys: []string{l.key}}
	}
	scripts.AttemptReturn.ExecMulti(ctx, s.c, execs...)
}

// succeeded settles a login whose password was right: its own counters are
// cleared, and the attempt it took from the others is given back.
func (s *Store) succeeded(ctx context.Context, limits []limit) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var (
		cmds rueidis.Commands
		rest []limit
	)
	for _, l := range limits {
		if l.reset {
			cmds = append(cmds, s.c.B().Del().Key(l.key).Build())
		} else {
			rest = append(rest, l)
		}
	}
	for _, r := range s.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return unavailable("clear failed logins", err)
		}
	}
	s.giveBack(ctx, rest)
	return nil
}

func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.o.Timeout)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %v", op, ErrUnavailable, err)
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

// ValidRole reports whether role is one of the roles.
func ValidRole(role string) bool { return role == RoleUser || role == RoleAdmin }

// HashPassword checks a new password's length rules and hashes it.
func (s *Store) HashPassword(password string) (string, error) {
	if len(password) > MaxPasswordBytes {
		return "", ErrPasswordTooLong
	}
	if utf8.RuneCountInString(password) < MinPasswordChars {
		return "", ErrPasswordTooShort
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.o.BcryptCost)
	return string(h), err
}

// Create registers an account. The username is unique case-insensitively;
// role "" means RoleUser.
func (s *Store) Create(ctx context.Context, username, password, role string) (User, error) {
	if role == "" {
		role = RoleUser
	}
	if !ValidUsername(username) {
		return User{}, ErrInvalidUsername
	}
	if !ValidRole(role) {
		return User{}, ErrInvalidRole
	}
	hash, err := s.HashPassword(password)
	if err != nil {
		return User{}, err
	}
	u := User{ID: uuid.NewString(), Username: username, Role: role,
		CreatedAt: s.o.Now().UTC().Truncate(time.Millisecond), CredentialVersion: "0", hash: hash}
	lower := strings.ToLower(username)

	ctx, cancel := s.ctx(ctx)
	defer cancel()
	// Claim the name first: the claim is what makes it unique. The record and
	// the listing are in other cluster slots, so they follow as separate writes.
	ok, err := s.c.Do(ctx, s.c.B().Set().Key(s.nameKey(lower)).Value(u.ID).Nx().Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return User{}, ErrUsernameTaken
	}
	if err != nil || ok != "OK" {
		return User{}, unavailable("claim username", err)
	}
	for _, r := range s.c.DoMulti(ctx,
		s.c.B().Hset().Key(s.Key(u.ID)).FieldValue().
			FieldValue("id", u.ID).FieldValue("username", u.Username).FieldValue("hash", hash).
			FieldValue("role", role).FieldValue("disabled", "0").
			FieldValue("created_at", strconv.FormatInt(u.CreatedAt.UnixMilli(), 10)).
			FieldValue("cv", "0").Build(),
		s.c.B().Zadd().Key(s.listKey()).ScoreMember().ScoreMember(0, lower+"\x00"+u.ID).Build(),
	) {
		if err := r.Error(); err != nil {
			// Release the name so the operator can simply retry.
			cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
			s.c.DoMulti(cctx,
				s.c.B().Del().Key(s.nameKey(lower)).Build(),
				s.c.B().Del().Key(s.Key(u.ID)).Build(),
				s.c.B().Zrem().Key(s.listKey()).Member(lower+"\x00"+u.ID).Build())
			ccancel()
			return User{}, unavailable("create user", err)
		}
	}
	return u, nil
}

// Get returns an account by id as Redis has it now. Use it where a change
// must bite at once (admin rights).
func (s *Store) Get(ctx context.Context, id string) (User, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.getWithHash(ctx, id)
}

// publicFields are the fields GetCached reads: never the password hash, so
// no hash sits in the process's client-side cache.
var publicFields = []string{"id", "username", "role", "disabled", "created_at", "cv"}

// GetCached returns an account by id from the client-side cache when it can
// (the hot path of GET /v1/me). Redis invalidates the entry on any change,
// within milliseconds.
func (s *Store) GetCached(ctx context.Context, id string) (User, error) {
	// A lazy deadline: a read served from the cache never waits, so it
	// should not pay for a timer.
	dl := deadline.After(ctx, s.o.Timeout)
	defer dl.Stop()
	ctx = dl
	r := s.c.DoCache(ctx, s.c.B().Hmget().Key(s.Key(id)).Field(publicFields...).Cache(), time.Minute)
	if e, ok := rueidis.IsRedisErr(r.Error()); ok && strings.HasPrefix(e.Error(), "OOM") {
		// A cached read is a MULTI, which Redis refuses when out of memory.
		r = s.c.Do(ctx, s.c.B().Hmget().Key(s.Key(id)).Field(publicFields...).Build())
	}
	vals, err := r.ToArray()
	if err != nil {
		return User{}, unavailable("read user", err)
	}
	// Positional, no map: this is on every GET /v1/me.
	str := func(i int) string { v, _ := vals[i].ToString(); return v }
	if len(vals) != len(publicFields) || str(0) == "" {
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
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	id, err := s.c.Do(ctx, s.c.B().Get().Key(s.nameKey(strings.ToLower(username))).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, unavailable("find user", err)
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
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	members, err := s.c.Do(ctx, s.c.B().Zrange().Key(s.listKey()).Min(from).Max("+").Bylex().
		Limit(0, int64(limit)+1).Build()).AsStrSlice()
	if err != nil {
		return nil, "", unavailable("list users", err)
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
		cmds[i] = s.c.B().Hgetall().Key(s.Key(m[strings.IndexByte(m, 0)+1:])).Build()
	}
	for _, r := range s.c.DoMulti(ctx, cmds...) {
		h, err := r.AsStrMap()
		if err != nil {
			return nil, "", unavailable("list users", err)
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
func (s *Store) Authenticate(ctx context.Context, username, password, clientIP string) (User, error) {
	// Each Redis step has its own deadline: bcrypt in between may take longer
	// than one (cost 14 is about a second, more on a loaded machine).
	limits := s.limits(username, clientIP)
	if err := s.takeAttempt(ctx, limits); err != nil {
		return User{}, err
	}

	u, err := s.FindByUsername(ctx, username)
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.giveBack(ctx, limits) // no password was checked
		return User{}, err
	}
	hash := s.dummy
	if err == nil {
		hash = []byte(u.hash)
	}
	// bcrypt would compare only the first 72 bytes: a longer password is simply
	// wrong, after the same work as any other.
	match := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil && len(password) <= MaxPasswordBytes
	if err != nil || !match {
		// The attempt taken above is the failure's count.
		return User{}, ErrInvalidCredentials
	}
	if err := s.succeeded(ctx, limits); err != nil {
		return User{}, err
	}
	if u.Disabled {
		return User{}, ErrAccountDisabled
	}
	return u, nil
}

func retryAfter(ttlMS int64, window time.Duration) time.Duration {
	if ttlMS <= 0 {
		return window
	}
	return time.Duration(ttlMS) * time.Millisecond
}

func (s *Store) getWithHash(ctx context.Context, id string) (User, error) {
	h, err := s.c.Do(ctx, s.c.B().Hgetall().Key(s.Key(id)).Build()).AsStrMap()
	if err != nil {
		return User{}, unavailable("read user", err)
	}
	return decode(h)
}

// CheckPassword verifies an account's current password (for a password
// change). ErrInvalidCredentials when it is wrong.
func (s *Store) CheckPassword(ctx context.Context, id, password string) (User, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	u, err := s.getWithHash(ctx, id)
	if err != nil {
		return User{}, err
	}
	if len(password) > MaxPasswordBytes || bcrypt.CompareHashAndPassword([]byte(u.hash), []byte(password)) != nil {
		return User{}, ErrInvalidCredentials
	}
	return u, nil
}

// Change is an administrative change to an account; nil fields stay as they are.
type Change struct {
	Role     *string
	Disabled *bool
	Password *string
}

// Fields validates a change and turns it into account hash field, value
// pairs. revoke is true when the change must end every session of the account
// in the same step (disabling it, or setting its password): the caller applies
// such fields together with the revocation (sessions.Store.RevokeAll), any
// other together with copying a new role into the sessions
// (sessions.Store.UpdateAccount).
func (s *Store) Fields(ch Change) (fields []string, revoke bool, err error) {
	if ch.Role != nil {
		if !ValidRole(*ch.Role) {
			return nil, false, ErrInvalidRole
		}
		fields = append(fields, "role", *ch.Role)
	}
	if ch.Password != nil {
		hash, err := s.HashPassword(*ch.Password)
		if err != nil {
			return nil, false, err
		}
		fields, revoke = append(fields, "hash", hash), true
	}
	if ch.Disabled != nil {
		v := "0"
		if *ch.Disabled {
			v, revoke = "1", true
		}
		fields = append(fields, "disabled", v)
	}
	return fields, revoke, nil
}

func decode(h map[string]string) (User, error) {
	if len(h) == 0 || h["id"] == "" {
		return User{}, ErrNotFound
	}
	created, _ := strconv.ParseInt(h["created_at"], 10, 64)
	cv := h["cv"]
	if cv == "" {
		cv = "0"
	}
	return User{
		ID: h["id"], Username: h["username"], Role: h["role"], Disabled: h["disabled"] == "1",
		CreatedAt: time.UnixMilli(created).UTC(), CredentialVersion: cv, hash: h["hash"],
	}, nil
}
