package passkeys_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/passkeys"
	"github.com/sessiond/sessiond/sessions"
)

// Registering: the creation options are what a browser needs (resident key
// preferred, user verification required, the account id as user handle,
// the account's passkeys excluded); a passkey is listed with its name, and
// passkey.added is recorded.
func TestRegisterAndList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.account("alice")
	a := authenticator(u)

	_, opts, err := e.pk.BeginRegistration(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		RP   struct{ ID, Name string }
		User struct {
			ID, Name    string
			DisplayName string `json:"displayName"`
		}
		Challenge              string
		Timeout                int
		AuthenticatorSelection struct {
			ResidentKey      string `json:"residentKey"`
			UserVerification string `json:"userVerification"`
		} `json:"authenticatorSelection"`
		ExcludeCredentials []struct{ ID string } `json:"excludeCredentials"`
		PublicKey          any                   `json:"publicKey"`
	}
	if err := json.Unmarshal(opts, &o); err != nil {
		t.Fatal(err)
	}
	if o.RP.ID != rpID || o.RP.Name != "sessiond" || o.User.ID != base64.RawURLEncoding.EncodeToString([]byte(u.ID)) ||
		o.User.Name != "alice" || o.AuthenticatorSelection.ResidentKey != "preferred" ||
		o.AuthenticatorSelection.UserVerification != "required" || o.Timeout != int(passkeys.ChallengeTTL/time.Millisecond) ||
		len(o.ExcludeCredentials) != 0 || o.PublicKey != nil {
		t.Fatalf("creation options: %s", opts)
	}
	if c, err := base64.RawURLEncoding.DecodeString(o.Challenge); err != nil || len(c) < 16 {
		t.Fatalf("challenge %q", o.Challenge)
	}

	c1, first := e.register(e.pk, u, a, "")
	e.clk.advance(time.Second)
	_, second := e.register(e.pk, u, a, "  YubiKey 5C  ")
	if first.Name != passkeys.DefaultName || second.Name != "YubiKey 5C" ||
		first.ID != base64.RawURLEncoding.EncodeToString(c1.ID) || !first.LastUsedAt.Equal(first.CreatedAt) {
		t.Fatalf("registered %+v and %+v", first, second)
	}
	list, err := e.pk.List(ctx, u.ID)
	if err != nil || len(list) != 2 || list[0] != first || list[1] != second {
		t.Fatalf("list: %v %+v; want %+v, %+v", err, list, first, second)
	}
	if n, err := e.pk.Count(ctx, u.ID); err != nil || n != 2 {
		t.Fatalf("count: %d %v", n, err)
	}
	// The next registration excludes both.
	_, opts, _ = e.pk.BeginRegistration(ctx, u)
	o.ExcludeCredentials = nil
	_ = json.Unmarshal(opts, &o)
	if len(o.ExcludeCredentials) != 2 || o.ExcludeCredentials[0].ID != first.ID || o.ExcludeCredentials[1].ID != second.ID {
		t.Fatalf("excludeCredentials after two registrations: %s", opts)
	}
	if evs := e.events(u.ID, audit.PasskeyAdded); len(evs) != 2 || evs[0].Detail != "YubiKey 5C" || evs[1].ActorID != u.ID {
		t.Fatalf("passkey.added events: %+v", evs)
	}
	// Nothing is stored of the attestation: the record is small.
	h := srv.Do(t, "HGET", e.k.Passkeys(u.ID), first.ID)
	if v, _ := h.ToString(); len(v) > 400 || strings.Contains(v, "attestation") {
		t.Fatalf("stored record (%d bytes): %s", len(v), v)
	}
}

