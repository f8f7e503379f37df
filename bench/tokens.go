package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/tokens"
)

// Token files hold the load's tokens, one a record of a fixed width (the
// token, spaces, a newline), so a reader picks the i-th at offset
// i×(width+1) without an index: wrk's script seeks there when the file is
// large, and the in-process load maps the file instead of holding a million
// tokens on the Go heap (where they would count as the service's memory).

// tokenSlack is how much longer than the first token a later one may be
// (longer names, a wider number).
const tokenSlack = 32

// tokenSet writes one token file per signer, record i of each naming the same
// session.
type tokenSet struct {
	mu    sync.Mutex
	files []*tokenWriter
}

type tokenWriter struct {
	path  string
	f     *os.File
	w     *bufio.Writer
	width int
	n     int
}

func newTokenSet(dir string, names ...string) (*tokenSet, error) {
	ts := &tokenSet{}
	for _, name := range names {
		path := filepath.Join(dir, name+".tokens")
		f, err := os.Create(path)
		if err != nil {
			ts.close()
			return nil, err
		}
		ts.files = append(ts.files, &tokenWriter{path: path, f: f, w: bufio.NewWriterSize(f, 1<<20)})
	}
	return ts, nil
}

// add writes one session's tokens, toks[i] to the i-th file.
func (ts *tokenSet) add(toks ...string) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for i, tw := range ts.files {
		tok := toks[i]
		if tw.width == 0 {
			tw.width = len(tok) + tokenSlack
		}
		if len(tok) > tw.width {
			return fmt.Errorf("token of %d bytes, longer than the file's records (%d)", len(tok), tw.width)
		}
		tw.w.WriteString(tok)
		for range tw.width - len(tok) {
			tw.w.WriteByte(' ')
		}
		if err := tw.w.WriteByte('\n'); err != nil {
			return err
		}
		tw.n++
	}
	return nil
}

// snapshot flushes the files and maps what they hold so far.
func (ts *tokenSet) snapshot() ([]*tokenFile, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var out []*tokenFile
	for _, tw := range ts.files {
		if err := tw.w.Flush(); err != nil {
			return nil, err
		}
		tf, err := mapTokens(tw.path, tw.width, tw.n)
		if err != nil {
			for _, t := range out {
				t.close()
			}
			return nil, err
		}
		out = append(out, tf)
	}
	return out, nil
}

func (ts *tokenSet) close() {
	for _, tw := range ts.files {
		_ = tw.w.Flush()
		tw.f.Close()
	}
}

// tokenFile is a mapped token file: n records of width+1 bytes.
type tokenFile struct {
	path     string
	width, n int
	data     []byte
}

func mapTokens(path string, width, n int) (*tokenFile, error) {
	if n == 0 {
		return nil, fmt.Errorf("%s: no tokens", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := syscall.Mmap(int(f.Fd()), 0, n*(width+1), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", path, err)
	}
	return &tokenFile{path: path, width: width, n: n, data: data}, nil
}

// token is the i-th token; the bytes are the mapping's, read-only.
func (t *tokenFile) token(i int) []byte {
	off := i * (t.width + 1)
	return bytes.TrimRight(t.data[off:off+t.width], " ")
}

func (t *tokenFile) close() {
	if t != nil && t.data != nil {
		_ = syscall.Munmap(t.data)
		t.data = nil
	}
}

// account is whom a session is created for.
type account struct {
	id, username, cv string
	created          time.Time
}

// maker creates sessions through the service's own store, on a client of
// its own, with the store's clock set back by age: each session's last use
// is then age ago, past the touch interval, so the first request a replica
// gets for it records its use (the touch script), as it does for a user
// coming back; later ones within the interval read the client-side cache.
// The bench's other measurements (Redis bytes per session, logout-all)
// create their sessions through it too.
type maker struct {
	srv    *server.Server
	c      rueidis.Client
	layout keys.Layout
	age    time.Duration
}

// touchInterval is the replicas' touch interval, as sessions.Store derives
// it from the configuration.
func touchInterval(cfg server.Config) time.Duration {
	return sessions.TouchInterval(cfg.IdleTimeout, cfg.TouchInterval)
}

// touchAge is twice the touch interval: old enough to be touched, young
// enough not to have idled out (the interval is at most a quarter of the
// idle timeout).
func touchAge(cfg server.Config) time.Duration { return 2 * touchInterval(cfg) }

// maker opens the bench's maker on first use; it closes with the bench.
func (b *bench) maker() (*maker, error) {
	if b.mk != nil {
		return b.mk, nil
	}
	c, err := rueidis.NewClient(b.rs.Options())
	if err != nil {
		return nil, err
	}
	age := touchAge(b.cfg)
	now := func() time.Time { return time.Now().Add(-age) }
	if b.o.touch == "steady" {
		// Last used at random within the last touch interval, as a steady
		// state's sessions are: their uses fall due again evenly, not at once.
		interval := touchInterval(b.cfg)
		now = func() time.Time { return time.Now().Add(-rand.N(interval)) }
	}
	srv, err := server.Open(b.ctx, b.cfg, server.Options{Client: c, Now: now})
	if err != nil {
		c.Close()
		return nil, err
	}
	b.mk = &maker{srv: srv, c: c, layout: keys.New(b.cfg.KeyPrefix), age: age}
	b.defer_(func() { srv.Close(); c.Close() })
	return b.mk, nil
}

// create makes sessions from..to-1, session i for owner(i), signs each with
// every signer and adds the tokens to ts, concurrently (the creates
// pipeline on the client), printing progress every few seconds when asked.
func (m *maker) create(ctx context.Context, from, to int, owner func(i int) account, signers []*tokens.Tokens, ts *tokenSet, report bool) error {
	var done atomic.Int64
	if report {
		start := time.Now()
		defer every(5*time.Second, func() {
			n := done.Load()
			progress("  created %d of %d sessions (%.0f/s)", int64(from)+n, to, float64(n)/time.Since(start).Seconds())
		})()
	}
	meta := sessions.Meta{DeviceName: "Alice's iPhone", Platform: "ios", UserAgent: "MyApp/3.2 (iPhone; iOS 18.1)", IP: "203.0.113.7"}
	return parallel(to-from, 256, func(j int) error {
		a := owner(from + j)
		s, err := m.srv.Sessions.Create(ctx, a.id, a.cv, meta)
		if err != nil {
			return err
		}
		toks := make([]string, len(signers))
		for k, tk := range signers {
			if toks[k], err = tk.Sign(tokens.Claims{UserID: s.UserID, SessionID: s.ID, IssuedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt,
				Username: a.username, AccountCreatedAt: a.created}); err != nil {
				return err
			}
		}
		done.Add(1)
		return ts.add(toks...)
	})
}
