// Package pipeline is idsync's stream processor: a Kafka consumer group on
// the audience-membership topic that decodes each record, resolves the
// audience's connections, calls idsync.Process and produces the records to
// the destination topics and the dead-letter topic, committing input offsets
// only once everything produced from them is acknowledged (at_least_once) or
// in the same Kafka transaction (exactly_once).
//
// It holds no product rules (those are in package idsync) and reads no
// configuration file (package config does); connection lookups go through
// the one-method ConnectionSource the caller provides.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idsync/idsync/idsync"
)

// ConnectionSource returns the connections of an audience with their
// retained versions. An error means the configuration cannot be read now
// (e.g. Redis unreachable and the audience not cached): the pipeline waits
// and retries, it never treats an error as "no connections". The result is
// read-only.
type ConnectionSource interface {
	Connections(ctx context.Context, space, audience string) ([]idsync.Connection, error)
}

// Prefetcher is implemented by a ConnectionSource that can start fetching
// audiences' connections without waiting for them (store.Cache): the
// pipeline calls it once with the (space, audience) pairs of the records it
// is about to process, then Connections for each record as before.
type Prefetcher interface {
	Prefetch(ctx context.Context, audiences iter.Seq2[string, string])
}

// Delivery is the delivery guarantee.
type Delivery string

// The delivery guarantees (DESIGN.md §8).
const (
	AtLeastOnce Delivery = "at_least_once"
	ExactlyOnce Delivery = "exactly_once"
)

// Config holds everything the pipeline needs besides its dependencies.
// Zero values take the defaults noted on each field.
type Config struct {
	Brokers    []string
	ClientID   string // default "idsync"
	InputTopic string
	GroupID    string
	DLQTopic   string
	Topics     idsync.TopicTemplate
	Delivery   Delivery // default AtLeastOnce
	// TransactionalID is required for ExactlyOnce; it must be stable for an
	// instance across restarts and distinct between instances.
	TransactionalID string

	// CreateTopics creates missing destination topics (and the DLQ topic)
	// with TopicPartitions and TopicReplicationFactor (-1: broker default).
	CreateTopics           bool
	TopicPartitions        int32 // default 6
	TopicReplicationFactor int16 // default -1
	// MaxRecordBytes bounds one produced record; topics idsync creates get
	// it as max.message.bytes. Default 4 MiB.
	MaxRecordBytes int32

	SessionTimeout   time.Duration // default 45s
	RebalanceTimeout time.Duration // default 60s
	FetchMaxBytes    int32         // default 50 MiB
	// MaxPollRecords bounds one batch (default 2000).
	MaxPollRecords int
	// MaxInflightRecords and MaxInflightBytes bound what the producer buffers;
	// when full, processing waits (a slow destination slows intake).
	MaxInflightRecords int // default 10000
	MaxInflightBytes   int // default 64 MiB
	ProducerLinger     time.Duration
	// ShutdownTimeout bounds the drain after ctx is cancelled (default 20s).
	ShutdownTimeout time.Duration
	// RetryBackoff is how long a partition waiting for its configuration
	// stays paused before the record is tried again (default 1s).
	RetryBackoff time.Duration
	// LagInterval is how often the consumer-lag gauge is refreshed from the
	// group's committed offsets and the partitions' end offsets (default
	// 10s).
	LagInterval time.Duration

	// MembershipTopic is the compacted topic of the membership the pipeline
	// has seen (docs/resync.md); "" keeps none, and resyncs are ignored.
	MembershipTopic string
	// Resyncs are read when a resync's control record is met (nil: none
	// run).
	Resyncs Resyncs
	// ResyncRate bounds the members per second this instance's resyncs
	// pass (default 2000); ResyncStepMembers the members of one step
	// (default 500); ResyncMaxMembers the members of one audience in one
	// partition a resync holds in memory (default 5,000,000).
	ResyncRate        float64
	ResyncStepMembers int
	ResyncMaxMembers  int

	Limits  idsync.Limits
	Options idsync.Options
	// ClientOpts are appended to the Kafka client options (TLS, SASL,
	// dialer, logger, hooks).
	ClientOpts []kgo.Opt
	// ConnOpts are what the pipeline's other clients (the resync readers
	// of the membership topic) need to reach the brokers: TLS, SASL,
	// dialer, logger; no hooks (metrics hooks register once).
	ConnOpts []kgo.Opt
	// Now is the processor's clock (default time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.ClientID == "" {
		c.ClientID = "idsync"
	}
	if c.Delivery == "" {
		c.Delivery = AtLeastOnce
	}
	if c.TopicPartitions == 0 {
		c.TopicPartitions = 6
	}
	if c.TopicReplicationFactor == 0 {
		c.TopicReplicationFactor = -1
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = 4 << 20
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 45 * time.Second
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = 60 * time.Second
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = 50 << 20
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = 2000
	}
	if c.MaxInflightRecords == 0 {
		c.MaxInflightRecords = 10000
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = 64 << 20
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 20 * time.Second
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = time.Second
	}
	if c.LagInterval == 0 {
		c.LagInterval = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ResyncRate == 0 {
		c.ResyncRate = 2000
	}
	if c.ResyncStepMembers == 0 {
		c.ResyncStepMembers = 500
	}
	if c.ResyncMaxMembers == 0 {
		c.ResyncMaxMembers = 5_000_000
	}
	if c.Options == (idsync.Options{}) {
		c.Options = idsync.DefaultOptions()
	}
}

