package users

import (
	"cmp"
	"context"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redisx"
)

// Failed refreshes are limited per client IP only, by MaxFailuresPerIP per
// FailureWindow, in a counter of their own: a refresh token names no
// account an outsider could lock out by failing on purpose, and it cannot
// be guessed (256 bits), so the limit is there to bound what one address
// can make the service do, not to slow guessing. Unlike the login limits it
// is read before the refresh and counted after it (two round trips, not
// three), so concurrent failures from one address may pass it by as many as
// are in flight. The read is not served from the client-side cache: the
// invalidation of the count this replica just wrote can arrive after its
// next read (rueidis #534), and the limit would then let one more through.

// RefreshAllowed returns *TooManyAttemptsError while failed refreshes from
// clientIP have spent the budget of the window, nil otherwise (and always
// when MaxFailuresPerIP is 0).
func (s *Store) RefreshAllowed(ctx context.Context, clientIP string) error {
	if s.o.MaxFailuresPerIP <= 0 {
		return nil
	}
	key := s.k.FailRefreshIP(clientIP)
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	res := s.c.DoMulti(ctx, s.c.B().Hget().Key(key).Field(keys.FieldFailures).Build(), s.c.B().Pttl().Key(key).Build())
	n, err := res[0].AsInt64()
	if rueidis.IsRedisNil(err) {
		return nil
	}
	ttl, err2 := res[1].AsInt64()
	if err = cmp.Or(err, err2); err != nil {
		return redisx.Unavailable("check refresh limit", err)
	}
	if n < int64(s.o.MaxFailuresPerIP) {
		return nil
	}
	return &TooManyAttemptsError{Wait: retryAfter(ttl, s.o.FailureWindow)}
}

// RefreshFailed counts a failed refresh from clientIP. It is best effort:
// a failure that cannot be counted is no reason to answer otherwise.
func (s *Store) RefreshFailed(ctx context.Context, clientIP string) {
	if s.o.MaxFailuresPerIP <= 0 {
		return
	}
	ctx, cancel := redisx.Timeout(context.WithoutCancel(ctx), s.o.Timeout)
	defer cancel()
	// A fixed window from the first failure: the count and its expiry in one
	// round trip; NX leaves a running window's expiry as it is.
	key := s.k.FailRefreshIP(clientIP)
	s.c.DoMulti(ctx, s.c.B().Hincrby().Key(key).Field(keys.FieldFailures).Increment(1).Build(),
		s.c.B().Pexpire().Key(key).Milliseconds(s.o.FailureWindow.Milliseconds()).Nx().Build())
}
