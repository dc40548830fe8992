package app

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/pipeline"
)

// TestKafkaClientOptions builds the pipeline's Kafka client from the
// configuration and checks the options the kafka.* settings give it, as
// the client itself reports them: compression, where a partition without
// a committed offset starts, fetch wait, rack, group instance id, SASL
// and transactional id.
func TestKafkaClientOptions(t *testing.T) {
	tokenFile := t.TempDir() + "/token"
	for _, tc := range []struct {
		name  string
		edit  func(*config.Kafka)
		codec kgo.CompressionCodec
		reset kgo.Offset
		wait  time.Duration
		rack  string
		group string // group instance id, "" for a dynamic member
		mech  string
		txn   string
	}{
		{"defaults: today's behaviour", func(*config.Kafka) {}, kgo.SnappyCompression(), kgo.NewOffset().AtStart(), 500 * time.Millisecond, "", "", "", "idsync-test"},
		{"every setting", func(k *config.Kafka) {
			k.Compression, k.AutoOffsetReset, k.FetchMaxWait, k.ClientRack = config.CompressionZstd, config.OffsetLatest, 100*time.Millisecond, "use1-az2"
			k.GroupInstanceID, k.TransactionalIDSuffix = "idsync-0", "idsync-0"
			k.SASL = config.SASL{Mechanism: config.SASLOAuthBearer, OAuth: config.OAuth{TokenFile: tokenFile}}
		}, kgo.ZstdCompression(), kgo.NewOffset().AtEnd(), 100 * time.Millisecond, "use1-az2", "idsync-0", "OAUTHBEARER", "idsync-idsync-0"},
		{"no compression", func(k *config.Kafka) { k.Compression = config.CompressionNone }, kgo.NoCompression(), kgo.NewOffset().AtStart(), 500 * time.Millisecond, "", "", "", "idsync-test"},
		{"gzip", func(k *config.Kafka) { k.Compression = config.CompressionGzip }, kgo.GzipCompression(), kgo.NewOffset().AtStart(), 500 * time.Millisecond, "", "", "", "idsync-test"},
		{"lz4, AWS", func(k *config.Kafka) {
			k.Compression = config.CompressionLZ4
			k.SASL = config.SASL{Mechanism: config.SASLAWSMSKIAM, AWS: config.AWS{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s3cret"}}
			k.TLS.Enabled = true
		}, kgo.Lz4Compression(), kgo.NewOffset().AtStart(), 500 * time.Millisecond, "", "", "AWS_MSK_IAM", "idsync-test"},
		{"SCRAM, exactly once", func(k *config.Kafka) {
			k.Delivery = config.ExactlyOnce
			k.SASL = config.SASL{Mechanism: config.SASLScramSHA512, Username: "u", Password: "p"}
		}, kgo.SnappyCompression(), kgo.NewOffset().AtStart(), 500 * time.Millisecond, "", "", "SCRAM-SHA-512", "idsync-test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Admin.Tokens[0].Token = "a-test-token-of-32-characters-xy"
			tc.edit(&cfg.Kafka)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			pcfg, err := pipelineConfig(cfg, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
			if err != nil {
				t.Fatal(err)
			}
			if pcfg.TransactionalID != tc.txn {
				t.Errorf("transactional id %q, want %q", pcfg.TransactionalID, tc.txn)
			}
			cl, err := kgo.NewClient(pipeline.ClientOptions(pcfg)...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if got := cl.OptValue(kgo.ProducerBatchCompression); !reflect.DeepEqual(got, []kgo.CompressionCodec{tc.codec}) {
				t.Errorf("compression %v, want %v", got, tc.codec)
			}
			if got := cl.OptValue(kgo.ConsumeResetOffset); !reflect.DeepEqual(got, tc.reset) {
				t.Errorf("reset offset %v, want %v", got, tc.reset)
			}
			if got := cl.OptValue(kgo.FetchMaxWait); got != tc.wait {
				t.Errorf("fetch max wait %v, want %v", got, tc.wait)
			}
			if got := cl.OptValue(kgo.Rack); got != tc.rack {
				t.Errorf("rack %q, want %q", got, tc.rack)
			}
			if got := cl.OptValues(kgo.InstanceID); !reflect.DeepEqual(got, []any{tc.group, tc.group != ""}) {
				t.Errorf("instance id %v, want %q", got, tc.group)
			}
			var mechs []string
			for _, m := range cl.OptValue(kgo.SASL).([]sasl.Mechanism) {
				mechs = append(mechs, m.Name())
			}
			if got := strings.Join(mechs, ","); got != tc.mech {
				t.Errorf("SASL %q, want %q", got, tc.mech)
			}
		})
	}
}

// TestKafkaClientMetricsSubsystem: franz-go's client metrics are under
// idsync_kafka_, apart from idsync's own, with names that say whether
// bytes are compressed.
func TestKafkaClientMetricsSubsystem(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	cfg := testConfig(t)
	cfg.Kafka.Brokers = kc.ListenAddrs()
	reg := prometheus.NewRegistry()
	pcfg, err := pipelineConfig(cfg, reg, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(pipeline.ClientOptions(pcfg)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	wants := []string{"idsync_kafka_connects_total", "idsync_kafka_produce_uncompressed_bytes_total",
		"idsync_kafka_produce_compressed_bytes_total", "idsync_kafka_produce_records_total", "idsync_kafka_write_bytes_total"}
	// The produce metrics are recorded by a hook that may run just after
	// ProduceSync returns: gather until they are there (or 10 s).
	var names map[string]bool
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		names = map[string]bool{}
		for _, mf := range mfs {
			names[mf.GetName()] = true
			if !strings.HasPrefix(mf.GetName(), "idsync_kafka_") {
				t.Errorf("client metric %s is not under idsync_kafka_", mf.GetName())
			}
		}
		all := true
		for _, want := range wants {
			all = all && names[want]
		}
		if all || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range wants {
		if !names[want] {
			t.Errorf("no %s among %v", want, names)
		}
	}
}

// A deprecated setting still works and is named in a warning at start,
// with what replaces it.
func TestDeprecatedSettingWarnsAtStart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		instance string
		warn     bool
	}{{"kafka.instance_id set", "pod-1", true}, {"not set", "", false}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Kafka.InstanceID = tc.instance
			cfg.Admin.Tokens = nil // stops Run once started: no admin token
			cfg.Kafka.Brokers = []string{"127.0.0.1:1"}
			cfg.Redis.Addrs = []string{miniredis.RunT(t).Addr()}
			var logs syncBuffer
			err := Run(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err == nil || !strings.Contains(err.Error(), "admin.tokens") {
				t.Fatalf("Run = %v, want the admin.tokens error", err)
			}
			warned := strings.Contains(logs.String(), `level=WARN msg="deprecated setting" setting=kafka.instance_id`)
			if warned != tc.warn {
				t.Errorf("warning %v, want %v; log:\n%s", warned, tc.warn, logs.String())
			}
			if tc.warn && !strings.Contains(logs.String(), "kafka.transactional_id_suffix") {
				t.Errorf("the warning does not name the replacement:\n%s", logs.String())
			}
		})
	}
}

// With kafka.group_instance_id the instance is a static member of the
// consumer group: a clean shutdown does not leave the group, so its
// partitions stay its own (no rebalance) until it returns or the session
// timeout passes. A dynamic member (the default) leaves at shutdown.
func TestGroupInstanceIDStaticMembership(t *testing.T) {
	for _, tc := range []struct {
		name       string
		instanceID string
		stays      bool // the member is still in the group after shutdown
	}{
		{"static", "idsync-0", true},
		{"dynamic", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kc, err := kfake.NewCluster(kfake.NumBrokers(1))
			if err != nil {
				t.Fatal(err)
			}
			defer kc.Close()
			cfg := testConfig(t)
			cfg.Kafka.Brokers = kc.ListenAddrs()
			cfg.Redis.Addrs = []string{miniredis.RunT(t).Addr()}
			cfg.Kafka.GroupInstanceID = tc.instanceID
			cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			ctx := context.Background()
			if _, err := adm.CreateTopic(ctx, 3, 1, nil, cfg.Kafka.InputTopic); err != nil {
				t.Fatal(err)
			}
			describe := func() kadm.DescribedGroup {
				t.Helper()
				gs, err := adm.DescribeGroups(ctx, cfg.Kafka.GroupID)
				if err != nil {
					t.Fatal(err)
				}
				return gs[cfg.Kafka.GroupID]
			}

			r := startApp(t, cfg)
			deadline := time.Now().Add(30 * time.Second)
			for g := describe(); g.State != "Stable" || len(g.Members) != 1 || len(g.AssignedPartitions()[cfg.Kafka.InputTopic]) != 3; g = describe() {
				if time.Now().After(deadline) {
					t.Fatalf("the instance did not join the group within 30s: %+v", g)
				}
				time.Sleep(50 * time.Millisecond)
			}
			g := describe()
			if got := g.Members[0].InstanceID; (got != nil) != (tc.instanceID != "") || (got != nil && *got != tc.instanceID) {
				t.Errorf("member instance id %v, want %q", got, tc.instanceID)
			}
			if err := r.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			after := describe()
			if stays := len(after.Members) == 1; stays != tc.stays {
				t.Errorf("after shutdown the group is %s with %d members; want the member kept: %v", after.State, len(after.Members), tc.stays)
			}
			if tc.stays && (after.State != "Stable" || after.Members[0].MemberID != g.Members[0].MemberID) {
				t.Errorf("after shutdown: %s, member %s; want Stable with %s (no rebalance)", after.State, after.Members[0].MemberID, g.Members[0].MemberID)
			}
		})
	}
}
