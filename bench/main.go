// Command bench measures sessiond on this machine, on loopback only: it starts
// its own redis-server (or a local Redis Cluster with -cluster), two sessiond
// replicas and a signature-only baseline, then prints
//
//   - GET /v1/me and GET /v1/auth/verify throughput and p50/p99 latency, and
//     the same for a server that only verifies the JWT signature (no
//     revocation check) with the same keyring, with our throughput as a
//     ratio of it;
//   - how long a revocation through one replica takes to be refused by the other;
//   - Redis bytes per session over -sessions sessions, and their encoding;
//   - how long "log out everywhere" takes for a user with 10,000 sessions.
//
// -alg picks the signing keys the replicas are configured with, as a
// deployment would: hs256 (JWT_SECRET) or eddsa (JWT_PRIVATE_KEYS, a PEM file
// of one fresh Ed25519 key). -logging picks how the replicas run: file (the
// shipped defaults: a request line per request at level info through
// server.NewLogger, as `sessiond serve` logs, to a file; and Prometheus
// metrics on, METRICS_ADDR) or discard (no log, no metrics). The baseline
// never logs: it is the bare signature-checking server sessiond is compared
// to.
//
// The load runs in -rounds interleaved rounds. Each side's row shows, next to
// req/s and latency, the CPU per request of this process, of redis-server,
// and the share of the machine's CPU that other processes took meanwhile; a
// round counts as quiet when that share stayed under 5% on both sides, and
// the ratio over the quiet rounds is printed with the per-round median.
//
// Run it with: go run ./bench   (see -h for the knobs)
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/redis/rueidis"
	"github.com/valyala/fasthttp"

	"github.com/sessiond/sessiond/app"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/tokens"
)

var secret = "bench-secret-bench-secret-bench-secret-0123"

var cpuProfile string

// opts are the knobs of a run.
type opts struct {
	users, conc          int
	dur                  time.Duration
	rounds               int
	nsess, nrev, bigUser int
	cluster              bool
	alg                  string // "hs256" or "eddsa"
	logging              string // "file" or "discard"
}