func (c *Config) check() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("no brokers")
	case c.InputTopic == "":
		return errors.New("no input topic")
	case c.GroupID == "":
		return errors.New("no group id")
	case c.DLQTopic == "":
		return errors.New("no dead-letter topic")
	case c.Topics == idsync.TopicTemplate{}:
		return errors.New("no output topic template")
	case c.Delivery != AtLeastOnce && c.Delivery != ExactlyOnce:
		return fmt.Errorf("delivery %q is not %s or %s", c.Delivery, AtLeastOnce, ExactlyOnce)
	case c.Delivery == ExactlyOnce && c.TransactionalID == "":
		return errors.New("exactly_once needs a transactional id")
	case c.MembershipTopic != "" && (c.MembershipTopic == c.InputTopic || c.MembershipTopic == c.DLQTopic):
		return fmt.Errorf("membership topic %q must differ from the input and dead-letter topics", c.MembershipTopic)
	case c.ResyncRate < 0 || c.ResyncStepMembers < 0 || c.ResyncMaxMembers < 0:
		return errors.New("resync rate, step members and max members must not be negative")
	case c.MaxInflightBytes < int(c.MaxRecordBytes):
		return fmt.Errorf("max in-flight bytes %d is below the max record size %d", c.MaxInflightBytes, c.MaxRecordBytes)
	}
	return c.Options.Check()
}

// Pipeline consumes, processes and produces. Build it with New and call Run
// once.
type Pipeline struct {
	cfg    Config
	src    ConnectionSource
	log    *slog.Logger
	m      *metrics
	topics *topics
	cl     *kgo.Client
	sess   *kgo.GroupTransactSession // nil in at_least_once

	assigned atomic.Int64 // partitions currently assigned
	// waits are the input partitions waiting for a cause to pass.
	waits *waits
	// refusals are what the broker refused for good in attempts that were
	// rewound.
	refusals *refusals
	// owned are the input partitions assigned to this member, for the lag
	// gauge.
	ownedMu sync.Mutex
	owned   map[int32]bool
	// lagNow asks the lag refresher for a refresh now (after an assignment).
	lagNow chan struct{}
	// rs are the resyncs running on owned partitions; paced are the input
	// partitions paused at a resync control record, until when.
	rs    *resyncs
	paced map[topicPartition]time.Time
	// pacedMu guards paced: the rebalance callbacks run beside the loop.
	pacedMu sync.Mutex
	// heads and headMore say, for the batch in hand, which partitions (by
	// index) start with a control record, and whether records followed it;
	// inline are the control records handled where they are (copied on).
	heads, headMore map[int]bool
	inline          map[*kgo.Record]bool
	// onCommit are what the batch in hand changes in the resyncs' state
	// once it is committed (dropped when it is not).
	onCommit []commitAction
	// commits are the asynchronous commits on the wire (see commitAsync).
	commits sync.WaitGroup
	// flushing is set while a flushIdle runs.
	flushing atomic.Bool
	// rebalanceWanted is set when a rebalance waits for the loop to allow
	// it (BlockRebalanceOnPoll): no batch is kept in flight then.
	rebalanceWanted atomic.Bool
	// clMu guards cl and sess against the readers outside the loop (the
	// lag refresher); only the loop replaces them (recover).
	clMu sync.Mutex
}

// commitAction is a change that holds once rec's offset is committed.
type commitAction struct {
	rec *kgo.Record
	f   func()
}

// committed applies the batch's onCommit changes whose record was
// committed (a partition that stopped at it reads it again).
func (p *Pipeline) committed() {
	if len(p.onCommit) == 0 {
		return
	}
	offsets := p.cl.CommittedOffsets()
	for _, a := range p.onCommit {
		if o, ok := offsets[a.rec.Topic][a.rec.Partition]; ok && o.Offset > a.rec.Offset {
			a.f()
		}
	}
	p.onCommit = nil
}

// anyPaced reports whether a partition is paced.
func (p *Pipeline) anyPaced() bool {
	p.pacedMu.Lock()
	defer p.pacedMu.Unlock()
	return len(p.paced) > 0
}

// pacedDue returns the paced partitions whose pause is over, and forgets
// them.
func (p *Pipeline) pacedDue(now time.Time) map[string][]int32 {
	p.pacedMu.Lock()
	defer p.pacedMu.Unlock()
	var out map[string][]int32
	for tp, until := range p.paced {
		if !now.Before(until) {
			if out == nil {
				out = map[string][]int32{}
			}
			out[tp.topic] = append(out[tp.topic], tp.partition)
			delete(p.paced, tp)
		}
	}
	return out
}

type topicPartition struct {
	topic     string
	partition int32
}

// New validates cfg and builds the Kafka client. reg receives the pipeline's
// metrics; log its log lines (never an identifier value). New does not
// contact the brokers; Run does.
func New(cfg Config, src ConnectionSource, reg prometheus.Registerer, log *slog.Logger) (*Pipeline, error) {
	cfg.setDefaults()
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	w := newWaits()
	p := &Pipeline{
		cfg:      cfg,
		src:      src,
		log:      log,
		m:        newMetrics(reg, w),
		waits:    w,
		refusals: newRefusals(),
		owned:    map[int32]bool{},
		lagNow:   make(chan struct{}, 1),
		rs:       newResyncs(),
		paced:    map[topicPartition]time.Time{},
		inline:   map[*kgo.Record]bool{},
	}
	if err := p.newClient(); err != nil {
		return nil, fmt.Errorf("pipeline: creating kafka client: %w", err)
	}
	return p, nil
}

