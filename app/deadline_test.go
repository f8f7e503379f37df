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
	us := newEnv(t, envOpts{BcryptCost: 12, RedisTimeout: 50 * time.Millisecond}).Users
	ctx := context.Background()
	if _, err := us.Create(ctx, "slowhash", "password123", "", audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := us.Authenticate(ctx, "slowhash", "password123", audit.Actor{IP: "127.0.0.1"}); err != nil {
		t.Fatalf("login with a %s bcrypt check and a 50ms Redis deadline: %v", time.Since(start), err)
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
