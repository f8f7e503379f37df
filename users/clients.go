package users

// Client authentication: the secrets of the service's own clients
// (INTROSPECTION_CLIENTS), checked under failed-attempt limits of their own.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/redisx"
)

// clientLimits are the counters a client authentication from ip as id is
// subject to: failures per (client id, ip), and per ip across client ids.
// There is no counter per client id from any address, as there is per
// account for logins: strangers failing elsewhere would lock the real client
// out. The per-ip counter bounds what one address can write: without it,
// every made-up id would be a counter of its own; and it treats every id
// alike, so which ids are clients does not show.
func (s *Store) clientLimits(id, ip string) []limiter {
	// One limiter hash per address, as for logins: the (client, address)
	// pairs it holds are bounded, so made-up ids cannot grow it.
	l := limiter{key: s.k.FailClientIP(ip), capacity: pairsPerIP}
	if s.o.MaxFailures > 0 {
		l.limits = append(l.limits, limit{entryPair + clientName(id), s.o.MaxFailures, true})
	}
	if s.o.MaxFailuresPerIP > 0 {
		l.limits = append(l.limits, limit{entryIP, s.o.MaxFailuresPerIP, false})
	}
	if len(l.limits) == 0 {
		return nil
	}
	return []limiter{l}
}

// clientName is a client id as it may shape a key: at authentication it is
// arbitrary input.
func clientName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:16])
}

// GuardClient runs one check of a client's secret, presented as id from
// from.IP, under the limits of clientLimits (LOGIN_MAX_FAILURES per
// (client, address), LOGIN_MAX_FAILURES_PER_IP per address, in the login
// window). check says whether id names a client (known) and whether the
// secret is its (ok). Past a limit it returns *TooManyAttemptsError without
// running check; a wrong secret or an unknown id is ErrInvalidCredentials,
// recorded as a client_auth.failed event in the feed at most once per
// (client, address) per window.
func (s *Store) GuardClient(ctx context.Context, id string, from audit.Actor, check func() (known, ok bool)) error {
	a, err := s.takeAttempt(ctx, s.clientLimits(id, from.IP))
	if err != nil {
		return err
	}
	known, ok := check()
	if ok {
		s.settle(ctx, a, "ok")
		return nil
	}
	s.settle(ctx, a, "fail")
	if !known {
		id = ""
	}
	s.recordClientFailure(ctx, id, from)
	return ErrInvalidCredentials
}

// recordClientFailure puts a failed client authentication in the feed (it is
// no account's), unless one of the same client from the same address is
// there this window: an outsider causes it, so a flood writes one event per
// (client, address) and window, and a marker. An id that is no client (id
// "") is recorded without what was typed, and all of them as one client.
// Best effort: the refusal stands either way.
func (s *Store) recordClientFailure(ctx context.Context, id string, from audit.Actor) {
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	err := s.c.Do(rctx, s.c.B().Set().Key(s.k.ClientFailRecorded(clientName(id), from.IP)).Value("1").
		Nx().Px(s.o.FailureWindow).Build()).Error()
	cancel()
	if err != nil {
		return // recorded already this window (a nil reply), or Redis failed
	}
	detail := "unknown client"
	if id != "" {
		detail = "client " + strconv.Quote(id)
	}
	from.ID = ""
	s.o.Audit.Feed(ctx, from.Event(audit.ClientAuthFailed, "", "", detail))
}
