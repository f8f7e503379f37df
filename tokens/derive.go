package tokens

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"sort"
)

// DeriveKeys returns a 32-byte key for purpose from each key of the ring,
// the signing key's first: HKDF-SHA256 (RFC 5869) of the key's secret
// material, with purpose as the info, so what is derived says nothing about
// the key it came from nor about what another purpose derives. Every
// replica with the same keyring derives the same keys, so a value one of
// them makes with the first, any of them can check; and after a rotation
// has made the signing key a previous one, it still derives what it did.
func (t *Tokens) DeriveKeys(purpose string) [][]byte {
	ring := []*tokenKey{t.signer}
	var rest []*tokenKey
	for _, k := range t.byKID {
		if k.kid != t.signer.kid {
			rest = append(rest, k)
		}
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i].kid < rest[j].kid })
	out := make([][]byte, 0, len(ring)+len(rest))
	for _, k := range append(ring, rest...) {
		var secret []byte
		switch m := k.sign.(type) {
		case ed25519.PrivateKey:
			secret = m.Seed()
		default:
			secret, _ = k.verify.([]byte) // an HMAC secret, signing or previous
		}
		key, err := hkdf.Key(sha256.New, secret, nil, "sessiond "+purpose, 32)
		if err != nil {
			panic(err) // only for a length HKDF-SHA256 cannot make
		}
		out = append(out, key)
	}
	return out
}
