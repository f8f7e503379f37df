// Package sessions owns sign-in sessions: their Redis layout, the Lua scripts
// that change them atomically, the hot-path check of a token's session, and the
// JWTs that name them. It knows nothing about HTTP.
package sessions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/deadline"
	"github.com/sessiond/sessiond/scripts"
)

// Errors callers branch on.
var (
	// ErrNotFound means no such live session for that user.
	ErrNotFound = errors.New("session not found")
	// ErrAccountDisabled means the account was disabled before the session could be created.
	ErrAccountDisabled = errors.New("account disabled")
	// ErrUserNotFound means the account does not exist.
	ErrUserNotFound = errors.New("user not found")
	// ErrStale means the account's credentials changed (password change,
	// disable, force-logout) after the password was checked: check it again.
	ErrStale = errors.New("credentials changed since the password check")
	// ErrUnavailable means Redis could not be reached or refused the command.
	ErrUnavailable = errors.New("session store unavailable")
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
}

// Meta is what is known about a new session's device and client.
type Meta struct {
	DeviceName string
	Platform   string
	UserAgent  string
	IP         string
}

// Options configure a Store. Zero values take the defaults in the comments.
type Options struct {
	// Prefix is put before every key (default "sd:").
	Prefix string
	// UserKey names a user's account hash. Session scripts read its "disabled"
	// and "cv" (credential version) fields and write account changes there, in
	// the same step as revocations.
	UserKey func(uid string) string
	// IdleTimeout ends a session unused this long (default 720h).
	IdleTimeout time.Duration
	// MaxLifetime ends a session this long after login (default 2160h).
	MaxLifetime time.Duration
	// MaxPerUser evicts the least recently used session beyond it; 0 = no limit.
	MaxPerUser int
	// Timeout bounds every Redis call (default 2s): rueidis retries reads until
	// the context ends, so without it a request would hang while Redis is down.
	Timeout time.Duration
	// CacheTTL bounds how long a session read may be served from the
	// client-side cache (default 1m). Redis invalidates it sooner on any change.
	CacheTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// WaitReplicas, when above 0, makes every revocation wait (Redis WAIT)
	// until that many replicas have it before it is acknowledged, so a
	// failover cannot undo an acknowledged revocation. A revocation not
	// replicated within WaitTimeout is reported as ErrUnavailable (it has
	// taken effect on the master, but is not yet safe from a failover).
	WaitReplicas int
	// WaitTimeout bounds that wait (default 500ms).
	WaitTimeout time.Duration
}

// Store keeps sessions in Redis.
type Store struct {
	c     rueidis.Client
	o     Options
	touch time.Duration

	// revoked remembers sessions this process revoked for a few seconds. The
	// client-side cache invalidation for a write can arrive after the write's
	// reply, so without this the replica that revoked could still accept the
	// token once. Other replicas rely on the invalidation push. It is read
	// on every request and written on revocations only: a sync.Map reads
	// without the shared lock word that an RWMutex's readers contend on, and
	// keying it by user makes a logout-all of 10,000 sessions one store of a
	// map built at its final size.
	revoked sync.Map // uid → *tombstones
}

// tombstones are the sessions of one user this process revoked recently.
type tombstones struct {
	mu     sync.Mutex
	ids    map[string]time.Time // session id → when it was revoked
	latest time.Time
	// dropped is set, under mu, when pruning removes this from the map, so
	// a writer that loaded it just before stores a fresh one instead.
	dropped bool
}

// tombstoneTTL is far longer than an invalidation push takes to arrive.
const tombstoneTTL = 10 * time.Second

// New returns a Store over a rueidis client.
func New(c rueidis.Client, o Options) *Store {
	if o.Prefix == "" {
		o.Prefix = "sd:"
	}
	if o.UserKey == nil {
		p := o.Prefix
		o.UserKey = func(uid string) string { return p + "user:{" + uid + "}" }
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 720 * time.Hour
	}
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = 2160 * time.Hour
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = 500 * time.Millisecond
	}
	return &Store{c: c, o: o, touch: TouchInterval(o.IdleTimeout)}
}

