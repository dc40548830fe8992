package pipeline

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idsync/idsync/idsync"
)

// metrics are the pipeline's series (DESIGN.md §10). Every labelled series is
// initialised at start from the fixed label sets, so it exists from the first
// scrape. No label holds an identifier, profile or audience id.
type metrics struct {
	input         prometheus.Counter
	output        *prometheus.CounterVec
	dlq           *prometheus.CounterVec
	skipped       *prometheus.CounterVec
	unmatched     *prometheus.CounterVec
	invalid       *prometheus.CounterVec
	processTime   prometheus.Histogram
	endToEnd      prometheus.Histogram
	lag           *prometheus.GaugeVec
	heldPartition prometheus.Gauge
	missingTopics prometheus.Gauge
	batches       prometheus.Counter
	rebalances    *prometheus.CounterVec
	produceErrors prometheus.Counter

	// The labelled counters the per-record path uses, looked up once.
	outputBy    map[idsync.DestinationType]prometheus.Counter
	unmatchedBy map[idsync.DestinationType]prometheus.Counter
	invalidBy   map[idsync.DestinationType]prometheus.Counter
	dlqBy       map[idsync.Code]prometheus.Counter
	noConns     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		input: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idsync_input_records_total",
			Help: "Input records read from the audience-membership topic.",
		}),
		output: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idsync_output_records_total",
			Help: "Records produced to destination topics and acknowledged, by destination type.",
		}, []string{"destination_type"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idsync_dlq_records_total",
			Help: "Records produced to the dead-letter topic and acknowledged, by error code.",
		}, []string{"code"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idsync_skipped_total",
			Help: "Input events that produced nothing, by reason.",
		}, []string{"reason"}),
		unmatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idsync_unmatched_total",
			Help: "Connections with nothing to send for a profile, by destination type.",
		}, []string{"destination_type"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idsync_invalid_identifiers_total",
			Help: "Identifier values that could not be normalized and were not sent, by destination type.",
		}, []string{"destination_type"}),
		processTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "idsync_process_duration_seconds",
			Help:    "Time to decode, resolve, select and shape one input record (produce not included).",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1},
		}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "idsync_end_to_end_latency_seconds",
			Help:    "Time from the input record's Kafka timestamp to the acknowledgement of everything produced from it.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "idsync_consumer_lag_records",
			Help: "Records between this instance's position and the high watermark, per assigned input partition.",
		}, []string{"partition"}),
		heldPartition: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idsync_partitions_waiting_config",
			Help: "Input partitions paused because the configuration of their next record cannot be read (Redis unreachable, audience not cached).",
		}),
		missingTopics: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idsync_destination_topics_missing",
			Help: "Destination topics records are waiting for (topic creation disabled and the topic does not exist).",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idsync_batches_total",
			Help: "Poll batches processed and committed.",
		}),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idsync_rebalances_total",
			Help: "Consumer group rebalance events seen by this instance, by kind.",
		}, []string{"kind"}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idsync_produce_errors_total",
			Help: "Records the producer failed to deliver (the batch is not committed and the pipeline stops).",
		}),
	}
	m.outputBy = map[idsync.DestinationType]prometheus.Counter{}
	m.unmatchedBy = map[idsync.DestinationType]prometheus.Counter{}
	m.invalidBy = map[idsync.DestinationType]prometheus.Counter{}
	m.dlqBy = map[idsync.Code]prometheus.Counter{}
	for _, t := range idsync.DestinationTypes {
		m.outputBy[t] = m.output.WithLabelValues(string(t))
		m.unmatchedBy[t] = m.unmatched.WithLabelValues(string(t))
		m.invalidBy[t] = m.invalid.WithLabelValues(string(t))
	}
	for _, c := range idsync.Codes {
		m.dlqBy[c] = m.dlq.WithLabelValues(string(c))
	}
	m.noConns = m.skipped.WithLabelValues(idsync.SkipNoConnections)
	for _, r := range idsync.SkipReasons {
		m.skipped.WithLabelValues(r)
	}
	for _, k := range []string{"assigned", "revoked", "lost"} {
		m.rebalances.WithLabelValues(k)
	}
	reg.MustRegister(m.input, m.output, m.dlq, m.skipped, m.unmatched, m.invalid, m.processTime,
		m.endToEnd, m.lag, m.heldPartition, m.missingTopics, m.batches, m.rebalances, m.produceErrors)
	return m
}

func partitionLabel(p int32) string { return strconv.FormatInt(int64(p), 10) }
