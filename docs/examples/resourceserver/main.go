// Command resourceserver is an example of an app's own backend that trusts
// sessiond's tokens. Each request with a Bearer token goes through two checks:
//
//  1. The token is verified locally, against the Ed25519 keys sessiond
//     publishes at /.well-known/jwks.json: algorithm pinned to EdDSA, key
//     chosen by the token's kid, iss, aud and exp required. Forged, malformed
//     and expired tokens are refused here, cheaply and without a network
//     call, so sessiond is never in the path of garbage.
//  2. sessiond is asked GET /v1/auth/verify with the same token, on every
//     request, to learn whether the session is still alive. A signature only
//     says that sessiond issued the token; it cannot know about a logout, a
//     force-logout, a password change or a disabled account since. Asking
//     every time makes revocation bite on the very next request. If sessiond
//     cannot answer (503, or it is unreachable), the request is refused with
//     503 and Retry-After: a session that could not be checked is never
//     served.
//
// Caching verify's answers for N seconds would save that round trip, at the
// price of a revoked token still being served for up to N seconds after the
// logout. This example does not make that trade.
//
// Configuration, by flag or environment: -sessiond (SESSIOND_URL), -listen
// (LISTEN_ADDR), -issuer (EXPECTED_ISSUER) and -audience (EXPECTED_AUDIENCE),
// the last two equal to sessiond's JWT_ISSUER and JWT_AUDIENCE. sessiond must
// sign with Ed25519 (JWT_PRIVATE_KEYS): HS256 secrets are never published.
package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

func main() {
	env := func(name, def string) string { return cmp.Or(os.Getenv(name), def) }
	sessiond := flag.String("sessiond", env("SESSIOND_URL", "http://127.0.0.1:3000"), "sessiond's base URL")
	listen := flag.String("listen", env("LISTEN_ADDR", ":8080"), "address to serve on")
	issuer := flag.String("issuer", env("EXPECTED_ISSUER", "sessiond"), "the iss tokens must carry")
	audience := flag.String("audience", env("EXPECTED_AUDIENCE", "sessiond"), "the aud tokens must carry")
	flag.Parse()
	client := &http.Client{Timeout: 3 * time.Second}
	log.Printf("listening on %s, sessiond at %s", *listen, *sessiond)
	log.Fatal(http.ListenAndServe(*listen, newHandler(*sessiond, client, *issuer, *audience)))
}

// Identity is who is calling, as sessiond's verify endpoint says.
type Identity struct {
	UserID    string `json:"user_id"`
	Username  string `json:"username"`
	Role      string `json:"role"`
	SessionID string `json:"session_id"`
}

type identityKey struct{}

// newHandler is the app: its routes, each behind requireSession.
func newHandler(sessiondURL string, client *http.Client, issuer, audience string) http.Handler {
	sessiondURL = strings.TrimSuffix(sessiondURL, "/")
	keys := &keySet{url: sessiondURL + "/.well-known/jwks.json", client: client}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer(issuer),
		jwt.WithAudience(audience), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
	requireSession := func(next http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// (1) Locally: no network call for a bad token.
			scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			if !strings.EqualFold(scheme, "Bearer") {
				token = "" // refused below as malformed
			}
			var claims jwt.RegisteredClaims
			_, err := parser.ParseWithClaims(token, &claims, keys.keyFor)
			switch {
			case errors.Is(err, errKeysUnavailable):
				unavailable(w, "5")
				return
			case err != nil || claims.Subject == "" || claims.ID == "":
				unauthorized(w, "invalid token")
				return
			}
			// (2) At sessiond: is the session still alive?
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, sessiondURL+"/v1/auth/verify", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			// The session records the caller's address if sessiond's TRUSTED_PROXIES has ours.
			if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				req.Header.Set("X-Forwarded-For", ip)
			}
			resp, err := client.Do(req)
			if err != nil {
				unavailable(w, "1") // fail closed
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
			case http.StatusUnauthorized: // logged out, revoked, expired
				unauthorized(w, "session ended")
				return
			default: // 503 (its Redis is down) or anything unexpected: fail closed
				unavailable(w, cmp.Or(resp.Header.Get("Retry-After"), "1"))
				return
			}
			id := Identity{UserID: resp.Header.Get("X-User-Id"), Username: resp.Header.Get("X-Username"),
				Role: resp.Header.Get("X-User-Role"), SessionID: resp.Header.Get("X-Session-Id")}
			if id.UserID != claims.Subject || id.SessionID != claims.ID {
				unavailable(w, "1") // not an answer about this token: fail closed
				return
			}
			next(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
		})
	}
	mux := http.NewServeMux()
	mux.Handle("GET /hello", requireSession(hello))
	return mux
}

// hello is the protected handler: it answers who is calling.
func hello(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(r.Context().Value(identityKey{}).(Identity))
}

func unauthorized(w http.ResponseWriter, why string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	http.Error(w, why, http.StatusUnauthorized)
}

func unavailable(w http.ResponseWriter, retryAfter string) {
	w.Header().Set("Retry-After", retryAfter)
	http.Error(w, "cannot check the session now", http.StatusServiceUnavailable)
}

// errKeysUnavailable means sessiond's keys could not be fetched.
var errKeysUnavailable = errors.New("JWKS unavailable")

// keySet is sessiond's JWKS, cached for its max-age, and fetched again early
// when a token names a kid it does not hold (a key sessiond added since), at
// most once a minute: tokens with made-up kids cannot make it hammer sessiond.
// After a failed fetch it tries again sooner, every 5 seconds.
type keySet struct {
	url     string
	client  *http.Client
	mu      sync.Mutex
	keys    map[string]ed25519.PublicKey
	expires time.Time // from max-age
	tried   time.Time // last fetch
	err     error     // of the last fetch
}

// keyFor is the jwt.Keyfunc: the EdDSA key the token's kid names. Requests
// wait for a fetch in progress (bounded by the client's timeout).
func (s *keySet) keyFor(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	s.mu.Lock()
	defer s.mu.Unlock()
	key, ok := s.keys[kid]
	wait := time.Minute
	if s.err != nil {
		wait = 5 * time.Second
	}
	if (!ok || time.Now().After(s.expires)) && time.Since(s.tried) >= wait {
		s.tried, s.err = time.Now(), s.fetch()
		key, ok = s.keys[kid]
	}
	switch {
	case ok:
		return key, nil
	case s.err != nil:
		return nil, errKeysUnavailable
	}
	return nil, errors.New("unknown kid")
}

// fetch replaces the keys with sessiond's JWKS; on failure it keeps the old.
func (s *keySet) fetch() error {
	resp, err := s.client.Get(s.url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if resp.StatusCode != http.StatusOK {
		return errors.New("JWKS: " + resp.Status)
	} else if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return err
	}
	keys := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		if pub, ok := k.Key.(ed25519.PublicKey); ok && k.KeyID != "" && k.Algorithm == "EdDSA" && k.Use == "sig" {
			keys[k.KeyID] = pub
		}
	}
	s.keys, s.expires = keys, time.Now().Add(maxAge(resp.Header.Get("Cache-Control")))
	return nil
}

// maxAge is the max-age of a Cache-Control header; 0 when there is none.
func maxAge(cc string) time.Duration {
	for _, d := range strings.Split(cc, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(d), "max-age="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	return 0
}
