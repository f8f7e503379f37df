package tokens

import (
	"hash/maphash"
	"sync"
	"time"
	"unsafe"
)

// The verified-token cache. A token is immutable and a client sends the same
// one on every request, so once it has passed every check (signature, key,
// algorithm, claims and their types) the answer is remembered: its next use
// costs a hash, a map lookup and a comparison, not a signature check and a
// JSON decode. It never replaces the session check, which the caller makes
// on every request: revocation is unaffected.
//
// What it holds is bounded in bytes, and only tokens that verified get in:
// a flood of forged or garbage tokens adds nothing, and costs the verification
// it cost before. An entry answers only while the time is within the token's
// iat, nbf and exp, with the same ClockSkew verification allows, checked on
// every hit with the caller's clock.
//
// Entries are found by a keyed 64-bit hash of the whole token (hash/maphash,
// its seed random per process, so no one can aim tokens at one shard or
// entry) and then compared in full, in time that depends only on the length:
// a token one byte off is a miss, whatever its hash, and a lookup's time tells
// nothing about how much of a cached token a guess got right.
//
// Each of cacheShards shards has its own lock and evicts its least recently
// used entries past its share of the bytes; a hit moves its entry to the
// front, a few pointer writes under a lock the lookup takes anyway.

// cacheShards spreads lookups over locks: with a few cores and tens of
// connections, two requests rarely want the same one.
const cacheShards = 64

// entryOverhead is what an entry costs besides its token and its claims' strings:
// the entry itself, its slot in the shard's map, and the allocator's
// rounding of its string.
const entryOverhead = int64(unsafe.Sizeof(entry{})) + 64

type cache struct {
	seed   maphash.Seed
	shards [cacheShards]shard
}

type shard struct {
	mu           sync.Mutex
	m            map[uint64]*entry
	head, tail   *entry // most and least recently used
	bytes, limit int64
	hits, misses uint64
	// Shards sit side by side: padding keeps two of them off one cache
	// line, so locking one does not slow a core using its neighbour.
	_ [64]byte
}

// entry is a verified token: two objects for the garbage collector to mark
// (the entry and its one string, where the claims' strings and times made
// five), since a million of them are marked on every collection.
type entry struct {
	key uint64
	// s is the token, then the claims' user ID, session ID and username:
	// one allocation, sliced on a hit.
	s                 string
	tok, uid, sid     int32 // lengths of the first three parts of s
	iat, exp, created int64 // the claims' times, unix ns
	from, until       int64 // when it verifies (see verified), unix ns
	size              int64
	prev, next        *entry
}

func (e *entry) claims() Claims {
	u, d := int(e.tok), int(e.tok+e.uid)
	return Claims{UserID: e.s[u:d], SessionID: e.s[d : d+int(e.sid)], Username: e.s[d+int(e.sid):],
		IssuedAt: time.Unix(0, e.iat), ExpiresAt: time.Unix(0, e.exp), AccountCreatedAt: time.Unix(0, e.created)}
}

func newCache(maxBytes int64) *cache {
	if maxBytes <= 0 {
		return nil
	}
	c := &cache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = map[uint64]*entry{}
		c.shards[i].limit = maxBytes / cacheShards
	}
	return c
}

func (c *cache) shard(h uint64) *shard { return &c.shards[h>>(64-6)] }

// get answers for a token that verified before and verifies at now.
func (c *cache) get(token string, now time.Time) (Claims, bool) {
	if c == nil {
		return Claims{}, false
	}
	h := maphash.String(c.seed, token)
	s := c.shard(h)
	s.mu.Lock()
	e := s.m[h]
	t := now.UnixNano()
	if e == nil || !sameToken(e.s[:e.tok], token) || t < e.from {
		s.misses++
		s.mu.Unlock()
		return Claims{}, false
	}
	if t >= e.until {
		// Expired for good: it will never answer again.
		s.remove(e)
		s.misses++
		s.mu.Unlock()
		return Claims{}, false
	}
	s.hits++
	if s.head != e {
		s.unlink(e)
		s.pushFront(e)
	}
	claims := e.claims()
	s.mu.Unlock()
	return claims, true
}

// put remembers a token that verified.
func (c *cache) put(token string, v *verified) {
	if c == nil {
		return
	}
	h := maphash.String(c.seed, token)
	s := c.shard(h)
	size := int64(len(token)+v.size) + entryOverhead
	if size > s.limit {
		return
	}
	cl := v.claims
	for _, t := range []time.Time{cl.IssuedAt, cl.ExpiresAt, cl.AccountCreatedAt, v.from, v.until} {
		if !time.Unix(0, t.UnixNano()).Equal(t) {
			return // past what unix ns hold (years 1678 to 2262): not kept
		}
	}
	// A copy too: the caller's token may be a view of a request buffer.
	e := &entry{key: h, s: token + cl.UserID + cl.SessionID + cl.Username,
		tok: int32(len(token)), uid: int32(len(cl.UserID)), sid: int32(len(cl.SessionID)),
		iat: cl.IssuedAt.UnixNano(), exp: cl.ExpiresAt.UnixNano(), created: cl.AccountCreatedAt.UnixNano(),
		from: v.from.UnixNano(), until: v.until.UnixNano(), size: size}
	s.mu.Lock()
	if old := s.m[h]; old != nil {
		s.remove(old) // the same token verified twice at once, or a collision
	}
	s.m[h] = e
	s.pushFront(e)
	s.bytes += size
	for s.bytes > s.limit {
		s.remove(s.tail)
	}
	s.mu.Unlock()
}

func (s *shard) pushFront(e *entry) {
	e.prev, e.next = nil, s.head
	if s.head != nil {
		s.head.prev = e
	}
	s.head = e
	if s.tail == nil {
		s.tail = e
	}
}

func (s *shard) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		s.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (s *shard) remove(e *entry) {
	s.unlink(e)
	delete(s.m, e.key)
	s.bytes -= e.size
}

// sameToken compares two tokens in time that depends on their length only,
// eight bytes at a time.
func sameToken(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var d uint64
	i := 0
	for ; i+8 <= len(a); i += 8 {
		d |= load64(a, i) ^ load64(b, i)
	}
	for ; i < len(a); i++ {
		d |= uint64(a[i] ^ b[i])
	}
	return d == 0
}

func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// CacheStats are the verified-token cache's counts since start.
type CacheStats struct {
	// Hits are verifications answered from the cache; Misses the others
	// (new, evicted, expired, and invalid tokens).
	Hits, Misses uint64
	// Entries and Bytes are what it holds now; MaxBytes its bound (0: off).
	Entries         int
	Bytes, MaxBytes int64
}

// CacheStats reads the cache's counts; all zero without a cache.
func (t *Tokens) CacheStats() CacheStats {
	var st CacheStats
	if t.cache == nil {
		return st
	}
	for i := range t.cache.shards {
		s := &t.cache.shards[i]
		s.mu.Lock()
		st.Hits += s.hits
		st.Misses += s.misses
		st.Entries += len(s.m)
		st.Bytes += s.bytes
		st.MaxBytes += s.limit
		s.mu.Unlock()
	}
	return st
}
