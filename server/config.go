package server

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/tokens"
)

// Config is the service's configuration, read from the environment.
type Config struct {
	ListenAddr string
	RedisURL   string // "" runs the embedded in-memory store
	// RedisCA trusts these CA certificates (PEM) for rediss://, for a Redis
	// whose certificate a private CA signed; nil uses the system roots.
	RedisCA *x509.CertPool
	// Keys sign and verify tokens: JWT_SECRET, JWT_PREVIOUS_SECRETS and
	// JWT_PRIVATE_KEYS.
	Keys tokens.Keyring
	// KeyGenerated is true when neither JWT_SECRET nor JWT_PRIVATE_KEYS was
	// set in embedded mode: an Ed25519 key was made for this run.
	KeyGenerated bool
	// IntrospectionClients are the clients allowed to call the
	// introspection endpoint (INTROSPECTION_CLIENTS): id → SHA-256 of the
	// secret, so secrets compare in constant time whatever their length.
	IntrospectionClients map[string][32]byte
	JWTIssuer            string
	JWTAudience          string
	AdminUsername        string
	AdminPassword        string
	IdleTimeout          time.Duration
	// TouchInterval is how often a session's use is written back
	// (SESSION_TOUCH_INTERVAL); 0: the default, min(60 s, IdleTimeout/4).
	TouchInterval      time.Duration
	MaxLifetime        time.Duration
	MaxSessionsPerUser int
	LoginMaxFailures   int
	LoginFailureWindow time.Duration
	// LoginMaxFailuresPerIP caps failed logins from one IP across accounts
	// (credential stuffing); 0 disables it.
	LoginMaxFailuresPerIP int
	// LoginMaxFailuresPerAccount caps failed logins on one account from any IP
	// (distributed guessing; NIST SP 800-63B allows at most 100); 0 disables it.
	LoginMaxFailuresPerAccount int
	BcryptCost                 int
	KeyPrefix                  string
	TrustedProxies             []netip.Prefix
	// RedisTimeout bounds every Redis call, so no request hangs while Redis is down.
	RedisTimeout time.Duration
	// WaitReplicas, above 0, makes each revocation wait until that many
	// replicas have it, so a failover cannot undo it.
	WaitReplicas int
	WaitTimeout  time.Duration
	// ClientCacheMB bounds the client-side cache of each Redis connection.
	ClientCacheMB int
	// TokenCacheMB bounds the cache of tokens that verified; 0 turns it
	// off. The default, 32, holds about 30,000 tokens (an entry is about
	// 1 KiB with its claims): the devices in use on a replica at once. A
	// miss costs a verification (µs of CPU), not a round trip.
	TokenCacheMB int
	// ShutdownTimeout is how long in-flight requests get to finish on SIGTERM.
	ShutdownTimeout time.Duration
	// MetricsAddr is where Prometheus metrics are served ("": nowhere).
	MetricsAddr string
	// LogLevel and LogFormat ("text" or "json") shape the logs.
	LogLevel  slog.Level
	LogFormat string
	// AccessTokenTTL, when set, makes sign-ins return short-lived access
	// tokens and rotating refresh tokens; RefreshReuseGrace is how long a
	// spent refresh token still answers with its successor; PublicURL is the
	// service's public base URL ("": the request's own), for DPoP's htu.
	AccessTokenTTL    time.Duration
	RefreshReuseGrace time.Duration
	PublicURL         string
	// MFAKeys seal TOTP secrets (MFA_ENCRYPTION_KEY first, then
	// MFA_PREVIOUS_ENCRYPTION_KEYS); none: no account can enroll.
	MFAKeys [][]byte
	// TOTPIssuer names the service in authenticator apps (TOTP_ISSUER,
	// default JWT_ISSUER).
	TOTPIssuer string
	// StepUpMaxAge is how recent auth_time must be to add or remove a
	// factor; AdminRequiresAAL2 makes admin routes need an aal 2 session.
	StepUpMaxAge      time.Duration
	AdminRequiresAAL2 bool
	// WebAuthnRPID and WebAuthnOrigins configure passkeys (WEBAUTHN_RP_ID,
	// WEBAUTHN_ORIGINS); an empty RP id leaves them off.
	WebAuthnRPID    string
	WebAuthnOrigins []string
	// ReadTimeout bounds reading a request, so a slow client cannot hold a
	// connection; KeepAliveTimeout bounds an idle keep-alive connection.
	// Not environment variables: tests shorten them.
	ReadTimeout, KeepAliveTimeout time.Duration
}

