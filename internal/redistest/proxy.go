package redistest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy in front of one Redis node that a test can freeze
// (nothing forwarded either way, every socket left open: a partition, or a
// peer that stopped reading) and slow (a one-way latency on every byte: a
// congested or distant link). Bytes are forwarded in order; none are lost.
type Proxy struct {
	// Addr is where clients connect instead of the node.
	Addr   string
	target string
	ln     net.Listener

	mu      sync.Mutex
	frozen  bool
	latency time.Duration
	changed chan struct{} // closed and replaced on every change of the above
	conns   []net.Conn
	done    chan struct{}
}

// StartProxy starts a proxy to target, closed at the end of the test.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := startProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func startProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, changed: make(chan struct{}), done: make(chan struct{})}
	go p.accept()
	return p, nil
}

// Freeze stops forwarding both ways; sockets stay open, new connections are
// accepted (and frozen too). What arrives meanwhile waits.
func (p *Proxy) Freeze() { p.set(true, -1) }

// Slow delays every byte by d on its way through, each way (the round trip
// grows by 2d). Bytes already waiting are delayed too.
func (p *Proxy) Slow(d time.Duration) { p.set(false, d) }

// Heal forwards again at full speed; what waited flows first.
func (p *Proxy) Heal() { p.set(false, 0) }

// set changes the link; a negative latency keeps the current one.
func (p *Proxy) set(frozen bool, latency time.Duration) {
	p.mu.Lock()
	p.frozen = frozen
	if latency >= 0 {
		p.latency = latency
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return
	default:
	}
	close(p.done)
	_ = p.ln.Close()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		select {
		case <-p.done:
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			return
		default:
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

type chunk struct {
	at time.Time
	b  []byte
}

// pipe forwards src to dst: a reader takes bytes as they come, stamped with
// their arrival; a writer passes each on once the link allows.
func (p *Proxy) pipe(src, dst net.Conn) {
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{time.Now(), b[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	defer dst.Close()
	defer src.Close()
	for c := range q {
		if !p.wait(c.at) {
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// wait blocks until a chunk that arrived at may go on: not frozen, and its
// latency served. False when the proxy closed.
func (p *Proxy) wait(at time.Time) bool {
	for {
		p.mu.Lock()
		frozen, latency, changed := p.frozen, p.latency, p.changed
		p.mu.Unlock()
		if !frozen {
			d := time.Until(at.Add(latency))
			if d <= 0 {
				return true
			}
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-changed:
			case <-p.done:
				t.Stop()
				return false
			}
			t.Stop()
			continue
		}
		select {
		case <-changed:
		case <-p.done:
			return false
		}
	}
}

// Proxies put a Proxy in front of every node a client dials, made on first
// dial: for a cluster, whose nodes announce their own addresses.
type Proxies struct {
	mu     sync.Mutex
	m      map[string]*Proxy
	closed bool
}

// NewProxies returns an empty set; its proxies close at the end of the test.
func NewProxies(t testing.TB) *Proxies {
	ps := &Proxies{m: map[string]*Proxy{}}
	t.Cleanup(ps.close)
	return ps
}

// For returns the proxy in front of addr, starting it if need be.
func (ps *Proxies) For(addr string) (*Proxy, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return nil, net.ErrClosed
	}
	p, ok := ps.m[addr]
	if !ok {
		var err error
		if p, err = startProxy(addr); err != nil {
			return nil, err
		}
		ps.m[addr] = p
	}
	return p, nil
}

// Dial connects to addr through its proxy: a rueidis DialCtxFn's work.
func (ps *Proxies) Dial(ctx context.Context, addr string) (net.Conn, error) {
	p, err := ps.For(addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", p.Addr)
}

func (ps *Proxies) close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.closed = true
	for _, p := range ps.m {
		p.Close()
	}
}
