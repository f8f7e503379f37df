package app_test

// The audit trail and account deletion, through the API.

import (
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiond/sessiond/users"
)

// events reads one page of events.
func (e *env) events(path, tok string) ([]map[string]any, string) {
	e.t.Helper()
	r := e.do("GET", path, tok, nil)
	if r.Status != 200 {
		e.t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	m := r.JSON(e.t)
	var out []map[string]any
	for _, v := range m["events"].([]any) {
		out = append(out, v.(map[string]any))
	}
	return out, m["next_cursor"].(string)
}

// types lists the events' types, newest first.
func types(evs []map[string]any) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev["type"].(string))
	}
	return out
}

// findEvent is the newest event of a type, or nil.
func findEvent(evs []map[string]any, typ string) map[string]any {
	for _, ev := range evs {
		if ev["type"] == typ {
			return ev
		}
	}
	return nil
}

// Every kind of security event is recorded, with who did it, from where,
// and shows in the user's own history and in the admins' feed.
func TestEveryEventIsRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxFailures: 3})
	admin, adminTok := e.admin()
	r := e.do("POST", "/v1/admin/users", adminTok, map[string]string{"username": "alice", "password": "password123"},
		"User-Agent", "AdminConsole/1")
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	alice := r.JSON(t)["id"].(string)

	phone, phoneID := e.login("alice", "password123", "User-Agent", "MyApp/3.2")
	laptop, laptopID := e.login("alice", "password123")
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "wrong-one"}), 401, "invalid_credentials")
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "nobody-here", "password": "whatever1"}), 401, "invalid_credentials")
	e.do("DELETE", "/v1/sessions/"+laptopID, phone, nil)
	if r := e.changePassword(phone, "password123", "password456"); r.Status != 204 {
		t.Fatalf("password change: %d %s", r.Status, r.Body)
	}
	e.do("PATCH", "/v1/admin/users/"+alice, adminTok, map[string]any{"role": "admin"})
	e.do("PATCH", "/v1/admin/users/"+alice, adminTok, map[string]any{"disabled": true})
	e.do("PATCH", "/v1/admin/users/"+alice, adminTok, map[string]any{"disabled": false})
	second, _ := e.login("alice", "password456")
	e.do("POST", "/v1/auth/logout-all", second, nil)
	for range 3 {
		e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "bad-guess"})
	}
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "password456"}), 429, "too_many_attempts")
	_ = laptop

	// The admin reads alice's history (her own read needs a live session).
	// Refused sign-ins are one record per type and failure window, where
	// the window's first one happened, with the count.
	mine, _ := e.events("/v1/admin/events?user_id="+alice+"&limit=100", adminTok)
	want := []string{"login.throttled", "sessions.revoked_all", "login.succeeded", "account.enabled",
		"sessions.revoked_all", "account.disabled", "account.role_changed", "password.changed", "session.revoked",
		"login.failed", "login.succeeded", "login.succeeded", "account.created"}
	got := types(mine)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("alice's history, newest first:\n got %v\nwant %v", got, want)
	}
	for _, ev := range mine {
		if ev["user_id"] != alice || ev["id"] == "" || ev["at"] == "" {
			t.Fatalf("event %v: want user_id %s, an id and a time", ev, alice)
		}
	}
	created := findEvent(mine, "account.created")
	if created["actor_id"] != admin.ID || created["user_agent"] != "AdminConsole/1" || created["ip"] != "0.0.0.0" {
		t.Errorf("account.created: %v; want the admin as actor, with the admin's user agent and ip", created)
	}
	first := mine[len(mine)-2] // the phone's sign-in
	if first["type"] != "login.succeeded" || first["session_id"] != phoneID || first["actor_id"] != alice ||
		first["user_agent"] != "MyApp/3.2" || first["detail"] != "test device (ios)" {
		t.Errorf("the first sign-in: %v", first)
	}
	if rv := findEvent(mine, "session.revoked"); rv["session_id"] != laptopID || rv["actor_id"] != alice {
		t.Errorf("session.revoked: %v", rv)
	}
	if pc := findEvent(mine, "password.changed"); pc["detail"] != "1 other sessions ended" && pc["detail"] != "0 other sessions ended" {
		t.Errorf("password.changed: %v", pc)
	}
	if rc := findEvent(mine, "account.role_changed"); rc["detail"] != "user → admin" || rc["actor_id"] != admin.ID {
		t.Errorf("account.role_changed: %v", rc)
	}
	if f := findEvent(mine, "login.failed"); f["actor_id"] != "" || f["ip"] != "0.0.0.0" ||
		!strings.HasPrefix(f["detail"].(string), "4 failed sign-ins; first from 0.0.0.0 at ") {
		t.Errorf("login.failed: %v; want the 4 failures in one record", f)
	}
	if f := findEvent(mine, "login.throttled"); f["detail"] != "1 throttled sign-in" {
		t.Errorf("login.throttled: %v", f)
	}

	// Everyone's feed: the unknown name's failure is there without a user.
	feed, _ := e.events("/v1/admin/events?type=login.failed&limit=100", adminTok)
	var unknown, known []string
	for _, ev := range feed {
		if ev["type"] != "login.failed" {
			t.Fatalf("type filter let through %v", ev)
		}
		switch ev["user_id"] {
		case "":
			unknown = append(unknown, ev["detail"].(string))
		case alice:
			known = append(known, ev["detail"].(string))
		}
	}
	if len(unknown) != 1 || unknown[0] != "1 failed sign-in of names that are no account" ||
		len(known) != 1 || !strings.HasPrefix(known[0], "4 failed sign-ins;") {
		t.Fatalf("feed of login.failed: %q for unknown names, %q for alice; want one record each, alice's of 4 (1 + 3 guesses)", unknown, known)
	}
	all, _ := e.events("/v1/admin/events?limit=500", adminTok)
	if len(all) < len(mine) {
		t.Fatalf("the feed has %d events, alice's history alone %d", len(all), len(mine))
	}
	wantProblem(t, e.do("GET", "/v1/admin/events?type=nonsense", adminTok, nil), 400, "invalid_request")
	wantProblem(t, e.do("GET", "/v1/admin/events?user_id=not-an-id", adminTok, nil), 400, "invalid_request")
	// Not for users.
	bob := e.createUser("bob", "password123", "")
	bobTok, _ := e.login("bob", "password123")
	wantProblem(t, e.do("GET", "/v1/admin/events", bobTok, nil), 403, "forbidden")
	own, _ := e.events("/v1/me/events", bobTok)
	if fmt.Sprint(types(own)) != "[login.succeeded account.created]" || own[0]["user_id"] != bob.ID {
		t.Fatalf("bob's own history: %v", own)
	}
}

