package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/users"
)

// bench is what setup started: Redis, the replicas' configuration and the
// replicas. close releases all of it.
type bench struct {
	o   opts
	ctx context.Context
	tmp string // key file, logs, token files; removed by close
	rs  *redistest.Server
	cfg server.Config
	// passed are the settings passed through to the configuration
	// (opts.env), and unread those of them this build's configuration never
	// asked for: they had no effect.
	passed, unread []string
	replicas       []*replica
	mk             *maker // see maker()
	// ahead is how far the loaded replica's clock (server.Options.Now) is
	// ahead of the wall clock, in nanoseconds: see age.
	ahead atomic.Int64

	closers []func()
}

// replica is one sessiond serving on loopback.
type replica struct {
	srv     *server.Server
	addr    string
	logFile string // "" unless -logging file
}

// age makes every session look unused for two touch intervals to the
// loaded replica, so the first request of each in the next run records its
// use, as a user's first request after a while does: with -touch round,
// before each run of sessiond.
func (b *bench) age() {
	if b.o.touch == "round" {
		b.ahead.Add(int64(touchAge(b.cfg)))
	}
}

func (b *bench) defer_(f func()) { b.closers = append(b.closers, f) }

func (b *bench) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
	b.closers = nil
}

// setup starts Redis and the replicas the mode needs: two for the
// comparison (the second sees revocations made through the first), one for
// -scale.
func setup(o opts) (_ *bench, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	b := &bench{o: o, ctx: ctx}
	b.defer_(cancel)
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.tmp, err = os.MkdirTemp("", "sessiond-bench-"); err != nil {
		return nil, err
	}
	b.defer_(func() { os.RemoveAll(b.tmp) })
	url, err := b.startRedis()
	if err != nil {
		return nil, err
	}
	if err := b.configure(url); err != nil {
		return nil, err
	}
	n := 2
	if len(o.scale) > 0 {
		n = 1
	}
	for i := range n {
		r, err := b.startReplica(fmt.Sprintf("replica-%c", 'a'+i), i == 0)
		if err != nil {
			return nil, err
		}
		b.replicas = append(b.replicas, r)
	}
	return b, nil
}

// startRedis starts one redis-server, or a cluster with -cluster, and
// returns the REDIS_URL that reaches it.
func (b *bench) startRedis() (string, error) {
	var err error
	if b.o.cluster {
		progress("starting a Redis Cluster on loopback")
		b.rs, err = redistest.StartCluster()
	} else {
		progress("starting redis-server on loopback")
		b.rs, err = redistest.Start()
	}
	if err != nil {
		return "", err
	}
	b.defer_(b.rs.Close)
	if !b.rs.Real {
		return "", errors.New("needs redis-server on PATH (Debian: apt-get install redis-server)")
	}
	if !b.o.cluster {
		return "redis://" + b.rs.Addr + "/0", nil
	}
	opt := b.rs.Options()
	return "redis://" + opt.InitAddress[0] + "?addr=" + strings.Join(opt.InitAddress[1:], "&addr="), nil
}

// configure loads the replicas' configuration as serve would from an
// environment: the bench's settings, the keys -alg asks for, and opts.env
// on top. It notes which passed-through settings the configuration never
// read (a TOKEN_CACHE_MB before a token cache exists).
func (b *bench) configure(url string) error {
	env := map[string]string{"REDIS_URL": url, "BCRYPT_COST": strconv.Itoa(b.o.bcryptCost),
		"LOGIN_MAX_FAILURES": "1000000", "MAX_SESSIONS_PER_USER": "0", "REDIS_KEY_PREFIX": "bench:"}
	switch b.o.alg {
	case "hs256":
		env["JWT_SECRET"] = secret
	case "eddsa":
		path, err := writeEd25519Key(b.tmp)
		if err != nil {
			return err
		}
		env["JWT_PRIVATE_KEYS"] = path
	}
	maps.Copy(env, b.o.env)
	var mu sync.Mutex
	read := map[string]bool{}
	cfg, err := server.LoadConfig(func(k string) string {
		mu.Lock()
		read[k] = true
		mu.Unlock()
		return env[k]
	})
	if err != nil {
		return err
	}
	b.cfg = cfg
	for _, k := range slices.Sorted(maps.Keys(b.o.env)) {
		b.passed = append(b.passed, k+"="+b.o.env[k])
		if !read[k] {
			b.unread = append(b.unread, k)
		}
	}
	if len(b.unread) > 0 {
		progress("this build's configuration does not read %s: passed, but without effect", strings.Join(b.unread, ", "))
	}
	return nil
}

// startReplica opens a sessiond on the configuration and serves it on a
// loopback port until the bench closes. With -logging file it logs as serve
// does (server.NewLogger as configured, to a file instead of stderr) and
// has metrics on, as compose runs it. The loaded replica's clock is the
// wall clock moved on by b.ahead.
func (b *bench) startReplica(name string, loaded bool) (*replica, error) {
	r := &replica{}
	log := slog.New(slog.DiscardHandler)
	cfg := b.cfg
	if b.o.logging == "file" {
		r.logFile = filepath.Join(b.tmp, name+".log")
		f, err := os.Create(r.logFile)
		if err != nil {
			return nil, err
		}
		b.defer_(func() { f.Close() })
		var flush func()
		log, flush = server.NewLogger(cfg, f)
		b.defer_(flush)
		cfg.MetricsAddr = "127.0.0.1:0"
	}
	var now func() time.Time
	if loaded {
		now = func() time.Time { return time.Now().Add(time.Duration(b.ahead.Load())) }
	}
	srv, err := server.Open(b.ctx, cfg, server.Options{Log: log, Now: now})
	if err != nil {
		return nil, err
	}
	b.defer_(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.srv, r.addr = srv, ln.Addr().String()
	ctx, stop := context.WithCancel(b.ctx)
	done := make(chan struct{})
	go func() { _ = srv.Run(ctx, ln); close(done) }()
	// Stopped before its Redis client closes: let it finish serving first.
	b.defer_(func() {
		stop()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	return r, nil
}

// createUsers creates n accounts through the users store, two at a time
// (bcrypt is the cost); their names are bench0… and their password
// bench-password, so they can sign in over HTTP.
func createUsers(ctx context.Context, st *users.Store, n int) ([]users.User, error) {
	out := make([]users.User, n)
	err := parallel(n, 2, func(i int) error {
		u, err := st.Create(ctx, fmt.Sprintf("bench%d", i), "bench-password", "", audit.Actor{})
		out[i] = u
		return err
	})
	return out, err
}

// writeEd25519Key writes one fresh Ed25519 key as a PKCS#8 PEM file in dir,
// the JWT_PRIVATE_KEYS format, and returns its path.
func writeEd25519Key(dir string) (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "jwt-keys.pem")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}
