// Package app wires idsync together: from a loaded configuration it builds
// the Redis client, the connection store and its cache, the stream pipeline,
// the admin API and the ops listener (metrics, health), runs them, and shuts
// them down in order. In embedded mode it first starts an in-process Kafka
// (kfake) and Redis (miniredis), seeds demo connections and feeds a
// synthetic event stream, so that idsync runs with nothing installed.
//
// This is the only package that knows every other one; it holds no product
// rules.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/plugin/kprom"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/idsync/idsync/admin"
	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/pipeline"
	"github.com/idsync/idsync/store"
)

// Options are what Run needs besides the configuration.
type Options struct {
	// Version is the build version, exported as idsync_build_info.
	Version string
	// Stdout receives the start banner and, in embedded mode, the summary
	// lines.
	Stdout io.Writer
	// Logger receives the log.
	Logger *slog.Logger
	// Now is the processor clock (default time.Now).
	Now func() time.Time
}

// Run runs idsync until ctx is cancelled (SIGINT/SIGTERM), then shuts down:
// the pipeline drains and commits within cfg.ShutdownTimeout, then the
// listeners close and the clients disconnect. It returns nil after a clean
// shutdown and an error naming the part that failed otherwise.
func Run(ctx context.Context, cfg *config.Config, opt Options) error {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Stdout == nil {
		opt.Stdout = io.Discard
	}
	log := opt.Logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "idsync_build_info",
		Help: "Always 1; its labels give the version and the Go version of the running binary.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(opt.Version, runtime.Version()).Set(1)
	reg.MustRegister(buildInfo)

	var emb *embedded
	if cfg.Embedded.Enabled {
		var err error
		emb, err = startEmbedded(cfg, log)
		if err != nil {
			return err
		}
		defer emb.close()
	}

	redisOpts, err := cfg.Redis.UniversalOptions()
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	rdb := redis.NewUniversalClient(redisOpts)
	defer rdb.Close()

	st, err := store.New(rdb, store.Options{
		Prefix:     cfg.Redis.KeyPrefix,
		Activation: cfg.Connections.Activation(),
		AuditLimit: cfg.Connections.AuditLimit,
		Now:        opt.Now,
	})
	if err != nil {
		return fmt.Errorf("connection store: %w", err)
	}
	cache, err := store.NewCache(st, rdb, store.CacheOptions{
		MaxEntries: cfg.Connections.CacheMaxEntries,
		TTL:        cfg.Connections.CacheTTL,
		Now:        opt.Now,
		Registerer: reg,
		Logger:     log.With("component", "cache"),
	})
	if err != nil {
		return fmt.Errorf("configuration cache: %w", err)
	}

	pcfg, err := pipelineConfig(cfg, reg, log, opt.Now)
	if err != nil {
		return err
	}
	p, err := pipeline.New(pcfg, cache, reg, log.With("component", "pipeline"))
	if err != nil {
		return err
	}

	if emb != nil {
		if err := emb.seed(ctx, st, cfg); err != nil {
			return err
		}
	}

	ops, err := listen("ops", cfg.Ops.Listen, opsHandler(reg, func() (bool, string) {
		switch {
		case !p.Ready():
			return false, "no input partitions assigned"
		case !cache.Ready():
			return false, "redis unreachable and no configuration cached"
		}
		return true, ""
	}, func() ([]pipeline.Wait, time.Time) { return p.Waiting(), p.InFlightSince() }), log)
	if err != nil {
		return err
	}
	var adm *server
	var tokens []admin.Token
	if cfg.Admin.Listen != "" {
		tokens = adminTokens(cfg)
		h, err := adminHandler(st, cfg, tokens, opt.Now, log.With("component", "admin"))
		if err != nil {
			ops.shutdown(context.Background())
			return err
		}
		if adm, err = listen("admin", cfg.Admin.Listen, h, log); err != nil {
			ops.shutdown(context.Background())
			return err
		}
	}

	banner(opt.Stdout, cfg, ops, adm, emb, tokens)

	runCtx, stopAll := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAll()
	cacheDone := make(chan error, 1)
	go func() { cacheDone <- cache.Run(runCtx) }()
	if emb != nil {
		go emb.feed(ctx, cfg)
		go summarize(ctx, opt.Stdout, reg, 5*time.Second)
	}

	perr := p.Run(ctx)
	if perr != nil && ctx.Err() == nil {
		log.Error("pipeline stopped", "err", perr)
	}

	// The pipeline has drained; close the listeners, then the cache.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if adm != nil {
		adm.shutdown(shutdownCtx)
	}
	ops.shutdown(shutdownCtx)
	stopAll()
	if err := <-cacheDone; err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("configuration cache stopped", "err", err)
	}
	if perr != nil {
		return fmt.Errorf("pipeline: %w", perr)
	}
	return nil
}

