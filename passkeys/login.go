package passkeys

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"
	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/scripts"
	"github.com/sessiond/sessiond/users"
)

// BeginLogin starts a sign-in with a passkey and returns the challenge id
// to finish with and the PublicKeyCredentialRequestOptionsJSON for
// navigator.credentials.get (through
// PublicKeyCredential.parseRequestOptionsFromJSON), user verification
// required. With a username, allowCredentials lists that account's
// passkeys; without one, it is empty and the authenticator offers its
// discoverable credentials. It writes nothing.
//
// No enumeration: a name that is no account, or an account without
// passkeys, gets an answer of the same shape and the same Redis work, with
// decoy credentials derived from the lowercased name (the same every time,
// on every replica), and a challenge id of the same size that no credential
// can finish.
func (s *Store) BeginLogin(ctx context.Context, username string) (challengeID string, options json.RawMessage, err error) {
	if username == "" {
		return s.beginAssertion(kindLogin, "", nil)
	}
	salt, err := s.salt(ctx)
	if err != nil {
		return "", nil, err
	}
	u, err := s.users.FindByUsername(ctx, username)
	switch {
	case errors.Is(err, errcode.ErrUserNotFound):
		// A random account id that is none: its challenge finishes nothing.
		// The reads are the ones a real account costs.
		u.ID = uuid.NewString()
		if _, err := s.users.Get(ctx, u.ID); err != nil && !errors.Is(err, errcode.ErrUserNotFound) {
			return "", nil, err
		}
	case err != nil:
		return "", nil, err
	}
	have, err := s.read(ctx, u.ID)
	if err != nil {
		return "", nil, err
	}
	allow := descriptors(have)
	if len(allow) == 0 {
		allow = decoys(salt, username)
	}
	return s.beginAssertion(kindLogin, u.ID, allow)
}

// BeginReauth starts a step-up of a signed-in account's own session with
// one of its passkeys: the challenge is bound to uid, and only that
// account's passkeys can finish it (FinishReauth). ErrNoPasskeys when it
// has none.
func (s *Store) BeginReauth(ctx context.Context, uid string) (challengeID string, options json.RawMessage, err error) {
	have, err := s.read(ctx, uid)
	if err != nil {
		return "", nil, err
	}
	if len(have) == 0 {
		return "", nil, ErrNoPasskeys
	}
	return s.beginAssertion(kindReauth, uid, descriptors(have))
}

func (s *Store) beginAssertion(k kind, uid string, allow []protocol.CredentialDescriptor) (string, json.RawMessage, error) {
	assertion, sess, err := s.w.BeginDiscoverableLogin(webauthn.WithAllowedCredentials(allow))
	if err != nil {
		return "", nil, err
	}
	id, err := s.begin(k, uid, sess)
	if err != nil {
		return "", nil, err
	}
	options, err := json.Marshal(assertion.Response)
	if err != nil {
		return "", nil, err
	}
	return id, options, nil
}

// FinishLogin checks the authenticator's answer (the
// AuthenticationResponseJSON credential) to a sign-in begun with
// BeginLogin, and returns the account it signs in: the one the challenge
// is bound to (a username was given), else the one the credential's user
// handle names. The assertion must verify with user verification against
// one of that account's passkeys, over this challenge, from an allowed
// origin, with a signature counter that moved forward; the challenge is
// then spent and the counter and time of use stored, in one step. Every
// refusal is ErrUnauthorized; a counter that did not move forward is also
// recorded as passkey.cloned. A disabled account is
// errcode.ErrAccountDisabled, said only once the assertion verified.
func (s *Store) FinishLogin(ctx context.Context, challengeID string, credential []byte, by audit.Actor) (users.User, error) {
	st, err := s.open(kindLogin, challengeID)
	if err != nil {
		return users.User{}, err
	}
	return s.finishAssertion(ctx, st, credential, by)
}

// FinishReauth is FinishLogin for a step-up that uid began (BeginReauth):
// a challenge bound to another account, or begun for anything else, is
// refused, and only uid's passkeys count.
func (s *Store) FinishReauth(ctx context.Context, uid, challengeID string, credential []byte, by audit.Actor) (users.User, error) {
	st, err := s.open(kindReauth, challengeID)
	if err != nil {
		return users.User{}, err
	}
	if st.UserID != uid {
		return users.User{}, refused("a step-up begun by another account")
	}
	return s.finishAssertion(ctx, st, credential, by)
}

