package sessions

import (
	"context"
	"strings"
	"time"

	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redisx"
)

// The hot path: every authenticated request's session check (Use, and
// Check for introspection), one read through the client-side cache. What
// Use then queues to record the session's use is touches.go's.

// useFields are all Use reads: whether the session is live, when it was
// last used, the account's role and the session's assurance. The rest of
// the hash is not needed on every request, and a smaller read makes a
// smaller cache entry with less to decode.
var useFields = []string{keys.SessLastSeen, keys.SessExpires, keys.SessRole,
	keys.SessCreated, keys.SessAAL, keys.SessAMR, keys.SessAuthTime, keys.SessHashExpires}

// Use is the hot path of every authenticated request: the session must
// exist, belong to uid and be live (else ErrNotFound), and its use from ip is
// recorded. It returns the account's role as the session holds it: "" for the
// default role, which sessions do not store (it would grow every session past
// a memory size class). Use is recorded at most once per touch interval, so
// most requests write nothing and read from the client-side cache.
//
// Recording use is best effort once the read has shown the session live:
// the request queues it and is answered (touches.go), and it is written
// within a round trip or so; what fails closed is the read. A touch Redis
// refuses for want of memory is counted (Metrics) and logged at most once a
// minute, and touches pause for a second; one that fails otherwise is
// counted and logged as well, and the session's next request tries again.
// A session whose use is never recorded idles out from its last recorded
// use.
func (s *Store) Use(ctx context.Context, uid, sid, ip string) (acc Access, err error) {
	now := s.o.Now()
	l, acc, err := s.live(ctx, uid, sid, now)
	if err != nil || now.Sub(l.seen) < s.touch {
		return acc, err
	}
	last := s.used.last(uid, sid)
	if now.Sub(time.UnixMilli(last)) < s.touch {
		return acc, nil // recorded since the hash was written
	}
	if time.Now().UnixNano() < s.touchPausedUntil.Load() {
		return acc, nil // Redis was out of memory a moment ago
	}
	// Noted before it is written, so the requests until then queue no other.
	s.used.note(uid, sid, now.UnixMilli())
	// A session whose use this replica knows was recorded, and whose hash
	// outlives its new end, needs only its use record written (touches.go).
	// Copies: the request's strings may be views of its buffers, which
	// are reused once it is answered.
	r := touchReq{uid: strings.Clone(uid), sid: strings.Clone(sid), ip: strings.Clone(ip), now: now, ends: l.ends, plain: last != 0 && l.quiet}
	if !s.touches.add(r) {
		s.used.forget(uid, sid)
		s.touchFailed(1, errTouchQueueFull)
	}
	return acc, nil
}

// Check reports whether a session of uid is live, as Use does, and returns
// what Use does, without recording use: for a third party asking about a
// token (introspection).
func (s *Store) Check(ctx context.Context, uid, sid string) (Access, error) {
	_, acc, err := s.live(ctx, uid, sid, s.o.Now())
	return acc, err
}

// liveness is what a session check learns of a session's use.
type liveness struct {
	// seen is when it was last used, as far as the read knows.
	seen time.Time
	// ends is when it would end were its use recorded now (unix ms): the
	// idle timeout from now, or its absolute end.
	ends int64
	// quiet: its hash outlives ends, so recording use now need not
	// rewrite it.
	quiet bool
}

// live reads what Use and Check need of a session, through the client-side
// cache: ErrNotFound unless it exists, belongs to uid and has neither idled
// out nor reached its end at now; else its liveness, and the role and
// assurance it holds.
func (s *Store) live(ctx context.Context, uid, sid string, now time.Time) (l liveness, acc Access, err error) {
	if s.revokedHere(uid, sid) {
		return liveness{}, Access{}, ErrNotFound
	}
	vals, from, err := redisx.CachedHMGet(ctx, s.c, s.o.Liveness, now, s.k.Session(uid, sid), useFields, s.cacheTTL, s.o.Timeout)
	s.o.Metrics.CacheRead(from)
	if err != nil {
		return liveness{}, Access{}, err
	}
	if vals[1].IsNil() {
		return liveness{}, Access{}, ErrNotFound
	}
	seenMS, _ := vals[0].AsInt64()
	expires, _ := vals[1].AsInt64()
	acc.Role, _ = vals[2].ToString()
	lastSeen := time.UnixMilli(seenMS)
	if !s.alive(lastSeen, time.Unix(expires, 0), now) {
		// The hash holds its use as of its last rewrite, and outlives the
		// session's end by the slack; the use hash has the last recorded use.
		// Only a session unused here for about the idle timeout gets here.
		ls, _, err := s.useFromRedis(ctx, uid, sid)
		if err != nil {
			return liveness{}, Access{}, err
		}
		if lastSeen = time.UnixMilli(max(seenMS, ls)); !s.alive(lastSeen, time.Unix(expires, 0), now) {
			return liveness{}, Access{}, ErrNotFound
		}
	}
	created, _ := vals[3].AsInt64()
	acc.Assurance = s.raisedHere(uid, sid, assuranceOf(created, optional(vals[4]), optional(vals[5]), optional(vals[6])))
	// A hash from before its expiry was kept in it reads as 0: not quiet.
	hashEnds, _ := vals[7].AsInt64()
	l.seen, l.ends = lastSeen, min(now.Add(s.o.IdleTimeout).UnixMilli(), expires*1000)
	l.quiet = hashEnds >= l.ends
	return l, acc, nil
}

// alive is true while neither the idle timeout nor the absolute end has
// passed. Redis expires the key then too; this also covers a read served
// from the client-side cache in the moment before the key's expiry.
func (s *Store) alive(lastSeen, expires, now time.Time) bool {
	return now.Before(expires) && now.Before(lastSeen.Add(s.o.IdleTimeout))
}
