// Package seal encrypts small secrets at rest (TOTP secrets) with keys from
// the configuration, so a dump of Redis alone does not give them away. A
// keyring's first key seals; every key opens, so a key can be rotated in
// without re-encrypting: add the new one first, keep the old ones until no
// sealed value names them. It knows nothing about accounts or HTTP.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// MinKeyLen is the shortest configured key accepted.
const MinKeyLen = 32

// ErrNoKey means no key is configured, so nothing can be sealed.
var ErrNoKey = errors.New("seal: no encryption key is configured")

// ErrOpen means a sealed value could not be opened: it was sealed with a key
// no longer configured, for another context, or it was altered.
var ErrOpen = errors.New("seal: cannot open the sealed value (unknown key, or altered)")

// Ring seals with its first key and opens with any.
type Ring struct {
	keys []key
}

type key struct {
	id   string
	aead cipher.AEAD
}

// New returns a ring of the configured keys, the sealing one first; each
// must be at least MinKeyLen bytes. No keys makes a ring that seals nothing
// (Sealing reports false).
func New(secrets ...[]byte) (*Ring, error) {
	r := &Ring{}
	for i, s := range secrets {
		if len(s) < MinKeyLen {
			return nil, fmt.Errorf("key %d is shorter than %d bytes", i+1, MinKeyLen)
		}
		// The configured secret is key material, not necessarily uniform
		// bytes: HKDF makes the AES key, and a separate id names it.
		k, err := hkdf.Key(sha256.New, s, nil, "sessiond seal aes-256-gcm", 32)
		if err != nil {
			return nil, err
		}
		id, err := hkdf.Key(sha256.New, s, nil, "sessiond seal key id", 6)
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		r.keys = append(r.keys, key{id: base64.RawURLEncoding.EncodeToString(id), aead: aead})
	}
	return r, nil
}

// Sealing reports whether the ring has a key to seal with.
func (r *Ring) Sealing() bool { return r != nil && len(r.keys) > 0 }

// Seal encrypts plaintext bound to context (e.g. the account id, so a sealed
// value copied to another account does not open there).
func (r *Ring) Seal(plaintext []byte, context string) (string, error) {
	if !r.Sealing() {
		return "", ErrNoKey
	}
	k := r.keys[0]
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	ct := k.aead.Seal(nonce, nonce, plaintext, []byte(context))
	return "v1." + k.id + "." + base64.RawURLEncoding.EncodeToString(ct), nil
}

// Open decrypts what Seal made for the same context.
func (r *Ring) Open(sealed, context string) ([]byte, error) {
	parts := strings.Split(sealed, ".")
	if r == nil || len(parts) != 3 || parts[0] != "v1" {
		return nil, ErrOpen
	}
	ct, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, ErrOpen
	}
	for _, k := range r.keys {
		if k.id != parts[1] || len(ct) < k.aead.NonceSize() {
			continue
		}
		n := k.aead.NonceSize()
		if pt, err := k.aead.Open(nil, ct[:n], ct[n:], []byte(context)); err == nil {
			return pt, nil
		}
	}
	return nil, ErrOpen
}
