package sessions_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/sessions"
)

// Replicas agree on successors through their keyring, also across a
// rotation: a replica whose signer is new still answers a retry of a token
// refreshed by one with the old signer (it derives the old key too), and
// refreshes the old signer's tokens. One that lacks the key a successor was
// made with cannot answer the retry: unavailable, never a sign-out.
func TestRefreshAcrossAKeyRotation(t *testing.T) {
	st, uid, prefix := refreshStore(t)
	oldKey, newKey := bytes.Repeat([]byte("k"), 32), bytes.Repeat([]byte("n"), 32)
	o := sessions.Options{ReuseGrace: 30 * time.Second}
	replica := func(ks ...[]byte) *sessions.Store {
		o.RefreshKeys = ks
		return newStore(t, srv.Client(t), prefix, o)
	}
	rotated, newOnly := replica(newKey, oldKey), replica(newKey)
	ctx := context.Background()
	s, err := st.Create(ctx, uid, "0", sessions.Meta{Refresh: true})
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Refresh(ctx, s.RefreshToken, sessions.Presenter{IP: "203.0.113.7"})
	if err != nil {
		t.Fatal(err)
	}
	if retry, err := rotated.Refresh(ctx, s.RefreshToken, sessions.Presenter{IP: "203.0.113.7"}); err != nil || !retry.Retry || retry.RefreshToken != first.RefreshToken {
		t.Fatalf("retry on the rotated replica: %v, retry %v, same successor %v", err, retry.Retry, retry.RefreshToken == first.RefreshToken)
	}
	if _, err := newOnly.Refresh(ctx, s.RefreshToken, sessions.Presenter{}); !errors.Is(err, sessions.ErrRefreshInvalid) {
		t.Fatalf("a replica without the old key: %v; want the old key's token refused", err)
	}
	next, err := rotated.Refresh(ctx, first.RefreshToken, sessions.Presenter{})
	if err != nil {
		t.Fatal(err)
	}
	// next was made with the new key: the old-key-only store cannot check it.
	if _, err := st.Refresh(ctx, next.RefreshToken, sessions.Presenter{}); !errors.Is(err, sessions.ErrRefreshInvalid) {
		t.Fatalf("the new key's token on a replica without it: %v", err)
	}
	if _, err := st.Refresh(ctx, first.RefreshToken, sessions.Presenter{}); !errors.Is(err, redisx.ErrUnavailable) {
		t.Fatalf("a retry on a replica that lacks the successor's key: %v; want unavailable", err)
	}
	if r, err := newOnly.Refresh(ctx, next.RefreshToken, sessions.Presenter{}); err != nil || r.ID != s.ID {
		t.Fatalf("the new key's token on the new replica: %v", err)
	}
}
