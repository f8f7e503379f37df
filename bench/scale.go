package main

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/tokens"
)

// -scale: the cost as the sessions grow. For each size, in ascending order,
// sessions are added up to it (through sessions.Store.Create, 50 a user, last
// used two touch intervals ago), then measured: GET /v1/me over random
// tokens of all of them (so requests touch, and a large set outgrows the
// client-side cache), the process's memory, Redis bytes per session, a
// logout-all and GET /v1/sessions of users with 50 sessions.

// scalePerUser is how many sessions each account of -scale has: the
// service's default MAX_SESSIONS_PER_USER, and the list GET /v1/sessions
// reads.
const scalePerUser = 50

// scaleRow is the figures of one size.
type scaleRow struct {
	n, added     int
	created      time.Duration // to create the added sessions
	me, list     sample
	heap, rss    int64
	redisPerSess float64
	// loadPerSess is Redis's growth over the GET /v1/me load, a session:
	// the use records of the sessions it touched, and Redis's tracking of
	// the session reads the replica cached (nothing else in the load writes).
	loadPerSess   float64
	logoutAll     time.Duration
	listPerUser   int
	meDur, lstDur time.Duration
	// meRounds are the req/s of each measured round of -touch steady,
	// whose median round is me.
	meRounds []float64
}

// scaler is the state of a -scale run across its sizes.
type scaler struct {
	b          *bench
	lo         loader
	m          *meter
	mk         *maker
	ts         *tokenSet
	accounts   []account
	have       int   // sessions created so far
	redisBytes int64 // Redis's growth while they were created
	// added were created by the last grow, in took.
	added int
	took  time.Duration
}

