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
	// ResultError: nothing to serve (ErrUnavailable, an invalid key or the
	// caller's ctx).
	ResultError = "error"
)

// Results lists every cache result, for metric initialisation.
var Results = []string{ResultHit, ResultMiss, ResultStale, ResultError}

// What the cache found unusable when it fetched an audience, the values of
// idsync_config_unusable_total's kind label.
const (
	// UnusableAudience: the audience's connections key cannot be read at
	// all (it holds another Redis type); every event of the audience is
	// dead-lettered.
	UnusableAudience = "audience"
	// UnusableConnection: one connection's stored record cannot be decoded
	// (or is stored under an invalid destination id); events are
	// dead-lettered for that destination.
	UnusableConnection = "connection"
	// UnusableVersion: one retained version's configuration cannot be used
	// (unknown destination type, invalid, missing); events it applies to
	// are dead-lettered for that destination.
	UnusableVersion = "version"
)

// UnusableKinds lists every kind of unusable configuration, for metric
// initialisation.
var UnusableKinds = []string{UnusableAudience, UnusableConnection, UnusableVersion}

// metrics are the cache's series (DESIGN.md §10). No label holds an id.
type metrics struct {
	requests *prometheus.CounterVec
	byResult map[string]prometheus.Counter
	byKind   map[string]prometheus.Counter
}

// newMetrics registers the cache's metrics on reg: the requests counter
// with every result initialised, the unusable-configuration counter with
// every kind initialised, and the three gauges read from the functions
// given at scrape time.
func newMetrics(reg prometheus.Registerer, entries, up, staleness func() float64) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idsync_config_cache_requests_total",
			Help: "Connection lookups by the pipeline, by result: hit, miss (fetched from Redis), stale (served while Redis is unreachable), error.",
		}, []string{"result"}),
		byResult: make(map[string]prometheus.Counter, len(Results)),
		byKind:   make(map[string]prometheus.Counter, len(UnusableKinds)),
	}
	for _, r := range Results {
		m.byResult[r] = m.requests.WithLabelValues(r)
	}
	unusable := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "idsync_config_unusable_total",
		Help: "Stored configurations found unusable when an audience was fetched from Redis, by kind: audience (the key holds another type), connection (a record that cannot be decoded), version (a configuration this binary cannot use). Counted per fetch; the events they apply to are dead-lettered with code invalid_config.",
	}, []string{"kind"})
	for _, k := range UnusableKinds {
		m.byKind[k] = unusable.WithLabelValues(k)
	}
	collectors := []prometheus.Collector{
		m.requests,
		unusable,
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

// unusable adds n to the unusable configurations of kind.
func (m *metrics) unusable(kind string, n int) {
	if n > 0 {
		m.byKind[kind].Add(float64(n))
	}
}