// ConfigError names the variable whose value is bad.
type ConfigError struct {
	Var    string
	Reason string
}

func (e *ConfigError) Error() string { return e.Var + ": " + e.Reason }

// LoadConfig reads the configuration through getenv (os.Getenv in main). The
// first bad value is returned as a *ConfigError.
func LoadConfig(getenv func(string) string) (Config, error) {
	p := parser{getenv: getenv}
	// The embedded mode has an admin whose password it prints: it listens on
	// loopback unless told otherwise.
	listen := ":3000"
	if getenv("REDIS_URL") == "" {
		listen = "127.0.0.1:3000"
	}
	c := Config{
		ListenAddr:                 p.str("LISTEN_ADDR", listen),
		RedisURL:                   getenv("REDIS_URL"),
		JWTIssuer:                  p.str("JWT_ISSUER", "sessiond"),
		JWTAudience:                p.str("JWT_AUDIENCE", "sessiond"),
		AdminUsername:              getenv("ADMIN_USERNAME"),
		AdminPassword:              p.secret("ADMIN_PASSWORD", "ADMIN_PASSWORD_FILE"),
		IdleTimeout:                p.durationAtLeast("SESSION_IDLE_TIMEOUT", 720*time.Hour, time.Second),
		TouchInterval:              p.durationAtLeast("SESSION_TOUCH_INTERVAL", 0, time.Second),
		MaxLifetime:                p.durationAtLeast("SESSION_MAX_LIFETIME", 2160*time.Hour, time.Second),
		MaxSessionsPerUser:         p.integer("MAX_SESSIONS_PER_USER", 50, 0, 1_000_000),
		LoginMaxFailures:           p.integer("LOGIN_MAX_FAILURES", 10, 1, 1_000_000),
		LoginFailureWindow:         p.durationAtLeast("LOGIN_FAILURE_WINDOW", 15*time.Minute, time.Second),
		LoginMaxFailuresPerIP:      p.integer("LOGIN_MAX_FAILURES_PER_IP", 100, 0, 1_000_000),
		LoginMaxFailuresPerAccount: p.integer("LOGIN_MAX_FAILURES_PER_ACCOUNT", 100, 0, 100),
		BcryptCost:                 p.integer("BCRYPT_COST", 12, 10, 14),
		KeyPrefix:                  p.str("REDIS_KEY_PREFIX", "sd:"),
		TrustedProxies:             p.prefixes("TRUSTED_PROXIES"),
		RedisTimeout:               p.durationAtLeast("REDIS_TIMEOUT", 2*time.Second, 10*time.Millisecond),
		WaitReplicas:               p.integer("REDIS_WAIT_REPLICAS", 0, 0, 16),
		WaitTimeout:                p.durationAtLeast("REDIS_WAIT_TIMEOUT", 500*time.Millisecond, time.Millisecond),
		ClientCacheMB:              p.integer("CLIENT_CACHE_MB", 64, 1, 1<<20),
		TokenCacheMB:               p.integer("TOKEN_CACHE_MB", 32, 0, 1<<20),
		ShutdownTimeout:            p.durationAtLeast("SHUTDOWN_TIMEOUT", 10*time.Second, time.Second),
		MetricsAddr:                getenv("METRICS_ADDR"),
		LogLevel:                   p.logLevel("LOG_LEVEL"),
		LogFormat:                  p.oneOf("LOG_FORMAT", "text", "json"),
		ReadTimeout:                10 * time.Second,
		KeepAliveTimeout:           60 * time.Second,
	}
	if p.err != nil {
		return Config{}, p.err
	}
	if !keys.ValidPrefix(c.KeyPrefix) {
		// Braces would open a hash tag of their own, and a user's keys would
		// no longer share the {uid} slot: every script would fail cross-slot.
		return Config{}, &ConfigError{"REDIS_KEY_PREFIX", "must not contain { or }, got " + strconv.Quote(c.KeyPrefix)}
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return Config{}, &ConfigError{"LISTEN_ADDR", "want host:port or :port, got " + strconv.Quote(c.ListenAddr)}
	}
	if c.MetricsAddr != "" {
		_, mport, err := net.SplitHostPort(c.MetricsAddr)
		if err != nil {
			return Config{}, &ConfigError{"METRICS_ADDR", "want host:port such as 127.0.0.1:9090, got " + strconv.Quote(c.MetricsAddr)}
		}
		if _, lport, _ := net.SplitHostPort(c.ListenAddr); mport == lport {
			return Config{}, &ConfigError{"METRICS_ADDR", "must not be the API's port: metrics are for operators, not clients"}
		}
	}
	if c.TouchInterval > c.IdleTimeout/4 {
		// Written less often than that, a session in use could idle out
		// between two writes of its use.
		return Config{}, &ConfigError{"SESSION_TOUCH_INTERVAL", fmt.Sprintf("must be at most a quarter of SESSION_IDLE_TIMEOUT (%s), so a session in use never idles out; got %s", c.IdleTimeout/4, c.TouchInterval)}
	}
	if c.RedisURL != "" {
		if _, err := rueidis.ParseURL(c.RedisURL); err != nil {
			// The URL may hold a password: say what is wrong, not what it was.
			return Config{}, &ConfigError{"REDIS_URL", "want redis://[user:pass@]host:port/db or rediss://…; " + redactURLError(err, c.RedisURL)}
		}
	}
	if path := getenv("REDIS_CA_CERT"); path != "" {
		if !strings.HasPrefix(c.RedisURL, "rediss://") {
			return Config{}, &ConfigError{"REDIS_CA_CERT", "only applies to a rediss:// REDIS_URL"}
		}
		pem, err := os.ReadFile(path)
		if err != nil {
			return Config{}, &ConfigError{"REDIS_CA_CERT", err.Error()}
		}
		c.RedisCA = x509.NewCertPool()
		if !c.RedisCA.AppendCertsFromPEM(pem) {
			return Config{}, &ConfigError{"REDIS_CA_CERT", "no PEM certificate in " + path}
		}
	}
	if err := c.loadKeys(getenv); err != nil {
		return Config{}, err
	}
	if err := c.loadRefresh(getenv); err != nil {
		return Config{}, err
	}
	if err := c.loadMFA(getenv); err != nil {
		return Config{}, err
	}
	if err := c.loadWebAuthn(getenv); err != nil {
		return Config{}, err
	}
	if v := getenv("INTROSPECTION_CLIENTS"); v != "" {
		c.IntrospectionClients = map[string][32]byte{}
		for _, pair := range strings.Split(v, ",") {
			id, secret, ok := strings.Cut(pair, ":")
			// Spaces around the pieces are layout ("a:…, b:…"), never part of
			// an id or a secret.
			id, secret = strings.TrimSpace(id), strings.TrimSpace(secret)
			if !ok || id == "" {
				return Config{}, &ConfigError{"INTROSPECTION_CLIENTS", "want comma-separated id:secret pairs"}
			}
			if len(secret) < tokens.MinSecretLen {
				return Config{}, &ConfigError{"INTROSPECTION_CLIENTS", fmt.Sprintf("the secret of client %q must be at least %d bytes, got %d", id, tokens.MinSecretLen, len(secret))}
			}
			if _, dup := c.IntrospectionClients[id]; dup {
				return Config{}, &ConfigError{"INTROSPECTION_CLIENTS", fmt.Sprintf("client %q is named twice", id)}
			}
			c.IntrospectionClients[id] = sha256.Sum256([]byte(secret))
		}
	}
	if (c.AdminUsername == "") != (c.AdminPassword == "") {
		v := "ADMIN_PASSWORD"
		if c.AdminUsername == "" {
			v = "ADMIN_USERNAME"
		}
		return Config{}, &ConfigError{v, "ADMIN_USERNAME and ADMIN_PASSWORD go together"}
	}
	return c, nil
}

