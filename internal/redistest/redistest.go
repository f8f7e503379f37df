// Package redistest starts a real redis-server for tests: one per test
// package (from TestMain), on a free loopback port in a temp dir, with a
// unique key prefix per test so tests can run in parallel.
//
// Where no redis-server is on PATH it falls back to the embedded miniredis and
// tests that need real-Redis behaviour skip by name, saying why. With
// SESSIOND_TEST_REQUIRE_REDIS=1 (as CI sets it) the fallback is a failure.
// Tests and the bench only: nothing the service runs imports it.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/flatcache"
)

// RequireEnv, when "1", makes a missing redis-server a failure instead of a
// fallback to the embedded store.
const RequireEnv = "SESSIOND_TEST_REQUIRE_REDIS"

// Server is a Redis for one test package.
type Server struct {
	// Addr is host:port.
	Addr string
	// Real is false when this is the embedded fallback.
	Real bool

	// Cluster is true for a Redis Cluster; Nodes are then its processes
	// (nil when the cluster was started outside the tests).
	Cluster bool
	Nodes   []*Server

	dir   string
	args  []string // extra redis-server arguments
	cmd   *exec.Cmd
	mini  *miniredis.Miniredis
	addrs []string // every node of a cluster
}

var seq atomic.Int64

// Main starts a Server for a test package, runs its tests and stops it.
// Use it as: func TestMain(m *testing.M) { redistest.Main(m, &srv) }.
//
// With SESSIOND_TEST_CLUSTER_ADDRS set (comma-separated host:port of a running
// Redis Cluster, as .ci/run starts once per run) or SESSIOND_TEST_CLUSTER=1
// (start one for this package) the package runs against a Redis Cluster.
func Main(m *testing.M, srv **Server) {
	var s *Server
	var err error
	switch {
	case os.Getenv(ClusterAddrsEnv) != "":
		s = &Server{Real: true, Cluster: true, addrs: strings.Split(os.Getenv(ClusterAddrsEnv), ",")}
		s.Addr = s.addrs[0]
	case os.Getenv(ClusterEnv) == "1":
		s, err = StartCluster()
	default:
		s, err = Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "redistest:", err)
		os.Exit(1)
	}
	*srv = s
	code := m.Run()
	s.Close()
	os.Exit(code)
}

// Start starts redis-server, or the embedded fallback when it is missing and
// RequireEnv is not set.
func Start() (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			return nil, fmt.Errorf("redis-server not on PATH and %s=1", RequireEnv)
		}
		fmt.Fprintln(os.Stderr, "redistest: redis-server not on PATH; using the embedded store, tests that need real Redis will skip")
		m, err := miniredis.Run()
		if err != nil {
			return nil, err
		}
		return &Server{Addr: m.Addr(), mini: m}, nil
	}
	return startNode()
}

// startNode starts one redis-server with extra arguments on a free port in
// a new temp dir.
func startNode(args ...string) (*Server, error) {
	dir, err := os.MkdirTemp("", "sessiond-redis-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Real: true, dir: dir, args: args}
	if err := s.Restart(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Restart starts redis-server again on the same port after Stop (with no
// data: it keeps nothing on disk).
func (s *Server) Restart() error {
	if !s.Real {
		return fmt.Errorf("restart needs a real redis-server")
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command("redis-server", append([]string{
		"--port", port, "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction",
		"--logfile", filepath.Join(s.dir, "redis.log")}, s.args...)...)
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond); err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return fmt.Errorf("redis-server did not start on %s: %s", s.Addr, log)
}

// Stop kills redis-server (as a crash would) and waits for it to exit.
func (s *Server) Stop() {
	for _, n := range s.Nodes {
		n.Stop()
	}
	if s.mini != nil {
		s.mini.Close()
		return
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Close stops the server for good and removes its directory.
func (s *Server) Close() {
	s.Stop()
	for _, n := range s.Nodes {
		n.Close()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// Pause freezes redis-server (SIGSTOP): connections stay open but nothing
// answers, as with a wedged or overloaded server.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume undoes Pause.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return fmt.Errorf("no redis-server process")
	}
	return s.cmd.Process.Signal(sig)
}

// RequireSingle skips the test, by name and with reason, on a cluster.
func (s *Server) RequireSingle(t testing.TB, why string) {
	t.Helper()
	if s.Cluster {
		t.Skipf("needs a single redis-server (%s); running on a cluster", why)
	}
}

// RequireReal skips the test, by name and with reason, when this is the
// embedded fallback.
func (s *Server) RequireReal(t testing.TB, why string) {
	t.Helper()
	if !s.Real {
		t.Skipf("needs a real redis-server (%s); none on PATH", why)
	}
}

// Options are rueidis options for this server: client-side caching on real
// Redis, and what the embedded store needs otherwise.
func (s *Server) Options() rueidis.ClientOption {
	o := rueidis.ClientOption{InitAddress: []string{s.Addr}, ForceSingleClient: true,
		ConnWriteTimeout: time.Second, ClientSetInfo: rueidis.DisableClientSetInfo}
	if s.Cluster {
		o.InitAddress, o.ForceSingleClient = s.addrs, false
	}
	if !s.Real {
		o.DisableCache = true
	}
	// The client-side cache the service ships (redisx.NewClient).
	o.NewCacheStoreFn = flatcache.New
	return o
}

// Client returns a new client to this server, closed at the end of the test.
func (s *Server) Client(t testing.TB) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(s.Options())
	if err != nil {
		t.Fatalf("redis client: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// run tells this test process's prefixes from another's: a cluster started
// outside the tests (SESSIOND_TEST_CLUSTER_ADDRS) keeps every run's keys,
// and a second run's t1.TestX: would find the first's accounts.
var run = strconv.FormatInt(time.Now().UnixNano()%1e9, 36)

// Prefix returns a key prefix no other test uses, in this run or another.
func Prefix(t testing.TB) string {
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return fmt.Sprintf("t%s.%d.%s:", run, seq.Add(1), name)
}

// Do runs one raw command on a fresh connection, for assertions on what is in
// Redis (TTLs, key counts) that the service's own API does not expose.
func (s *Server) Do(t testing.TB, args ...string) rueidis.RedisResult {
	t.Helper()
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.Cluster && len(args) > 1 && !keyless[strings.ToUpper(args[0])] {
		// Route by the key, as a cluster needs.
		return c.Do(ctx, c.B().Arbitrary(args[0]).Keys(args[1]).Args(args[2:]...).Build())
	}
	return c.Do(ctx, c.B().Arbitrary(args[0]).Args(args[1:]...).Build())
}

// keyless commands take no key as their first argument.
var keyless = map[string]bool{"CONFIG": true, "KEYS": true, "INFO": true, "SCRIPT": true, "DBSIZE": true,
	"PING": true, "CLUSTER": true, "ROLE": true, "DEBUG": true}