func main() {
	users := flag.Int("users", 50, "users signed in for the load")
	conc := flag.Int("concurrency", 64, "concurrent requests")
	dur := flag.Duration("duration", 10*time.Second, "how long each side (sessiond, baseline) is loaded, per endpoint, over all rounds")
	rounds := flag.Int("rounds", 4, "interleaved rounds the load of each side is split into")
	nsess := flag.Int("sessions", 100_000, "sessions created to measure Redis bytes per session")
	nrev := flag.Int("revocations", 200, "revocations timed between the two replicas")
	bigUser := flag.Int("logout-all", 10_000, "sessions of the one user logged out everywhere")
	cluster := flag.Bool("cluster", false, "run against a local Redis Cluster (3 masters, 3 replicas) instead of one node")
	alg := flag.String("alg", "hs256", "token signing: hs256 (JWT_SECRET) or eddsa (JWT_PRIVATE_KEYS, one fresh Ed25519 key)")
	logging := flag.String("logging", "file", "file: the shipped defaults (request log at info through server.NewLogger to a file, metrics on); discard: no log, no metrics")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the GET /v1/me and /v1/auth/verify runs (both servers and the load) to this file")
	flag.Parse()
	if *alg != "hs256" && *alg != "eddsa" {
		fmt.Fprintf(os.Stderr, "bench: -alg must be hs256 or eddsa, got %q\n", *alg)
		os.Exit(2)
	}
	if *logging != "file" && *logging != "discard" {
		fmt.Fprintf(os.Stderr, "bench: -logging must be file or discard, got %q\n", *logging)
		os.Exit(2)
	}
	if *rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds must be at least 1")
		os.Exit(2)
	}
	uuid.EnableRandPool() // as main does
	if err := run(opts{users: *users, conc: *conc, dur: *dur, rounds: *rounds, nsess: *nsess, nrev: *nrev, bigUser: *bigUser,
		cluster: *cluster, alg: *alg, logging: *logging}); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func run(o opts) error {
	nUsers, conc, dur, nsess, nrev, bigUser, cluster := o.users, o.conc, o.dur, o.nsess, o.nrev, o.bigUser, o.cluster
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The key file and the logs live here; it goes when the run ends.
	tmp, err := os.MkdirTemp("", "sessiond-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	var rs *redistest.Server
	if cluster {
		progress("starting a Redis Cluster on loopback")
		rs, err = redistest.StartCluster()
	} else {
		progress("starting redis-server on loopback")
		rs, err = redistest.Start()
	}
	if err != nil {
		return err
	}
	defer rs.Close()
	if !rs.Real {
		return errors.New("needs redis-server on PATH")
	}
	url := "redis://" + rs.Addr + "/0"
	if cluster {
		opt := rs.Options()
		url = "redis://" + opt.InitAddress[0] + "?addr=" + strings.Join(opt.InitAddress[1:], "&addr=")
	}

	env := map[string]string{"REDIS_URL": url, "BCRYPT_COST": "10",
		"LOGIN_MAX_FAILURES": "1000000", "MAX_SESSIONS_PER_USER": "0", "REDIS_KEY_PREFIX": "bench:"}
	switch o.alg {
	case "hs256":
		env["JWT_SECRET"] = secret
	case "eddsa":
		path, err := writeEd25519Key(tmp)
		if err != nil {
			return err
		}
		env["JWT_PRIVATE_KEYS"] = path
	}
	cfg, err := server.LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		return err
	}
	var replicas [2]*server.Server
	var addrs [2]string
	var logFiles [2]string
	for i := range replicas {
		log := slog.New(slog.DiscardHandler)
		rcfg := cfg
		if o.logging == "file" {
			// As serve: server.NewLogger as configured (text, info), to a
			// file instead of stderr; and metrics on, as compose runs it.
			logFiles[i] = filepath.Join(tmp, fmt.Sprintf("replica-%c.log", 'a'+i))
			f, err := os.Create(logFiles[i])
			if err != nil {
				return err
			}
			defer f.Close()
			var flush func()
			log, flush = server.NewLogger(cfg, f)
			defer flush()
			rcfg.MetricsAddr = "127.0.0.1:0"
		}
		if replicas[i], err = server.Open(ctx, rcfg, server.Options{Log: log}); err != nil {
			return err
		}
		defer replicas[i].Close()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addrs[i] = ln.Addr().String()
		go func() { _ = replicas[i].Run(ctx, ln) }()
	}
	progress("creating and signing in %d users (bcrypt cost 10)", nUsers)
	tokens, err := signIn(ctx, replicas[0], addrs[0], nUsers)
	if err != nil {
		return err
	}

	// The baseline checks signatures with the service's own keyring.
	tk := replicas[0].Tokens
	baseAddr, stopBase, err := baseline(tk)
	if err != nil {
		return err
	}
	defer stopBase()
	paths := []string{"/v1/me", "/v1/auth/verify"}
	for _, p := range paths {
		if err := sameAnswer(addrs[0], baseAddr, p, tokens[0]); err != nil {
			return err
		}
	}

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	// Interleaved rounds, so a noisy moment on the machine hits both alike;
	// which side goes first alternates from round to round.
	rounds := o.rounds
	m := newMeter(rs)
	defer m.Close()
	oursRun := func(p string) result {
		return m.measure(func() result { return load(addrs[0], p, tokens, conc, dur/time.Duration(rounds)) })
	}
	baseRun := func(p string) result {
		return m.measure(func() result { return load(baseAddr, p, tokens, conc, dur/time.Duration(rounds)) })
	}
	ours, base := make([]result, len(paths)), make([]result, len(paths))
	// The round pairs, side by side in time: their ratios are each taken over
	// a few seconds of the same machine.
	pairs := make([][]roundPair, len(paths))
	var logBefore int64
	if logFiles[0] != "" {
		logBefore = fileSize(logFiles[0])
	}
	for r := range rounds {
		for i, p := range paths {
			first, second := "sessiond", "the signature-only baseline"
			if r%2 == 1 {
				first, second = second, first
			}
			progress("GET %s at concurrency %d, round %d of %d: %s, then %s (%s each)",
				p, conc, r+1, rounds, first, second, dur/time.Duration(rounds))
			var a, b result
			if r%2 == 0 {
				a = oursRun(p)
				b = baseRun(p)
			} else {
				b = baseRun(p)
				a = oursRun(p)
			}
			ours[i], base[i] = ours[i].add(a), base[i].add(b)
			pairs[i] = append(pairs[i], pairOf(a, b))
		}
	}
	pprof.StopCPUProfile() // a no-op without -cpuprofile
	var served int
	for i := range paths {
		served += len(ours[i].lat)
		ours[i], base[i] = ours[i].summary(), base[i].summary()
	}
	logBytes := int64(-1)
	if logFiles[0] != "" {
		logBytes = fileSize(logFiles[0]) - logBefore
	}

	progress("timing %d revocations through replica A as seen by replica B", nrev)
	prop, err := propagation(addrs, nrev)
	if err != nil {
		return err
	}

	progress("creating %d sessions to measure Redis memory", nsess)
	perSession, encoding, err := memoryPerSession(ctx, rs, cfg, nsess)
	if err != nil {
		return err
	}
	progress("creating %d sessions for one user, then logging out everywhere", bigUser)
	logoutAll, err := timeLogoutAll(ctx, rs, cfg, bigUser)
	if err != nil {
		return err
	}

	mode := "one redis-server"
	if cluster {
		mode = "Redis Cluster, 3 masters + 3 replicas"
	}
	algName := map[string]string{"hs256": "HS256 (JWT_SECRET)", "eddsa": "EdDSA (JWT_PRIVATE_KEYS, one Ed25519 key)"}[o.alg]
	logName := map[string]string{
		"file":    "shipped defaults (server.NewLogger at info to a file, as `sessiond serve` logs; metrics on)",
		"discard": "discard (slog.DiscardHandler, no metrics)",
	}[o.logging]
	fmt.Printf("\nsessiond bench — %s, loopback, GOMAXPROCS=%d, %d users, concurrency %d, %s per side per endpoint (%d rounds)\n",
		mode, runtime.GOMAXPROCS(0), nUsers, conc, dur, rounds)
	fmt.Printf("tokens: %s; sessiond request log: %s; baseline: same keyring, no request log\n\n", algName, logName)
	// CPU per request is this whole process's (server, load generator, kernel
	// time of both) divided by the requests served: steadier than req/s on a
	// shared machine, and the same yardstick for both sides. Redis CPU/req is
	// redis-server's, outside this process. "others" is the share of the
	// machine's CPU that other processes used meanwhile: well above a few
	// percent, the req/s of that side were taken on a busy machine.
	row := func(name string, r result) {
		fmt.Printf("%-32s %9.0f %9s %9s %7d %9s %9s %7.1f%%\n", name, r.rps, r.p50, r.p99, r.errors, r.cpuPerReq, r.redisPerReq, 100*r.others)
	}
	for i, p := range paths {
		fmt.Printf("%-32s %9s %9s %9s %7s %9s %9s %8s\n", "GET "+p, "req/s", "p50", "p99", "errors", "CPU/req", "Redis/req", "others")
		row("sessiond (signature + session)", ours[i])
		row("baseline (signature only)", base[i])
		// On a machine the load generator shares, req/s follows the CPU a
		// request costs: the CPU/req ratio is the steadier reading of the two.
		fmt.Printf("%-32s %9.2fx %39.2fx (by CPU/req)\n", "ratio", ours[i].rps/base[i].rps,
			float64(base[i].cpuPerReq)/float64(ours[i].cpuPerReq))
		fmt.Printf("%-32s %s\n\n", "", describePairs(pairs[i]))
	}
	if logBytes >= 0 && served > 0 {
		fmt.Printf("request log of the loaded replica: %.1f MB written during the load, %.0f bytes per request\n",
			float64(logBytes)/1e6, float64(logBytes)/float64(served))
	}
	fmt.Printf("revocation seen by the other replica: p50 %s, p99 %s, max %s (%d revocations)\n",
		prop[len(prop)/2], prop[len(prop)*99/100], prop[len(prop)-1], len(prop))
	fmt.Printf("Redis memory: %.0f bytes per session over %d sessions (session hash encoding: %s)\n", perSession, nsess, encoding)
	fmt.Printf("logout-all of one user with %d sessions: %s\n", bigUser, logoutAll.Round(10*time.Microsecond))
	return nil
}

