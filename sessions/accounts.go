package sessions

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/scripts"
)

// Account changes applied to sessions: a new role copied into every session,
// revoking every session with a change (disable, new password), deletion,
// and the WAIT for replicas that revocations take.

// UpdateAccount applies an update that ends no session (a role, enabling)
// and, when the role changes, copies it into every live session of the
// account in the same step, so the next request sees it (Use); evs, the
// change's events, are recorded in that step too.
// errcode.ErrUserNotFound when the account does not exist; nothing is written then.
func (s *Store) UpdateAccount(ctx context.Context, uid string, u keys.AccountUpdate, evs ...audit.Event) error {
	if u.Empty() || u.EndsSessions() {
		return errors.New("update account: want an update that changes something and ends no session")
	}
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	args := append(append([]string{s.k.SessionPrefix(uid)}, u.Fields()...), audit.Spec(s.o.Now(), evs...))
	n, err := scripts.UpdateAccount.Exec(rctx, s.c, []string{s.k.User(uid), s.k.SessionIndex(uid), s.k.Events(uid)}, args).AsInt64()
	if err != nil {
		return redisx.Unavailable("update account", err)
	}
	if n < 0 {
		return errcode.ErrUserNotFound
	}
	s.o.Audit.Feed(ctx, evs...)
	return nil
}

// RevokeAll ends every session of a user except keep ("" keeps none) and
// returns how many live sessions it ended. In the same atomic step it bumps
// the account's credential version, so a login whose password check ran
// before cannot create a session after. errcode.ErrUserNotFound when the account does
// not exist; nothing is written then.
func (s *Store) RevokeAll(ctx context.Context, uid, keep string, by audit.Actor) (int, error) {
	return s.ChangeAccount(ctx, uid, keep, keys.AccountUpdate{}, "",
		by.Counted(audit.SessionsRevokedAll, uid, keep, SessionsEnded))
}

// SessionsEnded is the detail of an event that ended sessions: the script
// fills in how many.
const SessionsEnded = "{count} sessions ended"

// ChangeAccount is RevokeAll that also applies u to the account in the same
// atomic step (a disable, a new password hash), so the change and the
// revocation cannot be separated by a fault; evs, the change's events, are
// recorded in that step too. ifVersion, when set, is the credential version
// the change was checked against (a password change checks the current
// password): if the account has another by now, nothing is written and the
// error is ErrStale.
func (s *Store) ChangeAccount(ctx context.Context, uid, keep string, u keys.AccountUpdate, ifVersion string, evs ...audit.Event) (int, error) {
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	args := append(append([]string{keep, s.k.SessionPrefix(uid), ifVersion}, u.Fields()...), audit.Spec(s.o.Now(), evs...))
	res, err := s.revocation(rctx, scripts.RevokeAll, []string{s.k.User(uid), s.k.SessionIndex(uid), s.k.Events(uid), s.k.SessionUses(uid)}, args).ToArray()
	if err != nil {
		return 0, redisx.Unavailable("revoke sessions", err)
	}
	n, err := res[0].AsInt64()
	if err != nil {
		return 0, fmt.Errorf("revoke sessions: %w", err)
	}
	switch n {
	case -1:
		return 0, errcode.ErrUserNotFound
	case -2:
		return 0, ErrStale
	}
	ids, err := res[1].AsStrSlice()
	if err != nil {
		return 0, fmt.Errorf("revoke sessions: %w", err)
	}
	if keep != "" {
		ids = slices.DeleteFunc(ids, func(id string) bool { return id == keep })
	}
	s.rememberRevoked(uid, ids)
	s.o.Audit.Feed(ctx, audit.WithCount(evs, int(n))...)
	return int(n), nil
}

// DeleteAccount deletes an account, by an actor: its record, every
// session and its second factors (passkeys, recovery codes), in one step
// that records account.deleted in its history, which stays. It returns how
// many sessions it ended; errcode.ErrUserNotFound when there is no such
// account. The username and the listings are the users store's to free
// afterwards.
func (s *Store) DeleteAccount(ctx context.Context, uid string, by audit.Actor) (int, error) {
	ev := by.Counted(audit.AccountDeleted, uid, "", SessionsEnded)
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	// Its second factors kept apart from the record go with it: they have no
	// expiry, and nothing else would ever delete them.
	res, err := s.revocation(rctx, scripts.DeleteAccount, []string{s.k.User(uid), s.k.SessionIndex(uid), s.k.Events(uid),
		s.k.Passkeys(uid), s.k.Recovery(uid), s.k.SessionUses(uid)},
		[]string{s.k.SessionPrefix(uid), audit.Spec(s.o.Now(), ev)}).ToArray()
	if err != nil {
		return 0, redisx.Unavailable("delete account", err)
	}
	n, err := res[0].AsInt64()
	if err != nil {
		return 0, fmt.Errorf("delete account: %w", err)
	}
	if n < 0 {
		return 0, errcode.ErrUserNotFound
	}
	ids, err := res[1].AsStrSlice()
	if err != nil {
		return 0, fmt.Errorf("delete account: %w", err)
	}
	s.rememberRevoked(uid, ids)
	s.o.Audit.Feed(ctx, audit.WithCount([]audit.Event{ev}, int(n))...)
	return int(n), nil
}

// errNotReplicated is returned (as unavailable) when a revocation was not
// confirmed by enough replicas in time.
var errNotReplicated = errors.New("revocation not yet replicated")

// revocation runs a revoking script. With WaitReplicas it sends the script
// and a WAIT in one pipeline to the master of the user's slot: WAIT covers
// the writes of the connection it is sent on, so it must follow the script
// on the same one.
func (s *Store) revocation(ctx context.Context, script scripts.Script, ks, args []string) rueidis.RedisResult {
	if s.o.WaitReplicas <= 0 {
		return script.Exec(ctx, s.c, ks, args)
	}
	res := s.c.DoMulti(ctx,
		s.c.B().Eval().Script(script.Src).Numkeys(int64(len(ks))).Key(ks...).Arg(args...).Build(),
		s.c.B().Wait().Numreplicas(int64(s.o.WaitReplicas)).Timeout(s.o.WaitTimeout.Milliseconds()).Build().SetSlot(ks[0]))
	if res[0].Error() != nil {
		return res[0]
	}
	n, err := res[1].AsInt64()
	if err == nil && n < int64(s.o.WaitReplicas) {
		err = fmt.Errorf("%w: %d of %d replicas", errNotReplicated, n, s.o.WaitReplicas)
	}
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	return res[0]
}
