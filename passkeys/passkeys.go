// Package passkeys is sign-in and step-up with passkeys (WebAuthn, through
// github.com/go-webauthn/webauthn): registering a credential to an account,
// listing and removing an account's credentials, and checking an assertion,
// with user verification required, the signature counter checked and every
// challenge accepted once across replicas.
//
// A ceremony's state (its challenge, the account it is bound to, what it is
// for, when it ends) is not stored when it begins: it is sealed (AES-GCM,
// internal/seal) into the challenge id the client carries back, so a begin,
// which anyone may ask for, writes nothing to Redis. Only a finish whose
// credential verified writes: the challenge's spent mark, in the account's
// slot, in the same script that stores the credential or its new counter.
//
// It knows nothing about sessions or HTTP: a sign-in it accepts is the
// caller's to turn into a session.
package passkeys

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/internal/seal"
	"github.com/sessiond/sessiond/scripts"
	"github.com/sessiond/sessiond/users"
)

// Limits.
const (
	// ChallengeTTL is how long a begun ceremony can be finished.
	ChallengeTTL = 5 * time.Minute
	// MaxPasskeys is the most passkeys one account may have.
	MaxPasskeys = 20
	// MaxNameLen is the longest name of a passkey, in characters.
	MaxNameLen = 64
	// DefaultName is the name of a passkey registered without one.
	DefaultName = "Passkey"
	// maxSkew is how far replicas' clocks may disagree: a challenge's spent
	// mark outlives its expiry by as much on any replica's clock.
	maxSkew = time.Minute
	// maxCredentialID is the longest credential id WebAuthn allows (§5.8.3).
	maxCredentialID = 1023
)

// Errors callers branch on, each with its code (internal/errcode).
var (
	// ErrUnauthorized is every refused ceremony: a challenge that is bad,
	// expired, used or for something else, a wrong origin, a bad signature,
	// no user verification, an unknown credential, a counter that did not
	// move forward. One error with one detail, so a refusal tells nothing
	// about why.
	ErrUnauthorized = errcode.New(errcode.Unauthorized, "the passkey could not be verified: start again")
	// ErrNotFound means no passkey of the account has that id.
	ErrNotFound = errcode.New(errcode.NotFound, "no such passkey")
	// ErrInvalidName means a name that is too long or holds control
	// characters or invalid UTF-8.
	ErrInvalidName = errcode.New(errcode.Invalid, fmt.Sprintf("name: must be at most %d characters, without control characters", MaxNameLen))
	// ErrTooMany means the account has MaxPasskeys already.
	ErrTooMany = errcode.New(errcode.Invalid, fmt.Sprintf("credential: an account has at most %d passkeys; remove one first", MaxPasskeys))
	// ErrRegistered means the credential is registered to the account already.
	ErrRegistered = errcode.New(errcode.Invalid, "credential: this passkey is registered already")
	// ErrNoPasskeys means a step-up with a passkey for an account that has none.
	ErrNoPasskeys = errcode.New(errcode.Invalid, "this account has no passkey")
)

// Options configure a Store; each is required unless it says otherwise.
type Options struct {
	// RPID is the relying party id: the domain the credentials are bound to
	// (WEBAUTHN_RP_ID).
	RPID string
	// Origins are the origins ceremonies may come from, exactly (scheme,
	// host, port) (WEBAUTHN_ORIGINS); see ValidateConfig.
	Origins []string
	// RPDisplayName names the service in the authenticator's prompt; ""
	// means RPID.
	RPDisplayName string
	// Keys is the Redis layout, under the service's key prefix.
	Keys keys.Layout
	// Timeout bounds every Redis call.
	Timeout time.Duration
	// Audit records passkey.added, passkey.removed and passkey.cloned.
	Audit *audit.Log
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ChallengeKeys seal the state of a begun ceremony into its challenge
	// id (each at least 32 bytes; e.g. tokens.DeriveKeys): the first seals,
	// every one opens, so a key rotation does not break ceremonies under way.
	ChallengeKeys [][]byte
}

// Store registers and checks passkeys, keeping them in Redis.
type Store struct {
	c     rueidis.Client
	users *users.Store
	o     Options
	k     keys.Layout
	w     *webauthn.WebAuthn
	ring  *seal.Ring
}

