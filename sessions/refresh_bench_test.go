package sessions_test

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/sessions"
)

// refreshStore is a store with refresh keys and one account, uid, under
// prefix.
func refreshStore(b testing.TB) (st *sessions.Store, uid, prefix string) {
	b.Helper()
	c := srv.Client(b)
	p := redistest.Prefix(b)
	st = newStore(b, c, p, sessions.Options{RefreshKeys: [][]byte{bytes.Repeat([]byte("k"), 32)}, ReuseGrace: 30 * time.Second})
	uid = uuid.NewString()
	err := c.Do(context.Background(), c.B().Hset().Key(keys.New(p).User(uid)).FieldValue().FieldValue(keys.UserID, uid).
		FieldValue(keys.UserName, "alice").FieldValue(keys.UserCreated, "1700000000000").FieldValue(keys.UserVersion, "0").Build()).Error()
	if err != nil {
		b.Fatal(err)
	}
	return st, uid, p
}

// Refreshes, each goroutine (8 per core) rotating the token of a session of
// its own: throughput (refreshes/s) and the p99 of one refresh, which is one
// script in the session's slot. On a cluster (SESSIOND_TEST_CLUSTER_ADDRS)
// the sessions are one user's, so one master serves them: the figure is a
// slot's, and more users spread over the masters.
//
//	go test -run '^$' -bench BenchmarkRefresh -benchtime 5s ./sessions
func BenchmarkRefresh(b *testing.B) {
	st, uid, _ := refreshStore(b)
	ctx := context.Background()
	var (
		mu  sync.Mutex
		lat []time.Duration
	)
	b.ReportAllocs()
	b.SetParallelism(8)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		s, err := st.Create(ctx, uid, "0", sessions.Meta{DeviceName: "Alice's iPhone", Platform: "ios", IP: "203.0.113.7", Refresh: true})
		if err != nil {
			b.Error(err)
			return
		}
		tok := s.RefreshToken
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			r, err := st.Refresh(ctx, tok, sessions.Presenter{IP: "203.0.113.7", UserAgent: "MyApp/3.2"})
			mine = append(mine, time.Since(t0))
			if err != nil || r.Retry {
				b.Errorf("refresh: %v (a retry: %v)", err, r.Retry)
				return
			}
			tok = r.RefreshToken
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "refreshes/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}
