package users

import (
	"context"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/scripts"
)

// Passwords: their rules, bcrypt and its timing (unknown names and wrong
// passwords take alike), sign-in, password checks, rehashing.

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
	err := s.guard(ctx, username, from.IP, func() (bool, bool, error) {
		var err error
		u, err = s.FindByUsername(ctx, username)
		if err != nil && !errors.Is(err, errcode.ErrUserNotFound) {
			return false, false, err
		}
		if errors.Is(err, errcode.ErrUserNotFound) {
			s.compareUnknown(ctx, password)
			return false, false, nil
		}
		ok := s.compare(ctx, u.hash, password)
		// With a second factor the sign-in is not done yet.
		return ok, ok && !u.HasTOTP(), nil
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
