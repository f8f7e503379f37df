package tokens_test

import (
	"testing"
	"time"

	"github.com/sessiond/sessiond/tokens"
)

// Token parsing, fuzzed: nothing panics, and nothing but a token we signed
// ever verifies (the fuzzer cannot forge an HMAC, so any other acceptance
// would be a parser that skipped the signature or the pinned algorithm).
func FuzzVerify(f *testing.F) {
	tk, err := tokens.New(tokens.Keyring{Secret: []byte("fuzz-secret-fuzz-secret-fuzz-secret!")}, "sessiond", "sessiond")
	if err != nil {
		f.Fatal(err)
	}
	// Fixed times: -fuzz reruns this set-up in each worker process, whose
	// token must be byte for byte the coordinator's.
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	good, err := tk.Sign(tokens.Claims{SessionID: "sid-1", UserID: "uid-1", IssuedAt: issued,
		ExpiresAt: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), Username: "alice", AccountCreatedAt: issued})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{good, good + "x", "", ".", "..", "a.b.c",
		"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1aWQtMSIsImp0aSI6InNpZC0xIn0.",
		"eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := tk.Verify(token)
		if err == nil && token != good {
			t.Fatalf("verified %q (claims %+v), which we never signed", token, c)
		}
	})
}
