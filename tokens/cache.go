package tokens

import (
	"hash/maphash"
	"sync"
	"time"
	"unsafe"

	"github.com/sessiond/sessiond/internal/offheap"
)

// The verified-token cache. A token is immutable and a client sends the same
// one on every request, so once it has passed every check (signature, key,
// algorithm, claims and their types) the answer is remembered: its next use
// costs a hash, a lookup and a comparison, not a signature check and a JSON
// decode. It never replaces the session check, which the caller makes
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
// front, a few writes under a lock the lookup takes anyway.
//
// Nothing in it is a pointer the collector would mark. An entry is one
// record in its shard's ring, which is mapped outside the Go heap
// (internal/offheap), and the shard's index, beside it, maps a token's hash
// to its record's offset. As Go objects, a million entries were two million
// for every collection to mark, spread over 4 KiB pages where nearly every
// lookup missed the TLB. A hit copies the claims' strings out (one
// allocation), since the ring's memory is reused.
//
// Records are written where the ring's head is; eviction is by recency (a
// list through the records), not by place, so to reuse the ring the head
// frees the records ahead of it: an evicted or expired one is dropped, one
// still held moves to the head. The ring keeps room for that (see alloc), so
// a held entry is never dropped to make space.

// cacheShards spreads lookups over locks: with a few cores and tens of
// connections, two requests rarely want the same one.
const cacheShards = 64

// indexCost is what an entry costs in its shard's index: a 16-byte slot,
// and as much again empty, since the index is at most half full (linear
// probing: a lookup reads one or two slots, in one cache line).
const indexCost = 32

// maxRecord is the largest record a shard keeps: a token and its claims'
// strings, a few hundred bytes, fit many times over. A shard smaller than
// 16 records of it keeps records of up to a 16th of its ring.
const maxRecord = 4 << 10

type cache struct {
	seed   maphash.Seed
	shards [cacheShards]shard
	region *offheap.Region // the shards' rings and indexes
}

type shard struct {
	mu sync.Mutex
	// index is an open-addressing table of a token's hash to its record's
	// offset, at most half full: entries of len(index)/2.
	index   []slot
	entries int
	ring    []byte
	// The ring holds the records from tail to head, as positions that only
	// grow (a record is at pos % len(ring)); none wraps past the end.
	head, tail uint64
	// first and last are the most and least recently used records' offsets
	// plus one (0: none).
	first, last uint32
	// biggest is the largest record this shard keeps (maxRecord, or less in
	// a small shard).
	biggest uint32
	// held is the bytes of the held records, at most limit, which leaves the
	// ring the room it needs to move them (see alloc); bound is the shard's
	// share of the cache's bound: its ring (15/16) and its index (1/16).
	held, limit, bound int64
	hits, misses       uint64
	// Shards sit side by side: padding keeps two of them off one cache
	// line, so locking one does not slow a core using its neighbour.
	_ [64]byte
}

// record is an entry's fixed part, at the start of its place in the ring,
// followed by the token, then the claims' user ID, session ID and username.
// Its first 8 bytes (size and held) are also all of a filler, the unused
// end of the ring before a record that would not fit.
type record struct {
	size uint32 // of the record, this header included; a multiple of 8
	held uint32 // 1: in the index and the recency list; 0: dropped, or a filler
	// prev and next are the more and less recently used records' offsets
	// plus one (0: none).
	prev, next          uint32
	key                 uint64
	tok, uid, sid, name uint32 // lengths of the strings after the header
	iat, exp, created   int64  // the claims' times, unix ns
	from, until         int64  // when it verifies (see verified), unix ns
}

const recordHeader = uint32(unsafe.Sizeof(record{}))

// slot is an index entry: 0 in off1 is an empty slot.
type slot struct {
	key  uint64
	off1 uint32 // the record's offset plus one
	_    uint32
}

func newCache(maxBytes int64) *cache {
	if maxBytes <= 0 {
		return nil
	}
	c := &cache{seed: maphash.MakeSeed()}
	// Offsets are 32 bits: at most 4 GiB a shard, 256 GiB in all.
	per := min(maxBytes/cacheShards, 1<<32) &^ 15
	ring := per / 16 * 15 &^ 15
	least := 16 * int64(recordHeader+8)
	if ring < least {
		return c // too small to hold a record: keeps nothing, counts misses
	}
	c.region = offheap.MapAtMost(c, int(per)*cacheShards, int(least)*16/15*cacheShards)
	mem := c.region.Bytes()
	per = int64(len(mem)/cacheShards) &^ 15 // less, if the kernel refused
	ring = per / 16 * 15 &^ 15
	for i := range c.shards {
		s := &c.shards[i]
		if mem == nil {
			continue
		}
		base := int64(i) * per
		s.ring = mem[base : base+ring : base+ring]
		s.index = unsafe.Slice((*slot)(unsafe.Pointer(&mem[base+ring])), (per-ring)/16)
		s.biggest = uint32(min(maxRecord, ring/16)) &^ 7
		s.limit = ring - 6*int64(s.biggest) // see alloc
		s.bound = per
	}
	return c
}

