package app_test

import (
	"fmt"
	"strings"
	"testing"
)

func TestAdminRoutesNeedTheAdminRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	u := e.createUser("alice", "password123", "")
	tok, sid := e.login("alice", "password123")
	for _, r := range []struct{ method, path string }{
		{"POST", "/v1/admin/users"}, {"GET", "/v1/admin/users"}, {"GET", "/v1/admin/users?username=alice"},
		{"GET", "/v1/admin/users/" + u.ID}, {"PATCH", "/v1/admin/users/" + u.ID},
		{"GET", "/v1/admin/users/" + u.ID + "/sessions"}, {"DELETE", "/v1/admin/users/" + u.ID + "/sessions"},
		{"DELETE", "/v1/admin/users/" + u.ID + "/sessions/" + sid},
	} {
		wantProblem(t, e.do(r.method, r.path, tok, map[string]any{"role": "admin"}), 403, "forbidden")
		wantProblem(t, e.do(r.method, r.path, "", nil), 401, "unauthorized")
	}
	if r := e.do("GET", "/v1/me", tok, nil); r.JSON(t)["role"] != "user" {
		t.Fatal("a refused PATCH changed the role")
	}
}

func TestAdminCreatesAndFindsUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	admin := e.adminToken()
	r := e.do("POST", "/v1/admin/users", admin, map[string]string{"username": "Zoe", "password": "password123"})
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	zoe := r.JSON(t)
	if zoe["username"] != "Zoe" || zoe["role"] != "user" || zoe["disabled"] != false || zoe["id"] == "" || zoe["created_at"] == "" {
		t.Fatalf("created user: %s", r.Body)
	}
	wantProblem(t, e.do("POST", "/v1/admin/users", admin, map[string]string{"username": "zOE", "password": "password123"}), 409, "username_taken")
	for field, body := range map[string]map[string]string{
		"role":     {"username": "x1", "password": "password123", "role": "root"},
		"password": {"username": "x2", "password": "short"},
		"username": {"username": "has space", "password": "password123"},
	} {
		r := e.do("POST", "/v1/admin/users", admin, body)
		wantProblem(t, r, 400, "invalid_request")
		if !strings.Contains(r.JSON(t)["detail"].(string), field) {
			t.Errorf("detail %q does not name %s", r.JSON(t)["detail"], field)
		}
	}

	r = e.do("GET", "/v1/admin/users?username=ZOE", admin, nil)
	if list := r.JSON(t)["users"].([]any); r.Status != 200 || len(list) != 1 || list[0].(map[string]any)["id"] != zoe["id"] {
		t.Fatalf("find ZOE: %d %s", r.Status, r.Body)
	}
	r = e.do("GET", "/v1/admin/users?username=nobody", admin, nil)
	if r.Status != 200 || string(r.Body) != `{"users":[]}` {
		t.Fatalf("find nobody: %d %s; want an empty list", r.Status, r.Body)
	}
	r = e.do("GET", "/v1/admin/users/"+zoe["id"].(string), admin, nil)
	if r.Status != 200 || r.JSON(t)["username"] != "Zoe" {
		t.Fatalf("get by id: %d %s", r.Status, r.Body)
	}
	wantProblem(t, e.do("GET", "/v1/admin/users/0d9b7a4c-0000-4000-8000-000000000000", admin, nil), 404, "not_found")
	wantProblem(t, e.do("GET", "/v1/admin/users/not-a-uuid", admin, nil), 404, "not_found")
}

func TestAdminPagesThroughAllUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	admin := e.adminToken() // "root"
	for _, n := range []string{"delta", "Alpha", "charlie", "Echo", "bravo", "foxtrot", "golf"} {
		e.createUser(n, "password123", "")
	}
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		r := e.do("GET", "/v1/admin/users?limit=3&cursor="+cursor, admin, nil)
		if r.Status != 200 {
			t.Fatalf("page %d: %d %s", page, r.Status, r.Body)
		}
		m := r.JSON(t)
		for _, u := range m["users"].([]any) {
			got = append(got, u.(map[string]any)["username"].(string))
		}
		cursor = m["next_cursor"].(string)
		if cursor == "" {
			break
		}
		if page > 5 {
			t.Fatal("pagination does not end")
		}
	}
	want := "Alpha bravo charlie delta Echo foxtrot golf root"
	if strings.Join(got, " ") != want {
		t.Fatalf("all users by page: %v; want %s", got, want)
	}
	if r := e.do("GET", "/v1/admin/users", admin, nil); len(r.JSON(t)["users"].([]any)) != 8 {
		t.Fatalf("default page: %s", r.Body)
	}
	for _, bad := range []string{"limit=0", "limit=501", "limit=abc", "cursor=@@@"} {
		wantProblem(t, e.do("GET", "/v1/admin/users?"+bad, admin, nil), 400, "invalid_request")
	}
}

func TestAdminAccountChangesBiteAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	rootUser, admin := e.admin()
	u := e.createUser("alice", "password123", "")
	t1, _ := e.login("alice", "password123")
	t2, _ := e.login("alice", "password123")
	path := "/v1/admin/users/" + u.ID

	// Disable: every session dies, the password no longer opens it.
	r := e.do("PATCH", path, admin, map[string]any{"disabled": true})
	if r.Status != 200 || r.JSON(t)["disabled"] != true {
		t.Fatalf("disable: %d %s", r.Status, r.Body)
	}
	for _, tok := range []string{t1, t2} {
		wantProblem(t, e.do("GET", "/v1/me", tok, nil), 401, "unauthorized")
	}
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "password123"}), 403, "account_disabled")
	if r := e.do("PATCH", path, admin, map[string]any{"disabled": false}); r.Status != 200 || r.JSON(t)["disabled"] != false {
		t.Fatalf("enable: %d %s", r.Status, r.Body)
	}
	t3, _ := e.login("alice", "password123")

	// Reset the password: every session dies, the new password works.
	if r := e.do("PATCH", path, admin, map[string]any{"password": "reset-password"}); r.Status != 200 {
		t.Fatalf("reset: %d %s", r.Status, r.Body)
	}
	wantProblem(t, e.do("GET", "/v1/me", t3, nil), 401, "unauthorized")
	e.login("alice", "reset-password")
	wantProblem(t, e.do("PATCH", path, admin, map[string]any{"password": "short"}), 400, "invalid_request")
	wantProblem(t, e.do("PATCH", path, admin, map[string]any{"role": "owner"}), 400, "invalid_request")
	wantProblem(t, e.do("PATCH", path, admin, map[string]any{"disabled": "yes"}), 400, "invalid_request")
	wantProblem(t, e.do("PATCH", "/v1/admin/users/0d9b7a4c-0000-4000-8000-000000000000", admin, map[string]any{"disabled": true}), 404, "not_found")
	// An unknown account is 404 before its change is checked (and before a
	// new password is hashed): a bad role or password is not reported first.
	for _, body := range []map[string]any{{"role": "owner"}, {"password": "short"}, {"password": "long-enough-password"}} {
		wantProblem(t, e.do("PATCH", "/v1/admin/users/0d9b7a4c-0000-4000-8000-000000000000", admin, body), 404, "not_found")
	}

	// Promote, then demote: admin rights are read from the record on each request.
	if r := e.do("PATCH", path, admin, map[string]any{"role": "admin"}); r.Status != 200 || r.JSON(t)["role"] != "admin" {
		t.Fatalf("promote: %d %s", r.Status, r.Body)
	}
	aliceTok, _ := e.login("alice", "reset-password")
	if r := e.do("GET", "/v1/admin/users", aliceTok, nil); r.Status != 200 {
		t.Fatalf("new admin: %d", r.Status)
	}
	e.do("PATCH", path, admin, map[string]any{"role": "user"})
	wantProblem(t, e.do("GET", "/v1/admin/users", aliceTok, nil), 403, "forbidden")
	if r := e.do("GET", "/v1/me", aliceTok, nil); r.Status != 200 {
		t.Fatalf("a role change ended the session: %d", r.Status)
	}

	// An admin resetting their own password signs themselves out too.
	if r := e.do("PATCH", "/v1/admin/users/"+rootUser.ID, admin, map[string]any{"password": "root-password-2"}); r.Status != 200 {
		t.Fatalf("own reset: %d %s", r.Status, r.Body)
	}
	wantProblem(t, e.do("GET", "/v1/me", admin, nil), 401, "unauthorized")
}

func TestAdminManagesSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	admin := e.adminToken()
	alice := e.createUser("alice", "password123", "")
	e.createUser("bob", "password123", "")
	a1, a1ID := e.login("alice", "password123")
	a2, _ := e.login("alice", "password123")
	bobTok, bobSID := e.login("bob", "password123")

	r := e.do("GET", "/v1/admin/users/"+alice.ID+"/sessions", admin, nil)
	list := r.JSON(t)["sessions"].([]any)
	if r.Status != 200 || len(list) != 2 {
		t.Fatalf("alice's sessions: %d %s", r.Status, r.Body)
	}
	for _, s := range list {
		if s.(map[string]any)["current"] != false {
			t.Fatalf("current is true in an admin listing: %s", r.Body)
		}
	}
	// Bob's session id under alice: 404, and bob stays signed in.
	wantProblem(t, e.do("DELETE", "/v1/admin/users/"+alice.ID+"/sessions/"+bobSID, admin, nil), 404, "not_found")
	if r := e.do("GET", "/v1/me", bobTok, nil); r.Status != 200 {
		t.Fatalf("bob after a mismatched revoke: %d", r.Status)
	}
	if r := e.do("DELETE", "/v1/admin/users/"+alice.ID+"/sessions/"+a1ID, admin, nil); r.Status != 204 {
		t.Fatalf("revoke one: %d", r.Status)
	}
	wantProblem(t, e.do("GET", "/v1/me", a1, nil), 401, "unauthorized")
	r = e.do("DELETE", "/v1/admin/users/"+alice.ID+"/sessions", admin, nil)
	if r.Status != 200 || r.JSON(t)["revoked"] != float64(1) {
		t.Fatalf("force-logout: %d %s; want revoked 1", r.Status, r.Body)
	}
	wantProblem(t, e.do("GET", "/v1/me", a2, nil), 401, "unauthorized")
	if r := e.do("GET", "/v1/me", bobTok, nil); r.Status != 200 {
		t.Fatalf("force-logout of alice ended bob: %d", r.Status)
	}
	missing := "0d9b7a4c-0000-4000-8000-000000000000"
	for _, p := range []string{"GET /v1/admin/users/%s/sessions", "DELETE /v1/admin/users/%s/sessions", "DELETE /v1/admin/users/%s/sessions/" + bobSID} {
		method, path, _ := strings.Cut(fmt.Sprintf(p, missing), " ")
		wantProblem(t, e.do(method, path, admin, nil), 404, "not_found")
	}
}
