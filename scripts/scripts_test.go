package scripts_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/scripts"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

// keysUnder lists the keys under a prefix, on every master of a cluster.
func keysUnder(t *testing.T, prefix string) []string {
	t.Helper()
	return srv.Keys(t, prefix+"*")
}

func sessionFields(sid string) []string {
	return []string{keys.SessDevice, "", keys.SessPlatform, "", keys.SessUserAgent, "", keys.SessIP, "127.0.0.1",
		keys.SessCreated, "1", keys.SessLastSeen, "1", keys.SessExpires, "9999999999"}
}

// Redis keeps what a script wrote before it errored, so every script checks
// its arguments before its first write: a bad call leaves no trace.
func TestScriptsValidateBeforeWriting(t *testing.T) {
	c := srv.Client(t)
	p := redistest.Prefix(t)
	k := keys.New(p)
	user, index, sess, uses := k.User("u1"), k.SessionIndex("u1"), k.Session("u1", "s1"), k.SessionUses("u1")
	if err := c.Do(ctx(t), c.B().Hset().Key(user).FieldValue().FieldValue(keys.UserID, "u1").FieldValue(keys.UserVersion, "0").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// An expired index member the create script would prune, if it got that far.
	if err := c.Do(ctx(t), c.B().Zadd().Key(index).ScoreMember().ScoreMember(1, "old").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	now := "1700000000000"
	events := k.Events("u1")
	spec := audit.Spec(time.UnixMilli(1700000000000), audit.Event{Type: audit.SessionsRevokedAll})
	loginSpec := audit.SpecEvicting(time.UnixMilli(1700000000000), audit.Event{Type: audit.LoginSucceeded}, audit.Event{Type: audit.SessionRevoked})
	for _, call := range []struct {
		name       string
		script     scripts.Script
		keys, args []string
	}{
		{"create with a non-numeric max", scripts.Create, []string{user, index, sess, events, uses},
			append(append([]string{"0", now, now, "many", k.SessionPrefix("u1"), "s1"}, sessionFields("s1")...), loginSpec)},
		{"create with an odd field list", scripts.Create, []string{user, index, sess, events, uses},
			append(append([]string{"0", now, now, "5", k.SessionPrefix("u1"), "s1"}, sessionFields("s1")[1:]...), loginSpec)},
		{"create without events", scripts.Create, []string{user, index, sess, events, uses},
			append(append([]string{"0", now, now, "5", k.SessionPrefix("u1"), "s1"}, sessionFields("s1")...), "{}")},
		{"create with events that are not JSON", scripts.Create, []string{user, index, sess, events, uses},
			append(append([]string{"0", now, now, "5", k.SessionPrefix("u1"), "s1"}, sessionFields("s1")...), "not json")},
		{"create with a proof record but no lifetime", scripts.Create, []string{user, index, sess, events, uses, k.DPoPProof("u1", "j")},
			append(append([]string{"0", now, now, "5", k.SessionPrefix("u1"), "s1"}, sessionFields("s1")...), loginSpec)},
		{"refresh with a bad generation", scripts.Refresh, []string{sess, index, user, events, uses},
			[]string{now, "60000", "30000", "d", "first", "d2", "ip", "s1", "", "0", spec, "15000"}},
		{"refresh with a proof but no record", scripts.Refresh, []string{sess, index, user, events, uses},
			[]string{now, "60000", "30000", "d", "0", "d2", "ip", "s1", "thumb", "125000", spec, "15000"}},
		{"refresh without events", scripts.Refresh, []string{sess, index, user, events, uses},
			[]string{now, "60000", "30000", "d", "0", "d2", "ip", "s1", "", "0", "{}", "15000"}},
		{"refresh without a slack", scripts.Refresh, []string{sess, index, user, events, uses},
			[]string{now, "60000", "30000", "d", "0", "d2", "ip", "s1", "", "0", spec, ""}},
		{"touch with a bad idle timeout", scripts.Touch, []string{sess, index, uses}, []string{now, "soon", "ip", "s1", "60000", "15000"}},
		{"touch without its use hash", scripts.Touch, []string{sess, index}, []string{now, "60000", "ip", "s1", "60000", "15000"}},
		{"revoke_all with an odd field list", scripts.RevokeAll, []string{user, index, events, uses}, []string{"", k.SessionPrefix("u1"), "", "disabled", spec}},
		{"revoke_all without a credential version", scripts.RevokeAll, []string{user, index, events, uses}, []string{"", k.SessionPrefix("u1"), spec}},
		{"revoke_all without events", scripts.RevokeAll, []string{user, index, events, uses}, []string{"", k.SessionPrefix("u1"), "", "disabled", "1"}},
		{"update_account with an odd field list", scripts.UpdateAccount, []string{user, index, events}, []string{k.SessionPrefix("u1"), "role", spec}},
		{"revoke without events", scripts.Revoke, []string{sess, index, events, uses}, []string{"s1"}},
		{"revoke without the use hash", scripts.Revoke, []string{sess, index, events}, []string{"s1", spec}},
		{"delete_account without events", scripts.DeleteAccount, []string{user, index, events}, []string{k.SessionPrefix("u1"), "[]"}},
		{"create_account with an odd field list", scripts.CreateAccount, []string{k.User("u2")}, []string{"5000", keys.UserID}},
		{"create_account without a lifetime", scripts.CreateAccount, []string{k.User("u2")}, []string{"", keys.UserID, "u2"}},
		{"finish_account without events", scripts.FinishAccount, []string{user, events}, []string{"not json"}},
		{"attempt with no window", scripts.Attempt, []string{p + "fail:x"}, []string{now, "0", "a1", "30000", "*", "5"}},
		{"attempt with no budget", scripts.Attempt, []string{p + "fail:x"}, []string{now, "60000", "a1", "30000", "*", "0"}},
		{"attempt without an id", scripts.Attempt, []string{p + "fail:x"}, []string{now, "60000", "", "30000", "*", "5"}},
		{"attempt without an entry", scripts.Attempt, []string{p + "fail:x"}, []string{now, "60000", "a1", "30000"}},
		{"attempt on an entry named like an attempt", scripts.Attempt, []string{p + "fail:x"}, []string{now, "60000", "a1", "30000", "@a2", "5"}},
		{"attempt_settle with an unknown outcome", scripts.AttemptSettle, []string{p + "fail:x"}, []string{"a1", now, "60000", "100", "*", "maybe"}},
		{"attempt_settle with no capacity", scripts.AttemptSettle, []string{p + "fail:x"}, []string{"a1", now, "60000", "0", "*", "fail"}},
		{"refusal with no window", scripts.Refusal, []string{k.Refusals("u1")},
			[]string{now, "0", "login.failed", "sign-in", "192.0.2.1", "ua", "10", "0", "1000"}},
		{"refusal with no type", scripts.Refusal, []string{k.Refusals("u1")},
			[]string{now, "60000", "", "sign-in", "192.0.2.1", "ua", "10", "0", "1000"}},
		{"max_cost with no cost", scripts.MaxCost, []string{p + "maxcost"}, []string{"high"}},
		{"passkey_add with no mark lifetime", scripts.PasskeyAdd, []string{user, k.Passkeys("u1"), k.PasskeyChallengeUsed("u1", "c"), events},
			[]string{"cred", "0 0 {}", "0", "20", spec}},
		{"passkey_add without events", scripts.PasskeyAdd, []string{user, k.Passkeys("u1"), k.PasskeyChallengeUsed("u1", "c"), events},
			[]string{"cred", "0 0 {}", "60000", "20", "{}"}},
		{"passkey_use with a bad counter", scripts.PasskeyUse, []string{user, k.Passkeys("u1"), k.PasskeyChallengeUsed("u1", "c"), events},
			[]string{"cred", "many", now, "60000", spec}},
		{"passkey_use without events", scripts.PasskeyUse, []string{user, k.Passkeys("u1"), k.PasskeyChallengeUsed("u1", "c"), events},
			[]string{"cred", "1", now, "60000", "not json"}},
		{"passkey_remove without events", scripts.PasskeyRemove, []string{user, k.Passkeys("u1"), events}, []string{"", "{}"}},
	} {
		t.Run(call.name, func(t *testing.T) {
			before := keysUnder(t, p)
			err := call.script.Exec(ctx(t), c, call.keys, call.args).Error()
			if err == nil || !strings.Contains(err.Error(), "bad") {
				t.Fatalf("got %v, want the script to refuse its arguments", err)
			}
			if after := keysUnder(t, p); len(after) != len(before) {
				t.Fatalf("keys before %v, after %v: the failed call wrote", before, after)
			}
			n, _ := c.Do(ctx(t), c.B().Zcard().Key(index).Build()).AsInt64()
			cv, _ := c.Do(ctx(t), c.B().Hget().Key(user).Field(keys.UserVersion).Build()).ToString()
			if n != 1 || cv != "0" {
				t.Fatalf("index has %d members, cv %q: the failed call wrote", n, cv)
			}
		})
	}
}

// After a Redis restart (or SCRIPT FLUSH) the cached SHA is unknown: the
// scripts reload by themselves (NOSCRIPT → EVAL).
func TestScriptsReloadAfterFlush(t *testing.T) {
	c := srv.Client(t)
	p := redistest.Prefix(t)
	settle := []string{"a1", strconv.FormatInt(time.Now().UnixMilli(), 10), "60000", "100", "*", "fail"}
	if err := scripts.AttemptSettle.Exec(ctx(t), c, []string{p + "f"}, settle).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx(t), c.B().ScriptFlush().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := scripts.AttemptSettle.Exec(ctx(t), c, []string{p + "f"}, settle).Error(); err != nil {
		t.Fatalf("after SCRIPT FLUSH: %v", err)
	}
	if v, err := c.Do(ctx(t), c.B().Hget().Key(p+"f").Field("*").Build()).ToString(); err != nil || !strings.HasPrefix(v, "2 ") {
		t.Fatalf("after SCRIPT FLUSH the count is %q (%v); want 2", v, err)
	}
}

// Out of memory (maxmemory reached under noeviction): Redis refuses a
// writing script before it runs, so a login cannot leave half a session.
func TestScriptsWriteNothingWhenRedisIsOutOfMemory(t *testing.T) {
	srv.RequireReal(t, "maxmemory and OOM refusal")
	srv.RequireSingle(t, "CONFIG SET maxmemory on the one node")
	c := srv.Client(t)
	p := redistest.Prefix(t)
	k := keys.New(p)
	user, index := k.User("u1"), k.SessionIndex("u1")
	if err := c.Do(ctx(t), c.B().Hset().Key(user).FieldValue().FieldValue(keys.UserID, "u1").FieldValue(keys.UserVersion, "0").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx(t), c.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Do(context.Background(), c.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "0").Build())
	})
	now := "1700000000000"
	login := audit.SpecEvicting(time.Now(), audit.Event{Type: audit.LoginSucceeded}, audit.Event{Type: audit.SessionRevoked})
	err := scripts.Create.Exec(ctx(t), c, []string{user, index, k.Session("u1", "s1"), k.Events("u1"), k.SessionUses("u1")},
		append(append([]string{"0", now, "9999999999999", "5", k.SessionPrefix("u1"), "s1"}, sessionFields("s1")...), login)).Error()
	if err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("create at maxmemory: %v; want an OOM refusal", err)
	}
	c.Do(context.Background(), c.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "0").Build())
	if ks := keysUnder(t, p); len(ks) != 1 {
		t.Fatalf("keys after the refused create: %v; want only the user", ks)
	}
}

