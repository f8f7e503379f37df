package users

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/rueidis"
	"golang.org/x/crypto/bcrypt"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/scripts"
)

// Accounts: creation (whole or nothing), lookups, listing, the admin set and
// the last-admin rule, changes and deletion's clean-up.

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
	out, err := s.loadMembers(ctx, members, "list users")
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
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
