// Package tokens is sessiond's keyring and its JWTs: signing, verification
// with the algorithm pinned per key, and the JWKS other services verify
// with. It knows nothing about sessions in Redis or HTTP: a token that
// verifies names a session, whose liveness is the sessions store's to say.
package tokens

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiond/sessiond/internal/errcode"
)

// ErrInvalidToken means a token is malformed, badly signed, for another issuer
// or audience, expired, or missing a required claim.
var ErrInvalidToken = errcode.New(errcode.Unauthorized, "the token is invalid or expired")

// MinSecretLen is the shortest HMAC key accepted: HS256 keys shorter than the
// hash output weaken it.
const MinSecretLen = 32

// Tokens signs and verifies sessiond's JWTs with a keyring. Every token names
// the key that signed it in its "kid" header, and each key has its one
// algorithm (HS256 for a secret, EdDSA for an Ed25519 key): a token can never
// choose its own algorithm or key (RFC 8725 §3.1–3.2). A token naming any
// other algorithm (none, RS256 with the HMAC key as a public key, …), or a key
// with another algorithm than its own, is refused before its signature is
// looked at.
type Tokens struct {
	signer   *tokenKey
	byKID    map[string]*tokenKey
	jwks     []byte
	issuer   string
	audience string
	// cache remembers tokens that verified; nil without WithCache.
	cache *cache
	// parser pins the algorithms and decodes strictly; the claims are
	// validated after it, at the request's time (verify).
	parser *jwt.Parser
}

// tokenKey is one key of the ring.
type tokenKey struct {
	kid    string
	method jwt.SigningMethod
	sign   any // []byte secret or ed25519.PrivateKey; nil for verify-only
	verify any // []byte secret or ed25519.PublicKey
}

// Keyring is what tokens are signed and verified with.
type Keyring struct {
	// Secret is an HMAC key (HS256) of at least MinSecretLen bytes. It signs
	// unless there are PrivateKeys; it always verifies.
	Secret []byte
	// PreviousSecrets verify the tokens they signed and never sign: a
	// rotated-out secret, kept until its tokens have ended.
	PreviousSecrets [][]byte
	// PrivateKeys are Ed25519 keys: the first signs (EdDSA), all verify and
	// are published (JWKS), so other services can check signatures without
	// holding a key that mints tokens.
	PrivateKeys []ed25519.PrivateKey
}

// ClockSkew is how far replicas' clocks may disagree on a token's iat and exp.
const ClockSkew = 5 * time.Second

// Claims are what a token says: whose session, and which one, and when it
// was issued and ends. The account's username and creation time never
// change, so the token carries them and GET /v1/me needs no account read.
type Claims struct {
	UserID           string
	SessionID        string
	IssuedAt         time.Time
	ExpiresAt        time.Time
	Username         string
	AccountCreatedAt time.Time
}

// An Option tunes Tokens beyond its keyring.
type Option func(*Tokens)

// WithCache remembers up to about maxBytes of tokens that verified, so a
// token's next use costs a lookup rather than a signature check and a JSON
// decode; 0 or less remembers none.
func WithCache(maxBytes int64) Option {
	return func(t *Tokens) { t.cache = newCache(maxBytes) }
}

