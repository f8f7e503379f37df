package users

// Second factors: TOTP (RFC 6238, through github.com/pquerna/otp) with
// recovery codes, and the sign-in that waits for one (mfa_token).
//
// The TOTP secret is sealed (internal/seal) with the account id as context,
// so a Redis dump alone does not give it away and a sealed secret copied to
// another account does not open there. A code is accepted once: its time step
// must be later than the last one accepted for the account, recorded in the
// account hash by a script, so two replicas cannot both accept it. Recovery
// codes are random (60 bits) and stored as SHA-256 digests in a set in the
// user's slot; each is spent by SREM.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/internal/seal"
	"github.com/sessiond/sessiond/scripts"
)

// TOTP as the API fixes it: SHA-1, 6 digits, 30 s steps, one step of drift
// either way.
const (
	totpPeriod = 30
	totpSkew   = 1
	totpDigits = otp.DigitsSix
)

// Second-factor limits.
const (
	// RecoveryCodeCount is how many recovery codes an enrollment makes.
	RecoveryCodeCount = 10
	// MFATokenTTL is how long a sign-in waits for its second factor.
	MFATokenTTL = 5 * time.Minute
	// MFAMaxWrong wrong codes end an mfa_token.
	MFAMaxWrong = 5
)

// Second-factor errors.
var (
	// ErrMFANotConfigured means no MFA_ENCRYPTION_KEY is set, so no secret can
	// be stored.
	ErrMFANotConfigured = errcode.New(errcode.Forbidden, "second factors are not enabled on this server")
	// ErrNoPendingTOTP means there is no enrollment to confirm.
	ErrNoPendingTOTP = errcode.New(errcode.Invalid, "code: no TOTP enrollment is waiting; start one first")
	// ErrNoSecondFactor means the account has no second factor to check.
	ErrNoSecondFactor = errcode.New(errcode.Invalid, "code: this account has no second factor")
	// ErrMFATokenInvalid means an mfa_token that is used, expired, ended by
	// wrong codes, or was never issued.
	ErrMFATokenInvalid = errcode.New(errcode.Unauthorized, "the mfa_token is used, expired or unknown: sign in again")
)

// sealContext binds a sealed TOTP secret to its account.
func sealContext(uid string) string { return "sessiond totp\x00" + uid }

// MFAEnabled reports whether second factors can be enrolled: an encryption
// key for their secrets is configured.
func (s *Store) MFAEnabled() bool { return s.o.Seal.Sealing() }

// HasTOTP reports whether the account has an active TOTP factor.
func (u User) HasTOTP() bool { return u.totp != "" }

// MFAStatus is what second factors an account has.
type MFAStatus struct {
	TOTP              bool
	RecoveryCodesLeft int
}

// MFAStatus reads an account's second factors.
func (s *Store) MFAStatus(ctx context.Context, uid string) (MFAStatus, error) {
	u, err := s.Get(ctx, uid)
	if err != nil {
		return MFAStatus{}, err
	}
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := s.c.Do(ctx, s.c.B().Scard().Key(s.k.Recovery(uid)).Build()).AsInt64()
	if err != nil {
		return MFAStatus{}, redisx.Unavailable("read recovery codes", err)
	}
	return MFAStatus{TOTP: u.HasTOTP(), RecoveryCodesLeft: int(n)}, nil
}