// loadKeys reads the keyring: JWT_SECRET (HS256), JWT_PREVIOUS_SECRETS
// (verify only) and JWT_PRIVATE_KEYS (Ed25519; the first signs). With
// REDIS_URL one of JWT_SECRET and JWT_PRIVATE_KEYS is required; embedded
// mode with neither makes one Ed25519 key for the run.
func (c *Config) loadKeys(getenv func(string) string) error {
	p := parser{getenv: getenv}
	secret := p.secret("JWT_SECRET", "JWT_SECRET_FILE")
	if p.err != nil {
		return p.err
	}
	if secret != "" {
		if len(secret) < tokens.MinSecretLen {
			return &ConfigError{"JWT_SECRET", fmt.Sprintf("must be at least %d bytes, got %d", tokens.MinSecretLen, len(secret))}
		}
		c.Keys.Secret = []byte(secret)
	}
	if v := getenv("JWT_PREVIOUS_SECRETS"); v != "" {
		for i, secret := range strings.Split(v, ",") {
			// "a, b" lists a and b: the space is layout, not a byte of b.
			secret = strings.TrimSpace(secret)
			if len(secret) < tokens.MinSecretLen {
				return &ConfigError{"JWT_PREVIOUS_SECRETS", fmt.Sprintf("secret %d must be at least %d bytes, got %d", i+1, tokens.MinSecretLen, len(secret))}
			}
			c.Keys.PreviousSecrets = append(c.Keys.PreviousSecrets, []byte(secret))
		}
	}
	if path := getenv("JWT_PRIVATE_KEYS"); path != "" {
		keys, err := readEd25519Keys(path)
		if err != nil {
			return &ConfigError{"JWT_PRIVATE_KEYS", err.Error()}
		}
		c.Keys.PrivateKeys = keys
	}
	switch {
	case c.Keys.Secret != nil || c.Keys.PrivateKeys != nil:
	case c.RedisURL != "":
		return &ConfigError{"JWT_SECRET", "JWT_SECRET (at least 32 random bytes) or JWT_PRIVATE_KEYS is required when REDIS_URL is set"}
	default:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("generate a signing key: %w", err)
		}
		c.Keys.PrivateKeys, c.KeyGenerated = []ed25519.PrivateKey{priv}, true
	}
	return nil
}