// A registration's answer is accepted once, for the account that began it,
// with a name that is a name.
func TestRegistrationRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u, bob := e.account("alice"), e.account("bob")
	a := authenticator(u)
	id, resp := e.attest(e.pk, u, a)
	for name, bad := range map[string]string{"too long": strings.Repeat("é", passkeys.MaxNameLen+1),
		"invalid UTF-8": "key\xff", "a control character": "key\nname"} {
		if _, err := e.pk.FinishRegistration(ctx, u.ID, id, bad, resp, actor(u)); !errors.Is(err, passkeys.ErrInvalidName) {
			t.Fatalf("a name %s: %v", name, err)
		}
	}
	_, err := e.pk.FinishRegistration(ctx, bob.ID, id, "", resp, actor(bob))
	wantRefused(t, err, "alice's registration finished by bob")
	if _, err := e.pk.FinishRegistration(ctx, u.ID, id, strings.Repeat("é", passkeys.MaxNameLen), resp, actor(u)); err != nil {
		t.Fatal(err)
	}
	_, err = e.pk.FinishRegistration(ctx, u.ID, id, "", resp, actor(u))
	wantRefused(t, err, "the same registration again")
	_, err = e.pk.FinishRegistration(ctx, u.ID, "v1.garbage.garbage", "", resp, actor(u))
	wantRefused(t, err, "a forged challenge id")
	if n, _ := e.pk.Count(ctx, u.ID); n != 1 {
		t.Fatalf("%d passkeys after one registration", n)
	}
	// An account has at most MaxPasskeys.
	for range passkeys.MaxPasskeys - 1 {
		e.register(e.pk, u, a, "")
	}
	if _, _, err := e.pk.BeginRegistration(ctx, u); !errors.Is(err, passkeys.ErrTooMany) {
		t.Fatalf("beginning a registration beyond the most: %v", err)
	}
	if n, _ := e.pk.Count(ctx, u.ID); n != passkeys.MaxPasskeys {
		t.Fatalf("%d passkeys, want %d", n, passkeys.MaxPasskeys)
	}
}

// Signing in by username (allowCredentials lists the account's passkeys)
// and with a discoverable credential (empty allowCredentials, the account
// from the user handle), each updating the passkey's last use.
func TestSignInByUsernameAndDiscoverable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.account("Alice")
	a := authenticator(u)
	cred, pk := e.register(e.pk, u, a, "phone")

	id, opts, err := e.pk.BeginLogin(ctx, "ALICE")
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		RPID             string `json:"rpId"`
		UserVerification string `json:"userVerification"`
		AllowCredentials []struct{ Type, ID string }
	}
	if err := json.Unmarshal(opts, &o); err != nil || o.RPID != rpID || o.UserVerification != "required" ||
		len(o.AllowCredentials) != 1 || o.AllowCredentials[0].ID != pk.ID || o.AllowCredentials[0].Type != "public-key" {
		t.Fatalf("request options by username: %s", opts)
	}
	e.clk.advance(time.Minute)
	got, err := e.pk.FinishLogin(ctx, id, assertion(t, rp, a, cred, opts), anyone())
	if err != nil || got.ID != u.ID || got.Username != "Alice" {
		t.Fatalf("sign-in by username: %+v %v", got, err)
	}
	if list, _ := e.pk.List(ctx, u.ID); !list[0].LastUsedAt.Equal(e.clk.now().Truncate(time.Millisecond)) {
		t.Fatalf("last used %v, want %v", list[0].LastUsedAt, e.clk.now())
	}

	_, opts, err = e.pk.BeginLogin(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	o.AllowCredentials = nil
	if err := json.Unmarshal(opts, &o); err != nil || len(o.AllowCredentials) != 0 || o.UserVerification != "required" {
		t.Fatalf("discoverable request options: %s", opts)
	}
	// The authenticator finds its credential itself: no allow list.
	a.Credentials[0].Counter++
	if got, err := e.login(e.pk, "", a, &a.Credentials[0]); err != nil || got.ID != u.ID {
		t.Fatalf("discoverable sign-in: %+v %v", got, err)
	}
	// A discoverable credential without a user handle names no account.
	noHandle := *a
	noHandle.Options.UserHandle = nil
	_, err = e.login(e.pk, "", &noHandle, &a.Credentials[0])
	wantRefused(t, err, "a discoverable sign-in without a user handle")
	// A user handle naming another account does not sign it in.
	other := e.account("mallory")
	lying := *a
	lying.Options.UserHandle = []byte(other.ID)
	_, err = e.login(e.pk, "", &lying, &a.Credentials[0])
	wantRefused(t, err, "a user handle naming another account")
	_, err = e.login(e.pk, "alice", &lying, &a.Credentials[0])
	wantRefused(t, err, "a user handle that is not the account's the sign-in is for")
	_, err = e.login(e.pk, "mallory", a, &a.Credentials[0])
	wantRefused(t, err, "alice's passkey for mallory's sign-in")
}

