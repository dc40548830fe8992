package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/demo"
	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/store"
)

// syncBuffer is a goroutine-safe bytes.Buffer for Stdout.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Ops.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Tokens = []config.Token{{Name: "t", Token: "test-token-123", Scope: config.ScopeWrite}}
	cfg.Kafka.TopicReplicationFactor = 1
	cfg.Kafka.TransactionalIDSuffix = "test"
	cfg.ShutdownTimeout = 10 * time.Second
	return &cfg
}

type run struct {
	cancel context.CancelFunc
	done   chan error
	out    *syncBuffer
}

func startApp(t *testing.T, cfg *config.Config) *run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel, done: make(chan error, 1), out: &syncBuffer{}}
	go func() {
		r.done <- Run(ctx, cfg, Options{Version: "test", Stdout: r.out, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *run) stop(t *testing.T) error {
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s")
		return nil
	}
}

// TestGoldenHermetic runs the whole service on kfake and miniredis: the
// connections stored through the store, a fixed input with bad records,
// and exactly the records the domain function computes on every topic.
func TestGoldenHermetic(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	mr := miniredis.RunT(t)
	cfg := testConfig(t)
	cfg.Kafka.Brokers = kc.ListenAddrs()
	cfg.Redis.Addrs = []string{mr.Addr()}

	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.DefaultProduceTopic(cfg.Kafka.InputTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, cfg.Kafka.InputTopic); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	st, err := store.New(rdb, store.Options{Prefix: cfg.Redis.KeyPrefix})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range demo.Connections() {
		conf, err := idsync.ParseConfig(c.Config)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Put(ctx, store.Key{Space: demo.Space, Audience: c.Audience, Destination: c.Destination}, conf, "test", 0); err != nil {
			t.Fatal(err)
		}
	}
	gen := demo.NewGenerator(42)
	gen.BadEvery = 25
	now := time.Now()
	var recs []*kgo.Record
	for range 500 {
		ev := gen.Next(now)
		recs = append(recs, &kgo.Record{Key: []byte(ev.Key), Value: ev.Value})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Expected: per topic, the set of (key, message id or DLQ position).
	tmpl, _ := cfg.Kafka.TopicTemplate()
	want := map[string]map[string]bool{}
	add := func(topic, id string) {
		if want[topic] == nil {
			want[topic] = map[string]bool{}
		}
		want[topic][id] = true
	}
	for _, r := range recs {
		ev, err := idsync.Decode(r.Value, now, idsync.DefaultLimits())
		if err != nil {
			add(cfg.Kafka.DLQTopic, fmt.Sprintf("%d/%d/%s", r.Partition, r.Offset, idsync.CodeOf(err)))
			continue
		}
		conns, err := st.List(ctx, ev.SpaceID, ev.AudienceID)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range idsync.Process(ev, conns, now, idsync.DefaultOptions()).Outputs {
			add(tmpl.Topic(o.DestinationID), o.Key+"|"+o.MessageID+"|"+string(o.Value))
		}
	}

	r := startApp(t, cfg)
	var topics []string
	for topic := range want {
		topics = append(topics, topic)
	}
	got := map[string]map[string]int{}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	count := func() (n int) {
		for _, ids := range got {
			for _, c := range ids {
				n += c
			}
		}
		return n
	}
	total := 0
	for _, ids := range want {
		total += len(ids)
	}
	deadline := time.Now().Add(60 * time.Second)
	for count() < total && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		consumer.PollFetches(pctx).EachRecord(func(rec *kgo.Record) {
			id := string(rec.Key) + "|"
			if rec.Topic == cfg.Kafka.DLQTopic {
				h := map[string]string{}
				for _, x := range rec.Headers {
					h[x.Key] = string(x.Value)
				}
				id = h[idsync.HeaderSourcePartition] + "/" + h[idsync.HeaderSourceOffset] + "/" + h[idsync.HeaderErrorCode]
			} else {
				var env struct {
					MessageID string `json:"message_id"`
				}
				_ = json.Unmarshal(rec.Value, &env)
				id += env.MessageID + "|" + string(rec.Value)
			}
			if got[rec.Topic] == nil {
				got[rec.Topic] = map[string]int{}
			}
			got[rec.Topic][id]++
		})
		cancel()
	}
	for topic, ids := range want {
		for id := range ids {
			if got[topic][id] != 1 {
				t.Errorf("%s: record %.80s… seen %d times", topic, id, got[topic][id])
			}
		}
		if len(got[topic]) != len(ids) {
			t.Errorf("%s: %d distinct records, want %d", topic, len(got[topic]), len(ids))
		}
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if out := r.out.String(); !strings.Contains(out, "idsync is running") || !strings.Contains(out, "metrics    http://127.0.0.1:") {
		t.Errorf("banner:\n%s", out)
	}
}

// TestEmbedded is `make run`: in-process Kafka and Redis, demo connections,
// synthetic traffic; the banner says where things are, summary lines show
// traffic, the admin API answers the demo token, Ctrl-C stops cleanly.
func TestEmbedded(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.Tokens = nil
	cfg.Embedded = config.Embedded{Enabled: true, DemoRate: 200, KafkaPort: 0}
	r := startApp(t, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(r.out.String(), "in ") || !strings.Contains(r.out.String(), "/s (") {
		if time.Now().After(deadline) {
			t.Fatalf("no summary line within 30s:\n%s", r.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := r.out.String()
	for _, want := range []string{"embedded", "IDSYNC_ADMIN_TOKEN=demo-token", "idsync tail idsync.dest.fbca_demo", "curl -s http://", "/ui/ and sign in with the token demo-token"} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
	// The admin API answers the demo token and lists the demo connections.
	var adminAddr string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "admin" && f[1] == "API" {
			adminAddr = f[2]
		}
	}
	req, _ := http.NewRequest(http.MethodGet, adminAddr+"/v1/spaces/"+demo.Space+"/audiences/aud_first_time_shopper/connections", nil)
	req.Header.Set("Authorization", "Bearer "+DemoToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "fbca_demo") || !strings.Contains(string(body), "gads_demo") {
		t.Errorf("list connections: %d %s", resp.StatusCode, body)
	}
	// The ops listener's metrics hold that request by its route pattern,
	// the Redis pool, the Kafka client under idsync_kafka_ and the build;
	// pprof is off by default.
	var metricsURL string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "metrics" {
			metricsURL = f[1]
		}
	}
	scrape := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	_, metrics := scrape(metricsURL)
	for _, want := range []string{
		`idsync_admin_requests_total{code="200",method="GET",route="/v1/spaces/{space}/audiences/{audience}/connections"} 1`,
		`idsync_admin_request_duration_seconds_count{method="GET",route="/v1/spaces/{space}/audiences/{audience}/connections"} 1`,
		"idsync_redis_pool_connections ", "idsync_redis_pool_hits_total ",
		"idsync_kafka_connects_total{", "idsync_kafka_produce_uncompressed_bytes_total{",
		`version="test"`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, "aud_first_time_shopper") {
		t.Errorf("/metrics holds an audience id")
	}
	if code, _ := scrape(strings.TrimSuffix(metricsURL, "/metrics") + "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ = %d with ops.pprof off, want 404", code)
	}
	// Outputs and dead letters flow.
	deadline = time.Now().Add(30 * time.Second)
	for {
		line := lastSummary(r.out.String())
		if strings.Contains(line, "facebook") && !strings.Contains(line, "facebook 0,") && !strings.Contains(line, "dlq 0 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no outputs or dead letters in the summary:\n%s", r.out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run after Ctrl-C: %v", err)
	}
}

func lastSummary(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], " in ") && strings.Contains(lines[i], "/s (") {
			return lines[i]
		}
	}
	return ""
}

func TestAdminAPINeedsATokenOutsideEmbeddedMode(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.Tokens = nil
	cfg.Kafka.Brokers = []string{"127.0.0.1:1"}
	mr := miniredis.RunT(t)
	cfg.Redis.Addrs = []string{mr.Addr()}
	err := Run(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "admin.tokens") {
		t.Fatalf("error %v, want one naming admin.tokens", err)
	}
}
