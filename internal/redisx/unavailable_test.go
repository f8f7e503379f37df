package redisx_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sessiond/sessiond/internal/redisx"
)

// A nil cause (a reply that was no error but not the expected one) is still
// unavailable, and its text holds no fmt verb error.
func TestUnavailableWithoutCause(t *testing.T) {
	err := redisx.Unavailable("claim username", nil)
	if !errors.Is(err, redisx.ErrUnavailable) {
		t.Fatalf("%v is not ErrUnavailable", err)
	}
	if msg := err.Error(); strings.Contains(msg, "%!") || !strings.HasPrefix(msg, "claim username: ") {
		t.Fatalf("message %q", msg)
	}
}

// A cause stays in the chain: a timeout is told from a refusal by it.
func TestUnavailableKeepsCause(t *testing.T) {
	err := redisx.Unavailable("read", context.DeadlineExceeded)
	if !errors.Is(err, redisx.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v lost a part of its chain", err)
	}
}