// The same assertion, or another over the same challenge, is refused once
// one was accepted; so is a challenge of another kind, or an expired one.
func TestChallengesAreSingleUseAndExpire(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.account("alice")
	a := authenticator(u)
	cred, _ := e.register(e.pk, u, a, "")

	id, opts, _ := e.pk.BeginLogin(ctx, "alice")
	resp := assertion(t, rp, a, cred, opts)
	if _, err := e.pk.FinishLogin(ctx, id, resp, anyone()); err != nil {
		t.Fatal(err)
	}
	_, err := e.pk.FinishLogin(ctx, id, resp, anyone())
	wantRefused(t, err, "the same assertion again")
	cred.Counter = 10
	_, err = e.pk.FinishLogin(ctx, id, assertion(t, rp, a, cred, opts), anyone())
	wantRefused(t, err, "a new assertion over a used challenge")

	// Expired: one millisecond past ChallengeTTL.
	id, opts, _ = e.pk.BeginLogin(ctx, "")
	e.clk.advance(passkeys.ChallengeTTL + time.Millisecond)
	cred.Counter++
	_, err = e.pk.FinishLogin(ctx, id, assertion(t, rp, a, cred, opts), anyone())
	wantRefused(t, err, "an expired challenge")
	rid, resp := e.attest(e.pk, u, a)
	e.clk.advance(passkeys.ChallengeTTL + time.Millisecond)
	_, err = e.pk.FinishRegistration(ctx, u.ID, rid, "", resp, actor(u))
	wantRefused(t, err, "an expired registration")

	// A registration's challenge is no sign-in's, and neither is a step-up's.
	rid, ropts, _ := e.pk.BeginRegistration(ctx, u)
	parsed, _ := virtualwebauthn.ParseAttestationOptions(string(ropts))
	cred.Counter++
	asReq, _ := json.Marshal(map[string]any{"challenge": base64.RawURLEncoding.EncodeToString(parsed.Challenge), "rpId": rpID})
	_, err = e.pk.FinishLogin(ctx, rid, assertion(t, rp, a, cred, asReq), anyone())
	wantRefused(t, err, "a registration's challenge id at sign-in")
	sid, sopts, _ := e.pk.BeginReauth(ctx, u.ID)
	_, err = e.pk.FinishLogin(ctx, sid, assertion(t, rp, a, cred, sopts), anyone())
	wantRefused(t, err, "a step-up's challenge id at sign-in")
	lid, lopts, _ := e.pk.BeginLogin(ctx, "alice")
	_, err = e.pk.FinishReauth(ctx, u.ID, lid, assertion(t, rp, a, cred, lopts), actor(u))
	wantRefused(t, err, "a sign-in's challenge id at step-up")
	// Neither refusal spent those challenges' use: they still work.
	if _, err := e.pk.FinishLogin(ctx, lid, assertion(t, rp, a, cred, lopts), anyone()); err != nil {
		t.Fatalf("the sign-in after the refused step-up: %v", err)
	}
}

// An answer from an origin that is not configured, or without user
// verification, is refused; so is one that is not an answer at all.
func TestWrongOriginAndNoUserVerificationRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.account("alice")
	a := authenticator(u)
	cred, _ := e.register(e.pk, u, a, "")

	for _, o := range []string{"https://evil.test", "http://login.example.com", "https://login.example.com:8443", "https://other.example.com"} {
		evil := rp
		evil.Origin = o
		id, opts, _ := e.pk.BeginLogin(ctx, "alice")
		cred.Counter++
		_, err := e.pk.FinishLogin(ctx, id, assertion(t, evil, a, cred, opts), anyone())
		wantRefused(t, err, "an assertion from "+o)
	}
	// Registration from a wrong origin.
	id, opts, _ := e.pk.BeginRegistration(ctx, u)
	parsed, _ := virtualwebauthn.ParseAttestationOptions(string(opts))
	evil := rp
	evil.Origin = "https://evil.test"
	_, err := e.pk.FinishRegistration(ctx, u.ID, id, "", []byte(virtualwebauthn.CreateAttestationResponse(evil, *a,
		newCredential(), *parsed)), actor(u))
	wantRefused(t, err, "a registration from another origin")

	// Without user verification: neither a registration nor a sign-in.
	noUV := *a
	noUV.Options.UserNotVerified = true
	id, opts, _ = e.pk.BeginRegistration(ctx, u)
	parsed, _ = virtualwebauthn.ParseAttestationOptions(string(opts))
	_, err = e.pk.FinishRegistration(ctx, u.ID, id, "", []byte(virtualwebauthn.CreateAttestationResponse(rp, noUV,
		newCredential(), *parsed)), actor(u))
	wantRefused(t, err, "a registration without user verification")
	cred.Counter++
	_, err = e.login(e.pk, "alice", &noUV, cred)
	wantRefused(t, err, "a sign-in without user verification")
	_, err = e.login(e.pk, "", &noUV, cred)
	wantRefused(t, err, "a discoverable sign-in without user verification")

	// Not an answer; a signature by another key.
	id, _, _ = e.pk.BeginLogin(ctx, "alice")
	for _, body := range []string{"", "{}", "null", `{"id":"x","type":"public-key"}`} {
		_, err = e.pk.FinishLogin(ctx, id, []byte(body), anyone())
		wantRefused(t, err, "the answer "+body)
	}
	forged := *cred
	forged.Key = newCredential().Key
	forged.Counter++
	_, err = e.login(e.pk, "alice", a, &forged)
	wantRefused(t, err, "a signature by another key")
	if n, _ := e.pk.Count(ctx, u.ID); n != 1 {
		t.Fatalf("%d passkeys after refused registrations", n)
	}
	// None of that spent the good credential.
	cred.Counter++
	if _, err := e.login(e.pk, "alice", a, cred); err != nil {
		t.Fatal(err)
	}
}

