package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/pipeline"
)

// rawLoop is the fastest at_least_once consume→produce loop we can build on
// franz-go: the true limit idsync is measured against. Unlike the cycle
// loop (baselineLoop) and the pipeline, it does not wait for a batch's
// acknowledgements before polling the next: the next poll overlaps the
// previous batches' produce round trips, and offsets are committed in poll
// order as their batches complete (a batch's offsets only once every record
// it produced, and every earlier batch's, is acknowledged), by a committer
// goroutine that coalesces commits. The guarantee is the same: an offset
// is committed only after all the outputs of every record before it are
// acknowledged, so nothing is lost; a crash re-delivers what was not
// committed. Records in flight are bounded by the producer's buffer
// (max_inflight_records/bytes: Produce blocks when it is full).
//
// exactly_once has no such loop: a transactional producer has one
// transaction open at a time, so a batch's commit is the end of its
// transaction and the next cannot begin before; its limit is the cycle
// loop.
func (e *env) rawLoop(in *input, group string, tr *tracker) (func(context.Context) error, error) {
	cfg := e.pipelineConfig(in.name, group, prometheus.NewRegistry())
	def := config.Default()
	c := &committer{wake: make(chan struct{}, 1)}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.ConsumerGroup(cfg.GroupID),
		kgo.ConsumeTopics(cfg.InputTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.RebalanceTimeout(cfg.RebalanceTimeout),
		kgo.FetchMaxBytes(cfg.FetchMaxBytes),
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.ProducerBatchMaxBytes(cfg.MaxRecordBytes),
		kgo.MaxBufferedRecords(cfg.MaxInflightRecords),
		kgo.MaxBufferedBytes(cfg.MaxInflightBytes),
		kgo.DialTimeout(def.Kafka.DialTimeout),
		tr.hooks(),
		// Before a partition goes to another member, everything produced
		// is acknowledged and every completed batch committed: the new
		// owner starts where this one's outputs end (at_least_once would
		// allow less, but this costs nothing and keeps duplicates out of
		// the comparison).
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) {
			_ = cl.Flush(ctx)
			c.commitNow(ctx, cl)
		}),
	}
	if cfg.ProducerLinger > 0 {
		opts = append(opts, kgo.ProducerLinger(cfg.ProducerLinger))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("bench: raw loop client: %w", err)
	}
	c.cl = cl
	x := e.exp
	return func(ctx context.Context) error {
		commitDone := make(chan struct{})
		commitCtx, stopCommits := context.WithCancel(context.WithoutCancel(ctx))
		go func() { defer close(commitDone); c.run(commitCtx) }()
		defer func() {
			// Drain: acknowledge what is in flight, commit it, leave.
			flush, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = cl.Flush(flush)
			c.commitNow(flush, cl)
			_ = cl.LeaveGroupContext(flush)
			cancel()
			stopCommits()
			<-commitDone
			cl.Close()
		}()
		for ctx.Err() == nil {
			fetches := cl.PollRecords(ctx, cfg.MaxPollRecords)
			if fetches.IsClientClosed() || ctx.Err() != nil {
				return nil
			}
			parts := partitionsOf(fetches)
			if len(parts) == 0 {
				continue
			}
			b := c.begin(parts)
			x.produceAll(in, parts, func(r *kgo.Record) {
				b.pending.Add(1)
				cl.Produce(ctx, r, b.ack)
			})
			b.ack(nil, nil) // the batch's own reference: it is fully produced
			if err := c.err(); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// rawBatch is one poll's records in flight: its offsets become committable
// when pending (its records not yet acknowledged, plus one while it is
// being produced) reaches zero.
type rawBatch struct {
	c       *committer
	offsets map[string]map[int32]kgo.EpochOffset
	pending atomic.Int64
	done    atomic.Bool
	failed  atomic.Bool
}

// ack is the produce promise of the batch's records.
func (b *rawBatch) ack(_ *kgo.Record, err error) {
	if err != nil {
		b.failed.Store(true)
	}
	if b.pending.Add(-1) == 0 {
		b.done.Store(true)
		select {
		case b.c.wake <- struct{}{}:
		default:
		}
	}
}

// committer commits the offsets of completed batches in poll order.
type committer struct {
	cl   *kgo.Client
	wake chan struct{}

	mu      sync.Mutex
	queue   []*rawBatch // in poll order
	ready   map[string]map[int32]kgo.EpochOffset
	stopped error // a failed record stops commits: nothing past it is committed
}

// begin queues a new batch for the records of parts.
func (c *committer) begin(parts [][]*kgo.Record) *rawBatch {
	b := &rawBatch{c: c, offsets: map[string]map[int32]kgo.EpochOffset{}}
	b.pending.Store(1)
	for _, p := range parts {
		last := p[len(p)-1]
		if b.offsets[last.Topic] == nil {
			b.offsets[last.Topic] = map[int32]kgo.EpochOffset{}
		}
		b.offsets[last.Topic][last.Partition] = kgo.EpochOffset{Epoch: last.LeaderEpoch, Offset: last.Offset + 1}
	}
	c.mu.Lock()
	c.queue = append(c.queue, b)
	c.mu.Unlock()
	return b
}

// collect moves the offsets of the completed batches at the head of the
// queue to ready and returns them (nil when there is nothing new).
func (c *committer) collect() map[string]map[int32]kgo.EpochOffset {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, b := range c.queue {
		if !b.done.Load() || c.stopped != nil {
			break
		}
		if b.failed.Load() {
			c.stopped = fmt.Errorf("a record was not acknowledged: commits stop before it")
			break
		}
		if c.ready == nil {
			c.ready = map[string]map[int32]kgo.EpochOffset{}
		}
		for t, ps := range b.offsets {
			if c.ready[t] == nil {
				c.ready[t] = map[int32]kgo.EpochOffset{}
			}
			for p, o := range ps {
				c.ready[t][p] = o
			}
		}
		n++
	}
	clear(c.queue[:n])
	c.queue = c.queue[n:]
	out := c.ready
	c.ready = nil
	return out
}

// err is why commits stopped, if they did.
func (c *committer) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// commitNow commits whatever completed batches are ready.
func (c *committer) commitNow(ctx context.Context, cl *kgo.Client) {
	if offs := c.collect(); offs != nil {
		cl.CommitOffsetsSync(ctx, offs, nil)
	}
}

// run commits as batches complete, at most one commit in flight: commits
// that pile up while one is on the wire are merged into the next.
func (c *committer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
			c.commitNow(ctx, c.cl)
		}
	}
}

// rawAvailable reports whether the raw loop applies to the delivery mode.
func rawAvailable(d pipeline.Delivery) bool { return d == pipeline.AtLeastOnce }
