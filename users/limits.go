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
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/scripts"
)

// The failed-login limits: fixed-window budgets per (name, address), per
// address and per name, taken before a password is checked.

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
	return s.guard(ctx, username, clientIP, func() (bool, bool, error) {
		ok, err := check()
		return ok, ok, err
	})
}

// guard is Guard for a check that may pass only partly: a right password
// of an account with a second factor (complete false) is no failure, but
// clears no budget either, or whoever knows the password could reset the
// budgets between guesses at the code; the second factor's own check,
// under Guard, clears them when it passes.
func (s *Store) guard(ctx context.Context, username, clientIP string, check func() (ok, complete bool, err error)) error {
	limiters, err := s.limiters(ctx, username, clientIP)
	if err != nil {
		return err
	}
	a, err := s.takeAttempt(ctx, limiters)
	if err != nil {
		return err
	}
	ok, complete, err := check()
	switch {
	case err != nil:
		s.settle(ctx, a, "return") // no password was checked
		return err
	case !ok:
		s.settle(ctx, a, "fail")
		return ErrInvalidCredentials
	case !complete:
		s.settle(ctx, a, "return")
		return nil
	}
	s.settle(ctx, a, "ok")
	return nil
}

func retryAfter(ttlMS int64, window time.Duration) time.Duration {
	if ttlMS <= 0 {
		return window
	}
	return time.Duration(ttlMS) * time.Millisecond
}
