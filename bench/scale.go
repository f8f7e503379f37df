package main

import (
	"fmt"
	"time"

	"github.com/google/uuid"

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
	n, added      int
	created       time.Duration // to create the added sessions
	me, list      sample
	heap, rss     int64
	redisPerSess  float64
	logoutAll     time.Duration
	listPerUser   int
	meDur, lstDur time.Duration
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
	stopProfile, err := startProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
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
	m := newMeter(b.rs)
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
	progress("%d sessions: GET /v1/me over random tokens for %s", n, row.meDur)
	b.age()
	if row.me, err = sc.m.measure(func() (sample, error) { return sc.lo.run(target{addr, "/v1/me", tf}, row.meDur) }); err != nil {
		return row, err
	}
	row.heap, row.rss = memory()
	progress("%d sessions: logout-all of a user with %d sessions", n, o.bigUser)
	if row.logoutAll, err = timeLogoutAll(b.ctx, sc.mk, o.bigUser); err != nil {
		return row, err
	}
	progress("%d sessions: GET /v1/sessions (%d sessions a user) for %s", n, row.listPerUser, row.lstDur)
	b.age()
	row.list, err = sc.m.measure(func() (sample, error) { return sc.lo.run(target{addr, "/v1/sessions", tf}, row.lstDur) })
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
	if r.me.loadCPU > 0 {
		fmt.Fprintf(w, "  wrk's CPU: %s a request of GET /v1/me\n", us(r.me.perReq(r.me.loadCPU)))
	}
	fmt.Fprintf(w, "  this process after GET /v1/me: Go heap in use %s, RSS (anon) %s; Redis: %.0f bytes a session\n",
		mb(r.heap), mb(r.rss), r.redisPerSess)
	fmt.Fprintf(w, "  logout-all of %d sessions: %s; others took %s of the machine during GET /v1/me\n",
		b.o.bigUser, r.logoutAll.Round(10*time.Microsecond), share(r.me.others))
}

// reportCurve prints the sizes side by side, one line each: the curve.
func reportCurve(b *bench, rows []scaleRow) {
	w := b.o.out
	fmt.Fprintf(w, "\nthe curve (GET /v1/me; list = GET /v1/sessions of %d; logout-all of %d)\n", scalePerUser, b.o.bigUser)
	fmt.Fprintf(w, "%10s %9s %9s %9s %8s %10s %10s %10s %12s %11s %9s %9s\n", "sessions", "req/s", "p99", "CPU/req",
		"touched", "cache miss", "Go heap", "RSS anon", "Redis B/sess", "logout-all", "list p50", "list p99")
	for _, r := range rows {
		me := r.me
		fmt.Fprintf(w, "%10d %9.0f %9s %9s %7.1f%% %9.1f%% %10s %10s %12.0f %11s %9s %9s\n", r.n, me.rps(), ms(me.p99),
			us(me.perReq(me.cpu)), pct(me.touches, me.requests), pct(me.reads, me.requests), mb(r.heap), mb(r.rss),
			r.redisPerSess, r.logoutAll.Round(10*time.Microsecond), ms(r.list.p50), ms(r.list.p99))
	}
}

func pct(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}
