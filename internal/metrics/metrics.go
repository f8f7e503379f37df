// Package metrics is sessiond's Prometheus instrumentation, with the official
// client library, on a registry of its own: served on METRICS_ADDR, never on
// the public API port. A nil *Metrics records nothing, so tests and tools
// that do not scrape need not build one. It knows nothing about HTTP routing
// or Redis keys (only redisx's word for where a read came from).
package metrics

import (
	"maps"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sessiond/sessiond/internal/redisx"
)

// Metrics are sessiond's collectors.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	logins   *prometheus.CounterVec
	// secondFactors counts second-factor checks by method and outcome;
	// mfaChanges counts factors enrolled, removed and reset.
	secondFactors *prometheus.CounterVec
	mfaChanges    *prometheus.CounterVec
	clientAuth    *prometheus.CounterVec
	refreshes     *prometheus.CounterVec
	revocations   *prometheus.CounterVec
	redisErrors   *prometheus.CounterVec
	cache         *prometheus.CounterVec
	cacheHit      prometheus.Counter
	cacheMiss     prometheus.Counter
	touchOOM      prometheus.Counter
	touchFailed   prometheus.Counter
	cacheUnprov   prometheus.Counter
	missedFeed    prometheus.CounterFunc

	// byRoute caches each (route, method, status)'s counter and each
	// (route, method)'s histogram: looking a label set up hashes its values,
	// which the hot path should not pay on every request. Its map is never
	// changed once published: a new label set (a few dozen in all) copies
	// it, under addMu, so a request reads it with one atomic load and a
	// plain map lookup (sync.Map hashed the key as an interface).
	byRoute atomic.Pointer[map[routeKey]*routeMetrics]
	addMu   sync.Mutex
}

type routeKey struct {
	route, method string
	status        int
}

type routeMetrics struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// New registers sessiond's collectors, and Go's and the process's, on a new
// registry. missedEvents reports how many audit events missed the
// cross-user feed (nil: none counted).
func New(missedEvents func() int64) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_http_requests_total",
		Help: "HTTP requests answered, by route (the pattern the path matched, also for a refused token or a 405; unmatched when none), method and status.",
	}, []string{"route", "method", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sessiond_http_request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route and method.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route", "method"})
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_logins_total",
		Help: "Sign-in attempts by outcome: succeeded, failed, throttled, disabled, unavailable.",
	}, []string{"outcome"})
	m.secondFactors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_second_factors_total",
		Help: "Second-factor checks (sign-in and step-up) by method (totp, recovery_code) and outcome (succeeded, failed, throttled, unavailable).",
	}, []string{"method", "outcome"})
	m.mfaChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_mfa_changes_total",
		Help: "Second factors enrolled, removed by their owner, and reset by an admin.",
	}, []string{"change"})
	m.clientAuth = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_client_auth_total",
		Help: "Client authentications (introspection clients, HTTP Basic) by outcome: succeeded, failed, throttled, unavailable.",
	}, []string{"outcome"})
	m.refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_refreshes_total",
		Help: "Refresh-token refreshes by outcome: succeeded, retried (a spent token within the reuse grace), reuse_detected (a spent token after it: the session was ended), refused, invalid_dpop_proof, throttled, unavailable, internal.",
	}, []string{"outcome"})
	m.revocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_sessions_revoked_total",
		Help: "Sessions ended by kind: logout, logout_all, revoke_one, revoke_others, password_change, force_logout, force_logout_one, disable, password_reset, delete, refresh_reuse.",
	}, []string{"kind"})
	m.redisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_redis_errors_total",
		Help: "Requests that failed closed (503) because Redis could not answer: timeout (no answer within REDIS_TIMEOUT) or error (refused, connection lost, out of memory).",
	}, []string{"kind"})
	m.cache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_session_cache_reads_total",
		Help: "Session checks by where the session came from: hit (the client-side cache), miss (a round trip to Redis) or unproven (a round trip because the cache's connection had not proven itself live within the bound: a slow or cut link to Redis).",
	}, []string{"result"})
	m.cacheHit, m.cacheMiss = m.cache.WithLabelValues("hit"), m.cache.WithLabelValues("miss")
	m.cacheUnprov = m.cache.WithLabelValues("unproven")
	m.touchOOM = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sessiond_session_touches_refused_total",
		Help: "Writes of a live session's use (last seen, idle expiry) that Redis refused for want of memory (maxmemory): the request was served, the use not recorded.",
	})
	m.touchFailed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sessiond_session_touches_failed_total",
		Help: "Writes of a live session's use that failed otherwise (Redis did not answer in time, the connection was lost, or more writes were waiting than the queue holds): the request was served; its session's next request tries again.",
	})
	m.reg.MustRegister(m.requests, m.latency, m.logins, m.secondFactors, m.mfaChanges, m.clientAuth, m.refreshes, m.revocations, m.redisErrors, m.cache, m.touchOOM, m.touchFailed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if missedEvents != nil {
		m.missedFeed = prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sessiond_audit_feed_missed_total",
			Help: "Audit events recorded in their user's history but not copied to the cross-user feed (Redis failed in between).",
		}, func() float64 { return float64(missedEvents()) })
		m.reg.MustRegister(m.missedFeed)
	}
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Request records one answered request.
func (m *Metrics) Request(route, method string, status int, took time.Duration) {
	if m == nil {
		return
	}
	k := routeKey{route, method, status}
	var r *routeMetrics
	if known := m.byRoute.Load(); known != nil {
		r = (*known)[k]
	}
	if r == nil {
		r = m.addRoute(k)
	}
	r.requests.Inc()
	r.latency.Observe(took.Seconds())
}

