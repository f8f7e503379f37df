package app_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// deniedClient is a client of the package's Redis (one node or the cluster)
// as an ACL user that may run everything but the denied commands, also
// inside scripts: a Redis that refuses one step of a multi-step change.
func deniedClient(t *testing.T, denied ...string) rueidis.Client {
	t.Helper()
	srv.RequireReal(t, "ACL users")
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	user, pw := "denied-"+hex.EncodeToString(b), "pw-"+hex.EncodeToString(b)
	rule := []string{"SETUSER", user, "on", ">" + pw, "~*", "&*", "+@all"}
	for _, d := range denied {
		rule = append(rule, "-"+d)
	}
	admin := srv.Client(t)
	ctx := context.Background()
	for addr, n := range admin.Nodes() { // ACL users are per node
		if err := n.Do(ctx, n.B().Arbitrary("ACL").Args(rule...).Build()).Error(); err != nil {
			t.Fatalf("ACL SETUSER on %s: %v", addr, err)
		}
	}
	t.Cleanup(func() {
		for _, n := range admin.Nodes() {
			n.Do(ctx, n.B().Arbitrary("ACL").Args("DELUSER", user).Build())
		}
	})
	o := srv.Options()
	o.Username, o.Password = user, pw
	c, err := rueidis.NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// nothingOf checks that no trace of an account named name is to be seen:
// not found, cannot sign in, its name unclaimed, and no record or listing
// entry in Redis beyond those of the other accounts (accounts of them).
func nothingOf(t *testing.T, e *env, admin, name, password string, accounts int) {
	t.Helper()
	if r := e.do("GET", "/v1/admin/users?username="+name, admin, nil); r.Status != 200 || string(r.Body) != `{"users":[]}` {
		t.Fatalf("find %s after a failed creation: %d %s", name, r.Status, r.Body)
	}
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": name, "password": password}), 401, "invalid_credentials")
	ctx := context.Background()
	c := e.Client
	if n, _ := c.Do(ctx, c.B().Exists().Key(e.Keys.Username(name)).Build()).AsInt64(); n != 0 {
		t.Errorf("the username %s is still claimed", name)
	}
	if ks := srv.Keys(t, e.Prefix+"user:*"); len(ks) != accounts {
		t.Errorf("account records %v, want %d", ks, accounts)
	}
	if n, _ := c.Do(ctx, c.B().Zcard().Key(e.Keys.Users()).Build()).AsInt64(); n != int64(accounts) {
		t.Errorf("%d listed accounts, want %d", n, accounts)
	}
}

// wholeAccount checks that account id is whole: it signs in, is found, is
// in the admin set when it is an admin, and has exactly one account.created
// in its history and in the feed.
func wholeAccount(t *testing.T, e *env, admin, id, name, password string, isAdmin bool) {
	t.Helper()
	e.login(name, password)
	r := e.do("GET", "/v1/admin/users?username="+name, admin, nil)
	if list, _ := r.JSON(t)["users"].([]any); len(list) != 1 || list[0].(map[string]any)["id"] != id {
		t.Fatalf("find %s: %s, want %s", name, r.Body, id)
	}
	ctx := context.Background()
	c := e.Client
	in, _ := c.Do(ctx, c.B().Sismember().Key(e.Keys.Admins()).Member(id).Build()).AsInt64()
	if (in == 1) != isAdmin {
		t.Errorf("%s in the admin set: %v, want %v", name, in == 1, isAdmin)
	}
	for what, path := range map[string]string{
		"its history": "/v1/admin/events?user_id=" + id + "&limit=500",
		"the feed":    "/v1/admin/events?type=account.created&limit=500",
	} {
		eventually(t, 2*time.Second, "account.created in "+what, func() bool {
			n := 0
			for _, ev := range e.do("GET", path, admin, nil).JSON(t)["events"].([]any) {
				if m := ev.(map[string]any); m["type"] == "account.created" && m["user_id"] == id {
					n++
				}
			}
			if n > 1 {
				t.Fatalf("%d account.created events of %s in %s", n, name, what)
			}
			return n == 1
		})
	}
}

// A Redis that refuses the admin-set step of creating an admin: the caller
// gets 503 and nothing of the account exists (it used to exist, outside the
// admin set, its account.created missing from the feed, and a retry got
// 409); a retry once Redis takes the step creates it whole.
func TestCreatingAnAdminIsWholeOrNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	_, admin := e.admin()
	faulty := newEnv(t, envOpts{Client: deniedClient(t, "sadd"), Prefix: e.Prefix})
	body := map[string]string{"username": "carol", "password": "carol-password", "role": "admin"}
	assertUnavailable(t, faulty.do("POST", "/v1/admin/users", admin, body), "creating an admin whose admin-set step fails")
	nothingOf(t, e, admin, "carol", "carol-password", 1)
	if n, _ := e.Client.Do(context.Background(), e.Client.B().Scard().Key(e.Keys.Admins()).Build()).AsInt64(); n != 1 {
		t.Errorf("%d members of the admin set, want root's alone", n)
	}

	// Nothing was left, so any retry creates it, with whatever password.
	body["password"] = "another-password"
	r := e.do("POST", "/v1/admin/users", admin, body)
	if r.Status != 201 {
		t.Fatalf("retry: %d %s", r.Status, r.Body)
	}
	wholeAccount(t, e, admin, r.JSON(t)["id"].(string), "carol", "another-password", true)
}

