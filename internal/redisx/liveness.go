package redisx

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/flatcache"
)

// Liveness bounds how stale an answer from the client-side cache can be.
//
// rueidis serves a cached read without a round trip for as long as its
// connection stands, and a connection that stopped delivering (a partition,
// a frozen peer, a congested link) still stands until rueidis's own ping
// gives up: seconds, REDIS_TIMEOUT and more. Meanwhile the invalidations
// that Redis sent when another replica revoked a session are stuck on the
// way, and the cache says the session is live.
//
// What proves a connection current is the order of its replies. Redis
// pushes a key's invalidation on the connection that read the key (default
// tracking: not BCAST, not a redirect) the moment a write changes it, and
// replies on a connection in order; rueidis's reader applies each
// invalidation to that connection's cache before it reads the next reply.
// So once a PING sent at T on that connection is answered, every
// invalidation for a write before T has been applied, and a cached answer
// given at now is stale by at most now − T. Liveness PINGs every node every
// Every and lets the cache answer only while now − T < Bound, T being the
// send time of the latest answered PING of the node that answered least
// recently (every node: a master, or a replica, that cannot prove itself
// closes the cache for every key; its keys can only be read from Redis
// then, and the others still can).
//
// A cached read and a PING share a connection only if the node has one:
// NewClient sees to that.
type Liveness struct {
	c     rueidis.Client
	every time.Duration
	bound time.Duration
	now   func() time.Time
	base  time.Time // origin of the nanosecond counts below (monotonic)

	// until is when, in nanoseconds since base, the cache stops being
	// proven: the oldest node's latest answered PING's send time plus
	// bound. Read on every request: one atomic load.
	until atomic.Int64

	mu    sync.Mutex
	nodes map[string]*beating // by address, as the client names its nodes

	stop chan struct{}
	done chan struct{} // closed when the loop has returned
}

// beating is one node's heartbeat state, under Liveness.mu.
type beating struct {
	last     int64 // send time of its latest answered PING, ns since base
	inflight int
}

// never is a send time before any: nothing proven.
const never = math.MinInt64 / 2

// LiveOptions tune a Liveness.
type LiveOptions struct {
	// Every is how often each node is PINGed.
	Every time.Duration
	// Bound is how long after its send time an answered PING lets the
	// cache answer: the most a cached answer can be stale by. Some
	// multiple of Every, so that a late heartbeat or two does not close it.
	Bound time.Duration
	// Now is the clock the gate is asked with (Proven's now); nil means
	// time.Now.
	Now func() time.Time
}

// NewClient connects as opt says, with what Liveness needs of the client,
// and starts heartbeats on it. The Liveness is nil when opt disables the
// client-side cache (there is nothing to gate). Stop it before closing the
// client.
//
// A node gets one pipelining connection (PipelineMultiplex -1): rueidis
// otherwise gives a node up to four, picks one for a cached read by the
// key's slot and sends a keyless PING on the first, so no PING could speak
// for the others. Blocking commands still get connections of their own.
func NewClient(opt rueidis.ClientOption, o LiveOptions) (rueidis.Client, *Liveness, error) {
	if opt.DisableCache {
		c, err := rueidis.NewClient(opt)
		return c, nil, err
	}
	switch {
	case o.Every <= 0 || o.Bound < o.Every:
		return nil, nil, errors.New("redisx: a heartbeat period, and a bound no shorter than it, are required")
	case opt.ClientTrackingOptions != nil:
		// BCAST or REDIRECT move invalidations off the connection that read.
		return nil, nil, errors.New("redisx: the cache's liveness needs default client tracking (invalidations on the connection that read)")
	case opt.DisableAutoPipelining:
		// PING would then take a pooled connection, not the cache's.
		return nil, nil, errors.New("redisx: the cache's liveness needs auto pipelining")
	}
	opt.PipelineMultiplex = -1
	if opt.NewCacheStoreFn == nil {
		// Reads kept where the garbage collector does not scan them: at a
		// million sessions rueidis's own store is most of the heap it marks.
		opt.NewCacheStoreFn = flatcache.New
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, nil, err
	}
	return c, Watch(c, o), nil
}

// Watch starts heartbeats on every node of c. The cache is unproven until
// every node has answered one. c must have one pipelining connection per
// node (see NewClient).
func Watch(c rueidis.Client, o LiveOptions) *Liveness {
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Liveness{c: c, every: o.Every, bound: o.Bound, now: o.Now, base: o.Now(),
		nodes: map[string]*beating{}, stop: make(chan struct{}), done: make(chan struct{})}
	l.until.Store(never)
	go l.run()
	return l
}

// Proven reports whether the cache may answer at now: every node answered a
// PING sent less than the bound before now. A nil Liveness proves
// everything: it is for a client nothing watches (or that has no cache).
// The hot path: no allocation, no clock read, one atomic load.
func (l *Liveness) Proven(now time.Time) bool {
	return l == nil || int64(now.Sub(l.base)) < l.until.Load()
}

// Stop ends the heartbeats: no PING is sent after it returns, and the cache
// is unproven within the bound. PINGs in flight end within the bound, or
// at once when the client closes.
func (l *Liveness) Stop() {
	if l == nil {
		return
	}
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

func (l *Liveness) run() {
	defer close(l.done)
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		l.beat()
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
	}
}

// maxInflight PINGs may wait per node: on a link slower than Every, more
// answers per round trip keep the proof as fresh as the link allows; a
// PING older than the bound proves nothing, so no more than that.
func (l *Liveness) maxInflight() int { return max(1, int(l.bound/l.every)) }

// beat PINGs each node of the client as it is now (a cluster's nodes come
// and go), forgetting nodes it no longer has.
func (l *Liveness) beat() {
	nodes := l.c.Nodes()
	l.mu.Lock()
	defer l.mu.Unlock()
	for addr := range l.nodes {
		if _, ok := nodes[addr]; !ok {
			delete(l.nodes, addr)
		}
	}
	for addr, c := range nodes {
		n := l.nodes[addr]
		if n == nil {
			n = &beating{last: never}
			l.nodes[addr] = n
		}
		if n.inflight < l.maxInflight() {
			n.inflight++
			go l.ping(n, c)
		}
	}
	l.publish()
}

func (l *Liveness) ping(n *beating, c rueidis.Client) {
	sent := int64(l.now().Sub(l.base))
	ctx, cancel := context.WithTimeout(context.Background(), l.bound)
	err := c.Do(ctx, c.B().Ping().Build()).Error()
	cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	n.inflight--
	if err == nil && sent > n.last {
		n.last = sent
		l.publish()
	}
}

// publish sets until from the nodes' proofs; under mu.
func (l *Liveness) publish() {
	oldest := int64(never)
	if len(l.nodes) > 0 {
		oldest = math.MaxInt64
		for _, n := range l.nodes {
			oldest = min(oldest, n.last)
		}
	}
	l.until.Store(oldest + int64(l.bound))
}
