// Package server is the command's side of sessiond: configuration from the
// environment, the Redis connection (or the embedded store), and the one
// wiring of stores and HTTP app that `sessiond serve`, the tests and the
// bench all use. It holds no business logic and no HTTP handling.
package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/admin"
	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/metrics"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/internal/seal"
	"github.com/sessiond/sessiond/passkeys"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/tokens"
	"github.com/sessiond/sessiond/users"
)

// Server is a wired sessiond: its Redis client, stores and Fiber app.
type Server struct {
	Config Config
	Client rueidis.Client
	// Liveness gates the client-side cache (nil: a client Options brought,
	// or the embedded store).
	Liveness *redisx.Liveness
	Users    *users.Store
	// Passkeys is nil unless WEBAUTHN_RP_ID is set.
	Passkeys *passkeys.Store
	// operator: opened by the command line (Options.Operator).
	operator bool
	Sessions *sessions.Store
	Tokens   *tokens.Tokens
	Audit    *audit.Log
	// Metrics is nil unless METRICS_ADDR is set.
	Metrics *metrics.Metrics
	App     *fiber.App
	Log     *slog.Logger
	// Console is where the generated embedded admin password is shown.
	Console io.Writer

	closers []func()
}

// NewLogger is the service's logger as the configuration says (LOG_LEVEL,
// LOG_FORMAT), writing to w. Lines are buffered and written every 100 ms (or
// when 64 KiB are waiting), and at once from a warning up: a write(2) per
// request line would cost the hot path more than the session check. Call the returned
// flush before exiting. A crash loses at most the last 100 ms of info lines.
func NewLogger(cfg Config, w io.Writer) (log *slog.Logger, flush func()) {
	b := newLogBuffer(w, 100*time.Millisecond)
	o := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewTextHandler(b, o)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(b, o)
	}
	return slog.New(flushing{plainLines{h, b, cfg.LogFormat == "json"}, b}), b.Close
}

// logBuffer batches log lines into few writes.
type logBuffer struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

func newLogBuffer(w io.Writer, every time.Duration) *logBuffer {
	b := &logBuffer{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.Flush()
			}
		}
	}()
	return b
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Write(p)
}

// Flush writes what is waiting.
func (b *logBuffer) Flush() {
	b.mu.Lock()
	_ = b.w.Flush()
	b.mu.Unlock()
}

// Close stops the ticker and flushes. Lines logged after it wait in the
// buffer until a warning flushes it: call it last, on the way out.
func (b *logBuffer) Close() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
		<-b.done
	}
	b.Flush()
}

// flushing writes a warning or an error out at once.
type flushing struct {
	slog.Handler
	b *logBuffer
}

func (f flushing) Handle(ctx context.Context, r slog.Record) error {
	err := f.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		f.b.Flush()
	}
	return err
}

func (f flushing) WithAttrs(as []slog.Attr) slog.Handler {
	return flushing{f.Handler.WithAttrs(as), f.b}
}
func (f flushing) WithGroup(name string) slog.Handler {
	return flushing{f.Handler.WithGroup(name), f.b}
}

// Options are what Open takes besides the configuration.
type Options struct {
	// Log receives the service's logs.
	Log *slog.Logger
	// Console is where the embedded mode's generated admin password is shown
	// (once, never through the log).
	Console io.Writer
	// Client, when set, is used instead of connecting to the configured
	// Redis (tests bring a client of their own server); Open does not close
	// it. Its cached reads are not gated by a liveness (Open does not know
	// its connections): a test of staleness lets Open connect by REDIS_URL.
	Client rueidis.Client
	// Now is the stores' clock; nil means time.Now.
	Now func() time.Time
	// TestOnlyDialRedis, when set, opens every connection to a Redis node
	// (addr as REDIS_URL or the cluster names it) in place of a TCP dial; TLS
	// is not applied. Tests route each node through a proxy they can freeze
	// or slow. Nothing but tests sets it.
	TestOnlyDialRedis func(ctx context.Context, addr string) (net.Conn, error)
	// Operator is set by the command line: it opens no TOTP secret, so it
	// runs without MFA_ENCRYPTION_KEY even once accounts enrolled (an
	// operator who lost the key can still reset their factors).
	Operator bool
}

