// Package dpop checks DPoP proofs (RFC 9449): a JWT that a client signs,
// for one request, with a key of its own and whose public half it carries,
// so a credential bound to that key is worth nothing without the key. It
// checks what can be checked of one proof alone (RFC 9449 §4.3); the
// caller says which method and URL the request had, and must remember each
// proof's ID for ReplayWindow (in Redis, so replicas agree) to accept it
// once. It knows nothing about HTTP or sessions.
package dpop

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// MaxAge is how far a proof's iat may be from now, either way.
const MaxAge = 60 * time.Second

// ReplayWindow is how long a proof's ID must be remembered from when it was
// first accepted: longer than the proof stays acceptable by any replica's
// clock (from iat − MaxAge to iat + MaxAge, and replicas' clocks may differ
// by a few seconds).
const ReplayWindow = 2*MaxAge + 5*time.Second

// Caps on what a client sends: a proof is a few hundred bytes, its jti a
// random string (RFC 9449 asks for 96 bits or more).
const (
	maxProofLen = 4096
	maxIDLen    = 256
)

// Algorithms are the signature algorithms accepted, each with the one key
// type it takes.
var Algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// Proof is what a valid proof says.
type Proof struct {
	// KeyThumbprint is the RFC 7638 SHA-256 thumbprint of the proof's key,
	// base64url (RFC 9449's "jkt").
	KeyThumbprint string
	// ID is the proof's jti.
	ID string
	// IssuedAt is its iat.
	IssuedAt time.Time
}

// Error says why a proof was refused, in words safe to show its sender.
type Error struct{ Reason string }

func (e *Error) Error() string { return "DPoP proof: " + e.Reason }

func refuse(format string, a ...any) error { return &Error{Reason: fmt.Sprintf(format, a...)} }

// claims are the proof's payload. iat is read as a JSON number by hand:
// a number-looking string must not pass.
type claims struct {
	HTM string          `json:"htm"`
	HTU string          `json:"htu"`
	IAT json.RawMessage `json:"iat"`
	JTI string          `json:"jti"`
}

// Verify checks proof, the value of a request's DPoP header, for a request
// of method to uri at now: one compact JWS of type dpop+jwt, signed with
// ES256 (P-256) or EdDSA (Ed25519) by the public key in its jwk header, and
// claims htm = method, htu = uri (ignoring query and fragment, RFC 9449
// §4.3), iat within MaxAge of now and a jti. Whether the jti was seen before
// is the caller's to check. A refusal is an *Error.
func Verify(proof, method, uri string, now time.Time) (Proof, error) {
	if len(proof) > maxProofLen {
		return Proof{}, refuse("longer than %d bytes", maxProofLen)
	}
	jws, err := jose.ParseSignedCompact(proof, Algorithms)
	if err != nil {
		return Proof{}, refuse("not a compact JWS signed with ES256 or EdDSA")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return Proof{}, refuse(`typ must be "dpop+jwt"`)
	}
	jwk := h.JSONWebKey
	if jwk == nil || !jwk.Valid() || !jwk.IsPublic() {
		return Proof{}, refuse("the jwk header must hold a public key")
	}
	if !keyFits(jose.SignatureAlgorithm(h.Algorithm), jwk.Key) {
		return Proof{}, refuse("the key is not a %s key", h.Algorithm)
	}
	payload, err := jws.Verify(jwk)
	if err != nil {
		return Proof{}, refuse("the signature does not verify with the jwk header's key")
	}
	var c claims
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&c); err != nil {
		return Proof{}, refuse("the claims are not a JSON object of htm, htu, iat and jti")
	}
	iat, ok := numericDate(c.IAT)
	switch {
	case c.HTM != method:
		return Proof{}, refuse("htm must be %s", method)
	case !sameURI(c.HTU, uri):
		return Proof{}, refuse("htu must be %s", uri)
	case !ok:
		return Proof{}, refuse("iat must be a NumericDate")
	case abs(now.Unix()-iat.Unix()) > int64(MaxAge/time.Second): // whole seconds, as NumericDates are
		return Proof{}, refuse("iat must be within %s of the server's time", MaxAge)
	case c.JTI == "" || len(c.JTI) > maxIDLen:
		return Proof{}, refuse("jti must be 1 to %d characters", maxIDLen)
	}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return Proof{}, refuse("the key has no thumbprint")
	}
	return Proof{KeyThumbprint: base64.RawURLEncoding.EncodeToString(thumb), ID: c.JTI, IssuedAt: iat}, nil
}

// keyFits reports whether key is of the one type alg takes.
func keyFits(alg jose.SignatureAlgorithm, key any) bool {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return alg == jose.ES256 && k.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// numericDate reads a JSON number of seconds (RFC 7519 NumericDate).
func numericDate(raw json.RawMessage) (time.Time, bool) {
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if len(raw) == 0 || raw[0] == '"' || dec.Decode(&n) != nil {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > 1<<40 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// sameURI compares two absolute http(s) URIs after syntax-based
// normalisation (RFC 3986 §6.2.2–6.2.3: case of scheme and host, the
// default port, an empty path), ignoring query and fragment.
func sameURI(a, b string) bool {
	na, okA := normalURI(a)
	nb, okB := normalURI(b)
	return okA && okB && na == nb
}

func normalURI(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", false
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if scheme != "https" && scheme != "http" {
		return "", false
	}
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") { // an IPv6 literal
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, true
}

// NewProof makes a proof by key (an ECDSA P-256 or Ed25519 private key) for
// a request of method to uri at now, with a random jti: what a client
// sends, for Go clients, tools and tests.
func NewProof(key crypto.Signer, method, uri string, now time.Time) (string, error) {
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		alg = jose.ES256
		if k.Curve != elliptic.P256() {
			return "", errors.New("dpop: an ECDSA key must be P-256")
		}
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	default:
		return "", fmt.Errorf("dpop: a %T cannot sign a proof; want ECDSA P-256 or Ed25519", key)
	}
	o := (&jose.SignerOptions{}).WithType("dpop+jwt").WithHeader("jwk", jose.JSONWebKey{Key: key.Public()})
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, o)
	if err != nil {
		return "", err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	payload, _ := json.Marshal(claims{HTM: method, HTU: uri, JTI: base64.RawURLEncoding.EncodeToString(id),
		IAT: json.RawMessage(strconv.FormatInt(now.Unix(), 10))})
	jws, err := s.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}