// readEd25519Keys reads the PKCS#8 Ed25519 private keys of a PEM file, in
// order.
func readEd25519Keys(path string) ([]ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []ed25519.PrivateKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("%s: PEM block %d is %q, want PRIVATE KEY (PKCS#8)", path, n, block.Type)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d: %v", path, n, err)
		}
		ed, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: PEM block %d is a %T, want an Ed25519 key", path, n, k)
		}
		keys = append(keys, ed)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no PEM private key", path)
	}
	return keys, nil
}

// redactURLError says what is wrong with REDIS_URL without quoting it: the
// URL may hold a password. net/url quotes the URL in its errors (without its
// fragment, with control characters escaped), so its own text is dropped and
// only the cause kept; any other error has the URL replaced.
func redactURLError(err error, rawURL string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return strings.ReplaceAll(err.Error(), rawURL, "REDIS_URL")
}

// parser keeps the first error so LoadConfig reads as a list of variables.
type parser struct {
	getenv func(string) string
	err    error
}

func (p *parser) fail(name, reason string) {
	if p.err == nil {
		p.err = &ConfigError{name, reason}
	}
}

// secret reads a secret from the variable name, or from the file that
// fileVar names (as container orchestrators mount secrets), without its
// trailing newline.
func (p *parser) secret(name, fileVar string) string {
	v, file := p.getenv(name), p.getenv(fileVar)
	switch {
	case file == "":
		return v
	case v != "":
		p.fail(fileVar, "set "+name+" or "+fileVar+", not both")
		return ""
	}
	b, err := os.ReadFile(file)
	if err != nil {
		p.fail(fileVar, err.Error())
		return ""
	}
	return strings.TrimRight(string(b), "\r\n")
}