// addRoute publishes a copy of byRoute with k in it.
func (m *Metrics) addRoute(k routeKey) *routeMetrics {
	m.addMu.Lock()
	defer m.addMu.Unlock()
	next := map[routeKey]*routeMetrics{}
	if known := m.byRoute.Load(); known != nil {
		if r := (*known)[k]; r != nil {
			return r // added meanwhile
		}
		maps.Copy(next, *known)
	}
	r := &routeMetrics{
		requests: m.requests.WithLabelValues(k.route, k.method, strconv.Itoa(k.status)),
		latency:  m.latency.WithLabelValues(k.route, k.method),
	}
	next[k] = r
	m.byRoute.Store(&next)
	return r
}

// Login records a sign-in attempt's outcome; "" records nothing.
func (m *Metrics) Login(outcome string) {
	if m != nil && outcome != "" {
		m.logins.WithLabelValues(outcome).Inc()
	}
}

// SecondFactor records a second-factor check's outcome; "" records nothing.
func (m *Metrics) SecondFactor(method, outcome string) {
	if m != nil && outcome != "" && method != "" {
		m.secondFactors.WithLabelValues(method, outcome).Inc()
	}
}

// MFAChange records a factor enrolled, removed or reset.
func (m *Metrics) MFAChange(change string) {
	if m != nil {
		m.mfaChanges.WithLabelValues(change).Inc()
	}
}

// ClientAuth records a client authentication's outcome; "" records nothing.
func (m *Metrics) ClientAuth(outcome string) {
	if m != nil && outcome != "" {
		m.clientAuth.WithLabelValues(outcome).Inc()
	}
}

// Refresh records a refresh's outcome.
func (m *Metrics) Refresh(outcome string) {
	if m != nil {
		m.refreshes.WithLabelValues(outcome).Inc()
	}
}

// Revoked records n sessions ended, of a kind.
func (m *Metrics) Revoked(kind string, n int) {
	if m != nil && n > 0 {
		m.revocations.WithLabelValues(kind).Add(float64(n))
	}
}