// signIn creates users and signs each in once over HTTP, two at a time
// (bcrypt is the cost).
func signIn(ctx context.Context, s *server.Server, addr string, n int) ([]string, error) {
	tokens := make([]string, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("bench%d", i)
			if _, err := s.Users.Create(ctx, name, "bench-password", "", audit.Actor{}); err != nil {
				errs <- err
				return
			}
			tok, err := login(addr, name)
			if err != nil {
				errs <- err
				return
			}
			tokens[i] = tok
		}()
	}
	wg.Wait()
	close(errs)
	return tokens, <-errs
}

func login(addr, name string) (string, error) {
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI("http://" + addr + "/v1/auth/login")
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	req.SetBodyString(fmt.Sprintf(`{"username":%q,"password":"bench-password"}`, name))
	if err := fasthttp.DoTimeout(req, res, 10*time.Second); err != nil {
		return "", err
	}
	if res.StatusCode() != 201 {
		return "", fmt.Errorf("login %s: %d %s", name, res.StatusCode(), res.Body())
	}
	var m struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(res.Body(), &m); err != nil {
		return "", err
	}
	return m.Token, nil
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

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// identityHeaders are what GET /v1/auth/verify answers with.
var identityHeaders = []string{"X-User-Id", "X-Username", "X-User-Role", "X-Session-Id"}

// sameAnswer checks that sessiond and the baseline answer GET path with token
// alike (status, body, identity headers), so the load compares like with like.
func sameAnswer(ours, base, path, token string) error {
	get := func(addr string) (int, string, []string, error) {
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		req.SetRequestURI("http://" + addr + path)
		req.Header.Set("Authorization", "Bearer "+token)
		if err := fasthttp.DoTimeout(req, res, 10*time.Second); err != nil {
			return 0, "", nil, err
		}
		var hs []string
		for _, h := range identityHeaders {
			hs = append(hs, string(res.Header.Peek(h)))
		}
		return res.StatusCode(), string(res.Body()), hs, nil
	}
	c1, b1, h1, err := get(ours)
	if err != nil {
		return err
	}
	c2, b2, h2, err := get(base)
	if err != nil {
		return err
	}
	if c1 != 200 || c1 != c2 || b1 != b2 || !slices.Equal(h1, h2) {
		return fmt.Errorf("GET %s: sessiond and the baseline answer differently:\n  sessiond %d %q %q\n  baseline %d %q %q",
			path, c1, b1, h1, c2, b2, h2)
	}
	return nil
}

// baseline serves GET /v1/me and GET /v1/auth/verify by verifying the JWT
// only: what a stateless service does, answering from the token's claims. It
// runs the same Fiber configuration, sets the same response headers and
// answers the same JSON (for /v1/me) or identity headers and empty body (for
// /v1/auth/verify), so the difference is the revocation check. It writes no
// request log.
func baseline(tk *tokens.Tokens) (string, func(), error) {
	// The same server configuration as sessiond (timeouts, limits, JSON).
	f := fiber.New(app.FiberConfig(app.Deps{Log: slog.New(slog.DiscardHandler)}))
	f.Use(func(c *fiber.Ctx) error {
		c.Set("X-Request-Id", uuid.NewString())
		c.Set("Cache-Control", "no-store")
		c.Set("X-Content-Type-Options", "nosniff")
		c.Set("X-Frame-Options", "DENY")
		c.Set("Referrer-Policy", "no-referrer")
		c.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		return c.Next()
	})
	f.Get("/v1/me", func(c *fiber.Ctx) error {
		h := c.Get(fiber.HeaderAuthorization)
		claims, err := tk.Verify(strings.TrimPrefix(h, "Bearer "))
		if err != nil {
			return c.SendStatus(401)
		}
		return c.JSON(struct {
			ID        string `json:"id"`
			Username  string `json:"username"`
			Role      string `json:"role"`
			Disabled  bool   `json:"disabled"`
			CreatedAt string `json:"created_at"`
		}{claims.UserID, claims.Username, "user", false, claims.AccountCreatedAt.UTC().Format(time.RFC3339)})
	})
	f.Get("/v1/auth/verify", func(c *fiber.Ctx) error {
		h := c.Get(fiber.HeaderAuthorization)
		claims, err := tk.Verify(strings.TrimPrefix(h, "Bearer "))
		if err != nil {
			return c.SendStatus(401)
		}
		c.Set("X-User-Id", claims.UserID)
		c.Set("X-Username", claims.Username)
		c.Set("X-User-Role", "user")
		c.Set("X-Session-Id", claims.SessionID)
		c.Status(fiber.StatusOK) // and no body, as sessiond's
		return nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() { _ = f.Listener(ln) }()
	return ln.Addr().String(), func() { _ = f.Shutdown() }, nil
}

type result struct {
	cpu     time.Duration
	seconds float64
	lat     []time.Duration
	errors  int64
	// redisCPU is what Redis spent; otherCPU what the machine's other
	// processes spent, out of capacity (seconds × CPUs).
	redisCPU, otherCPU, capacity time.Duration

	rps                 float64
	p50, p99, cpuPerReq time.Duration
	redisPerReq         time.Duration
	others              float64 // share of the machine's CPU used by other processes
}

func (r result) add(o result) result {
	return result{cpu: r.cpu + o.cpu, seconds: r.seconds + o.seconds, lat: append(r.lat, o.lat...), errors: r.errors + o.errors,
		redisCPU: r.redisCPU + o.redisCPU, otherCPU: r.otherCPU + o.otherCPU, capacity: r.capacity + o.capacity}
}

func (r result) summary() result {
	slices.Sort(r.lat)
	if len(r.lat) > 0 {
		r.rps = float64(len(r.lat)) / r.seconds
		r.cpuPerReq = (r.cpu / time.Duration(len(r.lat))).Round(100 * time.Nanosecond)
		r.redisPerReq = (r.redisCPU / time.Duration(len(r.lat))).Round(100 * time.Nanosecond)
		r.p50, r.p99 = r.lat[len(r.lat)/2].Round(time.Microsecond), r.lat[len(r.lat)*99/100].Round(time.Microsecond)
	}
	if r.capacity > 0 {
		r.others = float64(r.otherCPU) / float64(r.capacity)
	}
	return r
}

// quietShare is the most of the machine's CPU other processes may use during
// both halves of a round for the round to count as quiet.
const quietShare = 0.05

// roundPair is one round of one endpoint: both sides' req/s, and the share
// of the machine other processes used during the busier half.
type roundPair struct {
	ours, base, others float64
}

func pairOf(a, b result) roundPair {
	a, b = a.summary(), b.summary()
	return roundPair{ours: a.rps, base: b.rps, others: max(a.others, b.others)}
}

// describePairs sums up the per-round ratios: their median and range, and
// the pooled ratio over the quiet rounds only.
func describePairs(ps []roundPair) string {
	ratios := make([]float64, 0, len(ps))
	var qo, qb float64
	quiet := 0
	for _, p := range ps {
		if p.base > 0 {
			ratios = append(ratios, p.ours/p.base)
		}
		if p.others < quietShare {
			qo, qb, quiet = qo+p.ours, qb+p.base, quiet+1
		}
	}
	if len(ratios) == 0 {
		return ""
	}
	slices.Sort(ratios)
	med := ratios[len(ratios)/2]
	if len(ratios)%2 == 0 {
		med = (ratios[len(ratios)/2-1] + ratios[len(ratios)/2]) / 2
	}
	out := fmt.Sprintf("per round: median %.2fx, range %.2f–%.2f; ", med, ratios[0], ratios[len(ratios)-1])
	if quiet == 0 {
		return out + fmt.Sprintf("no round quiet (others < %.0f%%)", 100*quietShare)
	}
	return out + fmt.Sprintf("%d of %d rounds quiet (others < %.0f%%): %.2fx", quiet, len(ps), 100*quietShare, qo/qb)
}

// load drives GET path with the tokens round-robin from conc workers for d.
func load(addr, path string, tokens []string, conc int, d time.Duration) result {
	client := &fasthttp.HostClient{Addr: addr, MaxConns: conc}
	cpu0 := processCPU()
	var errs atomic.Int64
	lat := make([][]time.Duration, conc)
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(res)
			req.SetRequestURI("http://" + addr + path)
			for i := w; time.Now().Before(stop); i++ {
				req.Header.Set("Authorization", "Bearer "+tokens[i%len(tokens)])
				start := time.Now()
				err := client.Do(req, res)
				lat[w] = append(lat[w], time.Since(start))
				if err != nil || res.StatusCode() != 200 {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return result{cpu: processCPU() - cpu0, seconds: d.Seconds(), lat: all, errors: errs.Load()}
}

// propagation signs in n sessions, warms replica B's cache with each, signs
// it out through replica A and polls B until it refuses the token: the time
// from A's 204 to B's first 401.
func propagation(addrs [2]string, n int) ([]time.Duration, error) {
	b := &fasthttp.HostClient{Addr: addrs[1], MaxConns: 4}
	get := func(tok string) int {
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		req.SetRequestURI("http://" + addrs[1] + "/v1/me")
		req.Header.Set("Authorization", "Bearer "+tok)
		if err := b.Do(req, res); err != nil {
			return 0
		}
		return res.StatusCode()
	}
	out := make([]time.Duration, 0, n)
	for i := range n {
		tok, err := login(addrs[0], fmt.Sprintf("bench%d", i%10))
		if err != nil {
			return nil, err
		}
		for range 2 {
			if code := get(tok); code != 200 {
				return nil, fmt.Errorf("replica B before the revocation: %d", code)
			}
		}
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + addrs[0] + "/v1/auth/logout")
		req.Header.SetMethod("POST")
		req.Header.Set("Authorization", "Bearer "+tok)
		err = fasthttp.Do(req, res)
		code := res.StatusCode()
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(res)
		if err != nil || code != 204 {
			return nil, fmt.Errorf("logout through A: %d %v", code, err)
		}
		acked := time.Now()
		for get(tok) != 401 {
			if time.Since(acked) > 5*time.Second {
				return nil, errors.New("replica B still accepts a token 5s after its revocation")
			}
		}
		out = append(out, time.Since(acked))
	}
	slices.Sort(out)
	return out, nil
}

// memoryPerSession creates n sessions over n/50 users and returns Redis's
// used_memory growth per session.
func memoryPerSession(ctx context.Context, rs *redistest.Server, cfg server.Config, n int) (float64, string, error) {
	c, st, layout, err := openStore(ctx, rs, cfg, "mem:")
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	nUsers := max(n/50, 1)
	uids := make([]string, nUsers)
	for i := range uids {
		uids[i] = uuid.NewString()
		if err := addAccount(ctx, c, layout, uids[i]); err != nil {
			return 0, "", err
		}
	}
	before, err := usedMemory(ctx, rs)
	if err != nil {
		return 0, "", err
	}
	var firstKey string
	err = parallel(n, 32, func(i int) error {
		uid := uids[i%nUsers]
		s, err := st.Create(ctx, uid, "0", sessions.Meta{DeviceName: "Alice's iPhone", Platform: "ios",
			UserAgent: "MyApp/3.2 (iPhone; iOS 18.1)", IP: "203.0.113.7"})
		if i == 0 {
			firstKey = layout.Session(uid, s.ID)
		}
		return err
	})
	if err != nil {
		return 0, "", err
	}
	after, err := usedMemory(ctx, rs)
	if err != nil {
		return 0, "", err
	}
	enc, _ := c.Do(ctx, c.B().ObjectEncoding().Key(firstKey).Build()).ToString()
	return float64(after-before) / float64(n), enc, nil
}

// usedMemory sums used_memory over the masters (the one node, or a cluster's).
func usedMemory(ctx context.Context, rs *redistest.Server) (int64, error) {
	c, err := rueidis.NewClient(rs.Options())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var total int64
	for _, node := range c.Nodes() {
		role, err := node.Do(ctx, node.B().Role().Build()).ToArray()
		if err != nil {
			return 0, err
		}
		if r, _ := role[0].ToString(); r != "master" {
			continue
		}
		info, err := node.Do(ctx, node.B().Info().Section("memory").Build()).ToString()
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total, nil
}

// timeLogoutAll gives one user n sessions and times RevokeAll of them.
func timeLogoutAll(ctx context.Context, rs *redistest.Server, cfg server.Config, n int) (time.Duration, error) {
	c, st, layout, err := openStore(ctx, rs, cfg, "big:")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	uid := uuid.NewString()
	if err := addAccount(ctx, c, layout, uid); err != nil {
		return 0, err
	}
	if err := parallel(n, 32, func(int) error {
		_, err := st.Create(ctx, uid, "0", sessions.Meta{DeviceName: "device"})
		return err
	}); err != nil {
		return 0, err
	}
	start := time.Now()
	revoked, err := st.RevokeAll(ctx, uid, "", audit.Actor{})
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	if revoked != n {
		return 0, fmt.Errorf("logout-all revoked %d of %d", revoked, n)
	}
	return took, nil
}

// openStore opens the service's session store, as serve wires it, on a
// client of its own under another key prefix.
func openStore(ctx context.Context, rs *redistest.Server, cfg server.Config, prefix string) (rueidis.Client, *sessions.Store, keys.Layout, error) {
	c, err := rueidis.NewClient(rs.Options())
	if err != nil {
		return nil, nil, keys.Layout{}, err
	}
	cfg.KeyPrefix = prefix
	srv, err := server.Open(ctx, cfg, server.Options{Client: c})
	if err != nil {
		c.Close()
		return nil, nil, keys.Layout{}, err
	}
	return c, srv.Sessions, keys.New(prefix), nil
}

// addAccount writes a bare enabled account record, without the bcrypt work
// of a real one: sessions only need it to exist.
func addAccount(ctx context.Context, c rueidis.Client, layout keys.Layout, uid string) error {
	return c.Do(ctx, c.B().Hset().Key(layout.User(uid)).FieldValue().
		FieldValue(keys.UserID, uid).FieldValue(keys.UserRole, keys.DefaultRole).
		FieldValue(keys.UserVersion, "0").FieldValue(keys.UserDisabled, "0").Build()).Error()
}

// parallel runs f(0..n-1) on w goroutines and returns the first error.
func parallel(n, w int, f func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
