package tokens_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/sessiond/sessiond/tokens"
)

// Replicas with the same ring derive the same keys, the signer's first; a
// rotation keeps deriving the old signer's key (now a previous one); another
// purpose or another ring derives something else.
func TestDeriveKeys(t *testing.T) {
	old, next := bytes.Repeat([]byte("o"), 32), bytes.Repeat([]byte("n"), 32)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ring := func(r tokens.Keyring) *tokens.Tokens {
		tk, err := tokens.New(r, "i", "a")
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	a := ring(tokens.Keyring{Secret: old}).DeriveKeys("x")
	b := ring(tokens.Keyring{Secret: old}).DeriveKeys("x")
	if len(a) != 1 || len(a[0]) != 32 || !bytes.Equal(a[0], b[0]) {
		t.Fatalf("two replicas derived %x and %x", a, b)
	}
	if bytes.Equal(a[0], old) || bytes.Equal(ring(tokens.Keyring{Secret: old}).DeriveKeys("y")[0], a[0]) {
		t.Fatal("the derived key is the secret, or the same for another purpose")
	}
	rotated := ring(tokens.Keyring{Secret: next, PreviousSecrets: [][]byte{old}}).DeriveKeys("x")
	if len(rotated) != 2 || bytes.Equal(rotated[0], a[0]) || !bytes.Equal(rotated[1], a[0]) {
		t.Fatalf("after a rotation: %x; want the new signer's key first, then the old one's %x", rotated, a[0])
	}
	signedByEd := ring(tokens.Keyring{Secret: old, PrivateKeys: []ed25519.PrivateKey{ed}}).DeriveKeys("x")
	if len(signedByEd) != 2 || !bytes.Equal(signedByEd[1], a[0]) || bytes.Equal(signedByEd[0], a[0]) {
		t.Fatalf("with an Ed25519 signer: %x; want its key first, then the secret's", signedByEd)
	}
}
