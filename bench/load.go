package main

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// sample is one load run of one side: what the load saw, and what the meter
// read around it.
type sample struct {
	requests, errors int64
	seconds          float64
	p50, p99         time.Duration
	// cpu is this process's (the servers', and the load's when it runs in
	// process); loadCPU is wrk's, another process; redisCPU redis-server's.
	cpu, loadCPU, redisCPU time.Duration
	// others is the share of the machine's CPU other processes took; -1
	// when it could not be read.
	others float64
	// touches are the uses of sessions the replicas recorded; reads the
	// client-side cache misses (each a CLIENT CACHING YES before its read).
	touches, reads int64
}

func (s sample) rps() float64 {
	if s.seconds <= 0 {
		return 0
	}
	return float64(s.requests) / s.seconds
}

// perReq is d over the requests served.
func (s sample) perReq(d time.Duration) time.Duration {
	if s.requests == 0 {
		return 0
	}
	return d / time.Duration(s.requests)
}

// target is what a load run sends: GET path to addr with random tokens.
type target struct {
	addr, path string
	tokens     *tokenFile
	// perRequest has wrk build each request from the mapped token file, at
	// a cost that does not grow with the file (the scale's curve); else it
	// builds them all ahead (wrk.lua).
	perRequest bool
}

// loader runs a load for about d.
type loader interface {
	run(t target, d time.Duration) (sample, error)
	// describe says what the load is, for the report.
	describe() string
}

func newLoader(o opts, tmp string) (loader, error) {
	if o.load == "wrk" {
		return newWrk(o.conc, tmp)
	}
	return inproc{conc: o.conc}, nil
}

// inproc is a fasthttp load generator in this process: conc workers, each
// on a connection of its own, each request with a random token.
type inproc struct{ conc int }

func (l inproc) describe() string {
	return fmt.Sprintf("in-process fasthttp generator, %d connections", l.conc)
}

func (l inproc) run(t target, d time.Duration) (sample, error) {
	client := &fasthttp.HostClient{Addr: t.addr, MaxConns: l.conc}
	var errs atomic.Int64
	lat := make([][]time.Duration, l.conc)
	seed := rand.Uint64()
	start := time.Now()
	stop := start.Add(d)
	var wg sync.WaitGroup
	for w := range l.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(res)
			req.SetRequestURI("http://" + t.addr + t.path)
			auth := []byte("Bearer ")
			for time.Now().Before(stop) {
				auth = append(auth[:len("Bearer ")], t.tokens.token(rng.IntN(t.tokens.n))...)
				req.Header.SetBytesV(fasthttp.HeaderAuthorization, auth)
				t0 := time.Now()
				err := client.Do(req, res)
				lat[w] = append(lat[w], time.Since(t0))
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
	s := sample{requests: int64(len(all)), errors: errs.Load(), seconds: time.Since(start).Seconds()}
	s.p50, s.p99 = percentiles(all)
	return s, nil
}

// percentiles sorts lat and returns its p50 and p99.
func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100]
}

//go:embed wrk.lua
var wrkScript []byte

// wrkLoad runs `wrk -t1 -c<conc> -d<secs> --latency` with wrk.lua, in a
// process of its own: its CPU is not this process's.
type wrkLoad struct {
	bin, script string
	conc        int
}

func newWrk(conc int, tmp string) (*wrkLoad, error) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return nil, errors.New("-load wrk needs wrk on PATH: install it (Debian: apt-get install wrk)")
	}
	script := filepath.Join(tmp, "bench.lua")
	if err := os.WriteFile(script, wrkScript, 0o644); err != nil {
		return nil, err
	}
	return &wrkLoad{bin: bin, script: script, conc: conc}, nil
}

func (l *wrkLoad) describe() string {
	return fmt.Sprintf("wrk -t1 -c%d --latency in its own process (bench/wrk.lua: a random token a request)", l.conc)
}

// wrkSeconds is d in the whole seconds wrk takes, at least one.
func wrkSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

func (l *wrkLoad) run(t target, d time.Duration) (sample, error) {
	mode := "prebuilt"
	if t.perRequest {
		mode = "mapped"
	}
	cmd := exec.Command(l.bin, "-t1", "-c"+strconv.Itoa(l.conc), "-d"+strconv.Itoa(wrkSeconds(d))+"s", "--latency",
		"-s", l.script, "http://"+t.addr+t.path,
		"--", t.tokens.path, strconv.Itoa(t.tokens.width), strconv.Itoa(t.tokens.n), strconv.FormatUint(rand.Uint64()>>12, 10), mode)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return sample{}, fmt.Errorf("wrk: %v: %s%s", err, out, stderr.String())
	}
	s := sample{loadCPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	for _, line := range strings.Split(string(out), "\n") {
		rest, ok := strings.CutPrefix(line, "sessiond-bench-wrk ")
		if !ok {
			continue
		}
		f := map[string]int64{}
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			f[k], _ = strconv.ParseInt(v, 10, 64)
		}
		s.requests, s.errors = f["requests"], f["errors"]
		s.seconds = float64(f["duration_us"]) / 1e6
		s.p50, s.p99 = time.Duration(f["p50_us"])*time.Microsecond, time.Duration(f["p99_us"])*time.Microsecond
		return s, nil
	}
	return sample{}, fmt.Errorf("wrk printed no result line:\n%s%s", out, stderr.String())
}
