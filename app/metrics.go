package app

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/redis/go-redis/v9"
)

// newRegistry returns the registry of the ops listener's /metrics with the
// Go runtime and process collectors and idsync_build_info, client_golang's
// version collector: labels version (the build's, from main.version),
// revision (the VCS revision Go stamped into the binary, if any), branch,
// goversion, goos, goarch and tags. The version is passed as a label
// rather than set in prometheus/common/version's variables, which are
// process globals.
func newRegistry(version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("idsync", versioncollector.WithExtraConstLabels(prometheus.Labels{"version": version})),
	)
	return reg
}

// poolStatser is the part of a go-redis client redisPoolCollector reads;
// every go-redis client (standalone, cluster, sentinel) has it.
type poolStatser interface {
	PoolStats() *redis.PoolStats
}

// redisPoolCollector exports the connection pool statistics of a go-redis
// client at each scrape (for a cluster client, summed over its nodes'
// pools). It holds no state of its own; Collect is safe for concurrent use
// as PoolStats is.
type redisPoolCollector struct {
	client                         poolStatser
	hits, misses, timeouts, stale  *prometheus.Desc
	waits, waitSeconds             *prometheus.Desc
	total, idle, pending, unusable *prometheus.Desc
}

// newRedisPoolCollector returns the collector of c's pool statistics,
// idsync_redis_pool_*.
func newRedisPoolCollector(c poolStatser) *redisPoolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("idsync_redis_pool_"+name, help, nil, nil)
	}
	return &redisPoolCollector{
		client:      c,
		hits:        d("hits_total", "Times a free connection was found in the Redis pool."),
		misses:      d("misses_total", "Times no free connection was found in the Redis pool (a new one was dialled or waited for)."),
		timeouts:    d("timeouts_total", "Times waiting for a Redis pool connection timed out."),
		stale:       d("stale_connections_total", "Stale connections removed from the Redis pool."),
		unusable:    d("unusable_connections_total", "Connections found unusable when taken from the Redis pool."),
		waits:       d("waits_total", "Times a command waited for a Redis pool connection."),
		waitSeconds: d("wait_seconds_total", "Time spent waiting for Redis pool connections."),
		total:       d("connections", "Connections in the Redis pool, idle or in use."),
		idle:        d("idle_connections", "Idle connections in the Redis pool."),
		pending:     d("pending_requests", "Commands waiting for a Redis pool connection now."),
	}
}

// Describe implements prometheus.Collector.
func (c *redisPoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hits, c.misses, c.timeouts, c.stale, c.unusable, c.waits, c.waitSeconds, c.total, c.idle, c.pending} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *redisPoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.client.PoolStats()
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(c.hits, float64(s.Hits))
	counter(c.misses, float64(s.Misses))
	counter(c.timeouts, float64(s.Timeouts))
	counter(c.stale, float64(s.StaleConns))
	counter(c.unusable, float64(s.Unusable))
	counter(c.waits, float64(s.WaitCount))
	counter(c.waitSeconds, time.Duration(s.WaitDurationNs).Seconds())
	gauge(c.total, float64(s.TotalConns))
	gauge(c.idle, float64(s.IdleConns))
	gauge(c.pending, float64(s.PendingRequests))
}

// httpMetrics counts and times the requests of one listener. Routes are
// labelled by the pattern that matched them, never by the raw path (which
// holds ids), so the label set stays small and fixed.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newHTTPMetrics registers idsync_<listener>_requests_total{route, method,
// code} and idsync_<listener>_request_duration_seconds{route, method} on reg.
func newHTTPMetrics(reg prometheus.Registerer, listener string) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idsync_" + listener + "_requests_total",
			Help: "Requests to the " + listener + " listener by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "idsync_" + listener + "_request_duration_seconds",
			Help:    "Time to serve a request to the " + listener + " listener, by route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// routeUnmatched is the route label of a request no pattern matches.
const routeUnmatched = "unmatched"

// instrument wraps h, counting and timing its requests by route pattern,
// method and status code. The route is what routePattern finds in h.
func (m *httpMetrics) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		route := routePattern(h, r)
		method := methodLabel(r.Method)
		sw := &codeWriter{ResponseWriter: w}
		defer func() {
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
			m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		}()
		h.ServeHTTP(sw, r)
	})
}

// patterner is a handler that names the route pattern a request matches,
// or "" for none (admin.Server).
type patterner interface {
	Pattern(r *http.Request) string
}

// routePattern returns the pattern of h that r matches: for an
// *http.ServeMux the innermost pattern (a matched handler that is itself a
// mux or a patterner is asked in turn, so a mux mounting the admin API at
// "/" gives the API's own patterns, and "/ui/" a console's), for a
// patterner its pattern; routeUnmatched otherwise.
func routePattern(h http.Handler, r *http.Request) string {
	switch x := h.(type) {
	case *http.ServeMux:
		inner, pattern := x.Handler(r)
		if pattern == "" {
			return routeUnmatched
		}
		switch inner.(type) {
		case *http.ServeMux, patterner:
			return routePattern(inner, r)
		}
		return pattern
	case patterner:
		if p := x.Pattern(r); p != "" {
			return p
		}
	}
	return routeUnmatched
}

// methodLabel keeps the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "other"
}

// codeWriter records the status code written through it.
type codeWriter struct {
	http.ResponseWriter
	code int
}

func (w *codeWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *codeWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *codeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