// BeginTOTP starts a TOTP enrollment: a new secret, stored sealed as pending
// (not active until ConfirmTOTP checks a code from it), replacing any pending
// one. It returns the secret (base32) and its otpauth:// URL for a QR code.
func (s *Store) BeginTOTP(ctx context.Context, u User) (secret, url string, err error) {
	if !s.o.Seal.Sealing() {
		return "", "", ErrMFANotConfigured
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: s.o.TOTPIssuer, AccountName: u.Username,
		Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", "", err
	}
	sealed, err := s.o.Seal.Seal([]byte(key.Secret()), sealContext(u.ID))
	if err != nil {
		return "", "", err
	}
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	// HSETEX would do, but the account hash has no TTL and Redis 7.0 lacks
	// field expiry: a pending secret stays until confirmed or replaced.
	n, err := s.c.Do(rctx, s.c.B().Eval().Script(`if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1`).Numkeys(1).Key(s.k.User(u.ID)).
		Arg(keys.UserTOTPPending, sealed).Build()).AsInt64()
	if err != nil {
		return "", "", redisx.Unavailable("store pending TOTP", err)
	}
	if n == 0 {
		return "", "", errcode.ErrUserNotFound
	}
	return key.Secret(), key.URL(), nil
}

// ConfirmTOTP activates the pending enrollment when code is right for it,
// and returns the account's new recovery codes (shown once; the old ones are
// replaced). A wrong code is ErrInvalidCredentials.
func (s *Store) ConfirmTOTP(ctx context.Context, uid, code string, by audit.Actor) ([]string, error) {
	u, err := s.Get(ctx, uid)
	if err != nil {
		return nil, err
	}
	if u.totpPending == "" {
		return nil, ErrNoPendingTOTP
	}
	step, ok, err := s.matchTOTP(u.ID, u.totpPending, code)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrInvalidCredentials
	}
	codes, digests, err := newRecoveryCodes()
	if err != nil {
		return nil, err
	}
	now := s.o.Now()
	ev := by.Event(audit.MFAEnrolled, uid, "", "totp")
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	args := append(append([]string{u.totpPending, strconv.FormatInt(step, 10)}, digests...), audit.Spec(now, ev))
	n, err := scripts.MFAConfirm.Exec(rctx, s.c, []string{s.k.User(uid), s.k.Recovery(uid), s.k.Events(uid)}, args).AsInt64()
	if err != nil {
		return nil, redisx.Unavailable("confirm TOTP", err)
	}
	if n == 0 {
		return nil, ErrNoPendingTOTP // another enrollment replaced this one meanwhile
	}
	if err := s.c.Do(rctx, s.c.B().Set().Key(s.k.MFAEnrolled()).Value("1").Build()).Error(); err != nil {
		return nil, redisx.Unavailable("mark second factors in use", err)
	}
	s.o.Audit.Feed(ctx, ev)
	return codes, nil
}

// RemoveMFA removes every second factor of an account (by its owner from a
// fresh session, or by an admin). errcode.ErrUserNotFound when there is no
// such account; removing none is no error.
func (s *Store) RemoveMFA(ctx context.Context, uid string, by audit.Actor) error {
	ev := by.Event(audit.MFARemoved, uid, "", "every second factor")
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := scripts.MFARemove.Exec(rctx, s.c, []string{s.k.User(uid), s.k.Recovery(uid), s.k.Events(uid)},
		[]string{audit.Spec(s.o.Now(), ev)}).AsInt64()
	switch {
	case err != nil:
		return redisx.Unavailable("remove second factors", err)
	case n < 0:
		return errcode.ErrUserNotFound
	case n > 0:
		s.o.Audit.Feed(ctx, ev)
	}
	return nil
}

// Second-factor methods, as the API names them.
const (
	MethodTOTP     = "totp"
	MethodRecovery = "recovery_code"
)

// CheckSecondFactor checks a TOTP code or a recovery code for an account
// (exactly one of them non-empty) and spends it: a TOTP code's time step is
// accepted once, a recovery code once. It returns the method that passed. A
// wrong or replayed code is ErrInvalidCredentials, recorded as mfa.failed.
// The caller runs it under the failed-login limits (Guard).
func (s *Store) CheckSecondFactor(ctx context.Context, uid, code, recovery string, by audit.Actor, sid string) (string, error) {
	u, err := s.Get(ctx, uid)
	if err != nil {
		return "", err
	}
	return s.checkSecondFactor(ctx, u, code, recovery, by, sid)
}

