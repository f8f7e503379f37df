package flatcache_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/flatcache"
	"github.com/sessiond/sessiond/internal/redistest"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

// Through rueidis against a real redis-server, as the service reads: the
// second read is a hit with the same reply, a write elsewhere invalidates it
// within a round trip, and the next read has the new value.
func TestReadsAreCachedUntilTheKeyChanges(t *testing.T) {
	srv.RequireReal(t, "client-side caching needs CLIENT TRACKING")
	// One connection, as the service has (redisx.NewClient): the
	// invalidation comes on the connection that read, before later replies.
	opt := srv.Options()
	opt.PipelineMultiplex = -1
	c, err := rueidis.NewClient(opt)
	must(t, err)
	t.Cleanup(c.Close)
	other := srv.Client(t)
	ctx := context.Background()
	key := redistest.Prefix(t) + "h"
	must(t, other.Do(ctx, other.B().Hset().Key(key).FieldValue().FieldValue("role", "admin").FieldValue("n", "7").Build()).Error())
	must(t, other.Do(ctx, other.B().Expire().Key(key).Seconds(3600).Build()).Error())
	read := func() (role string, hit bool) {
		t.Helper()
		r := c.DoCache(ctx, c.B().Hmget().Key(key).Field("role", "n", "missing").Cache(), time.Minute)
		vals, err := r.ToArray()
		if err != nil || len(vals) != 3 || !vals[2].IsNil() {
			t.Fatalf("HMGET through the cache: %v, %v", vals, err)
		}
		role, _ = vals[0].ToString()
		return role, r.IsCacheHit()
	}
	if role, hit := read(); hit || role != "admin" {
		t.Fatalf("first read: %q, hit %v; want admin from Redis", role, hit)
	}
	for range 3 {
		if role, hit := read(); !hit || role != "admin" {
			t.Fatalf("read again: %q, hit %v; want admin from the cache", role, hit)
		}
	}
	must(t, other.Do(ctx, other.B().Hset().Key(key).FieldValue().FieldValue("role", "user").Build()).Error())
	// The invalidation comes on c's connection; a round trip on it is after it.
	must(t, c.Do(ctx, c.B().Ping().Build()).Error())
	if role, hit := read(); hit || role != "user" {
		t.Fatalf("read after a write: %q, hit %v; want user from Redis", role, hit)
	}
	if role, hit := read(); !hit || role != "user" {
		t.Fatalf("and again: %q, hit %v; want user from the cache", role, hit)
	}
}

// replies are real RedisMessages (HMGET replies of n keys), to hand to a
// store directly.
func replies(t *testing.T, n int) []rueidis.RedisMessage {
	t.Helper()
	c := srv.Client(t)
	ctx := context.Background()
	p := redistest.Prefix(t)
	cmds := make(rueidis.Commands, 0, n)
	for i := range n {
		cmds = append(cmds, c.B().Hset().Key(fmt.Sprintf("%sk%d", p, i)).FieldValue().FieldValue("v", fmt.Sprint(i)).Build())
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		must(t, r.Error())
	}
	cmds = cmds[:0]
	for i := range n {
		cmds = append(cmds, c.B().Hmget().Key(fmt.Sprintf("%sk%d", p, i)).Field("v").Build())
	}
	out := make([]rueidis.RedisMessage, n)
	for i, r := range c.DoMulti(ctx, cmds...) {
		v, err := r.ToMessage()
		must(t, err)
		out[i] = v
	}
	return out
}

func value(t *testing.T, v rueidis.RedisMessage) string {
	t.Helper()
	vals, err := v.ToArray()
	if err != nil || len(vals) != 1 {
		t.Fatalf("reply %v: %v", vals, err)
	}
	s, _ := vals[0].ToString()
	return s
}

// fill reads key i as rueidis does on a miss: Flight, then Update.
func fill(t *testing.T, s rueidis.CacheStore, i int, v rueidis.RedisMessage, now time.Time) {
	t.Helper()
	key := fmt.Sprintf("key-%d", i)
	if got, e := s.Flight(key, "HMGETv", time.Minute, now); got.IsCacheHit() || e != nil {
		t.Fatalf("key %d: a first read should be a miss with no one to wait for", i)
	}
	s.Update(key, "HMGETv", v)
}

// lookup is key i's cached value, or "" on a miss.
func lookup(t *testing.T, s rueidis.CacheStore, i int, now time.Time) string {
	t.Helper()
	key := fmt.Sprintf("key-%d", i)
	v, e := s.Flight(key, "HMGETv", time.Minute, now)
	if e != nil {
		t.Fatalf("key %d: a read in flight where none was started", i)
	}
	if !v.IsCacheHit() {
		s.Cancel(key, "HMGETv", errors.New("test: not read"))
		return ""
	}
	return value(t, v)
}

