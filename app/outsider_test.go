package app_test

// What an outsider can cause, with no credentials: failed and throttled
// sign-ins, of accounts and of names that are no account. It must cost
// Redis little and a bounded amount, never stop sign-ins, and never push
// out what only an account's own use or an admin can cause.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/audit"
)

// usedMemory is Redis's INFO memory used_memory: the bytes its allocator
// holds for data, buffers and scripts.
func usedMemory(t testing.TB, c rueidis.Client) int64 {
	t.Helper()
	n, err := readUsedMemory(c)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// readUsedMemory is usedMemory for a goroutine of a test's own.
func readUsedMemory(c rueidis.Client) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.Do(ctx, c.B().Info().Section("memory").Build()).ToString()
	if err != nil {
		return 0, fmt.Errorf("INFO memory: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no used_memory in INFO memory:\n%s", info)
}

// keyBytes is how many keys match a pattern and the bytes MEMORY USAGE
// gives for them together.
func keyBytes(t testing.TB, c rueidis.Client, pattern string) (int, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, total := 0, int64(0)
	for cursor := uint64(0); ; {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Fatalf("SCAN: %v", err)
		}
		for _, k := range e.Elements {
			b, _ := c.Do(ctx, c.B().MemoryUsage().Key(k).Samples(0).Build()).AsInt64()
			n, total = n+1, total+b
		}
		if cursor = e.Cursor; cursor == 0 {
			return n, total
		}
	}
}

// floodSize is how many failed sign-ins a flood sends: floodEnv, or a
// default that keeps the suite fast under -race on a small machine (where a
// bcrypt check at cost 4 takes 17 ms instead of 1.2).
func floodSize(t *testing.T, def int) int {
	t.Helper()
	v := os.Getenv(floodEnv)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a number of sign-ins", floodEnv, v)
	}
	return n
}

// floodEnv sets the flood tests' size (100000 for the full figure).
const floodEnv = "SESSIOND_FLOOD"

// randomName is a username that is no account.
func randomName() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "nobody-" + hex.EncodeToString(b)
}

// floodUA is the longest user agent a client may have stored (512 bytes).
var floodUA = "Flood/1.0 " + strings.Repeat("x", 502)

