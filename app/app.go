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
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/idsync/idsync/admin"
	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/pipeline"
	"github.com/idsync/idsync/store"
)

// SettingsError is an error of Run caused by a setting that the
// configuration's own validation cannot judge alone (it depends on the
// mode): the command line reports it as invalid settings.
type SettingsError struct {
	Setting string
	Err     error
}

func (e *SettingsError) Error() string { return e.Setting + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *SettingsError) Unwrap() error { return e.Err }

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
	for _, d := range cfg.Deprecated() {
		log.Warn("deprecated setting", "setting", d.Key, "detail", d.Message)
	}
	if cfg.Admin.Listen != "" && len(adminTokens(cfg)) == 0 {
		// Refused before anything is built or dialled: a setting, not a
		// failure while running.
		return &SettingsError{Setting: "admin.tokens", Err: errors.New("the admin API is enabled (admin.listen) but no token is configured: set admin.tokens, or admin.listen to \"\" to disable the API")}
	}
	reg := newRegistry(opt.Version)

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
	rdb := newRedisClient(redisOpts)
	defer rdb.Close()
	if !cfg.Embedded.Enabled {
		if err := checkRedis(ctx, rdb, cfg.Redis, log); err != nil {
			return err
		}
	}
	reg.MustRegister(newRedisPoolCollector(rdb))

	st, err := store.New(rdb, store.Options{
		Prefix:            cfg.Redis.KeyPrefix,
		Activation:        cfg.Connections.Activation(),
		AuditLimit:        cfg.Connections.AuditLimit,
		Now:               opt.Now,
		ResyncRetention:   cfg.Resync.Retention,
		ReplicaAcks:       cfg.Redis.ReplicaAcks,
		ReplicaAckTimeout: cfg.Redis.ReplicaAckTimeout,
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
	var rs *resyncs
	if cfg.Resync.Enabled {
		pcfg.MembershipTopic = cfg.Resync.MembershipTopicFor(cfg.Kafka.GroupID)
		pcfg.Resyncs = st
		pcfg.ResyncRate = float64(cfg.Resync.Rate)
		pcfg.ResyncStepMembers = cfg.Resync.StepMembers
		pcfg.ResyncMaxMembers = cfg.Resync.MaxMembersPerPartition
		if rs, err = newResyncs(st, cfg, opt.Now, log.With("component", "resync")); err != nil {
			return err
		}
		defer rs.close()
	}
	// A TLS (or SASL) setting that cannot work stops the pipeline (and Run)
	// with a KafkaConnectError instead of a client retrying forever.
	pipeCtx, stopPipeline := context.WithCancelCause(ctx)
	defer stopPipeline(nil)
	watch := &connWatch{tlsEnabled: cfg.Kafka.TLS.Enabled, clientCert: cfg.Kafka.TLS.CertFile != "", fail: stopPipeline}
	pcfg.ClientOpts = append(pcfg.ClientOpts, kgo.WithHooks(watch))
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
	}, func() ([]pipeline.Wait, time.Time) { return p.Waiting(), p.InFlightSince() }, cfg.Ops.Pprof), log)
	if err != nil {
		return err
	}
	var adm *server
	var tokens []admin.Token
	if cfg.Admin.Listen != "" {
		tokens = adminTokens(cfg)
		var ars admin.Resyncs
		if rs != nil {
			ars = rs
		}
		h, err := adminHandler(st, ars, cfg, tokens, opt.Now, log.With("component", "admin"))
		if err != nil {
			ops.shutdown(context.Background())
			return err
		}
		h = newHTTPMetrics(reg, "admin").instrument(h)
		var tc *tls.Config
		if cfg.Admin.TLSCertFile != "" {
			certs, err := newCertReloader(cfg.Admin.TLSCertFile, cfg.Admin.TLSKeyFile, log.With("component", "admin"))
			if err != nil {
				ops.shutdown(context.Background())
				return &SettingsError{Setting: "admin.tls_cert_file", Err: err}
			}
			tc = certs.tlsConfig()
		}
		if adm, err = listenTLS("admin", cfg.Admin.Listen, h, tc, log); err != nil {
			ops.shutdown(context.Background())
			return err
		}
	}

	banner(opt.Stdout, cfg, ops, adm, emb, tokens)

	runCtx, stopAll := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAll()
	cacheDone := make(chan error, 1)
	go func() { cacheDone <- cache.Run(runCtx) }()
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if rs != nil {
			publishResyncProgress(runCtx, p, st, pcfg.TransactionalID, time.Second, log.With("component", "resync"))
		}
	}()
	if emb != nil {
		go emb.feed(ctx, cfg)
		go summarize(ctx, opt.Stdout, reg, 5*time.Second)
	}

	perr := p.Run(pipeCtx)
	var tlsErr *KafkaConnectError
	if errors.As(context.Cause(pipeCtx), &tlsErr) {
		perr = tlsErr
	} else if perr != nil && ctx.Err() == nil {
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
	<-progressDone
	if err := <-cacheDone; err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("configuration cache stopped", "err", err)
	}
	if tlsErr != nil {
		return tlsErr
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
	codec, err := compression(k.Compression)
	if err != nil {
		return pipeline.Config{}, err
	}
	reset := kgo.NewOffset().AtStart()
	if k.AutoOffsetReset == config.OffsetLatest {
		reset = kgo.NewOffset().AtEnd()
	}
	opts := []kgo.Opt{
		kgo.WithHooks(kprom.NewMetrics("idsync", kprom.Subsystem("kafka"), kprom.Registerer(reg),
			kprom.FetchAndProduceDetail(kprom.ByNode, kprom.Batches, kprom.Records, kprom.CompressedBytes, kprom.UncompressedBytes, kprom.ConsistentNaming))),
		kgo.WithLogger(kslog.New(KafkaLogger(log, cfg.Log))),
		// pipeline.ClientOptions puts these after its own options, so they
		// replace its defaults (snappy, the start of a partition, 500ms).
		kgo.ProducerBatchCompression(codec),
		kgo.ConsumeResetOffset(reset),
		kgo.FetchMaxWait(k.FetchMaxWait),
	}
	if k.ClientRack != "" {
		opts = append(opts, kgo.Rack(k.ClientRack))
	}
	if k.GroupInstanceID != "" {
		// Static membership: Close does not leave the group, so a restart
		// within kafka.session_timeout gets its partitions back without a
		// rebalance, and an instance that stops for good keeps its
		// partitions, unread, until the session timeout passes.
		opts = append(opts, kgo.InstanceID(k.GroupInstanceID))
	}
	conn, err := KafkaConnOpts(k)
	if err != nil {
		return pipeline.Config{}, err
	}
	opts = append(opts, conn...)
	connOpts := append([]kgo.Opt{kgo.WithLogger(kslog.New(KafkaLogger(log, cfg.Log)))}, conn...)
	suffix := k.TransactionalIDSuffix
	if suffix == "" {
		if suffix, err = os.Hostname(); err != nil {
			return pipeline.Config{}, fmt.Errorf("kafka.transactional_id_suffix is empty and the host name is unknown: %w", err)
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
		TransactionalID:        k.TransactionalIDPrefix + "-" + suffix,
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
		ConnOpts:               connOpts,
		Now:                    now,
	}, nil
}

// compression returns the codec of kafka.compression.
func compression(name string) (kgo.CompressionCodec, error) {
	switch name {
	case config.CompressionNone:
		return kgo.NoCompression(), nil
	case config.CompressionGzip:
		return kgo.GzipCompression(), nil
	case config.CompressionSnappy:
		return kgo.SnappyCompression(), nil
	case config.CompressionLZ4:
		return kgo.Lz4Compression(), nil
	case config.CompressionZstd:
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("kafka.compression: unknown codec %q", name)
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
	if k.SASL.Mechanism != "" {
		m := k.SASLMechanism()
		if m == nil {
			return nil, fmt.Errorf("kafka.sasl.mechanism: %q is not supported", k.SASL.Mechanism)
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}
