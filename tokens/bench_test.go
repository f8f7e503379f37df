package tokens_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	mathrand "math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessiond/sessiond/tokens"
)

func BenchmarkVerifyHS256(b *testing.B) {
	tk, _ := tokens.New(tokens.Keyring{Secret: secret}, "sessiond", "sessiond")
	now := time.Now()
	tok, _ := tk.Sign(tokens.Claims{SessionID: "6f1c7a2e-1111-4222-8333-444444444444", UserID: "7f1c7a2e-1111-4222-8333-444444444444",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Username: "alice@example.com", AccountCreatedAt: now.Add(-24 * time.Hour)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEdDSA(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	tk, _ := tokens.New(tokens.Keyring{PrivateKeys: []ed25519.PrivateKey{priv}}, "sessiond", "sessiond")
	benchVerify(b, tk)
}

// The cache's hit: the same token again.
func BenchmarkVerifyCachedHS256(b *testing.B) {
	tk, _ := tokens.New(tokens.Keyring{Secret: secret}, "sessiond", "sessiond", tokens.WithCache(32<<20))
	benchVerify(b, tk)
}

func BenchmarkVerifyCachedEdDSA(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	tk, _ := tokens.New(tokens.Keyring{PrivateKeys: []ed25519.PrivateKey{priv}}, "sessiond", "sessiond", tokens.WithCache(32<<20))
	benchVerify(b, tk)
}

// The cache's miss: a new token each time, verified and added, evicting
// another once the cache is full (here after a few thousand).
func BenchmarkVerifyCacheMissHS256(b *testing.B) {
	tk, _ := tokens.New(tokens.Keyring{Secret: secret}, "sessiond", "sessiond", tokens.WithCache(4<<20))
	now := time.Now()
	toks := make([]string, 20000)
	for i := range toks {
		toks[i], _ = tk.Sign(tokens.Claims{SessionID: fmt.Sprintf("6f1c7a2e-1111-4222-8333-%012d", i), UserID: "7f1c7a2e-1111-4222-8333-444444444444",
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), Username: "alice@example.com", AccountCreatedAt: now.Add(-24 * time.Hour)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := tk.VerifyAt(toks[i%len(toks)], now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// Concurrent hits over 2,000 tokens, as 2,000 clients would send them.
func BenchmarkVerifyCachedParallel(b *testing.B) {
	tk, _ := tokens.New(tokens.Keyring{Secret: secret}, "sessiond", "sessiond", tokens.WithCache(32<<20))
	now := time.Now()
	toks := make([]string, 2000)
	for i := range toks {
		toks[i], _ = tk.Sign(tokens.Claims{SessionID: fmt.Sprintf("6f1c7a2e-1111-4222-8333-%012d", i), UserID: "7f1c7a2e-1111-4222-8333-444444444444",
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), Username: "alice@example.com", AccountCreatedAt: now.Add(-24 * time.Hour)})
		_, _ = tk.VerifyAt(toks[i], now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := tk.VerifyAt(toks[i%len(toks)], now); err != nil {
				b.Fatal(err)
			}
			i += 7
		}
	})
}

func benchVerify(b *testing.B, tk *tokens.Tokens) {
	now := time.Now()
	tok, _ := tk.Sign(tokens.Claims{SessionID: "6f1c7a2e-1111-4222-8333-444444444444", UserID: "7f1c7a2e-1111-4222-8333-444444444444",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Username: "alice@example.com", AccountCreatedAt: now.Add(-24 * time.Hour)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.VerifyAt(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}

// Hits over a million tokens in random order, as a million clients send
// them: the lookup as the cache outgrows the CPU's caches and TLB.
func BenchmarkVerifyCachedMillion(b *testing.B) {
	const n = 1_000_000
	tk, _ := tokens.New(tokens.Keyring{Secret: secret}, "sessiond", "sessiond", tokens.WithCache(1<<30))
	now := time.Now()
	toks := make([]string, n)
	for i := range toks {
		toks[i], _ = tk.Sign(tokens.Claims{SessionID: uuid.NewString(), UserID: uuid.NewString(),
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), Username: fmt.Sprintf("user%07d", i), AccountCreatedAt: now.Add(-24 * time.Hour)})
		if _, err := tk.VerifyAt(toks[i], now); err != nil {
			b.Fatal(err)
		}
	}
	if st := tk.CacheStats(); st.Entries != n {
		b.Fatalf("the cache holds %d of %d tokens", st.Entries, n)
	}
	order := mathrand.Perm(n)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := tk.VerifyAt(toks[order[i%n]], now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
