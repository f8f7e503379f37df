package main

import (
	"os"
	"runtime/pprof"
	"time"

	"github.com/sessiond/sessiond/tokens"
)

// The comparison: sessiond beside the equal-duty baseline and the bare
// server, in alternating rounds, then the measurements that need no
// comparison (revocation propagation, Redis bytes per session, logout-all).

var paths = []string{"/v1/me", "/v1/auth/verify"}

// side is one server the load is sent to, and the tokens it is sent.
type side struct {
	name, label string
	addr        string
	tokens      *tokenFile
}

// extras are the figures besides the comparison.
type extras struct {
	logBytes   int64 // the loaded replica's request log during the load; -1 without a log
	prop       []time.Duration
	perSession float64
	encoding   string
	logoutAll  time.Duration
}

func runCompare(b *bench) error {
	lo, err := newLoader(b.o, b.tmp)
	if err != nil {
		return err
	}
	sides, err := startSides(b)
	if err != nil {
		return err
	}
	var logBefore int64
	if f := b.replicas[0].logFile; f != "" {
		logBefore = fileSize(f)
	}
	stopProfile, err := startProfile(b.o.cpuProfile)
	if err != nil {
		return err
	}
	runs, err := loadRounds(b, lo, sides)
	stopProfile()
	if err != nil {
		return err
	}
	ex := extras{logBytes: -1}
	if f := b.replicas[0].logFile; f != "" {
		ex.logBytes = fileSize(f) - logBefore
	}
	if err := measureExtras(b, &ex); err != nil {
		return err
	}
	reportCompare(b, lo, sides, runs, ex)
	return nil
}

// startSides creates the load's sessions and tokens, starts the equal-duty
// baseline and the bare server, and checks that each answers as sessiond
// does. sides[0] is sessiond.
func startSides(b *bench) ([]side, error) {
	ours := b.replicas[0]
	ourTokens, bareTokens, err := loadSessions(b)
	if err != nil {
		return nil, err
	}
	equalAddr, stopEqual, err := equalDuty(ours.srv.Tokens)
	if err != nil {
		return nil, err
	}
	b.defer_(stopEqual)
	bareAddr, stopBare, err := bare([]byte(secret), b.cfg.JWTIssuer, b.cfg.JWTAudience)
	if err != nil {
		return nil, err
	}
	b.defer_(stopBare)
	for _, p := range paths {
		if err := sameAnswer(ours.addr, equalAddr, p, string(ourTokens.token(0))); err != nil {
			return nil, err
		}
		if err := bareAgrees(ours.addr, bareAddr, p, string(ourTokens.token(0)), string(bareTokens.token(0))); err != nil {
			return nil, err
		}
	}
	logged := map[string]string{"file": "shipped defaults", "discard": "no log"}[b.o.logging]
	return []side{
		{name: "sessiond", label: "sessiond (" + logged + ")", addr: ours.addr, tokens: ourTokens},
		{name: "equal-duty", label: "equal-duty (signature only)", addr: equalAddr, tokens: ourTokens},
		{name: "bare", label: "bare (fiber.New, jwt.Parse)", addr: bareAddr, tokens: bareTokens},
	}, nil
}

// loadSessions creates -users accounts and -tokens sessions over them, and
// returns their token files: sessiond's (the equal-duty baseline's too), and
// the bare server's, the same file with -alg hs256, else one of HS256 tokens
// for the same sessions (the bare server checks HS256 with the bench's
// secret).
func loadSessions(b *bench) (ours, bare *tokenFile, err error) {
	ctx, o := b.ctx, b.o
	replica := b.replicas[0].srv
	progress("creating %d users (bcrypt cost %d)", o.users, b.cfg.BcryptCost)
	us, err := createUsers(ctx, replica.Users, o.users)
	if err != nil {
		return nil, nil, err
	}
	signers, names := []*tokens.Tokens{replica.Tokens}, []string{"sessiond"}
	if o.alg != "hs256" {
		hs, err := tokens.New(tokens.Keyring{Secret: []byte(secret)}, b.cfg.JWTIssuer, b.cfg.JWTAudience)
		if err != nil {
			return nil, nil, err
		}
		signers, names = append(signers, hs), append(names, "bare")
	}
	mk, err := b.maker()
	if err != nil {
		return nil, nil, err
	}
	ts, err := newTokenSet(b.tmp, names...)
	if err != nil {
		return nil, nil, err
	}
	defer ts.close()
	progress("creating %d sessions over %d users, last used %s ago (so their first request touches)", o.tokens, o.users, mk.age)
	owner := func(i int) account {
		u := us[i%len(us)]
		return account{id: u.ID, username: u.Username, cv: u.CredentialVersion, created: u.CreatedAt}
	}
	if err := mk.create(ctx, 0, o.tokens, owner, signers, ts, o.tokens >= 100_000); err != nil {
		return nil, nil, err
	}
	files, err := ts.snapshot()
	if err != nil {
		return nil, nil, err
	}
	for _, f := range files {
		b.defer_(f.close)
	}
	return files[0], files[len(files)-1], nil
}

// loadRounds loads every side on every path in -rounds rounds of
// -duration/-rounds each; the sides go in order in even rounds and in
// reverse in odd ones, so a slow moment of the machine, or a trend over the
// run, falls on all of them alike. It returns runs[path][side][round].
func loadRounds(b *bench, lo loader, sides []side) ([][][]sample, error) {
	m := newMeter(b)
	defer m.Close()
	rounds, d := b.o.rounds, b.o.dur/time.Duration(b.o.rounds)
	runs := make([][][]sample, len(paths))
	for i := range runs {
		runs[i] = make([][]sample, len(sides))
	}
	for r := range rounds {
		order := make([]int, len(sides))
		for k := range order {
			order[k] = k
			if r%2 == 1 {
				order[k] = len(sides) - 1 - k
			}
		}
		for i, p := range paths {
			progress("GET %s, round %d of %d: %s, %s, %s (%s each)", p, r+1, rounds,
				sides[order[0]].name, sides[order[1]].name, sides[order[2]].name, d)
			for _, k := range order {
				if k == 0 { // sessiond
					b.age()
				}
				t := target{addr: sides[k].addr, path: p, tokens: sides[k].tokens}
				s, err := m.measure(func() (sample, error) { return lo.run(t, d) })
				if err != nil {
					return nil, err
				}
				runs[i][k] = append(runs[i][k], s)
			}
		}
	}
	return runs, nil
}

// measureExtras times revocation propagation, Redis memory per session and
// logout-all.
func measureExtras(b *bench, ex *extras) error {
	var err error
	o := b.o
	progress("timing %d revocations through replica A as seen by replica B", o.nrev)
	if ex.prop, err = propagation([2]string{b.replicas[0].addr, b.replicas[1].addr}, o.nrev, o.users); err != nil {
		return err
	}
	mk, err := b.maker()
	if err != nil {
		return err
	}
	progress("creating %d sessions to measure Redis memory", o.nsess)
	if ex.perSession, ex.encoding, err = memoryPerSession(b.ctx, b.rs, mk, o.nsess); err != nil {
		return err
	}
	progress("creating %d sessions for one user, then logging out everywhere", o.bigUser)
	ex.logoutAll, err = timeLogoutAll(b.ctx, mk, o.bigUser)
	return err
}

// startProfile starts a CPU profile to path ("" for none); stop ends it.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
