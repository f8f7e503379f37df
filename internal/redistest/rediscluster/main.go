// Command rediscluster starts a Redis Cluster on loopback (three masters,
// three replicas) for a test run, prints its node addresses on one line as
// SESSIOND_TEST_CLUSTER_ADDRS wants them, and stops it on SIGTERM or SIGINT.
// .ci/run uses it to start the cluster once per run.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sessiond/sessiond/internal/redistest"
)

func main() {
	c, err := redistest.StartCluster()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rediscluster:", err)
		os.Exit(1)
	}
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	fmt.Println(strings.Join(addrs, ","))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	c.Close()
}
