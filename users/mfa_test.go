package users_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/seal"
	"github.com/sessiond/sessiond/users"
)

var mfaKey = []byte("mfa-test-key-mfa-test-key-mfa-test-key!")

// clock is a settable test clock.
type clock struct{ at atomic.Int64 }

func (c *clock) now() time.Time   { return time.Unix(0, c.at.Load()) }
func (c *clock) set(t time.Time)  { c.at.Store(t.UnixNano()) }
func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }

func newMFAStore(t *testing.T, now func() time.Time, sealKeys ...[]byte) (*users.Store, keys.Layout) {
	t.Helper()
	ring, err := seal.New(sealKeys...)
	if err != nil {
		t.Fatal(err)
	}
	return newStoreKeys(t, users.Options{Seal: ring, TOTPIssuer: "sessiond-test", Now: now})
}

// enroll enrolls u with TOTP at the clock's time and returns the secret and
// the recovery codes.
func enroll(t *testing.T, s *users.Store, u users.User, at time.Time) (string, []string) {
	t.Helper()
	secret, url, err := s.BeginTOTP(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "otpauth://totp/") || !strings.Contains(url, "secret="+secret) {
		t.Fatalf("otpauth URL %q", url)
	}
	code, _ := totp.GenerateCode(secret, at)
	codes, err := s.ConfirmTOTP(ctx, u.ID, code, audit.Actor{ID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	return secret, codes
}

func TestTOTPEnrollmentAndCodesOnce(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clk := newClock(start)
	s, k := newMFAStore(t, clk.now, mfaKey)
	u, _ := s.Create(ctx, "mallory", "password123", "", audit.Actor{})

	secret, _, err := s.BeginTOTP(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	// Not active until confirmed.
	if st, _ := s.MFAStatus(ctx, u.ID); st.TOTP {
		t.Fatal("TOTP active before its confirmation")
	}
	if _, err := s.ConfirmTOTP(ctx, u.ID, "000000", audit.Actor{}); !errors.Is(err, users.ErrInvalidCredentials) {
		t.Fatalf("a wrong confirmation code: %v", err)
	}
	code, _ := totp.GenerateCode(secret, start)
	codes, err := s.ConfirmTOTP(ctx, u.ID, code, audit.Actor{ID: u.ID})
	if err != nil || len(codes) != users.RecoveryCodeCount {
		t.Fatalf("confirm: %v, %d codes", err, len(codes))
	}
	if st, _ := s.MFAStatus(ctx, u.ID); !st.TOTP || st.RecoveryCodesLeft != users.RecoveryCodeCount {
		t.Fatalf("status after enrolling: %+v", st)
	}
	// A Redis dump holds neither the secret nor a recovery code.
	h, _ := srv.Do(t, "HGETALL", k.User(u.ID)).AsStrMap()
	members, _ := srv.Do(t, "SMEMBERS", k.Recovery(u.ID)).AsStrSlice()
	dump := fmt.Sprint(h, members)
	if strings.Contains(dump, secret) || strings.Contains(dump, codes[0]) ||
		strings.Contains(dump, strings.ReplaceAll(codes[0], "-", "")) {
		t.Fatalf("a secret in Redis: %s", dump)
	}

	// The confirming code was spent; so is any code of the same step, on
	// any replica (the step is in Redis).
	other, _ := newStoreWith(t, s, k, clk.now, mfaKey)
	for _, st := range []*users.Store{s, other} {
		if _, err := st.CheckSecondFactor(ctx, u.ID, code, "", audit.Actor{}, ""); !errors.Is(err, users.ErrInvalidCredentials) {
			t.Fatalf("the confirming code again: %v", err)
		}
	}
	// The next step's code works once, one step of drift is allowed, two are not.
	clk.set(start.Add(30 * time.Second))
	next, _ := totp.GenerateCode(secret, start.Add(60*time.Second))
	if m, err := s.CheckSecondFactor(ctx, u.ID, next, "", audit.Actor{}, ""); err != nil || m != users.MethodTOTP {
		t.Fatalf("a code one step ahead: %q %v", m, err)
	}
	if _, err := other.CheckSecondFactor(ctx, u.ID, next, "", audit.Actor{}, ""); !errors.Is(err, users.ErrInvalidCredentials) {
		t.Fatalf("the same code on another replica: %v", err)
	}
	far, _ := totp.GenerateCode(secret, start.Add(150*time.Second))
	if _, err := s.CheckSecondFactor(ctx, u.ID, far, "", audit.Actor{}, ""); !errors.Is(err, users.ErrInvalidCredentials) {
		t.Fatalf("a code four steps ahead: %v", err)
	}

	// Each recovery code once, whatever its case and dashes.
	typed := strings.ToUpper(strings.ReplaceAll(codes[3], "-", " "))
	if m, err := s.CheckSecondFactor(ctx, u.ID, "", typed, audit.Actor{}, ""); err != nil || m != users.MethodRecovery {
		t.Fatalf("a recovery code: %q %v", m, err)
	}
	if _, err := s.CheckSecondFactor(ctx, u.ID, "", codes[3], audit.Actor{}, ""); !errors.Is(err, users.ErrInvalidCredentials) {
		t.Fatalf("a recovery code twice: %v", err)
	}
	if st, _ := s.MFAStatus(ctx, u.ID); st.RecoveryCodesLeft != users.RecoveryCodeCount-1 {
		t.Fatalf("codes left: %d", st.RecoveryCodesLeft)
	}

	// Removal ends both.
	if err := s.RemoveMFA(ctx, u.ID, audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.MFAStatus(ctx, u.ID); st.TOTP || st.RecoveryCodesLeft != 0 {
		t.Fatalf("status after removal: %+v", st)
	}
	if _, err := s.CheckSecondFactor(ctx, u.ID, "", codes[4], audit.Actor{}, ""); !errors.Is(err, users.ErrInvalidCredentials) {
		t.Fatalf("a recovery code after removal: %v", err)
	}
}

// newStoreWith is another replica of s: the same Redis and layout.
func newStoreWith(t *testing.T, _ *users.Store, k keys.Layout, now func() time.Time, sealKeys ...[]byte) (*users.Store, keys.Layout) {
	t.Helper()
	ring, _ := seal.New(sealKeys...)
	c := srv.Client(t)
	o := users.Options{Keys: k, BcryptCost: 4, Timeout: 2 * time.Second, FailureWindow: time.Minute,
		Audit: audit.New(c, k, 2*time.Second, now), Seal: ring, TOTPIssuer: "sessiond-test", Now: now}
	s, err := users.New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	return s, k
}

func TestTOTPNeedsTheKeyItWasSealedWith(t *testing.T) {
	t.Parallel()
	now := time.Now()
	s, k := newMFAStore(t, func() time.Time { return now })
	u, _ := s.Create(ctx, "nokey", "password123", "", audit.Actor{})
	if _, _, err := s.BeginTOTP(ctx, u); !errors.Is(err, users.ErrMFANotConfigured) {
		t.Fatalf("enrolling without a key: %v", err)
	}
	s1, _ := newStoreWith(t, nil, k, func() time.Time { return now }, mfaKey)
	secret, _ := enroll(t, s1, u, now)
	code, _ := totp.GenerateCode(secret, now.Add(30*time.Second))
	// Rotated: a new first key, the old one kept, opens it.
	rotated, _ := newStoreWith(t, nil, k, func() time.Time { return now }, []byte(strings.Repeat("n", 32)), mfaKey)
	if _, err := rotated.CheckSecondFactor(ctx, u.ID, code, "", audit.Actor{}, ""); err != nil {
		t.Fatalf("after adding a new key first: %v", err)
	}
	// Without the old key the secret cannot be opened: an error, not a pass.
	lost, _ := newStoreWith(t, nil, k, func() time.Time { return now }, []byte(strings.Repeat("n", 32)))
	code, _ = totp.GenerateCode(secret, now.Add(-30*time.Second))
	if _, err := lost.CheckSecondFactor(ctx, u.ID, code, "", audit.Actor{}, ""); err == nil || errors.Is(err, users.ErrInvalidCredentials) {
		t.Fatalf("a secret sealed with a dropped key: %v", err)
	}
	// A sealed secret copied onto another account does not open there.
	v, _ := newStoreWith(t, nil, k, func() time.Time { return now }, mfaKey)
	victim, _ := v.Create(ctx, "victim", "password123", "", audit.Actor{})
	sealed, _ := srv.Do(t, "HGET", k.User(u.ID), keys.UserTOTP).ToString()
	hset(t, k, victim.ID, keys.UserTOTP, sealed)
	if _, err := v.CheckSecondFactor(ctx, victim.ID, code, "", audit.Actor{}, ""); err == nil || errors.Is(err, users.ErrInvalidCredentials) {
		t.Fatalf("another account's sealed secret: %v", err)
	}
}

func TestMFATokenSingleUseAndEndedByWrongCodes(t *testing.T) {
	t.Parallel()
	s, _ := newMFAStore(t, nil, mfaKey)
	p := users.MFAPending{UserID: "u1", CredentialVersion: "3", DeviceName: "phone", Platform: "ios"}
	tok, err := s.StartMFA(ctx, p)
	if err != nil || len(tok) < 43 {
		t.Fatalf("start: %q %v", tok, err)
	}
	if got, err := s.PendingMFA(ctx, tok); err != nil || got != p {
		t.Fatalf("pending: %+v %v", got, err)
	}
	for range users.MFAMaxWrong - 1 {
		_ = s.WrongMFA(ctx, tok)
	}
	if _, err := s.PendingMFA(ctx, tok); err != nil {
		t.Fatalf("after %d wrong codes: %v", users.MFAMaxWrong-1, err)
	}
	_ = s.WrongMFA(ctx, tok)
	if _, err := s.PendingMFA(ctx, tok); !errors.Is(err, users.ErrMFATokenInvalid) {
		t.Fatalf("after %d wrong codes: %v", users.MFAMaxWrong, err)
	}
	// Of 20 racing completions, one wins.
	tok, _ = s.StartMFA(ctx, p)
	var won atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if ok, err := s.FinishMFA(ctx, tok); err == nil && ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d completions won, want 1", won.Load())
	}
	if _, err := s.PendingMFA(ctx, "made-up"); !errors.Is(err, users.ErrMFATokenInvalid) {
		t.Fatalf("a made-up token: %v", err)
	}
}
