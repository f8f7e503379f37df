// Package sessions owns sign-in sessions: creating, checking, listing and
// revoking them through the Lua scripts that change them atomically, the
// hot-path check of a token's session, and the JWTs that name them. Its keys
// and fields are internal/keys'; it knows nothing about accounts' rules
// (users/) or HTTP.
package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/metrics"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/scripts"
)

// Errors callers branch on, each with its code (internal/errcode).
var (
	// ErrNotFound means no such live session for that user.
	ErrNotFound = errcode.New(errcode.NotFound, "no such session")
	// ErrStale means the account's credentials changed (password change,
	// disable, force-logout) after its password was checked: a login checks
	// again; a password change loses to the change that landed first.
	ErrStale = errcode.New(errcode.InvalidCredentials, "the password was changed by another request while this one was checked")
)

// Session is one sign-in of one user on one device.
type Session struct {
	ID         string
	UserID     string
	DeviceName string
	Platform   string
	UserAgent  string
	IP         string
	CreatedAt  time.Time
	LastSeenAt time.Time
	// ExpiresAt is the absolute end fixed at login; an idle session ends earlier.
	ExpiresAt time.Time
	// DPoPBound is true when the session's refresh tokens are bound to a
	// DPoP key.
	DPoPBound bool
	// RefreshToken is the session's refresh token, set only by Create (with
	// Meta.Refresh) and Refresh: only its digest is stored.
	RefreshToken string
	// RefreshExpiresAt is when RefreshToken ends unless the session is used.
	RefreshExpiresAt time.Time
	// Assurance: how the session's user last authenticated (a step-up
	// changes it in place).
	Assurance
}

// Assurance is how strongly, and when, a session's user authenticated.
type Assurance struct {
	// AAL is 1 for one factor, 2 for two (or a passkey with user
	// verification).
	AAL int
	// AMR are the RFC 8176 methods used: pwd, otp, hwk, mfa.
	AMR []string
	// AuthTime is when the user last authenticated (sign-in or step-up).
	AuthTime time.Time
}

// passwordOnly is the methods of a password sign-in.
var passwordOnly = []string{"pwd"}

// Access is what a request's session check learns of the session: the
// account's role as the session holds it ("" for the default role) and the
// session's assurance.
type Access struct {
	Role string
	Assurance
}

// Meta is what is known about a new session's device and client.
type Meta struct {
	DeviceName string
	Platform   string
	UserAgent  string
	IP         string
	// Refresh gives the session refresh tokens (sessions/refresh.go).
	Refresh bool
	// Proof, with Refresh, binds the session's refresh tokens to the key of
	// the sign-in's DPoP proof; its jti is then accepted once.
	Proof *Proof
	// AAL and AMR are how the sign-in authenticated; zero: a password alone
	// (aal 1, amr pwd).
	AAL int
	AMR []string
}

// Options configure a Store; each is required unless it says otherwise (the
// service's defaults are its configuration's, not the store's).
type Options struct {
	// Keys is the Redis layout, under the service's key prefix.
	Keys keys.Layout
	// IdleTimeout ends a session unused this long.
	IdleTimeout time.Duration
	// TouchInterval is how often use of a session is written back; 0:
	// min(60 s, IdleTimeout/4). It may not exceed IdleTimeout/4.
	TouchInterval time.Duration
	// MaxLifetime ends a session this long after login.
	MaxLifetime time.Duration
	// MaxPerUser evicts the least recently used session beyond it; 0 = no limit.
	MaxPerUser int
	// Timeout bounds every Redis call.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// WaitReplicas, when above 0, makes every revocation wait (Redis WAIT)
	// until that many replicas have it before it is acknowledged, so a
	// failover cannot undo an acknowledged revocation. A revocation not
	// replicated within WaitTimeout is reported as unavailable (it has
	// taken effect on the master, but is not yet safe from a failover).
	WaitReplicas int
	// WaitTimeout bounds that wait; required with WaitReplicas.
	WaitTimeout time.Duration
	// Audit records the security events of sessions (sign-ins,
	// revocations) and of the account changes applied with them.
	Audit *audit.Log
	// Metrics counts session reads served by the client-side cache and
	// touches Redis refused; nil counts nothing.
	Metrics *metrics.Metrics
	// Log is told, at most once per touchRefusedLogEvery, that Redis refuses
	// to record sessions' use for want of memory; nil logs nothing.
	Log *slog.Logger
	// RefreshKeys derive and authenticate refresh tokens
	// (tokens.DeriveKeys(RefreshKeyPurpose)): the first makes them, all are
	// checked. Required for sessions with refresh tokens.
	RefreshKeys [][]byte
	// ReuseGrace is how long a spent refresh token still answers with its
	// successor (REFRESH_REUSE_GRACE).
	ReuseGrace time.Duration
	// Liveness lets the client-side cache answer only while its
	// connections are proven live (redisx.Liveness); nil: whenever rueidis
	// has the hash, for a client nothing watches.
	Liveness *redisx.Liveness
	// UsedSessions is about how many sessions' last recorded use this
	// replica remembers, so their requests between two touches queue none
	// (useMemo); 0: 65,536. Beyond it a session's request may queue a touch
	// that then finds the use recorded and writes nothing.
	UsedSessions int
}

