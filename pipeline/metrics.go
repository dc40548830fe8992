package pipeline

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idsync/idsync/idsync"
)

// metrics are the pipeline's series (DESIGN.md §10). Every labelled series is
// initialised at start from the fixed label sets, so it exists from the first
// scrape. No label holds an identifier, profile or audience id.
type metrics struct {
	input          prometheus.Counter
	output         *prometheus.CounterVec
	dlq            *prometheus.CounterVec
	skipped        *prometheus.CounterVec
	unmatched      *prometheus.CounterVec
	invalid        *prometheus.CounterVec
	processTime    prometheus.Histogram
	endToEnd       prometheus.Histogram
	lag            *prometheus.GaugeVec
	missingTopics  prometheus.Gauge
	batches        prometheus.Counter
	rebalances     *prometheus.CounterVec
	produceErrors  prometheus.Counter
	resyncCursors  prometheus.Gauge
	clientRestarts prometheus.Counter
	resyncMembers  prometheus.Counter
	resyncIgnored  prometheus.Counter
	// batchPhase is where a batch's time goes (see BatchPhases), the
	// evidence for an end-to-end latency tail.
	batchPhase *prometheus.HistogramVec
	phaseOf    map[string]prometheus.Observer

	// The labelled counters the per-record path uses, looked up once.
	outputBy    map[idsync.DestinationType]prometheus.Counter
	unmatchedBy map[idsync.DestinationType]prometheus.Counter
	invalidBy   map[idsync.DestinationType]prometheus.Counter
	dlqBy       map[idsync.Code]prometheus.Counter
	noConns     prometheus.Counter
}

// The phases of idsync_batch_phase_seconds.
const (
	// PhaseQueued is how old a batch's oldest record was when it was
	// polled: time spent before idsync had it (in the topic, the fetch,
	// the client's buffer while the batch before was handled).
	PhaseQueued = "queued"
	// PhaseProcess is decoding, resolving, Process and handing the
	// records to the producer (which waits while its buffer is full).
	PhaseProcess = "process"
	// PhaseAcks is the wait for the batch's acknowledgements after it was
	// handed over (zero when they were in before it was needed).
	PhaseAcks = "acks"
	// PhaseCommit is the offset commit, or the transaction's end.
	PhaseCommit = "commit"
)

// BatchPhases are the phase label values of idsync_batch_phase_seconds.
var BatchPhases = []string{PhaseQueued, PhaseProcess, PhaseAcks, PhaseCommit}

func newMetrics(reg prometheus.Registerer, w *waits) *metrics {
	m := &metrics{
		batchPhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "idsync_batch_phase_seconds",
			Help:    "Time a batch of input records spends in each phase: queued (its oldest record's age when polled), process, acks (waiting for the acknowledgements), commit.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"phase"}),
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
			Help: "Records between the group's committed offset and the end offset, per input partition assigned to this instance (refreshed every processing.lag_interval, also while the partition waits).",
		}, []string{"partition"}),
		missingTopics: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idsync_destination_topics_missing",
			Help: "Destination or dead-letter topics records are waiting for (missing and not created: creation disabled, refused, or deleted).",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idsync_batches_total",
			Help: "Poll batches processed and committed.",
		}),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idsync_rebalances_total",
			Help: "Consumer group rebalance events seen by this instance, by kind.",
		}, []string{"kind"}),
		clientRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idsync_pipeline_client_restarts_total",
			Help: "Kafka clients replaced after a transaction could not end (exactly_once): the instance rejoins the group and reads its uncommitted records again.",
		}),
		resyncCursors: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idsync_resync_partitions_active",
			Help: "Input partitions of this instance with a resync in progress (docs/resync.md).",
		}),
		resyncMembers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idsync_resync_members_total",
			Help: "Members of resync snapshots passed by this instance (sent, or left to the live stream).",
		}),
		resyncIgnored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idsync_resync_control_ignored_total",
			Help: "Resync control records ignored: an unknown resync, or resync disabled on this instance.",
		}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idsync_produce_errors_total",
			Help: "Records the producer failed to deliver; each is retried (its input partition waits) or, when the broker refuses it for good, dead-lettered.",
		}),
	}
	waiting := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "idsync_partitions_waiting",
		Help: "Input partitions of this instance stopped at a record until a cause passes, by reason (config_unavailable, topic_missing, destination_unavailable, dlq_unavailable, membership_unavailable). /readyz lists them.",
	}, []string{"reason"})
	waitingCollectors := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "idsync_partitions_waiting_config",
			Help: "Input partitions paused because the configuration of their next record cannot be read (Redis unreachable, audience not cached); the same as idsync_partitions_waiting{reason=\"config_unavailable\"}.",
		}, func() float64 { return float64(w.count(WaitConfig)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "idsync_oldest_wait_seconds",
			Help: "How long the longest-waiting input partition of this instance has waited, counting a batch held up by its acknowledgements; 0 when nothing waits.",
		}, func() float64 { return w.oldest(time.Now()).Seconds() }),
		waitingFunc{desc: waiting, w: w},
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
	m.phaseOf = map[string]prometheus.Observer{}
	for _, ph := range BatchPhases {
		m.phaseOf[ph] = m.batchPhase.WithLabelValues(ph)
	}
	for _, k := range []string{"assigned", "revoked", "lost"} {
		m.rebalances.WithLabelValues(k)
	}
	reg.MustRegister(m.input, m.output, m.dlq, m.skipped, m.unmatched, m.invalid, m.processTime,
		m.endToEnd, m.lag, m.missingTopics, m.batches, m.rebalances, m.produceErrors,
		m.resyncCursors, m.resyncMembers, m.resyncIgnored, m.clientRestarts, m.batchPhase)
	reg.MustRegister(waitingCollectors...)
	return m
}

// waitingFunc collects idsync_partitions_waiting from the wait state at
// scrape time, one series per reason (all of them, from the first scrape).
type waitingFunc struct {
	desc *prometheus.GaugeVec
	w    *waits
}

func (f waitingFunc) Describe(ch chan<- *prometheus.Desc) { f.desc.Describe(ch) }

func (f waitingFunc) Collect(ch chan<- prometheus.Metric) {
	for _, r := range WaitReasons {
		f.desc.WithLabelValues(r).Set(float64(f.w.count(r)))
	}
	f.desc.Collect(ch)
}

func partitionLabel(p int32) string { return strconv.FormatInt(int64(p), 10) }
