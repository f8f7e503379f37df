package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/redistest"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

// A bad value stops start-up with exit status 2 and one line naming the variable.
func TestServeRejectsBadConfig(t *testing.T) {
	for _, c := range []struct{ name, value string }{
		{"SESSION_IDLE_TIMEOUT", "forever"},
		{"JWT_SECRET", "too-short"},
		{"REDIS_URL", "not a url"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(c.name, c.value)
			if c.name == "REDIS_URL" {
				t.Setenv("JWT_SECRET", strings.Repeat("x", 32))
			}
			var stderr bytes.Buffer
			code := run(nil, strings.NewReader(""), &bytes.Buffer{}, &stderr)
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], c.name) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and one line naming %s", code, stderr.String(), c.name)
			}
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"frobnicate"}, nil, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "frobnicate") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

// Operators create accounts with the password on stdin, never in argv.
func TestUserAdd(t *testing.T) {
	prefix := redistest.Prefix(t)
	t.Setenv("REDIS_URL", "redis://"+srv.Addr+"/0")
	t.Setenv("JWT_SECRET", strings.Repeat("x", 32))
	t.Setenv("REDIS_KEY_PREFIX", prefix)
	t.Setenv("BCRYPT_COST", "10")
	if !srv.Real {
		t.Setenv("REDIS_URL", "redis://"+srv.Addr+"/0?client_cache=0")
	}

	var out, errb bytes.Buffer
	code := run([]string{"user", "add", "--username", "Ops", "--role", "admin"}, strings.NewReader("operator-password\n"), &out, &errb)
	if code != 0 || !strings.Contains(out.String(), `admin "Ops"`) {
		t.Fatalf("exit %d, out %q, err %q", code, out.String(), errb.String())
	}
	if strings.Contains(out.String()+errb.String(), "operator-password") {
		t.Fatal("the password was echoed")
	}
	errb.Reset()
	if code := run([]string{"user", "add", "--username", "ops"}, strings.NewReader("operator-password\n"), &out, &errb); code != 1 || !strings.Contains(errb.String(), "taken") {
		t.Fatalf("duplicate: exit %d, err %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"user", "add", "--username", "shorty"}, strings.NewReader("short\n"), &out, &errb); code != 2 || !strings.Contains(errb.String(), "at least 8") {
		t.Fatalf("short password: exit %d, err %q", code, errb.String())
	}
}

// `go run .` with no configuration serves on the embedded store and prints
// the generated admin password once. SIGTERM lets an in-flight request finish,
// refuses new connections, and exits 0.
func TestServeEmbeddedAndGracefulShutdown(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sessiond")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	cmd := exec.Command(bin)
	// Cost 14 makes a login take about a second: long enough to be in flight
	// when SIGTERM arrives.
	cmd.Env = append(os.Environ(), "LISTEN_ADDR="+addr, "BCRYPT_COST=14", "REDIS_URL=", "JWT_SECRET=", "ADMIN_USERNAME=", "ADMIN_PASSWORD=")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var mu sync.Mutex
	var log strings.Builder
	password := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			log.WriteString(line + "\n")
			mu.Unlock()
			if _, pw, ok := strings.Cut(line, "with password "); ok {
				password <- pw
			}
		}
	}()
	logs := func() string { mu.Lock(); defer mu.Unlock(); return log.String() }

	var pw string
	select {
	case pw = <-password:
	case <-time.After(30 * time.Second):
		t.Fatalf("no admin password printed:\n%s", logs())
	}
	base := "http://" + addr
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := http.Get(base + "/healthz")
		if err == nil {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	inflight := make(chan int, 1)
	go func() {
		body := fmt.Sprintf(`{"username":"admin","password":%q}`, pw)
		r, err := http.Post(base+"/v1/auth/login", "application/json", strings.NewReader(body))
		if err != nil {
			inflight <- -1
			return
		}
		r.Body.Close()
		inflight <- r.StatusCode
	}()
	time.Sleep(300 * time.Millisecond) // the login is now in bcrypt
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := <-inflight; code != 201 {
		t.Fatalf("in-flight login during shutdown: %d, want 201\n%s", code, logs())
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit within 15s of SIGTERM")
	}
	<-done
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("still answering after exit")
	}
	out := logs()
	if !strings.Contains(out, "embedded in-memory store") {
		t.Errorf("start-up output lacks the embedded-store warning:\n%s", out)
	}
	if n := strings.Count(out, "with password"); n != 1 {
		t.Errorf("admin password printed %d times, want once", n)
	}
}