// minCacheTTL bounds how long a session read may be served from the
// client-side cache, unless the touch interval is longer (Store.cacheTTL).
// Redis invalidates it sooner on any change, and recording use does not
// change the hash (touch.lua); this bounds memory held for sessions no
// longer in use (CLIENT_CACHE_MB bounds it too), and the life of a read
// should an invalidation ever be lost on a connection that still answers.
const minCacheTTL = 10 * time.Minute

// Store keeps sessions in Redis.
type Store struct {
	c     rueidis.Client
	o     Options
	k     keys.Layout
	touch time.Duration
	// cacheTTL is how long a session read may stay in the client-side
	// cache: minCacheTTL, or the touch interval when that is longer.
	cacheTTL time.Duration

	// used remembers the last recorded use of sessions this replica saw,
	// and touches writes what their requests found due (touches.go).
	used    *useMemo
	touches toucher

	// revoked remembers sessions this process revoked for a few seconds. The
	// client-side cache invalidation for a write can arrive after the write's
	// reply, so without this the replica that revoked could still accept the
	// token once. Other replicas rely on the invalidation push. It is read
	// on every request and written on revocations only: a sync.Map reads
	// without the shared lock word that an RWMutex's readers contend on, and
	// keying it by user makes a logout-all of 10,000 sessions one store of a
	// map built at its final size.
	revoked sync.Map // uid → *tombstones
	// raised are this process's recent step-ups (assurance.go).
	raised raises
	// pruned is when revoked was last walked for expired users (unix ns):
	// at most once per pruneEvery, not on every revocation, so a script
	// revoking many users' sessions one by one costs linear time, not
	// quadratic.
	pruned atomic.Int64

	// touchPausedUntil (unix ns): after Redis refused a touch for want of
	// memory, touches are not tried again before then, so a full Redis does
	// not cost every request of an old session a round trip that fails.
	touchPausedUntil atomic.Int64
	// plainTouches and scriptTouches count the uses recorded (touches.go).
	plainTouches, scriptTouches atomic.Int64
	// refusedLog and failedLog keep the log lines about refused touches
	// (out of memory) and failed ones (anything else) to one a minute each.
	refusedLog, failedLog logEvery
}

