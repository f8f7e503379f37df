// Package metrics is sessiond's Prometheus instrumentation, with the official
// client library, on a registry of its own: served on METRICS_ADDR, never on
// the public API port. A nil *Metrics records nothing, so tests and tools
// that do not scrape need not build one. It knows nothing about HTTP routing
// or Redis keys (only redisx's word for where a read came from).
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sessiond/sessiond/internal/redisx"
)

// Metrics are sessiond's collectors.
type Metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	logins      *prometheus.CounterVec
	revocations *prometheus.CounterVec
	redisErrors *prometheus.CounterVec
	cache       *prometheus.CounterVec
	cacheHit    prometheus.Counter
	cacheMiss   prometheus.Counter
	cacheUnprov prometheus.Counter
	missedFeed  prometheus.CounterFunc

	// byRoute caches each (route, method, status)'s counter and each
	// (route, method)'s histogram: looking a label set up hashes its values,
	// which the hot path should not pay on every request.
	byRoute sync.Map // routeKey → *routeMetrics
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
		Help: "HTTP requests answered, by route (the pattern, not the path), method and status.",
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
	m.revocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_sessions_revoked_total",
		Help: "Sessions ended by kind: logout, logout_all, revoke_one, revoke_others, password_change, force_logout, force_logout_one, disable, password_reset, delete.",
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
	m.reg.MustRegister(m.requests, m.latency, m.logins, m.revocations, m.redisErrors, m.cache,
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
	v, ok := m.byRoute.Load(k)
	if !ok {
		v, _ = m.byRoute.LoadOrStore(k, &routeMetrics{
			requests: m.requests.WithLabelValues(route, method, strconv.Itoa(status)),
			latency:  m.latency.WithLabelValues(route, method),
		})
	}
	r := v.(*routeMetrics)
	r.requests.Inc()
	r.latency.Observe(took.Seconds())
}

// Login records a sign-in attempt's outcome.
func (m *Metrics) Login(outcome string) {
	if m != nil {
		m.logins.WithLabelValues(outcome).Inc()
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