// A signature counter that goes backwards, or stays where it was once it
// counts, refuses the sign-in and records passkey.cloned; the stored
// counter stays, so the genuine authenticator goes on.
func TestCounterBackwardsRefusedAndRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.account("alice")
	a := authenticator(u)
	cred, _ := e.register(e.pk, u, a, "key")
	// Two zeros: an authenticator without a counter.
	if _, err := e.login(e.pk, "alice", a, cred); err != nil {
		t.Fatalf("counter 0 after 0: %v", err)
	}
	cred.Counter = 5
	if _, err := e.login(e.pk, "alice", a, cred); err != nil {
		t.Fatalf("counter 5 after 0: %v", err)
	}
	for _, n := range []uint32{3, 5, 0} {
		cred.Counter = n
		_, err := e.login(e.pk, "", a, cred)
		wantRefused(t, err, "a counter going from 5 to "+strconv.Itoa(int(n)))
	}
	evs := e.events(u.ID, audit.PasskeyCloned)
	if len(evs) != 3 || !strings.Contains(evs[2].Detail, "key: signature counter 3, after 5") || evs[0].IP != "198.51.100.9" {
		t.Fatalf("passkey.cloned events: %+v", evs)
	}
	cred.Counter = 6
	if _, err := e.login(e.pk, "alice", a, cred); err != nil {
		t.Fatalf("counter 6 after 5: %v", err)
	}
}

