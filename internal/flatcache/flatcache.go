// Package flatcache is a rueidis.CacheStore, the client-side cache of one
// Redis connection, that keeps its entries where the garbage collector does
// not look: each read is its key, command and reply marshalled
// (RedisMessage.CacheMarshal) into a byte ring mapped outside the Go heap
// (on Linux), found through a map from a keyed 64-bit hash of the key to the
// entry's offset, which holds no pointer. So a million cached session reads
// are nothing for the collector to mark: rueidis's own store keeps, per
// read, a map of its own, a list element, a channel and the reply's strings,
// about 1 KiB and more than ten objects that every collection marks.
//
// It keeps rueidis's semantics: a miss is one read in flight that later
// callers wait for (single flight); a reply is kept until the client-side TTL
// asked for or the key's own expiry, whichever is first; an invalidation
// drops the key's read but not one in flight (its reply, on the same
// connection, comes after the invalidation of any write before it, so it is
// current); a broken connection drops everything and fails the waiters.
//
// What it holds is bounded by CacheSizeEachConn, its ring's size. When the
// ring is full the oldest reads are dropped first, which is what rueidis's
// store does in effect too (it moves a read forward only on every 1,024th hit
// of its key). A hit copies the entry out of the ring before decoding it, so
// the reply a caller holds is never a view of memory a later write reuses.
package flatcache

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/offheap"
)

// shards spread the lock: hits take a shard's read lock, the connection's
// reader its write lock for each reply and invalidation.
const shards = 16

// header is an entry's fixed part, before its key, command and reply:
// size (the whole entry, a multiple of 8), the reply's length, the key's and
// the command's lengths, the key's hash (0: no live entry; hashes are never
// 0) and when the entry stops answering (unix ms).
const header = 32

// minShard keeps a small store's shards able to hold a read or two.
const minShard = 8 << 10

// Store is a CacheStore; see the package comment.
type Store struct {
	seed   maphash.Seed
	shards [shards]shard
	arena  *offheap.Region

	mu      sync.Mutex // guards flights and closed
	flights map[flightKey]*flight
	closed  bool
}

type shard struct {
	mu sync.RWMutex
	// index maps a key's hash to its entry's offset in ring.
	index map[uint64]uint32
	ring  []byte
	// head and tail are where the next entry goes and where the oldest one
	// is, as positions that only grow (the offset is the position modulo
	// len(ring)); head-tail bytes are in use.
	head, tail uint64
}

type flightKey struct{ key, cmd string }

// flight is a read on its way from Redis, which later callers wait for.
type flight struct {
	ch  chan struct{}
	val rueidis.RedisMessage
	err error
	// xat is when the client-side TTL asked for ends (unix ms).
	xat int64
}

func (f *flight) Wait(ctx context.Context) (rueidis.RedisMessage, error) {
	select {
	case <-ctx.Done():
		return rueidis.RedisMessage{}, ctx.Err()
	case <-f.ch:
		return f.val, f.err
	}
}

// New is a rueidis.NewCacheStoreFn.
func New(opt rueidis.CacheStoreOption) rueidis.CacheStore {
	size := max(opt.CacheSizeEachConn/shards, minShard) &^ 7
	s := &Store{seed: maphash.MakeSeed(), flights: map[flightKey]*flight{}}
	// Refused (strict overcommit, and a bound past what is free): a smaller
	// cache rather than none; refused even at the least, none at all (a nil
	// ring keeps nothing, every read a round trip). Close unmaps the rings,
	// and the collector a store dropped without one.
	s.arena = offheap.MapAtMost(s, size*shards, minShard*shards)
	mem := s.arena.Bytes()
	size = len(mem) / shards &^ 7
	for i := range s.shards {
		s.shards[i].index = map[uint64]uint32{}
		if mem != nil {
			s.shards[i].ring = mem[i*size : (i+1)*size : (i+1)*size]
		}
	}
	return s
}

func (s *Store) hash(key string) uint64 {
	return maphash.String(s.seed, key) | 1 // never 0, which marks no entry
}

func (s *Store) shard(h uint64) *shard { return &s.shards[h>>60] }

// Flight answers from the ring, else joins the read in flight, else starts
// one (returning neither a reply nor an entry, so rueidis sends it).
func (s *Store) Flight(key, cmd string, ttl time.Duration, now time.Time) (rueidis.RedisMessage, rueidis.CacheEntry) {
	h := s.hash(key)
	if buf := s.shard(h).get(h, key, cmd, now.UnixMilli()); buf != nil {
		var v rueidis.RedisMessage
		if v.CacheUnmarshalView(buf) == nil {
			return v, nil
		}
	}
	fk := flightKey{key, cmd}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.flights[fk]; f != nil {
		return rueidis.RedisMessage{}, f
	}
	if !s.closed {
		s.flights[fk] = &flight{ch: make(chan struct{}), xat: now.Add(ttl).UnixMilli()}
	}
	return rueidis.RedisMessage{}, nil
}

// Update keeps the reply of a read this store sent, until the client-side
// TTL or the key's expiry, and hands it to the callers waiting for it. It
// returns when the reply stops being served (unix ms).
func (s *Store) Update(key, cmd string, val rueidis.RedisMessage) (pxat int64) {
	fk := flightKey{key, cmd}
	s.mu.Lock()
	f := s.flights[fk]
	delete(s.flights, fk)
	s.mu.Unlock()
	if f == nil {
		return 0 // not ours (or the connection closed meanwhile)
	}
	pxat = val.CachePXAT()
	if pxat <= 0 || f.xat < pxat {
		pxat = f.xat
	}
	h := s.hash(key)
	s.shard(h).put(h, key, cmd, pxat, val.CacheMarshal(nil))
	f.val = val
	close(f.ch)
	return pxat
}

