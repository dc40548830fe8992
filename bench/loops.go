package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/pipeline"
	"github.com/idsync/idsync/store"
)

// pipelineConfig is the pipeline configuration the binary builds
// (app.pipelineConfig) from the default settings, pointed at the
// benchmark's topics: the same client options, metrics hooks and limits.
func (e *env) pipelineConfig(inputTopic, group string, reg prometheus.Registerer, extra ...kgo.Opt) pipeline.Config {
	def := config.Default()
	k := def.Kafka
	opts := []kgo.Opt{
		kgo.DialTimeout(k.DialTimeout),
		kgo.WithHooks(kprom.NewMetrics("idsync", kprom.Subsystem("kafka"), kprom.Registerer(reg), kprom.FetchAndProduceDetail(kprom.ByNode, kprom.Batches, kprom.Records, kprom.CompressedBytes, kprom.UncompressedBytes, kprom.ConsistentNaming))),
		kgo.WithLogger(kslog.New(e.cfg.Logger.With("component", "kafka"))),
	}
	opts = append(opts, extra...)
	return pipeline.Config{
		Brokers:                e.brokers,
		ClientID:               k.ClientID,
		InputTopic:             inputTopic,
		GroupID:                group,
		DLQTopic:               e.dlq,
		Topics:                 e.tmpl,
		Delivery:               e.cfg.Delivery,
		TransactionalID:        group,
		CreateTopics:           k.CreateTopics,
		TopicPartitions:        e.cfg.Partitions,
		TopicReplicationFactor: int16(k.TopicReplicationFactor),
		MaxRecordBytes:         int32(k.ProducerBatchMaxBytes),
		SessionTimeout:         k.SessionTimeout,
		RebalanceTimeout:       k.RebalanceTimeout,
		FetchMaxBytes:          int32(k.FetchMaxBytes),
		MaxPollRecords:         k.MaxPollRecords,
		MaxInflightRecords:     def.Processing.MaxInflightRecords,
		MaxInflightBytes:       e.cfg.MaxInflightBytes,
		ProducerLinger:         k.ProducerLinger,
		ShutdownTimeout:        10 * time.Second,
		Limits:                 def.Processing.Limits(),
		Options:                def.Processing.Options(),
		ClientOpts:             opts,
	}
}

// idsyncLoop builds what app.Run builds for the stream: a configuration
// cache in front of the Redis store (fresh, as at process start) and the
// pipeline with the binary's settings and metrics.
func (e *env) idsyncLoop(in *input, group string, tr *tracker, reg *prometheus.Registry) (func(context.Context) error, error) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	def := config.Default()
	cache, err := store.NewCache(e.st, e.rdb, store.CacheOptions{
		MaxEntries: def.Connections.CacheMaxEntries,
		TTL:        def.Connections.CacheTTL,
		Registerer: reg,
		Logger:     e.cfg.Logger.With("component", "cache"),
	})
	if err != nil {
		return nil, fmt.Errorf("bench: configuration cache: %w", err)
	}
	pcfg := e.pipelineConfig(in.name, group, reg, tr.hooks())
	if e.cfg.Membership {
		pcfg.MembershipTopic = group + membershipSuffix
	}
	p, err := pipeline.New(pcfg, cache, reg, e.cfg.Logger.With("component", "pipeline"))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return func(ctx context.Context) error {
		cacheCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		cacheDone := make(chan struct{})
		go func() { defer close(cacheDone); _ = cache.Run(cacheCtx) }()
		err := p.Run(ctx)
		stop()
		<-cacheDone
		return err
	}, nil
}

