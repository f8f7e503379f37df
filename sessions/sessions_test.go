package sessions_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/sessions"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

// clock is a settable time source for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// fixture is a store over the package's Redis with its own prefix and one
// user record (what users.Store would have written: the fields the scripts read).
type fixture struct {
	t      *testing.T
	s      *sessions.Store
	c      rueidis.Client
	prefix string
	clock  *clock
	uid    string
}

func newFixture(t *testing.T, o sessions.Options) *fixture {
	t.Helper()
	f := &fixture{t: t, c: srv.Client(t), prefix: redistest.Prefix(t), clock: &clock{t: time.Now()}, uid: "u-" + fmt.Sprint(time.Now().UnixNano())}
	o.Now = f.clock.Now
	f.s = newStore(t, f.c, f.prefix, o)
	f.addUser(f.uid)
	return f
}

func (f *fixture) userKey(uid string) string      { return keys.New(f.prefix).User(uid) }
func (f *fixture) sessKey(uid, sid string) string { return keys.New(f.prefix).Session(uid, sid) }
func (f *fixture) indexKey(uid string) string     { return keys.New(f.prefix).SessionIndex(uid) }
func (f *fixture) usesKey(uid string) string      { return keys.New(f.prefix).SessionUses(uid) }

// use is a session's record in its user's use hash: "<last seen ms> <ip>",
// "" for none.
func (f *fixture) use(uid, sid string) string {
	f.t.Helper()
	v, err := f.c.Do(context.Background(), f.c.B().Hget().Key(f.usesKey(uid)).Field(sid).Build()).ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		f.t.Fatal(err)
	}
	return v
}

// flush waits for the store's queued touches to be written.
func (f *fixture) flush() {
	f.t.Helper()
	if err := f.s.Flush(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) addUser(uid string) {
	f.t.Helper()
	if err := f.c.Do(context.Background(), f.c.B().Hset().Key(f.userKey(uid)).FieldValue().
		FieldValue(keys.UserID, uid).FieldValue(keys.UserRole, keys.DefaultRole).FieldValue(keys.UserDisabled, "0").FieldValue(keys.UserVersion, "0").Build()).Error(); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) create(uid string) sessions.Session {
	f.t.Helper()
	s, err := f.s.Create(context.Background(), uid, f.cv(uid), sessions.Meta{DeviceName: "d", IP: "127.0.0.1"})
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fixture) cv(uid string) string {
	v, _ := f.c.Do(context.Background(), f.c.B().Hget().Key(f.userKey(uid)).Field(keys.UserVersion).Build()).ToString()
	return v
}

func (f *fixture) pttl(key string) time.Duration {
	f.t.Helper()
	ms, err := f.c.Do(context.Background(), f.c.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil {
		f.t.Fatal(err)
	}
	return time.Duration(ms) * time.Millisecond
}

func (f *fixture) exists(key string) bool {
	n, _ := f.c.Do(context.Background(), f.c.B().Exists().Key(key).Build()).AsInt64()
	return n == 1
}

// A session's use is recorded in a key of its own that expires at the idle
// timeout from the last use (written at most once per touch interval), and
// neither it nor the hash outlives the absolute end; the hash lives a slack
// (a quarter of the idle timeout) longer than the session's end, so that
// recording use rarely rewrites it.
func TestIdleExpirySlidesUpToTheAbsoluteEnd(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{IdleTimeout: time.Hour, MaxLifetime: 90 * time.Minute})
	ctx := context.Background()
	s := f.create(f.uid)
	key, uses := f.sessKey(f.uid, s.ID), f.usesKey(f.uid)
	if d := f.pttl(key); d > 75*time.Minute || d < 74*time.Minute {
		t.Fatalf("after login the hash lives %s, want the 1h idle timeout and its 15m slack", d)
	}

	f.clock.Add(30 * time.Second) // within the 60s touch interval: nothing is written
	if _, err := f.s.Use(ctx, f.uid, s.ID, "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	f.flush()
	if f.use(f.uid, s.ID) != "" {
		t.Fatal("a check within the touch interval recorded use")
	}

	f.clock.Add(40 * time.Minute) // due: last use is recorded and the expiry slides
	if _, err := f.s.Use(ctx, f.uid, s.ID, "10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	f.flush()
	ms, ip, _ := strings.Cut(f.use(f.uid, s.ID), " ")
	if ls, _ := strconv.ParseInt(ms, 10, 64); ip != "10.0.0.2" || !time.UnixMilli(ls).After(s.LastSeenAt) {
		t.Fatalf("touch did not record use: ip %q, last seen %s ms (login at %s)", ip, ms, s.LastSeenAt)
	}
	// now+idle would be 1h40m after login; the absolute end (1h30m) caps it.
	want := time.Until(s.ExpiresAt)
	for _, k := range []string{key, uses} {
		if d := f.pttl(k); d > want+time.Second || d < want-2*time.Second {
			t.Fatalf("after a late touch %s lives %s, want the absolute end in %s", k, d, want)
		}
	}
	if d := f.pttl(f.indexKey(f.uid)); d < want-2*time.Second {
		t.Fatalf("the index lives %s, less than its session (%s)", d, want)
	}

	// Past the idle timeout since last use (by the store's clock): gone.
	f.clock.Add(61 * time.Minute)
	if _, err := f.s.Use(ctx, f.uid, s.ID, "10.0.0.2"); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("check after the idle timeout: %v, want ErrNotFound", err)
	}
}

// Redis's own expiry ends an unused session.
func TestUnusedSessionExpiresInRedis(t *testing.T) {
	t.Parallel()
	srv.RequireReal(t, "keys expire by Redis's clock")
	c := srv.Client(t)
	p := redistest.Prefix(t)
	s := newStore(t, c, p, sessions.Options{IdleTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	c.Do(ctx, c.B().Hset().Key(keys.New(p).User("u1")).FieldValue().FieldValue(keys.UserID, "u1").FieldValue(keys.UserVersion, "0").Build())
	sess, err := s.Create(ctx, "u1", "0", sessions.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(450 * time.Millisecond)
	if _, err := s.Use(ctx, "u1", sess.ID, "ip"); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("check after idling out: %v", err)
	}
	if n, _ := c.Do(ctx, c.B().Exists().Key(keys.New(p).Session("u1", sess.ID)).Build()).AsInt64(); n != 0 {
		t.Fatal("the idle session's key is still in Redis")
	}
}

func TestRevokeOnlyOwnSessions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{})
	ctx := context.Background()
	other := "other-" + f.uid
	f.addUser(other)
	mine, theirs := f.create(f.uid), f.create(other)

	if err := f.s.Revoke(ctx, f.uid, theirs.ID, audit.Actor{}); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("revoking another user's session: %v, want ErrNotFound", err)
	}
	if _, err := f.s.Use(ctx, other, theirs.ID, "ip"); err != nil {
		t.Fatalf("their session after my revoke attempt: %v", err)
	}
	if _, err := f.s.Use(ctx, f.uid, theirs.ID, "ip"); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("reading their session as mine: %v", err)
	}
	if err := f.s.Revoke(ctx, f.uid, mine.ID, audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Use(ctx, f.uid, mine.ID, "ip"); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("after revoke: %v", err)
	}
	if err := f.s.Revoke(ctx, f.uid, mine.ID, audit.Actor{}); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
}