// newClient builds the Kafka client (the transactional session in
// exactly_once) and what depends on it.
func (p *Pipeline) newClient() error {
	opts := append(ClientOptions(p.cfg),
		kgo.OnPartitionsAssigned(p.onAssigned),
		kgo.OnPartitionsRevoked(p.onRevoked),
		kgo.OnPartitionsLost(p.onLost),
		kgo.OnPartitionsCallbackBlocked(func(context.Context, *kgo.Client) { p.rebalanceWanted.Store(true) }),
	)
	var (
		sess *kgo.GroupTransactSession
		cl   *kgo.Client
		err  error
	)
	if p.cfg.Delivery == ExactlyOnce {
		sess, err = kgo.NewGroupTransactSession(opts...)
		if err == nil {
			cl = sess.Client()
		}
	} else {
		cl, err = kgo.NewClient(opts...)
	}
	if err != nil {
		return err
	}
	p.clMu.Lock()
	p.sess, p.cl = sess, cl
	p.clMu.Unlock()
	p.topics = newTopics(cl, p.cfg, p.m, p.log)
	return nil
}

// client returns the current Kafka client, for other goroutines than the
// loop's (the loop replaces it in recover).
func (p *Pipeline) client() *kgo.Client {
	p.clMu.Lock()
	defer p.clMu.Unlock()
	return p.cl
}

// errTxnStuck marks a transaction that could not end (or begin): franz-go's
// transactional client cannot go on after it (End's errors are not
// retryable), so the pipeline replaces the client (see recover).
var errTxnStuck = errors.New("transaction failed")

// stuck returns errTxnStuck for an error ending a transaction that a new
// client may not meet again, and errTxnDenied for an authorization
// refusal, which a new client would meet too: that one stops the pipeline
// (a setting to fix, said at once).
func stuck(err error) error {
	for _, denied := range []error{kerr.TransactionalIDAuthorizationFailed, kerr.GroupAuthorizationFailed,
		kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed} {
		if errors.Is(err, denied) {
			return errTxnDenied
		}
	}
	return errTxnStuck
}

// errTxnDenied marks a transaction refused for lack of authorization.
var errTxnDenied = errors.New("transaction not authorized")

// recoverBackoff is the wait between two client replacements in a row.
const recoverBackoff = time.Second

// recover replaces a transactional client that cannot go on: the old one
// is closed (its transaction is aborted by the coordinator when the new
// one, with the same transactional id, initialises; its partitions are
// revoked and the group rebalances), and a new one rejoins the group and
// reads from the committed offsets: nothing committed is repeated, nothing
// uncommitted is lost.
func (p *Pipeline) recover(ctx context.Context, cause error) error {
	p.m.clientRestarts.Inc()
	p.log.Error("the Kafka transaction could not end; replacing the Kafka client (nothing of the transaction was committed; its records are read again)", "err", cause)
	old := p.cl
	closed := make(chan struct{})
	go func() { defer close(closed); old.Close() }()
	select {
	case <-closed:
	case <-time.After(p.cfg.ShutdownTimeout):
		p.log.Warn("closing the old Kafka client is taking long; going on without waiting")
	}
	// Whatever the old client's callbacks did not clean up.
	p.ownedMu.Lock()
	parts := map[string][]int32{}
	for part := range p.owned {
		parts[p.cfg.InputTopic] = append(parts[p.cfg.InputTopic], part)
	}
	p.ownedMu.Unlock()
	if len(parts) > 0 {
		p.forget(old, parts, "lost")
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(recoverBackoff):
		}
		if err := p.newClient(); err != nil {
			p.log.Error("creating a new Kafka client", "err", err)
			continue
		}
		p.log.Info("Kafka client replaced; rejoining the group")
		return nil
	}
}

// ClientOptions returns the Kafka client options the pipeline runs with for
// cfg (defaults applied), less its rebalance callbacks: a consumer group with
// manual commits and BlockRebalanceOnPoll, the fetch and producer bounds,
// and in exactly_once the transactional id and read_committed; then
// cfg.ClientOpts. Benchmarks build their baseline client from the same
// options, so the baseline and the pipeline differ only in processing.
func ClientOptions(cfg Config) []kgo.Opt {
	cfg.setDefaults()
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.ConsumerGroup(cfg.GroupID),
		kgo.ConsumeTopics(cfg.InputTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.RebalanceTimeout(cfg.RebalanceTimeout),
		kgo.FetchMaxBytes(cfg.FetchMaxBytes),
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.ProducerBatchMaxBytes(cfg.MaxRecordBytes),
		kgo.MaxBufferedRecords(cfg.MaxInflightRecords),
		kgo.MaxBufferedBytes(cfg.MaxInflightBytes),
		// A destination topic that does not exist (deleted after first
		// use) fails its records after a few metadata refreshes; the
		// pipeline then creates it again or waits for it, visibly, with
		// only the partitions that need it stopped.
		kgo.UnknownTopicRetries(unknownTopicRetries),
	}
	if cfg.ProducerLinger > 0 {
		opts = append(opts, kgo.ProducerLinger(cfg.ProducerLinger))
	}
	if cfg.MembershipTopic != "" {
		// Membership and control records go to the partition they name.
		opts = append(opts, kgo.RecordPartitioner(newPartitioner(cfg.MembershipTopic, cfg.InputTopic)))
	}
	if cfg.Delivery == ExactlyOnce {
		opts = append(opts,
			kgo.TransactionalID(cfg.TransactionalID),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		)
	}
	return append(opts, cfg.ClientOpts...)
}

// Ready reports whether the pipeline has input partitions assigned.
func (p *Pipeline) Ready() bool { return p.assigned.Load() > 0 }

// Client returns the Kafka client, for health checks and admin requests.
func (p *Pipeline) Client() *kgo.Client { return p.client() }

func (p *Pipeline) onAssigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	n := 0
	p.ownedMu.Lock()
	for topic, ps := range assigned {
		n += len(ps)
		if topic == p.cfg.InputTopic {
			for _, part := range ps {
				p.owned[part] = true
			}
		}
	}
	p.ownedMu.Unlock()
	// A newly assigned partition never starts paused: a pause left from an
	// earlier ownership would keep it stopped with nothing to resume it.
	cl.ResumeFetchPartitions(assigned)
	p.assigned.Add(int64(n))
	select {
	case p.lagNow <- struct{}{}:
	default:
	}
	p.m.rebalances.WithLabelValues("assigned").Inc()
	p.log.Info("partitions assigned", "count", n, "partitions", assigned)
}

