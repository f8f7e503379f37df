// Command bench measures sessiond on this machine, on loopback only: it starts
// its own redis-server (or a local Redis Cluster with -cluster) and sessiond
// replicas built by server.Open as `sessiond serve` builds them.
//
// By default it compares three servers answering GET /v1/me and GET
// /v1/auth/verify over random tokens of -tokens sessions:
//
//   - sessiond (replica A, with the shipped defaults unless -logging discard);
//   - the equal-duty baseline: only the signature checked, with sessiond's
//     keyring, Fiber configuration and response headers, so the difference
//     is the session check (and the log line);
//   - the bare server a user would otherwise write: fiber.New() defaults,
//     golang-jwt's jwt.Parse into jwt.MapClaims, HS256 with the same secret
//     as sessiond's HS256 mode, iss and aud checked, no log, no extra headers.
//
// Each side is loaded in -rounds rounds, the order of the sides reversed from
// one round to the next, by -load inproc (a fasthttp generator in this
// process) or -load wrk (wrk -t1 in a process of its own). It prints each
// side's req/s, p50/p99 and CPU per request (of this process, which serves
// all three sides; with wrk, wrk's own CPU is apart) as medians over the
// rounds, and the ratios sessiond/bare and sessiond/equal-duty as medians of
// the per-round ratios. Then: how long a revocation through one replica
// takes to be refused by the other, Redis bytes per session over -sessions
// sessions, and how long "log out everywhere" takes for a user with
// -logout-all sessions.
//
// -scale 1000,100000,1000000 measures instead how the cost grows with the
// number of sessions: for each size, GET /v1/me over random tokens of that
// many sessions, the service's memory, Redis bytes per session, logout-all
// and GET /v1/sessions of a user with 50 sessions.
//
// The load's sessions are created through sessions.Store.Create with the
// store's clock set two touch intervals in the past, and (-touch round)
// before each run of sessiond its clock moves on by as much: the first
// request of each session in every run records its use (a touch), as a
// returning user's does, and the rounds are alike.
//
// Run it with: go run ./bench   (see -h for the knobs)
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

var secret = "bench-secret-bench-secret-bench-secret-0123"

// opts are the knobs of a run.
type opts struct {
	users, conc, tokens  int
	dur                  time.Duration
	rounds               int
	nsess, nrev, bigUser int
	cluster              bool
	alg                  string // "hs256" or "eddsa"
	logging              string // "file" or "discard"
	load                 string // "inproc" or "wrk"
	touch                string // "round", "once" or "steady"
	scale                []int  // sizes, ascending; none: the comparison
	// env is passed to the replicas' configuration on top of the bench's
	// own settings (-client-cache-mb, -token-cache-mb, -env).
	env        map[string]string
	cpuProfile string
	bcryptCost int
	out        io.Writer
}