// A miss starts one read; others wait for it and get its reply (or its
// error), and the reply is then a hit.
func TestOneReadInFlight(t *testing.T) {
	rs := replies(t, 1)
	s := flatcache.New(rueidis.CacheStoreOption{CacheSizeEachConn: 1 << 20})
	now := time.Now()
	if _, e := s.Flight("k", "HMGETv", time.Minute, now); e != nil {
		t.Fatal("first miss: an entry to wait on; want none (the caller reads)")
	}
	var waiters []rueidis.CacheEntry
	for range 3 {
		_, e := s.Flight("k", "HMGETv", time.Minute, now)
		if e == nil {
			t.Fatal("a miss while the read is in flight: no entry to wait on")
		}
		waiters = append(waiters, e)
	}
	s.Update("k", "HMGETv", rs[0])
	for _, e := range waiters {
		v, err := e.Wait(context.Background())
		if err != nil || value(t, v) != "0" {
			t.Fatalf("waiter got %v, %v; want the reply", v, err)
		}
	}
	if got := lookup(t, s, -1, now); got != "" {
		t.Fatalf("another key: %q, want a miss", got)
	}
	if v, _ := s.Flight("k", "HMGETv", time.Minute, now); !v.IsCacheHit() || value(t, v) != "0" {
		t.Fatalf("after the reply: %v, want a hit", v)
	}
	if v, _ := s.Flight("k", "HMGETother", time.Minute, now); v.IsCacheHit() {
		t.Fatal("another command on the key answered from the first's reply")
	}

	boom := errors.New("boom")
	_, _ = s.Flight("k2", "HMGETv", time.Minute, now)
	_, e := s.Flight("k2", "HMGETv", time.Minute, now)
	s.Cancel("k2", "HMGETv", boom)
	if _, err := e.Wait(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("waiter of a failed read: %v, want its error", err)
	}
	if _, e := s.Flight("k2", "HMGETv", time.Minute, now); e != nil {
		t.Fatal("after a failed read: still in flight")
	}
}

// A reply answers until the client-side TTL asked for, or the key's own
// expiry in Redis when that is sooner.
func TestRepliesEnd(t *testing.T) {
	srv.RequireReal(t, "client-side caching needs CLIENT TRACKING")
	rs := replies(t, 1)
	s := flatcache.New(rueidis.CacheStoreOption{CacheSizeEachConn: 1 << 20})
	now := time.Now()
	fill(t, s, 0, rs[0], now)
	if lookup(t, s, 0, now.Add(59*time.Second)) != "0" {
		t.Fatal("a reply within its TTL missed")
	}
	if lookup(t, s, 0, now.Add(time.Minute)) != "" {
		t.Fatal("a reply answered at the end of its TTL")
	}

	c := srv.Client(t)
	ctx := context.Background()
	key := redistest.Prefix(t) + "short"
	must(t, c.Do(ctx, c.B().Hset().Key(key).FieldValue().FieldValue("v", "x").Build()).Error())
	must(t, c.Do(ctx, c.B().Pexpire().Key(key).Milliseconds(300).Build()).Error())
	if r := c.DoCache(ctx, c.B().Hmget().Key(key).Field("v").Cache(), time.Hour); r.Error() != nil {
		t.Fatal(r.Error())
	}
	if r := c.DoCache(ctx, c.B().Hmget().Key(key).Field("v").Cache(), time.Hour); !r.IsCacheHit() {
		t.Fatal("the second read of a key with 300 ms to live missed")
	}
	time.Sleep(400 * time.Millisecond)
	if r := c.DoCache(ctx, c.B().Hmget().Key(key).Field("v").Cache(), time.Hour); r.IsCacheHit() {
		t.Fatal("a read answered from the cache past the key's expiry")
	}
}

// The ring is bounded: past its size the oldest replies go, the newest stay,
// and every hit, across many wraps, is its own key's reply, intact.
func TestBoundedOldestGoFirst(t *testing.T) {
	const n = 20000
	rs := replies(t, n)
	s := flatcache.New(rueidis.CacheStoreOption{CacheSizeEachConn: 256 << 10})
	now := time.Now()
	for i := range n {
		fill(t, s, i, rs[i], now)
		// The newest is always there, and right.
		if got := lookup(t, s, i, now); got != fmt.Sprint(i) {
			t.Fatalf("key %d just written: %q", i, got)
		}
	}
	hits := 0
	for i := range n {
		switch got := lookup(t, s, i, now); got {
		case "":
		case fmt.Sprint(i):
			hits++
		default:
			t.Fatalf("key %d answered %q", i, got)
		}
	}
	// About 80 bytes an entry in 256 KiB: far fewer than n, but thousands.
	if hits < 2000 || hits > n/2 {
		t.Fatalf("%d of %d replies kept in 256 KiB; want the newest few thousand", hits, n)
	}
	if lookup(t, s, 0, now) != "" || lookup(t, s, n-1, now) != fmt.Sprint(n-1) {
		t.Fatal("the oldest kept or the newest dropped")
	}
}