// Cancel fails a read this store sent, and its waiters.
func (s *Store) Cancel(key, cmd string, err error) {
	fk := flightKey{key, cmd}
	s.mu.Lock()
	f := s.flights[fk]
	delete(s.flights, fk)
	s.mu.Unlock()
	if f != nil {
		f.err = err
		close(f.ch)
	}
}

// Delete drops the reads of keys (an invalidation), or of every key when
// keys is nil (a flush), leaving reads in flight alone.
func (s *Store) Delete(keys []rueidis.RedisMessage) {
	if keys == nil {
		for i := range s.shards {
			s.shards[i].flush()
		}
		return
	}
	for _, k := range keys {
		key, err := k.ToString()
		if err != nil {
			continue
		}
		h := s.hash(key)
		s.shard(h).drop(h, key)
	}
}

// Close drops everything and fails the reads in flight: the connection is
// gone, and with it the invalidations that kept the entries true.
func (s *Store) Close(err error) {
	s.mu.Lock()
	flights := s.flights
	s.flights, s.closed = map[flightKey]*flight{}, true
	s.mu.Unlock()
	for i := range s.shards {
		s.shards[i].close()
	}
	s.arena.Free()
	for _, f := range flights {
		f.err = err
		close(f.ch)
	}
}

// get returns a copy of the reply of key's read by cmd, if the ring holds one
// that still answers at now (unix ms).
func (sh *shard) get(h uint64, key, cmd string, now int64) []byte {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	off, ok := sh.index[h]
	if !ok {
		return nil
	}
	e := sh.ring[off:]
	vlen, klen, clen := int(le32(e[4:])), int(le16(e[8:])), int(le16(e[10:]))
	if int64(le64(e[24:])) <= now || klen != len(key) || clen != len(cmd) ||
		string(e[header:header+klen]) != key || string(e[header+klen:header+klen+clen]) != cmd {
		return nil
	}
	v := e[header+klen+clen:]
	return append([]byte(nil), v[:vlen]...)
}

// put writes an entry at the head, dropping the oldest ones to make room;
// one too large for the ring is not kept.
func (sh *shard) put(h uint64, key, cmd string, xat int64, val []byte) {
	n := uint64(header+len(key)+len(cmd)+len(val)+7) &^ 7
	if len(key) > 0xffff || len(cmd) > 0xffff {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	size := uint64(len(sh.ring))
	if n > size/4 { // or no ring: closed
		return
	}
	if rest := size - sh.head%size; rest < n {
		// An entry never wraps: the rest of the ring is skipped, marked as
		// a dead entry of that size.
		sh.reserve(rest)
		e := sh.ring[sh.head%size:]
		put32(e, uint32(rest))
		if rest >= header {
			put64(e[16:], 0)
		}
		sh.head += rest
	}
	sh.reserve(n)
	off := sh.head % size
	e := sh.ring[off : off+n]
	put32(e, uint32(n))
	put32(e[4:], uint32(len(val)))
	put16(e[8:], uint16(len(key)))
	put16(e[10:], uint16(len(cmd)))
	put64(e[16:], h)
	put64(e[24:], uint64(xat))
	b := e[header:]
	b = b[copy(b, key):]
	b = b[copy(b, cmd):]
	copy(b, val)
	sh.index[h] = uint32(off)
	sh.head += n
}

// reserve drops the oldest entries until n bytes are free at the head.
func (sh *shard) reserve(n uint64) {
	size := uint64(len(sh.ring))
	for sh.head+n-sh.tail > size {
		off := sh.tail % size
		e := sh.ring[off:]
		esize := uint64(le32(e))
		if esize >= header {
			if h := le64(e[16:]); h != 0 && sh.index[h] == uint32(off) {
				delete(sh.index, h)
			}
		}
		sh.tail += esize
	}
}

// drop forgets key's entry, if it is key's (not another key's of the same
// hash).
func (sh *shard) drop(h uint64, key string) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	off, ok := sh.index[h]
	if !ok {
		return
	}
	e := sh.ring[off:]
	if klen := int(le16(e[8:])); klen == len(key) && string(e[header:header+klen]) == key {
		delete(sh.index, h)
		put64(e[16:], 0)
	}
}

// close empties the shard and lets go of its ring, which is unmapped next.
func (sh *shard) close() {
	sh.mu.Lock()
	clear(sh.index)
	sh.ring = nil
	sh.head, sh.tail = 0, 0
	sh.mu.Unlock()
}

func (sh *shard) flush() {
	sh.mu.Lock()
	clear(sh.index)
	sh.head, sh.tail = 0, 0
	sh.mu.Unlock()
}

var le = binary.LittleEndian

func le16(b []byte) uint16     { return le.Uint16(b) }
func le32(b []byte) uint32     { return le.Uint32(b) }
func le64(b []byte) uint64     { return le.Uint64(b) }
func put16(b []byte, v uint16) { le.PutUint16(b, v) }
func put32(b []byte, v uint32) { le.PutUint32(b, v) }
func put64(b []byte, v uint64) { le.PutUint64(b, v) }