// A Redis that refuses the last step (finishing the record with its
// account.created event): 503, nothing left, a retry creates it.
func TestCreateFailingAtItsLastStepLeavesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	_, admin := e.admin()
	faulty := newEnv(t, envOpts{Client: deniedClient(t, "xadd"), Prefix: e.Prefix})
	body := map[string]string{"username": "dora", "password": "dora-password"}
	assertUnavailable(t, faulty.do("POST", "/v1/admin/users", admin, body), "creating an account whose last step fails")
	nothingOf(t, e, admin, "dora", "dora-password", 1)
	r := e.do("POST", "/v1/admin/users", admin, body)
	if r.Status != 201 {
		t.Fatalf("retry: %d %s", r.Status, r.Body)
	}
	wholeAccount(t, e, admin, r.JSON(t)["id"].(string), "dora", "dora-password", false)
}

// When even the undo fails (Redis refuses the last step and the deletes),
// what is left is no account: it cannot sign in, is not found, and as a
// member of the admin set it does not count for the last-admin rule. The
// same creation retried finishes it; another is refused with 409 while it
// lasts.
func TestRetryFinishesAnUnfinishedCreation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	root, admin := e.admin()
	faulty := newEnv(t, envOpts{Client: deniedClient(t, "xadd", "del"), Prefix: e.Prefix})
	body := map[string]string{"username": "erin", "password": "erin-password", "role": "admin"}
	assertUnavailable(t, faulty.do("POST", "/v1/admin/users", admin, body), "creating an admin whose last step and undo fail")

	if r := e.do("GET", "/v1/admin/users?username=erin", admin, nil); string(r.Body) != `{"users":[]}` {
		t.Fatalf("an unfinished account is found: %s", r.Body)
	}
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "erin", "password": "erin-password"}), 401, "invalid_credentials")
	// Root is the last enabled admin: the unfinished one in the set does not count.
	wantProblem(t, e.do("PATCH", "/v1/admin/users/"+root.ID, admin, map[string]any{"role": "user"}), 409, "last_admin")
	// Another creation of the name (another password) is refused meanwhile.
	other := map[string]string{"username": "erin", "password": "other-password", "role": "admin"}
	wantProblem(t, e.do("POST", "/v1/admin/users", admin, other), 409, "username_taken")

	r := e.do("POST", "/v1/admin/users", admin, body)
	if r.Status != 201 {
		t.Fatalf("the same creation retried: %d %s", r.Status, r.Body)
	}
	id := r.JSON(t)["id"].(string)
	wholeAccount(t, e, admin, id, "erin", "erin-password", true)
	// Now there are two admins: root may step down.
	if r := e.do("PATCH", "/v1/admin/users/"+root.ID, admin, map[string]any{"role": "user"}); r.Status != 200 {
		t.Fatalf("demote root beside a finished admin: %d %s", r.Status, r.Body)
	}
}

// What an unfinished creation leaves expires: then the name is free for any
// creation, and the leftovers do not show.
func TestAnUnfinishedCreationExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	_, admin := e.admin()
	// A short timeout makes the leftovers' lifetime short (2 x 300ms + 1s).
	faulty := newEnv(t, envOpts{Client: deniedClient(t, "xadd", "del"), Prefix: e.Prefix, RedisTimeout: 300 * time.Millisecond})
	assertUnavailable(t, faulty.do("POST", "/v1/admin/users", admin, map[string]string{"username": "fay", "password": "fay-password"}),
		"creating an account whose last step and undo fail")
	ctx := context.Background()
	c := e.Client
	old, err := c.Do(ctx, c.B().Get().Key(e.Keys.Username("fay")).Build()).ToString()
	if err != nil {
		t.Fatalf("the claim of the unfinished creation: %v", err)
	}
	eventually(t, 5*time.Second, "the unfinished record expired", func() bool {
		n, _ := c.Do(ctx, c.B().Exists().Key(e.Keys.User(old)).Build()).AsInt64()
		return n == 0
	})
	r := e.do("POST", "/v1/admin/users", admin, map[string]string{"username": "fay", "password": "new-password"})
	if r.Status != 201 || r.JSON(t)["id"] == old {
		t.Fatalf("create after the leftovers expired: %d %s", r.Status, r.Body)
	}
	wholeAccount(t, e, admin, r.JSON(t)["id"].(string), "fay", "new-password", false)
	r = e.do("GET", "/v1/admin/users?limit=500", admin, nil)
	if list := r.JSON(t)["users"].([]any); len(list) != 2 {
		t.Fatalf("listing after the leftovers: %s; want root and fay", r.Body)
	}
}