func TestRevokeAll(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{})
	ctx := context.Background()
	a, b, c := f.create(f.uid), f.create(f.uid), f.create(f.uid)

	n, err := f.s.ChangeAccount(ctx, f.uid, b.ID, keys.AccountUpdate{Disabled: ptr(true), Role: ptr("user")}, "")
	if err != nil || n != 2 {
		t.Fatalf("RevokeAll keeping one: %d, %v; want 2", n, err)
	}
	list, _ := f.s.List(ctx, f.uid)
	if len(list) != 1 || list[0].ID != b.ID {
		t.Fatalf("left %+v; want only the kept one", list)
	}
	for _, s := range []sessions.Session{a, c} {
		if f.exists(f.sessKey(f.uid, s.ID)) {
			t.Fatalf("revoked session %s still has a key", s.ID)
		}
	}
	if f.cv(f.uid) != "1" {
		t.Fatalf("credential version %q after RevokeAll, want 1", f.cv(f.uid))
	}
	if d, _ := f.c.Do(ctx, f.c.B().Hget().Key(f.userKey(f.uid)).Field(keys.UserDisabled).Build()).ToString(); d != "1" {
		t.Fatal("account fields were not applied with the revocation")
	}

	if n, err := f.s.RevokeAll(ctx, f.uid, "", audit.Actor{}); err != nil || n != 1 {
		t.Fatalf("RevokeAll: %d, %v; want 1", n, err)
	}
	if keys := srv.Keys(t, f.prefix+"sess*"); len(keys) != 0 {
		t.Fatalf("keys left after revoking everything: %v", keys)
	}

	if _, err := f.s.ChangeAccount(ctx, "no-such-user", "", keys.AccountUpdate{Disabled: ptr(true)}, ""); !errors.Is(err, errcode.ErrUserNotFound) {
		t.Fatalf("RevokeAll of a missing user: %v", err)
	}
	if f.exists(f.userKey("no-such-user")) {
		t.Fatal("RevokeAll of a missing user created a partial record")
	}
}

