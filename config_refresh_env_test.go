package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/sessiond/sessiond/dpop"
)

// The refresh-token variables, observed through the built binary.

// refreshReply is what a sign-in or a refresh answers with refresh tokens.
type refreshReply struct {
	Token        string `json:"token"`
	ExpiresAt    string `json:"expires_at"`
	RefreshToken string `json:"refresh_token"`
	Session      struct {
		ID        string `json:"id"`
		DPoPBound bool   `json:"dpop_bound"`
	} `json:"session"`
}

func refreshCall(t *testing.T, base, rt string) (reply, refreshReply) {
	t.Helper()
	r := call(t, "POST", base+"/v1/auth/refresh", "", map[string]string{"refresh_token": rt})
	var rr refreshReply
	if r.status == 200 {
		decode(t, r, &rr)
	}
	return r, rr
}

func signInRefresh(t *testing.T, base string, header ...string) refreshReply {
	t.Helper()
	r, _ := login(t, base, adminName, adminPass, header...)
	var rr refreshReply
	if r.status == 201 {
		decode(t, r, &rr)
	}
	if r.status != 201 || rr.RefreshToken == "" {
		t.Fatalf("login: %d %s; want 201 with a refresh_token", r.status, r.body)
	}
	return rr
}

func effectAccessTokenTTL(t *testing.T) {
	base, _ := startBinary(t, withAdmin(map[string]string{"ACCESS_TOKEN_TTL": "30s"}))
	now := time.Now()
	lr := signInRefresh(t, base)
	exp, _ := time.Parse(time.RFC3339, lr.ExpiresAt)
	if d := exp.Sub(now); d < 28*time.Second || d > 31*time.Second {
		t.Fatalf("ACCESS_TOKEN_TTL=30s: expires_at %s from now", d)
	}
	if e, _ := claims(t, lr.Token)["exp"].(float64); int64(e) != exp.Unix() {
		t.Fatalf("token exp %v, expires_at %s", e, lr.ExpiresAt)
	}
	r, rr := refreshCall(t, base, lr.RefreshToken)
	if r.status != 200 || rr.Session.ID != lr.Session.ID || call(t, "GET", base+"/v1/me", rr.Token, nil).status != 200 {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	// Unset: one token to the session's end, no refresh token.
	plain := startPlain(t)
	if _, lr := login(t, plain, adminName, adminPass); lr.Token == "" {
		t.Fatal("login without ACCESS_TOKEN_TTL failed")
	}
}

// startPlain is the binary with the admin and defaults only.
func startPlain(t *testing.T) string {
	t.Helper()
	base, _ := startBinary(t, withAdmin(nil))
	r := call(t, "POST", base+"/v1/auth/login", "", map[string]string{"username": adminName, "password": adminPass})
	var m map[string]any
	decode(t, r, &m)
	if _, ok := m["refresh_token"]; ok {
		t.Fatalf("a refresh_token without ACCESS_TOKEN_TTL: %s", r.body)
	}
	return base
}

func effectReuseGrace(t *testing.T) {
	base, _ := startBinary(t, withAdmin(map[string]string{"ACCESS_TOKEN_TTL": "1m", "REFRESH_REUSE_GRACE": "1s"}))
	lr := signInRefresh(t, base)
	_, first := refreshCall(t, base, lr.RefreshToken)
	// Within the grace: the same successor.
	if r, again := refreshCall(t, base, lr.RefreshToken); r.status != 200 || again.RefreshToken != first.RefreshToken {
		t.Fatalf("within REFRESH_REUSE_GRACE=1s: %d, same successor %v", r.status, again.RefreshToken == first.RefreshToken)
	}
	time.Sleep(1200 * time.Millisecond)
	if r, _ := refreshCall(t, base, lr.RefreshToken); r.status != 401 {
		t.Fatalf("after REFRESH_REUSE_GRACE=1s: %d %s, want 401", r.status, r.body)
	}
	if s := call(t, "GET", base+"/v1/me", first.Token, nil).status; s != 401 {
		t.Fatalf("the session's access token after the reuse: %d, want 401", s)
	}
}

func effectPublicURL(t *testing.T) {
	base, _ := startBinary(t, withAdmin(map[string]string{"ACCESS_TOKEN_TTL": "1m", "PUBLIC_URL": "https://auth.example.com/"}))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	proof := func(htu string) string {
		p, err := dpop.NewProof(key, "POST", htu, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if r, _ := login(t, base, adminName, adminPass, "DPoP", proof(base+"/v1/auth/login")); r.status != 400 {
		t.Fatalf("a proof for the URL the service sees, with PUBLIC_URL set: %d %s, want 400", r.status, r.body)
	}
	if lr := signInRefresh(t, base, "DPoP", proof("https://auth.example.com/v1/auth/login")); !lr.Session.DPoPBound {
		t.Fatal("a proof for PUBLIC_URL did not bind the session")
	}
}