// The client-side cache answers only while every node has answered a
// heartbeat sent on the cache's own connection less than cacheProofBound
// ago (redisx.Liveness): a replica cut off from Redis, or behind a slow
// link, stops answering from it within that, whatever REDIS_TIMEOUT is, and
// its reads go to Redis (401 if they come back, 503 if they cannot).
const (
	cacheHeartbeat  = 50 * time.Millisecond
	cacheProofBound = 200 * time.Millisecond
)

// sessionReadBytes is what a session's read costs the client-side cache
// (internal/flatcache): 280 bytes of ring (its key, the HMGET and the reply)
// and its slot in the index.
const sessionReadBytes = 320

// openRedis connects to REDIS_URL, or starts the embedded store when it is
// unset. The Liveness gates the client-side cache (nil for the embedded
// store, which has none). The returned func releases both.
func openRedis(cfg Config, o Options) (rueidis.Client, *redisx.Liveness, func(), error) {
	if cfg.RedisURL == "" {
		c, closeEmbedded, err := openEmbedded(o.Log)
		return c, nil, closeEmbedded, err
	}
	opt, err := rueidis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, nil, nil, &ConfigError{"REDIS_URL", redactURLError(err, cfg.RedisURL)}
	}
	if cfg.RedisCA != nil && opt.TLSConfig != nil {
		opt.TLSConfig.RootCAs = cfg.RedisCA
	}
	opt.CacheSizeEachConn = cfg.ClientCacheMB << 20
	// Detects a dead or wedged Redis: the connection (and its client-side
	// cache) is dropped, so requests fail closed. That takes the keep-alive
	// and this timeout, seconds; the cache stops answering sooner, at
	// cacheProofBound.
	opt.ConnWriteTimeout = cfg.RedisTimeout
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = cfg.RedisTimeout
	}
	if dial := o.TestOnlyDialRedis; dial != nil {
		opt.DialCtxFn = func(ctx context.Context, addr string, _ *net.Dialer, _ *tls.Config) (net.Conn, error) {
			return dial(ctx, addr)
		}
	}
	c, live, err := redisx.NewClient(opt, redisx.LiveOptions{Every: cacheHeartbeat, Bound: cacheProofBound, Now: o.Now})
	if err != nil {
		// The error may quote the URL, password included.
		return nil, nil, nil, fmt.Errorf("connect to Redis: %s", redactURLError(err, cfg.RedisURL))
	}
	return c, live, func() { live.Stop(); c.Close() }, nil
}

// openEmbedded runs an in-process miniredis. Its keys expire only when its
// clock is advanced, so a ticker advances it with the wall clock.
func openEmbedded(log *slog.Logger) (rueidis.Client, func(), error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, nil, fmt.Errorf("start embedded store: %w", err)
	}
	log.Warn("REDIS_URL is unset: using the embedded in-memory store; nothing survives a restart. Set REDIS_URL for any real deployment.")
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{m.Addr()},
		// miniredis answers CLUSTER SLOTS and has no CLIENT TRACKING.
		ForceSingleClient: true,
		DisableCache:      true,
	})
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("connect to embedded store: %w", err)
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return c, func() { close(stop); c.Close(); m.Close() }, nil
}

// passkeyChallengePurpose derives the keys that seal passkey ceremonies in
// their challenge ids: from the JWT keys, so every replica has them and a
// key rotation keeps ceremonies under way working.
const passkeyChallengePurpose = "passkey challenges"

// Admin is what an operator or an admin does to accounts, over this
// server's stores.
func (s *Server) Admin() admin.Admin {
	return admin.Admin{Users: s.Users, Sessions: s.Sessions, Passkeys: s.Passkeys}
}

