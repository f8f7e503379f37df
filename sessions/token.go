package sessions

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiond/sessiond/internal/errcode"
)

// ErrInvalidToken means a token is malformed, badly signed, for another issuer
// or audience, expired, or missing a required claim.
var ErrInvalidToken = errcode.New(errcode.Unauthorized, "the token is invalid or expired")

// MinSecretLen is the shortest HMAC key accepted: HS256 keys shorter than the
// hash output weaken it.
const MinSecretLen = 32

// Tokens signs and verifies sessiond's JWTs. The algorithm is pinned to HS256:
// a token naming any other algorithm (none, RS256 with the HMAC key as a public
// key, …) is rejected before its signature is looked at.
type Tokens struct {
	secret   []byte
	issuer   string
	audience string
	parser   *jwt.Parser
}

// ClockSkew is how far replicas' clocks may disagree on a token's iat and exp.
const ClockSkew = 5 * time.Second

// Claims are what a verified token says: whose session, and which one. The
// account's username and creation time never change, so the token carries
// them and GET /v1/me needs no account read; they are empty in a token issued
// before tokens carried them.
type Claims struct {
	UserID           string
	SessionID        string
	ExpiresAt        time.Time
	Username         string
	AccountCreatedAt time.Time
}

// tokenClaims is the JWT payload: the registered claims, plus the account's
// username (OpenID Connect's name for it) and creation time.
type tokenClaims struct {
	jwt.RegisteredClaims
	Username         string           `json:"preferred_username,omitempty"`
	AccountCreatedAt *jwt.NumericDate `json:"account_created_at,omitempty"`
}

// claimTypes are the JSON types each claim we read must have. golang-jwt
// decodes into typed fields, but it takes a number-looking string for a
// NumericDate ("exp": "9999999999"): a token is refused unless every claim
// has exactly its type.
var claimTypes = map[string]string{
	"iss": "string", "sub": "string", "jti": "string", "preferred_username": "string",
	"exp": "number", "iat": "number", "nbf": "number", "account_created_at": "number",
	"aud": "audience",
}

// UnmarshalJSON checks every known claim's JSON type before decoding.
func (tc *tokenClaims) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for name, v := range raw {
		want, known := claimTypes[name]
		if !known {
			continue
		}
		if got := jsonType(v); got != want && (want != "audience" || (got != "string" && !stringArray(v))) {
			return fmt.Errorf("claim %q: want a JSON %s", name, want)
		}
	}
	type plain tokenClaims // no UnmarshalJSON: no recursion
	return json.Unmarshal(b, (*plain)(tc))
}

// jsonType names the JSON type of a value: string, number, or another.
func jsonType(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	switch {
	case len(v) == 0:
		return ""
	case v[0] == '"':
		return "string"
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		return "number"
	}
	return "other"
}

func stringArray(v json.RawMessage) bool {
	var ss []string
	return json.Unmarshal(v, &ss) == nil && bytes.HasPrefix(bytes.TrimSpace(v), []byte("["))
}

// NewTokens returns a signer/verifier for the given HMAC secret, issuer and audience.
func NewTokens(secret []byte, issuer, audience string) (*Tokens, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("JWT secret must be at least %d bytes", MinSecretLen)
	}
	return &Tokens{
		secret:   append([]byte(nil), secret...),
		issuer:   issuer,
		audience: audience,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuer(issuer),
			jwt.WithAudience(audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			// Replicas' clocks differ a little: without leeway a token signed by
			// one whose clock runs ahead is "used before issued" on another.
			// The session's own expiry is enforced by Redis, not by exp.
			jwt.WithLeeway(ClockSkew),
			// Canonical base64url only: one token has one encoding.
			jwt.WithStrictDecoding(),
		),
	}, nil
}

// Sign issues the token for a session: sub is the user, jti the session, exp
// the session's absolute end; username and accountCreated describe the account.
func (t *Tokens) Sign(s Session, username string, accountCreated time.Time) (string, error) {
	claims := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Audience:  jwt.ClaimStrings{t.audience},
			Subject:   s.UserID,
			ID:        s.ID,
			IssuedAt:  jwt.NewNumericDate(s.CreatedAt),
			ExpiresAt: jwt.NewNumericDate(s.ExpiresAt),
		},
		Username:         username,
		AccountCreatedAt: jwt.NewNumericDate(accountCreated),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.secret)
}

// Verify checks a token's signature and claims. It says nothing about whether
// the session still exists: that is Store.Check's job.
func (t *Tokens) Verify(token string) (Claims, error) {
	var tc tokenClaims
	_, err := t.parser.ParseWithClaims(token, &tc, func(tok *jwt.Token) (any, error) {
		// RFC 7515 §4.1.11: a "crit" extension the recipient does not
		// understand makes the token invalid, and we understand none.
		if _, ok := tok.Header["crit"]; ok {
			return nil, errors.New(`unsupported "crit" header`)
		}
		return t.secret, nil
	})
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if tc.Subject == "" || tc.ID == "" || tc.IssuedAt == nil {
		return Claims{}, fmt.Errorf("%w: missing sub, jti or iat", ErrInvalidToken)
	}
	c := Claims{UserID: tc.Subject, SessionID: tc.ID, ExpiresAt: tc.ExpiresAt.Time, Username: tc.Username}
	if tc.AccountCreatedAt != nil {
		c.AccountCreatedAt = tc.AccountCreatedAt.Time
	}
	return c, nil
}