// minRounds is the fewest rounds whose medians the README quotes.
const minRounds = 5

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	uuid.EnableRandPool() // as main does
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (opts, error) {
	o := opts{out: os.Stdout, bcryptCost: 10, env: map[string]string{}}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.IntVar(&o.users, "users", 50, "accounts created (bcrypt cost 10) whose sessions the load uses")
	fs.IntVar(&o.tokens, "tokens", 2000, "sessions (over -users accounts) whose tokens the load picks at random")
	fs.IntVar(&o.conc, "concurrency", 0, "concurrent connections (default 64 in process, 32 with wrk)")
	fs.DurationVar(&o.dur, "duration", 10*time.Second, "how long each side is loaded per endpoint, over all rounds; with -scale, GET /v1/me per size")
	fs.IntVar(&o.rounds, "rounds", minRounds, "rounds each side's load is split into; the order of the sides alternates")
	fs.IntVar(&o.nsess, "sessions", 100_000, "sessions created to measure Redis bytes per session")
	fs.IntVar(&o.nrev, "revocations", 200, "revocations timed between the two replicas")
	fs.IntVar(&o.bigUser, "logout-all", 10_000, "sessions of the one user logged out everywhere")
	fs.BoolVar(&o.cluster, "cluster", false, "run against a local Redis Cluster (3 masters, 3 replicas) instead of one node")
	fs.StringVar(&o.alg, "alg", "hs256", "sessiond's token signing: hs256 (JWT_SECRET) or eddsa (JWT_PRIVATE_KEYS, one fresh Ed25519 key); the bare server is HS256 either way")
	fs.StringVar(&o.logging, "logging", "file", "file: the shipped defaults (request log at info through server.NewLogger to a file, metrics on); discard: no log, no metrics")
	fs.StringVar(&o.load, "load", "inproc", "inproc: a fasthttp load generator in this process; wrk: wrk -t1 in a process of its own (Debian: apt-get install wrk)")
	fs.StringVar(&o.touch, "touch", "round", "round: before each run of sessiond its clock moves on two touch intervals, so the first request of each session in every run touches it; once: only the sessions' creation is in the past, so only their first request of the whole bench does; steady (with -scale): sessions are last used at random within a touch interval, every one is used once, then the load runs two touch intervals (at most two minutes) unmeasured before -rounds measured rounds, so the caches are warm and each session in use is touched once a touch interval, as in production")
	fs.Func("scale", "comma-separated session counts, e.g. 1000,100000,1000000: measure the cost as the sessions grow instead of comparing servers", func(s string) error {
		sizes, err := parseSizes(s)
		o.scale = sizes
		return err
	})
	var clientCacheMB, tokenCacheMB int
	fs.IntVar(&clientCacheMB, "client-cache-mb", 0, "CLIENT_CACHE_MB of the replicas (default: the service's, 64)")
	fs.IntVar(&tokenCacheMB, "token-cache-mb", 0, "TOKEN_CACHE_MB of the replicas, passed to the configuration as is (default: unset)")
	fs.Func("env", "KEY=VALUE passed to the replicas' configuration (repeatable), e.g. SESSION_IDLE_TIMEOUT=20s", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", s)
		}
		o.env[k] = v
		return nil
	})
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile to this file: of the load rounds (servers and the in-process load); with -scale, of the whole run; with -touch steady, of the largest size's measured rounds, and each smaller size's in this path with \".<size>\" added")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if clientCacheMB > 0 {
		o.env["CLIENT_CACHE_MB"] = strconv.Itoa(clientCacheMB)
	}
	if tokenCacheMB > 0 {
		o.env["TOKEN_CACHE_MB"] = strconv.Itoa(tokenCacheMB)
	}
	switch {
	case o.alg != "hs256" && o.alg != "eddsa":
		return o, fmt.Errorf("-alg must be hs256 or eddsa, got %q", o.alg)
	case o.logging != "file" && o.logging != "discard":
		return o, fmt.Errorf("-logging must be file or discard, got %q", o.logging)
	case o.load != "inproc" && o.load != "wrk":
		return o, fmt.Errorf("-load must be inproc or wrk, got %q", o.load)
	case o.touch != "round" && o.touch != "once" && o.touch != "steady":
		return o, fmt.Errorf("-touch must be round, once or steady, got %q", o.touch)
	case o.touch == "steady" && len(o.scale) == 0:
		return o, errors.New("-touch steady is a mode of -scale")
	case o.rounds < 1:
		return o, errors.New("-rounds must be at least 1")
	case o.users < 1 || o.tokens < 1:
		return o, errors.New("-users and -tokens must be at least 1")
	case o.dur <= 0:
		return o, errors.New("-duration must be positive")
	}
	if o.load == "wrk" {
		if _, err := exec.LookPath("wrk"); err != nil {
			return o, errors.New("-load wrk needs wrk on PATH: install it (Debian: apt-get install wrk)")
		}
	}
	if o.conc <= 0 {
		o.conc = 64
		if o.load == "wrk" {
			o.conc = 32
		}
	}
	return o, nil
}

// parseSizes reads "1000,100_000,1000000" into ascending distinct counts.
func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.ReplaceAll(strings.TrimSpace(f), "_", ""))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-scale wants positive counts separated by commas, got %q", f)
		}
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	return slices.Compact(sizes), nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// every calls f each d until stop is called: the progress of long steps.
func every(d time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() { close(done) }
}

// run sets the bench up and runs the mode the flags chose.
func run(o opts) error {
	if o.rounds < minRounds && len(o.scale) == 0 {
		progress("only %d rounds: the medians the README quotes take at least %d", o.rounds, minRounds)
	}
	b, err := setup(o)
	if err != nil {
		return err
	}
	defer b.close()
	if len(o.scale) > 0 {
		return runScale(b)
	}
	return runCompare(b)
}