func TestCreateChecksTheAccount(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{})
	ctx := context.Background()
	f.create(f.uid)
	if _, err := f.s.RevokeAll(ctx, f.uid, "", audit.Actor{}); err != nil { // bumps cv to 1
		t.Fatal(err)
	}
	if _, err := f.s.Create(ctx, f.uid, "0", sessions.Meta{}); !errors.Is(err, sessions.ErrStale) {
		t.Fatalf("create with the old credential version: %v, want ErrStale", err)
	}
	f.c.Do(ctx, f.c.B().Hset().Key(f.userKey(f.uid)).FieldValue().FieldValue(keys.UserDisabled, "1").Build())
	if _, err := f.s.Create(ctx, f.uid, "1", sessions.Meta{}); !errors.Is(err, errcode.ErrAccountDisabled) {
		t.Fatalf("create on a disabled account: %v", err)
	}
	if _, err := f.s.Create(ctx, "ghost", "0", sessions.Meta{}); !errors.Is(err, errcode.ErrUserNotFound) {
		t.Fatalf("create for a missing account: %v", err)
	}
	if keys := srv.Keys(t, f.prefix+"sess*"); len(keys) != 0 {
		t.Fatalf("refused creates wrote %v", keys)
	}
}

// Beyond MaxPerUser the least recently used session goes, not the oldest.
func TestMaxPerUserEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{MaxPerUser: 3})
	ctx := context.Background()
	a := f.create(f.uid)
	f.clock.Add(time.Second)
	b := f.create(f.uid)
	f.clock.Add(time.Second)
	c := f.create(f.uid)
	f.clock.Add(2 * time.Minute)
	if _, err := f.s.Use(ctx, f.uid, a.ID, "ip"); err != nil { // a: oldest, but just used
		t.Fatal(err)
	}
	f.clock.Add(time.Second)
	d := f.create(f.uid)
	list, _ := f.s.List(ctx, f.uid)
	got := map[string]bool{}
	for _, s := range list {
		got[s.ID] = true
	}
	if len(list) != 3 || got[b.ID] || !got[a.ID] || !got[c.ID] || !got[d.ID] {
		t.Fatalf("after a 4th login with max 3: %v; want a, c, d (b least recently used)", got)
	}
	if f.exists(f.sessKey(f.uid, b.ID)) {
		t.Fatal("the evicted session still has a key")
	}
}

func TestCreatePrunesExpiredIndexEntries(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{})
	ctx := context.Background()
	f.c.Do(ctx, f.c.B().Zadd().Key(f.indexKey(f.uid)).ScoreMember().ScoreMember(1, "long-gone").Build())
	f.create(f.uid)
	if err := f.c.Do(ctx, f.c.B().Zscore().Key(f.indexKey(f.uid)).Member("long-gone").Build()).Error(); !rueidis.IsRedisNil(err) {
		t.Fatalf("an expired index entry survived a login: %v", err)
	}
}

func TestListMostRecentlyUsedFirst(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{})
	ctx := context.Background()
	a := f.create(f.uid)
	f.clock.Add(time.Second)
	b := f.create(f.uid)
	f.clock.Add(2 * time.Minute)
	f.s.Use(ctx, f.uid, a.ID, "ip")
	f.clock.Add(time.Second)
	c := f.create(f.uid)
	f.s.Revoke(ctx, f.uid, c.ID, audit.Actor{})
	list, err := f.s.List(ctx, f.uid)
	if err != nil || len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Fatalf("list: %+v, %v; want a (used last) then b, without the revoked c", list, err)
	}
}

// Concurrent logins past the maximum never leave more than the maximum.
func TestConcurrentLoginsRespectTheMaximum(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{MaxPerUser: 5})
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.s.Create(context.Background(), f.uid, "0", sessions.Meta{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if keys := srv.Keys(t, f.prefix+"sess:*"); len(keys) != 5 {
		t.Fatalf("%d session keys after 40 concurrent logins with max 5", len(keys))
	}
}

// A touch racing a revoke never brings the session back.
func TestRevokeRacingTouchNeverResurrects(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{IdleTimeout: time.Hour})
	ctx := context.Background()
	for range 30 {
		s := f.create(f.uid)
		f.clock.Add(2 * time.Minute) // every check is due a touch
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); f.s.Use(ctx, f.uid, s.ID, "ip") }()
		go func() { defer wg.Done(); f.s.Revoke(ctx, f.uid, s.ID, audit.Actor{}) }()
		wg.Wait()
		f.flush()
		if f.exists(f.sessKey(f.uid, s.ID)) || f.use(f.uid, s.ID) != "" {
			t.Fatal("a touch recreated a revoked session")
		}
		if _, err := f.s.Use(ctx, f.uid, s.ID, "ip"); !errors.Is(err, sessions.ErrNotFound) {
			t.Fatalf("revoked session readable: %v", err)
		}
	}
}

