package sessions

import (
	"context"
	"errors"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/offheap"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/scripts"
)

// Recording use (the touch) off the request path. A session in use is due a
// touch once per touch interval; with a million sessions each asked for less
// often than that, nearly every request is due one. So a request that finds
// its session due only notes it, and answers: the touches are written in
// batches (one pipeline, as many as queued within touchGather and while the
// last batch was in flight), into the user's use hash beside the session
// hash, so they do not invalidate anyone's cached read of the session hash
// either. What decides access is the read; a touch that fails costs the
// session only its last-use record, and its next request tries again.
//
// Most touches are plain writes: the use record, and the use hash's expiry
// moved on (HSET, PEXPIREAT NX, PEXPIREAT GT). At a million sessions a
// touch cost Redis 7 to 10 µs of CPU, against about 23 µs when every one was
// touch.lua, which is kept for the touches that need its checks: the first this replica writes for a session (another replica may
// have recorded a later use, which the script keeps and reports, so the
// replicas of a session in use write about once an interval between them,
// not once each), and any that must rewrite the session hash to make it
// outlive the session's new end (once per slack). A plain write never
// touches the session hash or its index, so it cannot resurrect a revoked
// session either; landing just after a revocation, it leaves a use record
// without a session, which goes with the use hash or at the user's next
// sign-in (create.lua).

// maxQueuedTouches bounds the touches waiting to be written: a Redis that
// does not answer cannot make the queue grow past it. Only requests with a
// live session add to it, at most one per session per touch interval.
const maxQueuedTouches = 1 << 16

// maxTouchBatch is the most touches one pipeline carries; touchGather is
// how long a smaller batch waits for more. Use is recorded that much later,
// and List waits that much longer for this replica's.
const (
	maxTouchBatch = 512
	touchGather   = 2 * time.Millisecond
)

type touchReq struct {
	uid, sid, ip string
	now          time.Time
	// ends is when the session ends once this use is recorded (unix ms).
	ends int64
	// plain: a use record is all this touch needs written (no script).
	plain bool
}

// toucher writes queued touches: one goroutine while any are queued, none
// when none are.
type toucher struct {
	s       *Store
	mu      sync.Mutex
	queued  []touchReq
	running bool
	// cycle is closed, and replaced, each time a batch has been written and
	// when the writer stops: what wait waits on.
	cycle chan struct{}
}

// add queues a touch; false when the queue is full.
func (t *toucher) add(r touchReq) bool {
	t.mu.Lock()
	if len(t.queued) >= maxQueuedTouches {
		t.mu.Unlock()
		return false
	}
	t.queued = append(t.queued, r)
	start := !t.running
	if start {
		t.running = true
		t.cycle = make(chan struct{})
	}
	t.mu.Unlock()
	if start {
		go t.run()
	}
	return true
}