// Pages follow each other without gaps or repeats, newest first.
func TestEventPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	for range 6 {
		other, _ := e.login("alice", "password123")
		e.do("POST", "/v1/auth/logout", other, nil)
	}
	all, next := e.events("/v1/me/events?limit=100", tok)
	if next != "" || len(all) != 14 { // created, 7 sign-ins, 6 revocations
		t.Fatalf("%d events (next %q): %v", len(all), next, types(all))
	}
	var paged []map[string]any
	cursor := ""
	for pages := 0; ; pages++ {
		page, next := e.events("/v1/me/events?limit=4&cursor="+url.QueryEscape(cursor), tok)
		paged = append(paged, page...)
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		cursor = next
	}
	for i := range all {
		if i >= len(paged) || paged[i]["id"] != all[i]["id"] {
			t.Fatalf("paged %d events differ from the one page at %d", len(paged), i)
		}
	}
	wantProblem(t, e.do("GET", "/v1/me/events?cursor=garbage", tok, nil), 400, "invalid_request")
	wantProblem(t, e.do("GET", "/v1/me/events?limit=0", tok, nil), 400, "invalid_request")
}

// Deleting an account ends every session at once, frees the username and
// keeps the events; the last admin cannot be deleted.
func TestDeleteAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	root, adminTok := e.admin()
	alice := e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	if r := e.do("DELETE", "/v1/admin/users/"+alice.ID, adminTok, nil); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	wantProblem(t, e.do("GET", "/v1/me", tok, nil), 401, "unauthorized")
	wantProblem(t, e.do("GET", "/v1/admin/users/"+alice.ID, adminTok, nil), 404, "not_found")
	wantProblem(t, e.do("DELETE", "/v1/admin/users/"+alice.ID, adminTok, nil), 404, "not_found")
	if found, _ := e.do("GET", "/v1/admin/users?username=alice", adminTok, nil).JSON(t)["users"].([]any); len(found) != 0 {
		t.Fatalf("a deleted account is still found: %v", found)
	}
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "password123"}), 401, "invalid_credentials")
	evs, _ := e.events("/v1/admin/events?user_id="+alice.ID, adminTok)
	if len(evs) == 0 || evs[0]["type"] != "account.deleted" || evs[0]["actor_id"] != root.ID || evs[0]["detail"] != "1 sessions ended" {
		t.Fatalf("the deleted account's history: %v", evs)
	}
	// The name is free again, for a new account.
	again := e.createUser("Alice", "password789", "")
	if again.ID == alice.ID {
		t.Fatal("the new account got the old id")
	}
	e.login("alice", "password789")
	// The last enabled admin stays.
	wantProblem(t, e.do("DELETE", "/v1/admin/users/"+root.ID, adminTok, nil), 409, "last_admin")
}

