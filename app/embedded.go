package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/demo"
	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/store"
)

// embedded is the in-process Kafka and Redis of `idsync run --embedded`.
type embedded struct {
	kafka *kfake.Cluster
	redis *miniredis.Miniredis
	log   *slog.Logger
}

// startEmbedded starts kfake and miniredis on 127.0.0.1 and points cfg at
// them. A taken Kafka port moves to the next free one (printed in the
// banner).
func startEmbedded(cfg *config.Config, log *slog.Logger) (*embedded, error) {
	port, err := freePort(cfg.Embedded.KafkaPort)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DefaultNumPartitions(6))
	if err != nil {
		return nil, fmt.Errorf("embedded kafka on port %d: %w", port, err)
	}
	mr := miniredis.NewMiniRedis()
	addr := "127.0.0.1:0"
	if cfg.Embedded.RedisPort != 0 {
		addr = "127.0.0.1:" + strconv.Itoa(cfg.Embedded.RedisPort)
	}
	if err := mr.StartAddr(addr); err != nil {
		kc.Close()
		return nil, fmt.Errorf("embedded redis on %s: %w", addr, err)
	}
	cfg.Kafka.Brokers = kc.ListenAddrs()
	cfg.Kafka.SASL = config.SASL{}
	cfg.Kafka.TLS = config.TLS{}
	cfg.Redis.Addrs = []string{mr.Addr()}
	cfg.Redis.MasterName, cfg.Redis.Username, cfg.Redis.Password, cfg.Redis.SentinelPassword = "", "", "", ""
	cfg.Redis.TLS = config.TLS{}
	cfg.Redis.DB = 0
	return &embedded{kafka: kc, redis: mr, log: log}, nil
}

// freePort returns want when it is free, else the next free port above it
// (want 0: any free port).
func freePort(want int) (int, error) {
	for p := want; p < want+100 && p < 65536; p++ {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			if want == 0 {
				return 0, err
			}
			continue
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port from %d to %d", want, want+99)
}

func (e *embedded) close() {
	e.kafka.Close()
	e.redis.Close()
}

// seed creates the input topic and stores one demo connection of each
// destination type.
func (e *embedded) seed(ctx context.Context, st *store.Store, cfg *config.Config) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...))
	if err != nil {
		return fmt.Errorf("embedded kafka: %w", err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 6, 1, nil, cfg.Kafka.InputTopic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating the input topic %s: %w", cfg.Kafka.InputTopic, err)
	}
	for _, c := range demo.Connections() {
		conf, err := idsync.ParseConfig(c.Config)
		if err != nil {
			return fmt.Errorf("demo connection %s: %w", c.Destination, err)
		}
		k := store.Key{Space: demo.Space, Audience: c.Audience, Destination: c.Destination}
		if _, err := st.Put(ctx, k, conf, "demo-seed", 0); err != nil {
			return fmt.Errorf("storing demo connection %s: %w", c.Destination, err)
		}
	}
	return nil
}

// feed produces synthetic events at cfg.Embedded.DemoRate per second until
// ctx is done.
func (e *embedded) feed(ctx context.Context, cfg *config.Config) {
	rate := cfg.Embedded.DemoRate
	if rate <= 0 {
		return
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...), kgo.DefaultProduceTopic(cfg.Kafka.InputTopic))
	if err != nil {
		e.log.Error("demo traffic: creating a producer", "err", err)
		return
	}
	defer cl.Close()
	gen := demo.NewGenerator(uint64(time.Now().UnixNano()))
	// Ten ticks a second, each producing its share of the rate.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	owed := 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			owed += float64(rate) / 10
			for ; owed >= 1; owed-- {
				ev := gen.Next(now)
				cl.Produce(ctx, &kgo.Record{Key: []byte(ev.Key), Value: ev.Value}, func(_ *kgo.Record, err error) {
					if err != nil && ctx.Err() == nil {
						e.log.Warn("demo traffic: producing", "err", err)
					}
				})
			}
		}
	}
}