func runScale(b *bench) error {
	o := b.o
	lo, err := newLoader(o, b.tmp)
	if err != nil {
		return err
	}
	if o.touch != "steady" {
		stopProfile, err := startProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	mk, err := b.maker()
	if err != nil {
		return err
	}
	top := o.scale[len(o.scale)-1]
	accounts, err := scaleAccounts(b, mk, (top+scalePerUser-1)/scalePerUser)
	if err != nil {
		return err
	}
	ts, err := newTokenSet(b.tmp, "scale")
	if err != nil {
		return err
	}
	defer ts.close()
	m := newMeter(b)
	defer m.Close()
	heap0, rss0 := memory()
	header(o.out, b, lo, "the cost as the sessions grow")
	fmt.Fprintf(o.out, "sessions: %d a user, created through sessions.Store.Create; %s\n", scalePerUser, touchNote(b))
	fmt.Fprintf(o.out, "this process before any session: Go heap %s, RSS (anon) %s; memory below is after a GC, after the GET /v1/me load\n",
		mb(heap0), mb(rss0))

	sc := &scaler{b: b, lo: lo, m: m, mk: mk, ts: ts, accounts: accounts}
	var rows []scaleRow
	for _, n := range o.scale {
		if err := sc.grow(n); err != nil {
			return err
		}
		row, err := sc.measure(n)
		if err != nil {
			return err
		}
		reportScaleRow(b, row)
		rows = append(rows, row)
	}
	reportCurve(b, rows)
	return nil
}

// grow creates sessions up to n, counting Redis's growth meanwhile: the
// loads and logout-alls in between leave traces of their own (events), which
// do not count.
func (sc *scaler) grow(n int) error {
	ctx := sc.b.ctx
	progress("creating sessions %d to %d", sc.have, n)
	before, err := usedMemory(ctx, sc.b.rs)
	if err != nil {
		return err
	}
	owner := func(i int) account { return sc.accounts[i/scalePerUser] }
	start := time.Now()
	if err := sc.mk.create(ctx, sc.have, n, owner, []*tokens.Tokens{sc.b.replicas[0].srv.Tokens}, sc.ts, true); err != nil {
		return err
	}
	after, err := usedMemory(ctx, sc.b.rs)
	if err != nil {
		return err
	}
	sc.redisBytes += after - before
	sc.added, sc.took, sc.have = n-sc.have, time.Since(start), n
	return nil
}

// measure loads and measures the n sessions there are.
func (sc *scaler) measure(n int) (scaleRow, error) {
	b, o := sc.b, sc.b.o
	row := scaleRow{n: n, added: sc.added, created: sc.took, redisPerSess: float64(sc.redisBytes) / float64(n), listPerUser: min(n, scalePerUser),
		meDur: o.dur, lstDur: max(o.dur/4, time.Second)}
	files, err := sc.ts.snapshot()
	if err != nil {
		return row, err
	}
	tf := files[0]
	defer tf.close()
	addr := b.replicas[0].addr
	me := target{addr, "/v1/me", tf, true}
	before, err := usedMemory(b.ctx, b.rs)
	if err != nil {
		return row, err
	}
	if o.touch == "steady" {
		if row.me, row.meRounds, err = sc.steady(me, n); err != nil {
			return row, err
		}
	} else {
		progress("%d sessions: GET /v1/me over random tokens for %s", n, row.meDur)
		b.age()
		if row.me, err = sc.m.measure(func() (sample, error) { return sc.lo.run(me, row.meDur) }); err != nil {
			return row, err
		}
	}
	after, err := usedMemory(b.ctx, b.rs)
	if err != nil {
		return row, err
	}
	row.loadPerSess = float64(after-before) / float64(n)
	row.heap, row.rss = memory()
	progress("%d sessions: logout-all of a user with %d sessions", n, o.bigUser)
	if row.logoutAll, err = timeLogoutAll(b.ctx, sc.mk, o.bigUser); err != nil {
		return row, err
	}
	progress("%d sessions: GET /v1/sessions (%d sessions a user) for %s", n, row.listPerUser, row.lstDur)
	b.age()
	row.list, err = sc.m.measure(func() (sample, error) { return sc.lo.run(target{addr, "/v1/sessions", tf, true}, row.lstDur) })
	return row, err
}

// scaleAccounts writes n bare enabled accounts (no bcrypt: sessions only
// need them to exist) for the sessions of -scale, under the replicas' prefix.
func scaleAccounts(b *bench, mk *maker, n int) ([]account, error) {
	progress("creating %d accounts for %d sessions each", n, scalePerUser)
	created := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	out := make([]account, n)
	err := parallel(n, 64, func(i int) error {
		out[i] = account{id: uuid.NewString(), username: fmt.Sprintf("scale%07d", i), cv: "0", created: created}
		return addAccount(b.ctx, mk.c, mk.layout, out[i].id)
	})
	return out, err
}

func mb(n int64) string {
	if n < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

func reportScaleRow(b *bench, r scaleRow) {
	w := b.o.out
	fmt.Fprintf(w, "\n%d sessions (%d of them created in %s, %.0f/s)\n", r.n, r.added, r.created.Round(100*time.Millisecond),
		float64(r.added)/max(r.created.Seconds(), 1e-9))
	fmt.Fprintf(w, "  %-30s %9s %9s %9s %9s %9s %9s %10s %7s\n", "", "req/s", "p50", "p99", "CPU/req", "Redis/req", "touched", "cache miss", "errors")
	for _, l := range []struct {
		name string
		s    sample
	}{{fmt.Sprintf("GET /v1/me (%s)", r.meDur), r.me}, {fmt.Sprintf("GET /v1/sessions, %d (%s)", r.listPerUser, r.lstDur), r.list}} {
		s := l.s
		fmt.Fprintf(w, "  %-30s %9.0f %9s %9s %9s %9s %8.1f%% %9.1f%% %7d\n", l.name, s.rps(), ms(s.p50), ms(s.p99),
			us(s.perReq(s.cpu)), us(s.perReq(s.redisCPU)), pct(s.touches, s.requests), pct(s.reads, s.requests), s.errors)
	}
	if len(r.meRounds) > 0 {
		fmt.Fprintf(w, "  GET /v1/me is the median of %d measured rounds; each round's req/s: %s\n", len(r.meRounds), joinRates(r.meRounds))
	}
	if r.me.loadCPU > 0 {
		fmt.Fprintf(w, "  wrk's CPU: %s a request of GET /v1/me\n", us(r.me.perReq(r.me.loadCPU)))
	}
	fmt.Fprintf(w, "  this process after GET /v1/me: Go heap in use %s, RSS (anon) %s; Redis: %.0f bytes a session as created, %+.0f over the load (use recorded)\n",
		mb(r.heap), mb(r.rss), r.redisPerSess, r.loadPerSess)
	fmt.Fprintf(w, "  logout-all of %d sessions: %s; others took %s of the machine during GET /v1/me\n",
		b.o.bigUser, r.logoutAll.Round(10*time.Microsecond), share(r.me.others))
}

// reportCurve prints the sizes side by side, one line each: the curve.
func reportCurve(b *bench, rows []scaleRow) {
	w := b.o.out
	fmt.Fprintf(w, "\nthe curve (GET /v1/me; list = GET /v1/sessions of %d; logout-all of %d)\n", scalePerUser, b.o.bigUser)
	fmt.Fprintf(w, "%10s %9s %9s %9s %8s %10s %10s %10s %12s %11s %9s %9s %13s\n", "sessions", "req/s", "p99", "CPU/req",
		"touched", "cache miss", "Go heap", "RSS anon", "Redis B/sess", "logout-all", "list p50", "list p99", "req/s / first")
	for _, r := range rows {
		me := r.me
		fmt.Fprintf(w, "%10d %9.0f %9s %9s %7.1f%% %9.1f%% %10s %10s %12.0f %11s %9s %9s %12.2fx\n", r.n, me.rps(), ms(me.p99),
			us(me.perReq(me.cpu)), pct(me.touches, me.requests), pct(me.reads, me.requests), mb(r.heap), mb(r.rss),
			r.redisPerSess, r.logoutAll.Round(10*time.Microsecond), ms(r.list.p50), ms(r.list.p99), me.rps()/max(rows[0].me.rps(), 1e-9))
	}
}

func pct(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

// steady measures GET /v1/me over the n sessions in a steady state: every
// session is used once (the warm-up: each token verified, each session read
// and, when due, touched), then the load runs unmeasured for two touch
// intervals (at most two minutes), so that by the measured rounds each
// session in use is written once a touch interval and read again after each
// write, as in production, instead of every request being a session's first. It returns the median round (by
// req/s) and every round's req/s.
func (sc *scaler) steady(t target, n int) (sample, []float64, error) {
	o := sc.b.o
	pace, settle := steadyPhases(sc.b.cfg)
	progress("%d sessions: warm-up, every token once, over at least %s", n, pace)
	start := time.Now()
	if err := warmUp(t, o.conc, pace); err != nil {
		return sample{}, nil, err
	}
	progress("%d sessions: warm-up took %s; GET /v1/me over random tokens for %s unmeasured", n, time.Since(start).Round(time.Second), settle)
	if _, err := sc.lo.run(t, settle); err != nil {
		return sample{}, nil, err
	}
	d := max(o.dur/time.Duration(o.rounds), time.Second)
	// The profile of a steady run is of the measured rounds, a file a size
	// (the largest's at the path given), so that sizes can be compared.
	path := o.cpuProfile
	if path != "" && n != o.scale[len(o.scale)-1] {
		path = fmt.Sprintf("%s.%d", path, n)
	}
	stop, err := startProfile(path)
	if err != nil {
		return sample{}, nil, err
	}
	defer stop()
	var rounds []sample
	for i := range o.rounds {
		progress("%d sessions: GET /v1/me over random tokens, round %d of %d (%s)", n, i+1, o.rounds, d)
		s, err := sc.m.measure(func() (sample, error) { return sc.lo.run(t, d) })
		if err != nil {
			return sample{}, nil, err
		}
		rounds = append(rounds, s)
	}
	rps := over(rounds, sample.rps)
	slices.SortFunc(rounds, func(a, b sample) int { return cmp.Compare(a.rps(), b.rps()) })
	return rounds[len(rounds)/2], rps, nil
}

// steadyPhases are how long -touch steady paces its warm-up and lets the
// load settle. The sessions were last used at random within the last touch
// interval (maker), and the warm-up's own touches are spread over at least a
// minute of it: their uses fall due evenly. Settling lets those of the
// warm-up fall due at least once, up to two minutes.
func steadyPhases(cfg server.Config) (pace, settle time.Duration) {
	interval := touchInterval(cfg)
	return min(interval, time.Minute), min(2*interval, 2*time.Minute)
}

// warmUp sends GET t.path once with each token of t, in a random order, over
// conc connections, paced to take at least over: the uses it records are
// spread over that time, instead of falling due again all at once one touch
// interval later.
func warmUp(t target, conc int, over time.Duration) error {
	client := &fasthttp.HostClient{Addr: t.addr, MaxConns: conc}
	order := rand.Perm(t.tokens.n)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	// A million tokens take minutes: say how far it got now and then.
	defer every(10*time.Second, func() {
		progress("  warmed %d of %d sessions", min(next.Load(), int64(len(order))), len(order))
	})()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(res)
			req.SetRequestURI("http://" + t.addr + t.path)
			auth := []byte("Bearer ")
			for i := next.Add(1) - 1; i < int64(len(order)); i = next.Add(1) - 1 {
				if at := start.Add(over * time.Duration(i) / time.Duration(len(order))); time.Until(at) > 0 {
					time.Sleep(time.Until(at))
				}
				auth = append(auth[:len("Bearer ")], t.tokens.token(order[i])...)
				req.Header.SetBytesV(fasthttp.HeaderAuthorization, auth)
				if err := client.Do(req, res); err != nil || res.StatusCode() != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("warm-up: %d of %d requests failed", f, len(order))
	}
	return nil
}

func joinRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, ", ")
}