// A name that is no account, and an account without passkeys, get an
// answer shaped like an account's: one credential, the same each time and
// on every replica, whatever the name's case; a challenge id of the same
// length; and nothing is written.
func TestUnknownUsernameLooksLikeKnown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.account("alice")
	e.account("bob") // no passkeys
	e.register(e.pk, u, authenticator(u), "")
	other := e.replica(srv.Client(t), challengeB)

	type answer struct {
		id    string
		keys  []string
		allow []map[string]any
	}
	ask := func(s *passkeys.Store, name string) answer {
		t.Helper()
		id, opts, err := s.BeginLogin(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(opts, &m); err != nil {
			t.Fatal(err)
		}
		var a answer
		a.id = id
		for k := range m {
			a.keys = append(a.keys, k)
		}
		slices.Sort(a.keys)
		for _, c := range m["allowCredentials"].([]any) {
			a.allow = append(a.allow, c.(map[string]any))
		}
		return a
	}
	known := ask(e.pk, "alice")
	before := srv.Keys(t, e.prefix+"*")
	for _, name := range []string{"ghost", "bob", "a.very.long.name@example.com"} {
		got := ask(e.pk, name)
		if !slices.Equal(got.keys, known.keys) || len(got.allow) != 1 || len(got.id) != len(known.id) ||
			got.allow[0]["type"] != "public-key" {
			t.Fatalf("%s: keys %v, %d credentials, id of %d; alice: %v, %d, %d", name, got.keys, len(got.allow), len(got.id),
				known.keys, len(known.allow), len(known.id))
		}
		raw, err := base64.RawURLEncoding.DecodeString(got.allow[0]["id"].(string))
		if err != nil || len(raw) < 16 {
			t.Fatalf("%s: decoy id %v", name, got.allow[0]["id"])
		}
		again, elsewhere := ask(e.pk, strings.ToUpper(name)), ask(other, name)
		if again.allow[0]["id"] != got.allow[0]["id"] || elsewhere.allow[0]["id"] != got.allow[0]["id"] ||
			again.id == got.id {
			t.Fatalf("%s: decoys %v, %v, %v", name, got.allow[0]["id"], again.allow[0]["id"], elsewhere.allow[0]["id"])
		}
	}
	if ask(e.pk, "ghost").allow[0]["id"] == ask(e.pk, "ghost2").allow[0]["id"] {
		t.Fatal("two names share a decoy")
	}
	if after := srv.Keys(t, e.prefix+"*"); len(after) != len(before) {
		t.Fatalf("keys before the unknown names %v, after %v", before, after)
	}
	// A decoy's challenge signs nobody in, even with a real passkey.
	b := e.account("carol")
	ba := authenticator(b)
	cred, _ := e.register(e.pk, b, ba, "")
	id, opts, _ := e.pk.BeginLogin(ctx, "ghost")
	var o map[string]any
	_ = json.Unmarshal(opts, &o)
	delete(o, "allowCredentials")
	opts, _ = json.Marshal(o)
	_, err := e.pk.FinishLogin(ctx, id, assertion(t, rp, ba, cred, opts), anyone())
	wantRefused(t, err, "carol's passkey over ghost's challenge")
}

// Removing one passkey (only the account's own), and every one; a removed
// passkey signs nobody in.
func TestRemoveAndRemoveAll(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u, bob := e.account("alice"), e.account("bob")
	a := authenticator(u)
	c1, p1 := e.register(e.pk, u, a, "one")
	e.clk.advance(time.Millisecond)
	e.register(e.pk, u, a, "two")
	e.clk.advance(time.Millisecond)
	e.register(e.pk, u, a, "three")
	_, bp := e.register(e.pk, bob, authenticator(bob), "")

	for _, id := range []string{bp.ID, "", "not base64!", base64.RawURLEncoding.EncodeToString([]byte("unknown"))} {
		if err := e.pk.Remove(ctx, u.ID, id, actor(u)); !errors.Is(err, passkeys.ErrNotFound) {
			t.Fatalf("removing %q: %v", id, err)
		}
	}
	if err := e.pk.Remove(ctx, u.ID, p1.ID, actor(u)); err != nil {
		t.Fatal(err)
	}
	if err := e.pk.Remove(ctx, u.ID, p1.ID, actor(u)); !errors.Is(err, passkeys.ErrNotFound) {
		t.Fatalf("removing it again: %v", err)
	}
	_, err := e.login(e.pk, "", a, c1)
	wantRefused(t, err, "a removed passkey")
	if list, _ := e.pk.List(ctx, u.ID); len(list) != 2 || list[0].Name != "two" {
		t.Fatalf("after removing one: %+v", list)
	}
	admin := audit.Actor{ID: "admin-id"}
	if n, err := e.pk.RemoveAll(ctx, u.ID, admin); n != 2 || err != nil {
		t.Fatalf("remove all: %d %v", n, err)
	}
	if n, err := e.pk.RemoveAll(ctx, u.ID, admin); n != 0 || err != nil {
		t.Fatalf("remove all again: %d %v", n, err)
	}
	if _, err := e.pk.RemoveAll(ctx, "no-such-account", admin); !errors.Is(err, errcode.ErrUserNotFound) {
		t.Fatalf("remove all of no account: %v", err)
	}
	evs := e.events(u.ID, audit.PasskeyRemoved)
	if len(evs) != 2 || evs[0].Detail != "every passkey (2)" || evs[0].ActorID != "admin-id" || evs[1].Detail != "one" {
		t.Fatalf("passkey.removed events: %+v", evs)
	}
	if n, _ := e.pk.Count(ctx, bob.ID); n != 1 {
		t.Fatal("bob's passkey went with alice's")
	}
}

