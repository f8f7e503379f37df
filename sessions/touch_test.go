package sessions_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/metrics"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/sessions"
)

// cacheReads is m's count of session reads by result (hit, miss).
func cacheReads(t *testing.T, m *metrics.Metrics) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, result := range []string{"hit", "miss"} {
		out[result] = metricSample(t, m, `sessiond_session_cache_reads_total{result="`+result+`"}`)
	}
	return out
}

// Recording use does not cost the next request a read from Redis: the touch
// writes the user's use hash, not the session hash the requests read through the
// client-side cache, so Redis has nothing to invalidate. (Before, every touch
// rewrote the hash, and the request after it read it again.)
func TestTouchKeepsTheCachedRead(t *testing.T) {
	t.Parallel()
	m := metrics.New(nil)
	f := newFixture(t, sessions.Options{IdleTimeout: time.Hour, Metrics: m})
	ctx := context.Background()
	s := f.create(f.uid)
	use := func() {
		t.Helper()
		if _, err := f.s.Use(ctx, f.uid, s.ID, "10.0.0.9"); err != nil {
			t.Fatal(err)
		}
	}
	use() // the first read: from Redis
	for range 3 {
		f.clock.Add(2 * time.Minute) // each use due a touch
		use()
		f.flush()
		// The invalidation of a write arrives within a round trip: give it one.
		if err := f.c.Do(ctx, f.c.B().Ping().Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	use()
	if r := cacheReads(t, m); r["miss"] != "1" || r["hit"] != "4" {
		t.Fatalf("session reads over 5 uses with 3 touches: %v, want 1 miss and 4 hits", r)
	}
	if _, ip, _ := strings.Cut(f.use(f.uid, s.ID), " "); ip != "10.0.0.9" {
		t.Fatalf("use recorded from %q: the touches did not record use", ip)
	}
	sessions, err := f.s.List(ctx, f.uid)
	if err != nil || len(sessions) != 1 {
		t.Fatalf("list: %v, %v", sessions, err)
	}
	if want := f.clock.Now().Truncate(time.Millisecond); sessions[0].IP != "10.0.0.9" || !sessions[0].LastSeenAt.Equal(want) {
		t.Fatalf("listed last use %s from %q, want the last touch at %s", sessions[0].LastSeenAt, sessions[0].IP, want)
	}
}

// twoReplicas is a fixture with a 1 h idle timeout and a second store over
// the same keys and clock, with a client (and so a cache) of its own.
func twoReplicas(t *testing.T) (*fixture, *sessions.Store) {
	a := newFixture(t, sessions.Options{IdleTimeout: time.Hour})
	return a, newStore(t, srv.Client(t), a.prefix, sessions.Options{IdleTimeout: time.Hour, Now: a.clock.Now})
}

// A session used through one replica stays live on another whose cached
// read of its hash is older than the idle timeout: the hash holds use only
// as of its last rewrite, and the other replica then asks the use hash.
func TestUseOnOneReplicaKeepsTheSessionLiveOnAnother(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t)
	ctx := context.Background()
	s := a.create(a.uid)
	if _, err := b.Use(ctx, a.uid, s.ID, "b"); err != nil { // b caches the hash as of login
		t.Fatal(err)
	}
	// Used through a 14 minutes in: recorded in the use hash; the hash, which
	// lives 75 minutes (the idle timeout and its slack), is not rewritten.
	a.clock.Add(14 * time.Minute)
	if _, err := a.s.Use(ctx, a.uid, s.ID, "a"); err != nil {
		t.Fatal(err)
	}
	a.flush()
	a.clock.Add(47 * time.Minute) // 61 minutes after login, 47 after its last use
	if _, err := b.Use(ctx, a.uid, s.ID, "b"); err != nil {
		t.Fatalf("61 minutes after login, 47 after its use through another replica: %v", err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Unused for the idle timeout since b's use at 61 minutes: gone on both.
	a.clock.Add(time.Hour)
	for name, st := range map[string]*sessions.Store{"a": a.s, "b": b} {
		if _, err := st.Use(ctx, a.uid, s.ID, "x"); err == nil {
			t.Errorf("replica %s: live an hour after its last use", name)
		}
	}
}

// Two replicas that both find a session due write its use once per touch
// interval between them: the second finds the first's and writes nothing.
func TestTouchIsWrittenOncePerIntervalAcrossReplicas(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t)
	ctx := context.Background()
	s := a.create(a.uid)
	a.clock.Add(2 * time.Minute)
	if _, err := a.s.Use(ctx, a.uid, s.ID, "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	a.flush()
	a.clock.Add(30 * time.Second)
	if _, err := b.Use(ctx, a.uid, s.ID, "10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want := strconv.FormatInt(a.clock.Now().Add(-30*time.Second).UnixMilli(), 10) + " 10.0.0.1"
	if got := a.use(a.uid, s.ID); got != want {
		t.Fatalf("use recorded after touches 30 s apart through two replicas: %q, want the first's (%q)", got, want)
	}
}

// A touch Redis does not answer in time fails alone: the request was
// answered from its read, the failure is counted, and the session's next
// request records its use once Redis answers again.
func TestTouchThatFailsIsCountedAndRetried(t *testing.T) {
	t.Parallel()
	srv.RequireReal(t, "freezes redis-server")
	rs, err := redistest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	m := metrics.New(nil)
	clk := &clock{t: time.Now()}
	c := rs.Client(t)
	st := newStore(t, c, "", sessions.Options{IdleTimeout: time.Hour, Timeout: 200 * time.Millisecond, Metrics: m, Now: clk.Now})
	ctx := context.Background()
	c.Do(ctx, c.B().Hset().Key(keys.New("").User("u1")).FieldValue().FieldValue(keys.UserID, "u1").FieldValue(keys.UserVersion, "0").Build())
	s, err := st.Create(ctx, "u1", "0", sessions.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Use(ctx, "u1", s.ID, "10.0.0.1"); err != nil { // cached from here on
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute)
	if err := rs.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Resume() })
	if _, err := st.Use(ctx, "u1", s.ID, "10.0.0.1"); err != nil {
		t.Fatalf("a request due a touch, its read cached, Redis frozen: %v", err)
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if v := metricSample(t, m, "sessiond_session_touches_failed_total"); v != "1" {
		t.Fatalf("failed touches counted %q, want 1", v)
	}
	if err := rs.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Use(ctx, "u1", s.ID, "10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := c.Do(ctx, c.B().Hget().Key(keys.New("").SessionUses("u1")).Field(s.ID).Build()).ToString()
	if _, ip, _ := strings.Cut(v, " "); err != nil || ip != "10.0.0.2" {
		t.Fatalf("use after Redis came back: %q (%v), want the retried touch's ip", v, err)
	}
}

// metricSample is the value of one sample of m, "" when it has none.
func metricSample(t *testing.T, m *metrics.Metrics, name string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// A session's use record goes with it, however it ends: revoked, logged out
// everywhere but the caller, evicted over the cap, expired (pruned at the
// next sign-in), or with its account; the caller's own record stays.
func TestUseRecordsGoWithTheirSessions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sessions.Options{IdleTimeout: time.Hour, MaxPerUser: 4})
	ctx := context.Background()
	touchAll := func(ss ...sessions.Session) {
		t.Helper()
		f.clock.Add(2 * time.Minute)
		for _, s := range ss {
			if _, err := f.s.Use(ctx, f.uid, s.ID, "10.0.0.1"); err != nil {
				t.Fatal(err)
			}
		}
		f.flush()
		for _, s := range ss {
			if f.use(f.uid, s.ID) == "" {
				t.Fatalf("session %s: no use recorded", s.ID)
			}
		}
	}
	a, b, c, d := f.create(f.uid), f.create(f.uid), f.create(f.uid), f.create(f.uid)
	touchAll(a, b, c, d)
	if err := f.s.Revoke(ctx, f.uid, a.ID, audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	if f.use(f.uid, a.ID) != "" {
		t.Fatal("a revoked session's use record stayed")
	}
	if n, err := f.s.RevokeAll(ctx, f.uid, b.ID, audit.Actor{}); err != nil || n != 2 {
		t.Fatalf("logout everywhere else: %d, %v", n, err)
	}
	if f.use(f.uid, c.ID) != "" || f.use(f.uid, d.ID) != "" || f.use(f.uid, b.ID) == "" {
		t.Fatalf("after logout everywhere but b: c %q, d %q, b %q; want only b's", f.use(f.uid, c.ID), f.use(f.uid, d.ID), f.use(f.uid, b.ID))
	}
	if ttl := f.pttl(f.usesKey(f.uid)); ttl <= 0 {
		t.Fatalf("the use hash kept for b lives %s, want an expiry", ttl)
	}
	// Over the cap of 4: the least recently used (b, touched longest ago) goes.
	e, g, h := f.create(f.uid), f.create(f.uid), f.create(f.uid)
	touchAll(e, g, h)
	f.create(f.uid)
	if f.use(f.uid, b.ID) != "" || f.exists(f.sessKey(f.uid, b.ID)) {
		t.Fatal("the evicted session or its use record stayed")
	}
	// An index entry whose hash has expired is pruned at the next sign-in,
	// and its use record with it.
	if err := f.c.Do(ctx, f.c.B().Zadd().Key(f.indexKey(f.uid)).ScoreMember().ScoreMember(1, "gone").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Do(ctx, f.c.B().Hset().Key(f.usesKey(f.uid)).FieldValue().FieldValue("gone", "1 10.0.0.1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	f.create(f.uid)
	if f.use(f.uid, "gone") != "" {
		t.Fatal("a pruned session's use record stayed")
	}
	if _, err := f.s.DeleteAccount(ctx, f.uid, audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	if f.exists(f.usesKey(f.uid)) {
		t.Fatal("the deleted account's use hash stayed")
	}
}

// pexpiretime is when key expires, unix ms (Redis's PEXPIRETIME: -1 for no
// expiry, -2 for no key).
func (f *fixture) pexpiretime(key string) int64 {
	f.t.Helper()
	ms, err := f.c.Do(context.Background(), f.c.B().Pexpiretime().Key(key).Build()).AsInt64()
	if err != nil {
		f.t.Fatal(err)
	}
	return ms
}

// A touch writes the use record alone (a plain write, no script) while the
// session hash outlives the session's new end; the first one a replica
// writes for a session, and the one that would leave the hash expiring
// before the session, run touch.lua, which then makes the hash live an idle
// timeout and its slack from that use. Each makes the use hash live as long
// as the session, including one the plain write has to make again, and the
// session stays live for the idle timeout from its last use.
func TestTouchIsAPlainWriteUntilTheHashMustLiveLonger(t *testing.T) {
	t.Parallel()
	const idle, life = time.Hour, time.Hour + 15*time.Minute // touch interval 1m, slack 15m
	f := newFixture(t, sessions.Options{IdleTimeout: idle})
	ctx := context.Background()
	s := f.create(f.uid)
	login := f.clock.Now().Truncate(time.Millisecond)
	hashField := func(field string) string {
		t.Helper()
		v, err := f.c.Do(ctx, f.c.B().Hget().Key(f.sessKey(f.uid, s.ID)).Field(field).Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ms := func(at time.Time) string { return strconv.FormatInt(at.UnixMilli(), 10) }
	touch := func(after time.Duration, ip string, plain, scripted int64) time.Time {
		t.Helper()
		f.clock.Add(after)
		now := f.clock.Now().Truncate(time.Millisecond)
		if _, err := f.s.Use(ctx, f.uid, s.ID, ip); err != nil {
			t.Fatal(err)
		}
		f.flush()
		if got, want := f.use(f.uid, s.ID), ms(now)+" "+ip; got != want {
			t.Fatalf("use recorded %q, want %q", got, want)
		}
		if got, want := f.pexpiretime(f.usesKey(f.uid)), now.Add(idle).UnixMilli(); got != want {
			t.Fatalf("the use hash expires at %d, want the idle timeout from the use, %d", got, want)
		}
		if p, sc := f.s.Touches(); p != plain || sc != scripted {
			t.Fatalf("touches written: %d plain, %d by script; want %d and %d", p, sc, plain, scripted)
		}
		return now
	}
	hashLives := func(from time.Time) {
		t.Helper()
		want := from.Add(life).UnixMilli()
		if got := f.pexpiretime(f.sessKey(f.uid, s.ID)); got != want {
			t.Fatalf("the session hash expires at %d, want %d", got, want)
		}
		if got := hashField(keys.SessHashExpires); got != strconv.FormatInt(want, 10) {
			t.Fatalf("the session hash says it expires at %s, want %d", got, want)
		}
	}
	hashLives(login)
	touch(2*time.Minute, "10.0.0.1", 0, 1) // the first this replica writes: the script
	touch(2*time.Minute, "10.0.0.2", 1, 1) // known recorded, the hash outlives the new end
	if got := hashField(keys.SessLastSeen); got != ms(login) {
		t.Fatalf("the plain touch rewrote the session hash: last seen %s, want the login's %s", got, ms(login))
	}
	hashLives(login)
	// 16 minutes after login the new end (76 m) is past the hash's (75 m).
	slid := touch(12*time.Minute, "10.0.0.3", 1, 2)
	hashLives(slid)
	if got := hashField(keys.SessLastSeen); got != ms(slid) {
		t.Fatalf("the touch that slid the hash left its last seen at %s, want %s", got, ms(slid))
	}
	// A use hash that went (say, with every other session) is made again, with an expiry.
	if err := f.c.Do(ctx, f.c.B().Del().Key(f.usesKey(f.uid)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	touch(2*time.Minute, "10.0.0.4", 2, 2)
	// Live 59 minutes after its last use (read from the use hash: the hash
	// shows a use 61 minutes ago), not 61.
	f.clock.Add(59 * time.Minute)
	if _, err := f.s.Check(ctx, f.uid, s.ID); err != nil {
		t.Fatalf("59 minutes after its last use: %v", err)
	}
	f.clock.Add(2 * time.Minute)
	if _, err := f.s.Check(ctx, f.uid, s.ID); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("61 minutes after its last use: %v, want not found", err)
	}
}

// A plain touch that lands after its session was revoked on another replica
// (a race of milliseconds in service) does not bring it back: it writes the
// use record alone, never the session hash or index, and the stray record
// goes at the user's next sign-in. On the replica that revoked it, the
// touch writes nothing.
func TestALateTouchDoesNotResurrectARevokedSession(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t)
	ctx := context.Background()
	there, here := a.create(a.uid), a.create(a.uid)
	if err := b.Revoke(ctx, a.uid, there.ID, audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	if err := a.s.Revoke(ctx, a.uid, here.ID, audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	a.s.WritePlainTouch(a.uid, there.ID, "10.0.0.1", a.clock.Now())
	a.s.WritePlainTouch(a.uid, here.ID, "10.0.0.1", a.clock.Now())
	if a.use(a.uid, there.ID) == "" {
		t.Fatal("the late touch wrote no use record: this test no longer tests what it says")
	}
	if got := a.use(a.uid, here.ID); got != "" {
		t.Fatalf("a touch of a session revoked on the same replica wrote %q", got)
	}
	for name, st := range map[string]*sessions.Store{"a": a.s, "b": b} {
		for _, s := range []sessions.Session{there, here} {
			if _, err := st.Use(ctx, a.uid, s.ID, "x"); !errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("replica %s: a revoked session after a late touch: %v, want not found", name, err)
			}
		}
	}
	if a.exists(a.sessKey(a.uid, there.ID)) {
		t.Fatal("the late touch made the session hash again")
	}
	if list, err := a.s.List(ctx, a.uid); err != nil || len(list) != 0 {
		t.Fatalf("listed after the late touch: %v, %v; want none", list, err)
	}
	a.create(a.uid)
	if got := a.use(a.uid, there.ID); got != "" {
		t.Fatalf("the stray use record %q stayed past the next sign-in", got)
	}
}
