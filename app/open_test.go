package app_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/server"
)

func openConfig(t *testing.T, redisAddr string, extra map[string]string) server.Config {
	t.Helper()
	vars := map[string]string{"REDIS_URL": "redis://" + redisAddr + "/0", "JWT_SECRET": string(testSecret),
		"BCRYPT_COST": "10", "REDIS_KEY_PREFIX": "open:"}
	for k, v := range extra {
		vars[k] = v
	}
	cfg, err := server.LoadConfig(getenv(vars))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Under an LRU/LFU policy Redis may evict a user's index and "log out
// everywhere" would miss sessions: refuse to start rather than fail open.
func TestOpenRefusesEvictingRedis(t *testing.T) {
	t.Parallel()
	rs, _ := ownRedis(t, "sets maxmemory-policy")
	rs.Do(t, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
	_, err := server.Open(context.Background(), openConfig(t, rs.Addr, nil), server.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if !errors.Is(err, redisx.ErrEvictionPolicy) || !strings.Contains(err.Error(), "allkeys-lru") {
		t.Fatalf("Open on allkeys-lru: %v; want a refusal naming the policy", err)
	}
}

// ADMIN_USERNAME/ADMIN_PASSWORD create the admin once; later starts (or
// other replicas) leave it, and its password, as they are.
func TestOpenBootstrapsAdminOnce(t *testing.T) {
	t.Parallel()
	rs, _ := ownRedis(t, "a fresh server to start on")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	first := openConfig(t, rs.Addr, map[string]string{"ADMIN_USERNAME": "boss", "ADMIN_PASSWORD": "first-password"})
	second := openConfig(t, rs.Addr, map[string]string{"ADMIN_USERNAME": "boss", "ADMIN_PASSWORD": "other-password"})
	for _, cfg := range []server.Config{first, second} {
		s, err := server.Open(context.Background(), cfg, server.Options{Log: log})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	s, err := server.Open(context.Background(), first, server.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := s.Users.Authenticate(context.Background(), "boss", "first-password", audit.Actor{IP: "127.0.0.1"})
	if err != nil || u.Role != "admin" {
		t.Fatalf("bootstrapped admin: %+v, %v", u, err)
	}
	page, _, err := s.Users.List(context.Background(), "", 10)
	if err != nil || len(page) != 1 {
		t.Fatalf("users after three starts: %d (%v), want 1", len(page), err)
	}
}

// REDIS_URL naming a sentinel and a master set (rueidis's master_set form):
// the service finds the master through the sentinel and works as on one node.
func TestOpenThroughSentinel(t *testing.T) {
	t.Parallel()
	srv.RequireReal(t, "runs redis-server as a sentinel")
	sent, err := redistest.StartSentinel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sent.Stop)
	cfg := openConfig(t, sent.Sentinel.Addr, nil)
	cfg.RedisURL = "redis://" + sent.Sentinel.Addr + "/0?master_set=sd"
	s, err := server.Open(context.Background(), cfg, server.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := s.Users.Create(context.Background(), "sentinel-user", "password123", "", audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, App: s.App}
	tok, _ := e.login("sentinel-user", "password123")
	if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
		t.Fatalf("me through sentinel: %d %s", r.Status, r.Body)
	}
	// The data is on the master the sentinel named.
	if n, _ := sent.Master.Do(t, "EXISTS", "open:username:sentinel-user").AsInt64(); n != 1 {
		t.Fatal("the account is not on the sentinel's master")
	}
}

// rediss:// with a private CA (REDIS_CA_CERT): the certificate is verified,
// and a server whose CA is not trusted is refused.
func TestOpenOverTLS(t *testing.T) {
	t.Parallel()
	srv.RequireReal(t, "runs redis-server with TLS")
	rs, caFile, err := redistest.StartTLS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	url := "rediss://" + rs.Addr + "/0"
	cfg, err := server.LoadConfig(getenv(map[string]string{"REDIS_URL": url, "REDIS_CA_CERT": caFile,
		"JWT_SECRET": string(testSecret), "BCRYPT_COST": "10", "REDIS_KEY_PREFIX": "tls:"}))
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.Open(context.Background(), cfg, server.Options{Log: log})
	if err != nil {
		t.Fatalf("Open over TLS with the CA: %v", err)
	}
	t.Cleanup(s.Close)
	if _, err := s.Users.Create(context.Background(), "tls-user", "password123", "", audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, App: s.App}
	tok, _ := e.login("tls-user", "password123")
	if r := e.do("GET", "/v1/me", tok, nil); r.Status != 200 {
		t.Fatalf("me over TLS: %d", r.Status)
	}

	cfg.RedisCA = nil // the system roots do not know the test CA
	if s, err := server.Open(context.Background(), cfg, server.Options{Log: log}); err == nil {
		s.Close()
		t.Fatal("connected to a Redis whose certificate nobody vouched for")
	}
}

// An ACL user and password in REDIS_URL; a wrong password fails start-up
// without the password appearing in the error.
func TestOpenWithACLUser(t *testing.T) {
	t.Parallel()
	rs, _ := ownRedis(t, "sets ACL users")
	rs.Do(t, "ACL", "SETUSER", "sessiond", "on", ">acl-secret-1", "~*", "&*", "+@all")
	rs.Do(t, "ACL", "SETUSER", "default", "off")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := openConfig(t, rs.Addr, nil)
	cfg.RedisURL = "redis://sessiond:acl-secret-1@" + rs.Addr + "/0"
	s, err := server.Open(context.Background(), cfg, server.Options{Log: log})
	if err != nil {
		t.Fatalf("Open as an ACL user: %v", err)
	}
	s.Close()
	cfg.RedisURL = "redis://sessiond:wrong-secret-2@" + rs.Addr + "/0"
	_, err = server.Open(context.Background(), cfg, server.Options{Log: log})
	if err == nil || strings.Contains(err.Error(), "wrong-secret-2") {
		t.Fatalf("Open with a wrong password: %v; want an error without the password", err)
	}
}