// A login racing with the account's deletion never leaves a live session.
func TestDeleteRacingLoginsLeavesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxFailures: 1000})
	_, adminTok := e.admin()
	for trial := range 10 {
		name := fmt.Sprintf("victim%d", trial)
		u := e.createUser(name, "password123", users.RoleUser)
		var mu sync.Mutex
		var tokens []string
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := e.do("POST", "/v1/auth/login", "", map[string]string{"username": name, "password": "password123"})
				if r.Status == 201 {
					mu.Lock()
					tokens = append(tokens, r.JSON(t)["token"].(string))
					mu.Unlock()
				}
			}()
		}
		if r := e.do("DELETE", "/v1/admin/users/"+u.ID, adminTok, nil); r.Status != 204 {
			t.Fatalf("delete: %d %s", r.Status, r.Body)
		}
		wg.Wait()
		for _, tok := range tokens {
			if r := e.do("GET", "/v1/me", tok, nil); r.Status != 401 {
				t.Fatalf("trial %d: a login that raced the deletion left a live session (%d)", trial, r.Status)
			}
		}
		if keys := srv.Keys(t, e.Keys.SessionPrefix(u.ID)+"*"); len(keys) != 0 {
			t.Fatalf("trial %d: session keys left: %v", trial, keys)
		}
		if slices.Contains(srv.Keys(t, e.Keys.User(u.ID)), e.Keys.User(u.ID)) {
			t.Fatalf("trial %d: the account record is back", trial)
		}
	}
}

