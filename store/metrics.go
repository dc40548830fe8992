package store

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a cache lookup, the values of
// idsync_config_cache_requests_total's result label.
const (
	// ResultHit: served from a fresh entry, no Redis round trip.
	ResultHit = "hit"
	// ResultMiss: fetched from Redis (absent, expired or invalidated entry).
	ResultMiss = "miss"
	// ResultStale: served an entry that should have been refetched, because
	// Redis is unreachable.
	ResultStale = "stale"
	// ResultError: nothing to serve (ErrUnavailable or the caller's ctx).
	ResultError = "error"
)

// Results lists every cache result, for metric initialisation.
var Results = []string{ResultHit, ResultMiss, ResultStale, ResultError}

// metrics are the cache's series (DESIGN.md §10). No label holds an id.
type metrics struct {
	requests *prometheus.CounterVec
	byResult map[string]prometheus.Counter
}

// newMetrics registers the cache's metrics on reg: the requests counter
// with every result initialised, and the three gauges read from the
// functions given at scrape time.
func newMetrics(reg prometheus.Registerer, entries, up, staleness func() float64) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idsync_config_cache_requests_total",
			Help: "Connection lookups by the pipeline, by result: hit, miss (fetched from Redis), stale (served while Redis is unreachable), error.",
		}, []string{"result"}),
		byResult: make(map[string]prometheus.Counter, len(Results)),
	}
	for _, r := range Results {
		m.byResult[r] = m.requests.WithLabelValues(r)
	}
	collectors := []prometheus.Collector{
		m.requests,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "idsync_config_cache_entries",
			Help: "Audiences (space, audience) whose connections are cached, including audiences cached as having none.",
		}, entries),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "idsync_redis_up",
			Help: "1 when the last PING or fetch from Redis succeeded, 0 when it failed.",
		}, up),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "idsync_config_staleness_seconds",
			Help: "Seconds since the configuration cache last confirmed it is in sync with Redis; 0 while Redis is up.",
		}, staleness),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering cache metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) count(result string) { m.byResult[result].Inc() }