// An outsider's flood: failed sign-ins, half for 100 known usernames, half
// for random names that are no account, from 1,000 addresses, each with a
// 512-byte user agent, through the real app over a Redis of its own. Redis
// grows by at most 8 MB while it lasts and by at most 1 MB once the failure
// window has passed (INFO memory used_memory, against before the flood),
// and sign-ins keep working throughout: a right password signs in (201)
// during and after, and a session from before keeps answering 200.
//
// By default it sends 2,000, which the code before coalescing already failed
// (1.57 MB stayed); SESSIOND_FLOOD=100000 runs the full figure.
func TestOutsiderFloodIsBounded(t *testing.T) {
	t.Parallel()
	_, client := ownRedis(t, "measures INFO memory")
	const window = 3 * time.Second
	// A long Redis timeout: under -race on a busy machine, a round trip
	// queued behind 32 goroutines hashing can take seconds, and a 503 here
	// would say nothing about memory.
	e := newEnv(t, envOpts{Client: client, TrustedProxies: behindProxy, FailureWindow: window,
		MaxFailures: 10, MaxPerIP: 100, MaxPerAccount: 100, RedisTimeout: 20 * time.Second})
	n := floodSize(t, 2000)
	known := make([]string, 100)
	for i := range known {
		known[i] = fmt.Sprintf("known%03d", i)
		e.createUser(known[i], "password123", "")
	}
	e.createUser("bystander", "password123", "")
	before, _ := e.login("bystander", "password123", "X-Forwarded-For", "192.0.2.200")
	// Once, so the scripts are loaded before the baseline.
	e.loginFrom("192.0.2.201", randomName(), "wrong-password")
	base := usedMemory(t, client)

	var peak atomic.Int64
	stop := make(chan struct{})
	var watchers sync.WaitGroup
	var problems []string
	var mu sync.Mutex
	problem := func(s string) { mu.Lock(); problems = append(problems, s); mu.Unlock() }
	watchers.Go(func() {
		for {
			m, err := readUsedMemory(client)
			if err != nil {
				problem(err.Error())
				return
			}
			if m-base > peak.Load() {
				peak.Store(m - base)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	// Ten times during the flood, a right password signs in (and out, so
	// its sessions do not evict the one from before) and the session from
	// before answers.
	var duringLogins atomic.Int32
	signIn := func(i int64) {
		r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "bystander", "password": "password123"},
			"X-Forwarded-For", fmt.Sprintf("192.0.2.%d", 10+i%100))
		if r.Status != 201 {
			problem(fmt.Sprintf("a right password during the flood: %d %s", r.Status, r.Body))
			return
		}
		duringLogins.Add(1)
		e.do("POST", "/v1/auth/logout", r.JSON(t)["token"].(string), nil)
		if r := e.do("GET", "/v1/me", before, nil); r.Status != 200 {
			problem(fmt.Sprintf("a session from before the flood: %d %s", r.Status, r.Body))
		}
	}

	var next atomic.Int64
	var refused, other atomic.Int64
	var flood sync.WaitGroup
	start := time.Now()
	for range 32 {
		flood.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if i%int64(max(n/10, 1)) == int64(n/20) {
					signIn(i)
				}
				name := known[i/2%100]
				if i%2 == 1 {
					name = randomName()
				}
				r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": name, "password": "wrong-password"},
					"X-Forwarded-For", fmt.Sprintf("10.0.%d.%d", i%1000/250, i%250+1), "User-Agent", floodUA)
				if r.Status == 401 || r.Status == 429 {
					refused.Add(1)
				} else if other.Add(1) <= 5 {
					problem(fmt.Sprintf("failed sign-in %d answered %d %s", i, r.Status, r.Body))
				}
			}
		})
	}
	flood.Wait()
	took := time.Since(start)
	close(stop)
	watchers.Wait()
	during := peak.Load()
	ended := time.Now()

	for _, p := range problems {
		t.Error(p)
	}
	if refused.Load() != int64(n) || other.Load() != 0 {
		t.Errorf("%d failed sign-ins: %d refused (401 or 429), %d answered otherwise", n, refused.Load(), other.Load())
	}
	if duringLogins.Load() < 10 {
		t.Errorf("%d right passwords signed in during the flood; want 10", duringLogins.Load())
	}
	const mb = 1 << 20
	if during > 8*mb {
		t.Errorf("Redis grew by %.1f MB during the flood; want at most 8 MB", float64(during)/mb)
	}
	// Once the window has passed, only the flood's refusal records stay:
	// the limiter's hashes have expired (give Redis a moment to reclaim them).
	time.Sleep(time.Until(ended.Add(window)))
	var after int64
	for deadline := time.Now().Add(10 * time.Second); ; {
		after = usedMemory(t, client) - base
		if after <= mb || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if after > mb {
		t.Errorf("Redis still %.2f MB bigger %s after the flood; want at most 1 MB", float64(after)/mb, time.Since(ended).Round(time.Second))
	}
	if r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "bystander", "password": "password123"},
		"X-Forwarded-For", "192.0.2.250"); r.Status != 201 {
		t.Errorf("a right password after the flood: %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/v1/me", before, nil); r.Status != 200 {
		t.Errorf("a session from before the flood, after it: %d", r.Status)
	}
	t.Logf("%d failed sign-ins in %s (%.0f/s): Redis used_memory +%.2f MB at most during, +%.2f MB %s after (window %s)",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(during)/mb, float64(after)/mb,
		time.Since(ended).Round(100*time.Millisecond), window)
	for _, group := range []string{"refused:{*", "refused:anon", "refused", "fail:*", "events*"} {
		keys, b := keyBytes(t, client, e.Prefix+group)
		t.Logf("after: %s: %d keys, %d bytes (MEMORY USAGE)", group, keys, b)
	}
}

