package tokens

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
)

// strictB64 is the only encoding a segment may have: base64url without
// padding, and canonical (unused low bits zero), so one token has one
// encoding (and one cache entry).
var strictB64 = base64.RawURLEncoding.Strict()

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
	// text holds the decoded header and claims, which the claims' strings
	// point into; its length is what they cost.
	text string
}

// verify checks a token completely, in an order that makes a forgery cheap
// to refuse: the header is read first (only alg, kid and crit matter), the
// signature is checked with the key the kid names, and only a token we
// signed has its claims decoded, once, with each claim's JSON type checked.
func (t *Tokens) verify(token string, now time.Time) (verified, error) {
	if len(token) > maxTokenLen {
		return verified{}, errors.New("token too long")
	}
	h, rest, ok := strings.Cut(token, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.IndexByte(sig, '.') >= 0 {
		return verified{}, errors.New("token contains an invalid number of segments")
	}
	// The header and the claims, decoded into one buffer and made one
	// string: the claims' strings are substrings of it, one allocation.
	var stack [1024]byte
	buf := stack[:0]
	if n := strictB64.DecodedLen(len(h)) + strictB64.DecodedLen(len(p)); n > len(stack) {
		buf = make([]byte, 0, n)
	}
	buf, err := strictB64.AppendDecode(buf, []byte(h))
	if err != nil {
		return verified{}, fmt.Errorf("could not base64 decode header: %w", err)
	}
	hn := len(buf)
	if buf, err = strictB64.AppendDecode(buf, []byte(p)); err != nil {
		return verified{}, fmt.Errorf("could not base64 decode claims: %w", err)
	}
	if !json.Valid(buf[:hn]) {
		return verified{}, errors.New("could not JSON decode header")
	}
	text := string(buf)
	k, err := t.keyOf(text[:hn])
	if err != nil {
		return verified{}, err
	}
	var sigBuf [ed25519.SignatureSize]byte
	if strictB64.DecodedLen(len(sig)) > len(sigBuf) {
		return verified{}, errors.New("signature is invalid")
	}
	n, err := strictB64.Decode(sigBuf[:], []byte(sig))
	if err != nil {
		return verified{}, fmt.Errorf("could not base64 decode signature: %w", err)
	}
	if !k.verifies(token[:len(h)+1+len(p)], sigBuf[:n]) {
		return verified{}, errors.New("signature is invalid")
	}
	if !json.Valid(buf[hn:]) {
		return verified{}, errors.New("could not JSON decode claims")
	}
	v := verified{text: text}
	if err := t.decodeClaims(text[hn:], now, &v); err != nil {
		return verified{}, err
	}
	return v, nil
}

// keyOf is the key a header names, which must be one of the ring's and of
// the algorithm the header says; nothing else about the header is trusted.
// header is valid JSON.
func (t *Tokens) keyOf(header string) (*tokenKey, error) {
	o, ok := newObject(header)
	if !ok {
		return nil, errors.New("the header is not a JSON object")
	}
	var alg, kid string
	var seen uint8
	for {
		name, value, more := o.next()
		if !more {
			break
		}
		var bit uint8
		switch name {
		case "crit":
			// RFC 7515 §4.1.11: a "crit" extension the recipient does not
			// understand makes the token invalid, and we understand none.
			return nil, errors.New(`unsupported "crit" header`)
		case "alg":
			bit = 1
			if alg, ok = jsonString(value); !ok {
				return nil, errors.New("signing method (alg) is unspecified")
			}
		case "kid":
			bit = 2
			kid, _ = jsonString(value)
		default:
			continue
		}
		if seen&bit != 0 {
			return nil, fmt.Errorf("header %q twice", name)
		}
		seen |= bit
	}
	if seen&1 == 0 {
		return nil, errors.New("signing method (alg) is unspecified")
	}
	k, ok := t.byKID[kid]
	if !ok {
		return nil, errors.New("no kid, or an unknown one")
	}
	if alg != k.method.Alg() {
		return nil, fmt.Errorf("kid %s is a %s key, the token says %s", k.kid, k.method.Alg(), strconv.Quote(alg))
	}
	return k, nil
}

// mac is an HMAC keyed with a secret, and room for its sum.
type mac struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// verifies checks a signature of signed with the key.
func (k *tokenKey) verifies(signed string, sig []byte) bool {
	switch key := k.verify.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(key, []byte(signed), sig)
	case []byte:
		m := k.macs.Get().(*mac)
		m.h.Reset()
		// Write reads its argument and keeps none of it (hash.Hash's
		// contract): the token's bytes, without a copy of them.
		m.h.Write(unsafe.Slice(unsafe.StringData(signed), len(signed)))
		ok := hmac.Equal(sig, m.h.Sum(m.sum[:0]))
		k.macs.Put(m)
		return ok
	}
	return false
}