// onRevoked runs inside a poll or AllowRebalance (BlockRebalanceOnPoll):
// every batch polled before it was processed, acknowledged and committed
// (or its transaction ended), so there is nothing left to commit. Records
// held back for a cause that has not passed are abandoned uncommitted; the
// new owner reads them from the committed offset.
func (p *Pipeline) onRevoked(_ context.Context, cl *kgo.Client, revoked map[string][]int32) {
	p.forget(cl, revoked, "revoked")
}

func (p *Pipeline) onLost(_ context.Context, cl *kgo.Client, lost map[string][]int32) {
	p.forget(cl, lost, "lost")
}

// forget drops the waits of partitions this member no longer owns and
// resumes them: the client keeps a pause across rebalances, so a partition
// handed back to this member later would otherwise stay paused for good.
func (p *Pipeline) forget(cl *kgo.Client, parts map[string][]int32, kind string) {
	n := 0
	p.ownedMu.Lock()
	for topic, ps := range parts {
		n += len(ps)
		if topic == p.cfg.InputTopic {
			for _, part := range ps {
				delete(p.owned, part)
				p.m.lag.DeleteLabelValues(partitionLabel(part))
			}
		}
	}
	p.ownedMu.Unlock()
	cl.ResumeFetchPartitions(p.waits.drop(parts))
	p.pacedMu.Lock()
	for _, part := range parts[p.cfg.InputTopic] {
		delete(p.paced, topicPartition{p.cfg.InputTopic, part})
	}
	p.pacedMu.Unlock()
	cl.ResumeFetchPartitions(parts)
	p.forgetResyncs(parts)
	p.refusals.forget(parts)
	p.assigned.Add(int64(-n))
	p.m.rebalances.WithLabelValues(kind).Inc()
	p.log.Info("partitions "+kind, "count", n, "partitions", parts)
}

// Run consumes until ctx is cancelled, then drains: it stops fetching,
// finishes the batch in hand (its records produced and acknowledged, its
// offsets committed), leaves the group and closes the client. The drain is
// bounded by ShutdownTimeout; past it the remaining work is abandoned
// uncommitted and Run returns an error. Run returns an error as well when a
// record cannot be produced (nothing from its batch is committed).
func (p *Pipeline) Run(ctx context.Context) error {
	// hard is cancelled ShutdownTimeout after ctx: the deadline of the drain.
	hard, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	var deadline atomic.Bool
	stopTimer := context.AfterFunc(ctx, func() {
		time.AfterFunc(p.cfg.ShutdownTimeout, func() {
			deadline.Store(true)
			hardCancel()
		})
	})
	defer stopTimer()

	lagCtx, lagCancel := context.WithCancel(ctx)
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		p.refreshLag(lagCtx)
	}()
	err := p.loop(ctx, hard)
	lagCancel() // the loop ended, by shutdown or by an error: so does the refresher
	if err == nil && deadline.Load() {
		err = fmt.Errorf("shutdown timeout %s exceeded", p.cfg.ShutdownTimeout)
	}
	<-lagDone
	p.close(hard, err == nil)
	if err == nil && deadline.Load() {
		err = fmt.Errorf("shutdown timeout %s exceeded while leaving the group", p.cfg.ShutdownTimeout)
	}
	return err
}

func (p *Pipeline) close(hard context.Context, clean bool) {
	if p.sess != nil {
		if clean {
			p.sess.Close()
		} else {
			p.cl.Close()
		}
		return
	}
	if clean {
		if err := p.cl.LeaveGroupContext(hard); err != nil {
			p.log.Warn("leaving the consumer group", "err", err)
		}
	}
	p.cl.Close()
}