// Passkey is a registered credential, as its owner sees it.
type Passkey struct {
	// ID is the credential id, base64url without padding (as WebAuthn
	// clients write it).
	ID         string
	Name       string
	CreatedAt  time.Time
	LastUsedAt time.Time
}

// Configuration errors, for the caller to name its setting.
var (
	ErrBadRPID   = errors.New("the relying party id is not a domain name")
	ErrBadOrigin = errors.New("an origin is not one the relying party may use")
)

// ValidateConfig checks a relying party id and its origins, and says what is
// wrong: an id that is no bare domain name (ErrBadRPID), an origin that is
// not https (plain http only for localhost), that is more than scheme, host
// and port, or whose host is neither the id nor a subdomain of it
// (ErrBadOrigin). Browsers refuse all of these, so they would only fail
// later, at every ceremony.
func ValidateConfig(rpID string, origins []string) error {
	if rpID == "" || rpID != strings.ToLower(rpID) || strings.ContainsAny(rpID, ":/ @?#") ||
		strings.HasPrefix(rpID, ".") || strings.HasSuffix(rpID, ".") || net.ParseIP(rpID) != nil ||
		protocol.ValidateRPID(rpID) != nil {
		return fmt.Errorf("%w: %q (want a lowercase host name such as example.com, without scheme or port)", ErrBadRPID, rpID)
	}
	if len(origins) == 0 {
		return fmt.Errorf("%w: none is set", ErrBadOrigin)
	}
	for _, o := range origins {
		u, err := url.Parse(o)
		switch {
		case err != nil || u.Host == "" || u.Opaque != "" || u.User != nil || (u.Path != "" && u.Path != "/") ||
			u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
			return fmt.Errorf("%w: %q is not an origin (scheme://host[:port] and nothing more)", ErrBadOrigin, o)
		case u.Scheme == "http" && u.Hostname() == "localhost":
		case u.Scheme != "https":
			return fmt.Errorf("%w: %q is not https (only http://localhost may be plain http)", ErrBadOrigin, o)
		}
		if h := strings.ToLower(u.Hostname()); h != rpID && !strings.HasSuffix(h, "."+rpID) {
			return fmt.Errorf("%w: the host of %q is neither %q nor a subdomain of it", ErrBadOrigin, o, rpID)
		}
	}
	return nil
}

