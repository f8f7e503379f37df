package server

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/sessiond/sessiond/internal/seal"
	"github.com/sessiond/sessiond/passkeys"
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
	c.TOTPIssuer = p.str("TOTP_ISSUER", issuerName(c.JWTIssuer))
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

// loadWebAuthn reads WEBAUTHN_RP_ID and WEBAUTHN_ORIGINS: both set (or the
// RP id with PUBLIC_URL, whose origin is then the one allowed) enable
// passkeys; neither leaves them off (their routes answer 404). Origins not
// under the RP id stop start-up, naming the variable.
func (c *Config) loadWebAuthn(getenv func(string) string) error {
	rpID, origins := strings.TrimSpace(getenv("WEBAUTHN_RP_ID")), strings.TrimSpace(getenv("WEBAUTHN_ORIGINS"))
	switch {
	case rpID == "" && origins == "":
		return nil
	case rpID == "":
		return &ConfigError{"WEBAUTHN_RP_ID", "WEBAUTHN_ORIGINS is set: set WEBAUTHN_RP_ID too, the domain the passkeys belong to (e.g. example.com)"}
	case origins == "" && c.PublicURL == "":
		return &ConfigError{"WEBAUTHN_ORIGINS", "WEBAUTHN_RP_ID is set: set WEBAUTHN_ORIGINS (or PUBLIC_URL) to the origins the console and apps run on, e.g. https://auth.example.com"}
	}
	var list []string
	if origins == "" {
		u, _ := url.Parse(c.PublicURL)
		list = []string{u.Scheme + "://" + u.Host}
	}
	for _, o := range strings.Split(origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			list = append(list, o)
		}
	}
	if err := passkeys.ValidateConfig(rpID, list); err != nil {
		name := "WEBAUTHN_ORIGINS"
		if errors.Is(err, passkeys.ErrBadRPID) {
			name = "WEBAUTHN_RP_ID"
		}
		return &ConfigError{name, err.Error()}
	}
	c.WebAuthnRPID, c.WebAuthnOrigins = rpID, list
	return nil
}

// issuerName is what authenticator apps call the service when TOTP_ISSUER
// is unset: JWT_ISSUER, or its host when it is a URL (the otpauth label
// "issuer:account" must hold no other colon).
func issuerName(iss string) string {
	if u, err := url.Parse(iss); err == nil && u.Host != "" {
		return u.Hostname()
	}
	return strings.ReplaceAll(iss, ":", " ")
}
