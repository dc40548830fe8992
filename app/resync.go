package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/idsync/idsync/admin"
	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/pipeline"
	"github.com/idsync/idsync/store"
)

// resyncs is the admin API's side of resyncs (docs/resync.md): the store
// keeps them, and a plain (never transactional) producer writes their start
// records into every partition of the input topic.
type resyncs struct {
	st    *store.Store
	cl    *kgo.Client
	input string
	now   func() time.Time
}

func newResyncs(st *store.Store, cfg *config.Config, now func() time.Time, log *slog.Logger) (*resyncs, error) {
	conn, err := KafkaConnOpts(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Kafka.Brokers...),
		kgo.ClientID(cfg.Kafka.ClientID + "-admin"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.WithLogger(kslog.New(KafkaLogger(log, cfg.Log))),
	}, conn...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("resync producer: %w", err)
	}
	return &resyncs{st: st, cl: cl, input: cfg.Kafka.InputTopic, now: now}, nil
}

func (r *resyncs) close() { r.cl.Close() }

// Start stores job and writes one start record into each input partition.
// A start that cannot write them cancels the stored resync (best effort)
// and fails.
func (r *resyncs) Start(ctx context.Context, job idsync.Resync) (idsync.Resync, error) {
	topics, err := kadm.NewClient(r.cl).ListTopics(ctx, r.input)
	if err != nil {
		return job, fmt.Errorf("describing input topic %s: %w", r.input, err)
	}
	d, ok := topics[r.input]
	if !ok || d.Err != nil || len(d.Partitions) == 0 {
		return job, fmt.Errorf("describing input topic %s: %v", r.input, d.Err)
	}
	job.Partitions = int32(len(d.Partitions))
	if err := r.st.CreateResync(ctx, job); err != nil {
		return job, err
	}
	recs := pipeline.ResyncStartRecords(r.input, job.Partitions, &job)
	if err := r.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = r.st.CancelResync(cctx, job.ID, r.now())
		return job, fmt.Errorf("writing the start records of resync %s into %s: %w", job.ID, r.input, err)
	}
	return job, nil
}

func (r *resyncs) Get(ctx context.Context, id string) (*idsync.Resync, error) {
	return r.st.Resync(ctx, id)
}

func (r *resyncs) Progress(ctx context.Context, id string) ([]idsync.ResyncProgress, error) {
	return r.st.ResyncProgress(ctx, id)
}

func (r *resyncs) Cancel(ctx context.Context, id string, at time.Time) (*idsync.Resync, error) {
	return r.st.CancelResync(ctx, id, at)
}

func (r *resyncs) List(ctx context.Context, k admin.Key) ([]idsync.Resync, error) {
	return r.st.ListResyncs(ctx, store.Key(k))
}

// publishResyncProgress writes the pipeline's resync progress into Redis
// every interval, under this instance's name, until ctx ends (and once
// more then, for what the drain finished).
func publishResyncProgress(ctx context.Context, p *pipeline.Pipeline, st *store.Store, instance string, interval time.Duration, log *slog.Logger) {
	var since time.Time
	publish := func(ctx context.Context) {
		t := time.Now()
		for id, ps := range p.ResyncUpdates(since) {
			for i := range ps {
				ps[i].Instance = instance
			}
			if err := st.SaveResyncProgress(ctx, id, ps); err != nil {
				log.Warn("publishing resync progress", "resync_id", id, "err", err)
				return // tried again next time, from the same point
			}
		}
		since = t
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			publish(fctx)
			cancel()
			return
		case <-tick.C:
			publish(ctx)
		}
	}
}