// TouchInterval is how often use of a session is written back: at most once a
// minute, and often enough that a session in use never idles out.
func TouchInterval(idle time.Duration) time.Duration {
	return min(time.Minute, idle/4)
}

// Keys, all of one user under the hash tag {uid} so every script touches one
// cluster slot.
func (s *Store) indexKey(uid string) string   { return s.o.Prefix + "sessions:{" + uid + "}" }
func (s *Store) sessPrefix(uid string) string { return s.o.Prefix + "sess:{" + uid + "}:" }
func (s *Store) sessKey(uid, sid string) string {
	// One concatenation, one allocation: this is on every request.
	return s.o.Prefix + "sess:{" + uid + "}:" + sid
}

func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.o.Timeout)
}

// unavailable marks a Redis failure so callers can answer 503 without
// knowing rueidis.
func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %v", op, ErrUnavailable, err)
}

func isOOM(err error) bool {
	e, ok := rueidis.IsRedisErr(err)
	return ok && strings.HasPrefix(e.Error(), "OOM")
}

func ms(t time.Time) string   { return strconv.FormatInt(t.UnixMilli(), 10) }
func secs(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// Create starts a session for a user whose password was checked against
// credential version cv. It fails with ErrStale when the account changed since,
// ErrAccountDisabled or ErrUserNotFound, writing nothing. Beyond MaxPerUser it
// evicts the user's least recently used sessions, in the same step.
func (s *Store) Create(ctx context.Context, uid, cv string, m Meta) (Session, error) {
	now := s.o.Now().Truncate(time.Millisecond)
	sess := Session{
		ID: uuid.NewString(), UserID: uid,
		DeviceName: m.DeviceName, Platform: m.Platform, UserAgent: m.UserAgent, IP: m.IP,
		CreatedAt: now, LastSeenAt: now,
		// JWT exp is whole seconds; the session must not outlive its token.
		ExpiresAt: now.Add(s.o.MaxLifetime).Truncate(time.Second),
	}
	expiry := now.Add(s.o.IdleTimeout)
	if sess.ExpiresAt.Before(expiry) {
		expiry = sess.ExpiresAt
	}
	args := []string{cv, ms(now), ms(expiry), strconv.Itoa(s.o.MaxPerUser), s.sessPrefix(uid), sess.ID,
		fDevice, m.DeviceName, fPlatform, m.Platform, fUserAgent, m.UserAgent, fIP, m.IP,
		fCreated, secs(now), fLastSeen, ms(now), fExpires, secs(sess.ExpiresAt)}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := scripts.Create.Exec(ctx, s.c, []string{s.o.UserKey(uid), s.indexKey(uid), s.sessKey(uid, sess.ID)}, args).AsStrSlice()
	if err != nil {
		return Session{}, unavailable("create session", err)
	}
	switch res[0] {
	case "OK":
		s.forget(uid, res[1:])
		return sess, nil
	case "NOUSER":
		return Session{}, ErrUserNotFound
	case "DISABLED":
		return Session{}, ErrAccountDisabled
	case "STALE":
		return Session{}, ErrStale
	}
	return Session{}, fmt.Errorf("create session: unexpected reply %q", res[0])
}

// Get returns a live session of a user, from the client-side cache when it
// can. ErrNotFound when there is none.
func (s *Store) Get(ctx context.Context, uid, sid string) (Session, error) {
	if s.isRevoked(uid, sid) {
		return Session{}, ErrNotFound
	}
	vals, err := s.cachedRead(ctx, s.sessKey(uid, sid), sessFields)
	if err != nil {
		return Session{}, err
	}
	sess, ok := s.decode(uid, sid, vals)
	if !ok || !s.live(sess.LastSeenAt, sess.ExpiresAt, s.o.Now()) {
		return Session{}, ErrNotFound
	}
	return sess, nil
}

// cachedRead reads fields of a session hash through the client-side cache.
func (s *Store) cachedRead(ctx context.Context, key string, fields []string) ([]rueidis.RedisMessage, error) {
	// A lazy deadline: most reads are served from the client-side cache and
	// never wait, so they should not pay for a timer.
	dl := deadline.After(ctx, s.o.Timeout)
	defer dl.Stop()
	r := s.c.DoCache(dl, s.c.B().Hmget().Key(key).Field(fields...).Cache(), s.o.CacheTTL)
	if isOOM(r.Error()) {
		// A cached read is a MULTI, which Redis refuses when out of memory;
		// a plain read still works, so revocations and reads go on.
		r = s.c.Do(dl, s.c.B().Hmget().Key(key).Field(fields...).Build())
	}
	vals, err := r.ToArray()
	if err != nil {
		return nil, unavailable("read session", err)
	}
	if len(vals) != len(fields) {
		return nil, unavailable("read session", fmt.Errorf("%d values for %d fields", len(vals), len(fields)))
	}
	return vals, nil
}

// checkFields are all Check reads: whether the session is live, when it was
// last used, and the account's role. The rest of the hash is not needed on
// every request, and a smaller read makes a smaller cache entry with less to
// decode.
var checkFields = []string{fLastSeen, fExpires, fRole}

// Check is the hot path of every authenticated request: the session must
// exist, belong to uid and be live (else ErrNotFound). It returns the
// account's role as the session holds it: "" for the default role, which
// sessions do not store (it would grow every session past a memory size
// class). Use is written back at most once per touch interval, so
// most requests write nothing and read from the client-side cache.
func (s *Store) Check(ctx context.Context, uid, sid, ip string) (role string, err error) {
	if s.isRevoked(uid, sid) {
		return "", ErrNotFound
	}
	now := s.o.Now()
	key := s.sessKey(uid, sid)
	vals, err := s.cachedRead(ctx, key, checkFields)
	if err != nil {
		return "", err
	}
	if vals[1].IsNil() {
		return "", ErrNotFound
	}
	lastSeen, _ := vals[0].AsInt64()
	expires, _ := vals[1].AsInt64()
	role, _ = vals[2].ToString()
	seen := time.UnixMilli(lastSeen)
	if !s.live(seen, time.Unix(expires, 0), now) {
		return "", ErrNotFound
	}
	if now.Sub(seen) < s.touch {
		return role, nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := scripts.Touch.Exec(ctx, s.c, []string{key, s.indexKey(uid)},
		[]string{ms(now), strconv.FormatInt(s.o.IdleTimeout.Milliseconds(), 10), ip, sid}).AsInt64()
	if err != nil {
		return "", unavailable("touch session", err)
	}
	if n == 0 {
		return "", ErrNotFound
	}
	return role, nil
}

// UpdateAccount sets account fields that end no session (field, value
// pairs: a role, enabling) and, when the role changes, copies it into every
// live session of the account in the same step, so the next request sees it
// (Check). ErrUserNotFound when the account does not exist; nothing is written
// then.
func (s *Store) UpdateAccount(ctx context.Context, uid string, fields ...string) error {
	if len(fields) == 0 || len(fields)%2 != 0 {
		return errors.New("update account: fields must be field, value pairs")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := scripts.UpdateAccount.Exec(ctx, s.c, []string{s.o.UserKey(uid), s.indexKey(uid)},
		append([]string{s.sessPrefix(uid)}, fields...)).AsInt64()
	if err != nil {
		return unavailable("update account", err)
	}
	if n < 0 {
		return ErrUserNotFound
	}
	return nil
}

// List returns a user's live sessions, most recently used first.
func (s *Store) List(ctx context.Context, uid string) ([]Session, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	now := s.o.Now()
	ids, err := s.c.Do(ctx, s.c.B().Zrange().Key(s.indexKey(uid)).Min(ms(now)).Max("+inf").Byscore().Build()).AsStrSlice()
	if err != nil {
		return nil, unavailable("list sessions", err)
	}
	if len(ids) == 0 {
		return []Session{}, nil
	}
	cmds := make(rueidis.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = s.c.B().Hmget().Key(s.sessKey(uid, id)).Field(sessFields...).Build()
	}
	out := make([]Session, 0, len(ids))
	for i, r := range s.c.DoMulti(ctx, cmds...) {
		vals, err := r.ToArray()
		if err != nil {
			return nil, unavailable("list sessions", err)
		}
		if sess, ok := s.decode(uid, ids[i], vals); ok && s.live(sess.LastSeenAt, sess.ExpiresAt, now) && !s.isRevoked(uid, sess.ID) {
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

// Revoke ends one session of one user. ErrNotFound when that user has no such
// live session (including when the id is another user's).
func (s *Store) Revoke(ctx context.Context, uid, sid string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := s.revocation(ctx, scripts.Revoke, scripts.RevokeSrc, []string{s.sessKey(uid, sid), s.indexKey(uid)}, []string{sid}).AsInt64()
	if err != nil {
		return unavailable("revoke session", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	s.forget(uid, []string{sid})
	return nil
}

// RevokeAll ends every session of a user except keep ("" keeps none) and
// returns how many live sessions it ended. In the same atomic step it bumps
// the account's credential version, so a login whose password check ran
// before cannot create a session after. ErrUserNotFound when the account does
// not exist; nothing is written then.
func (s *Store) RevokeAll(ctx context.Context, uid, keep string) (int, error) {
	return s.ChangeAccount(ctx, uid, keep, AccountChange{})
}

// AccountChange is a change to an account that ends its sessions in the same
// step (ChangeAccount).
type AccountChange struct {
	// Fields are account hash field, value pairs to set (a disable, a new
	// password hash).
	Fields []string
	// IfVersion, when set, is the credential version the change was checked
	// against (a password change checks the current password): if the account
	// has another by now, nothing is written and the error is ErrStale.
	IfVersion string
}

// ChangeAccount is RevokeAll that also applies ch to the account in the same
// atomic step, so the change and the revocation cannot be separated by a
// fault, and a change checked against an older credential version loses.
func (s *Store) ChangeAccount(ctx context.Context, uid, keep string, ch AccountChange) (int, error) {
	if len(ch.Fields)%2 != 0 {
		return 0, errors.New("change account: fields must be field, value pairs")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	args := append([]string{keep, s.sessPrefix(uid), ch.IfVersion}, ch.Fields...)
	res, err := s.revocation(ctx, scripts.RevokeAll, scripts.RevokeAllSrc, []string{s.o.UserKey(uid), s.indexKey(uid)}, args).ToArray()
	if err != nil {
		return 0, unavailable("revoke sessions", err)
	}
	n, err := res[0].AsInt64()
	if err != nil {
		return 0, fmt.Errorf("revoke sessions: %w", err)
	}
	switch n {
	case -1:
		return 0, ErrUserNotFound
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
	s.forget(uid, ids)
	return int(n), nil
}

// errNotReplicated is returned (as ErrUnavailable) when a revocation was not
// confirmed by enough replicas in time.
var errNotReplicated = errors.New("revocation not yet replicated")

// revocation runs a revoking script. With WaitReplicas it sends the script
// and a WAIT in one pipeline to the master of the user's slot: WAIT covers
// the writes of the connection it is sent on, so it must follow the script
// on the same one.
func (s *Store) revocation(ctx context.Context, script *rueidis.Lua, src string, keys, args []string) rueidis.RedisResult {
	if s.o.WaitReplicas <= 0 {
		return script.Exec(ctx, s.c, keys, args)
	}
	res := s.c.DoMulti(ctx,
		s.c.B().Eval().Script(src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(),
		s.c.B().Wait().Numreplicas(int64(s.o.WaitReplicas)).Timeout(s.o.WaitTimeout.Milliseconds()).Build().SetSlot(keys[0]))
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

// live is true while neither the idle timeout nor the absolute end has
// passed. Redis expires the key then too; this also covers a read served
// from the client-side cache in the moment before the key's expiry.
func (s *Store) live(lastSeen, expires, now time.Time) bool {
	return now.Before(expires) && now.Before(lastSeen.Add(s.o.IdleTimeout))
}

// Session hash fields. The names are short because a session should cost
// little in Redis (small hashes stay listpack-encoded, and every byte of a
// field name is stored in every session); the user and session ids are not
// stored at all, since the key names both. The scripts use the same names.
const (
	fDevice    = "dn" // device name, as the client sent it
	fPlatform  = "pf" // platform, as the client sent it
	fUserAgent = "ua" // User-Agent the server saw
	fIP        = "ip" // client IP the server saw at last use
	fCreated   = "ca" // created at, unix seconds (fits listpack's 4-byte integers)
	fLastSeen  = "ls" // last seen at, unix ms (the idle timeout may be short)
	fExpires   = "ea" // absolute end, unix seconds (it is the JWT's exp)
	fRole      = "rl" // the account's role unless it is the default, kept current by the scripts
)

// sessFields are read positionally (HMGET): cheaper on the hot path than
// building a map per request.
var sessFields = []string{fDevice, fPlatform, fUserAgent, fIP, fCreated, fLastSeen, fExpires}

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
	}, true
}

func (s *Store) forget(uid string, ids []string) {
	if len(ids) == 0 {
		return
	}
	now := time.Now()
	for {
		v, _ := s.revoked.LoadOrStore(uid, &tombstones{})
		t := v.(*tombstones)
		t.mu.Lock()
		if t.dropped {
			// Pruned between the load and the lock: store a fresh one.
			t.mu.Unlock()
			continue
		}
		if t.ids == nil || now.Sub(t.latest) > tombstoneTTL {
			// All expired: start afresh, sized for a logout-all of thousands.
			t.ids = make(map[string]time.Time, len(ids))
		}
		for _, id := range ids {
			t.ids[id] = now
		}
		t.latest = now
		t.mu.Unlock()
		break
	}
	// Drop users whose tombstones have all expired, so the map holds only
	// the last few seconds' revokers.
	for k, v := range s.revoked.Range {
		t := v.(*tombstones)
		t.mu.Lock()
		if now.Sub(t.latest) > tombstoneTTL {
			t.dropped = true
			s.revoked.CompareAndDelete(k, v)
		}
		t.mu.Unlock()
	}
}

func (s *Store) isRevoked(uid, sid string) bool {
	v, ok := s.revoked.Load(uid)
	if !ok {
		return false
	}
	t := v.(*tombstones)
	t.mu.Lock()
	at, ok := t.ids[sid]
	t.mu.Unlock()
	return ok && time.Since(at) <= tombstoneTTL
}

// Ping reports whether Redis answers, within the store's timeout.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.c.Do(ctx, s.c.B().Ping().Build()).Error(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// ErrEvictionPolicy means Redis may evict keys under memory pressure.
var ErrEvictionPolicy = errors.New("Redis maxmemory-policy must be noeviction")

// CheckEvictionPolicy reads Redis's maxmemory-policy. Anything but noeviction
// is ErrEvictionPolicy: an LRU/LFU policy silently drops session hashes or a
// user's index, after which "log out everywhere" misses sessions (fail open).
// Where CONFIG is not allowed (managed Redis) it returns the policy "" and
// the CONFIG error, for the caller to warn about.
func (s *Store) CheckEvictionPolicy(ctx context.Context) (string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	// Every node of a cluster: one evicting shard loses its users' sessions.
	for addr, node := range s.c.Nodes() {
		kv, err := node.Do(ctx, node.B().ConfigGet().Parameter("maxmemory-policy").Build()).AsStrMap()
		if err != nil {
			return "", fmt.Errorf("read maxmemory-policy of %s: %w", addr, err)
		}
		if policy := kv["maxmemory-policy"]; policy != "noeviction" {
			return policy, fmt.Errorf("%w (%s has %q): set it with CONFIG SET maxmemory-policy noeviction or in redis.conf",
				ErrEvictionPolicy, addr, policy)
		}
	}
	return "noeviction", nil
}