// New returns a Store over a rueidis client and the accounts store.
func New(c rueidis.Client, us *users.Store, o Options) (*Store, error) {
	if err := ValidateConfig(o.RPID, o.Origins); err != nil {
		return nil, fmt.Errorf("passkeys: %w", err)
	}
	switch {
	case us == nil:
		return nil, errors.New("passkeys: an accounts store is required")
	case o.Timeout <= 0:
		return nil, errors.New("passkeys: a Redis timeout is required")
	case o.Audit == nil:
		return nil, errors.New("passkeys: an audit log is required")
	case len(o.ChallengeKeys) == 0:
		return nil, errors.New("passkeys: a challenge key is required")
	}
	ring, err := seal.New(o.ChallengeKeys...)
	if err != nil {
		return nil, fmt.Errorf("passkeys: challenge %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	origins := make([]string, len(o.Origins))
	for i, raw := range o.Origins {
		u, _ := url.Parse(raw) // checked above
		origins[i] = u.Scheme + "://" + strings.ToLower(u.Host)
	}
	w, err := webauthn.New(&webauthn.Config{
		RPID:          o.RPID,
		RPDisplayName: cmp.Or(o.RPDisplayName, o.RPID),
		RPOrigins:     origins,
		// Self attestation (or none) is what passkeys give; we trust the
		// account holder, not the make of the authenticator.
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementPreferred,
			RequireResidentKey: protocol.ResidentKeyNotRequired(),
			UserVerification:   protocol.VerificationRequired,
		},
		// The prompt ends when the challenge does; expiry itself is checked
		// here against Options.Now (the library's would read time.Now).
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Timeout: ChallengeTTL, TimeoutUVD: ChallengeTTL},
			Registration: webauthn.TimeoutConfig{Timeout: ChallengeTTL, TimeoutUVD: ChallengeTTL},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys: %w", err)
	}
	return &Store{c: c, users: us, o: o, k: o.Keys, w: w, ring: ring}, nil
}

// List returns an account's passkeys, oldest first.
func (s *Store) List(ctx context.Context, uid string) ([]Passkey, error) {
	have, err := s.read(ctx, uid)
	if err != nil {
		return nil, err
	}
	out := make([]Passkey, len(have))
	for i, st := range have {
		out[i] = st.passkey()
	}
	return out, nil
}

// Count returns how many passkeys an account has.
func (s *Store) Count(ctx context.Context, uid string) (int, error) {
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := s.c.Do(ctx, s.c.B().Hlen().Key(s.k.Passkeys(uid)).Build()).AsInt64()
	if err != nil {
		return 0, redisx.Unavailable("count passkeys", err)
	}
	return int(n), nil
}

// Remove removes one of an account's passkeys (by its owner) and records
// passkey.removed. ErrNotFound when the account has no passkey of that id
// (another account's is none of its).
func (s *Store) Remove(ctx context.Context, uid, id string, by audit.Actor) error {
	if raw, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(raw) == 0 || len(raw) > maxCredentialID {
		return ErrNotFound
	}
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	v, err := s.c.Do(rctx, s.c.B().Hget().Key(s.k.Passkeys(uid)).Field(id).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return ErrNotFound
	}
	if err != nil {
		return redisx.Unavailable("read passkey", err)
	}
	st, err := decode(id, v)
	if err != nil {
		return err
	}
	ev := by.Event(audit.PasskeyRemoved, uid, "", st.rec.Name)
	n, err := s.remove(rctx, uid, id, ev)
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound // removed meanwhile
	}
	s.o.Audit.Feed(ctx, ev)
	return nil
}

// RemoveAll removes every passkey of an account (an admin's removal of its
// second factors) and returns how many there were; passkey.removed is
// recorded when there was one. errcode.ErrUserNotFound when there is no
// such account.
func (s *Store) RemoveAll(ctx context.Context, uid string, by audit.Actor) (int, error) {
	ev := by.Counted(audit.PasskeyRemoved, uid, "", "every passkey ({count})")
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	n, err := s.remove(rctx, uid, "", ev)
	if err != nil {
		return 0, err
	}
	if n > 0 {
		s.o.Audit.Feed(ctx, audit.WithCount([]audit.Event{ev}, n)...)
	}
	return n, nil
}

func (s *Store) remove(ctx context.Context, uid, id string, ev audit.Event) (int, error) {
	n, err := scripts.PasskeyRemove.Exec(ctx, s.c, []string{s.k.User(uid), s.k.Passkeys(uid), s.k.Events(uid)},
		[]string{id, audit.Spec(s.o.Now(), ev)}).AsInt64()
	switch {
	case err != nil:
		return 0, redisx.Unavailable("remove passkeys", err)
	case n < 0:
		return 0, errcode.ErrUserNotFound
	}
	return int(n), nil
}

// read returns an account's credentials, oldest first.
func (s *Store) read(ctx context.Context, uid string) ([]stored, error) {
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	h, err := s.c.Do(ctx, s.c.B().Hgetall().Key(s.k.Passkeys(uid)).Build()).AsStrMap()
	if err != nil {
		return nil, redisx.Unavailable("read passkeys", err)
	}
	out := make([]stored, 0, len(h))
	for id, v := range h {
		st, err := decode(id, v)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b stored) int {
		return cmp.Or(cmp.Compare(a.rec.Created, b.rec.Created), strings.Compare(a.field, b.field))
	})
	return out, nil
}

// cleanName is a passkey's name as stored: trimmed, DefaultName when empty.
func cleanName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return DefaultName, nil
	case !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxNameLen || strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "", ErrInvalidName
	}
	return name, nil
}

// refused is ErrUnauthorized with its cause, for the logs: the client sees
// only ErrUnauthorized's message.
func refused(cause any) error { return fmt.Errorf("passkey refused (%v): %w", cause, ErrUnauthorized) }
