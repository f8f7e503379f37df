package tokens

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxTokenLen bounds the work a token can cause before its signature is
// checked; ours are a few hundred bytes.
const maxTokenLen = 8 << 10

// verified is what a token that passed every check says, and the span of
// time it passes in.
type verified struct {
	claims Claims
	// from and until bound when it verifies: not before from (iat and nbf,
	// less the clock skew), only before until (exp, plus the skew).
	from, until time.Time
	// size is what its decoded claims cost the cache, besides the token.
	size int
}

// tokenClaims is the JWT payload: the registered claims, plus the account's
// username (OpenID Connect's name for it) and creation time.
type tokenClaims struct {
	jwt.RegisteredClaims
	Username         string           `json:"preferred_username"`
	AccountCreatedAt *jwt.NumericDate `json:"account_created_at"`
}

// UnmarshalJSON decodes the claims once, into their raw values, checks that
// each known claim has exactly its JSON type (golang-jwt would take a
// number-looking string for a NumericDate, "exp": "9999999999"), and only
// then decodes each value alone: one pass of reflection over the object
// instead of the two a type check in a map and a decode would take.
func (tc *tokenClaims) UnmarshalJSON(b []byte) error {
	var raw struct {
		Iss     json.RawMessage `json:"iss"`
		Sub     json.RawMessage `json:"sub"`
		Jti     json.RawMessage `json:"jti"`
		Aud     json.RawMessage `json:"aud"`
		Exp     json.RawMessage `json:"exp"`
		Nbf     json.RawMessage `json:"nbf"`
		Iat     json.RawMessage `json:"iat"`
		Name    json.RawMessage `json:"preferred_username"`
		Created json.RawMessage `json:"account_created_at"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for _, f := range []struct {
		name, want string
		v          json.RawMessage
		into       any
	}{
		{"iss", "string", raw.Iss, &tc.Issuer}, {"sub", "string", raw.Sub, &tc.Subject},
		{"jti", "string", raw.Jti, &tc.ID}, {"aud", "audience", raw.Aud, &tc.Audience},
		{"exp", "number", raw.Exp, &tc.ExpiresAt}, {"nbf", "number", raw.Nbf, &tc.NotBefore},
		{"iat", "number", raw.Iat, &tc.IssuedAt}, {"preferred_username", "string", raw.Name, &tc.Username},
		{"account_created_at", "number", raw.Created, &tc.AccountCreatedAt},
	} {
		if f.v == nil {
			continue
		}
		got := jsonType(f.v)
		if got != f.want && (f.want != "audience" || got != "string" && got != "array") {
			return fmt.Errorf("claim %q: want a JSON %s", f.name, f.want)
		}
		if err := json.Unmarshal(f.v, f.into); err != nil {
			return fmt.Errorf("claim %q: %w", f.name, err)
		}
	}
	return nil
}

// jsonType names the JSON type of a value: string, number, array, or other.
func jsonType(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	switch {
	case len(v) == 0:
		return ""
	case v[0] == '"':
		return "string"
	case v[0] == '[':
		return "array"
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		return "number"
	}
	return "other"
}

// verify checks a token completely with golang-jwt: the algorithm pinned to
// the key its kid names (keyFor), canonical base64url, and then the claims,
// decoded once, each of its type (tokenClaims), validated at now with
// ClockSkew of leeway: iss and aud ours, exp required and not passed, iat
// and nbf not ahead.
func (t *Tokens) verify(token string, now time.Time) (verified, error) {
	if len(token) > maxTokenLen {
		return verified{}, errors.New("token too long")
	}
	var tc tokenClaims
	if _, err := t.parser.ParseWithClaims(token, &tc, t.keyFor); err != nil {
		return verified{}, err
	}
	// The validator reads the time from its options: one per verification,
	// so the request's time (read once by the server) is the one checked.
	v := jwt.NewValidator(jwt.WithIssuer(t.issuer), jwt.WithAudience(t.audience), jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), jwt.WithLeeway(ClockSkew), jwt.WithTimeFunc(func() time.Time { return now }))
	if err := v.Validate(&tc); err != nil {
		return verified{}, err
	}
	if tc.Subject == "" || tc.ID == "" || tc.IssuedAt == nil || tc.Username == "" || tc.AccountCreatedAt == nil {
		return verified{}, errors.New("missing sub, jti, iat, preferred_username or account_created_at")
	}
	out := verified{
		claims: Claims{UserID: tc.Subject, SessionID: tc.ID, IssuedAt: tc.IssuedAt.Time, ExpiresAt: tc.ExpiresAt.Time,
			Username: tc.Username, AccountCreatedAt: tc.AccountCreatedAt.Time},
		from:  tc.IssuedAt.Add(-ClockSkew),
		until: tc.ExpiresAt.Add(ClockSkew),
		size:  len(tc.Subject) + len(tc.ID) + len(tc.Username),
	}
	if tc.NotBefore != nil && tc.NotBefore.After(tc.IssuedAt.Time) {
		out.from = tc.NotBefore.Add(-ClockSkew)
	}
	return out, nil
}

// keyFor is the key a token's header names, which must be one of the ring's
// and of the algorithm the token says; nothing else about the header is
// trusted.
func (t *Tokens) keyFor(tok *jwt.Token) (any, error) {
	// RFC 7515 §4.1.11: a "crit" extension the recipient does not
	// understand makes the token invalid, and we understand none.
	if _, ok := tok.Header["crit"]; ok {
		return nil, errors.New(`unsupported "crit" header`)
	}
	kid, _ := tok.Header["kid"].(string)
	k, ok := t.byKID[kid]
	if !ok {
		return nil, errors.New("no kid, or an unknown one")
	}
	if tok.Method.Alg() != k.method.Alg() {
		return nil, fmt.Errorf("kid %s is a %s key, the token says %s", k.kid, k.method.Alg(), tok.Method.Alg())
	}
	return k.verify, nil
}