// logLevel reads a slog level: debug, info, warn or error.
func (p *parser) logLevel(name string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(p.oneOf(name, "info", "debug", "warn", "error"))); err != nil {
		return slog.LevelInfo
	}
	return l
}

// oneOf reads a value that must be one of values; the first is the default.
func (p *parser) oneOf(name string, values ...string) string {
	v := p.getenv(name)
	if v == "" {
		return values[0]
	}
	for _, ok := range values {
		if strings.EqualFold(v, ok) {
			return ok
		}
	}
	p.fail(name, fmt.Sprintf("want one of %s, got %q", strings.Join(values, ", "), v))
	return values[0]
}

func (p *parser) str(name, def string) string {
	if v := p.getenv(name); v != "" {
		return v
	}
	return def
}

// durationAtLeast reads a Go duration of at least least. Every duration has
// a floor below which the service would not work as configured, and is
// refused rather than carried out:
//
//   - SESSION_MAX_LIFETIME, SESSION_IDLE_TIMEOUT: 1s. Sessions end at whole
//     seconds (the JWT's exp), and Redis expires them in whole milliseconds:
//     1us became an expiry of now, ending every session at once.
//   - LOGIN_FAILURE_WINDOW: 1s. The counters expire in whole milliseconds
//     and Retry-After is whole seconds: 500us became a window of 0, which
//     the limit script refuses, so every sign-in answered 503.
//   - REDIS_TIMEOUT: 10ms. A round trip on a LAN is well under a
//     millisecond, but a garbage-collection pause or Redis forking for a
//     snapshot takes milliseconds: below 10ms requests fail closed (503)
//     under ordinary load, and 1ns failed every one.
//   - REDIS_WAIT_TIMEOUT: 1ms. WAIT takes whole milliseconds, and WAIT 0
//     waits for ever.
//   - SHUTDOWN_TIMEOUT: 1s. A sign-in in flight spends up to a second in
//     bcrypt (cost 14): less cuts off the requests it exists to let finish.
func (p *parser) durationAtLeast(name string, def, least time.Duration) time.Duration {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < least {
		p.fail(name, fmt.Sprintf("want a Go duration of at least %s, such as 15m or 720h, got %q", least, v))
		return def
	}
	return d
}

func (p *parser) integer(name string, def, lo, hi int) int {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(name, fmt.Sprintf("want a whole number from %d to %d, got %q", lo, hi, v))
		return def
	}
	return n
}

func (p *parser) prefixes(name string) []netip.Prefix {
	v := p.getenv(name)
	if v == "" {
		return nil
	}
	var out []netip.Prefix
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if pr, err := netip.ParsePrefix(s); err == nil {
			out = append(out, pr.Masked())
			continue
		}
		// A bare address trusts just that host.
		a, err := netip.ParseAddr(s)
		if err != nil {
			p.fail(name, fmt.Sprintf("want comma-separated CIDRs such as 10.0.0.0/8, got %q", s))
			return nil
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}