// An outsider fails (and is throttled) signing in as the victim many
// times, from many addresses, after the intruder signed in and the victim
// revoked every other session: the intruder's sign-in and the revocation
// stay in the victim's history, in the admin's view of it, and in the feed
// (unfiltered and by type), and the failures are a few records whose counts
// add up to every one of them.
func TestOutsidersCannotEraseHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{TrustedProxies: behindProxy, MaxFailures: 10, MaxPerIP: 100, MaxPerAccount: 100,
		RedisTimeout: 20 * time.Second}) // as in TestOutsiderFloodIsBounded
	_, adminTok := e.admin()
	victim := e.createUser("victim", "password123", "")
	mine, _ := e.login("victim", "password123", "X-Forwarded-For", "198.51.100.1")
	e.login("victim", "password123", "X-Forwarded-For", "203.0.113.66", "User-Agent", "Intruder/1")
	if r := e.do("DELETE", "/v1/sessions", mine, nil); r.Status != 200 {
		t.Fatalf("revoking the others: %d %s", r.Status, r.Body)
	}
	var failed, throttled atomic.Int64
	if r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "victim", "password": "wrong-password"},
		"X-Forwarded-For", "192.0.2.99", "User-Agent", "First/1"); r.Status != 401 {
		t.Fatalf("the first failure: %d %s", r.Status, r.Body)
	}
	failed.Add(1)
	n := floodSize(t, 1200)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": "victim", "password": "wrong-password"},
					"X-Forwarded-For", fmt.Sprintf("10.1.%d.%d", i%2000/250, i%250+1), "User-Agent", floodUA)
				switch r.Status {
				case 401:
					failed.Add(1)
				case 429:
					throttled.Add(1)
				default:
					t.Errorf("failure %d: %d %s", i, r.Status, r.Body)
					return
				}
			}
		})
	}
	wg.Wait()

	// every reads a view to its end.
	every := func(path, tok string) []map[string]any {
		var all []map[string]any
		cursor := ""
		for pages := 0; ; pages++ {
			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			page, next := e.events(path+sep+"limit=100&cursor="+url.QueryEscape(cursor), tok)
			all = append(all, page...)
			if next == "" {
				return all
			}
			if pages > 50 {
				t.Fatalf("%s: paging does not end", path)
			}
			cursor = next
		}
	}
	intruder := func(evs []map[string]any) bool {
		for _, ev := range evs {
			if ev["type"] == "login.succeeded" && ev["user_agent"] == "Intruder/1" && ev["user_id"] == victim.ID {
				return true
			}
		}
		return false
	}
	revoked := func(evs []map[string]any) bool {
		for _, ev := range evs {
			if ev["type"] == "sessions.revoked_all" && ev["user_id"] == victim.ID && ev["detail"] == "1 sessions ended" {
				return true
			}
		}
		return false
	}
	counted := func(evs []map[string]any, typ string) (records int, total int64) {
		for _, ev := range evs {
			if ev["type"] != typ || ev["user_id"] != victim.ID {
				continue
			}
			records++
			c, _, _ := strings.Cut(ev["detail"].(string), " ")
			k, _ := strconv.ParseInt(c, 10, 64)
			total += k
		}
		return records, total
	}
	// A record keeps the first and the last refusal's address and user
	// agent, the user agent cut to 128 bytes.
	detail := func(evs []map[string]any, typ string) string {
		for _, ev := range evs {
			if ev["type"] == typ && ev["user_id"] == victim.ID {
				return ev["detail"].(string)
			}
		}
		return ""
	}
	for _, view := range []struct {
		name string
		evs  []map[string]any
	}{
		{"my history", every("/v1/me/events", mine)},
		{"the admin's view of it", every("/v1/admin/events?user_id="+victim.ID, adminTok)},
		{"the feed", every("/v1/admin/events", adminTok)},
	} {
		if !intruder(view.evs) || !revoked(view.evs) {
			t.Errorf("%s after %d failures: the intruder's sign-in %v, the revocation %v; want both", view.name, n, intruder(view.evs), revoked(view.evs))
		}
		fr, f := counted(view.evs, "login.failed")
		tr, th := counted(view.evs, "login.throttled")
		if f != failed.Load() || th != throttled.Load() || fr != 1 || tr != 1 {
			t.Errorf("%s: %d records of %d failures, %d of %d throttled; want one of %d and one of %d",
				view.name, fr, f, tr, th, failed.Load(), throttled.Load())
		}
		d := detail(view.evs, "login.failed")
		if !strings.Contains(d, " failed sign-ins; first from 192.0.2.99 (First/1) at ") ||
			!strings.Contains(d, ", last from 10.1.") || !strings.Contains(d, " ("+floodUA[:128]+") at ") {
			t.Errorf("%s: the failures' record says %q; want the first and the last address and user agent, cut", view.name, d)
		}
		if len(view.evs) > 40 {
			t.Errorf("%s has %d events after %d failures: they were not coalesced", view.name, len(view.evs), n)
		}
	}
	if s := every("/v1/admin/events?type=login.succeeded", adminTok); !intruder(s) {
		t.Error("the feed by type login.succeeded lacks the intruder's sign-in")
	}
	if s := every("/v1/admin/events?type=sessions.revoked_all", adminTok); !revoked(s) {
		t.Error("the feed by type sessions.revoked_all lacks the revocation")
	}
	for _, typ := range []string{"login.failed", "login.throttled"} {
		evs := every("/v1/admin/events?type="+typ, adminTok)
		if r, _ := counted(evs, typ); r != 1 {
			t.Errorf("the feed by type %s: %d records of the victim, want 1", typ, r)
		}
	}
	t.Logf("%d failures: %d checked (401), %d throttled (429)", n, failed.Load(), throttled.Load())
}