// checkSecondFactor is CheckSecondFactor of an account already read.
func (s *Store) checkSecondFactor(ctx context.Context, u User, code, recovery string, by audit.Actor, sid string) (string, error) {
	uid := u.ID
	method, ok, err := s.spend(ctx, u, code, recovery, by, sid)
	if err != nil {
		return "", err
	}
	if !ok {
		// Coalesced per window like failed sign-ins: whoever guesses codes
		// must not fill Redis or push the account's history out.
		_ = s.o.Audit.Refused(ctx, audit.Refusal{Type: audit.MFAFailed, UserID: uid, Kind: audit.KindSecondFactor,
			IP: by.IP, UserAgent: by.UserAgent}, s.o.FailureWindow)
		return "", ErrInvalidCredentials
	}
	return method, nil
}

func (s *Store) spend(ctx context.Context, u User, code, recovery string, by audit.Actor, sid string) (string, bool, error) {
	if recovery != "" {
		ev := by.Event(audit.RecoveryCodeUsed, u.ID, sid, "")
		rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
		defer cancel()
		left, err := scripts.RecoveryUse.Exec(rctx, s.c, []string{s.k.Recovery(u.ID), s.k.Events(u.ID)},
			[]string{recoveryDigest(recovery), audit.Spec(s.o.Now(), ev)}).AsInt64()
		if err != nil {
			return MethodRecovery, false, redisx.Unavailable("spend recovery code", err)
		}
		if left >= 0 {
			ev.Detail = strconv.FormatInt(left, 10) + " left"
			s.o.Audit.Feed(ctx, ev)
		}
		return MethodRecovery, left >= 0, nil
	}
	if !u.HasTOTP() {
		return MethodTOTP, false, ErrNoSecondFactor
	}
	step, ok, err := s.matchTOTP(u.ID, u.totp, code)
	if err != nil || !ok {
		return MethodTOTP, false, err
	}
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := scripts.TOTPUse.Exec(rctx, s.c, []string{s.k.User(u.ID)}, []string{u.totp, strconv.FormatInt(step, 10)}).AsInt64()
	if err != nil {
		return MethodTOTP, false, redisx.Unavailable("spend TOTP code", err)
	}
	return MethodTOTP, n == 1, nil
}

// matchTOTP opens a sealed secret and finds the time step, within the
// allowed drift, whose code is code. The codes are the library's; the
// comparison is constant-time, and each candidate step is tried so the
// caller can spend the one that matched.
func (s *Store) matchTOTP(uid, sealed, code string) (step int64, ok bool, err error) {
	secret, err := s.o.Seal.Open(sealed, sealContext(uid))
	if errors.Is(err, seal.ErrOpen) {
		return 0, false, fmt.Errorf("open TOTP secret of %s: %w (is MFA_ENCRYPTION_KEY the one it was sealed with?)", uid, err)
	}
	if err != nil {
		return 0, false, err
	}
	code = strings.TrimSpace(code)
	if len(code) != int(totpDigits) {
		return 0, false, nil
	}
	now := s.o.Now()
	opts := totp.ValidateOpts{Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1}
	for d := -totpSkew; d <= totpSkew; d++ {
		at := now.Add(time.Duration(d*totpPeriod) * time.Second)
		want, err := totp.GenerateCodeCustom(string(secret), at, opts)
		if err != nil {
			return 0, false, err
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return at.Unix() / totpPeriod, true, nil
		}
	}
	return 0, false, nil
}

// recoveryAlphabet is Crockford-style base32 without padding, lowercased
// when shown: no 0/O or 1/I/L to misread.
var recoveryEncoding = base32.NewEncoding("ABCDEFGHJKMNPQRSTVWXYZ0123456789").WithPadding(base32.NoPadding)

