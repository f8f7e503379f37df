package passkeys_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sessiond/sessiond/passkeys"
)

// The relying party's configuration is refused at start-up with a reason,
// rather than failing every ceremony later.
func TestValidateConfig(t *testing.T) {
	for _, c := range []struct {
		rpID    string
		origins []string
		want    error
		says    string
	}{
		{"example.com", []string{"https://example.com", "https://login.example.com:8443", "https://a.b.example.com/"}, nil, ""},
		{"localhost", []string{"http://localhost:3000", "https://localhost"}, nil, ""},
		{"", []string{"https://example.com"}, passkeys.ErrBadRPID, "lowercase host name"},
		{"https://example.com", []string{"https://example.com"}, passkeys.ErrBadRPID, "without scheme"},
		{"example.com:443", []string{"https://example.com"}, passkeys.ErrBadRPID, ""},
		{"Example.com", []string{"https://example.com"}, passkeys.ErrBadRPID, ""},
		{"192.0.2.1", []string{"https://192.0.2.1"}, passkeys.ErrBadRPID, ""},
		{".example.com", []string{"https://example.com"}, passkeys.ErrBadRPID, ""},
		{"example.com", nil, passkeys.ErrBadOrigin, "none is set"},
		{"example.com", []string{"http://example.com"}, passkeys.ErrBadOrigin, "is not https"},
		{"localhost", []string{"http://127.0.0.1:3000"}, passkeys.ErrBadOrigin, "is not https"},
		{"example.com", []string{"https://evil.com"}, passkeys.ErrBadOrigin, "neither"},
		{"example.com", []string{"https://notexample.com"}, passkeys.ErrBadOrigin, "neither"},
		{"example.com", []string{"https://example.com.evil.com"}, passkeys.ErrBadOrigin, "neither"},
		{"example.com", []string{"https://example.com/login"}, passkeys.ErrBadOrigin, "is not an origin"},
		{"example.com", []string{"https://example.com?x"}, passkeys.ErrBadOrigin, "is not an origin"},
		{"example.com", []string{"https://user@example.com"}, passkeys.ErrBadOrigin, "is not an origin"},
		{"example.com", []string{"example.com"}, passkeys.ErrBadOrigin, "is not an origin"},
		{"example.com", []string{""}, passkeys.ErrBadOrigin, "is not an origin"},
	} {
		err := passkeys.ValidateConfig(c.rpID, c.origins)
		if c.want == nil && err != nil || c.want != nil && (!errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says)) {
			t.Errorf("ValidateConfig(%q, %q) = %v; want %v saying %q", c.rpID, c.origins, err, c.want, c.says)
		}
	}
}