// Refusal records age out by time, as the history does (audit.MaxAge):
// written or not, a record older than that is gone from both views, and the
// next refusal drops it from Redis.
func TestRefusalsAgeOut(t *testing.T) {
	t.Parallel()
	// The stores' clock starts in the past, so what Redis stamps (stream
	// ids) stays in step with it once it is back to now.
	var offset atomic.Int64
	offset.Store(-int64(audit.MaxAge + time.Hour))
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	e := newEnv(t, envOpts{Now: now})
	alice := e.createUser("alice", "password123", "")
	bob := e.createUser("bob", "password123", "")
	for _, name := range []string{"alice", "bob", "nobody-here"} {
		wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": name, "password": "wrong-password"}), 401, "invalid_credentials")
	}
	list := func(f audit.Filter) []audit.Event {
		t.Helper()
		f.Limit = 100
		evs, _, err := e.Server.Audit.List(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	count := func(evs []audit.Event, uid string) int {
		n := 0
		for _, ev := range evs {
			if ev.Type == audit.LoginFailed && ev.UserID == uid {
				n++
			}
		}
		return n
	}
	if count(list(audit.Filter{UserID: alice.ID}), alice.ID) != 1 || count(list(audit.Filter{UserID: bob.ID}), bob.ID) != 1 ||
		count(list(audit.Filter{Type: audit.LoginFailed}), "") != 1 {
		t.Fatal("the refusals were not recorded")
	}
	offset.Store(0)
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "wrong-password"}), 401, "invalid_credentials")
	if n := count(list(audit.Filter{UserID: alice.ID}), alice.ID); n != 1 {
		t.Errorf("alice's history has %d refusal records after the first aged out; want the new one", n)
	}
	if n := count(list(audit.Filter{UserID: bob.ID}), bob.ID); n != 0 {
		t.Errorf("bob's history still shows %d refusal records older than %s", n, audit.MaxAge)
	}
	feed := list(audit.Filter{Type: audit.LoginFailed})
	if count(feed, bob.ID) != 0 || count(feed, "") != 0 || count(feed, alice.ID) != 1 {
		t.Errorf("the feed after %s: %d of bob, %d of unknown names, %d of alice; want only alice's new one",
			audit.MaxAge, count(feed, bob.ID), count(feed, ""), count(feed, alice.ID))
	}
	fields := srv.Do(t, "HKEYS", e.Keys.Refusals(alice.ID))
	names, _ := fields.AsStrSlice()
	records := 0
	for _, f := range names {
		if f != "" && f[0] >= '0' && f[0] <= '9' {
			records++
		}
	}
	if records != 1 {
		t.Errorf("alice's refusal hash keeps %d records (%v); want the old one dropped", records, names)
	}
}