// A disabled account is refused, and said to be disabled only once the
// assertion verified: a bad one gets the one refusal.
func TestDisabledAccountRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.account("alice")
	a := authenticator(u)
	cred, _ := e.register(e.pk, u, a, "")
	if err := srv.Do(t, "HSET", e.k.User(u.ID), keys.UserDisabled, "1").Error(); err != nil {
		t.Fatal(err)
	}
	forged := *cred
	forged.Key = newCredential().Key
	_, err := e.login(e.pk, "alice", a, &forged)
	wantRefused(t, err, "a bad assertion for a disabled account")
	for _, name := range []string{"alice", ""} {
		cred.Counter++
		if _, err := e.login(e.pk, name, a, cred); !errors.Is(err, errcode.ErrAccountDisabled) {
			t.Fatalf("a good assertion for a disabled account (%q): %v", name, err)
		}
	}
	id, resp := e.attest(e.pk, u, a)
	if _, err := e.pk.FinishRegistration(ctx, u.ID, id, "", resp, actor(u)); !errors.Is(err, errcode.ErrAccountDisabled) {
		t.Fatalf("registering to a disabled account: %v", err)
	}
}

// A step-up is bound to the account that began it: only its own passkeys
// finish it, and only for it.
func TestReauthBoundToItsAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u, bob := e.account("alice"), e.account("bob")
	a, ba := authenticator(u), authenticator(bob)
	cred, _ := e.register(e.pk, u, a, "")
	bcred, _ := e.register(e.pk, bob, ba, "")
	if _, _, err := e.pk.BeginReauth(ctx, e.account("carol").ID); !errors.Is(err, passkeys.ErrNoPasskeys) {
		t.Fatalf("a step-up of an account without passkeys: %v", err)
	}

	id, opts, err := e.pk.BeginReauth(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	var o struct{ AllowCredentials []struct{ ID string } }
	if err := json.Unmarshal(opts, &o); err != nil || len(o.AllowCredentials) != 1 {
		t.Fatalf("step-up options: %s", opts)
	}
	_, err = e.pk.FinishReauth(ctx, bob.ID, id, assertion(t, rp, ba, bcred, opts), actor(bob))
	wantRefused(t, err, "alice's step-up finished by bob")
	_, err = e.pk.FinishReauth(ctx, u.ID, id, assertion(t, rp, ba, bcred, opts), actor(u))
	wantRefused(t, err, "alice's step-up with bob's passkey")
	got, err := e.pk.FinishReauth(ctx, u.ID, id, assertion(t, rp, a, cred, opts), actor(u))
	if err != nil || got.ID != u.ID {
		t.Fatalf("alice's step-up: %+v %v", got, err)
	}
	cred.Counter++
	_, err = e.pk.FinishReauth(ctx, u.ID, id, assertion(t, rp, a, cred, opts), actor(u))
	wantRefused(t, err, "the step-up's challenge again")
}

// What one replica begins, another finishes, once across both; a replica
// that has the sealing key among its keys (a rotation) opens it, one
// without it refuses.
func TestAnotherReplicaFinishes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.account("alice")
	a := authenticator(u)
	second := e.replica(srv.Client(t), challengeA)
	rotated := e.replica(srv.Client(t), challengeB, challengeA)
	newOnly := e.replica(srv.Client(t), challengeB)

	id, resp := e.attest(e.pk, u, a)
	pk, err := second.FinishRegistration(ctx, u.ID, id, "", resp, actor(u))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.pk.FinishRegistration(ctx, u.ID, id, "", resp, actor(u))
	wantRefused(t, err, "the registration again on the first replica")
	cred := &a.Credentials[0]

	id, opts, _ := e.pk.BeginLogin(ctx, "alice")
	resp = assertion(t, rp, a, cred, opts)
	_, err = newOnly.FinishLogin(ctx, id, resp, anyone())
	wantRefused(t, err, "a replica without the sealing key")
	if got, err := rotated.FinishLogin(ctx, id, resp, anyone()); err != nil || got.ID != u.ID {
		t.Fatalf("the rotated replica: %+v %v", got, err)
	}
	for _, s := range []*passkeys.Store{e.pk, second} {
		_, err = s.FinishLogin(ctx, id, resp, anyone())
		wantRefused(t, err, "the assertion again on another replica")
	}
	// What the rotated replica seals (with the new key), the old-key
	// replica cannot open.
	id, opts, _ = rotated.BeginLogin(ctx, "")
	cred.Counter++
	resp = assertion(t, rp, a, cred, opts)
	_, err = second.FinishLogin(ctx, id, resp, anyone())
	wantRefused(t, err, "a new-key challenge on an old-key replica")
	if _, err := newOnly.FinishLogin(ctx, id, resp, anyone()); err != nil {
		t.Fatal(err)
	}
	if list, _ := second.List(ctx, u.ID); len(list) != 1 || list[0].ID != pk.ID {
		t.Fatalf("list on the second replica: %+v", list)
	}
}

