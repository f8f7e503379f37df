package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"
)

// quietShare is the most of the machine's CPU other processes may use while
// every side of a round runs for the round to count as quiet.
const quietShare = 0.05

// median of xs (sorted in place); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// over is f of each round, as floats.
func over(rs []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func rps(s sample) float64    { return s.rps() }
func p50(s sample) float64    { return float64(s.p50) }
func p99(s sample) float64    { return float64(s.p99) }
func cpuReq(s sample) float64 { return float64(s.perReq(s.cpu)) }

// sideRow is one side's figures: medians over its rounds, and sums of the
// counts.
type sideRow struct {
	rps                      float64
	p50, p99, cpu, red, load time.Duration
	others                   float64 // -1: unknown
	requests, errors         int64
	touches, reads           int64
}

func rowOf(rs []sample) sideRow {
	d := func(f func(sample) float64) time.Duration { return time.Duration(median(over(rs, f))) }
	r := sideRow{rps: median(over(rs, rps)), p50: d(p50), p99: d(p99), cpu: d(cpuReq),
		red:    d(func(s sample) float64 { return float64(s.perReq(s.redisCPU)) }),
		load:   d(func(s sample) float64 { return float64(s.perReq(s.loadCPU)) }),
		others: median(over(rs, func(s sample) float64 { return s.others }))}
	for _, s := range rs {
		r.requests += s.requests
		r.errors += s.errors
		r.touches += s.touches
		r.reads += s.reads
	}
	return r
}

// ratios of ours to theirs, round by round, and their medians: >1 for req/s
// means faster, >1 for the others means slower or dearer.
type ratioRow struct {
	rps, p50, p99, cpu float64
	lo, hi             float64 // range of the req/s ratios
	quiet              int     // rounds whose sides all ran with others under quietShare
	quietRPS           float64 // median req/s ratio over those
}

func ratiosOf(ours, theirs []sample, quiet []bool) ratioRow {
	per := func(f func(sample) float64) []float64 {
		var out []float64
		for i := range ours {
			if t := f(theirs[i]); t > 0 {
				out = append(out, f(ours[i])/t)
			}
		}
		return out
	}
	r := ratioRow{p50: median(per(p50)), p99: median(per(p99)), cpu: median(per(cpuReq))}
	byRPS := per(rps)
	r.rps = median(byRPS)
	if len(byRPS) > 0 {
		r.lo, r.hi = slices.Min(byRPS), slices.Max(byRPS)
	}
	var q []float64
	for i := range ours {
		if quiet[i] && theirs[i].rps() > 0 {
			q = append(q, ours[i].rps()/theirs[i].rps())
		}
	}
	r.quiet, r.quietRPS = len(q), median(q)
	return r
}

// quietRounds says of each round whether every side ran with other
// processes under quietShare of the machine.
func quietRounds(bySide [][]sample) []bool {
	q := make([]bool, len(bySide[0]))
	for i := range q {
		q[i] = true
		for _, rs := range bySide {
			if rs[i].others < 0 || rs[i].others >= quietShare {
				q[i] = false
			}
		}
	}
	return q
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }
func us(d time.Duration) string { return fmt.Sprintf("%.1fµs", float64(d)/1e3) }

func share(x float64) string {
	if x < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f%%", 100*x)
}

// header prints what was run: Redis, load, keys, logging and the settings
// passed to the configuration.
func header(w io.Writer, b *bench, lo loader, what string) {
	o := b.o
	mode := "one redis-server"
	if o.cluster {
		mode = "Redis Cluster, 3 masters + 3 replicas"
	}
	alg := map[string]string{"hs256": "HS256 (JWT_SECRET)", "eddsa": "EdDSA (JWT_PRIVATE_KEYS, one Ed25519 key)"}[o.alg]
	logName := map[string]string{
		"file":    "shipped defaults (server.NewLogger at info to a file, as `sessiond serve` logs; metrics on)",
		"discard": "no log, no metrics",
	}[o.logging]
	fmt.Fprintf(w, "\nsessiond bench — %s — %s, loopback, %d CPUs, GOMAXPROCS=%d\n", what, mode, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "load: %s\n", lo.describe())
	fmt.Fprintf(w, "sessiond: tokens %s; %s; client-side cache %d MB a connection\n", alg, logName, b.cfg.ClientCacheMB)
	if len(b.passed) > 0 {
		fmt.Fprintf(w, "settings passed to the configuration: %s", strings.Join(b.passed, " "))
		if len(b.unread) > 0 {
			fmt.Fprintf(w, " (not read by this build, so without effect: %s)", strings.Join(b.unread, ", "))
		}
		fmt.Fprintln(w)
	}
}

// touchNote says which requests touched their session.
func touchNote(b *bench) string {
	age := touchAge(b.cfg)
	switch b.o.touch {
	case "steady":
		pace, settle := steadyPhases(b.cfg)
		return fmt.Sprintf("each session was last used at random within the touch interval (%s) before its creation; before the measured rounds of a size every session was used once, in a random order spread over at least %s (a touch when due), then the load ran %s unmeasured, so the caches are warm and a session in use is touched once a touch interval, as in production",
			touchInterval(b.cfg), pace, settle)
	case "round":
		return fmt.Sprintf("before each run of sessiond every session was last used %s ago (its clock moved on), so each one's first request in every run touches it", age)
	}
	return fmt.Sprintf("each session was created %s in the past, so its first request of the bench touches it, and then once every %s", age, age/2)
}

// reportCompare prints the comparison: what ran, a table per endpoint, and
// the other figures.
func reportCompare(b *bench, lo loader, sides []side, runs [][][]sample, ex extras) {
	w, o := b.o.out, b.o
	_, wrk := lo.(*wrkLoad)
	d := o.dur / time.Duration(o.rounds)
	if wrk {
		d = time.Duration(wrkSeconds(d)) * time.Second
	}
	header(w, b, lo, fmt.Sprintf("%d rounds of %s per side per endpoint, sides in alternating order", o.rounds, d))
	fmt.Fprintf(w, "the load: a random token a request over %d sessions of %d users; %s\n", o.tokens, o.users, touchNote(b))
	fmt.Fprintf(w, "equal-duty: the signature only, with sessiond's keyring, Fiber configuration and headers, no log\n")
	fmt.Fprintf(w, "bare: fiber.New() defaults, golang-jwt jwt.Parse into jwt.MapClaims, HS256, iss and aud checked, no log, no extra headers\n")
	fmt.Fprintf(w, "figures: medians over the rounds; CPU/req is this process's (all three servers%s) over the requests; ratios are medians of the per-round ratios\n\n",
		map[bool]string{false: " and the in-process load", true: "; wrk's CPU is apart, wrk/req"}[wrk])
	var served int64
	for i, p := range paths {
		served += reportPath(w, p, wrk, sides, runs[i])
	}
	if ex.logBytes >= 0 && served > 0 {
		fmt.Fprintf(w, "request log of the loaded replica: %.1f MB written during the load, %.0f bytes per request\n",
			float64(ex.logBytes)/1e6, float64(ex.logBytes)/float64(served))
	}
	if n := len(ex.prop); n > 0 {
		fmt.Fprintf(w, "revocation seen by the other replica: p50 %s, p99 %s, max %s (%d revocations)\n",
			ex.prop[n/2], ex.prop[n*99/100], ex.prop[n-1], n)
	}
	fmt.Fprintf(w, "Redis memory: %.0f bytes per session over %d sessions (session hash encoding: %s)\n", ex.perSession, o.nsess, ex.encoding)
	fmt.Fprintf(w, "logout-all of one user with %d sessions: %s\n", o.bigUser, ex.logoutAll.Round(10*time.Microsecond))
}

// reportPath prints one endpoint's table: a row per side, then sessiond's
// ratios to each other side. It returns the requests sessiond served.
func reportPath(w io.Writer, path string, wrk bool, sides []side, bySide [][]sample) (served int64) {
	cols := []string{"req/s", "p50", "p99", "CPU/req", "Redis/req"}
	if wrk {
		cols = append(cols, "wrk/req")
	}
	cols = append(cols, "touched", "cache miss", "errors", "others")
	fmt.Fprintf(w, "%-32s", "GET "+path)
	for _, c := range cols {
		fmt.Fprintf(w, " %10s", c)
	}
	fmt.Fprintln(w)
	for k, s := range sides {
		r := rowOf(bySide[k])
		if k == 0 {
			served = r.requests
		}
		fmt.Fprintf(w, "%-32s %10.0f %10s %10s %10s %10s", s.label, r.rps, ms(r.p50), ms(r.p99), us(r.cpu), us(r.red))
		if wrk {
			fmt.Fprintf(w, " %10s", us(r.load))
		}
		fmt.Fprintf(w, " %9.1f%% %9.1f%% %10d %10s\n", pct(r.touches, r.requests), pct(r.reads, r.requests), r.errors, share(r.others))
	}
	quiet := quietRounds(bySide)
	for k := 1; k < len(sides); k++ {
		r := ratiosOf(bySide[0], bySide[k], quiet)
		fmt.Fprintf(w, "%-32s %9.2fx %9.2fx %9.2fx %9.2fx   req/s per round %.2f–%.2f", "sessiond / "+sides[k].name,
			r.rps, r.p50, r.p99, r.cpu, r.lo, r.hi)
		if r.quiet > 0 {
			fmt.Fprintf(w, "; %d of %d rounds quiet (others < %.0f%%): %.2fx", r.quiet, len(quiet), 100*quietShare, r.quietRPS)
		} else {
			fmt.Fprintf(w, "; no round quiet (others < %.0f%%)", 100*quietShare)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	return served
}
