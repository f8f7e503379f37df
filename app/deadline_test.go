package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/users"
)

// The Redis deadline bounds each Redis call, not the bcrypt work between
// them: a login whose hash takes longer than REDIS_TIMEOUT still succeeds.
func TestRedisDeadlineExcludesBcrypt(t *testing.T) {
	t.Parallel()
	// Cost 12 is about 250ms of bcrypt without -race and seconds with it,
	// past the deadline; the deadline itself must still hold a Redis round
	// trip on a loaded machine (50ms did not, on a cluster under -race: the
	// login limit's check ran out before any bcrypt).
	us := newEnv(t, envOpts{BcryptCost: 12, RedisTimeout: 150 * time.Millisecond}).Users
	ctx := context.Background()
	if _, err := us.Create(ctx, "slowhash", "password123", "", audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := us.Authenticate(ctx, "slowhash", "password123", audit.Actor{IP: "127.0.0.1"}); err != nil {
		t.Fatalf("login with a %s bcrypt check and a 150ms Redis deadline: %v", time.Since(start), err)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("the login took %s, within the deadline: this shows nothing", took)
	}
	if _, err := us.CheckPassword(ctx, mustFind(t, us, "slowhash"), "password123", audit.Actor{IP: "192.0.2.1"}); err != nil {
		t.Fatalf("password check: %v", err)
	}
}

func mustFind(t *testing.T, us *users.Store, name string) string {
	t.Helper()
	u, err := us.FindByUsername(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}