// newRecoveryCodes makes the codes (shown once) and their digests (stored).
func newRecoveryCodes() (codes, digests []string, err error) {
	for range RecoveryCodeCount {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return nil, nil, err
		}
		c := strings.ToLower(recoveryEncoding.EncodeToString(b)[:12])
		c = c[:4] + "-" + c[4:8] + "-" + c[8:]
		codes = append(codes, c)
		digests = append(digests, recoveryDigest(c))
	}
	return codes, digests, nil
}

// recoveryDigest is what is stored of a recovery code: its 60 random bits
// need no slow hash. Case, dashes and spaces as typed do not matter.
func recoveryDigest(code string) string {
	c := strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToLower(strings.TrimSpace(code)))
	sum := sha256.Sum256([]byte("sessiond recovery code\x00" + c))
	return hex.EncodeToString(sum[:16])
}

// MFAPending is a sign-in whose password was right, waiting for its second
// factor.
type MFAPending struct {
	UserID string
	// CredentialVersion is the one the password was checked against: the
	// session must be created for it (a password change meanwhile wins).
	CredentialVersion string
	DeviceName        string
	Platform          string
}

// mfa_token hash fields.
const (
	mfaUser, mfaVersion, mfaDevice, mfaPlatform, mfaWrong = "u", "cv", "dn", "pf", "n"
)

func mfaDigest(token string) string {
	sum := sha256.Sum256([]byte("sessiond mfa token\x00" + token))
	return hex.EncodeToString(sum[:16])
}

// StartMFA records a sign-in that waits for its second factor and returns
// its mfa_token (256 random bits; only its digest is stored), valid for
// MFATokenTTL.
func (s *Store) StartMFA(ctx context.Context, p MFAPending) (string, error) {
	token := rand.Text() + rand.Text()
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	key := s.k.MFAPending(mfaDigest(token))
	for _, r := range s.c.DoMulti(rctx,
		s.c.B().Hset().Key(key).FieldValue().FieldValue(mfaUser, p.UserID).FieldValue(mfaVersion, p.CredentialVersion).
			FieldValue(mfaDevice, p.DeviceName).FieldValue(mfaPlatform, p.Platform).Build(),
		s.c.B().Pexpire().Key(key).Milliseconds(MFATokenTTL.Milliseconds()).Build()) {
		if err := r.Error(); err != nil {
			return "", redisx.Unavailable("record mfa_token", err)
		}
	}
	return token, nil
}

// PendingMFA reads the sign-in an mfa_token waits for; ErrMFATokenInvalid
// when there is none.
func (s *Store) PendingMFA(ctx context.Context, token string) (MFAPending, error) {
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	h, err := s.c.Do(rctx, s.c.B().Hgetall().Key(s.k.MFAPending(mfaDigest(token))).Build()).AsStrMap()
	if err != nil {
		return MFAPending{}, redisx.Unavailable("read mfa_token", err)
	}
	if h[mfaUser] == "" {
		return MFAPending{}, ErrMFATokenInvalid
	}
	return MFAPending{UserID: h[mfaUser], CredentialVersion: h[mfaVersion], DeviceName: h[mfaDevice], Platform: h[mfaPlatform]}, nil
}

// WrongMFA counts a wrong code against an mfa_token; the MFAMaxWrong-th ends it.
func (s *Store) WrongMFA(ctx context.Context, token string) error {
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	err := s.c.Do(rctx, s.c.B().Eval().Script(`if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if n >= tonumber(ARGV[2]) then redis.call('DEL', KEYS[1]) end
return n`).Numkeys(1).Key(s.k.MFAPending(mfaDigest(token))).Arg(mfaWrong, strconv.Itoa(MFAMaxWrong)).Build()).Error()
	if err != nil {
		return redisx.Unavailable("count a wrong code", err)
	}
	return nil
}

