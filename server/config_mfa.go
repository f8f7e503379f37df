package server

import (
	"fmt"
	"strings"
	"time"

	"github.com/sessiond/sessiond/internal/seal"
)

// loadMFA reads the second-factor settings: MFA_ENCRYPTION_KEY (or _FILE),
// the key TOTP secrets are sealed with, and MFA_PREVIOUS_ENCRYPTION_KEYS,
// older keys that still open what they sealed (rotation, as with
// JWT_PREVIOUS_SECRETS); TOTP_ISSUER, the name authenticator apps show;
// STEP_UP_MAX_AGE and ADMIN_REQUIRES_AAL2. Without
// a key no account can enroll; start-up refuses to run without one once an
// account has (Open).
func (c *Config) loadMFA(getenv func(string) string) error {
	p := parser{getenv: getenv}
	if key := p.secret("MFA_ENCRYPTION_KEY", "MFA_ENCRYPTION_KEY_FILE"); key != "" {
		if len(key) < seal.MinKeyLen {
			return &ConfigError{"MFA_ENCRYPTION_KEY", fmt.Sprintf("must be at least %d bytes, got %d", seal.MinKeyLen, len(key))}
		}
		c.MFAKeys = append(c.MFAKeys, []byte(key))
	}
	if p.err != nil {
		return p.err
	}
	if v := getenv("MFA_PREVIOUS_ENCRYPTION_KEYS"); v != "" {
		if len(c.MFAKeys) == 0 {
			return &ConfigError{"MFA_PREVIOUS_ENCRYPTION_KEYS", "needs MFA_ENCRYPTION_KEY, the key that seals new secrets"}
		}
		for i, key := range strings.Split(v, ",") {
			key = strings.TrimSpace(key)
			if len(key) < seal.MinKeyLen {
				return &ConfigError{"MFA_PREVIOUS_ENCRYPTION_KEYS", fmt.Sprintf("key %d must be at least %d bytes, got %d", i+1, seal.MinKeyLen, len(key))}
			}
			c.MFAKeys = append(c.MFAKeys, []byte(key))
		}
	}
	c.TOTPIssuer = p.str("TOTP_ISSUER", c.JWTIssuer)
	c.StepUpMaxAge = p.durationAtLeast("STEP_UP_MAX_AGE", 10*time.Minute, 10*time.Second)
	if v := getenv("ADMIN_REQUIRES_AAL2"); v != "" {
		switch strings.ToLower(v) {
		case "true", "1", "yes":
			c.AdminRequiresAAL2 = true
		case "false", "0", "no":
		default:
			p.fail("ADMIN_REQUIRES_AAL2", fmt.Sprintf("want true or false, got %q", v))
		}
	}
	return p.err
}
