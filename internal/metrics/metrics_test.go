package metrics

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// Requests counted from many goroutines at once, on label sets first seen
// concurrently, all land in their series.
func TestRequestConcurrent(t *testing.T) {
	m := New(nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				m.Request(fmt.Sprint("/r", (i+g)%10), "GET", 200+(i%3), time.Millisecond)
			}
		}()
	}
	wg.Wait()
	out := scrape(t, m)
	for r := range 10 {
		for s := range 3 {
			line := fmt.Sprintf(`sessiond_http_requests_total{method="GET",route="/r%d",status="%d"} `, r, 200+s)
			if !strings.Contains(out, line) {
				t.Fatalf("no %s in\n%s", line, out)
			}
		}
	}
	if !strings.Contains(out, "sessiond_http_request_duration_seconds_count{method=\"GET\",route=\"/r0\"} 800\n") {
		t.Fatalf("want 800 requests of /r0 timed:\n%s", out)
	}
}

// The token cache's counts are read at each scrape.
func TestTokenCache(t *testing.T) {
	m := New(nil)
	st := TokenCacheStats{Hits: 7, Misses: 2, Entries: 2, Bytes: 2048}
	m.TokenCache(func() TokenCacheStats { return st })
	st.Hits = 9
	out := scrape(t, m)
	for _, line := range []string{`sessiond_token_cache_reads_total{result="hit"} 9`, `sessiond_token_cache_reads_total{result="miss"} 2`,
		"sessiond_token_cache_entries 2", "sessiond_token_cache_bytes 2048"} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("no %q in the scrape", line)
		}
	}
	var none *Metrics
	none.TokenCache(func() TokenCacheStats { return st }) // a nil Metrics records nothing
}