// Logins whose password check saw the credential version before a
// RevokeAll never leave a session after it.
func TestRevokeAllRacingLogins(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{MaxPerUser: 0})
	ctx := context.Background()
	for round := range 10 {
		cv := f.cv(f.uid) // what every racing login's password check saw
		var created atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := f.s.Create(ctx, f.uid, cv, sessions.Meta{}); err == nil {
					created.Add(1)
				} else if !errors.Is(err, sessions.ErrStale) {
					t.Error(err)
				}
			}()
		}
		wg.Add(1)
		go func() { defer wg.Done(); f.s.RevokeAll(ctx, f.uid, "", audit.Actor{}) }()
		wg.Wait()
		if list, _ := f.s.List(ctx, f.uid); len(list) != 0 {
			t.Fatalf("round %d: %d sessions created with the pre-revocation version survive", round, len(list))
		}
	}
}

// A session carries its account's role from login on, and a role change
// reaches every live session in the same step, without reviving any.
func TestUpdateAccountKeepsSessionsRoleCurrent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{})
	ctx := context.Background()
	role := func(sid string) string {
		v, _ := f.c.Do(ctx, f.c.B().Hget().Key(f.sessKey(f.uid, sid)).Field(keys.SessRole).Build()).ToString()
		return v
	}
	a, b, gone := f.create(f.uid), f.create(f.uid), f.create(f.uid)
	if got, err := f.s.Use(ctx, f.uid, a.ID, "ip"); err != nil || got.Role != "" || role(a.ID) != "" {
		t.Fatalf("Check after login: %q, %v; want \"\", the default role, which sessions do not store", got.Role, err)
	}
	f.c.Do(ctx, f.c.B().Del().Key(f.sessKey(f.uid, gone.ID)).Build()) // expired, still indexed

	if err := f.s.UpdateAccount(ctx, f.uid, keys.AccountUpdate{Role: ptr("admin"), Disabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if role(a.ID) != "admin" || role(b.ID) != "admin" {
		t.Fatalf("sessions' roles after the change: %q, %q; want admin", role(a.ID), role(b.ID))
	}
	if f.exists(f.sessKey(f.uid, gone.ID)) {
		t.Fatal("a role change recreated an expired session")
	}
	if r, _ := f.c.Do(ctx, f.c.B().Hget().Key(f.userKey(f.uid)).Field(keys.UserRole).Build()).ToString(); r != "admin" {
		t.Fatalf("account role %q", r)
	}
	if role(f.create(f.uid).ID) != "admin" {
		t.Fatal("a login after the change did not take the new role")
	}

	// Other changes leave the sessions alone.
	if err := f.s.UpdateAccount(ctx, f.uid, keys.AccountUpdate{Disabled: ptr(false)}); err != nil || role(a.ID) != "admin" {
		t.Fatalf("enabling: %v, role %q", err, role(a.ID))
	}
	// Back to the default role: the sessions drop the field.
	if err := f.s.UpdateAccount(ctx, f.uid, keys.AccountUpdate{Role: ptr("user")}); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.c.Do(ctx, f.c.B().Hexists().Key(f.sessKey(f.uid, a.ID)).Field(keys.SessRole).Build()).AsInt64(); n != 0 {
		t.Fatal("a session kept rl after the account went back to the default role")
	}
	if got, err := f.s.Use(ctx, f.uid, b.ID, "ip"); err != nil || got.Role != "" {
		t.Fatalf("Use after the demotion: %q, %v", got.Role, err)
	}
	if err := f.s.UpdateAccount(ctx, "ghost", keys.AccountUpdate{Role: ptr("admin")}); !errors.Is(err, errcode.ErrUserNotFound) {
		t.Fatalf("a missing account: %v, want ErrUserNotFound", err)
	}
	if f.exists(f.userKey("ghost")) {
		t.Fatal("a change to a missing account created it")
	}
}

// Ending more sessions than one DEL takes (the scripts delete in chunks of
// 500, as Lua's stack bounds unpack): every one ends, the kept one stays.
func TestRevokeAllAcrossChunks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{})
	ctx := context.Background()
	var keep string
	for i := range 1001 {
		s := f.create(f.uid)
		if i == 500 {
			keep = s.ID
		}
	}
	n, err := f.s.RevokeAll(ctx, f.uid, keep, audit.Actor{})
	if err != nil || n != 1000 {
		t.Fatalf("RevokeAll of 1001 keeping one: %d, %v; want 1000", n, err)
	}
	if list, _ := f.s.List(ctx, f.uid); len(list) != 1 || list[0].ID != keep {
		t.Fatalf("left %d sessions; want only the kept one", len(list))
	}
	if left := srv.Keys(t, keys.New(f.prefix).SessionPrefix(f.uid)+"*"); len(left) != 1 {
		t.Fatalf("%d session keys left; want 1", len(left))
	}
}
