package redisx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// Ping reports whether Redis answers within timeout (for /readyz).
func Ping(ctx context.Context, c rueidis.Client, timeout time.Duration) error {
	ctx, cancel := Timeout(ctx, timeout)
	defer cancel()
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		return Unavailable("ping", err)
	}
	return nil
}

// ErrEvictionPolicy means Redis may evict keys under memory pressure.
var ErrEvictionPolicy = errors.New("Redis maxmemory-policy must be noeviction")

// CheckEvictionPolicy reads Redis's maxmemory-policy on every node. Anything
// but noeviction is ErrEvictionPolicy: an LRU/LFU policy silently drops
// session hashes or a user's index, after which "log out everywhere" misses
// sessions (fail open). Where CONFIG is not allowed (managed Redis) it returns
// the CONFIG error, for the caller to warn about.
func CheckEvictionPolicy(ctx context.Context, c rueidis.Client, timeout time.Duration) error {
	ctx, cancel := Timeout(ctx, timeout)
	defer cancel()
	// Every node of a cluster: one evicting shard loses its users' sessions.
	for addr, node := range c.Nodes() {
		kv, err := node.Do(ctx, node.B().ConfigGet().Parameter("maxmemory-policy").Build()).AsStrMap()
		if err != nil {
			return fmt.Errorf("read maxmemory-policy of %s: %w", addr, err)
		}
		if policy := kv["maxmemory-policy"]; policy != "noeviction" {
			return fmt.Errorf("%w (%s has %q): set it with CONFIG SET maxmemory-policy noeviction or in redis.conf",
				ErrEvictionPolicy, addr, policy)
		}
	}
	return nil
}
