package sessions_test

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiond/sessiond/sessions"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestTokenRoundTrip(t *testing.T) {
	tk, err := sessions.NewTokens(sessions.Keyring{Secret: secret}, "sessiond", "sessiond")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	created := now.Add(-48 * time.Hour)
	tok, err := tk.Sign(sessions.Session{ID: "sid", UserID: "uid", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, "Alice", created)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tk.Verify(tok)
	if err != nil || c.UserID != "uid" || c.SessionID != "sid" || c.ExpiresAt.Unix() != now.Add(time.Hour).Unix() ||
		c.Username != "Alice" || c.AccountCreatedAt.Unix() != created.Unix() {
		t.Fatalf("verify: %+v, %v", c, err)
	}
	// A token from before tokens named the account still verifies, without it.
	old, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "sessiond", "aud": "sessiond",
		"sub": "uid", "jti": "sid", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}).SignedString(secret)
	if c, err := tk.Verify(old); err != nil || c.Username != "" || !c.AccountCreatedAt.IsZero() {
		t.Fatalf("a token without the account claims: %+v, %v", c, err)
	}
}

func TestNewTokensRejectsShortSecrets(t *testing.T) {
	if _, err := sessions.NewTokens(sessions.Keyring{Secret: []byte(strings.Repeat("k", 31))}, "i", "a"); err == nil {
		t.Fatal("a 31-byte HMAC secret was accepted")
	}
}

// Every way a token can be wrong is refused.
func TestVerifyRefuses(t *testing.T) {
	tk, _ := sessions.NewTokens(sessions.Keyring{Secret: secret}, "sessiond", "sessiond")
	now := time.Now()
	good := jwt.MapClaims{"iss": "sessiond", "aud": "sessiond", "sub": "uid", "jti": "sid",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for kk, vv := range good {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	hs := func(m jwt.SigningMethod, key []byte, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rs256, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, good).SignedString(rsaKey)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good).SignedString(jwt.UnsafeAllowNoneSignatureType)
	valid := hs(jwt.SigningMethodHS256, secret, good)
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + strings.TrimRight(parts[1], "=") + "x." + parts[2]
	// The same signature bytes with the unused low bits of the last
	// base64url character set: a lenient decoder reads it as valid.
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	sig := parts[2]
	last := strings.IndexByte(b64, sig[len(sig)-1])
	nonCanonical := parts[0] + "." + parts[1] + "." + sig[:len(sig)-1] + string(b64[last|1])
	crit := jwt.NewWithClaims(jwt.SigningMethodHS256, good)
	crit.Header["crit"] = []string{"exp-ext"}
	crit.Header["exp-ext"] = true
	critTok, _ := crit.SignedString(secret)

	if _, err := tk.Verify(valid); err != nil {
		t.Fatalf("the control token failed: %v", err)
	}
	// Signed by a replica whose clock runs a little ahead.
	ahead := hs(jwt.SigningMethodHS256, secret, with("iat", now.Add(sessions.ClockSkew/2).Unix()))
	if _, err := tk.Verify(ahead); err != nil {
		t.Fatalf("a token issued %s ahead of this clock: %v", sessions.ClockSkew/2, err)
	}
	for name, tok := range map[string]string{
		"alg none":        none,
		"HS384":           hs(jwt.SigningMethodHS384, secret, good),
		"HS512":           hs(jwt.SigningMethodHS512, secret, good),
		"RS256":           rs256,
		"wrong secret":    hs(jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), good),
		"wrong issuer":    hs(jwt.SigningMethodHS256, secret, with("iss", "evil")),
		"wrong audience":  hs(jwt.SigningMethodHS256, secret, with("aud", "other")),
		"expired":         hs(jwt.SigningMethodHS256, secret, with("exp", now.Add(-time.Minute).Unix())),
		"no exp":          hs(jwt.SigningMethodHS256, secret, with("exp", nil)),
		"no sub":          hs(jwt.SigningMethodHS256, secret, with("sub", nil)),
		"no jti":          hs(jwt.SigningMethodHS256, secret, with("jti", nil)),
		"no iat":          hs(jwt.SigningMethodHS256, secret, with("iat", nil)),
		"issued later":    hs(jwt.SigningMethodHS256, secret, with("iat", now.Add(time.Hour).Unix())),
		"tampered claims": tampered,
		"non-canonical":   nonCanonical,
		"crit extension":  critTok,
		"exp as string":   hs(jwt.SigningMethodHS256, secret, with("exp", strconv.FormatInt(now.Add(time.Hour).Unix(), 10))),
		"iat as string":   hs(jwt.SigningMethodHS256, secret, with("iat", strconv.FormatInt(now.Unix(), 10))),
		"sub as number":   hs(jwt.SigningMethodHS256, secret, with("sub", 42)),
		"jti as object":   hs(jwt.SigningMethodHS256, secret, with("jti", map[string]string{"a": "b"})),
		"aud as number":   hs(jwt.SigningMethodHS256, secret, with("aud", 7)),
		"name as number":  hs(jwt.SigningMethodHS256, secret, with("preferred_username", 7)),
		"empty":           "",
		"not a JWT":       "hello",
	} {
		if c, err := tk.Verify(tok); !errors.Is(err, sessions.ErrInvalidToken) {
			t.Errorf("%s: verified as %+v (err %v)", name, c, err)
		}
	}
}