// Open wires a Server from cfg: Redis, the stores, the admin bootstrap and
// the HTTP app. It is the one constructor: serve, the tests and the bench
// all build the service through it.
func Open(ctx context.Context, cfg Config, o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	s := &Server{Config: cfg, Client: o.Client, Log: o.Log, Console: o.Console, operator: o.Operator}
	if s.Client == nil {
		client, live, closeRedis, err := openRedis(cfg, o)
		if err != nil {
			return nil, err
		}
		s.Client, s.Liveness, s.closers = client, live, []func(){closeRedis}
	}
	if err := s.wire(ctx, o.Now); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) wire(ctx context.Context, now func() time.Time) error {
	cfg := s.Config
	layout := keys.New(cfg.KeyPrefix)
	s.Audit = audit.New(s.Client, layout, cfg.RedisTimeout, now)
	if cfg.MetricsAddr != "" {
		s.Metrics = metrics.New(s.Audit.Missed)
	}
	ring, err := seal.New(cfg.MFAKeys...)
	if err != nil {
		return &ConfigError{"MFA_ENCRYPTION_KEY", err.Error()}
	}
	s.Users, err = users.New(s.Client, users.Options{
		Seal: ring, TOTPIssuer: cfg.TOTPIssuer,
		Keys: layout, BcryptCost: cfg.BcryptCost, Timeout: cfg.RedisTimeout,
		MaxFailures: cfg.LoginMaxFailures, FailureWindow: cfg.LoginFailureWindow,
		MaxFailuresPerIP: cfg.LoginMaxFailuresPerIP, MaxFailuresPerAccount: cfg.LoginMaxFailuresPerAccount,
		Now: now, Audit: s.Audit, Liveness: s.Liveness,
	})
	if err != nil {
		return err
	}
	s.Tokens, err = tokens.New(cfg.Keys, cfg.JWTIssuer, cfg.JWTAudience, tokens.WithCache(int64(cfg.TokenCacheMB)<<20))
	if err != nil {
		return &ConfigError{"JWT_SECRET", err.Error()}
	}
	if cfg.TokenCacheMB > 0 {
		s.Metrics.TokenCache(func() metrics.TokenCacheStats {
			st := s.Tokens.CacheStats()
			return metrics.TokenCacheStats{Hits: st.Hits, Misses: st.Misses, Entries: st.Entries, Bytes: st.Bytes}
		})
	}
	s.Sessions, err = sessions.New(s.Client, sessions.Options{
		Keys: layout, IdleTimeout: cfg.IdleTimeout, TouchInterval: cfg.TouchInterval, MaxLifetime: cfg.MaxLifetime,
		MaxPerUser: cfg.MaxSessionsPerUser, Timeout: cfg.RedisTimeout,
		WaitReplicas: cfg.WaitReplicas, WaitTimeout: cfg.WaitTimeout, Now: now, Audit: s.Audit, Metrics: s.Metrics,
		Log: s.Log, RefreshKeys: s.Tokens.DeriveKeys(sessions.RefreshKeyPurpose), ReuseGrace: cfg.RefreshReuseGrace, Liveness: s.Liveness,
		// As many sessions as the client-side cache holds reads of, each
		// remembered in a few tens of bytes.
		UsedSessions: cfg.ClientCacheMB << 20 / sessionReadBytes,
	})
	if err != nil {
		return err
	}
	s.Metrics.Touches(s.Sessions.Touches)
	if cfg.RedisURL != "" {
		if err := redisx.CheckEvictionPolicy(ctx, s.Client, cfg.RedisTimeout); errors.Is(err, redisx.ErrEvictionPolicy) {
			return fmt.Errorf("refusing to serve: %w", err)
		} else if err != nil {
			s.Log.Warn("could not read Redis maxmemory-policy (CONFIG not allowed?); make sure it is noeviction, or evictions may silently undo revocations", "err", err)
		}
	}
	if cfg.WebAuthnRPID != "" {
		s.Passkeys, err = passkeys.New(s.Client, s.Users, passkeys.Options{RPID: cfg.WebAuthnRPID, Origins: cfg.WebAuthnOrigins,
			RPDisplayName: cfg.TOTPIssuer, Keys: layout, Timeout: cfg.RedisTimeout, Audit: s.Audit, Now: now,
			ChallengeKeys: s.Tokens.DeriveKeys(passkeyChallengePurpose)})
		if err != nil {
			return &ConfigError{"WEBAUTHN_RP_ID", err.Error()}
		}
	}
	if len(cfg.MFAKeys) == 0 && !s.operator {
		// Accounts with TOTP could not sign in: their secrets cannot be
		// opened. Refuse to start rather than lock them out silently.
		inUse, err := s.Users.MFAInUse(ctx)
		if err != nil {
			return fmt.Errorf("check for second factors: %w", err)
		}
		if inUse {
			return &ConfigError{"MFA_ENCRYPTION_KEY", "accounts have enrolled second factors, whose secrets only this key opens: set it (or MFA_ENCRYPTION_KEY_FILE) to the key they were enrolled with"}
		}
	}
	if err := s.Users.Prepare(ctx); err != nil {
		return fmt.Errorf("prepare accounts: %w", err)
	}
	if err := s.bootstrapAdmin(ctx); err != nil {
		return err
	}
	s.App = app.New(app.Deps{Users: s.Users, Sessions: s.Sessions, Tokens: s.Tokens, Audit: s.Audit, Metrics: s.Metrics,
		TrustedProxies: cfg.TrustedProxies, IntrospectionClients: cfg.IntrospectionClients,
		Ping: func(ctx context.Context) error { return redisx.Ping(ctx, s.Client, cfg.RedisTimeout) }, Log: s.Log,
		ReadTimeout: cfg.ReadTimeout, KeepAliveTimeout: cfg.KeepAliveTimeout,
		AccessTokenTTL: cfg.AccessTokenTTL, PublicURL: cfg.PublicURL,
		StepUpMaxAge: cfg.StepUpMaxAge, AdminRequiresAAL2: cfg.AdminRequiresAAL2, Passkeys: s.Passkeys})
	return nil
}

