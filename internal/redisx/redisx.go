// Package redisx is the Redis plumbing the stores share: a deadline on every
// call, one error for "Redis could not be reached or refused", and a read
// through the client-side cache that still works when Redis is out of memory.
// It knows nothing about sessions, accounts or HTTP.
package redisx

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/deadline"
	"github.com/sessiond/sessiond/internal/errcode"
)

// ErrUnavailable means Redis could not be reached in time or refused the
// command: requests that need it fail closed (503).
var ErrUnavailable = errcode.New(errcode.Unavailable, "the session store is unreachable; try again shortly")

// Unavailable wraps a Redis failure of op as ErrUnavailable; the cause's
// text stays in the error for the logs. A nil cause (a reply that was no
// error but not the one expected) is still unavailable.
func Unavailable(op string, err error) error {
	if err == nil {
		return fmt.Errorf("%s: %w", op, ErrUnavailable)
	}
	// Both wrapped: callers answer 503 by the one, metrics tell a timeout
	// (context.DeadlineExceeded) from a refusal by the other.
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// Timeout bounds a Redis call: rueidis retries reads until the context ends,
// so without a deadline a request would hang while Redis is down.
func Timeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// isOOM reports whether Redis refused a command for want of memory.
func isOOM(err error) bool {
	e, ok := rueidis.IsRedisErr(err)
	return ok && strings.HasPrefix(e.Error(), "OOM")
}

// CachedHMGet reads fields of a hash through the client-side cache, which
// Redis invalidates the moment the hash changes; a missing hash reads as
// all nils. hit says whether the cache answered. Its deadline is lazy: most
// reads are served from the cache and never wait, so they should not pay for
// a timer.
func CachedHMGet(ctx context.Context, c rueidis.Client, key string, fields []string, ttl, timeout time.Duration) (vals []rueidis.RedisMessage, hit bool, err error) {
	dl := deadline.After(ctx, timeout)
	defer dl.Stop()
	r := c.DoCache(dl, c.B().Hmget().Key(key).Field(fields...).Cache(), ttl)
	if isOOM(r.Error()) {
		// A cached read is a MULTI, which Redis refuses when out of memory;
		// a plain read still works, so revocations and reads go on.
		r = c.Do(dl, c.B().Hmget().Key(key).Field(fields...).Build())
	}
	vals, err = r.ToArray()
	if err != nil {
		return nil, false, Unavailable("read "+key, err)
	}
	if len(vals) != len(fields) {
		return nil, false, Unavailable("read "+key, fmt.Errorf("%d values for %d fields", len(vals), len(fields)))
	}
	return vals, r.IsCacheHit(), nil
}
