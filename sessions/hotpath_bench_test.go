package sessions_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/sessions"
)

// benchStore returns a store over c with one user and one session, its
// cache gated by live (nil: not gated).
func benchStore(b *testing.B, c rueidis.Client, live *redisx.Liveness) (*sessions.Store, sessions.Session) {
	b.Helper()
	p := redistest.Prefix(b)
	st := newStore(b, c, p, sessions.Options{Liveness: live})
	ctx := context.Background()
	c.Do(ctx, c.B().Hset().Key(keys.New(p).User("u1")).FieldValue().FieldValue(keys.UserID, "u1").FieldValue(keys.UserVersion, "0").Build())
	s, err := st.Create(ctx, "u1", "0", sessions.Meta{DeviceName: "Alice's iPhone", Platform: "ios", IP: "203.0.113.7"})
	if err != nil {
		b.Fatal(err)
	}
	return st, s
}

func benchCheck(b *testing.B, c rueidis.Client, live *redisx.Liveness) {
	st, s := benchStore(b, c, live)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := st.Use(ctx, "u1", s.ID, "203.0.113.7"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// The hot path with the session in the client-side cache: no round trip.
// The client is the service's (redisx.NewClient, with the heartbeat and
// bound server.openRedis uses), so every check passes its liveness gate.
func BenchmarkCheckCached(b *testing.B) {
	srv.RequireReal(b, "client-side caching needs RESP3 CLIENT TRACKING")
	c, live, err := redisx.NewClient(srv.Options(), redisx.LiveOptions{Every: 50 * time.Millisecond, Bound: 200 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { live.Stop(); c.Close() })
	benchCheck(b, c, live)
}

// The same with every check a round trip to Redis.
func BenchmarkCheckUncached(b *testing.B) {
	o := srv.Options()
	o.DisableCache = true
	c, err := rueidis.NewClient(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	benchCheck(b, c, nil)
}

func BenchmarkCreate(b *testing.B) {
	st, _ := benchStore(b, srv.Client(b), nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.Create(ctx, "u1", "0", sessions.Meta{DeviceName: "d", IP: "203.0.113.7"}); err != nil {
			b.Fatal(err)
		}
	}
}
