// Package redisx is the Redis plumbing the stores share: a deadline on every
// call, one error for "Redis could not be reached or refused", a read
// through the client-side cache that still works when Redis is out of
// memory, and the liveness that bounds how stale the cache's answers can be.
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

// Source says where a cached read's answer came from.
type Source uint8

const (
	// Redis: a round trip, the hash not being in the cache (yet).
	Redis Source = iota
	// Cache: the client-side cache, no round trip.
	Cache
	// Unproven: a round trip without the cache, whose connection had not
	// proven itself live within the bound (see Liveness).
	Unproven
)

// CachedHMGet reads fields of a hash through the client-side cache, which
// Redis invalidates the moment the hash changes; a missing hash reads as
// all nils. The cache answers only while live proves its connections
// current at now (nil live: always); otherwise the read goes to Redis, and
// fails closed if Redis cannot answer within timeout. from says which
// answered. Its deadline is lazy: most reads are served from the cache and
// never wait, so they should not pay for a timer.
func CachedHMGet(ctx context.Context, c rueidis.Client, live *Liveness, now time.Time, key string, fields []string, ttl, timeout time.Duration) (vals []rueidis.RedisMessage, from Source, err error) {
	dl := deadline.After(ctx, timeout)
	defer dl.Stop()
	var r rueidis.RedisResult
	if live.Proven(now) {
		r = c.DoCache(dl, c.B().Hmget().Key(key).Field(fields...).Cache(), ttl)
		from = Redis
		if r.IsCacheHit() {
			from = Cache
		}
	} else {
		// A round trip, likely over a link in trouble: the deadline counts
		// from now, not from when rueidis first asks (after waiting, say,
		// for a redial, which would double it).
		dl.Start()
		r = c.Do(dl, c.B().Hmget().Key(key).Field(fields...).Build())
		from = Unproven
	}
	if isOOM(r.Error()) {
		// A cached read is a MULTI, which Redis refuses when out of memory;
		// a plain read still works, so revocations and reads go on.
		r = c.Do(dl, c.B().Hmget().Key(key).Field(fields...).Build())
	}
	vals, err = r.ToArray()
	if err != nil {
		return nil, from, Unavailable("read "+key, err)
	}
	if len(vals) != len(fields) {
		return nil, from, Unavailable("read "+key, fmt.Errorf("%d values for %d fields", len(vals), len(fields)))
	}
	return vals, from, nil
}