// The claims a token must or may carry, as bits.
const (
	claimIss = 1 << iota
	claimSub
	claimAud
	claimExp
	claimNbf
	claimIat
	claimJti
	claimName
	claimCreated
)

// decodeClaims reads the claims of a token whose signature verified, each
// known claim with exactly its JSON type (a number-looking string is not an
// exp, an object is not a jti) and at most once (RFC 7519 §4 lets a parser
// reject duplicates), and checks them as golang-jwt's validator does: iss
// and aud ours, exp required and not passed, iat and nbf not ahead, each
// with ClockSkew of leeway. claims is valid JSON. Unknown claims are
// ignored, whatever their type.
func (t *Tokens) decodeClaims(claims string, now time.Time, v *verified) error {
	o, ok := newObject(claims)
	if !ok {
		return errors.New("the claims are not a JSON object")
	}
	var (
		seen          uint16
		iss           string
		aud           audience
		exp, nbf, iat time.Time
	)
	c := &v.claims
	for {
		name, value, more := o.next()
		if !more {
			break
		}
		var bit uint16
		var str *string
		var date *time.Time
		switch name {
		case "iss":
			bit, str = claimIss, &iss
		case "sub":
			bit, str = claimSub, &c.UserID
		case "jti":
			bit, str = claimJti, &c.SessionID
		case "preferred_username":
			bit, str = claimName, &c.Username
		case "exp":
			bit, date = claimExp, &exp
		case "nbf":
			bit, date = claimNbf, &nbf
		case "iat":
			bit, date = claimIat, &iat
		case "account_created_at":
			bit, date = claimCreated, &c.AccountCreatedAt
		case "aud":
			// golang-jwt's ClaimStrings: one string, or an array of them.
			bit = claimAud
			aud = audience{}
			if s, ok := jsonString(value); ok {
				aud.add(s, t.audience)
			} else if !jsonStrings(value, func(s string) { aud.add(s, t.audience) }) {
				return fmt.Errorf("claim %q: want a JSON string or array of strings", name)
			}
		default:
			continue
		}
		if seen&bit != 0 {
			return fmt.Errorf("claim %q twice", name)
		}
		seen |= bit
		switch {
		case str != nil:
			if *str, ok = jsonString(value); !ok {
				return fmt.Errorf("claim %q: want a JSON string", name)
			}
		case date != nil:
			if !isJSONNumber(value) {
				return fmt.Errorf("claim %q: want a JSON number", name)
			}
			f, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return fmt.Errorf("claim %q: %w", name, err)
			}
			*date = numericDate(f)
		}
	}
	// What golang-jwt's validator checks, in its terms.
	switch {
	case seen&claimExp == 0:
		return errors.New("exp claim is required")
	case !now.Before(exp.Add(ClockSkew)):
		return jwt.ErrTokenExpired
	case seen&claimNbf != 0 && now.Before(nbf.Add(-ClockSkew)):
		return jwt.ErrTokenNotValidYet
	case seen&claimIat != 0 && now.Before(iat.Add(-ClockSkew)):
		return jwt.ErrTokenUsedBeforeIssued
	case aud.n == 0 || aud.n == 1 && aud.first == "":
		return errors.New("aud claim is required")
	case !aud.ours:
		return jwt.ErrTokenInvalidAudience
	case t.issuer != "" && iss == "":
		return errors.New("iss claim is required")
	case t.issuer != "" && iss != t.issuer:
		return jwt.ErrTokenInvalidIssuer
	}
	const required = claimSub | claimJti | claimIat | claimName | claimCreated
	if seen&required != required || c.UserID == "" || c.SessionID == "" || c.Username == "" {
		return errors.New("missing sub, jti, iat, preferred_username or account_created_at")
	}
	c.IssuedAt, c.ExpiresAt = iat, exp
	v.until = exp.Add(ClockSkew)
	v.from = iat.Add(-ClockSkew)
	if seen&claimNbf != 0 && nbf.After(iat) {
		v.from = nbf.Add(-ClockSkew)
	}
	return nil
}

// audience is what the validator asks of an aud: how many, the first, and
// whether ours is among them.
type audience struct {
	n     int
	first string
	ours  bool
}

func (a *audience) add(s, ours string) {
	if a.n == 0 {
		a.first = s
	}
	a.n++
	a.ours = a.ours || s == ours
}

// numericDate is a NumericDate's time as golang-jwt decodes it: seconds,
// their fraction in nanoseconds, truncated to its precision.
func numericDate(f float64) time.Time {
	round, frac := math.Modf(f)
	return time.Unix(int64(round), int64(frac*1e9)).Truncate(jwt.TimePrecision)
}