func (t *toucher) run() {
	for {
		t.mu.Lock()
		n := len(t.queued)
		t.mu.Unlock()
		if n < maxTouchBatch {
			// Let a batch gather: one pipeline of many costs Redis and this
			// process far fewer system calls than as many of one or two.
			time.Sleep(touchGather)
		}
		t.mu.Lock()
		batch := t.queued
		if len(batch) > maxTouchBatch {
			batch, t.queued = batch[:maxTouchBatch:maxTouchBatch], batch[maxTouchBatch:]
		} else {
			t.queued = nil
		}
		if len(batch) == 0 {
			t.running = false
			close(t.cycle)
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
		t.s.write(batch)
		t.mu.Lock()
		close(t.cycle)
		t.cycle = make(chan struct{})
		t.mu.Unlock()
	}
}

// wait returns once every touch queued before it was called has been
// written (or has failed), or ctx ends.
func (t *toucher) wait(ctx context.Context) error {
	// A touch queued before the call is in the batch being written or in
	// the queue, which a later batch takes: each batch of at most
	// maxTouchBatch, so as many cycles as the queue holds batches, plus one.
	t.mu.Lock()
	n := len(t.queued)/maxTouchBatch + 2
	t.mu.Unlock()
	for range n {
		t.mu.Lock()
		if !t.running {
			t.mu.Unlock()
			return nil
		}
		ch := t.cycle
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// write runs a batch of touches in one pipeline: the plain writes, and one
// script for each of the rest; and notes in the memo what each found.
func (s *Store) write(batch []touchReq) {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	var plain []touchReq
	var cmds rueidis.Commands
	var execs []rueidis.LuaExec
	var scripted []touchReq
	idle, every, slack := millis(s.o.IdleTimeout), millis(s.touch), millis(s.slack())
	for _, r := range batch {
		switch {
		case s.revokedHere(r.uid, r.sid):
			// Revoked here since its request: nothing to record.
			s.used.forget(r.uid, r.sid)
		case r.plain:
			plain = append(plain, r)
			use := s.k.SessionUses(r.uid)
			// A use hash has no expiry only when this HSET made it (NX);
			// else its expiry moves on only to a later end (GT).
			cmds = append(cmds,
				s.c.B().Hset().Key(use).FieldValue().FieldValue(r.sid, ms(r.now)+" "+r.ip).Build(),
				s.c.B().Pexpireat().Key(use).MillisecondsTimestamp(r.ends).Nx().Build(),
				s.c.B().Pexpireat().Key(use).MillisecondsTimestamp(r.ends).Gt().Build())
		default:
			scripted = append(scripted, r)
			execs = append(execs, rueidis.LuaExec{
				Keys: []string{s.k.Session(r.uid, r.sid), s.k.SessionIndex(r.uid), s.k.SessionUses(r.uid)},
				Args: []string{ms(r.now), idle, r.ip, r.sid, every, slack},
			})
		}
	}
	// Both are sent at once; rueidis pipelines them on its connections.
	var plainRes []rueidis.RedisResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		if len(cmds) > 0 {
			plainRes = s.c.DoMulti(ctx, cmds...)
		}
	}()
	var scriptRes []rueidis.RedisResult
	if len(execs) > 0 {
		scriptRes = scripts.Touch.ExecMulti(ctx, s.c, execs...)
	}
	<-done

	var failed int
	var ferr error
	fail := func(r touchReq, err error) {
		if redisx.IsOOM(err) {
			// The first write is the one refused: nothing was written.
			s.touchRefusedOOM(err)
		} else {
			failed, ferr = failed+1, err
		}
		s.used.forget(r.uid, r.sid)
	}
	for i, r := range plain {
		if err := firstErr(plainRes[3*i : 3*i+3]); err != nil {
			fail(r, err)
			continue
		}
		s.used.note(r.uid, r.sid, r.now.UnixMilli())
		s.plainTouches.Add(1)
	}
	for i, r := range scripted {
		last, err := scriptRes[i].AsInt64()
		switch {
		case err != nil:
			fail(r, err)
		case last == 0:
			s.used.forget(r.uid, r.sid) // gone: revoked meanwhile
		default:
			s.used.note(r.uid, r.sid, last)
			s.scriptTouches.Add(1)
		}
	}
	if failed > 0 {
		s.touchFailed(failed, ferr)
	}
}

// Touches are how many uses of sessions this Store recorded: plain writes
// of the use record alone, and touch.lua's (which includes those that found
// a use recorded within the interval and wrote nothing).
func (s *Store) Touches() (plain, scripted int64) {
	return s.plainTouches.Load(), s.scriptTouches.Load()
}

// firstErr is the first error among results, nil if none.
func firstErr(res []rueidis.RedisResult) error {
	for _, r := range res {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// touchFailed counts touches that failed for another reason than memory and
// logs them at most once per touchRefusedLogEvery.
func (s *Store) touchFailed(n int, err error) {
	s.o.Metrics.TouchFailed(n)
	if s.o.Log == nil {
		return
	}
	if total, due := s.failedLog.add(int64(n)); due {
		s.o.Log.Warn("could not record sessions' use; requests are served, and each session's next request tries again",
			"failed_touches", total, "err", err)
	}
}

// Flush returns once every touch this Store queued before the call has been
// written to Redis (or has failed), or ctx ends: for a read that must see
// this replica's own recent use (List), and for shutting down without
// losing it.
func (s *Store) Flush(ctx context.Context) error { return s.touches.wait(ctx) }

// flushWithin flushes for at most the Redis timeout; a read or write that
// follows it gets a timeout of its own. A flush that does not finish only
// leaves that read on older figures.
func (s *Store) flushWithin(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	_ = s.Flush(ctx)
}

// slack is how much longer than a session's end its hash may live: a session
// in use rewrites its hash once per slack (touch.lua). A quarter of the idle
// timeout, so at least the touch interval; an unused session's hash and index
// entry stay that much longer in Redis, but it answers as gone from its end.
func (s *Store) slack() time.Duration { return s.o.IdleTimeout / 4 }

// useMemo remembers, per session this replica has seen, the last use it
// knows was recorded (written by its touch, or found by one): a session's
// hash holds its use only as of its last rewrite, so without the memo each
// of its requests would find it due. It decides only whether to queue a
// touch, and whether that can be a plain write, never whether a session is
// live. Every request due by its hash asks it, so it is one lookup in a
// table of 64-byte buckets (a cache line) of four sessions each, found by a
// keyed 64-bit hash of the session and told apart by all of it; a session
// that finds its bucket full takes the place of the one used longest ago.
// Nothing in it is a pointer, so the garbage collector never scans it,
// whatever its size.
type useMemo struct {
	seed    maphash.Seed
	mask    uint64
	buckets []memoBucket
	locks   [256]sync.Mutex // bucket i is guarded by locks[i%256]
}

type memoBucket [4]memoSlot

type memoSlot struct {
	h  uint64 // 0: empty
	ms int64
}

// newUseMemo holds about entries sessions, with room to spare so that few
// take another's place: two slots each, 32 bytes a session. The table is
// outside the Go heap (internal/offheap): a million sessions' is 32 MB read
// at random, on huge pages where the kernel gives them.
func newUseMemo(entries int) *useMemo {
	n := 1024
	for n*4 < 2*entries {
		n *= 2
	}
	m := &useMemo{seed: maphash.MakeSeed()}
	const bucket = int(unsafe.Sizeof(memoBucket{}))
	if r := offheap.MapAtMost(m, n*bucket, 1024*bucket); r != nil {
		mem := r.Bytes() // a power of two buckets, as n was
		n = len(mem) / bucket
		m.buckets = unsafe.Slice((*memoBucket)(unsafe.Pointer(unsafe.SliceData(mem))), n)
	} else {
		n = 1024
		m.buckets = make([]memoBucket, n)
	}
	m.mask = uint64(n - 1)
	return m
}

// find returns a session's hash and bucket, locked.
func (m *useMemo) find(uid, sid string) (uint64, *memoBucket, *sync.Mutex) {
	var hh maphash.Hash
	hh.SetSeed(m.seed)
	hh.WriteString(uid)
	hh.WriteByte(0)
	hh.WriteString(sid)
	h := max(hh.Sum64(), 1) // never 0, the empty slot
	i := h & m.mask
	mu := &m.locks[i%uint64(len(m.locks))]
	mu.Lock()
	return h, &m.buckets[i], mu
}

// last is the last recorded use of a session this replica knows (unix ms), 0 if none.
func (m *useMemo) last(uid, sid string) int64 {
	h, b, mu := m.find(uid, sid)
	defer mu.Unlock()
	for _, e := range b {
		if e.h == h {
			return e.ms
		}
	}
	return 0
}

// note records a session's last recorded use (unix ms): the time of a
// touch when it is queued, then what the script found recorded (another
// replica's, when it wrote within the interval).
func (m *useMemo) note(uid, sid string, at int64) {
	h, b, mu := m.find(uid, sid)
	defer mu.Unlock()
	victim := 0
	for i, e := range b {
		if e.h == h {
			b[i].ms = at
			return
		}
		if e.h == 0 || (b[victim].h != 0 && e.ms < b[victim].ms) {
			victim = i
		}
	}
	b[victim].h, b[victim].ms = h, at
}

// forget drops what the memo knows of a session: its touch did not land.
func (m *useMemo) forget(uid, sid string) {
	h, b, mu := m.find(uid, sid)
	defer mu.Unlock()
	for i, e := range b {
		if e.h == h {
			b[i] = memoSlot{}
		}
	}
}

// useFromRedis reads a session's record in its user's use hash: its last
// recorded use (unix ms; 0 when it has none) and ip.
func (s *Store) useFromRedis(ctx context.Context, uid, sid string) (int64, string, error) {
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	v, err := s.c.Do(ctx, s.c.B().Hget().Key(s.k.SessionUses(uid)).Field(sid).Build()).ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		return 0, "", redisx.Unavailable("read session use", err)
	}
	ls, ip := useOf(v)
	return ls, ip, nil
}

// useOf reads a use record, "<last seen, unix ms> <ip>" (touch.lua): 0 and
// "" for none.
func useOf(v string) (int64, string) {
	ms, ip, _ := strings.Cut(v, " ")
	ls, _ := strconv.ParseInt(ms, 10, 64)
	return ls, ip
}

// logEvery lets a repeated failure be logged at most once per
// touchRefusedLogEvery, with how many happened since the last line.
type logEvery struct{ since, logged atomic.Int64 }

// add counts n more, and says whether a line is due and how many it reports.
func (l *logEvery) add(n int64) (int64, bool) {
	now := time.Now().UnixNano()
	l.since.Add(n)
	last := l.logged.Load()
	if now-last < int64(touchRefusedLogEvery) || !l.logged.CompareAndSwap(last, now) {
		return 0, false
	}
	return l.since.Swap(0), true
}

// After an out-of-memory refusal, touches pause for touchPause; the refusals
// are logged at most once per touchRefusedLogEvery.
const (
	touchPause           = time.Second
	touchRefusedLogEvery = time.Minute
)

var errTouchQueueFull = errors.New("more touches waiting than the queue holds")

// touchRefusedOOM counts a touch Redis refused for want of memory, pauses
// touches, and logs the refusals at most once per touchRefusedLogEvery.
func (s *Store) touchRefusedOOM(err error) {
	s.o.Metrics.TouchRefused()
	s.touchPausedUntil.Store(time.Now().UnixNano() + int64(touchPause))
	if s.o.Log == nil {
		return
	}
	n, due := s.refusedLog.add(1)
	if !due {
		return
	}
	s.o.Log.Warn("Redis is out of memory (maxmemory): requests are served, but sessions' use is not recorded, so sessions in use idle out from their last recorded use",
		"refused_touches", n, "err", err)
}