// Redis down: every call that needs it is unavailable (503), never a
// refusal (401) nor a success.
func TestRedisDownIsUnavailable(t *testing.T) {
	srv.RequireReal(t, "stopping and restarting a redis-server")
	own, err := startOwn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(own.Close)
	// A short deadline: rueidis retries until it, so each call takes it.
	e := newEnvOn(t, own, 300*time.Millisecond)
	u := e.account("alice")
	a := authenticator(u)
	cred, _ := e.register(e.pk, u, a, "")
	id, opts, _ := e.pk.BeginLogin(ctx, "alice")
	resp := assertion(t, rp, a, cred, opts)
	rid, _, _ := e.pk.BeginRegistration(ctx, u)

	own.Stop()
	unavailable := func(what string, err error) {
		t.Helper()
		if errcode.Of(err) != errcode.Unavailable {
			t.Fatalf("%s with Redis down: %v; want unavailable", what, err)
		}
	}
	_, err = e.pk.FinishLogin(ctx, id, resp, anyone())
	unavailable("finish login", err)
	_, _, err = e.pk.BeginLogin(ctx, "alice")
	unavailable("begin login by name", err)
	_, _, err = e.pk.BeginRegistration(ctx, u)
	unavailable("begin registration", err)
	_, err = e.pk.FinishRegistration(ctx, u.ID, rid, "", []byte("{}"), actor(u))
	wantRefused(t, err, "a malformed registration (refused before Redis)")
	_, err = e.pk.List(ctx, u.ID)
	unavailable("list", err)
	_, err = e.pk.Count(ctx, u.ID)
	unavailable("count", err)
	_, err = e.pk.RemoveAll(ctx, u.ID, actor(u))
	unavailable("remove all", err)
	_, _, err = e.pk.BeginReauth(ctx, u.ID)
	unavailable("begin step-up", err)
}

// Deleting an account deletes its passkeys with it (sessions.Store's
// DeleteAccount): nothing of it stays but its history.
func TestDeletingTheAccountDeletesItsPasskeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.account("alice")
	a := authenticator(u)
	cred, _ := e.register(e.pk, u, a, "")
	ss, err := sessions.New(e.c, sessions.Options{Keys: e.k, IdleTimeout: time.Hour, MaxLifetime: 24 * time.Hour,
		Timeout: timeout, Audit: e.audit, Now: e.clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ss.DeleteAccount(ctx, u.ID, audit.Actor{ID: "admin"}); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.Do(t, "EXISTS", e.k.Passkeys(u.ID)).AsInt64(); err != nil || n != 0 {
		t.Fatalf("the deleted account's passkeys: %d %v", n, err)
	}
	cred.Counter++
	_, err = e.login(e.pk, "", a, cred)
	wantRefused(t, err, "a deleted account's passkey")
}

// The same assertion finished at once on several replicas signs in once.
func TestConcurrentFinishesAcceptOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.account("alice")
	a := authenticator(u)
	cred, _ := e.register(e.pk, u, a, "")
	stores := []*passkeys.Store{e.pk, e.replica(srv.Client(t), challengeA), e.replica(srv.Client(t), challengeA)}
	for round := range 5 {
		id, opts, _ := e.pk.BeginLogin(ctx, "")
		cred.Counter++
		resp := assertion(t, rp, a, cred, opts)
		var wg sync.WaitGroup
		var ok atomic.Int32
		for i := range 12 {
			wg.Go(func() {
				_, err := stores[i%len(stores)].FinishLogin(ctx, id, resp, anyone())
				switch {
				case err == nil:
					ok.Add(1)
				case !errors.Is(err, passkeys.ErrUnauthorized):
					t.Errorf("a concurrent finish: %v", err)
				}
			})
		}
		wg.Wait()
		if n := ok.Load(); n != 1 {
			t.Fatalf("round %d: %d of 12 concurrent finishes signed in; want 1", round, n)
		}
	}
}