func (p *Pipeline) loop(ctx, hard context.Context) error {
	// Make the DLQ topic at start when creation is on; when it cannot be
	// made or found now, records that need it wait (WaitTopic) and it is
	// tried again.
	if err := p.topics.dlq(hard); err != nil {
		p.log.Warn("dead-letter topic not ready at start; dead letters wait for it", "topic", p.cfg.DLQTopic, "err", err)
	}
	// queue are at_least_once batches whose acknowledgements overlap the
	// polls and the processing of the batches after them (see overlap), in
	// poll order; each is settled once acknowledged, the oldest first.
	var queue []*inflight
	defer func() {
		if len(queue) > 0 {
			// Stopping: what is in flight is acknowledged and committed.
			_, _, _ = p.settleQueue(hard, queue, nil, 0)
			p.allowRebalance()
		}
		p.commits.Wait() // before the group is left
	}()
	for ctx.Err() == nil {
		if resume := p.waits.due(time.Now()); len(resume) > 0 {
			// Their next fetch starts again at the record that waited.
			p.cl.ResumeFetchPartitions(resume)
		}
		if resume := p.pacedDue(time.Now()); len(resume) > 0 {
			p.cl.ResumeFetchPartitions(resume)
		}
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if p.waits.anyPaused() {
			pollCtx, cancel = context.WithTimeout(ctx, p.cfg.RetryBackoff)
		} else if p.anyPaced() {
			pollCtx, cancel = context.WithTimeout(ctx, resyncWait/4)
		}
		if len(queue) > 0 {
			// The poll ends when the oldest batch in flight is
			// acknowledged, at the latest: its offsets are committed then.
			pollCtx, cancel = queue[0].pollContext(pollCtx, cancel)
			if p.cl.BufferedFetchRecords() == 0 {
				p.flushIdle(hard)
			}
		}
		var fetches kgo.Fetches
		if p.sess != nil {
			fetches = p.sess.PollRecords(pollCtx, p.cfg.MaxPollRecords)
		} else {
			fetches = p.cl.PollRecords(pollCtx, p.cfg.MaxPollRecords)
		}
		cancel()
		if fetches.IsClientClosed() {
			queue = nil // nothing can be committed any more
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
			}
		})
		cur, err := p.start(hard, fetches)
		if err == nil {
			// The batches already acknowledged, and the oldest ones while
			// the queue is full.
			queue, cur, err = p.settleQueue(hard, queue, cur, maxQueued-1)
		}
		if err == nil && cur != nil {
			if p.overlap(ctx, cur) {
				queue = append(queue, cur)
			} else {
				// Everything before it first (a failure there takes cur
				// along), then cur on its own.
				if queue, cur, err = p.settleQueue(hard, queue, cur, 0); err == nil && cur != nil {
					err = p.settle(hard, cur)
				}
			}
		}
		if err == nil && len(queue) > 0 && (ctx.Err() != nil || p.rebalanceWanted.Load()) {
			queue, _, err = p.settleQueue(hard, queue, nil, 0)
		}
		if len(queue) > 0 {
			p.waits.inFlight(queue[0].since)
		} else {
			// Nothing in flight: the partitions may move now.
			p.waits.inFlight(time.Time{})
			p.topics.purgeForgotten()
			p.allowRebalance()
		}
		if errors.Is(err, errTxnStuck) && ctx.Err() == nil {
			if err := p.recover(ctx, err); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// maxQueued bounds the at_least_once batches in flight at once; their
// input records besides are bounded by the fetch size (see settleQueue).
const maxQueued = 4

// overlap says whether b may stay in flight while the next poll is made
// and processed: only in at_least_once, only without the membership topic,
// only while no rebalance waits (rebalances are allowed with nothing in
// flight), and only for a batch that went through whole: none of its
// partitions stopped, none is probed, no control record in it (their
// effects hold once committed). Any other batch is settled at once, as
// exactly_once's always are.
//
// With the membership topic, a resync's control record takes its snapshot
// of the membership partition when it is processed, and that snapshot must
// hold every earlier record's membership (see start): a batch in flight
// could still have them unacknowledged, and its members would never be
// re-sent.
func (p *Pipeline) overlap(ctx context.Context, b *inflight) bool {
	if p.sess != nil || p.cfg.MembershipTopic != "" || ctx.Err() != nil || p.rebalanceWanted.Load() ||
		len(b.probed) > 0 || len(p.heads) > 0 || len(p.inline) > 0 || len(p.onCommit) > 0 {
		return false
	}
	for _, s := range b.stops {
		if s != nil {
			return false
		}
	}
	return true
}

// pollContext returns ctx ended as well once b's acknowledgements are all
// in, and a cancel that ends it and calls cancel.
func (b *inflight) pollContext(ctx context.Context, cancel context.CancelFunc) (context.Context, context.CancelFunc) {
	c, stop := context.WithCancel(ctx)
	go func() {
		defer stop()
		b.acks.wait()
	}()
	return c, func() { stop(); cancel() }
}

// settleQueue settles the batches of queue (oldest first) that are
// acknowledged, and waits for the oldest ones while more than keep are
// left or their input records weigh more than the fetch size. A settled
// batch whose records were all acknowledged has its offsets (the last of
// each partition's records, plus one) committed (see commitAsync). When
// one was not, the batches after it, and cur (polled and produced after
// them all), may hold later records of the same partitions: they are all
// waited for and settled with it as one batch (see merge), so that each
// partition goes on from its first record not finished, as within a batch;
// queue and cur are then returned empty. Otherwise cur is returned as it
// is.
func (p *Pipeline) settleQueue(hard context.Context, queue []*inflight, cur *inflight, keep int) ([]*inflight, *inflight, error) {
	for len(queue) > 0 {
		head := queue[0]
		if !head.acks.complete() {
			if len(queue) <= keep && queuedBytes(queue) <= int64(p.cfg.FetchMaxBytes) {
				break
			}
			p.waits.inFlight(head.since)
			waited := time.Now()
			head.acks.wait()
			p.m.phaseOf[PhaseAcks].Observe(time.Since(waited).Seconds())
		} else {
			p.m.phaseOf[PhaseAcks].Observe(0)
		}
		if len(head.acks.failures()) > 0 {
			m := head
			for _, b := range queue[1:] {
				m = merge(m, b)
			}
			if cur != nil {
				m = merge(m, cur)
			}
			return nil, nil, p.settle(hard, m)
		}
		queue = queue[1:]
		offsets := map[string]map[int32]kgo.EpochOffset{}
		for _, pt := range head.parts {
			last := pt.Records[len(pt.Records)-1]
			setOffset(offsets, last, last.Offset+1)
			p.waits.passed(topicPartition{pt.Topic, pt.Partition})
		}
		if hard.Err() != nil {
			continue // past the shutdown deadline: nothing more is committed
		}
		if p.refusals.any() {
			// What earlier commits made final.
			p.refusals.committed(p.cl.CommittedOffsets())
		}
		p.commitAsync(hard, offsets, head.acks)
	}
	return queue, cur, nil
}

// queuedBytes is what the input records of the batches in queue weigh.
func queuedBytes(queue []*inflight) int64 {
	var n int64
	for _, b := range queue {
		n += b.bytes
	}
	return n
}

// flushIdle sends the records that linger (kafka.producer_linger) when the
// loop has nothing to poll at once: lingering gathers more records into a
// produce request only while more are coming. Flush waits until the
// producer's buffer is empty, so it runs on a goroutine of its own, one at
// a time (while it runs nothing lingers anyway).
func (p *Pipeline) flushIdle(ctx context.Context) {
	if !p.flushing.CompareAndSwap(false, true) {
		return
	}
	cl := p.cl
	go func() {
		defer p.flushing.Store(false)
		_ = cl.Flush(ctx)
	}()
}

// commitAsync commits offsets without waiting: the loop polls and
// processes on while the commit is on the wire. The client keeps commits
// in order (a later commit, asynchronous or not, waits for this one), and
// a rebalance's join waits for it, so nothing is committed out of order
// or for partitions that moved. A failed commit is logged: the records
// are delivered, and the next commit covers them (at_least_once).
func (p *Pipeline) commitAsync(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset, acks *acks) {
	p.commits.Add(1)
	began := time.Now()
	p.cl.CommitOffsets(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		defer p.commits.Done()
		p.observeSince(PhaseCommit, began)
		if err == nil {
		partitions:
			for _, t := range resp.Topics {
				for _, pt := range t.Partitions {
					if err = kerr.ErrorForCode(pt.ErrorCode); err != nil {
						break partitions
					}
				}
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("committing offsets", "err", err)
			}
			return
		}
		acks.done()
	})
}

