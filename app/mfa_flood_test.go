package app_test

// What an outsider can make the second-factor and passkey routes keep: a
// flood of passkey ceremonies begun and refused, and of made-up mfa_tokens,
// from 500 addresses, leaves Redis with only small per-address counts of
// failures (which expire), no events, and no lockout of anyone: the real
// user signs in with a passkey and with a code afterwards.

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/descope/virtualwebauthn"

	"github.com/sessiond/sessiond/users"
)

func TestSecondFactorFloodIsBounded(t *testing.T) {
	t.Parallel()
	_, client := ownRedis(t, "measures INFO memory and counts keys")
	e, clk := passkeyEnv(t, envOpts{Client: client, TrustedProxies: behindProxy,
		MaxPerIP: 1_000_000, MaxFailures: 1_000_000, MaxPerAccount: 100})
	u := e.createUser("alice", "alice-password", users.RoleUser)
	tok, _ := e.login("alice", "alice-password")
	a := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(u.ID)})
	cred, _ := e.registerPasskey(t, tok, &a, "phone")
	app, _ := e.enroll(t, clk, tok)

	ctx := context.Background()
	keysBefore, err := client.Do(ctx, client.B().Dbsize().Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	memBefore := usedMemory(t, client)
	evsBefore := len(e.do("GET", "/v1/me/events?limit=500", tok, nil).JSON(t)["events"].([]any))

	const n, addresses = 3000, 500
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ip := fmt.Sprintf("198.51.%d.%d", (i%addresses)/250, (i%addresses)%250+1)
			var r resp
			switch i % 3 {
			case 0: // ceremonies begun, by made-up names and discoverable
				body := map[string]string{}
				if i%2 == 0 {
					body["username"] = randomName()
				}
				r = e.do("POST", "/v1/auth/passkey/begin", "", body, "X-Forwarded-For", ip, "User-Agent", floodUA)
			case 1: // assertions that are no assertion
				r = e.do("POST", "/v1/auth/passkey/finish", "", map[string]any{"challenge_id": fmt.Sprintf("forged-%d", i),
					"credential": json.RawMessage(`{"id":"AAAA","type":"public-key","response":{}}`)}, "X-Forwarded-For", ip, "User-Agent", floodUA)
			default: // made-up mfa_tokens
				r = e.do("POST", "/v1/auth/login/mfa", "", map[string]string{"mfa_token": randomName(), "code": "123456"},
					"X-Forwarded-For", ip, "User-Agent", floodUA)
			}
			mu.Lock()
			statuses[r.Status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[200] != n/3 || statuses[401] != 2*n/3 {
		t.Fatalf("answers %v; want %d begins answered 200 and the rest refused 401", statuses, n/3)
	}

	keysAfter, err := client.Do(ctx, client.B().Dbsize().Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	grown := usedMemory(t, client) - memBefore
	t.Logf("%d requests from %d addresses: %d keys more (%d before), Redis used_memory %+.2f MB", n, addresses, keysAfter-keysBefore, keysBefore, float64(grown)/(1<<20))
	// At most one count of refused assertions per address, and the decoy
	// salt: begins write nothing, made-up mfa_tokens write nothing.
	if keysAfter-keysBefore > addresses+1 {
		t.Fatalf("%d new keys after the flood, want at most one per address (%d)", keysAfter-keysBefore, addresses)
	}
	if grown > 1<<20 {
		t.Fatalf("Redis grew %.2f MB, want under 1 MB", float64(grown)/(1<<20))
	}
	if got := len(e.do("GET", "/v1/me/events?limit=500", tok, nil).JSON(t)["events"].([]any)); got != evsBefore {
		t.Fatalf("the account's history went from %d to %d events: the flood wrote to it", evsBefore, got)
	}

	// Nobody is locked out: the real user, from an address of the flood.
	ip := "198.51.0.1"
	id, opts := ceremonyOf(t, e.do("POST", "/v1/auth/passkey/begin", "", map[string]any{}, "X-Forwarded-For", ip))
	parsed, _ := virtualwebauthn.ParseAssertionOptions(opts)
	asn := virtualwebauthn.CreateAssertionResponse(webauthnRP, a, *cred, *parsed)
	if r := e.do("POST", "/v1/auth/passkey/finish", "", map[string]any{"challenge_id": id, "credential": json.RawMessage(asn)},
		"X-Forwarded-For", "203.0.113.50"); r.Status != 201 {
		t.Fatalf("the real passkey after the flood: %d %s", r.Status, r.Body)
	}
	mt := e.passwordStep(t, "alice", "alice-password")
	if r := e.finishMFA(mt, map[string]string{"code": app.next(t)}); r.Status != 201 {
		t.Fatalf("the real code after the flood: %d %s", r.Status, r.Body)
	}
}