// pipelineConfig turns the configuration into the pipeline's.
func pipelineConfig(cfg *config.Config, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (pipeline.Config, error) {
	k := cfg.Kafka
	tmpl, err := k.TopicTemplate()
	if err != nil {
		return pipeline.Config{}, err
	}
	opts := []kgo.Opt{
		kgo.WithHooks(kprom.NewMetrics("idsync", kprom.Registerer(reg), kprom.FetchAndProduceDetail(kprom.ByNode, kprom.Batches, kprom.Records, kprom.CompressedBytes, kprom.UncompressedBytes))),
		kgo.WithLogger(kslog.New(KafkaLogger(log, cfg.Log))),
	}
	conn, err := KafkaConnOpts(k)
	if err != nil {
		return pipeline.Config{}, err
	}
	opts = append(opts, conn...)
	instance := k.InstanceID
	if instance == "" {
		if instance, err = os.Hostname(); err != nil {
			return pipeline.Config{}, fmt.Errorf("kafka.instance_id is empty and the host name is unknown: %w", err)
		}
	}
	return pipeline.Config{
		Brokers:                k.Brokers,
		ClientID:               k.ClientID,
		InputTopic:             k.InputTopic,
		GroupID:                k.GroupID,
		DLQTopic:               k.DLQTopic,
		Topics:                 tmpl,
		Delivery:               pipeline.Delivery(k.Delivery),
		TransactionalID:        k.TransactionalIDPrefix + "-" + instance,
		CreateTopics:           k.CreateTopics,
		TopicPartitions:        int32(k.TopicPartitions),
		TopicReplicationFactor: int16(k.TopicReplicationFactor),
		MaxRecordBytes:         int32(k.ProducerBatchMaxBytes),
		SessionTimeout:         k.SessionTimeout,
		RebalanceTimeout:       k.RebalanceTimeout,
		FetchMaxBytes:          int32(k.FetchMaxBytes),
		MaxPollRecords:         k.MaxPollRecords,
		MaxInflightRecords:     cfg.Processing.MaxInflightRecords,
		MaxInflightBytes:       int(cfg.Processing.MaxInflightBytes),
		ProducerLinger:         k.ProducerLinger,
		ShutdownTimeout:        cfg.ShutdownTimeout,
		LagInterval:            cfg.Processing.LagInterval,
		Limits:                 cfg.Processing.Limits(),
		Options:                cfg.ProcessOptions(), // MaxRecordBytes from kafka.producer_batch_max_bytes
		ClientOpts:             opts,
		Now:                    now,
	}, nil
}

// KafkaConnOpts returns the franz-go options that reach and authenticate
// to the brokers as the kafka settings say: the dial timeout, TLS
// (kafka.tls) and SASL (kafka.sasl). The service and the command line's
// Kafka clients ("idsync tail") both use it, so they connect alike. It
// reads the TLS files; an error names the setting.
func KafkaConnOpts(k config.Kafka) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.DialTimeout(k.DialTimeout)}
	tlsCfg, err := k.TLSConfig()
	if err != nil {
		return nil, fmt.Errorf("kafka.tls: %w", err)
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	switch k.SASL.Mechanism {
	case "":
	case config.SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: k.SASL.Username, Pass: k.SASL.Password}.AsMechanism()))
	case config.SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASL.Username, Pass: k.SASL.Password}.AsSha256Mechanism()))
	case config.SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASL.Username, Pass: k.SASL.Password}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism: %q is not supported", k.SASL.Mechanism)
	}
	return opts, nil
}
