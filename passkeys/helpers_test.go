package passkeys_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"
	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/passkeys"
	"github.com/sessiond/sessiond/users"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

var ctx = context.Background()

// timeout bounds the stores' Redis calls.
const timeout = 2 * time.Second

// startOwn starts a redis-server of the test's own, to stop.
func startOwn() (*redistest.Server, error) { return redistest.Start() }

// The relying party of the tests, and the authenticator's view of it.
const (
	rpID   = "example.com"
	origin = "https://login.example.com"
)

var (
	rp         = virtualwebauthn.RelyingParty{ID: rpID, Name: "sessiond", Origin: origin}
	challengeA = []byte("challenge-key-a-challenge-key-a-challenge-key-a")
	challengeB = []byte("challenge-key-b-challenge-key-b-challenge-key-b")
)

// clock is a settable test clock.
type clock struct{ at atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.at.Load()) }
func (c *clock) advance(d time.Duration) { c.at.Add(int64(d)) }
func newClock() *clock                   { c := &clock{}; c.at.Store(time.Now().UnixNano()); return c }
func actor(u users.User) audit.Actor {
	return audit.Actor{ID: u.ID, IP: "192.0.2.1", UserAgent: "test"}
}
func anyone() audit.Actor { return audit.Actor{IP: "198.51.100.9", UserAgent: "test"} }

// env is one deployment's stores under a prefix of their own.
type env struct {
	t      *testing.T
	c      rueidis.Client
	k      keys.Layout
	clk    *clock
	audit  *audit.Log
	users  *users.Store
	pk     *passkeys.Store
	prefix string
	// timeout bounds the stores' Redis calls.
	timeout time.Duration
}

func newEnv(t *testing.T) *env { t.Helper(); return newEnvOn(t, srv, timeout) }

// newEnvOn is newEnv on another server, with another Redis timeout.
func newEnvOn(t *testing.T, on *redistest.Server, timeout time.Duration) *env {
	t.Helper()
	e := &env{t: t, c: on.Client(t), prefix: redistest.Prefix(t), clk: newClock(), timeout: timeout}
	e.k = keys.New(e.prefix)
	e.audit = audit.New(e.c, e.k, timeout, e.clk.now)
	var err error
	e.users, err = users.New(e.c, users.Options{Keys: e.k, BcryptCost: 4, Timeout: timeout,
		FailureWindow: 15 * time.Minute, Audit: e.audit, Now: e.clk.now})
	if err != nil {
		t.Fatal(err)
	}
	e.pk = e.replica(e.c, challengeA)
	return e
}

// replica is another process of the same deployment: its own client (when
// c is new) and its own challenge keys, the same Redis and prefix.
func (e *env) replica(c rueidis.Client, challengeKeys ...[]byte) *passkeys.Store {
	e.t.Helper()
	s, err := passkeys.New(c, e.users, passkeys.Options{RPID: rpID, Origins: []string{origin, "https://example.com"},
		RPDisplayName: "sessiond", Keys: e.k, Timeout: e.timeout, Audit: e.audit, Now: e.clk.now,
		ChallengeKeys: challengeKeys})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) account(name string) users.User {
	e.t.Helper()
	u, err := e.users.Create(ctx, name, "password123", "", audit.Actor{})
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// authenticator is a software authenticator that holds discoverable
// credentials of u (its user handle is u's id).
func authenticator(u users.User) *virtualwebauthn.Authenticator {
	a := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(u.ID)})
	return &a
}

// newCredential is a new P-256 credential. virtualwebauthn writes the key's
// coordinates without their leading zero bytes (big.Int.Bytes), which
// go-webauthn rightly refuses (RFC 9053 §7.1.1 keeps them), so one key in
// about 128 would fail a test by chance: only keys whose coordinates have no
// leading zero are used.
func newCredential() virtualwebauthn.Credential {
	for {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		pub, err := k.PublicKey.Bytes() // 0x04 || X || Y, 32 bytes each
		if err != nil || pub[1] == 0 || pub[33] == 0 {
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			panic(err)
		}
		return virtualwebauthn.NewCredentialWithImportedKey(virtualwebauthn.KeyTypeEC2, der)
	}
}

// register registers a new credential of a on u through s, and returns it.
func (e *env) register(s *passkeys.Store, u users.User, a *virtualwebauthn.Authenticator, name string) (*virtualwebauthn.Credential, passkeys.Passkey) {
	e.t.Helper()
	id, resp := e.attest(s, u, a)
	pk, err := s.FinishRegistration(ctx, u.ID, id, name, resp, actor(u))
	if err != nil {
		e.t.Fatalf("finish registration: %v", err)
	}
	return &a.Credentials[len(a.Credentials)-1], pk
}

// attest begins a registration for u on s and makes a's answer with a new
// credential, which a keeps.
func (e *env) attest(s *passkeys.Store, u users.User, a *virtualwebauthn.Authenticator) (string, []byte) {
	e.t.Helper()
	id, opts, err := s.BeginRegistration(ctx, u)
	if err != nil {
		e.t.Fatalf("begin registration: %v", err)
	}
	parsed, err := virtualwebauthn.ParseAttestationOptions(string(opts))
	if err != nil {
		e.t.Fatalf("the creation options do not parse: %v\n%s", err, opts)
	}
	cred := newCredential()
	resp := virtualwebauthn.CreateAttestationResponse(rp, *a, cred, *parsed)
	a.AddCredential(cred)
	return id, []byte(resp)
}

// assertion is a's answer with cred to request options, from rp.
func assertion(t *testing.T, rp virtualwebauthn.RelyingParty, a *virtualwebauthn.Authenticator, cred *virtualwebauthn.Credential, opts json.RawMessage) []byte {
	t.Helper()
	parsed, err := virtualwebauthn.ParseAssertionOptions(string(opts))
	if err != nil {
		t.Fatalf("the request options do not parse: %v\n%s", err, opts)
	}
	return []byte(virtualwebauthn.CreateAssertionResponse(rp, *a, *cred, *parsed))
}

// login begins a sign-in (by username, or discoverable with ""), answers
// it with cred, and finishes it.
func (e *env) login(s *passkeys.Store, username string, a *virtualwebauthn.Authenticator, cred *virtualwebauthn.Credential) (users.User, error) {
	e.t.Helper()
	id, opts, err := s.BeginLogin(ctx, username)
	if err != nil {
		e.t.Fatalf("begin login: %v", err)
	}
	return s.FinishLogin(ctx, id, assertion(e.t, rp, a, cred, opts), anyone())
}

// events are the account's events of one type, newest first.
func (e *env) events(uid, typ string) []audit.Event {
	e.t.Helper()
	evs, _, err := e.audit.List(ctx, audit.Filter{UserID: uid, Type: typ, Limit: 100})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// wantRefused checks err is the one refusal every failed ceremony gets.
func wantRefused(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, passkeys.ErrUnauthorized) || errcode.Of(err) != errcode.Unauthorized ||
		errcode.Message(err) != passkeys.ErrUnauthorized.Message {
		t.Fatalf("%s: %v; want the one unauthorized refusal", what, err)
	}
}
