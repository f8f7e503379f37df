package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/tokens"
)

// needRedis skips without redis-server, unless the tests must have it.
func needRedis(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(redistest.RequireEnv) == "1" {
			t.Fatalf("redis-server not on PATH and %s=1", redistest.RequireEnv)
		}
		t.Skip("needs redis-server on PATH")
	}
}

// smokeOpts are the flags of a run small enough for a test.
func smokeOpts(t *testing.T, args ...string) (opts, *strings.Builder) {
	t.Helper()
	o, err := parseFlags(append([]string{"-users", "1", "-tokens", "40", "-concurrency", "4",
		"-sessions", "200", "-revocations", "1", "-logout-all", "100"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	o.out = &out
	return o, &out
}

// fields are the whitespace-separated fields after label on the line that
// starts with it.
func fields(t *testing.T, out, label string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), label); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("no line %q in:\n%s", label, out)
	return nil
}

func positive(t *testing.T, what, s string) {
	t.Helper()
	v, err := strconv.ParseFloat(strings.TrimRight(s, "xmsµ%"), 64)
	if err != nil || v <= 0 {
		t.Errorf("%s: want a positive number, got %q", what, s)
	}
}

// One short in-process round of the comparison, on the shipped defaults:
// every side served, without errors, and the ratios came out.
func TestCompareSmoke(t *testing.T) {
	needRedis(t)
	o, out := smokeOpts(t, "-duration", "300ms", "-rounds", "1")
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	for _, label := range []string{"sessiond (shipped defaults)", "equal-duty (signature only)", "bare (fiber.New, jwt.Parse)"} {
		f := fields(t, out.String(), label)
		positive(t, label+" req/s", f[0])
		positive(t, label+" CPU/req", f[3])
		if errs := f[len(f)-2]; errs != "0" {
			t.Errorf("%s: %s errors", label, errs)
		}
	}
	positive(t, "sessiond / bare", fields(t, out.String(), "sessiond / bare")[0])
	positive(t, "sessiond / equal-duty", fields(t, out.String(), "sessiond / equal-duty")[0])
	if !strings.Contains(out.String(), "logout-all of one user with 100 sessions") {
		t.Errorf("no logout-all line in:\n%s", out)
	}
}

// Two small sizes of -scale: each measured, and on the curve.
func TestScaleSmoke(t *testing.T) {
	needRedis(t)
	o, out := smokeOpts(t, "-scale", "100,300", "-duration", "300ms", "-logging", "discard", "-token-cache-mb", "8")
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "TOKEN_CACHE_MB") && strings.Contains(out.String(), "without effect") {
		t.Errorf("TOKEN_CACHE_MB reported as unread, but the service reads it:\n%s", out)
	}
	_, curve, ok := strings.Cut(out.String(), "\nthe curve")
	if !ok {
		t.Fatalf("no curve in:\n%s", out)
	}
	for _, n := range []string{"100", "300"} {
		f := fields(t, curve, n+" ")
		positive(t, n+" sessions req/s", f[0])
		positive(t, n+" sessions Redis bytes", f[9])
	}
	// The first request of every session touched it.
	if f := fields(t, curve, "100 "); f[3] == "0.0%" {
		t.Errorf("no request touched a session: %q", f)
	}
}

// wrk, given a token file, loads a server in a process of its own and its
// result line is read; built ahead or from the mapped file, every request
// carries a whole token (tokens of different lengths, so records are
// padded), or the server would answer 401 and wrk count errors.
func TestWrkLoad(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("needs wrk on PATH")
	}
	tk, err := tokens.New(tokens.Keyring{Secret: []byte(secret)}, "sessiond", "sessiond")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ts, err := newTokenSet(dir, "t")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 3 {
		tok, err := tk.Sign(tokens.Claims{SessionID: strconv.Itoa(i), UserID: "u" + strings.Repeat("x", 7*i), IssuedAt: now, ExpiresAt: now.Add(time.Hour), Username: "name", AccountCreatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		if err := ts.add(tok); err != nil {
			t.Fatal(err)
		}
	}
	files, err := ts.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer files[0].close()
	ts.close()
	addr, stop, err := bare([]byte(secret), "sessiond", "sessiond")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	lo, err := newWrk(4, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, perRequest := range []bool{false, true} {
		s, err := lo.run(target{addr: addr, path: "/v1/auth/verify", tokens: files[0], perRequest: perRequest}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if s.requests == 0 || s.errors != 0 || s.p99 == 0 || s.loadCPU == 0 {
			t.Errorf("wrk (per request %v): %d requests, %d errors, p99 %s, its CPU %s", perRequest, s.requests, s.errors, s.p99, s.loadCPU)
		}
	}
}

// -touch steady: each size is warmed (every token once, paced over a touch
// interval), the load settles, then measured rounds whose median is the row;
// sessions in use are touched again once an interval, so some measured
// requests touch, but far from all.
func TestScaleSteadySmoke(t *testing.T) {
	needRedis(t)
	// An idle timeout of 8s makes the touch interval 2s: warm-up at least 2s,
	// settling 4s.
	o, out := smokeOpts(t, "-scale", "100,300", "-touch", "steady", "-duration", "3s", "-rounds", "3",
		"-logging", "discard", "-env", "SESSION_IDLE_TIMEOUT=8s")
	start := time.Now()
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 2*(2+4+3)*time.Second {
		t.Errorf("the run took %s: shorter than two sizes' warm-up, settling and rounds", took)
	}
	if n := strings.Count(out.String(), "median of 3 measured rounds"); n != 2 {
		t.Errorf("%d sizes report their rounds, want 2:\n%s", n, out)
	}
	_, curve, ok := strings.Cut(out.String(), "\nthe curve")
	if !ok {
		t.Fatalf("no curve in:\n%s", out)
	}
	f := fields(t, curve, "300 ")
	positive(t, "300 sessions req/s", f[0])
	positive(t, "300 sessions against 100", f[len(f)-1])
	touched, err := strconv.ParseFloat(strings.TrimSuffix(f[3], "%"), 64)
	if err != nil || touched <= 0 || touched >= 50 {
		t.Errorf("300 sessions in a steady state: %q of requests touched, want some but not most", f[3])
	}
	if _, err := parseFlags([]string{"-touch", "steady"}); err == nil {
		t.Error("-touch steady without -scale was accepted")
	}
}
