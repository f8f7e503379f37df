package app_test

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redistest"
)

// ownRedis starts a redis-server for one test, which may stop it without
// disturbing the package's shared one.
func ownRedis(t *testing.T, why string) (*redistest.Server, rueidis.Client) {
	t.Helper()
	srv.RequireReal(t, why)
	s, err := redistest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, s.Client(t)
}

// eventually polls f every 20 ms until it is true or the limit passes.
func eventually(t *testing.T, limit time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recreateAndLogin creates an account on a Redis that was restarted empty and
// signs it in. A write on a connection that died with the old server is not
// retried (it may have run), so the first writes after a restart may answer
// 503 — with Retry-After, as a client should expect — until every pooled
// connection has been replaced. Anything but 503 or success fails the test.
func recreateAndLogin(t *testing.T, e *env, name, password string) (token string) {
	t.Helper()
	eventually(t, 10*time.Second, "an account created after the restart", func() bool {
		_, err := e.Users.Create(context.Background(), name, password, "", audit.Actor{})
		return err == nil
	})
	eventually(t, 10*time.Second, "a login after the restart", func() bool {
		r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": name, "password": password})
		switch r.Status {
		case 201:
			token = r.JSON(t)["token"].(string)
			return true
		case 503:
			return false
		}
		t.Fatalf("login after the restart: %d %s", r.Status, r.Body)
		return false
	})
	return token
}

func assertUnavailable(t *testing.T, r resp, what string) {
	t.Helper()
	if r.Status != 503 || r.Code(t) != "unavailable" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("%s with Redis down: status %d, Retry-After %q, body %s; want 503 unavailable with Retry-After",
			what, r.Status, r.Header.Get("Retry-After"), r.Body)
	}
}

// Redis killed: every endpoint that needs it answers 503 (never 200, never
// 401, so clients keep their tokens), /healthz stays 200, and the service
// recovers by itself once Redis is back.
func TestRedisKilledFailsClosedAndRecovers(t *testing.T) {
	t.Parallel()
	rs, client := ownRedis(t, "kills and restarts redis-server")
	e := newEnv(t, envOpts{Client: client, RedisTimeout: 300 * time.Millisecond})
	_, admin := e.admin()
	e.createUser("alice", "password123", "")
	tok, sid := e.login("alice", "password123")
	// Warm the client-side cache: a dead connection must drop it, not serve it.
	for range 3 {
		if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
			t.Fatalf("before the kill: %d", r.Status)
		}
	}

	rs.Stop()
	// rueidis drops the cache when its reader sees the connection close; a
	// request in the instant before that is answered from what Redis held a
	// moment ago. From then on, only 503s.
	eventually(t, time.Second, "the dead connection detected", func() bool {
		return e.do("GET", "/v1/me", tok, nil).Status == 503
	})
	for _, c := range []struct{ method, path, token string }{
		{"GET", "/v1/me", tok},
		{"GET", "/v1/sessions", tok},
		{"DELETE", "/v1/sessions/" + sid, tok},
		{"POST", "/v1/auth/logout-all", tok},
		{"GET", "/v1/admin/users?limit=5", admin},
		{"GET", "/readyz", ""},
	} {
		start := time.Now()
		r := e.do(c.method, c.path, c.token, nil)
		assertUnavailable(t, r, c.method+" "+c.path)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s %s took %s with Redis down; want the deadline to cut it short", c.method, c.path, d)
		}
	}
	r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "password123"})
	assertUnavailable(t, r, "login")
	if r := e.do("GET", "/healthz", "", nil); r.Status != 200 {
		t.Fatalf("healthz with Redis down: %d", r.Status)
	}

	// Restarted without persistence: the service reconnects by itself, and a
	// token whose session is gone is refused, never accepted.
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "readyz back to 200", func() bool { return e.do("GET", "/readyz", "", nil).Status == 200 })
	if r := e.do("GET", "/v1/me", tok, nil); r.Status != 401 || r.Code(t) != "unauthorized" {
		t.Fatalf("token after Redis lost its data: %d %s; want 401", r.Status, r.Body)
	}
	tok = recreateAndLogin(t, e, "alice", "password123")
	if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
		t.Fatalf("me after recovery: %d %s", r.Status, r.Body)
	}
}