// A reply a caller holds stays intact when the ring's memory is reused.
func TestHeldReplyIsACopy(t *testing.T) {
	// 20,000 replies of about 80 bytes through 128 KiB (16 shards of 8 KiB):
	// key-0's shard is written over many times, whatever shard it hashes to.
	rs := replies(t, 20000)
	s := flatcache.New(rueidis.CacheStoreOption{CacheSizeEachConn: 128 << 10})
	now := time.Now()
	fill(t, s, 0, rs[0], now)
	held, _ := s.Flight("key-0", "HMGETv", time.Minute, now)
	for i := 1; i < len(rs); i++ {
		fill(t, s, i, rs[i], now)
	}
	if lookup(t, s, 0, now) != "" {
		t.Fatal("the ring did not wrap: the test proves nothing")
	}
	if got := value(t, held); got != "0" {
		t.Fatalf("a held reply became %q after its memory was reused", got)
	}
}

// An invalidation drops the key's reply; a flush or a closed connection
// drops all, and closing fails the reads in flight.
func TestDeleteAndClose(t *testing.T) {
	rs := replies(t, 3)
	s := flatcache.New(rueidis.CacheStoreOption{CacheSizeEachConn: 1 << 20})
	now := time.Now()
	for i := range 3 {
		fill(t, s, i, rs[i], now)
	}
	c := srv.Client(t)
	name, err := c.Do(context.Background(), c.B().Echo().Message("key-1").Build()).ToMessage()
	must(t, err)
	s.Delete([]rueidis.RedisMessage{name})
	if lookup(t, s, 0, now) != "0" || lookup(t, s, 1, now) != "" || lookup(t, s, 2, now) != "2" {
		t.Fatal("an invalidation of key-1 dropped another key's reply or kept its own")
	}
	s.Delete(nil)
	if lookup(t, s, 0, now) != "" || lookup(t, s, 2, now) != "" {
		t.Fatal("a flush kept replies")
	}
	fill(t, s, 0, rs[0], now)
	_, _ = s.Flight("k", "HMGETv", time.Minute, now)
	_, e := s.Flight("k", "HMGETv", time.Minute, now)
	gone := errors.New("connection closed")
	s.Close(gone)
	if _, err := e.Wait(context.Background()); !errors.Is(err, gone) {
		t.Fatalf("a waiter when the connection closed: %v, want its error", err)
	}
	if v, e := s.Flight("key-0", "HMGETv", time.Minute, now); v.IsCacheHit() || e != nil {
		t.Fatal("a closed store still answers, or starts reads")
	}
}

// What the store holds is a few objects, however many replies: nothing for
// the garbage collector to mark one by one.
func TestRepliesAreNotObjects(t *testing.T) {
	const n = 50000
	rs := replies(t, 1)
	s := flatcache.New(rueidis.CacheStoreOption{CacheSizeEachConn: 64 << 20})
	now := time.Now()
	before := afterGC().HeapObjects
	for i := range n {
		fill(t, s, i, rs[0], now)
	}
	grew := int64(afterGC().HeapObjects) - int64(before)
	if grew > n/100 {
		t.Fatalf("%d replies kept added %d heap objects; want a handful", n, grew)
	}
	if lookup(t, s, 0, now) != "0" || lookup(t, s, n-1, now) != "0" {
		t.Fatal("the replies are not there")
	}
	runtime.KeepAlive(s)
}

// Hits, misses, replies and invalidations at once (go test -race).
func TestConcurrent(t *testing.T) {
	rs := replies(t, 64)
	s := flatcache.New(rueidis.CacheStoreOption{CacheSizeEachConn: 64 << 10})
	now := time.Now()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for j := range 2000 {
				i := (g*7 + j) % len(rs)
				key := fmt.Sprintf("key-%d", i)
				v, e := s.Flight(key, "HMGETv", time.Minute, now)
				switch {
				case v.IsCacheHit():
					if got := value(t, v); got != fmt.Sprint(i) {
						t.Errorf("key %d answered %q", i, got)
						return
					}
				case e != nil:
					if v, err := e.Wait(context.Background()); err == nil && value(t, v) != fmt.Sprint(i) {
						t.Errorf("key %d's waiter got %q", i, value(t, v))
						return
					}
				default:
					s.Update(key, "HMGETv", rs[i])
				}
				if j%97 == 0 {
					s.Delete(nil)
				}
			}
		})
	}
	wg.Wait()
}

