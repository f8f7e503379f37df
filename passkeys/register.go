package passkeys

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/scripts"
	"github.com/sessiond/sessiond/users"
)

// BeginRegistration starts registering a passkey to an account (signed in,
// with a fresh session: the caller's to check). It returns the challenge id
// to finish with and the PublicKeyCredentialCreationOptionsJSON for
// navigator.credentials.create (through
// PublicKeyCredential.parseCreationOptionsFromJSON): resident key
// preferred, user verification required, the account's passkeys excluded,
// the account id as the user handle. It writes nothing. ErrTooMany when the
// account has MaxPasskeys already.
func (s *Store) BeginRegistration(ctx context.Context, u users.User) (challengeID string, options json.RawMessage, err error) {
	have, err := s.read(ctx, u.ID)
	if err != nil {
		return "", nil, err
	}
	if len(have) >= MaxPasskeys {
		return "", nil, ErrTooMany
	}
	creation, sess, err := s.w.BeginRegistration(account{id: u.ID, name: u.Username, creds: have},
		webauthn.WithExclusions(descriptors(have)))
	if err != nil {
		return "", nil, err
	}
	if challengeID, err = s.begin(kindRegister, u.ID, sess); err != nil {
		return "", nil, err
	}
	if options, err = json.Marshal(creation.Response); err != nil {
		return "", nil, err
	}
	return challengeID, options, nil
}

// FinishRegistration checks the authenticator's answer (the
// RegistrationResponseJSON credential) to a registration that uid began,
// and stores the passkey under name ("" means DefaultName), recording
// passkey.added. The challenge is spent in the same step, so it registers
// once. ErrUnauthorized for every refusal of the ceremony (see its doc);
// ErrInvalidName, ErrRegistered, ErrTooMany, errcode.ErrAccountDisabled,
// errcode.ErrUserNotFound as they say.
func (s *Store) FinishRegistration(ctx context.Context, uid, challengeID, name string, credential []byte, by audit.Actor) (Passkey, error) {
	name, err := cleanName(name)
	if err != nil {
		return Passkey{}, err
	}
	st, err := s.open(kindRegister, challengeID)
	if err != nil {
		return Passkey{}, err
	}
	if st.UserID != uid {
		return Passkey{}, refused("a registration begun by another account")
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(credential)
	if err != nil {
		return Passkey{}, refused(err)
	}
	u, err := s.users.Get(ctx, uid)
	if err != nil {
		return Passkey{}, err
	}
	cred, err := s.w.CreateCredential(account{id: u.ID, name: u.Username},
		s.session(st, uid, webauthn.CredentialParametersDefault()), parsed)
	if err != nil {
		return Passkey{}, refused(describe(err))
	}
	if len(cred.ID) == 0 || len(cred.ID) > maxCredentialID {
		return Passkey{}, refused("a credential id of a length WebAuthn does not allow")
	}
	now := s.o.Now()
	rec := newRecord(cred, name, now)
	value, err := encode(cred.Authenticator.SignCount, rec.Created, rec)
	if err != nil {
		return Passkey{}, err
	}
	id := base64.RawURLEncoding.EncodeToString(cred.ID)
	ev := by.Event(audit.PasskeyAdded, uid, "", name)
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := scripts.PasskeyAdd.Exec(rctx, s.c, []string{s.k.User(uid), s.k.Passkeys(uid), s.spentKey(uid, st), s.k.Events(uid)},
		[]string{id, value, s.spentFor(st), strconv.Itoa(MaxPasskeys), audit.Spec(now, ev)}).AsInt64()
	switch {
	case err != nil:
		return Passkey{}, redisx.Unavailable("store passkey", err)
	case n == 0:
		return Passkey{}, refused("a registration challenge used before")
	case n == -1:
		return Passkey{}, errcode.ErrUserNotFound
	case n == -2:
		return Passkey{}, errcode.ErrAccountDisabled
	case n == -3:
		return Passkey{}, ErrRegistered
	case n == -4:
		return Passkey{}, ErrTooMany
	}
	s.o.Audit.Feed(ctx, ev)
	return stored{field: id, id: cred.ID, count: cred.Authenticator.SignCount, lastUsed: rec.Created, rec: rec}.passkey(), nil
}

// describe is a go-webauthn error with its developer's detail, for the
// logs (never for the client).
func describe(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.DevInfo != "" {
		return pe.Details + ": " + pe.DevInfo
	}
	return err.Error()
}
