package tokens_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiond/sessiond/tokens"
)

func cached(t testing.TB, maxBytes int64) *tokens.Tokens {
	t.Helper()
	tk, err := tokens.New(tokens.Keyring{Secret: secret}, "sessiond", "sessiond", tokens.WithCache(maxBytes))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func signAt(t testing.TB, tk *tokens.Tokens, sid string, issued time.Time, ttl time.Duration) string {
	t.Helper()
	tok, err := tk.Sign(tokens.Claims{SessionID: sid, UserID: "7f1c7a2e-1111-4222-8333-444444444444", IssuedAt: issued,
		ExpiresAt: issued.Add(ttl), Username: "alice@example.com", AccountCreatedAt: issued.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A token's second use is answered from the cache, with the same claims.
func TestCacheHit(t *testing.T) {
	tk := cached(t, 1<<20)
	now := time.Now()
	tok := signAt(t, tk, "sid-1", now, time.Hour)
	first, err := tk.VerifyAt(tok, now)
	if err != nil {
		t.Fatal(err)
	}
	second, err := tk.VerifyAt(tok, now.Add(time.Second))
	if err != nil || second != first {
		t.Fatalf("second use: %+v, %v; first %+v", second, err, first)
	}
	if st := tk.CacheStats(); st.Hits != 1 || st.Misses != 1 || st.Entries != 1 || st.Bytes <= int64(len(tok)) {
		t.Fatalf("stats %+v: want 1 hit, 1 miss, 1 entry of more than the token's %d bytes", st, len(tok))
	}
}

// forgeries are tokens that must never verify: garbage, other keys and
// algorithms, and tokens signed with our key whose claims are refused.
func forgeries(t *testing.T, tk *tokens.Tokens, now time.Time, n int) []string {
	t.Helper()
	good := signAt(t, tk, "sid-good", now, time.Hour)
	parts := strings.Split(good, ".")
	kid := kidOf(t, tk)
	claims := func(i int, mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "sessiond", "aud": "sessiond", "sub": "uid", "jti": fmt.Sprint("sid-", i),
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "preferred_username": "alice", "account_created_at": now.Unix()}
		mod(c)
		return c
	}
	sign := func(m jwt.SigningMethod, key any, c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(m, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	var out []string
	for i := range n {
		switch i % 9 {
		case 0:
			out = append(out, fmt.Sprintf("garbage-%d", i))
		case 1: // our header and claims, another signature
			out = append(out, parts[0]+"."+parts[1]+"."+strings.Repeat(string("AB"[i%2]), 42)+"Q")
		case 2:
			out = append(out, sign(jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), claims(i, func(jwt.MapClaims) {})))
		case 3:
			out = append(out, sign(jwt.SigningMethodEdDSA, otherEd, claims(i, func(jwt.MapClaims) {})))
		case 4:
			out = append(out, sign(jwt.SigningMethodHS512, secret, claims(i, func(jwt.MapClaims) {})))
		case 5: // signed with our key, expired
			out = append(out, sign(jwt.SigningMethodHS256, secret, claims(i, func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })))
		case 6: // signed with our key, another audience
			out = append(out, sign(jwt.SigningMethodHS256, secret, claims(i, func(c jwt.MapClaims) { c["aud"] = "other" })))
		case 7: // signed with our key, exp of the wrong type
			out = append(out, sign(jwt.SigningMethodHS256, secret, claims(i, func(c jwt.MapClaims) { c["exp"] = fmt.Sprint(now.Add(time.Hour).Unix()) })))
		case 8: // signed with our key, no username
			out = append(out, sign(jwt.SigningMethodHS256, secret, claims(i, func(c jwt.MapClaims) { delete(c, "preferred_username") })))
		}
	}
	return out
}

// A flood of forged, garbage or refused tokens adds nothing to the cache,
// and every one of them is refused each time.
func TestCacheFloodAddsNothing(t *testing.T) {
	tk := cached(t, 1<<20)
	now := time.Now()
	flood := forgeries(t, tk, now, 2000)
	for round := range 2 {
		for _, tok := range flood {
			if c, err := tk.VerifyAt(tok, now); !errors.Is(err, tokens.ErrInvalidToken) {
				t.Fatalf("round %d: %q verified as %+v (%v)", round, tok, c, err)
			}
		}
	}
	if st := tk.CacheStats(); st.Entries != 0 || st.Bytes != 0 || st.Hits != 0 || st.Misses != 2*uint64(len(flood)) {
		t.Fatalf("after %d refused tokens twice: %+v, want nothing held, every lookup a miss", len(flood), st)
	}
}

// Every token one byte off a cached one is a miss, and refused.
func TestCacheByteFlipMisses(t *testing.T) {
	tk := cached(t, 1<<20)
	now := time.Now()
	tok := signAt(t, tk, "sid-1", now, time.Hour)
	if _, err := tk.VerifyAt(tok, now); err != nil {
		t.Fatal(err)
	}
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	flipped := 0
	for i := range len(tok) {
		for _, with := range []byte{b64[(strings.IndexByte(b64, tok[i])+1)%64], '.', tok[i] ^ 0x20} {
			if with == tok[i] {
				continue
			}
			bad := tok[:i] + string(with) + tok[i+1:]
			if c, err := tk.VerifyAt(bad, now); !errors.Is(err, tokens.ErrInvalidToken) {
				t.Fatalf("byte %d changed to %q: verified as %+v (%v)", i, with, c, err)
			}
			flipped++
		}
	}
	for _, bad := range []string{tok + "A", tok[:len(tok)-1], "x" + tok} {
		if _, err := tk.VerifyAt(bad, now); !errors.Is(err, tokens.ErrInvalidToken) {
			t.Fatalf("%q verified", bad)
		}
		flipped++
	}
	if st := tk.CacheStats(); st.Hits != 0 || st.Entries != 1 || st.Misses != uint64(1+flipped) {
		t.Fatalf("stats %+v after %d altered tokens: want no hit, the one entry", st, flipped)
	}
	if _, err := tk.VerifyAt(tok, now); err != nil || tk.CacheStats().Hits != 1 {
		t.Fatalf("the token itself: %v, stats %+v", err, tk.CacheStats())
	}
}

// A cached token answers only while it would verify: not past exp plus the
// clock skew, not before iat less it; and an expired entry is dropped.
func TestCacheExpiredRefused(t *testing.T) {
	tk := cached(t, 1<<20)
	issued := time.Now().Truncate(time.Second)
	tok := signAt(t, tk, "sid-1", issued, time.Minute)
	if _, err := tk.VerifyAt(tok, issued); err != nil {
		t.Fatal(err)
	}
	end := issued.Add(time.Minute + tokens.ClockSkew)
	if _, err := tk.VerifyAt(tok, end.Add(-time.Nanosecond)); err != nil {
		t.Fatalf("just before exp + skew: %v", err)
	}
	if _, err := tk.VerifyAt(tok, issued.Add(-tokens.ClockSkew)); err != nil {
		t.Fatalf("at iat - skew: %v", err)
	}
	if st := tk.CacheStats(); st.Hits != 2 {
		t.Fatalf("stats %+v: want both answered from the cache", st)
	}
	if _, err := tk.VerifyAt(tok, issued.Add(-tokens.ClockSkew-time.Nanosecond)); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Fatalf("before iat - skew: %v, want refused", err)
	}
	if _, err := tk.VerifyAt(tok, end); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Fatalf("at exp + skew: %v, want refused", err)
	}
	if st := tk.CacheStats(); st.Hits != 2 || st.Entries != 0 {
		t.Fatalf("stats %+v: want the expired entry dropped", st)
	}
	if _, err := tk.VerifyAt(tok, end.Add(time.Hour)); !errors.Is(err, tokens.ErrInvalidToken) || tk.CacheStats().Entries != 0 {
		t.Fatalf("later: %v, stats %+v", err, tk.CacheStats())
	}
}

// The bound holds under 100,000 distinct valid tokens, in the cache's own
// count and in the heap it keeps; what was used last stays.
func TestCacheByteBound(t *testing.T) {
	const limit = 1 << 20
	tk := cached(t, limit)
	now := time.Now()
	before := afterGC()
	var last string
	for i := range 100_000 {
		last = signAt(t, tk, fmt.Sprintf("6f1c7a2e-1111-4222-8333-%012d", i), now, time.Hour)
		if _, err := tk.VerifyAt(last, now); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 0 {
			if st := tk.CacheStats(); st.Bytes > st.MaxBytes || st.MaxBytes > limit {
				t.Fatalf("after %d tokens: %+v", i+1, st)
			}
		}
	}
	after := afterGC()
	st := tk.CacheStats()
	if st.Bytes > st.MaxBytes || st.Entries < 500 {
		t.Fatalf("after 100,000 tokens: %+v", st)
	}
	// What the cache counts is what it holds: the heap grew by no more than
	// the bound (and the shards' maps, sized for what they hold).
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > limit*5/4 {
		t.Fatalf("the heap grew %d bytes holding %d entries it counts as %d bytes (bound %d)", grew, st.Entries, st.Bytes, limit)
	}
	t.Logf("%d entries, %d bytes counted, %d bytes each; the heap grew %d bytes", st.Entries, st.Bytes,
		st.Bytes/int64(st.Entries), int64(after.HeapAlloc)-int64(before.HeapAlloc))
	hits := st.Hits
	if _, err := tk.VerifyAt(last, now); err != nil || tk.CacheStats().Hits != hits+1 {
		t.Fatalf("the last token: %v, want a hit", err)
	}
}

// An entry is no object at all for the garbage collector: its record and
// its index slot are in memory mapped outside the heap. A
// million-token cache was marked on every collection (two objects an entry
// before this, five before that), and each object is a cache miss to mark.
func TestCacheEntriesAreNotHeapObjects(t *testing.T) {
	const n = 20_000
	tk := cached(t, 256<<20)
	now := time.Now()
	toks := make([]string, n)
	for i := range toks {
		toks[i] = signAt(t, tk, fmt.Sprintf("6f1c7a2e-1111-4222-8333-%012d", i), now, time.Hour)
	}
	before := afterGC().HeapObjects
	for _, tok := range toks {
		if _, err := tk.VerifyAt(tok, now); err != nil {
			t.Fatal(err)
		}
	}
	after := afterGC().HeapObjects
	if st := tk.CacheStats(); st.Entries != n {
		t.Fatalf("%d entries, want %d", st.Entries, n)
	}
	if per := float64(int64(after)-int64(before)) / n; per > 0.05 {
		t.Fatalf("%.2f heap objects an entry, want none (the index maps' few)", per)
	}
	for _, tok := range toks[:10] {
		if c, err := tk.VerifyAt(tok, now); err != nil || !strings.HasPrefix(c.SessionID, "6f1c7a2e-") || c.Username != "alice@example.com" {
			t.Fatalf("a hit answered %+v, %v", c, err)
		}
	}
	runtime.KeepAlive(toks)
}

// A large bound is not taken up front, nor from the Go heap: the rings and
// indexes are mapped outside it, and the kernel commits pages as they fill.
func TestCacheBoundIsNotTakenUpFront(t *testing.T) {
	before := afterGC().HeapSys
	tk := cached(t, 1<<30)
	if grew := int64(afterGC().HeapSys) - int64(before); grew > 16<<20 {
		t.Fatalf("a 1 GiB token cache grew the Go heap by %d bytes", grew)
	}
	now := time.Now()
	tok := signAt(t, tk, "sid", now, time.Hour)
	for range 2 {
		if _, err := tk.VerifyAt(tok, now); err != nil {
			t.Fatal(err)
		}
	}
	if st := tk.CacheStats(); st.Hits != 1 || st.MaxBytes != 1<<30 {
		t.Fatalf("stats %+v, want a hit and the bound", st)
	}
}

// The README's figure: the default TOKEN_CACHE_MB=32 holds about 51,000
// tokens of sessiond's (a 12-character username), an entry taking about 660
// bytes of the bound.
func TestCacheDefaultHoldsAbout51000Tokens(t *testing.T) {
	tk := cached(t, 32<<20)
	now := time.Now()
	var tokLen int
	for i := range 60_000 {
		tok, err := tk.Sign(tokens.Claims{SessionID: fmt.Sprintf("6f1c7a2e-1111-4222-8333-%012d", i), UserID: fmt.Sprintf("7f1c7a2e-1111-4222-8333-%012d", i),
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), Username: fmt.Sprintf("user%08d", i), AccountCreatedAt: now.Add(-time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tk.VerifyAt(tok, now); err != nil {
			t.Fatal(err)
		}
		tokLen = len(tok)
	}
	st := tk.CacheStats()
	t.Logf("%d-byte tokens: %d entries, %d bytes counted, %d bytes of the bound each", tokLen, st.Entries, st.Bytes, st.MaxBytes/int64(st.Entries))
	if st.Entries < 49_000 || st.Entries > 53_000 || st.Bytes > st.MaxBytes {
		t.Fatalf("32 MB holds %d tokens (%+v), the README says about 51,000", st.Entries, st)
	}
}

// afterGC is the heap's figures once a collection has run.
func afterGC() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// The least recently used entries go first: a token in use survives a
// stream of others many times the bound.
func TestCacheKeepsWhatIsUsed(t *testing.T) {
	tk := cached(t, 2<<20) // 32 KiB a shard: a few dozen entries each
	now := time.Now()
	hot := signAt(t, tk, "hot", now, time.Hour)
	for i := range 10_000 {
		if _, err := tk.VerifyAt(hot, now); err != nil {
			t.Fatal(err)
		}
		if _, err := tk.VerifyAt(signAt(t, tk, fmt.Sprint("cold-", i), now, time.Hour), now); err != nil {
			t.Fatal(err)
		}
	}
	if st := tk.CacheStats(); st.Hits != 9_999 || st.Bytes > st.MaxBytes {
		t.Fatalf("stats %+v: want every use of the hot token after the first a hit", st)
	}
}

// WithCache(0), or none, remembers nothing and counts nothing.
func TestCacheOff(t *testing.T) {
	now := time.Now()
	for name, tk := range map[string]*tokens.Tokens{"WithCache(0)": cached(t, 0), "no option": func() *tokens.Tokens {
		tk, _ := tokens.New(tokens.Keyring{Secret: secret}, "sessiond", "sessiond")
		return tk
	}()} {
		tok := signAt(t, tk, "sid", now, time.Hour)
		for range 3 {
			if _, err := tk.VerifyAt(tok, now); err != nil {
				t.Fatal(err)
			}
		}
		if st := tk.CacheStats(); st != (tokens.CacheStats{}) {
			t.Fatalf("%s: %+v, want nothing", name, st)
		}
	}
}

// Concurrent hits, misses, expiries and evictions on shared shards (run with
// -race): every answer is right.
func TestCacheConcurrent(t *testing.T) {
	tk := cached(t, 1<<20) // 16 KiB a shard: about 30 of the 2,000 tokens each
	now := time.Now()
	var toks []string
	for i := range 2000 {
		toks = append(toks, signAt(t, tk, fmt.Sprint("sid-", i), now, time.Duration(1+i%2)*time.Hour))
	}
	later := now.Add(time.Hour + tokens.ClockSkew) // the odd ones are still good then
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 4000 {
				i := (n*7 + g*13) % len(toks)
				at := now
				if n%5 == 0 {
					at = later
				}
				c, err := tk.VerifyAt(toks[i], at)
				if (err == nil) != (at == now || i%2 == 1) || err == nil && c.SessionID != fmt.Sprint("sid-", i) {
					t.Errorf("token %d at %v: %+v, %v", i, at.Sub(now), c, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if st := tk.CacheStats(); st.Bytes > st.MaxBytes || st.Hits == 0 {
		t.Fatalf("stats %+v", st)
	}
}