// afterGC is the heap's figures once a collection has run.
func afterGC() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A store's bound is memory it may use, not memory it takes: a CLIENT_CACHE_MB
// of a gigabyte costs neither the Go heap nor, until reads fill it, the
// process's memory.
func TestTheBoundIsNotTakenUpFront(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the ring is mapped outside the Go heap on Linux only")
	}
	before := afterGC().HeapSys
	s := flatcache.New(rueidis.CacheStoreOption{CacheSizeEachConn: 1 << 30})
	rs := replies(t, 1)
	fill(t, s, 0, rs[0], time.Now())
	if grew := int64(afterGC().HeapSys) - int64(before); grew > 64<<20 {
		t.Fatalf("a 1 GiB store grew the Go heap by %d MiB", grew>>20)
	}
	if lookup(t, s, 0, time.Now()) != "0" {
		t.Fatal("the reply is not there")
	}
	s.Close(errors.New("done"))
}

// A session read as the service makes it (sessions.useFields: eight
// two-letter fields, four of them set, under a key of the default layout)
// costs 280 bytes of ring: the figure the README's plan and the use memo's
// sizing (server.sessionReadBytes, 320 with the index) are made of.
func TestASessionReadIs280Bytes(t *testing.T) {
	srv.RequireReal(t, "client-side caching needs CLIENT TRACKING")
	var stores []rueidis.CacheStore
	opt := srv.Options()
	opt.PipelineMultiplex = -1
	opt.NewCacheStoreFn = func(o rueidis.CacheStoreOption) rueidis.CacheStore {
		st := flatcache.New(o)
		stores = append(stores, st)
		return st
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	key := "sessiond:sess:{0b7c6f4e-2a61-4a53-9d43-0c5b3d2f8e11}:5d2e7c1a-9b3f-4e2d-8a6c-1f0e9d8c7b6a"
	ms, sec := strconv.FormatInt(time.Now().UnixMilli(), 10), strconv.FormatInt(time.Now().Unix(), 10)
	if err := c.Do(ctx, c.B().Hset().Key(key).FieldValue().FieldValue("ls", ms).FieldValue("ea", sec).
		FieldValue("ca", sec).FieldValue("he", ms).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Expire().Key(key).Seconds(3600).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.DoCache(ctx, c.B().Hmget().Key(key).Field("ls", "ea", "rl", "ca", "al", "am", "at", "he").Cache(), time.Minute).Error(); err != nil {
		t.Fatal(err)
	}
	var used uint64
	for _, st := range stores {
		used += flatcache.RingBytes(st)
	}
	if used != 280 {
		t.Fatalf("a session read took %d bytes of ring; the plan and the memo's sizing say 280", used)
	}
}

// rss is this process's resident anonymous memory, from /proc.
func rss(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Skip("no RssAnon")
	return 0
}

// The kernel commits the ring's pages as entries are written, not when the
// store is made: a 1 GiB bound costs little until reads fill it.
func TestTheRingIsCommittedAsItFills(t *testing.T) {
	before := rss(t)
	s := flatcache.New(rueidis.CacheStoreOption{CacheSizeEachConn: 1 << 30})
	defer s.Close(nil)
	if grew := rss(t) - before; grew > 64<<20 {
		t.Fatalf("a 1 GiB store took %d MiB of memory before holding anything", grew>>20)
	}
}

// A bound past the machine's memory is taken as a bound, not refused: the
// store still caches (CLIENT_CACHE_MB goes up to a terabyte).
func TestABoundPastMemoryStillCaches(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the ring is mapped on Linux only")
	}
	if mode, _ := os.ReadFile("/proc/sys/vm/overcommit_memory"); strings.TrimSpace(string(mode)) == "2" {
		t.Skip("strict overcommit (vm.overcommit_memory=2) refuses any mapping past memory")
	}
	rs := replies(t, 1)
	s := flatcache.New(rueidis.CacheStoreOption{CacheSizeEachConn: 1 << 40})
	defer s.Close(nil)
	fill(t, s, 0, rs[0], time.Now())
	if lookup(t, s, 0, time.Now()) != "0" {
		t.Fatal("a 1 TiB store cached nothing")
	}
}