// A limiter hash keeps at most its capacity of evictable entries: a new one
// evicts the entry with the fewest failures, whose count becomes the floor
// every entry the hash lacks counts from; '*' entries are never evicted.
func TestLimiterHashEvictsIntoItsFloor(t *testing.T) {
	c := srv.Client(t)
	key := redistest.Prefix(t) + "fail:x"
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	fail := func(entries ...string) {
		t.Helper()
		args := []string{"a1", now, "60000", "2"}
		for _, e := range entries {
			args = append(args, e, "fail")
		}
		if err := scripts.AttemptSettle.Exec(ctx(t), c, []string{key}, args).Error(); err != nil {
			t.Fatal(err)
		}
	}
	take := func(entry string, max int) int64 {
		t.Helper()
		res, err := scripts.Attempt.Exec(ctx(t), c, []string{key}, []string{now, "60000", "a2", "30000", entry, strconv.Itoa(max)}).AsIntSlice()
		if err != nil {
			t.Fatal(err)
		}
		scripts.AttemptSettle.Exec(ctx(t), c, []string{key}, []string{"a2", now, "60000", "2", entry, "return"})
		return res[0]
	}
	fail("*", "na")
	fail("*", "na")
	fail("*", "na")
	fail("*", "nb")
	fail("*", "nc") // evicts nb (1 failure): the floor is 1, nc counts from it
	h, _ := c.Do(ctx(t), c.B().Hgetall().Key(key).Build()).AsStrMap()
	if len(h) != 4 || !strings.HasPrefix(h["*"], "5 ") || !strings.HasPrefix(h["na"], "3 ") ||
		!strings.HasPrefix(h["nc"], "2 ") || !strings.HasPrefix(h["~"], "1 ") {
		t.Fatalf("after 5 failures over 3 names with room for 2: %v", h)
	}
	for _, c := range []struct {
		entry string
		max   int
		want  int64
	}{
		{"na", 3, 0}, // its own 3
		{"nb", 2, 1}, // evicted: the floor, 1 of 2
		{"nd", 1, 0}, // never seen: the floor, 1 of 1
		{"*x", 1, 1}, // never evicted: no floor
	} {
		if got := take(c.entry, c.max); got != c.want {
			t.Errorf("taking %s with a budget of %d: %d, want %d", c.entry, c.max, got, c.want)
		}
	}
}
