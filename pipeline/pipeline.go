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
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

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

	Limits  idsync.Limits
	Options idsync.Options
	// ClientOpts are appended to the Kafka client options (TLS, SASL,
	// dialer, logger, hooks).
	ClientOpts []kgo.Opt
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
	if c.Now == nil {
		c.Now = time.Now
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
	// held are the partitions waiting for a record's configuration: paused
	// until the time given, or resumed (zero time) and not yet past it.
	held map[topicPartition]time.Time
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
	p := &Pipeline{
		cfg:  cfg,
		src:  src,
		log:  log,
		m:    newMetrics(reg),
		held: map[topicPartition]time.Time{},
	}
	opts := append(ClientOptions(cfg),
		kgo.OnPartitionsAssigned(p.onAssigned),
		kgo.OnPartitionsRevoked(p.onRevoked),
		kgo.OnPartitionsLost(p.onLost),
	)
	var err error
	if cfg.Delivery == ExactlyOnce {
		p.sess, err = kgo.NewGroupTransactSession(opts...)
		if err == nil {
			p.cl = p.sess.Client()
		}
	} else {
		p.cl, err = kgo.NewClient(opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("pipeline: creating kafka client: %w", err)
	}
	p.topics = newTopics(p.cl, cfg, p.m, log)
	return p, nil
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
		// A destination topic that does not exist yet is waited for, never
		// failed: records stay buffered (bounded) until it appears.
		kgo.UnknownTopicRetries(-1),
	}
	if cfg.ProducerLinger > 0 {
		opts = append(opts, kgo.ProducerLinger(cfg.ProducerLinger))
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
func (p *Pipeline) Client() *kgo.Client { return p.cl }

func (p *Pipeline) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	n := 0
	for _, ps := range assigned {
		n += len(ps)
	}
	p.assigned.Add(int64(n))
	p.m.rebalances.WithLabelValues("assigned").Inc()
	p.log.Info("partitions assigned", "count", n, "partitions", assigned)
}

// onRevoked runs inside a poll or AllowRebalance (BlockRebalanceOnPoll):
// every batch polled before it was processed, acknowledged and committed
// (or its transaction ended), so there is nothing left to commit. Records
// held back for a missing configuration are abandoned uncommitted; the new
// owner reads them from the committed offset.
func (p *Pipeline) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	p.forget(revoked, "revoked")
}

func (p *Pipeline) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	p.forget(lost, "lost")
}

func (p *Pipeline) forget(parts map[string][]int32, kind string) {
	n := 0
	for topic, ps := range parts {
		for _, part := range ps {
			n++
			delete(p.held, topicPartition{topic, part})
			p.m.lag.DeleteLabelValues(partitionLabel(part))
		}
	}
	p.m.heldPartition.Set(float64(len(p.held)))
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

	err := p.loop(ctx, hard)
	if err == nil && deadline.Load() {
		err = fmt.Errorf("shutdown timeout %s exceeded", p.cfg.ShutdownTimeout)
	}
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
	if err := p.topics.ensureDLQ(hard); err != nil {
		return err
	}
	for ctx.Err() == nil {
		p.resumeDue()
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if p.pausedHeld() {
			pollCtx, cancel = context.WithTimeout(ctx, p.cfg.RetryBackoff)
		}
		var fetches kgo.Fetches
		if p.sess != nil {
			fetches = p.sess.PollRecords(pollCtx, p.cfg.MaxPollRecords)
		} else {
			fetches = p.cl.PollRecords(pollCtx, p.cfg.MaxPollRecords)
		}
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
			}
		})
		err := p.batch(hard, fetches)
		p.allowRebalance()
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *Pipeline) allowRebalance() {
	if p.sess != nil {
		p.sess.AllowRebalance()
	} else {
		p.cl.AllowRebalance()
	}
}

// resumeDue resumes the partitions whose wait for configuration is over;
// their next fetch starts again at the record that waited.
func (p *Pipeline) resumeDue() {
	now := time.Now()
	resume := map[string][]int32{}
	for tp, until := range p.held {
		if !until.IsZero() && !now.Before(until) {
			resume[tp.topic] = append(resume[tp.topic], tp.partition)
			p.held[tp] = time.Time{} // resumed; still waiting until its record passes
		}
	}
	if len(resume) > 0 {
		p.cl.ResumeFetchPartitions(resume)
	}
}

