package app_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/redistest"
)

// On a cluster the whole suite runs with users spread over every master, so
// a cross-slot mistake in any script or command fails a test, not production.
func TestClusterSpreadsUsersOverAllMasters(t *testing.T) {
	t.Parallel()
	if !srv.Cluster {
		t.Skip("runs on a cluster (SESSIOND_TEST_CLUSTER=1 or SESSIOND_TEST_CLUSTER_ADDRS)")
	}
	e := newEnv(t, envOpts{})
	masters := map[string]int{}
	for i := range 24 {
		u := e.createUser(fmt.Sprintf("spread%d", i), "password123", "")
		tok, _ := e.login(u.Username, "password123")
		if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
			t.Fatalf("me: %d", r.Status)
		}
		masters[srv.MasterAddr(t, e.Keys.User(u.ID))]++
	}
	if len(masters) != 3 {
		t.Fatalf("users landed on %d masters (%v), want all 3", len(masters), masters)
	}
}

// Kill the master that owns a signed-in user's slot while requests run: in
// the gap requests fail closed (503, never 401), the service recovers by
// itself once the replica is promoted, and a revocation acknowledged just
// before the kill is not undone (REDIS_WAIT_REPLICAS=1: it reached a replica
// before it was acknowledged).
func TestClusterFailoverKeepsRevocations(t *testing.T) {
	t.Parallel()
	srv.RequireReal(t, "kills a cluster master")
	c, err := redistest.StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e := newEnv(t, envOpts{Client: c.Client(t), RedisTimeout: 500 * time.Millisecond, WaitReplicas: 1})
	u := e.createUser("failover", "password123", "")
	revoked, _ := e.login("failover", "password123")
	kept, _ := e.login("failover", "password123")
	if r := e.do("GET", "/v1/me", kept, nil); r.Status != 200 {
		t.Fatalf("before: %d", r.Status)
	}

	var statuses sync.Map
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				r := e.do("GET", "/v1/me", kept, nil)
				n, _ := statuses.LoadOrStore(r.Status, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		}()
	}
	if r := e.do("POST", "/v1/auth/logout", revoked, nil); r.Status != 204 {
		t.Fatalf("logout: %d %s\n%s", r.Status, r.Body, e.Logs.String())
	}
	master := c.Node(c.MasterAddr(t, e.Keys.User(u.ID)))
	master.Stop()
	killed := time.Now()

	eventually(t, 30*time.Second, "served again after the failover", func() bool {
		return time.Since(killed) > 500*time.Millisecond && e.do("GET", "/v1/me", kept, nil).Status == 200
	})
	t.Logf("recovered %s after the kill", time.Since(killed).Round(time.Millisecond))
	stop.Store(true)
	wg.Wait()

	statuses.Range(func(k, v any) bool {
		t.Logf("during the failover: %d × %d", v.(*atomic.Int64).Load(), k)
		if k != 200 && k != 503 {
			t.Errorf("status %d during the failover; want only 200 or 503", k)
		}
		return true
	})
	if _, ok := statuses.Load(503); !ok {
		t.Error("no 503 while the master was down: requests were served from a dead master's data")
	}
	if r := e.do("GET", "/v1/me", revoked, nil); r.Status != 401 {
		t.Fatalf("a revocation acknowledged before the failover was undone: %d", r.Status)
	}
	e.login("failover", "password123")
}
