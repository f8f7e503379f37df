package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Cluster switches.
const (
	// ClusterEnv "1" makes Main start a Redis Cluster for the package.
	ClusterEnv = "SESSIOND_TEST_CLUSTER"
	// ClusterAddrsEnv names the nodes of a running cluster to use instead.
	ClusterAddrsEnv = "SESSIOND_TEST_CLUSTER_ADDRS"
)

// StartCluster starts a Redis Cluster on loopback: three masters and three
// replicas, made with redis-cli --cluster create.
func StartCluster() (*Server, error) {
	if _, err := exec.LookPath("redis-cli"); err != nil {
		return nil, fmt.Errorf("a cluster needs redis-cli: %w", err)
	}
	c := &Server{Real: true, Cluster: true}
	for range 6 {
		n, err := startNode("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0")
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
		c.addrs = append(c.addrs, n.Addr)
	}
	c.Addr = c.addrs[0]
	out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, c.addrs...),
		"--cluster-replicas", "1", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitClusterOK(30 * time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// WaitClusterOK waits until every running node reports cluster_state:ok,
// all 16384 slots are served and every master's replica is online.
func (s *Server) WaitClusterOK(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ok := true
		for _, addr := range s.addrs {
			out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", port(addr), "cluster", "info").Output()
			if err != nil {
				continue // a stopped node
			}
			if !strings.Contains(string(out), "cluster_state:ok") || !strings.Contains(string(out), "cluster_slots_ok:16384") {
				ok = false
			}
			// A master whose replica is still syncing cannot confirm a WAIT.
			repl, _ := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", port(addr), "info", "replication").Output()
			if strings.Contains(string(repl), "role:master") && s.Nodes != nil && !strings.Contains(string(repl), "state=online") {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ok within %s", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// Keys lists the keys matching pattern on every node that is a master (on
// a single server, that server).
func (s *Server) Keys(t testing.TB, pattern string) []string {
	t.Helper()
	addrs := []string{s.Addr}
	if s.Cluster {
		addrs = s.addrs
	}
	var all []string
	for _, addr := range addrs {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true,
			DisableCache: true, ClientSetInfo: rueidis.DisableClientSetInfo})
		if err != nil {
			continue // a stopped node
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		role, _ := c.Do(ctx, c.B().Role().Build()).ToArray()
		isMaster := len(role) > 0
		if isMaster {
			r, _ := role[0].ToString()
			isMaster = r == "master"
		}
		if isMaster || !s.Cluster {
			keys, err := c.Do(ctx, c.B().Keys().Pattern(pattern).Build()).AsStrSlice()
			if err != nil {
				cancel()
				c.Close()
				t.Fatalf("KEYS on %s: %v", addr, err)
			}
			all = append(all, keys...)
		}
		cancel()
		c.Close()
	}
	return all
}

// MasterAddr returns the address of the master serving key's slot.
func (s *Server) MasterAddr(t testing.TB, key string) string {
	t.Helper()
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	slot, err := c.Do(ctx, c.B().ClusterKeyslot().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	shards, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards {
		f, _ := sh.ToArray()
		lo, _ := f[0].AsInt64()
		hi, _ := f[1].AsInt64()
		if slot >= lo && slot <= hi {
			m, _ := f[2].ToArray()
			p, _ := m[1].AsInt64()
			return net.JoinHostPort("127.0.0.1", strconv.FormatInt(p, 10))
		}
	}
	t.Fatalf("no master serves slot %d", slot)
	return ""
}

// Node returns the node process listening on addr (nil when the cluster was
// not started by the tests).
func (s *Server) Node(addr string) *Server {
	for _, n := range s.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Sentinel is a master, its replica and one sentinel watching them as
// master set "sd".
type Sentinel struct {
	Master, Replica, Sentinel *Server
}

// StartSentinel starts a master, a replica of it and a sentinel.
func StartSentinel() (*Sentinel, error) {
	var out Sentinel
	var err error
	if out.Master, err = startNode(); err != nil {
		return nil, err
	}
	if out.Replica, err = startNode("--replicaof", "127.0.0.1", port(out.Master.Addr)); err != nil {
		out.Stop()
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sessiond-sentinel-")
	if err != nil {
		out.Stop()
		return nil, err
	}
	p, err := freePort()
	if err != nil {
		out.Stop()
		return nil, err
	}
	conf := fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor sd 127.0.0.1 %s 1\nsentinel down-after-milliseconds sd 1000\n",
		p, port(out.Master.Addr))
	if err := os.WriteFile(dir+"/sentinel.conf", []byte(conf), 0o600); err != nil {
		out.Stop()
		return nil, err
	}
	sen := exec.Command("redis-server", dir+"/sentinel.conf", "--sentinel", "--logfile", dir+"/sentinel.log")
	if err := sen.Start(); err != nil {
		out.Stop()
		return nil, err
	}
	out.Sentinel = &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), Real: true, dir: dir, cmd: sen}
	// Ready when the sentinel names the master.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		got, _ := exec.Command("redis-cli", "-p", strconv.Itoa(p), "sentinel", "get-master-addr-by-name", "sd").Output()
		if strings.Contains(string(got), port(out.Master.Addr)) {
			return &out, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	out.Stop()
	return nil, fmt.Errorf("sentinel did not come up on port %d", p)
}

// Stop stops all three and removes their directories.
func (s *Sentinel) Stop() {
	for _, n := range []*Server{s.Sentinel, s.Replica, s.Master} {
		if n != nil {
			n.Close()
		}
	}
}