// bootstrapAdmin creates ADMIN_USERNAME if it does not exist yet. In embedded
// mode with no admin configured it creates "admin" with a random password,
// printed once: the only way in to a fresh embedded service.
func (s *Server) bootstrapAdmin(ctx context.Context) error {
	name, password := s.Config.AdminUsername, s.Config.AdminPassword
	generated := false
	if name == "" {
		if s.Config.RedisURL != "" {
			return nil
		}
		name, password, generated = "admin", randomPassword(), true
	}
	u, err := s.Users.FindByUsername(ctx, name)
	if err == nil {
		s.Log.Info("admin account exists", "username", name)
		// Its place in the admin set follows its record: a change whose
		// last step failed leaves it out, and the last-admin rule would
		// not guard it.
		if err := s.Users.SyncAdmin(ctx, u.ID); err != nil {
			s.Log.Warn("could not check the admin account's place in the admin set", "username", name, "err", err)
		}
		return nil
	}
	if !errors.Is(err, errcode.ErrUserNotFound) {
		return fmt.Errorf("admin bootstrap: %w", err)
	}
	// The system creates it: no actor.
	_, err = s.Users.Create(ctx, name, password, users.RoleAdmin, audit.Actor{})
	switch {
	case errors.Is(err, users.ErrUsernameTaken):
		return nil // another replica created it first
	case errors.Is(err, users.ErrInvalidUsername):
		return &ConfigError{"ADMIN_USERNAME", err.Error()}
	case errors.Is(err, users.ErrPasswordTooShort), errors.Is(err, users.ErrPasswordTooLong):
		return &ConfigError{"ADMIN_PASSWORD", err.Error()}
	case err != nil:
		return fmt.Errorf("admin bootstrap: %w", err)
	}
	if generated {
		// Shown once on the console, never through the log: there is no other
		// way to learn it, and logs are kept and shipped.
		fmt.Fprintf(s.Console, "\n  embedded mode: created admin account %q with password %s\n  (shown only now; it is gone when the process exits)\n\n", name, password)
	} else {
		s.Log.Info("created admin account", "username", name)
	}
	return nil
}

func randomPassword() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Run serves on ln until ctx ends, then stops taking connections and lets
// in-flight requests finish for up to ShutdownTimeout.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	if s.Metrics != nil {
		mln, err := net.Listen("tcp", s.Config.MetricsAddr)
		if err != nil {
			return &ConfigError{"METRICS_ADDR", err.Error()}
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.Metrics.Handler())
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = ms.Serve(mln) }()
		defer ms.Close()
		s.Log.Info("metrics listening", "addr", mln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- s.App.Listener(ln) }()
	s.Log.Info("sessiond listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.Log.Info("shutting down: finishing in-flight requests", "timeout", s.Config.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.Config.ShutdownTimeout)
	defer cancel()
	if err := s.App.ShutdownWithContext(sctx); err != nil && !strings.Contains(err.Error(), "not running") {
		return fmt.Errorf("shutdown: %w", err)
	}
	// The last requests' use, queued to be written (sessions.Store.Use).
	if err := s.Sessions.Flush(sctx); err != nil {
		s.Log.Warn("shutting down: sessions' last use not all recorded", "err", err)
	}
	return <-errc
}

// Close releases Redis.
func (s *Server) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}
