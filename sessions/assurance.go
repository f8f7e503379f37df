package sessions

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/scripts"
)

// Step-up: a session's assurance raised in place (POST
// /v1/auth/reauthenticate), never by a new session or token, so every
// request after it, on any replica, sees the new aal and auth_time from the
// session hash. Like a revocation, the client-side cache's invalidation of
// the write can arrive after its reply, so this process remembers its own
// step-ups for raisedTTL and lets them win over an older cached read.

// raisedTTL is far longer than an invalidation push takes to arrive.
const raisedTTL = 10 * time.Second

type raise struct {
	a  Assurance
	at time.Time
}

// raises are the step-ups this process made recently: sid → raise. raisedN
// counts them, so the hot path skips the map while there are none.
type raises struct {
	m sync.Map
	n atomic.Int64
	// pruned is when m was last walked for expired step-ups (unix ns).
	pruned atomic.Int64
}

// remember records a step-up and, at most once per pruneEvery, drops the
// expired ones: step-ups are people typing codes, so the walk is short.
func (r *raises) remember(sid string, a Assurance) {
	now := time.Now()
	// Pointers: a raise holds a slice, and sync.Map's CompareAndDelete
	// compares values, which panics on an uncomparable one.
	if _, loaded := r.m.Swap(sid, &raise{a: a, at: now}); !loaded {
		r.n.Add(1)
	}
	last := r.pruned.Load()
	if now.UnixNano()-last < int64(pruneEvery) || !r.pruned.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	for k, v := range r.m.Range {
		if now.Sub(v.(*raise).at) > raisedTTL && r.m.CompareAndDelete(k, v) {
			r.n.Add(-1)
		}
	}
}

// Reauthenticate records that the user of session sid authenticated again
// now, with methods amr at level aal: auth_time becomes now, and aal and amr
// are raised when aal is above the session's (a password alone keeps a
// two-factor session's second factor). It records session.reauthenticated
// and returns the session's new assurance; ErrNotFound when the session is
// gone.
func (s *Store) Reauthenticate(ctx context.Context, uid, sid string, aal int, amr []string, by audit.Actor) (Assurance, error) {
	now := s.o.Now().Truncate(time.Second)
	ev := by.Event(audit.SessionReauthenticated, uid, sid, "aal "+strconv.Itoa(aal)+": "+strings.Join(amr, " "))
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	res, err := scripts.Reauth.Exec(rctx, s.c, []string{s.k.Session(uid, sid), s.k.Events(uid)},
		[]string{secs(now), strconv.Itoa(aal), strings.Join(amr, " "), audit.Spec(now, ev)}).AsStrSlice()
	if err != nil {
		return Assurance{}, redisx.Unavailable("reauthenticate session", err)
	}
	if len(res) != 2 {
		return Assurance{}, ErrNotFound
	}
	got, _ := strconv.Atoi(res[0])
	a := Assurance{AAL: got, AMR: strings.Fields(res[1]), AuthTime: now.UTC()}
	s.raised.remember(sid, a)
	s.o.Audit.Feed(ctx, ev)
	return a, nil
}

// raisedHere is a, or the assurance of this process's own recent step-up of
// the session when that is newer than a (an older read the cache served).
func (s *Store) raisedHere(uid, sid string, a Assurance) Assurance {
	if s.raised.n.Load() == 0 {
		return a
	}
	v, ok := s.raised.m.Load(sid)
	if !ok {
		return a
	}
	r := v.(*raise)
	if time.Since(r.at) > raisedTTL {
		if s.raised.m.CompareAndDelete(sid, v) {
			s.raised.n.Add(-1)
		}
		return a
	}
	if r.a.AuthTime.After(a.AuthTime) || r.a.AAL > a.AAL {
		return r.a
	}
	return a
}

// Now is the store's clock, which auth_time is read by: a session's
// freshness is judged by the clock that stamped it.
func (s *Store) Now() time.Time { return s.o.Now() }
