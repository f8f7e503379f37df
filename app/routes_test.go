package app_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// scrapeMetrics reads a replica's metrics as /metrics serves them.
func scrapeMetrics(t *testing.T, e *env) string {
	t.Helper()
	if e.Server.Metrics == nil {
		t.Fatal("the replica has no metrics: set METRICS_ADDR")
	}
	rec := httptest.NewRecorder()
	e.Server.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// sample is the value of one sample line (name and labels as printed), or ""
// when there is none.
func sample(metrics, name string) string {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// A request the token check refuses is counted under its route's pattern,
// like any other: never under the prefix the check used to run on.
func TestRefusedRequestsAreCountedByRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{Env: map[string]string{"METRICS_ADDR": "127.0.0.1:0"}})
	u := e.createUser("alice", "password123", "")
	tok, _ := e.login("alice", "password123")
	wantProblem(t, e.do("GET", "/v1/me", "", nil), 401, "unauthorized")
	wantProblem(t, e.do("GET", "/v1/me", "not-a-token", nil), 401, "unauthorized")
	wantProblem(t, e.do("DELETE", "/v1/sessions/7b0a5d0e-1111-4222-8333-444444444444", "", nil), 401, "unauthorized")
	wantProblem(t, e.do("GET", "/v1/admin/users/"+u.ID, tok, nil), 403, "forbidden")
	wantProblem(t, e.do("GET", "/v1/nothing/here", "", nil), 404, "not_found")
	m := scrapeMetrics(t, e)
	for name, want := range map[string]string{
		`sessiond_http_requests_total{method="GET",route="/v1/me",status="401"}`:                 "2",
		`sessiond_http_requests_total{method="DELETE",route="/v1/sessions/:id",status="401"}`:    "1",
		`sessiond_http_requests_total{method="GET",route="/v1/admin/users/:id",status="403"}`:    "1",
		`sessiond_http_requests_total{method="GET",route="unmatched",status="404"}`:              "1",
		`sessiond_http_request_duration_seconds_count{method="GET",route="/v1/me"}`:              "2",
		`sessiond_http_request_duration_seconds_count{method="DELETE",route="/v1/sessions/:id"}`: "1",
	} {
		if got := sample(m, name); got != want {
			t.Errorf("%s = %q, want %s", name, got, want)
		}
	}
	for _, line := range strings.Split(m, "\n") {
		if strings.Contains(line, `route="/v1"`) || strings.Contains(line, `route="/v1/admin"`) {
			t.Errorf("a request counted under a prefix, not its route: %s", line)
		}
	}
}

// A path of the API asked with a method it never takes is 405 with Allow,
// before any token is asked for; an unknown path stays 404.
func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{Env: map[string]string{"METRICS_ADDR": "127.0.0.1:0"}})
	_, admin := e.admin()
	for _, c := range []struct{ method, path, token, allow string }{
		{"POST", "/v1/me", "", "GET, HEAD"},
		{"POST", "/v1/me", admin, "GET, HEAD"},
		{"DELETE", "/v1/me/", "", "GET, HEAD"},
		{"GET", "/v1/auth/login", "", "POST"},
		{"PUT", "/v1/sessions", "", "DELETE, GET, HEAD"},
		{"GET", "/v1/sessions/7b0a5d0e-1111-4222-8333-444444444444", "", "DELETE"},
		{"POST", "/v1/admin/users/7b0a5d0e-1111-4222-8333-444444444444", "", "DELETE, GET, HEAD, PATCH"},
		{"PATCH", "/V1/ADMIN/USERS", "", "GET, HEAD, POST"},
		{"DELETE", "/healthz", "", "GET, HEAD"},
	} {
		r := e.do(c.method, c.path, c.token, nil)
		wantProblem(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
		if got := r.Header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
	}
	for _, path := range []string{"/v1/me/nothing", "/v1/sessions//x", "/v1", "/v2/me"} {
		wantProblem(t, e.do("POST", path, "", nil), 404, "not_found")
	}
	// The answers a route does give are unchanged.
	if r := e.do("GET", "/v1/me", admin, nil); r.Status != 200 {
		t.Fatalf("GET /v1/me: %d %s", r.Status, r.Body)
	}
	m := scrapeMetrics(t, e)
	if got := sample(m, `sessiond_http_requests_total{method="POST",route="/v1/me",status="405"}`); got != "2" {
		t.Errorf("405s of POST /v1/me counted %q, want 2:\n%s", got, m)
	}
}