// New returns a signer/verifier for a keyring, issuer and audience.
func New(ring Keyring, issuer, audience string, opts ...Option) (*Tokens, error) {
	t := &Tokens{byKID: map[string]*tokenKey{}, issuer: issuer, audience: audience}
	var public []jose.JSONWebKey
	for i, priv := range ring.PrivateKeys {
		if len(priv) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("Ed25519 key %d is malformed", i+1)
		}
		pub := priv.Public().(ed25519.PublicKey)
		jwk := jose.JSONWebKey{Key: pub, Algorithm: jwt.SigningMethodEdDSA.Alg(), Use: "sig"}
		thumb, err := jwk.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("Ed25519 key %d: %w", i+1, err)
		}
		// The RFC 7638 thumbprint: the same key has the same kid on every
		// replica and after every restart.
		jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
		t.add(&tokenKey{kid: jwk.KeyID, method: jwt.SigningMethodEdDSA, sign: priv, verify: pub})
		public = append(public, jwk)
	}
	secrets := ring.PreviousSecrets
	if ring.Secret != nil {
		secrets = append([][]byte{ring.Secret}, secrets...)
	}
	for i, secret := range secrets {
		if len(secret) < MinSecretLen {
			return nil, fmt.Errorf("JWT secret must be at least %d bytes", MinSecretLen)
		}
		key := bytes.Clone(secret)
		k := &tokenKey{kid: secretKID(secret), method: jwt.SigningMethodHS256, verify: key}
		if i == 0 && ring.Secret != nil {
			k.sign = k.verify
		}
		t.add(k)
	}
	switch {
	case len(ring.PrivateKeys) > 0:
		t.signer = t.byKID[public[0].KeyID]
	case ring.Secret != nil:
		t.signer = t.byKID[secretKID(ring.Secret)]
	default:
		return nil, errors.New("a JWT secret or an Ed25519 private key is required to sign tokens")
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey{}, public...)})
	if err != nil {
		return nil, err
	}
	t.jwks = jwks
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg(), jwt.SigningMethodEdDSA.Alg()}),
		// Canonical base64url only: one token has one encoding (and one
		// cache entry).
		jwt.WithStrictDecoding(),
		jwt.WithoutClaimsValidation(),
	)
	for _, o := range opts {
		o(t)
	}
	return t, nil
}

func (t *Tokens) add(k *tokenKey) {
	if _, dup := t.byKID[k.kid]; !dup {
		t.byKID[k.kid] = k
	}
}

// secretKID names an HMAC secret without revealing it: a hash of it, cut
// short (a kid only has to tell a ring's few keys apart).
func secretKID(secret []byte) string {
	sum := sha256.Sum256(append([]byte("sessiond hmac kid\x00"), secret...))
	return "hs-" + base64.RawURLEncoding.EncodeToString(sum[:9])
}

// Issuer is the iss tokens carry and must carry.
func (t *Tokens) Issuer() string { return t.issuer }

// Audience is the aud tokens carry and must carry.
func (t *Tokens) Audience() string { return t.audience }

// JWKS is the JSON Web Key Set (RFC 7517) of the public keys that verify
// tokens: every Ed25519 key, with its kid, alg and use. A secret is never
// published, so with only HMAC secrets the set is empty.
func (t *Tokens) JWKS() []byte { return t.jwks }

// Sign issues a token: sub is the user, jti the session, exp the session's
// absolute end (or an access token's shorter one); the username and the
// account's creation time describe the account.
func (t *Tokens) Sign(c Claims) (string, error) {
	claims := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Audience:  jwt.ClaimStrings{t.audience},
			Subject:   c.UserID,
			ID:        c.SessionID,
			IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
			ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
		},
		Username:         c.Username,
		AccountCreatedAt: jwt.NewNumericDate(c.AccountCreatedAt),
	}
	tok := jwt.NewWithClaims(t.signer.method, claims)
	tok.Header["kid"] = t.signer.kid
	return tok.SignedString(t.signer.sign)
}

// Verify checks a token's signature and claims at the time it is now. It
// says nothing about whether the session still exists: that is the sessions
// store's job.
func (t *Tokens) Verify(token string) (Claims, error) {
	return t.VerifyAt(token, time.Now())
}

// VerifyAt is Verify at time now, for a caller that has read the clock
// already (a server's request time); a zero now is read from the clock. A
// token seen before is answered from the cache, if there is one, while now
// is within its iat, nbf and exp (with ClockSkew): only a token that passed
// every check is remembered.
func (t *Tokens) VerifyAt(token string, now time.Time) (Claims, error) {
	if now.IsZero() {
		now = time.Now()
	}
	if c, ok := t.cache.get(token, now); ok {
		return c, nil
	}
	v, err := t.verify(token, now)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	t.cache.put(token, &v)
	return v.claims, nil
}