func (c *cache) shard(h uint64) *shard { return &c.shards[h>>(64-6)] }

func (s *shard) rec(off uint32) *record { return (*record)(unsafe.Pointer(&s.ring[off])) }

// str is n bytes of the ring at off, as a string that must not outlive the
// lock held: the ring's memory is reused.
func (s *shard) str(off, n uint32) string {
	return unsafe.String(&s.ring[off], int(n))
}

// get answers for a token that verified before and verifies at now.
func (c *cache) get(token string, now time.Time) (Claims, bool) {
	if c == nil {
		return Claims{}, false
	}
	h := maphash.String(c.seed, token)
	s := c.shard(h)
	s.mu.Lock()
	off, ok := s.lookup(h)
	t := now.UnixNano()
	var r *record
	if ok {
		r = s.rec(off)
	}
	if !ok || int(r.tok) != len(token) || !sameToken(s.str(off+recordHeader, r.tok), token) || t < r.from {
		s.misses++
		s.mu.Unlock()
		return Claims{}, false
	}
	if t >= r.until {
		// Expired for good: it will never answer again.
		s.drop(off)
		s.misses++
		s.mu.Unlock()
		return Claims{}, false
	}
	s.hits++
	if s.first != off+1 {
		s.unlink(off)
		s.pushFront(off)
	}
	// The strings are copied out, in one allocation: the ring's memory is
	// reused once the record is dropped or moved.
	all := string(s.ring[off+recordHeader+r.tok : off+recordHeader+r.tok+r.uid+r.sid+r.name])
	claims := Claims{UserID: all[:r.uid], SessionID: all[r.uid : r.uid+r.sid], Username: all[r.uid+r.sid:],
		IssuedAt: time.Unix(0, r.iat), ExpiresAt: time.Unix(0, r.exp), AccountCreatedAt: time.Unix(0, r.created)}
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
	cl := v.claims
	// Tokens are at most maxTokenLen, so data cannot overflow 32 bits.
	data := len(token) + len(cl.UserID) + len(cl.SessionID) + len(cl.Username)
	size := (recordHeader + uint32(data) + 7) &^ 7
	if size > s.biggest {
		return // also every token of a shard without a ring (biggest 0)
	}
	for _, t := range []time.Time{cl.IssuedAt, cl.ExpiresAt, cl.AccountCreatedAt, v.from, v.until} {
		if !time.Unix(0, t.UnixNano()).Equal(t) {
			return // past what unix ns hold (years 1678 to 2262): not kept
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.lookup(h); ok {
		s.drop(old) // the same token verified twice at once, or a collision
	}
	for s.held+int64(size) > s.limit || s.entries >= len(s.index)/2 {
		s.drop(s.last - 1)
	}
	off := s.alloc(size)
	r := s.rec(off)
	*r = record{size: size, held: 1, key: h,
		tok: uint32(len(token)), uid: uint32(len(cl.UserID)), sid: uint32(len(cl.SessionID)), name: uint32(len(cl.Username)),
		iat: cl.IssuedAt.UnixNano(), exp: cl.ExpiresAt.UnixNano(), created: cl.AccountCreatedAt.UnixNano(),
		from: v.from.UnixNano(), until: v.until.UnixNano()}
	at := off + recordHeader
	for _, p := range []string{token, cl.UserID, cl.SessionID, cl.Username} {
		at += uint32(copy(s.ring[at:], p))
	}
	i, _ := s.find(h)
	s.index[i] = slot{key: h, off1: off + 1}
	s.entries++
	s.pushFront(off)
	s.held += int64(size)
}

// alloc makes room for n bytes (at most biggest) at the ring's head and
// returns its offset. Records ahead of the head are freed first: dropped ones
// are skipped, held ones moved to the head (their recency unchanged).
//
// Why this ends without dropping a held record: the held records take at
// most limit = len(ring) - 6*biggest bytes, and a call that returns leaves
// at least 3*biggest free. Moving a record frees as much as it takes; a
// filler (the ring's end skipped, less than biggest) is written only when
// the head crosses the end, at most once in a call, since the head moves
// less than a lap in one (the held records moved, n, and the filler). So
// the room never falls below 2*biggest, enough for a record and a filler.
// Within a lap of the tail, every dropped record and filler ahead of it is
// freed, and what remains taken is the held records and that filler: at
// least 5*biggest is free, enough for n and the 3*biggest left for the next
// call.
func (s *shard) alloc(n uint32) uint32 {
	size := uint64(len(s.ring))
	reserve := 3 * uint64(s.biggest)
	for {
		free := size - (s.head - s.tail)
		end := size - s.head%size
		switch {
		case end < uint64(n) && end <= free:
			// A record never wraps: the rest of the lap is a filler.
			s.setFiller(uint32(s.head%size), uint32(end))
			s.head += end
		case uint64(n) <= end && uint64(n)+reserve <= free:
			off := uint32(s.head % size)
			s.head += uint64(n)
			return off
		case s.head == s.tail:
			panic("tokens: the token cache's ring is full of held records") // see above: cannot happen
		default:
			off := uint32(s.tail % size)
			sz, held := s.header(off)
			if held {
				s.move(off, sz)
			}
			s.tail += uint64(sz)
		}
	}
}

// move copies the held record at off, of sz bytes, to the head, where there
// is room (see alloc), and points its index slot and neighbours at it.
func (s *shard) move(off, sz uint32) {
	size := uint64(len(s.ring))
	if end := size - s.head%size; end < uint64(sz) {
		s.setFiller(uint32(s.head%size), uint32(end))
		s.head += end
	}
	to := uint32(s.head % size)
	s.head += uint64(sz)
	copy(s.ring[to:to+sz], s.ring[off:off+sz])
	s.rec(off).held = 0
	r := s.rec(to)
	i, _ := s.find(r.key)
	s.index[i].off1 = to + 1
	if r.prev != 0 {
		s.rec(r.prev - 1).next = to + 1
	} else {
		s.first = to + 1
	}
	if r.next != 0 {
		s.rec(r.next - 1).prev = to + 1
	} else {
		s.last = to + 1
	}
}

// header reads the size and held flag of the record or filler at off: a
// filler may be shorter than a record's header.
func (s *shard) header(off uint32) (size uint32, held bool) {
	p := (*[2]uint32)(unsafe.Pointer(&s.ring[off]))
	return p[0], p[1] == 1
}

func (s *shard) setFiller(off, n uint32) {
	p := (*[2]uint32)(unsafe.Pointer(&s.ring[off]))
	p[0], p[1] = n, 0
}

func (s *shard) pushFront(off uint32) {
	r := s.rec(off)
	r.prev, r.next = 0, s.first
	if s.first != 0 {
		s.rec(s.first - 1).prev = off + 1
	}
	s.first = off + 1
	if s.last == 0 {
		s.last = off + 1
	}
}

func (s *shard) unlink(off uint32) {
	r := s.rec(off)
	if r.prev != 0 {
		s.rec(r.prev - 1).next = r.next
	} else {
		s.first = r.next
	}
	if r.next != 0 {
		s.rec(r.next - 1).prev = r.prev
	} else {
		s.last = r.prev
	}
	r.prev, r.next = 0, 0
}

// drop forgets the held record at off; its bytes are freed when the head
// comes to them.
func (s *shard) drop(off uint32) {
	s.unlink(off)
	r := s.rec(off)
	i, _ := s.find(r.key)
	s.unindex(i)
	s.entries--
	r.held = 0
	s.held -= int64(r.size)
}

// find is the slot of key h in the index, or the empty slot where it goes.
// The index is at most half full, so there is always an empty one.
func (s *shard) find(h uint64) (int, bool) {
	for i := s.home(h); ; i++ {
		if i == len(s.index) {
			i = 0
		}
		switch sl := &s.index[i]; {
		case sl.off1 == 0:
			return i, false
		case sl.key == h:
			return i, true
		}
	}
}

func (s *shard) lookup(h uint64) (uint32, bool) {
	if len(s.index) == 0 {
		return 0, false
	}
	i, ok := s.find(h)
	return s.index[i].off1 - 1, ok
}

// home is where key h's probe starts: the hash's low half scaled to the
// table (its top bits chose the shard).
func (s *shard) home(h uint64) int {
	return int(uint64(uint32(h)) * uint64(len(s.index)) >> 32)
}

// unindex empties slot i, moving back the slots after it that would
// otherwise no longer be found from their home (deletion in linear probing,
// without tombstones).
func (s *shard) unindex(i int) {
	n := len(s.index)
	for {
		s.index[i] = slot{}
		j := i
		for {
			if j++; j == n {
				j = 0
			}
			if s.index[j].off1 == 0 {
				return
			}
			// Slot j may fill i unless its home is after i, up to j.
			k := s.home(s.index[j].key)
			if i <= j && (k <= i || k > j) || i > j && k <= i && k > j {
				break
			}
		}
		s.index[i] = s.index[j]
		i = j
	}
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
	// Entries and Bytes are what it holds now (records and index slots);
	// MaxBytes its bound (0: off).
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
		st.Entries += s.entries
		st.Bytes += s.held + int64(s.entries)*indexCost
		st.MaxBytes += s.bound
		s.mu.Unlock()
	}
	return st
}