// baselineLoop is the limit idsync is compared with: the pipeline's Kafka
// loop without the processing. Same client settings (consumer group,
// manual commits, BlockRebalanceOnPoll, the same fetch, batch, linger and
// buffer settings, idempotent producer or a transactional session), same
// batches (PollRecords of max_poll_records, partitions in parallel on
// GOMAXPROCS workers, every record acknowledged before the commit or the
// transaction's end). For each input record it produces the records idsync
// produces for it: same count, topics, keys, header names and value
// sizes, the values cut from real idsync output so they compress alike.
// It decodes nothing, resolves nothing and keeps no metrics.
func (e *env) baselineLoop(in *input, group string, tr *tracker) (func(context.Context) error, error) {
	cfg := e.pipelineConfig(in.name, group, prometheus.NewRegistry())
	// The pipeline's own client options (the baseline differs from idsync in
	// processing only), with the bench's tracker instead of metrics hooks.
	cfg.ClientOpts = []kgo.Opt{kgo.DialTimeout(config.Default().Kafka.DialTimeout), tr.hooks()}
	opts := pipeline.ClientOptions(cfg)
	var (
		cl   *kgo.Client
		sess *kgo.GroupTransactSession
		err  error
	)
	if e.cfg.Delivery == pipeline.ExactlyOnce {
		if sess, err = kgo.NewGroupTransactSession(opts...); err == nil {
			cl = sess.Client()
		}
	} else {
		cl, err = kgo.NewClient(opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("bench: baseline client: %w", err)
	}
	x := e.exp
	produce := func(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
		if sess != nil {
			sess.Produce(ctx, r, promise)
		} else {
			cl.Produce(ctx, r, promise)
		}
	}
	return func(ctx context.Context) error {
		defer func() {
			// A poll cut short by ctx still blocks rebalances, and leaving
			// the group is one.
			if sess != nil {
				sess.AllowRebalance()
				sess.Close()
				return
			}
			cl.AllowRebalance()
			leave, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = cl.LeaveGroupContext(leave)
			cancel()
			cl.Close()
		}()
		for ctx.Err() == nil {
			var fetches kgo.Fetches
			if sess != nil {
				fetches = sess.PollRecords(ctx, cfg.MaxPollRecords)
			} else {
				fetches = cl.PollRecords(ctx, cfg.MaxPollRecords)
			}
			if fetches.IsClientClosed() || ctx.Err() != nil {
				return nil
			}
			parts := partitionsOf(fetches)
			if len(parts) == 0 {
				continue
			}
			if sess != nil {
				if err := sess.Begin(); err != nil {
					return fmt.Errorf("beginning a transaction: %w", err)
				}
			}
			var acks sync.WaitGroup
			var mu sync.Mutex
			var perr error
			promise := func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					perr = err
					mu.Unlock()
				}
				acks.Done()
			}
			x.produceAll(in, parts, func(r *kgo.Record) {
				acks.Add(1)
				produce(ctx, r, promise)
			})
			if sess != nil {
				committed, err := sess.End(context.WithoutCancel(ctx), kgo.TryCommit)
				acks.Wait()
				if err != nil {
					return fmt.Errorf("ending the transaction: %w", err)
				}
				if !committed {
					return errors.New("transaction aborted")
				}
			} else {
				acks.Wait()
				if perr != nil {
					return perr
				}
				if err := cl.CommitUncommittedOffsets(context.WithoutCancel(ctx)); err != nil {
					return fmt.Errorf("committing: %w", err)
				}
			}
			if sess != nil {
				sess.AllowRebalance()
			} else {
				cl.AllowRebalance()
			}
		}
		return nil
	}, nil
}

// partitionsOf returns the records of each partition of a poll that has
// any.
func partitionsOf(fetches kgo.Fetches) [][]*kgo.Record {
	var parts [][]*kgo.Record
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 {
			parts = append(parts, p.Records)
		}
	})
	return parts
}

// produceAll calls produce with the outputs of every record of parts, the
// partitions spread over GOMAXPROCS workers (each partition's records in
// order on one worker), and returns when all are handed over.
func (x *expected) produceAll(in *input, parts [][]*kgo.Record, produce func(*kgo.Record)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), len(parts)) {
		wg.Go(func() {
			for i := range next {
				for _, rec := range parts[i] {
					x.outputs(in, rec, produce)
				}
			}
		})
	}
	for i := range parts {
		next <- i
	}
	close(next)
	wg.Wait()
}

// outputs calls produce with each record idsync produces for the input
// rec (same count, topics, keys, header names and value sizes; values cut
// from real idsync output): what the baseline loops write.
func (x *expected) outputs(in *input, rec *kgo.Record, produce func(*kgo.Record)) {
	ev := in.eventAt(rec.Partition, rec.Offset)
	if ev < 0 {
		return
	}
	src := sourceHeader(rec)
	key := rec.Key[min(len(rec.Key), len(Space)+1):]
	for j, o := range x.of(ev) {
		off := (ev*977 + j*131) % (len(x.filler) - int(o.size))
		produce(&kgo.Record{
			Topic: x.topics[o.topic],
			Key:   key,
			Value: x.filler[off : off+int(o.size)],
			Headers: []kgo.RecordHeader{
				{Key: idsync.HeaderSource, Value: src},
				{Key: idsync.HeaderConfigVersion, Value: baselineVersion},
			},
		})
	}
}

// baselineVersion is the config version header of the baselines' records.
var baselineVersion = []byte("1")

func sourceHeader(rec *kgo.Record) []byte {
	b := make([]byte, 0, len(rec.Topic)+24)
	b = append(b, rec.Topic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(rec.Partition), 10)
	b = append(b, '/')
	return strconv.AppendInt(b, rec.Offset, 10)
}
