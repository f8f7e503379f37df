package tokens_test

import (
	"testing"
	"time"

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