// pausedHeld reports whether some held partition is still paused (the poll
// must then wake up to resume it).
func (p *Pipeline) pausedHeld() bool {
	for _, until := range p.held {
		if !until.IsZero() {
			return true
		}
	}
	return false
}

// batch processes one poll's records (see records), then waits for every
// produced record and commits.
func (p *Pipeline) batch(hard context.Context, fetches kgo.Fetches) error {
	var parts []kgo.FetchTopicPartition
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) > 0 {
			parts = append(parts, ftp)
			last := ftp.Records[len(ftp.Records)-1].Offset
			p.m.lag.WithLabelValues(partitionLabel(ftp.Partition)).Set(float64(max(0, ftp.HighWatermark-last-1)))
		}
	})
	if len(parts) == 0 {
		return nil
	}
	if p.sess != nil {
		if err := p.sess.Begin(); err != nil {
			return fmt.Errorf("beginning a transaction: %w", err)
		}
	}
	acks := newAcks(p)
	holds := p.records(hard, acks, parts)

	// Partitions that stopped at a record whose configuration is not
	// readable: rewind to that record (nothing is committed past it) and
	// pause until the retry backoff is over.
	rewind := map[string]map[int32]kgo.EpochOffset{}
	pause := map[string][]int32{}
	for i, r := range holds {
		if r == nil {
			// Its records went through: it no longer waits.
			delete(p.held, topicPartition{parts[i].Topic, parts[i].Partition})
			continue
		}
		if rewind[r.Topic] == nil {
			rewind[r.Topic] = map[int32]kgo.EpochOffset{}
		}
		rewind[r.Topic][r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		pause[r.Topic] = append(pause[r.Topic], r.Partition)
		p.held[topicPartition{r.Topic, r.Partition}] = time.Now().Add(p.cfg.RetryBackoff)
	}
	if len(rewind) > 0 {
		p.cl.SetOffsets(rewind)
		p.cl.PauseFetchPartitions(pause)
	}
	p.m.heldPartition.Set(float64(len(p.held)))
	return p.commit(hard, acks)
}

// commit waits for every record of the batch and commits the input offsets:
// in at_least_once only after all acknowledgements; in exactly_once by
// ending the transaction, which carries the offsets.
func (p *Pipeline) commit(hard context.Context, acks *acks) error {
	if p.sess != nil {
		// End is bounded: a member fenced out of the group while it held
		// the batch (a zombie, paused past the session timeout) waits in End
		// for a lost-partitions callback that BlockRebalanceOnPoll holds
		// back until AllowRebalance. Past the rebalance timeout the
		// transaction cannot commit anyway; the pipeline stops with an error
		// and the restarted process rejoins (the transaction is aborted).
		endCtx, cancel := context.WithTimeout(hard, p.cfg.RebalanceTimeout)
		committed, err := p.sess.End(endCtx, kgo.TryCommit)
		cancel()
		acks.wait() // End flushed or aborted: every promise has run.
		if err != nil {
			if endCtx.Err() != nil && hard.Err() == nil {
				return fmt.Errorf("ending the transaction did not finish within the rebalance timeout %s (this member was probably fenced out of the group): %w", p.cfg.RebalanceTimeout, err)
			}
			return fmt.Errorf("ending the transaction: %w", err)
		}
		if perr := acks.failure(); perr != nil {
			return perr
		}
		if !committed {
			// A rebalance or a fenced commit aborted it: the session
			// rewinds to the committed offsets and the records are read
			// again, by us or by the partitions' new owner.
			p.log.Warn("transaction aborted; its records will be processed again")
			return nil
		}
		acks.done()
		return nil
	}
	acks.wait()
	if err := acks.failure(); err != nil {
		return err
	}
	acks.done()
	if err := p.cl.CommitUncommittedOffsets(hard); err != nil {
		// Typically a rebalance fenced us (the partitions moved): the new
		// owner reprocesses from the last commit, which at-least-once allows.
		p.log.Warn("committing offsets", "err", err)
		return nil
	}
	return nil
}