// A cursor a client got wrong, however it parses, is the client's error
// (400) or an empty page, never a Redis failure: no 503, no ERROR logged,
// nothing counted in sessiond_redis_errors_total.
func TestMalformedCursorsAreClientErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{Env: map[string]string{"METRICS_ADDR": "127.0.0.1:0"}})
	root, adminTok := e.admin()
	e.do("POST", "/v1/auth/login", "", map[string]string{"username": "nobody-here", "password": "wrong-password"})
	e.do("POST", "/v1/auth/login", "", map[string]string{"username": "root", "password": "wrong-password"})
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	eventCursors := []string{"0-0", "r0-0", "0-18446744073709551615", "18446744073709551615-18446744073709551615",
		"r18446744073709551615-18446744073709551615", "18446744073709551616-0", "00-00", "1-0-0", "-", "1-", "-1",
		"r", "rr1-0", "1", "+", "(1-0", "1-0 ", "+1-0", "\x00", strings.Repeat("9", 2000) + "-0"}
	userCursors := []string{b64("\x00"), b64("\x00\x00"), b64("(\x00"), b64("[\x00"), b64("-\x00"), b64("+\x00"),
		b64(strings.Repeat("\xff", 500) + "\x00"), b64("root"), "AA==", "!!"}
	for _, c := range []struct {
		path    string
		cursors []string
	}{
		{"/v1/me/events", eventCursors},
		{"/v1/admin/events", eventCursors},
		{"/v1/admin/events?type=login.failed", eventCursors},
		{"/v1/admin/events?type=login.succeeded", eventCursors},
		{"/v1/admin/events?user_id=" + root.ID, eventCursors},
		{"/v1/admin/users", userCursors},
	} {
		for _, cursor := range c.cursors {
			sep := "?"
			if strings.Contains(c.path, "?") {
				sep = "&"
			}
			r := e.do("GET", c.path+sep+"cursor="+url.QueryEscape(cursor), adminTok, nil)
			if r.Status != 200 && (r.Status != 400 || r.Code(t) != "invalid_request") {
				t.Errorf("GET %s with cursor %q: %d %s; want 400 invalid_request or a page", c.path, cursor, r.Status, r.Body)
			}
		}
	}
	if strings.Contains(e.Logs.String(), "level=ERROR") {
		t.Errorf("a client's cursor was logged as an error:\n%s", e.Logs.String())
	}
	rec := httptest.NewRecorder()
	e.Server.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "sessiond_redis_errors_total{") && !strings.HasSuffix(line, " 0") {
			t.Errorf("a client's cursor was counted as a Redis failure: %s", line)
		}
	}
}

// What a client sends (its user agent, its device's name and platform) is
// stored as sent, the same in the user's history and in the feed: only the
// server's own "{count} sessions ended" gets the count.
func TestClientTextIsStoredAsSent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	_, adminTok := e.admin()
	alice := e.createUser("alice", "password123", "")
	e.login("alice", "password123")
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "alice", "password": "password123",
		"device": map[string]string{"name": "my {count} phone", "platform": "{count}os"}}, "User-Agent", "Agent/{count}")
	if r.Status != 201 {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	tok := r.JSON(t)["token"].(string)
	if r := e.do("DELETE", "/v1/sessions", tok, nil, "User-Agent", "Revoker {count}"); r.Status != 200 {
		t.Fatalf("revoking the others: %d %s", r.Status, r.Body)
	}
	mine, _ := e.events("/v1/me/events", tok)
	feed, _ := e.events("/v1/admin/events?limit=500", adminTok)
	for name, evs := range map[string][]map[string]any{"history": mine, "feed": feed} {
		var signIn, revoked map[string]any
		for _, ev := range evs {
			switch {
			case ev["user_id"] != alice.ID:
			case ev["type"] == "login.succeeded" && signIn == nil:
				signIn = ev
			case ev["type"] == "sessions.revoked_all" && revoked == nil:
				revoked = ev
			}
		}
		if signIn["user_agent"] != "Agent/{count}" || signIn["detail"] != "my {count} phone ({count}os)" {
			t.Errorf("%s: the sign-in %v; want its user agent and device as sent", name, signIn)
		}
		if revoked["user_agent"] != "Revoker {count}" || revoked["detail"] != "1 sessions ended" {
			t.Errorf("%s: the revocation %v; want the user agent as sent and the count in the detail", name, revoked)
		}
	}
}

