package main

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/sessiond/sessiond/internal/redistest"
)

// The second-factor and step-up variables, observed through the built
// binary: TOTP enrolled and used over its HTTP API, with codes computed as an
// authenticator app computes them, against the real clock.

// Two keys long enough to be accepted (the bad values use them too).
const (
	mfaKeyA = "mfa-envtest-key-a-0123456789abcdef0123"
	mfaKeyB = "mfa-envtest-key-b-0123456789abcdef0123"
)

// authApp is an authenticator app: it shows the code of a 30 s step no code
// was accepted for yet. The server takes each step once per account and
// only within one step of its clock, so the app shows the earliest step
// still allowed after the last one it showed: a test gets up to three codes
// at once instead of waiting 30 s for each. In a step's last seconds it
// skips the step before, which the server may count as two steps old by
// the time the request reaches it.
type authApp struct {
	secret string
	last   int64
}

func (a *authApp) next(t *testing.T) string {
	t.Helper()
	for {
		now := time.Now()
		cur := now.Unix() / 30
		lo := cur - 1
		if now.Unix()%30 >= 25 {
			lo = cur
		}
		if step := max(a.last+1, lo); step <= cur+1 {
			a.last = step
			c, err := totp.GenerateCodeCustom(a.secret, time.Unix(step*30, 0),
				totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		// Every step the server takes now was shown: the next one opens at
		// the next multiple of 30 s.
		time.Sleep(time.Until(time.Unix((cur+1)*30, 0)) + 10*time.Millisecond)
	}
}

// beginTOTP starts an enrollment for the session of token.
func beginTOTP(t *testing.T, base, token string) reply {
	t.Helper()
	return call(t, "POST", base+"/v1/me/mfa/totp", token, map[string]any{})
}

// enrollTOTP enrolls TOTP for the session of token, as a user scanning the
// QR code and typing the first code does, and returns the app.
func enrollTOTP(t *testing.T, base, token string) *authApp {
	t.Helper()
	r := beginTOTP(t, base, token)
	var begun struct{ Secret string }
	if r.status == 201 {
		decode(t, r, &begun)
	}
	if r.status != 201 || begun.Secret == "" {
		t.Fatalf("POST /v1/me/mfa/totp: %d %s, want 201 with a secret", r.status, r.body)
	}
	app := &authApp{secret: begun.Secret}
	if r := call(t, "POST", base+"/v1/me/mfa/totp/confirm", token, map[string]string{"code": app.next(t)}); r.status != 200 {
		t.Fatalf("POST /v1/me/mfa/totp/confirm: %d %s", r.status, r.body)
	}
	return app
}

// mfaSignIn signs in with the password, which answers mfa_required, then
// with code; it returns the second step's answer.
func mfaSignIn(t *testing.T, base, user, pass, code string) reply {
	t.Helper()
	r, _ := login(t, base, user, pass)
	var p struct {
		Code     string `json:"code"`
		MFAToken string `json:"mfa_token"`
	}
	decode(t, r, &p)
	if r.status != 401 || p.Code != "mfa_required" || p.MFAToken == "" {
		t.Fatalf("password of an account with TOTP: %d %s, want 401 mfa_required with an mfa_token", r.status, r.body)
	}
	return call(t, "POST", base+"/v1/auth/login/mfa", "", map[string]string{"mfa_token": p.MFAToken, "code": code})
}

// mustMFASignIn signs in with both factors and returns the session's token,
// after checking the session is at aal 2.
func mustMFASignIn(t *testing.T, base, user, pass, code string) string {
	t.Helper()
	r := mfaSignIn(t, base, user, pass, code)
	var lr struct {
		Token   string `json:"token"`
		Session struct {
			AAL int `json:"aal"`
		} `json:"session"`
	}
	if r.status == 201 {
		decode(t, r, &lr)
	}
	if r.status != 201 || lr.Token == "" || lr.Session.AAL != 2 {
		t.Fatalf("POST /v1/auth/login/mfa with a right code: %d %s, want 201 at aal 2", r.status, r.body)
	}
	return lr.Token
}

func effectMFAKey(t *testing.T) {
	prefix := redistest.Prefix(t)
	// Unset: the service runs, and nobody can enroll (a secret could not be
	// kept).
	keyless, _ := startBinary(t, withAdmin(map[string]string{"REDIS_KEY_PREFIX": prefix}))
	if r := beginTOTP(t, keyless, mustLogin(t, keyless, adminName, adminPass).Token); r.status != 403 || problemCode(r) != "forbidden" {
		t.Errorf("enrolling without MFA_ENCRYPTION_KEY: %d %s, want 403 forbidden", r.status, r.body)
	}

	base, logs := startBinary(t, withAdmin(map[string]string{"REDIS_KEY_PREFIX": prefix, "MFA_ENCRYPTION_KEY": mfaKeyA}))
	app := enrollTOTP(t, base, mustLogin(t, base, adminName, adminPass).Token)
	tok := mustMFASignIn(t, base, adminName, adminPass, app.next(t))
	if r := call(t, "GET", base+"/v1/me", tok, nil); r.status != 200 {
		t.Errorf("the two-factor session's token: %d %s", r.status, r.body)
	}
	if strings.Contains(logs(), mfaKeyA) || strings.Contains(logs(), app.secret) {
		t.Errorf("the log holds the key or the TOTP secret:\n%s", logs())
	}

	// Once an account has enrolled, a replica without the key on the same
	// data refuses to start rather than lock that account out.
	code, stdout, stderr := runUntilExit(t, withAdmin(map[string]string{"REDIS_KEY_PREFIX": prefix}))
	if code != 2 || !strings.Contains(stderr, "MFA_ENCRYPTION_KEY") {
		t.Errorf("without MFA_ENCRYPTION_KEY after an enrollment: exit %d, stderr %q; want 2 naming MFA_ENCRYPTION_KEY", code, stderr)
	}
	if line, ok := strings.CutSuffix(stderr, "\n"); !ok || strings.Contains(line, "\n") || stdout != "" {
		t.Errorf("without MFA_ENCRYPTION_KEY after an enrollment: want one line on stderr, got stdout %q, stderr %q", stdout, stderr)
	}
}

// The key read from a file, trailing newline dropped: the same key given
// directly opens what it sealed.
func effectMFAKeyFile(t *testing.T) {
	prefix := redistest.Prefix(t)
	filed, _ := startBinary(t, withAdmin(map[string]string{"REDIS_KEY_PREFIX": prefix,
		"MFA_ENCRYPTION_KEY_FILE": writeFile(t, "mfa-key", mfaKeyA+"\n")}))
	app := enrollTOTP(t, filed, mustLogin(t, filed, adminName, adminPass).Token)
	direct, _ := startBinary(t, withAdmin(map[string]string{"REDIS_KEY_PREFIX": prefix, "MFA_ENCRYPTION_KEY": mfaKeyA}))
	mustMFASignIn(t, direct, adminName, adminPass, app.next(t))
}

// Enrolled under key A, the account still signs in with a code after the
// key is rotated to B with A among the previous keys; with A dropped, its
// secret no longer opens.
func effectMFAPreviousKeys(t *testing.T) {
	prefix := redistest.Prefix(t)
	before, _ := startBinary(t, withAdmin(map[string]string{"REDIS_KEY_PREFIX": prefix, "MFA_ENCRYPTION_KEY": mfaKeyA}))
	app := enrollTOTP(t, before, mustLogin(t, before, adminName, adminPass).Token)

	// Listed as people write lists: the spaces are not part of the keys.
	rotated, _ := startBinary(t, withAdmin(map[string]string{"REDIS_KEY_PREFIX": prefix, "MFA_ENCRYPTION_KEY": mfaKeyB,
		"MFA_PREVIOUS_ENCRYPTION_KEYS": " mfa-envtest-key-older-" + strings.Repeat("o", 16) + ", " + mfaKeyA + " "}))
	mustMFASignIn(t, rotated, adminName, adminPass, app.next(t))

	dropped, _ := startBinary(t, withAdmin(map[string]string{"REDIS_KEY_PREFIX": prefix, "MFA_ENCRYPTION_KEY": mfaKeyB}))
	if r := mfaSignIn(t, dropped, adminName, adminPass, app.next(t)); r.status != 500 || strings.Contains(string(r.body), app.secret) {
		t.Errorf("a code after key A was dropped: %d %s, want 500 (the secret does not open), without the secret", r.status, r.body)
	}
}

// otpauthIssuer is the issuer an authenticator app reads from the
// otpauth:// URL of an enrollment: the issuer parameter, which the label
// ("Issuer:account") must begin with.
func otpauthIssuer(t *testing.T, base, token string) string {
	t.Helper()
	r := beginTOTP(t, base, token)
	var begun struct {
		OTPAuthURL string `json:"otpauth_url"`
	}
	decode(t, r, &begun)
	u, err := url.Parse(begun.OTPAuthURL)
	if r.status != 201 || err != nil || u.Scheme != "otpauth" {
		t.Fatalf("POST /v1/me/mfa/totp: %d %s (%v), want 201 with an otpauth:// URL", r.status, r.body, err)
	}
	issuer := u.Query().Get("issuer")
	if label := strings.TrimPrefix(u.Path, "/"); label != issuer+":"+adminName {
		t.Fatalf("otpauth_url %q: label %q, want the issuer parameter %q, a colon and the account", begun.OTPAuthURL, label, issuer)
	}
	return issuer
}

func effectTOTPIssuer(t *testing.T) {
	base, _ := startBinary(t, withAdmin(map[string]string{"MFA_ENCRYPTION_KEY": mfaKeyA, "TOTP_ISSUER": "Example Corp"}))
	if got := otpauthIssuer(t, base, mustLogin(t, base, adminName, adminPass).Token); got != "Example Corp" {
		t.Errorf("TOTP_ISSUER=Example Corp: the otpauth_url's issuer is %q", got)
	}
	// Unset: JWT_ISSUER's host when it is a URL (the label holds no other colon).
	dflt, _ := startBinary(t, withAdmin(map[string]string{"MFA_ENCRYPTION_KEY": mfaKeyA, "JWT_ISSUER": "https://issuer.envtest"}))
	if got := otpauthIssuer(t, dflt, mustLogin(t, dflt, adminName, adminPass).Token); got != "issuer.envtest" {
		t.Errorf("TOTP_ISSUER unset, JWT_ISSUER=https://issuer.envtest: the otpauth_url's issuer is %q", got)
	}
}

// With the smallest STEP_UP_MAX_AGE, a session starts an enrollment at
// once and is refused one once it is older than that; the same session on a
// replica with the default is still fresh; re-authenticating makes it fresh
// again.
func effectStepUpMaxAge(t *testing.T) {
	prefix := redistest.Prefix(t)
	strict, _ := startBinary(t, withAdmin(map[string]string{"REDIS_KEY_PREFIX": prefix, "MFA_ENCRYPTION_KEY": mfaKeyA,
		"STEP_UP_MAX_AGE": "10s"}))
	lax, _ := startBinary(t, withAdmin(map[string]string{"REDIS_KEY_PREFIX": prefix, "MFA_ENCRYPTION_KEY": mfaKeyA}))
	signedIn := time.Now()
	tok := mustLogin(t, strict, adminName, adminPass).Token
	if r := beginTOTP(t, strict, tok); r.status != 201 {
		t.Fatalf("a fresh session starting an enrollment: %d %s", r.status, r.body)
	}
	// Poll until refused; never past 30 s.
	var r reply
	for {
		if r = beginTOTP(t, strict, tok); r.status != 201 {
			break
		}
		if time.Since(signedIn) > 30*time.Second {
			t.Fatal("STEP_UP_MAX_AGE=10s: the session still starts enrollments 30 s after signing in")
		}
		time.Sleep(250 * time.Millisecond)
	}
	if r.status != 403 || problemCode(r) != "reauthentication_required" {
		t.Fatalf("STEP_UP_MAX_AGE=10s, an older session: %d %s, want 403 reauthentication_required", r.status, r.body)
	}
	// auth_time is kept in whole seconds: the session is at least 9 s old.
	if age := time.Since(signedIn); age < 9*time.Second {
		t.Fatalf("STEP_UP_MAX_AGE=10s: refused %s after signing in", age)
	}
	if r := beginTOTP(t, lax, tok); r.status != 201 {
		t.Errorf("the same session on a replica with the default STEP_UP_MAX_AGE (10m): %d %s, want 201", r.status, r.body)
	}
	if r := call(t, "POST", strict+"/v1/auth/reauthenticate", tok, map[string]string{"password": adminPass}); r.status != 200 {
		t.Fatalf("POST /v1/auth/reauthenticate: %d %s", r.status, r.body)
	}
	if r := beginTOTP(t, strict, tok); r.status != 201 {
		t.Errorf("after re-authenticating: %d %s, want 201", r.status, r.body)
	}
}

// ADMIN_REQUIRES_AAL2=true: an admin signed in with a password alone is
// refused the admin API until the same session steps up with a code.
func effectAdminRequiresAAL2(t *testing.T) {
	base, _ := startBinary(t, withAdmin(map[string]string{"MFA_ENCRYPTION_KEY": mfaKeyA, "ADMIN_REQUIRES_AAL2": "true"}))
	tok := mustLogin(t, base, adminName, adminPass).Token
	if r := call(t, "GET", base+"/v1/admin/users", tok, nil); r.status != 403 || problemCode(r) != "step_up_required" {
		t.Fatalf("an admin at aal 1: %d %s, want 403 step_up_required", r.status, r.body)
	}
	app := enrollTOTP(t, base, tok)
	if r := call(t, "POST", base+"/v1/auth/reauthenticate", tok, map[string]string{"code": app.next(t)}); r.status != 200 {
		t.Fatalf("POST /v1/auth/reauthenticate with a code: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", base+"/v1/admin/users", tok, nil); r.status != 200 {
		t.Errorf("the same token after the step-up: %d %s, want 200", r.status, r.body)
	}
	// Unset: an admin at aal 1 is an admin.
	plain, _ := startBinary(t, withAdmin(nil))
	if r := call(t, "GET", plain+"/v1/admin/users", mustLogin(t, plain, adminName, adminPass).Token, nil); r.status != 200 {
		t.Errorf("ADMIN_REQUIRES_AAL2 unset, an admin at aal 1: %d %s, want 200", r.status, r.body)
	}
}

// effectWebAuthn: with WEBAUTHN_RP_ID and WEBAUTHN_ORIGINS the passkey
// routes answer, naming the RP id in their options; without, they are 404.
func effectWebAuthn(t *testing.T) {
	base, _ := startBinary(t, withAdmin(map[string]string{"WEBAUTHN_RP_ID": "example.com", "WEBAUTHN_ORIGINS": "https://login.example.com"}))
	r := call(t, "POST", base+"/v1/auth/passkey/begin", "", map[string]string{})
	var m struct {
		ChallengeID string `json:"challenge_id"`
		Options     struct {
			RPID string `json:"rpId"`
		} `json:"options"`
	}
	decode(t, r, &m)
	if r.status != 200 || m.ChallengeID == "" || m.Options.RPID != "example.com" {
		t.Fatalf("passkey begin with WEBAUTHN_RP_ID=example.com: %d %s", r.status, r.body)
	}
	plain, _ := startBinary(t, withAdmin(nil))
	if r := call(t, "POST", plain+"/v1/auth/passkey/begin", "", map[string]string{}); r.status != 404 {
		t.Fatalf("passkey begin without WEBAUTHN_RP_ID: %d %s, want 404", r.status, r.body)
	}
}