// Redis frozen (a paused process: the connection stays open, nothing
// answers): requests end in 503 within the deadline instead of hanging, and
// the same token works again once Redis answers.
func TestRedisFrozenTimesOutThenRecovers(t *testing.T) {
	t.Parallel()
	rs, client := ownRedis(t, "freezes redis-server")
	e := newEnv(t, envOpts{Client: client, RedisTimeout: 300 * time.Millisecond})
	e.createUser("bob", "password123", "")
	tok, _ := e.login("bob", "password123")
	if err := rs.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Resume() })

	// The first requests may still be answered from the client-side cache
	// until the connection is found dead (a cached entry is one Redis held a
	// moment ago, and nothing can revoke while Redis is frozen); then 503.
	var last resp
	eventually(t, 5*time.Second, "503 while Redis is frozen", func() bool {
		last = e.do("GET", "/v1/me", tok, nil)
		if last.Status == 401 {
			t.Fatalf("frozen Redis gave 401: a client would drop a valid token")
		}
		return last.Status == 503
	})
	assertUnavailable(t, last, "GET /v1/me")
	start := time.Now()
	assertUnavailable(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "bob", "password": "password123"}), "login")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("login took %s with Redis frozen; want about the 300ms deadline", d)
	}

	if err := rs.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the same token accepted again", func() bool {
		return e.do("GET", "/v1/me", tok, nil).Status == 200
	})
}

// Redis out of memory (noeviction at maxmemory): a login answers 503 and
// leaves no half-written session; revocations still work, since they free
// memory; logins work again once there is room.
func TestRedisOutOfMemory(t *testing.T) {
	t.Parallel()
	rs, client := ownRedis(t, "sets maxmemory")
	e := newEnv(t, envOpts{Client: client})
	e.createUser("erin", "password123", "")
	tok, _ := e.login("erin", "password123")
	rs.Do(t, "CONFIG", "SET", "maxmemory", "1")
	t.Cleanup(func() { rs.Do(t, "CONFIG", "SET", "maxmemory", "0") })

	assertUnavailable(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "erin", "password": "password123"}), "login at maxmemory")
	if r := e.do("GET", "/v1/sessions", tok, nil); r.Status != 200 || len(r.JSON(t)["sessions"].([]any)) != 1 {
		t.Fatalf("sessions after the refused login: %d %s; want just the first\n%s", r.Status, r.Body, e.Logs.String())
	}
	if r := e.do("POST", "/v1/auth/logout-all", tok, nil); r.Status != 200 {
		t.Fatalf("logout-all at maxmemory: %d %s; revoking must not need memory", r.Status, r.Body)
	}
	rs.Do(t, "CONFIG", "SET", "maxmemory", "0")
	if keys, _ := rs.Do(t, "KEYS", e.Prefix+"sess*").AsStrSlice(); len(keys) != 0 {
		t.Fatalf("session keys left: %v", keys)
	}
	e.login("erin", "password123")
}