// New returns a Store over a rueidis client.
func New(c rueidis.Client, o Options) (*Store, error) {
	switch {
	case o.IdleTimeout <= 0 || o.MaxLifetime <= 0:
		return nil, errors.New("sessions: an idle timeout and a maximum lifetime are required")
	case o.Timeout <= 0:
		return nil, errors.New("sessions: a Redis timeout is required")
	case o.WaitReplicas > 0 && o.WaitTimeout <= 0:
		return nil, errors.New("sessions: waiting for replicas needs a wait timeout")
	case o.Audit == nil:
		return nil, errors.New("sessions: an audit log is required")
	case o.TouchInterval < 0 || o.TouchInterval > o.IdleTimeout/4:
		return nil, errors.New("sessions: the touch interval must be at most a quarter of the idle timeout, so a session in use never idles out")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.UsedSessions <= 0 {
		o.UsedSessions = 1 << 16
	}
	touch := TouchInterval(o.IdleTimeout, o.TouchInterval)
	s := &Store{c: c, o: o, k: o.Keys, touch: touch, cacheTTL: max(minCacheTTL, touch), used: newUseMemo(o.UsedSessions)}
	s.touches.s = s
	return s, nil
}

// TouchInterval is how often use of a session is written back, given the
// idle timeout and Options.TouchInterval: set, or by default at most once a
// minute, and often enough that a session in use never idles out.
func TouchInterval(idle, set time.Duration) time.Duration {
	if set > 0 {
		return set
	}
	return min(time.Minute, idle/4)
}

func ms(t time.Time) string   { return strconv.FormatInt(t.UnixMilli(), 10) }
func secs(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// Create starts a session for a user whose password was checked against
// credential version cv. It fails with ErrStale when the account changed since,
// errcode.ErrAccountDisabled or errcode.ErrUserNotFound, writing nothing. Beyond MaxPerUser it
// evicts the user's least recently used sessions, in the same step. With
// m.Refresh the session gets its first refresh token (Session.RefreshToken),
// bound to m.Proof's key when there is one; a proof whose jti was seen before
// is ErrProofReplayed, and nothing is written then either.
func (s *Store) Create(ctx context.Context, uid, cv string, m Meta) (Session, error) {
	now := s.o.Now().Truncate(time.Millisecond)
	sess := Session{
		ID: uuid.NewString(), UserID: uid,
		DeviceName: m.DeviceName, Platform: m.Platform, UserAgent: m.UserAgent, IP: m.IP,
		CreatedAt: now, LastSeenAt: now,
		// JWT exp is whole seconds; the session must not outlive its token.
		ExpiresAt: now.Add(s.o.MaxLifetime).Truncate(time.Second),
		Assurance: Assurance{AAL: max(m.AAL, 1), AMR: cmpOr(m.AMR, passwordOnly), AuthTime: now.Truncate(time.Second)},
	}
	// The hash outlives the session's end by the slack (touch.lua).
	expiry := now.Add(s.o.IdleTimeout + s.slack())
	if sess.ExpiresAt.Before(expiry) {
		expiry = sess.ExpiresAt
	}
	signIn := audit.Event{Type: audit.LoginSucceeded, UserID: uid, ActorID: uid, SessionID: sess.ID,
		IP: m.IP, UserAgent: m.UserAgent, Detail: deviceDetail(m)}
	evict := audit.Event{Type: audit.SessionRevoked, UserID: uid, Detail: "evicted: over the per-user session limit"}
	refresh, err := s.refreshFields(&sess, m)
	if err != nil {
		return Session{}, err
	}
	args := append([]string{cv, ms(now), ms(expiry), strconv.Itoa(s.o.MaxPerUser), s.k.SessionPrefix(uid), sess.ID,
		keys.SessDevice, m.DeviceName, keys.SessPlatform, m.Platform, keys.SessUserAgent, m.UserAgent, keys.SessIP, m.IP,
		keys.SessCreated, secs(now), keys.SessLastSeen, ms(now), keys.SessExpires, secs(sess.ExpiresAt),
		keys.SessHashExpires, ms(expiry)},
		append(append(refresh, assuranceFields(sess.Assurance)...), audit.SpecEvicting(now, signIn, evict))...)
	ks := []string{s.k.User(uid), s.k.SessionIndex(uid), s.k.Session(uid, sess.ID), s.k.Events(uid), s.k.SessionUses(uid)}
	if m.Refresh && m.Proof != nil {
		ks, args = append(ks, s.proofRecord(uid, m.Proof)), append(args, millis(m.Proof.Remember))
	}
	if s.o.MaxPerUser > 0 {
		// Eviction picks the least recently used: let it see the use this
		// replica has queued. Late, it would only evict on older figures.
		s.flushWithin(ctx)
	}
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	res, err := scripts.Create.Exec(rctx, s.c, ks, args).AsStrSlice()
	if err != nil {
		return Session{}, redisx.Unavailable("create session", err)
	}
	switch res[0] {
	case "OK":
		s.rememberRevoked(uid, res[1:])
		evs := []audit.Event{signIn}
		for _, id := range res[1:] {
			e := evict
			e.SessionID = id
			evs = append(evs, e)
		}
		s.o.Audit.Feed(ctx, evs...)
		return sess, nil
	case "NOUSER":
		return Session{}, errcode.ErrUserNotFound
	case "DISABLED":
		return Session{}, errcode.ErrAccountDisabled
	case "STALE":
		return Session{}, ErrStale
	case "REPLAY":
		return Session{}, ErrProofReplayed
	}
	return Session{}, fmt.Errorf("create session: unexpected reply %q", res[0])
}

// assuranceFields are the session hash fields that store a's assurance:
// none for a password sign-in's.
func assuranceFields(a Assurance) []string {
	var f []string
	if a.AAL > 1 {
		f = append(f, keys.SessAAL, strconv.Itoa(a.AAL))
	}
	if !slices.Equal(a.AMR, passwordOnly) {
		f = append(f, keys.SessAMR, strings.Join(a.AMR, " "))
	}
	return f
}

// assuranceOf reads a session's assurance from its aal, amr and auth_time
// fields ("" when absent) and its creation time.
func assuranceOf(created int64, aal, amr, authTime string) Assurance {
	a := Assurance{AAL: 1, AMR: passwordOnly, AuthTime: time.Unix(created, 0).UTC()}
	if v, err := strconv.Atoi(aal); err == nil && v > 1 {
		a.AAL = v
	}
	if amr != "" {
		a.AMR = strings.Fields(amr)
	}
	if v, err := strconv.ParseInt(authTime, 10, 64); err == nil && v > 0 {
		a.AuthTime = time.Unix(v, 0).UTC()
	}
	return a
}

// optional is a field's value, "" when the hash has none.
func optional(v rueidis.RedisMessage) string {
	s, _ := v.ToString()
	return s
}

func cmpOr(a, b []string) []string {
	if len(a) == 0 {
		return b
	}
	return a
}

// deviceDetail describes a sign-in's device for its event.
func deviceDetail(m Meta) string {
	switch {
	case m.DeviceName != "" && m.Platform != "":
		return m.DeviceName + " (" + m.Platform + ")"
	case m.DeviceName != "":
		return m.DeviceName
	}
	return m.Platform
}

// List returns a user's live sessions, most recently used first. The use
// this replica queued before the call is written first, so a client that
// lists its sessions sees its own last request.
func (s *Store) List(ctx context.Context, uid string) ([]Session, error) {
	s.flushWithin(ctx)
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	now := s.o.Now()
	ids, err := s.c.Do(ctx, s.c.B().Zrange().Key(s.k.SessionIndex(uid)).Min(ms(now)).Max("+inf").Byscore().Build()).AsStrSlice()
	if err != nil {
		return nil, redisx.Unavailable("list sessions", err)
	}
	if len(ids) == 0 {
		return []Session{}, nil
	}
	// Each session's hash, then their records in the use hash (touch.lua).
	cmds := make(rueidis.Commands, len(ids)+1)
	for i, id := range ids {
		cmds[i] = s.c.B().Hmget().Key(s.k.Session(uid, id)).Field(sessFields...).Build()
	}
	cmds[len(ids)] = s.c.B().Hmget().Key(s.k.SessionUses(uid)).Field(ids...).Build()
	res := s.c.DoMulti(ctx, cmds...)
	uses, err := res[len(ids)].AsStrSlice()
	if err != nil || len(uses) != len(ids) {
		return nil, redisx.Unavailable("list sessions", err)
	}
	out := make([]Session, 0, len(ids))
	for i, id := range ids {
		vals, err := res[i].ToArray()
		if err != nil {
			return nil, redisx.Unavailable("list sessions", err)
		}
		sess, ok := s.decode(uid, id, vals)
		if ls, ip := useOf(uses[i]); ls > sess.LastSeenAt.UnixMilli() {
			sess.LastSeenAt, sess.IP = time.UnixMilli(ls).UTC(), ip
		}
		if ok && s.alive(sess.LastSeenAt, sess.ExpiresAt, now) && !s.revokedHere(uid, sess.ID) {
			out = append(out, sess)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastSeenAt.Equal(out[j].LastSeenAt) {
			return out[i].LastSeenAt.After(out[j].LastSeenAt)
		}
		return out[i].CreatedAt.After(out[j].CreatedAt)
	})
	return out, nil
}

// Revoke ends one session of one user, by an actor, and records it.
// ErrNotFound when that user has no such live session (including when the id
// is another user's); nothing is recorded then.
func (s *Store) Revoke(ctx context.Context, uid, sid string, by audit.Actor) error {
	ev := by.Event(audit.SessionRevoked, uid, sid, "")
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := s.revocation(rctx, scripts.Revoke, []string{s.k.Session(uid, sid), s.k.SessionIndex(uid), s.k.Events(uid), s.k.SessionUses(uid)},
		[]string{sid, audit.Spec(s.o.Now(), ev)}).AsInt64()
	if err != nil {
		return redisx.Unavailable("revoke session", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	s.rememberRevoked(uid, []string{sid})
	s.o.Audit.Feed(ctx, ev)
	return nil
}

// sessFields are read positionally (HMGET): cheaper on the hot path than
// building a map per request.
var sessFields = []string{keys.SessDevice, keys.SessPlatform, keys.SessUserAgent, keys.SessIP,
	keys.SessCreated, keys.SessLastSeen, keys.SessExpires, keys.SessDPoPKey,
	keys.SessAAL, keys.SessAMR, keys.SessAuthTime}

// decode reads session sid of user uid from the values of sessFields. A
// missing hash reads as all nils.
func (s *Store) decode(uid, sid string, vals []rueidis.RedisMessage) (Session, bool) {
	if len(vals) != len(sessFields) || vals[6].IsNil() {
		return Session{}, false
	}
	str := func(i int) string { v, _ := vals[i].ToString(); return v }
	num := func(i int) int64 { v, _ := strconv.ParseInt(str(i), 10, 64); return v }
	return Session{
		ID: sid, UserID: uid,
		DeviceName: str(0), Platform: str(1), UserAgent: str(2), IP: str(3),
		CreatedAt:  time.Unix(num(4), 0).UTC(),
		LastSeenAt: time.UnixMilli(num(5)).UTC(),
		ExpiresAt:  time.Unix(num(6), 0).UTC(),
		DPoPBound:  !vals[7].IsNil(),
		Assurance:  s.raisedHere(uid, sid, assuranceOf(num(4), str(8), str(9), str(10))),
	}, true
}
