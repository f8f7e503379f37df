package app_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// soakDuration is 3s by default; SESSIOND_SOAK=60s runs it longer.
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("SESSIOND_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SESSIOND_SOAK: %v", err)
		}
		return d
	}
	return 3 * time.Second
}

// A sustained mixed load over loopback HTTP (sign-ins, /v1/me, sign-outs)
// with Redis up: zero 5xx, and zero acceptances of a token after its
// revocation was acknowledged.
func TestSoakMixedLoad(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{MaxFailures: 1_000_000})
	const nUsers = 20
	for i := range nUsers {
		e.createUser(fmt.Sprintf("soak%d", i), "password123", "")
	}
	base := "http://" + e.listen()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	var requests, logins, logouts, errors5xx, transportErrs, violations atomic.Int64
	var mu sync.Mutex
	revoked := map[string]time.Time{} // token → when its logout was acknowledged
	call := func(method, path, token, body string) (int, []byte) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := client.Do(req)
		requests.Add(1)
		if err != nil {
			transportErrs.Add(1)
			return 0, nil
		}
		defer res.Body.Close()
		var b []byte
		if res.StatusCode == 201 {
			var m map[string]any
			_ = json.NewDecoder(res.Body).Decode(&m)
			tok, _ := m["token"].(string)
			b = []byte(tok)
		}
		if res.StatusCode >= 500 {
			errors5xx.Add(1)
		}
		return res.StatusCode, b
	}
	login := func(i int) string {
		code, tok := call("POST", "/v1/auth/login", "", fmt.Sprintf(`{"username":"soak%d","password":"password123"}`, i))
		if code != 201 {
			return ""
		}
		logins.Add(1)
		return string(tok)
	}

	stop := time.Now().Add(soakDuration(t))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var tokens []string
			for time.Now().Before(stop) {
				switch r := rng.IntN(100); {
				case r < 5 || len(tokens) == 0:
					if tok := login(rng.IntN(nUsers)); tok != "" {
						tokens = append(tokens, tok)
					}
				case r < 10:
					i := rng.IntN(len(tokens))
					tok := tokens[i]
					tokens = append(tokens[:i], tokens[i+1:]...)
					if code, _ := call("POST", "/v1/auth/logout", tok, ""); code == 204 {
						logouts.Add(1)
						mu.Lock()
						revoked[tok] = time.Now()
						mu.Unlock()
					}
				default:
					// Sometimes reuse a token revoked (by any worker) earlier.
					tok := tokens[rng.IntN(len(tokens))]
					if rng.IntN(10) == 0 {
						mu.Lock()
						for old := range revoked {
							tok = old
							break
						}
						mu.Unlock()
					}
					start := time.Now()
					code, _ := call("GET", "/v1/me", tok, "")
					mu.Lock()
					at, wasRevoked := revoked[tok]
					mu.Unlock()
					if code == 200 && wasRevoked && start.After(at) {
						violations.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("soak: %d requests (%d logins, %d logouts) in %s; %d 5xx, %d transport errors, %d revoked tokens accepted",
		requests.Load(), logins.Load(), logouts.Load(), soakDuration(t), errors5xx.Load(), transportErrs.Load(), violations.Load())
	if errors5xx.Load() != 0 || transportErrs.Load() != 0 {
		t.Errorf("%d 5xx and %d transport errors with Redis up; want none", errors5xx.Load(), transportErrs.Load())
	}
	if violations.Load() != 0 {
		t.Errorf("%d requests accepted a token after its logout was acknowledged", violations.Load())
	}
	if logouts.Load() == 0 || logins.Load() == 0 {
		t.Errorf("the load did not exercise sign-in and sign-out (%d logins, %d logouts)", logins.Load(), logouts.Load())
	}
}