// A view merges the history with the refusal records: newest first by
// where each started, pages of any size follow each other without gaps or
// repeats, and the type filter pages through refusals too.
func TestEventViewsMergeRefusalsInPages(t *testing.T) {
	t.Parallel()
	const window = 2500 * time.Millisecond
	e := newEnv(t, envOpts{TrustedProxies: behindProxy, MaxFailures: 2, FailureWindow: window})
	_, adminTok := e.admin()
	alice := e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123", "X-Forwarded-For", "192.0.2.1")
	for round := range 3 {
		e.loginFrom("192.0.2.2", "alice", "wrong-password")
		e.loginFrom("192.0.2.2", "nobody-here", "wrong-password")
		e.login("alice", "password123", "X-Forwarded-For", "192.0.2.3")
		e.loginFrom("192.0.2.2", "alice", "wrong-password")
		e.loginFrom("192.0.2.2", "alice", "wrong-password") // past the limit of 2: throttled
		other, _ := e.login("alice", "password123", "X-Forwarded-For", "192.0.2.4")
		e.do("POST", "/v1/auth/logout", other, nil)
		if round < 2 {
			time.Sleep(window + 50*time.Millisecond) // new windows: new records
		}
	}
	pages := func(path, tok string, limit int) []map[string]any {
		t.Helper()
		var all []map[string]any
		cursor := ""
		for n := 0; ; n++ {
			page, next := e.events(fmt.Sprintf("%s&limit=%d&cursor=%s", path, limit, url.QueryEscape(cursor)), tok)
			if len(page) > limit {
				t.Fatalf("%s: a page of %d for limit %d", path, len(page), limit)
			}
			all = append(all, page...)
			if next == "" {
				return all
			}
			if n > 200 {
				t.Fatalf("%s: paging does not end", path)
			}
			cursor = next
		}
	}
	ids := func(evs []map[string]any) []string {
		var out []string
		for _, ev := range evs {
			out = append(out, ev["id"].(string))
		}
		return out
	}
	for _, v := range []struct {
		path, tok string
		want      int // how many events at least
	}{
		{"/v1/me/events?", tok, 3*5 + 2},
		{"/v1/admin/events?user_id=" + alice.ID, adminTok, 3*5 + 2},
		{"/v1/admin/events?", adminTok, 3*6 + 4},
		{"/v1/admin/events?type=login.failed", adminTok, 6},
		{"/v1/admin/events?type=login.throttled", adminTok, 3},
		{"/v1/admin/events?type=login.succeeded", adminTok, 7},
		{"/v1/admin/events?user_id=" + alice.ID + "&type=login.failed", adminTok, 3},
	} {
		all := pages(v.path, v.tok, 500)
		if len(all) < v.want {
			t.Errorf("%s: %d events, want at least %d: %v", v.path, len(all), v.want, types(all))
		}
		seen := map[string]bool{}
		for i, ev := range all {
			if seen[ev["id"].(string)] {
				t.Fatalf("%s: %s twice", v.path, ev["id"])
			}
			seen[ev["id"].(string)] = true
			if i > 0 && ev["at"].(string) > all[i-1]["at"].(string) {
				t.Errorf("%s: %v after %v: not newest first", v.path, ev, all[i-1])
			}
		}
		for _, limit := range []int{1, 2, 3, 7} {
			if got := ids(pages(v.path, v.tok, limit)); fmt.Sprint(got) != fmt.Sprint(ids(all)) {
				t.Errorf("%s in pages of %d:\n got %v\nwant %v", v.path, limit, got, ids(all))
			}
		}
	}
	// Each window's refusals are one record of each type.
	failed := pages("/v1/admin/events?user_id="+alice.ID+"&type=login.failed", adminTok, 10)
	throttled := pages("/v1/admin/events?user_id="+alice.ID+"&type=login.throttled", adminTok, 10)
	if len(failed) != 3 || len(throttled) != 3 {
		t.Fatalf("%d failed and %d throttled records over 3 windows; want 3 and 3", len(failed), len(throttled))
	}
	for _, ev := range failed {
		if !strings.HasPrefix(ev["detail"].(string), "2 failed sign-ins; first from 192.0.2.2 at ") {
			t.Errorf("a window's failures: %v", ev)
		}
	}
}