// merge makes one batch of prev (batches that went through whole, see
// overlap) and cur, polled after it: a partition in both has prev's
// records, then cur's.
func merge(prev, cur *inflight) *inflight {
	m := &inflight{probed: map[int]int64{}, since: prev.since, bytes: prev.bytes + cur.bytes}
	index := map[topicPartition]int{}
	for _, pt := range prev.parts {
		index[topicPartition{pt.Topic, pt.Partition}] = len(m.parts)
		m.parts = append(m.parts, pt)
		m.stops = append(m.stops, nil)
	}
	for i, pt := range cur.parts {
		j, ok := index[topicPartition{pt.Topic, pt.Partition}]
		if ok {
			m.parts[j].Records = slices.Concat(m.parts[j].Records, pt.Records)
		} else {
			j = len(m.parts)
			m.parts = append(m.parts, pt)
			m.stops = append(m.stops, nil)
		}
		m.stops[j] = cur.stops[i]
		if next, ok := cur.probed[i]; ok {
			m.probed[j] = next
		}
	}
	m.acks = joinAcks(prev.acks, cur.acks)
	return m
}

func (p *Pipeline) allowRebalance() {
	p.rebalanceWanted.Store(false)
	if p.sess != nil {
		p.sess.AllowRebalance()
	} else {
		p.cl.AllowRebalance()
	}
}

// inflight is a batch whose records are all handed to the producer and
// whose acknowledgements may still be coming (see start and settle).
type inflight struct {
	parts []kgo.FetchTopicPartition
	// probed: partition index → the offset to go on from once the probed
	// record (the partition's only one in the batch) passes.
	probed map[int]int64
	// stops: where records (processing, not producing) stopped each
	// partition; nil for a partition handled whole.
	stops []*stop
	acks  *acks
	since time.Time // when its records started to be produced
	bytes int64     // what its input records weigh (keys, values, headers)
}

// A batch is one poll's records: start processes them (see records) and
// hands what they give to the producer; settle waits for every produced
// record, decides for each partition where it goes on from, and commits.
// In at_least_once a batch that went through whole stays in flight while
// the next poll is made and processed (see overlap).
//
// A partition goes on from its first record that could not be finished:
// one whose configuration cannot be read, whose topic is missing, or one
// of whose records failed to produce. What failed for good (failRefused)
// is remembered, so the next attempt dead-letters it and goes on at once;
// what may pass makes the partition wait (paused for the retry backoff,
// counted and listed as a wait). In at_least_once the other partitions,
// and each stopped partition up to its stop, are committed; in
// exactly_once a batch with a failed record is aborted whole (nothing of
// it is committed, so no event is ever half-committed) and every partition
// goes on from its committed offset.
//
// start returns nil when the poll holds no record.
func (p *Pipeline) start(hard context.Context, fetches kgo.Fetches) (*inflight, error) {
	var parts []kgo.FetchTopicPartition
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) > 0 {
			parts = append(parts, ftp)
		}
	})
	if len(parts) == 0 {
		return nil, nil
	}
	// A partition that waits after a failed produce is probed: only its
	// stopped record is tried, until it passes. Otherwise every retry would
	// produce again, to the healthy destinations, every record polled
	// after it.
	probed := map[int]int64{} // part index → offset to go on from
	for i := range parts {
		pt := &parts[i]
		if p.waits.probing(topicPartition{pt.Topic, pt.Partition}, pt.Records[0].Offset) && len(pt.Records) > 1 {
			probed[i] = pt.Records[1].Offset
			pt.Records = pt.Records[:1]
		}
	}
	// A control record (a resync's) is handled alone, at the head of its
	// partition's records: everything before it is committed by then, so
	// the membership it reads is the partition's up to it.
	p.heads, p.headMore = map[int]bool{}, map[int]bool{}
	clear(p.inline)
	// While the rate limit allows no step, a control record with records
	// behind it is only copied to the end of its partition (deferControl):
	// that needs no consistent membership, so it is handled where it is,
	// without cutting the batch (which would cost the live records behind
	// it a batch cycle each time). Not a start record: its snapshot is
	// taken where it is.
	limited := p.stepWait() > 0
	for i := range parts {
		pt := &parts[i]
		for j, r := range pt.Records {
			if !isControl(r) {
				continue
			}
			if limited && j < len(pt.Records)-1 && !isStart(r) {
				p.inline[r] = true
				continue
			}
			if j > 0 {
				probed[i] = r.Offset
				pt.Records = pt.Records[:j]
				break
			}
			p.heads[i] = true
			if len(pt.Records) > 1 {
				p.headMore[i] = true
				probed[i] = pt.Records[1].Offset
				pt.Records = pt.Records[:1]
			}
			break
		}
	}
	p.topics.beginBatch()
	p.onCommit = nil
	if p.sess != nil {
		if err := p.sess.Begin(); err != nil {
			return nil, fmt.Errorf("beginning a transaction: %w: %w", stuck(err), err)
		}
	}
	b := &inflight{parts: parts, probed: probed, acks: newAcks(p), since: time.Now()}
	oldest := b.since
	for _, pt := range parts {
		if ts := pt.Records[0].Timestamp; ts.Before(oldest) {
			oldest = ts
		}
		for _, r := range pt.Records {
			b.bytes += int64(len(r.Key) + len(r.Value) + headerBytes(r.Headers))
		}
	}
	p.m.phaseOf[PhaseQueued].Observe(max(b.since.Sub(oldest), 0).Seconds())
	b.stops = p.records(hard, b.acks, parts)
	p.m.phaseOf[PhaseProcess].Observe(time.Since(b.since).Seconds())
	return b, nil
}