func (s *Store) finishAssertion(ctx context.Context, st state, credential []byte, by audit.Actor) (users.User, error) {
	parsed, err := protocol.ParseCredentialRequestResponseBytes(credential)
	if err != nil {
		return users.User{}, refused(describe(err))
	}
	uid := st.UserID
	if uid == "" {
		uid = string(parsed.Response.UserHandle)
		if !plausibleID(uid) {
			return users.User{}, refused("a discoverable credential without a usable user handle")
		}
	}
	u, err := s.users.Get(ctx, uid)
	if errors.Is(err, errcode.ErrUserNotFound) {
		return users.User{}, refused("no such account")
	}
	if err != nil {
		return users.User{}, err
	}
	have, err := s.read(ctx, uid)
	if err != nil {
		return users.User{}, err
	}
	var used *stored
	for i := range have {
		if bytes.Equal(have[i].id, parsed.RawID) {
			used = &have[i]
		}
	}
	if used == nil {
		return users.User{}, refused("a credential that is none of the account's")
	}
	// go-webauthn checks the rest: challenge, origin, rp id hash, user
	// presence and verification, signature, user handle, backup flags. It
	// only flags a counter that did not move forward (CloneWarning); the
	// script below refuses it, against the counter as Redis has it now.
	if _, err := s.w.ValidateLogin(account{id: uid, name: u.Username, creds: have}, s.session(st, uid, nil), parsed); err != nil {
		return users.User{}, refused(describe(err))
	}
	counter := parsed.Response.AuthenticatorData.Counter
	now := s.o.Now()
	cloned := by.Event(audit.PasskeyCloned, uid, "",
		fmt.Sprintf("%s: signature counter %d, after %d; the sign-in was refused", used.rec.Name, counter, used.count))
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := scripts.PasskeyUse.Exec(rctx, s.c, []string{s.k.User(uid), s.k.Passkeys(uid), s.spentKey(uid, st), s.k.Events(uid)},
		[]string{used.field, strconv.FormatUint(uint64(counter), 10), strconv.FormatInt(now.UnixMilli(), 10),
			s.spentFor(st), audit.Spec(now, cloned)}).AsInt64()
	switch {
	case err != nil:
		return users.User{}, redisx.Unavailable("accept passkey", err)
	case n == 1:
		u.Disabled = false
		return u, nil
	case n == 2:
		return users.User{}, errcode.ErrAccountDisabled
	case n == -3:
		s.o.Audit.Feed(ctx, cloned)
		return users.User{}, refused("a signature counter that did not move forward")
	case n == 0:
		return users.User{}, refused("a challenge used before")
	}
	return users.User{}, refused("an account or credential removed meanwhile")
}

// plausibleID reports whether a user handle from a client can be an
// account id: it goes into key names, within a hash tag.
func plausibleID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if r <= ' ' || r > '~' || r == '{' || r == '}' {
			return false
		}
	}
	return true
}

// Decoys: what a name that is no account (or has no passkey) is shown. Each
// name gets one credential whose id length and transports are drawn, like
// the id itself, from an HMAC of the lowercased name, among those real
// authenticators make, so two asks look the same and names differ as
// accounts do.
var (
	decoyLengths    = []int{16, 20, 32, 32, 64}
	decoyTransports = [][]protocol.AuthenticatorTransport{
		nil, {protocol.Internal}, {protocol.Hybrid, protocol.Internal}, {protocol.USB}, {protocol.NFC, protocol.USB},
	}
)

func decoys(salt []byte, username string) []protocol.CredentialDescriptor {
	lower := strings.ToLower(username)
	mac := func(parts ...string) []byte {
		h := hmac.New(sha256.New, salt)
		h.Write([]byte("sessiond passkey decoy"))
		for _, p := range parts {
			h.Write([]byte{0})
			h.Write([]byte(p))
		}
		return h.Sum(nil)
	}
	shape := mac("shape", lower)
	n := decoyLengths[int(shape[0])%len(decoyLengths)]
	var id []byte
	for i := 0; len(id) < n; i++ {
		id = append(id, mac("id", lower, strconv.Itoa(i))...)
	}
	return []protocol.CredentialDescriptor{{Type: protocol.PublicKeyCredentialType, CredentialID: id[:n],
		Transport: decoyTransports[int(shape[1])%len(decoyTransports)]}}
}

// salt is the decoys' key, one per deployment, made by whichever replica
// needs it first, read through the client-side cache. (A key derived from
// the configured keys would change with a rotation, and a decoy that
// changes while real credentials stay would tell them apart.)
func (s *Store) salt(ctx context.Context) ([]byte, error) {
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	v, err := s.c.DoCache(ctx, s.c.B().Get().Key(s.k.PasskeySalt()).Cache(), time.Minute).ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, redisx.Unavailable("read the passkey salt", err)
	}
	if v == "" {
		fresh := make([]byte, 32)
		_, _ = rand.Read(fresh)
		res := s.c.DoMulti(ctx,
			s.c.B().Set().Key(s.k.PasskeySalt()).Value(hex.EncodeToString(fresh)).Nx().Build(),
			s.c.B().Get().Key(s.k.PasskeySalt()).Build())
		if err := res[0].Error(); err != nil && !rueidis.IsRedisNil(err) {
			return nil, redisx.Unavailable("make the passkey salt", err)
		}
		if v, err = res[1].ToString(); err != nil {
			return nil, redisx.Unavailable("read the passkey salt", err)
		}
	}
	b, err := hex.DecodeString(v)
	if err != nil || len(b) < 16 {
		return nil, fmt.Errorf("passkeys: the salt at %s is malformed", s.k.PasskeySalt())
	}
	return b, nil
}