// FinishMFA spends an mfa_token: true for exactly one caller, so a token
// completes one sign-in however many race.
func (s *Store) FinishMFA(ctx context.Context, token string) (bool, error) {
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := s.c.Do(rctx, s.c.B().Del().Key(s.k.MFAPending(mfaDigest(token))).Build()).AsInt64()
	if err != nil {
		return false, redisx.Unavailable("spend mfa_token", err)
	}
	return n == 1, nil
}

// MFAInUse reports whether any account has confirmed a second factor, for
// the start-up check that the encryption key is configured.
func (s *Store) MFAInUse(ctx context.Context) (bool, error) {
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := s.c.Do(rctx, s.c.B().Exists().Key(s.k.MFAEnrolled()).Build()).AsInt64()
	if err != nil {
		return false, redisx.Unavailable("read second-factor marker", err)
	}
	return n == 1, nil
}

// VerifySecondFactor checks and spends a TOTP code or a recovery code of an
// account (exactly one non-empty), under the failed-login limits of its name
// and clientIP, as a password is: wrong codes count against the same
// budgets, and past a limit it is *TooManyAttemptsError without a check. It
// returns the method that passed; a wrong or replayed code is
// ErrInvalidCredentials (recorded as mfa.failed).
func (s *Store) VerifySecondFactor(ctx context.Context, uid, code, recovery string, by audit.Actor, sid string) (string, error) {
	// One read of the account: its name for the limits, its factors for
	// the check.
	u, err := s.Get(ctx, uid)
	if err != nil {
		return "", err
	}
	var method string
	err = s.Guard(ctx, u.Username, by.IP, func() (bool, error) {
		var err error
		method, err = s.checkSecondFactor(ctx, u, code, recovery, by, sid)
		if errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrNoSecondFactor) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		var tooMany *TooManyAttemptsError
		if errors.As(err, &tooMany) {
			_ = s.o.Audit.Refused(ctx, audit.Refusal{Type: audit.LoginThrottled, UserID: uid, Kind: audit.KindSecondFactor,
				IP: by.IP, UserAgent: by.UserAgent}, s.o.FailureWindow)
		}
		return "", err
	}
	return method, nil
}

// RegenerateRecoveryCodes replaces an account's recovery codes with new ones
// and returns them (shown once). ErrNoSecondFactor when it has no TOTP.
func (s *Store) RegenerateRecoveryCodes(ctx context.Context, uid string, by audit.Actor) ([]string, error) {
	codes, digests, err := newRecoveryCodes()
	if err != nil {
		return nil, err
	}
	ev := by.Event(audit.RecoveryCodesRegenerated, uid, "", strconv.Itoa(len(codes))+" new codes")
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := scripts.RecoveryRegen.Exec(rctx, s.c, []string{s.k.User(uid), s.k.Recovery(uid), s.k.Events(uid)},
		append(digests, audit.Spec(s.o.Now(), ev))).AsInt64()
	if err != nil {
		return nil, redisx.Unavailable("replace recovery codes", err)
	}
	if n == 0 {
		return nil, ErrNoSecondFactor
	}
	s.o.Audit.Feed(ctx, ev)
	return codes, nil
}

// PendingTOTP is the key of an account's enrollment that waits for its
// confirmation (for the console: its secret as text, and its QR code, drawn
// on the server); ErrNoPendingTOTP when there is none.
func (s *Store) PendingTOTP(ctx context.Context, uid string) (*otp.Key, error) {
	u, err := s.Get(ctx, uid)
	if err != nil {
		return nil, err
	}
	if u.totpPending == "" {
		return nil, ErrNoPendingTOTP
	}
	secret, err := s.o.Seal.Open(u.totpPending, sealContext(uid))
	if err != nil {
		return nil, fmt.Errorf("open pending TOTP secret of %s: %w", uid, err)
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(string(secret))
	if err != nil {
		return nil, fmt.Errorf("pending TOTP secret of %s: %w", uid, err)
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: s.o.TOTPIssuer, AccountName: u.Username,
		Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1, Secret: raw})
	if err != nil {
		return nil, err
	}
	return key, nil
}
