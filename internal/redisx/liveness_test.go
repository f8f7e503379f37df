package redisx_test

import (
	"net"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/redisx"
)

var live = redisx.LiveOptions{Every: 10 * time.Millisecond, Bound: 50 * time.Millisecond}

// A watched client is proven once its node answers, unproven within the
// bound of its link freezing, and proven again once it heals.
func TestLivenessFollowsTheLink(t *testing.T) {
	rs, err := redistest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	rs.RequireReal(t, "client-side caching needs RESP3 CLIENT TRACKING")
	px := redistest.StartProxy(t, rs.Addr)
	o := rs.Options()
	o.InitAddress = []string{px.Addr}
	c, l, err := redisx.NewClient(o, live)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop(); c.Close() })

	waitUntil(t, "proven", func() bool { return l.Proven(time.Now()) })
	px.Freeze()
	// No PING sent from now on can be answered, so none proves the cache
	// past the bound from here.
	frozen := time.Now()
	if l.Proven(frozen.Add(live.Bound)) {
		t.Errorf("proven %s after the link froze; bound %s", live.Bound, live.Bound)
	}
	waitUntil(t, "unproven after the freeze", func() bool { return !l.Proven(time.Now()) })
	px.Heal()
	waitUntil(t, "proven after the heal", func() bool { return l.Proven(time.Now()) })

	l.Stop()
	if l.Proven(time.Now().Add(live.Bound)) {
		t.Errorf("proven %s after Stop; bound %s", live.Bound, live.Bound)
	}
}

// A nil Liveness (a client nothing watches, or one without a cache) proves
// everything; a client without a cache gets none.
func TestLivenessNil(t *testing.T) {
	var l *redisx.Liveness
	if !l.Proven(time.Now()) {
		t.Error("nil Liveness: not proven")
	}
	l.Stop()
	c, l, err := redisx.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:1"}, DisableCache: true,
		ForceSingleClient: true, Dialer: net.Dialer{Timeout: 100 * time.Millisecond}}, live)
	if err == nil {
		c.Close()
	}
	if l != nil {
		t.Error("a client without a cache got a Liveness")
	}
}

// What would move invalidations, or PINGs, off the cache's connection is
// refused.
func TestLivenessRefusesOtherWires(t *testing.T) {
	for name, o := range map[string]rueidis.ClientOption{
		"BCAST tracking":   {ClientTrackingOptions: []string{"BCAST"}},
		"no pipelining":    {DisableAutoPipelining: true},
		"no heartbeat":     {},
		"bound below beat": {},
	} {
		lo := live
		switch name {
		case "no heartbeat":
			lo.Every = 0
		case "bound below beat":
			lo.Bound = lo.Every / 2
		}
		o.InitAddress = []string{"127.0.0.1:1"}
		if c, _, err := redisx.NewClient(o, lo); err == nil {
			c.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

func waitUntil(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within 5s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// The gate on the hot path: a subtraction, an atomic load and a compare.
func BenchmarkLivenessProven(b *testing.B) {
	rs, err := redistest.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rs.Close)
	rs.RequireReal(b, "client-side caching needs RESP3 CLIENT TRACKING")
	c, l, err := redisx.NewClient(rs.Options(), redisx.LiveOptions{Every: 50 * time.Millisecond, Bound: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Stop(); c.Close() })
	for !l.Proven(time.Now()) {
		time.Sleep(time.Millisecond)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if !l.Proven(now) {
			b.Fatal("unproven")
		}
	}
}
