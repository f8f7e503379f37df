package tokens_test

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiond/sessiond/tokens"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestTokenRoundTrip(t *testing.T) {
	tk, err := tokens.New(tokens.Keyring{Secret: secret}, "sessiond", "sessiond")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	created := now.Add(-48 * time.Hour)
	tok, err := tk.Sign(tokens.Claims{SessionID: "sid", UserID: "uid", IssuedAt: now, ExpiresAt: now.Add(time.Hour),
		Username: "Alice", AccountCreatedAt: created})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tk.Verify(tok)
	if err != nil || c.UserID != "uid" || c.SessionID != "sid" || c.ExpiresAt.Unix() != now.Add(time.Hour).Unix() ||
		c.Username != "Alice" || c.AccountCreatedAt.Unix() != created.Unix() {
		t.Fatalf("verify: %+v, %v", c, err)
	}
}

// kidOf is the kid tk signs with, read from a token it signed.
func kidOf(t *testing.T, tk *tokens.Tokens) string {
	t.Helper()
	now := time.Now()
	tok, err := tk.Sign(tokens.Claims{SessionID: "s", UserID: "u", IssuedAt: now, ExpiresAt: now.Add(time.Hour),
		Username: "u", AccountCreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Header["kid"].(string)
}

func TestNewTokensRejectsShortSecrets(t *testing.T) {
	if _, err := tokens.New(tokens.Keyring{Secret: []byte(strings.Repeat("k", 31))}, "i", "a"); err == nil {
		t.Fatal("a 31-byte HMAC secret was accepted")
	}
}

// Every way a token can be wrong is refused.
func TestVerifyRefuses(t *testing.T) {
	tk, _ := tokens.New(tokens.Keyring{Secret: secret}, "sessiond", "sessiond")
	now := time.Now()
	good := jwt.MapClaims{"iss": "sessiond", "aud": "sessiond", "sub": "uid", "jti": "sid",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "preferred_username": "alice",
		"account_created_at": now.Add(-time.Hour).Unix()}
	kid := kidOf(t, tk)
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
		tok := jwt.NewWithClaims(m, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
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
	crit.Header["kid"] = kid
	crit.Header["crit"] = []string{"exp-ext"}
	crit.Header["exp-ext"] = true
	critTok, _ := crit.SignedString(secret)

	noKIDTok := jwt.NewWithClaims(jwt.SigningMethodHS256, good)
	noKID, _ := noKIDTok.SignedString(secret)

	if _, err := tk.Verify(valid); err != nil {
		t.Fatalf("the control token failed: %v", err)
	}
	// Signed by a replica whose clock runs a little ahead.
	ahead := hs(jwt.SigningMethodHS256, secret, with("iat", now.Add(tokens.ClockSkew/2).Unix()))
	if _, err := tk.Verify(ahead); err != nil {
		t.Fatalf("a token issued %s ahead of this clock: %v", tokens.ClockSkew/2, err)
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
		"no username":     hs(jwt.SigningMethodHS256, secret, with("preferred_username", nil)),
		"no created":      hs(jwt.SigningMethodHS256, secret, with("account_created_at", nil)),
		"no kid":          noKID,
		"empty":           "",
		"not a JWT":       "hello",
	} {
		if c, err := tk.Verify(tok); !errors.Is(err, tokens.ErrInvalidToken) {
			t.Errorf("%s: verified as %+v (err %v)", name, c, err)
		}
	}
}
