package server_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/server"
)

func getenv(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestConfigDefaults(t *testing.T) {
	c, err := server.LoadConfig(getenv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != "127.0.0.1:3000" || c.RedisURL != "" || c.JWTIssuer != "sessiond" || c.JWTAudience != "sessiond" ||
		c.IdleTimeout != 720*time.Hour || c.MaxLifetime != 2160*time.Hour || c.MaxSessionsPerUser != 50 ||
		c.LoginMaxFailures != 10 || c.LoginFailureWindow != 15*time.Minute || c.BcryptCost != 12 ||
		c.KeyPrefix != "sd:" || len(c.TrustedProxies) != 0 {
		t.Fatalf("defaults differ from the README: %+v", c)
	}
	// Embedded mode (its admin password printed) stays on loopback; with
	// Redis the service listens on every interface.
	withRedis, err := server.LoadConfig(getenv(map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "JWT_SECRET": strings.Repeat("k", 32)}))
	if err != nil || withRedis.ListenAddr != ":3000" {
		t.Fatalf("LISTEN_ADDR default with REDIS_URL: %q, %v", withRedis.ListenAddr, err)
	}
	// Embedded mode makes up an Ed25519 signing key per run.
	if !c.KeyGenerated || len(c.Keys.PrivateKeys) != 1 || c.Keys.Secret != nil {
		t.Fatalf("embedded mode keys: generated=%v %d private keys", c.KeyGenerated, len(c.Keys.PrivateKeys))
	}
	c2, _ := server.LoadConfig(getenv(nil))
	if c.Keys.PrivateKeys[0].Equal(c2.Keys.PrivateKeys[0]) {
		t.Fatal("two runs generated the same key")
	}
}

func TestConfigValues(t *testing.T) {
	c, err := server.LoadConfig(getenv(map[string]string{
		"LISTEN_ADDR": "127.0.0.1:8080", "REDIS_URL": "rediss://u:p@redis.example:6380/2",
		"JWT_SECRET": strings.Repeat("k", 32), "SESSION_IDLE_TIMEOUT": "1h", "SESSION_MAX_LIFETIME": "24h",
		"MAX_SESSIONS_PER_USER": "0", "BCRYPT_COST": "10", "TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32")}
	if c.IdleTimeout != time.Hour || c.MaxLifetime != 24*time.Hour || c.MaxSessionsPerUser != 0 ||
		c.BcryptCost != 10 || len(c.TrustedProxies) != 2 || c.TrustedProxies[0] != want[0] || c.TrustedProxies[1] != want[1] ||
		c.KeyGenerated || string(c.Keys.Secret) != strings.Repeat("k", 32) {
		t.Fatalf("got %+v", c)
	}
}

// A bad value stops start-up with an error naming the variable, and never
// echoes a secret.
func TestConfigRejectsBadValues(t *testing.T) {
	secret := strings.Repeat("s", 32)
	for _, c := range []struct {
		vars    map[string]string
		varName string
	}{
		{map[string]string{"SESSION_IDLE_TIMEOUT": "30 days"}, "SESSION_IDLE_TIMEOUT"},
		{map[string]string{"SESSION_MAX_LIFETIME": "-1h"}, "SESSION_MAX_LIFETIME"},
		{map[string]string{"LOGIN_FAILURE_WINDOW": "0"}, "LOGIN_FAILURE_WINDOW"},
		{map[string]string{"MAX_SESSIONS_PER_USER": "-1"}, "MAX_SESSIONS_PER_USER"},
		{map[string]string{"LOGIN_MAX_FAILURES": "ten"}, "LOGIN_MAX_FAILURES"},
		{map[string]string{"BCRYPT_COST": "9"}, "BCRYPT_COST"},
		{map[string]string{"BCRYPT_COST": "15"}, "BCRYPT_COST"},
		{map[string]string{"JWT_SECRET": "short-secret"}, "JWT_SECRET"},
		{map[string]string{"REDIS_URL": "redis://localhost:6379"}, "JWT_SECRET"},
		{map[string]string{"REDIS_URL": "localhost:6379", "JWT_SECRET": secret}, "REDIS_URL"},
		{map[string]string{"REDIS_URL": "redis://:hunter2hunter2@host:notaport", "JWT_SECRET": secret}, "REDIS_URL"},
		{map[string]string{"REDIS_URL": "http://host:6379", "JWT_SECRET": secret}, "REDIS_URL"},
		{map[string]string{"TRUSTED_PROXIES": "10.0.0.0/33"}, "TRUSTED_PROXIES"},
		{map[string]string{"TRUSTED_PROXIES": "proxy.internal"}, "TRUSTED_PROXIES"},
		{map[string]string{"LISTEN_ADDR": "3000"}, "LISTEN_ADDR"},
		{map[string]string{"ADMIN_USERNAME": "root"}, "ADMIN_PASSWORD"},
	} {
		t.Run(c.varName, func(t *testing.T) {
			_, err := server.LoadConfig(getenv(c.vars))
			var ce *server.ConfigError
			if !errors.As(err, &ce) || ce.Var != c.varName {
				t.Fatalf("%v: got %v, want an error naming %s", c.vars, err, c.varName)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks the Redis password: %v", err)
			}
		})
	}
}
