package dpop_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/sessiond/sessiond/dpop"
)

const uri = "https://auth.example.com/v1/auth/refresh"

// sign makes a proof with go-jose: header typ and the public jwk, as
// RFC 9449 §4.2 has it, unless the test changes them.
func sign(t *testing.T, alg jose.SignatureAlgorithm, priv crypto.Signer, typ string, jwk any, claims map[string]any) string {
	t.Helper()
	o := (&jose.SignerOptions{EmbedJWK: false}).WithType(jose.ContentType(typ))
	if jwk != nil {
		o = o.WithHeader("jwk", jwk)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: priv}, o)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func good(now time.Time) map[string]any {
	return map[string]any{"htm": "POST", "htu": uri, "iat": now.Unix(), "jti": "a-random-id-of-the-client"}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestVerifyAcceptsES256AndEdDSA(t *testing.T) {
	now := time.Now()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, k := range []struct {
		alg  jose.SignatureAlgorithm
		priv crypto.Signer
	}{{jose.ES256, ec}, {jose.EdDSA, ed}} {
		pub := jose.JSONWebKey{Key: k.priv.Public()}
		p, err := dpop.Verify(sign(t, k.alg, k.priv, "dpop+jwt", pub, good(now)), "POST", uri, now)
		if err != nil {
			t.Fatalf("%s: %v", k.alg, err)
		}
		thumb, _ := pub.Thumbprint(crypto.SHA256)
		if p.KeyThumbprint != base64.RawURLEncoding.EncodeToString(thumb) || p.ID != "a-random-id-of-the-client" || p.IssuedAt.Unix() != now.Unix() {
			t.Fatalf("%s: %+v", k.alg, p)
		}
		// htu is compared after normalisation, without query or fragment.
		if _, err := dpop.Verify(sign(t, k.alg, k.priv, "dpop+jwt", pub, with(good(now), "htu", "HTTPS://Auth.Example.com:443/v1/auth/refresh?x=1#f")), "POST", uri, now); err != nil {
			t.Fatalf("%s with an equivalent htu: %v", k.alg, err)
		}
	}
}

// Every way a proof can be wrong is refused, with a reason naming it.
func TestVerifyRefuses(t *testing.T) {
	now := time.Now()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pub := jose.JSONWebKey{Key: ec.Public()}
	hmacJWS := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(strings.Repeat("k", 32))},
			(&jose.SignerOptions{}).WithType("dpop+jwt"))
		b, _ := json.Marshal(good(now))
		j, _ := s.Sign(b)
		out, _ := j.CompactSerialize()
		return out
	}
	for _, c := range []struct {
		name, proof, want string
	}{
		{"garbage", "not a jwt", "compact JWS"},
		{"too long", strings.Repeat("a", 5000), "longer"},
		{"HS256", hmacJWS(), "compact JWS"},
		{"RS256", sign(t, jose.RS256, rsaKey, "dpop+jwt", jose.JSONWebKey{Key: rsaKey.Public()}, good(now)), "compact JWS"},
		{"ES384 key as ES256", sign(t, jose.ES384, ec384, "dpop+jwt", jose.JSONWebKey{Key: ec384.Public()}, good(now)), "compact JWS"},
		{"typ JWT", sign(t, jose.ES256, ec, "JWT", pub, good(now)), "typ"},
		{"no typ", sign(t, jose.ES256, ec, "", pub, good(now)), "typ"},
		{"no jwk", sign(t, jose.ES256, ec, "dpop+jwt", nil, good(now)), "jwk"},
		{"another key in jwk", sign(t, jose.ES256, ec, "dpop+jwt", jose.JSONWebKey{Key: other.Public()}, good(now)), "signature"},
		{"an Ed25519 key for ES256", sign(t, jose.ES256, ec, "dpop+jwt", jose.JSONWebKey{Key: ed.Public()}, good(now)), "not a ES256 key"},
		{"a private key in jwk", sign(t, jose.ES256, ec, "dpop+jwt", jose.JSONWebKey{Key: ec}, good(now)), "compact JWS"},
		{"htm GET", sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "htm", "GET")), "htm"},
		{"htm missing", sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "htm", nil)), "htm"},
		{"htu of another path", sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "htu", "https://auth.example.com/v1/auth/login")), "htu"},
		{"htu of another host", sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "htu", "https://evil.example.com/v1/auth/refresh")), "htu"},
		{"htu over http", sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "htu", "http://auth.example.com/v1/auth/refresh")), "htu"},
		{"htu not a string", sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "htu", 42)), "claims"},
		{"iat 61s ago", sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "iat", now.Add(-61*time.Second).Unix())), "iat"},
		{"iat in 61s", sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "iat", now.Add(61*time.Second).Unix())), "iat"},
		{"iat a string", sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "iat", "1700000000")), "iat"},
		{"iat missing", sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "iat", nil)), "iat"},
		{"jti missing", sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "jti", nil)), "jti"},
		{"jti too long", sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "jti", strings.Repeat("j", 257))), "jti"},
	} {
		_, err := dpop.Verify(c.proof, "POST", uri, now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want a refusal naming %q", c.name, err, c.want)
		}
	}
	// 60 s either way is still fine.
	for _, d := range []time.Duration{-60 * time.Second, 60 * time.Second} {
		if _, err := dpop.Verify(sign(t, jose.ES256, ec, "dpop+jwt", pub, with(good(now), "iat", now.Add(d).Unix())), "POST", uri, now); err != nil {
			t.Errorf("iat %s from now: %v", d, err)
		}
	}
}

// NewProof makes what Verify accepts, for both key types, and refuses others.
func TestNewProof(t *testing.T) {
	now := time.Now()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, k := range []crypto.Signer{ec, ed} {
		a, err := dpop.NewProof(k, "POST", uri, now)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := dpop.NewProof(k, "POST", uri, now)
		pa, err := dpop.Verify(a, "POST", uri, now)
		pb, _ := dpop.Verify(b, "POST", uri, now)
		if err != nil || pa.ID == pb.ID || pa.KeyThumbprint != pb.KeyThumbprint {
			t.Fatalf("%T: %v; two proofs' ids %q %q, thumbprints %q %q", k, err, pa.ID, pb.ID, pa.KeyThumbprint, pb.KeyThumbprint)
		}
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, k := range []crypto.Signer{p384, rsaKey} {
		if _, err := dpop.NewProof(k, "POST", uri, now); err == nil {
			t.Errorf("%T: a proof was made", k)
		}
	}
}