// settle waits for b's acknowledgements, decides for each partition where
// it goes on from, and commits (see start).
func (p *Pipeline) settle(hard context.Context, b *inflight) error {
	parts, probed, stops, acks := b.parts, b.probed, b.stops, b.acks
	p.waits.inFlight(b.since)
	// Every record of the batch is produced and the batch waits for them
	// all now: send what still lingers (kafka.producer_linger would only
	// add to the wait). In exactly_once this also learns every failure
	// before deciding to commit or abort. A batch kept in flight (see
	// overlap) is not flushed: its last records linger while the next
	// poll is made, and leave with the next batch's first ones.
	waited := time.Now()
	if err := p.cl.Flush(hard); err != nil && hard.Err() == nil {
		p.log.Warn("flushing the batch's records", "err", err)
	}
	acks.wait()
	p.m.phaseOf[PhaseAcks].Observe(time.Since(waited).Seconds())
	p.waits.inFlight(time.Time{})

	index := make(map[topicPartition]int, len(parts))
	for i, pt := range parts {
		index[topicPartition{pt.Topic, pt.Partition}] = i
	}
	failed := acks.failures()
	p.logFailures(failed)
	shutdown := false
	for _, f := range failed {
		s := p.failureStop(hard, f)
		if s == nil {
			shutdown = true
			continue
		}
		i := index[topicPartition{f.src.Topic, f.src.Partition}]
		// The earliest stop of a partition wins; at the same record, one
		// that waits wins over one that goes on at once.
		if old := stops[i]; old == nil || s.rec.Offset < old.rec.Offset || (s.rec.Offset == old.rec.Offset && old.reason == "") {
			stops[i] = s
		}
	}
	for _, s := range stops {
		if s != nil && s.shutdown {
			shutdown = true // stopped by the shutdown deadline
		}
	}
	if shutdown || hard.Err() != nil {
		// Past the shutdown deadline: nothing more is committed.
		if p.sess != nil {
			endCtx, cancel := context.WithTimeout(context.WithoutCancel(hard), time.Second)
			_, _ = p.sess.End(endCtx, kgo.TryAbort)
			cancel()
		}
		return nil
	}

	// Where each stopped partition goes on from, and which ones wait.
	rewind := map[string]map[int32]kgo.EpochOffset{}
	pause := map[string][]int32{}
	now := time.Now()
	for i, s := range stops {
		tp := topicPartition{parts[i].Topic, parts[i].Partition}
		if s == nil {
			p.waits.passed(tp)
			if next, ok := probed[i]; ok {
				// The probe passed: go on from the record after it.
				r := parts[i].Records[0]
				setOffset(rewind, r, next)
			}
			continue
		}
		r := s.rec
		setOffset(rewind, r, r.Offset)
		if s.pace > 0 {
			// Paused without a cause to wait for: a resync's control
			// record, for its start time or the rate limit.
			p.waits.passed(tp)
			pause[r.Topic] = append(pause[r.Topic], r.Partition)
			p.pacedMu.Lock()
			p.paced[tp] = now.Add(s.pace)
			p.pacedMu.Unlock()
			continue
		}
		if s.reason == "" {
			p.waits.passed(tp) // refused for good: goes on at once, the refusal learnt
			continue
		}
		pause[r.Topic] = append(pause[r.Topic], r.Partition)
		if p.waits.set(tp, r.Offset, s.reason, s.probe, now, now.Add(p.cfg.RetryBackoff)) {
			p.log.Warn("input partition waits", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
				"reason", s.reason, "err", s.cause)
		}
	}

	if p.sess != nil {
		return p.endTransaction(hard, acks, len(failed) > 0, rewind, pause)
	}
	if len(rewind) > 0 {
		p.cl.SetOffsets(rewind)
		p.cl.PauseFetchPartitions(pause)
	}
	committing := time.Now()
	err := p.cl.CommitUncommittedOffsets(hard)
	p.observeSince(PhaseCommit, committing)
	if err != nil {
		// Typically a rebalance fenced us (the partitions moved): the new
		// owner reprocesses from the last commit, which at-least-once allows.
		p.log.Warn("committing offsets", "err", err)
		return nil
	}
	p.refusals.committed(p.cl.CommittedOffsets())
	p.committed()
	acks.done()
	return nil
}

// observeSince observes the time since t in phase of
// idsync_batch_phase_seconds.
func (p *Pipeline) observeSince(phase string, t time.Time) {
	p.m.phaseOf[phase].Observe(time.Since(t).Seconds())
}

// setOffset sets, in offsets, r's partition to offset (with r's leader
// epoch).
func setOffset(offsets map[string]map[int32]kgo.EpochOffset, r *kgo.Record, offset int64) {
	if offsets[r.Topic] == nil {
		offsets[r.Topic] = map[int32]kgo.EpochOffset{}
	}
	offsets[r.Topic][r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: offset}
}