// Redis going away and coming back, again and again, under requests leaves no
// goroutines behind. Not parallel: it counts the process's goroutines.
func TestRedisOutagesLeakNoGoroutines(t *testing.T) {
	rs, client := ownRedis(t, "kills and restarts redis-server")
	e := newEnv(t, envOpts{Client: client, RedisTimeout: 200 * time.Millisecond})
	e.createUser("gina", "password123", "")
	tok, _ := e.login("gina", "password123")
	e.do("GET", "/v1/me", tok, nil)
	before := runtime.NumGoroutine()
	for round := range 2 {
		rs.Stop()
		for range 10 {
			if r := e.do("GET", "/v1/me", tok, nil); r.Status == 401 {
				t.Fatalf("round %d: 401 while Redis is down", round)
			}
		}
		if err := rs.Restart(); err != nil {
			t.Fatal(err)
		}
		tok = recreateAndLogin(t, e, "gina", "password123")
	}
	var after int
	for range 100 { // let finished connections' goroutines exit
		if after = runtime.NumGoroutine(); after <= before+5 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("goroutines: %d before two outages, %d after", before, after)
}

// agoClock is a stores' clock that runs behind the real one by a settable
// amount: sessions signed in while it is behind are that much older when it
// catches up. (Tokens are never issued in the future: they would not verify.)
type agoClock struct{ ago atomic.Int64 }

func (c *agoClock) now() time.Time        { return time.Now().Add(-time.Duration(c.ago.Load())) }
func (c *agoClock) set(ago time.Duration) { c.ago.Store(int64(ago)) }

// Redis out of memory, with a session whose use is due to be recorded (older
// than the touch interval): the read shows it live, so its requests are
// served; the refused write is counted, logged once, and never answered 503.
// The first touch refused is a plain write (its use was recorded before, by
// the script), the later ones the script's.
func TestRedisOutOfMemoryServesSessionsDueATouch(t *testing.T) {
	t.Parallel()
	rs, client := ownRedis(t, "sets maxmemory")
	clock := &agoClock{}
	clock.set(4 * time.Minute) // two touch intervals (a minute by default) and more
	e := newEnv(t, envOpts{Client: client, Now: clock.now, Env: map[string]string{"METRICS_ADDR": "127.0.0.1:0"}})
	u := e.createUser("erin", "password123", "")
	tok, sid := e.login("erin", "password123")
	other, _ := e.login("erin", "password123")
	seen := func() int64 { // the last use recorded, in the hash or the use hash
		n, _ := rs.Do(t, "HGET", e.Keys.Session(u.ID, sid), keys.SessLastSeen).AsInt64()
		v, _ := rs.Do(t, "HGET", e.Keys.SessionUses(u.ID), sid).ToString()
		ms, _, _ := strings.Cut(v, " ")
		m, _ := strconv.ParseInt(ms, 10, 64)
		return max(n, m)
	}
	clock.set(2 * time.Minute)
	if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
		t.Fatalf("GET /v1/me: %d %s", r.Status, r.Body)
	}
	if err := e.Sessions.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if plain, scripted := e.Sessions.Touches(); plain != 0 || scripted != 1 {
		t.Fatalf("the first touch: %d plain, %d by script; want the script's", plain, scripted)
	}
	clock.set(0) // due again, and this replica knows its use was recorded
	before := seen()
	rs.Do(t, "CONFIG", "SET", "maxmemory", "1")
	t.Cleanup(func() { rs.Do(t, "CONFIG", "SET", "maxmemory", "0") })

	for i := range 20 {
		if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
			t.Fatalf("request %d at maxmemory with a touch due: %d %s; the session was read live\n%s", i, r.Status, r.Body, e.Logs.String())
		}
	}
	if r := e.do("GET", "/v1/sessions", other, nil); r.Status != 200 {
		t.Fatalf("another session at maxmemory: %d %s", r.Status, r.Body)
	}
	if seen() != before {
		t.Fatal("a touch was written at maxmemory")
	}
	m := scrapeMetrics(t, e)
	if v := sample(m, "sessiond_session_touches_refused_total"); v == "" || v == "0" {
		t.Errorf("refused touches counted %q, want at least 1", v)
	}
	if v := sample(m, `sessiond_session_touches_total{write="plain"}`); v != "0" {
		t.Errorf("plain touches written at maxmemory: %q, want 0", v)
	}
	if v := sample(m, `sessiond_session_touches_total{write="script"}`); v != "1" {
		t.Errorf("touches written by script: %q, want the one before maxmemory", v)
	}
	if n := strings.Count(e.Logs.String(), "Redis is out of memory"); n != 1 {
		t.Errorf("%d log lines about refused touches for 21 requests, want 1:\n%s", n, e.Logs.String())
	}
	// Revoking frees memory: it still works.
	if r := e.do("POST", "/v1/auth/logout", other, nil); r.Status != 204 {
		t.Fatalf("logout at maxmemory: %d %s", r.Status, r.Body)
	}
	wantProblem(t, e.do("GET", "/v1/me", other, nil), 401, "unauthorized")

	// With room again, use is recorded again (after the pause of touches).
	rs.Do(t, "CONFIG", "SET", "maxmemory", "0")
	eventually(t, 5*time.Second, "use recorded once Redis has room", func() bool {
		if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
			t.Fatalf("after maxmemory: %d %s", r.Status, r.Body)
		}
		return seen() > before
	})
}

// Recording use never decides a request; the read does. With Redis frozen,
// a request whose session is in the client-side cache and due a touch is
// answered from the cache only while the connection has proven itself live
// (200 ms), then fails closed (503), never hangs, and the same token is
// accepted again once Redis answers. (A touch that fails: sessions'
// TestTouchThatFailsIsCountedAndRetried.)
func TestRedisFrozenWithTouchDueFailsClosed(t *testing.T) {
	t.Parallel()
	rs, _ := ownRedis(t, "freezes redis-server")
	clock := &agoClock{}
	clock.set(2 * time.Minute)
	// Its own connection, as serve makes it: watched (redisx.Liveness).
	e := newEnv(t, envOpts{RedisURL: "redis://" + rs.Addr + "/0", Now: clock.now, RedisTimeout: 300 * time.Millisecond})
	e.createUser("fred", "password123", "")
	tok, _ := e.login("fred", "password123")
	for range 2 { // no touch due yet: the second read comes from the cache
		if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
			t.Fatalf("before the freeze: %d", r.Status)
		}
	}
	clock.set(0)
	if err := rs.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Resume() })
	frozen := time.Now()
	var last resp
	eventually(t, 2*time.Second, "503 with Redis frozen", func() bool {
		last = e.do("GET", "/v1/me", tok, nil)
		if last.Status != 200 && last.Status != 503 {
			t.Fatalf("GET /v1/me due a touch with Redis frozen: %d %s", last.Status, last.Body)
		}
		if last.Status == 200 && time.Since(frozen) > time.Second {
			t.Fatalf("GET /v1/me answered 200 from the cache %s after Redis froze", time.Since(frozen))
		}
		return last.Status == 503
	})
	assertUnavailable(t, last, "GET /v1/me due a touch")
	if err := rs.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the same token accepted again", func() bool {
		return e.do("GET", "/v1/me", tok, nil).Status == 200
	})
}