// RedisError records a request that failed closed, by kind.
func (m *Metrics) RedisError(timeout bool) {
	if m == nil {
		return
	}
	kind := "error"
	if timeout {
		kind = "timeout"
	}
	m.redisErrors.WithLabelValues(kind).Inc()
}

// CacheRead records where a session check's read came from.
func (m *Metrics) CacheRead(from redisx.Source) {
	if m == nil {
		return
	}
	switch from {
	case redisx.Cache:
		m.cacheHit.Inc()
	case redisx.Unproven:
		m.cacheUnprov.Inc()
	default:
		m.cacheMiss.Inc()
	}
}

// Touches exports how many uses of sessions were recorded (written, not
// queued), by how, read at each scrape from the store's own counts.
func (m *Metrics) Touches(read func() (plain, scripted int64)) {
	if m != nil {
		m.reg.MustRegister(touches{read})
	}
}

var touchesWritten = prometheus.NewDesc("sessiond_session_touches_total",
	"Uses of live sessions recorded in Redis, by how: plain (the use record alone, a few commands) or script (touch.lua: the first this replica records for a session, or one that must also make the session hash outlive the session's new end).",
	[]string{"write"}, nil)

type touches struct {
	read func() (plain, scripted int64)
}

func (touches) Describe(ch chan<- *prometheus.Desc) { ch <- touchesWritten }

func (c touches) Collect(ch chan<- prometheus.Metric) {
	plain, scripted := c.read()
	ch <- prometheus.MustNewConstMetric(touchesWritten, prometheus.CounterValue, float64(plain), "plain")
	ch <- prometheus.MustNewConstMetric(touchesWritten, prometheus.CounterValue, float64(scripted), "script")
}

// TokenCacheStats are the verified-token cache's counts.
type TokenCacheStats struct {
	Hits, Misses uint64
	Entries      int
	Bytes        int64
}

// TokenCache exports the verified-token cache's counts, read at each
// scrape: the cache counts under locks its lookups take anyway, so the hot
// path pays no shared counter.
func (m *Metrics) TokenCache(read func() TokenCacheStats) {
	if m != nil {
		m.reg.MustRegister(tokenCache{read})
	}
}

var (
	tokenCacheReads = prometheus.NewDesc("sessiond_token_cache_reads_total",
		"Token verifications by where the answer came from: hit (the verified-token cache) or miss (a signature check and a claims decode: new, evicted, expired and invalid tokens).",
		[]string{"result"}, nil)
	tokenCacheEntries = prometheus.NewDesc("sessiond_token_cache_entries",
		"Tokens held by the verified-token cache.", nil, nil)
	tokenCacheBytes = prometheus.NewDesc("sessiond_token_cache_bytes",
		"Bytes held by the verified-token cache, as it counts them against TOKEN_CACHE_MB.", nil, nil)
)

type tokenCache struct{ read func() TokenCacheStats }

func (tokenCache) Describe(ch chan<- *prometheus.Desc) {
	ch <- tokenCacheReads
	ch <- tokenCacheEntries
	ch <- tokenCacheBytes
}

func (c tokenCache) Collect(ch chan<- prometheus.Metric) {
	st := c.read()
	ch <- prometheus.MustNewConstMetric(tokenCacheReads, prometheus.CounterValue, float64(st.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(tokenCacheReads, prometheus.CounterValue, float64(st.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(tokenCacheEntries, prometheus.GaugeValue, float64(st.Entries))
	ch <- prometheus.MustNewConstMetric(tokenCacheBytes, prometheus.GaugeValue, float64(st.Bytes))
}

// TouchRefused records a live session's use that Redis refused to record
// for want of memory.
func (m *Metrics) TouchRefused() {
	if m != nil {
		m.touchOOM.Inc()
	}
}

// TouchFailed records n writes of sessions' use that failed for another
// reason than memory.
func (m *Metrics) TouchFailed(n int) {
	if m != nil {
		m.touchFailed.Add(float64(n))
	}
}