// failureStop says what a failed produce means for its input record's
// partition: a stop at that record, with a Wait reason when the cause may
// pass and without one when the refusal was learnt and the next attempt
// goes on at once; nil when the produce was cancelled by the shutdown.
func (p *Pipeline) failureStop(ctx context.Context, f failure) *stop {
	class := classify(f.err)
	key := refusalKey{f.src.Topic, f.src.Partition, f.src.Offset, f.dest, f.dlq}
	switch class {
	case failShutdown:
		return nil
	case failRefused:
		if f.control {
			// idsync's own record (membership, resync control) refused:
			// nothing to dead-letter, and retrying at once would repeat
			// the event's outputs in a loop. The partition waits, visibly,
			// for the cause (ACLs, the topic's limits) to be fixed.
			return &stop{rec: f.src, reason: WaitDestination, cause: fmt.Errorf("topic %s refused idsync's own record: %w", f.topic, f.err), probe: true}
		}
		if !f.alone {
			// The broker refuses a produce batch whole, and the client then
			// fails every record buffered for that partition: this record
			// may be innocent. The topic's records are produced one at a
			// time from now on (for MESSAGE_TOO_LARGE its limit is read, so
			// that a record above it is dead-lettered without a try), and
			// only a record refused on its own is refused for good.
			p.topics.alone(ctx, f.topic, errors.Is(f.err, kerr.MessageTooLarge))
			return &stop{rec: f.src, cause: f.err}
		}
		if f.dlq {
			// Made smaller at each attempt; refused even as headers only,
			// the DLQ itself is the problem: wait for it.
			prev, _ := p.refusals.get(key)
			p.refusals.refuse(key, f.err)
			if prev.dlqRefused >= dlqShrinkSteps {
				return &stop{rec: f.src, reason: WaitDLQ, cause: f.err, probe: true}
			}
			return &stop{rec: f.src, cause: f.err}
		}
		p.refusals.refuse(key, f.err)
		return &stop{rec: f.src, cause: f.err}
	case failMissingTopic:
		p.topics.forget(f.topic)
		return &stop{rec: f.src, reason: WaitTopic, cause: f.err, probe: true}
	}
	if f.dlq {
		return &stop{rec: f.src, reason: WaitDLQ, cause: f.err, probe: true}
	}
	return &stop{rec: f.src, reason: WaitDestination, cause: f.err, probe: true}
}

// logFailures logs a batch's produce failures, one line per topic and
// error with the count and the first input record concerned.
func (p *Pipeline) logFailures(failed []failure) {
	type group struct {
		topic, err string
	}
	seen := map[group]int{}
	var order []failure
	for _, f := range failed {
		if classify(f.err) == failShutdown {
			continue
		}
		g := group{f.topic, f.err.Error()}
		if seen[g] == 0 {
			order = append(order, f)
		}
		seen[g]++
	}
	for _, f := range order {
		p.log.Warn("producing records failed", "topic", f.topic, "records", seen[group{f.topic, f.err.Error()}],
			"dead_letter", f.dlq, "destination_id", f.dest, "first_source_partition", f.src.Partition,
			"first_source_offset", f.src.Offset, "err", f.err)
	}
}

// endStuckReason says why ending a transaction most likely ran past the
// rebalance timeout, from the last error End saw.
func endStuckReason(err error) string {
	if errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.ProducerFenced) {
		return "the transaction coordinator no longer accepts this producer's epoch, as after its broker failed over mid-transaction"
	}
	return "this member was probably fenced out of the group"
}

// endTransaction commits the batch's transaction, or aborts it when a
// record failed: a transaction never holds part of an event.
func (p *Pipeline) endTransaction(hard context.Context, acks *acks, failed bool,
	rewind map[string]map[int32]kgo.EpochOffset, pause map[string][]int32) error {
	try := kgo.TryCommit
	if failed {
		try = kgo.TryAbort
	} else if len(rewind) > 0 {
		// Commit nothing past a stop.
		p.cl.SetOffsets(rewind)
	}
	// End is bounded: a member fenced out of the group while it held the
	// batch (a zombie, paused past the session timeout) waits in End for a
	// lost-partitions callback that BlockRebalanceOnPoll holds back until
	// AllowRebalance. Past the rebalance timeout the transaction cannot
	// commit anyway; the pipeline stops with an error and the restarted
	// process rejoins (the transaction is aborted).
	endCtx, cancel := context.WithTimeout(hard, p.cfg.RebalanceTimeout)
	ending := time.Now()
	committed, err := p.sess.End(endCtx, try)
	p.observeSince(PhaseCommit, ending)
	cancel()
	if len(pause) > 0 {
		p.cl.PauseFetchPartitions(pause)
	}
	if err != nil {
		if errors.Is(endCtx.Err(), context.DeadlineExceeded) && hard.Err() == nil {
			return fmt.Errorf("ending the transaction did not finish within the rebalance timeout %s (%s): %w: %w", p.cfg.RebalanceTimeout, endStuckReason(err), stuck(err), err)
		}
		if hard.Err() != nil {
			return nil // shutting down: nothing was committed
		}
		return fmt.Errorf("ending the transaction: %w: %w", stuck(err), err)
	}
	if !committed {
		if !failed {
			// A rebalance or a fenced commit aborted it: the session
			// rewinds to the committed offsets and the records are read
			// again, by us or by the partitions' new owner.
			p.log.Warn("transaction aborted; its records will be processed again")
		}
		return nil
	}
	p.refusals.committed(p.cl.CommittedOffsets())
	p.committed()
	acks.done()
	return nil
}
