package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/internal/stacktest"
)

// testNow is the processor clock of every test: outputs are deterministic.
var testNow = time.Date(2026, 6, 1, 12, 0, 5, 0, time.UTC)

// env is a Kafka cluster for one test: kfake in process, or the real broker
// of deploy/local.
type env struct {
	brokers []string
	adm     *kadm.Client
	prefix  string // unique per test: topics and groups start with it
}

// backends runs fn against kfake and against the real broker (the real one
// fails the test when IDSYNC_TEST_KAFKA is unset, unless -short).
func backends(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Run("kfake", func(t *testing.T) {
		e, _ := kfakeEnv(t, 1)
		fn(t, e)
	})
	t.Run("kafka", func(t *testing.T) {
		k := stacktest.Kafka(t)
		adm := k.Admin(t)
		prefix := stacktest.Name(t)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			topics, err := adm.ListTopics(ctx)
			if err != nil {
				return
			}
			var mine []string
			for _, name := range topics.Names() {
				if strings.HasPrefix(name, prefix) {
					mine = append(mine, name)
				}
			}
			if len(mine) > 0 {
				_, _ = adm.DeleteTopics(ctx, mine...)
			}
			_, _ = adm.DeleteGroup(ctx, prefix+".group")
		})
		fn(t, &env{brokers: k.Brokers(), adm: adm, prefix: prefix})
	})
}

func (e *env) input() string    { return e.prefix + ".input" }
func (e *env) dlq() string      { return e.prefix + ".dlq" }
func (e *env) group() string    { return e.prefix + ".group" }
func (e *env) template() string { return e.prefix + ".dest.{destination_id}" }

func (e *env) createInput(t *testing.T, partitions int32) {
	t.Helper()
	resp, err := e.adm.CreateTopic(context.Background(), partitions, 1, nil, e.input())
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating %s: %v", e.input(), err)
	}
}

// staticSource serves fixed connections; fail makes lookups of one audience
// fail (as when Redis is down and it is not cached).
type staticSource struct {
	conns map[string][]idsync.Connection // "space/audience"
	fail  atomic.Pointer[string]
	calls atomic.Int64
}

var errUnavailable = errors.New("configuration unavailable")

func (s *staticSource) Connections(_ context.Context, space, audience string) ([]idsync.Connection, error) {
	s.calls.Add(1)
	if f := s.fail.Load(); f != nil && *f == audience {
		return nil, errUnavailable
	}
	return s.conns[space+"/"+audience], nil
}

func mustConfig(t *testing.T, raw string) *idsync.Config {
	t.Helper()
	c, err := idsync.ParseConfig([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fixture is the connections of the golden run: one audience per
// destination type plus a fan-out audience; aud_none has none.
func fixture(t *testing.T) *staticSource {
	conn := func(dest, raw string) []idsync.Connection {
		return []idsync.Connection{{DestinationID: dest, Versions: []idsync.Version{{Version: 3, Config: mustConfig(t, raw)}}}}
	}
	return &staticSource{conns: map[string][]idsync.Connection{
		"spa/aud_fb": conn("fbca_01", `{"destination_type":"facebook_custom_audiences","external_audience_id":"2385","settings":{"send_mobile_ids":true},"setup":"customized",
			"identifiers":[{"segment":"email","destination":"EMAIL","strategy":"all"},{"segment":"phone","destination":"PHONE","strategy":"last_added"},{"segment":"ios.idfa","destination":"MADID","strategy":"first_added"}]}`),
		"spa/aud_gg": conn("gads_01", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","setup":"default"}`),
		"spa/aud_multi": append(append(conn("iter_01", `{"destination_type":"iterable","setup":"default"}`),
			conn("zd_01", `{"destination_type":"zendesk","settings":{"send_identify":true},"setup":"default"}`)...),
			conn("wh_01", `{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"last_added"},{"segment":"shopify_id","destination":"shopify_id","strategy":"all"}]}`)...),
		"spa/aud_fan": conn("wh_fan", `{"destination_type":"webhook","settings":{"send_identify":true},"setup":"customized",
			"identifiers":[{"segment":"email","destination":"email","strategy":"all"},{"segment":"user_id","destination":"userId","strategy":"all"},{"segment":"phone","destination":"phone","strategy":"all"}]}`),
	}}
}

// event builds an input event for profile n of an audience.
func event(n int, audience, action string) []byte {
	ev := map[string]any{
		"message_id": fmt.Sprintf("m%05d", n), "timestamp": "2026-06-01T12:00:00.000Z",
		"space_id": "spa", "audience_id": audience, "audience_key": "aud_key", "action": action,
		"profile": map[string]any{"segment_id": fmt.Sprintf("use_%d", n%37)},
		"external_ids": []map[string]any{
			{"type": "user_id", "id": fmt.Sprintf("u%d", n), "created_at": "2024-01-01T00:00:00Z"},
			{"type": "email", "id": fmt.Sprintf("P%d@Example.com", n), "created_at": "2024-01-02T00:00:00Z"},
			{"type": "email", "id": fmt.Sprintf("p.%d@gmail.com", n), "created_at": "2024-01-03T00:00:00Z"},
			{"type": "phone", "id": "+1 650 253 0000", "created_at": "2024-01-04T00:00:00Z"},
			{"type": "ios.idfa", "id": "AECE52E7-03EE-455A-B3C4-E57283966239", "created_at": "2024-01-05T00:00:00Z"},
			{"type": "shopify_id", "id": strconv.Itoa(n), "created_at": "2024-01-06T00:00:00Z"},
		},
		"traits": map[string]any{"name": "Pat"},
	}
	b, _ := json.Marshal(ev)
	return b
}

// fanEvent has 4 emails x 4 user ids x 4 phones x 2 messages: 128 records,
// above the max_combinations of the tests (100).
func fanEvent(n int) []byte {
	var ids []map[string]any
	for i := range 4 {
		ids = append(ids,
			map[string]any{"type": "email", "id": fmt.Sprintf("f%d@x.com", i), "created_at": "2024-01-01T00:00:00Z"},
			map[string]any{"type": "user_id", "id": fmt.Sprintf("fu%d", i), "created_at": "2024-01-01T00:00:00Z"},
			map[string]any{"type": "phone", "id": fmt.Sprintf("+1650253000%d", i), "created_at": "2024-01-01T00:00:00Z"})
	}
	b, _ := json.Marshal(map[string]any{"message_id": fmt.Sprintf("fan%d", n), "timestamp": "2026-06-01T12:00:00Z",
		"space_id": "spa", "audience_id": "aud_fan", "action": "entered", "profile": map[string]any{"segment_id": "use_fan"}, "external_ids": ids})
	return b
}

// inputs returns the golden run's records: good events for every audience,
// and bad ones of every dead-letter code.
func inputs(n int) [][]byte {
	auds := []string{"aud_fb", "aud_gg", "aud_multi", "aud_none"}
	var out [][]byte
	for i := range n {
		action := "entered"
		if i%5 == 4 {
			action = "exited"
		}
		out = append(out, event(i, auds[i%len(auds)], action))
		switch i % 50 {
		case 10:
			out = append(out, []byte(`{"message_id": "broken`))
		case 20:
			out = append(out, []byte("{\"message_id\":\"bad\xff\"}"))
		case 30:
			out = append(out, []byte(`{"message_id":"x","timestamp":"2026-06-01T12:00:00Z","space_id":"spa","audience_id":"aud_fb","action":"entered","profile":{"segment_id":"s"}}`))
		case 40:
			out = append(out, []byte(`{"message_id":"x","timestamp":"yesterday","space_id":"spa","audience_id":"aud_fb","action":"entered","profile":{"segment_id":"s"},"external_ids":[]}`))
		case 45:
			out = append(out, append([]byte(`{"pad":"`), append([]byte(strings.Repeat("x", 3000)), '"', '}')...))
		case 49:
			out = append(out, fanEvent(i))
		}
	}
	return out
}

// produced is an input record as written, with its position.
type produced struct {
	key       []byte
	value     []byte
	partition int32
	offset    int64
	timestamp time.Time
}

// deadLetterHeaders are the headers a dead letter of p must carry
// (besides the input's own, which these tests' inputs do not have).
func deadLetterHeaders(e *env, p produced, code idsync.Code, msg, dest string) map[string]string {
	part, off := strconv.Itoa(int(p.partition)), strconv.FormatInt(p.offset, 10)
	h := map[string]string{
		idsync.HeaderErrorCode: string(code), idsync.HeaderError: msg,
		idsync.HeaderSourceTopic: e.input(), idsync.HeaderSourcePartition: part, idsync.HeaderSourceOffset: off,
		HeaderSourceTimestamp: strconv.FormatInt(p.timestamp.UnixMilli(), 10), HeaderOriginalHeaders: "0",
		HeaderConnectTopic: e.input(), HeaderConnectPartition: part, HeaderConnectOffset: off,
		HeaderConnectExceptionClass: "idsync.error." + string(code), HeaderConnectExceptionMessage: msg,
	}
	if dest != "" {
		h[idsync.HeaderDestinationID] = dest
	}
	return h
}

func produceInputs(t *testing.T, e *env, values [][]byte) []produced {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(e.input()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i, v := range values {
		// Keyed by profile, as upstream does: one profile's events share
		// a partition, so their order is kept.
		var ev struct {
			Profile struct {
				SegmentID string `json:"segment_id"`
			} `json:"profile"`
		}
		key := fmt.Sprint("bad-", i)
		if json.Unmarshal(v, &ev) == nil && ev.Profile.SegmentID != "" {
			key = "spa:" + ev.Profile.SegmentID
		}
		recs = append(recs, &kgo.Record{Key: []byte(key), Value: v})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out := make([]produced, len(recs))
	for i, r := range recs {
		out[i] = produced{key: r.Key, value: r.Value, partition: r.Partition, offset: r.Offset, timestamp: r.Timestamp}
	}
	return out
}

// expected is what the pipeline must write: per topic, the records in the
// order they must appear for each key.
type outRecord struct {
	key     string
	value   string
	headers map[string]string
}

func expect(t *testing.T, e *env, src ConnectionSource, in []produced, opt idsync.Options, lim idsync.Limits) map[string][]outRecord {
	t.Helper()
	tmpl, err := idsync.ParseTopicTemplate(e.template())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]outRecord{}
	dlq := func(p produced, code idsync.Code, msg, dest string) {
		want[e.dlq()] = append(want[e.dlq()], outRecord{key: string(p.key), value: string(p.value), headers: deadLetterHeaders(e, p, code, msg, dest)})
	}
	for _, p := range in {
		ev, err := idsync.Decode(p.value, testNow, lim)
		if err != nil {
			dlq(p, idsync.CodeOf(err), err.Error(), "")
			continue
		}
		conns, err := src.Connections(context.Background(), ev.SpaceID, ev.AudienceID)
		switch {
		case errors.Is(err, idsync.ErrInvalidKey):
			dlq(p, idsync.CodeInvalidKey, err.Error(), "")
			continue
		case errors.Is(err, idsync.ErrUnusableConfig):
			dlq(p, idsync.CodeInvalidConfig, err.Error(), "")
			continue
		}
		res := idsync.Process(ev, conns, testNow, opt)
		for _, o := range res.Outputs {
			topic := tmpl.Topic(o.DestinationID)
			want[topic] = append(want[topic], outRecord{key: o.Key, value: string(o.Value), headers: map[string]string{
				idsync.HeaderSource:        fmt.Sprintf("%s/%d/%d", e.input(), p.partition, p.offset),
				idsync.HeaderConfigVersion: strconv.FormatInt(o.ConfigVersion, 10),
			}})
		}
		for _, d := range res.DeadLetters {
			dlq(p, d.Code, d.Message, d.DestinationID)
		}
	}
	return want
}

// readAll reads every record of the given topics until it has at least
// want[topic] records in each (or the deadline passes), then a little more
// to catch extras.
func readAll(t *testing.T, e *env, want map[string][]outRecord, readCommitted bool) map[string][]outRecord {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(slices.Collect(maps.Keys(want))...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string][]outRecord{}
	complete := func() bool {
		for topic, recs := range want {
			if len(got[topic]) < len(recs) {
				return false
			}
		}
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	extra := time.Time{}
	for ctx.Err() == nil {
		if complete() {
			if extra.IsZero() {
				extra = time.Now().Add(time.Second)
			} else if time.Now().After(extra) {
				break
			}
		}
		pollCtx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pollCtx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			got[r.Topic] = append(got[r.Topic], outRecord{key: string(r.Key), value: string(r.Value), headers: h})
		})
	}
	return got
}

// compare checks that got holds exactly want per topic: the same multiset
// of records, and for each key the same order.
func compare(t *testing.T, want, got map[string][]outRecord) {
	t.Helper()
	canon := func(r outRecord) string {
		hs := slices.Sorted(maps.Keys(r.headers))
		var b strings.Builder
		for _, k := range hs {
			b.WriteString(k + "=" + r.headers[k] + ";")
		}
		return r.key + "|" + b.String() + "|" + r.value
	}
	for topic, w := range want {
		g := got[topic]
		if len(g) != len(w) {
			t.Errorf("%s: got %d records, want %d", topic, len(g), len(w))
			continue
		}
		ws, gs := make([]string, len(w)), make([]string, len(g))
		for i := range w {
			ws[i], gs[i] = canon(w[i]), canon(g[i])
		}
		sort.Strings(ws)
		sort.Strings(gs)
		for i := range ws {
			if ws[i] != gs[i] {
				t.Errorf("%s: record differs:\n got %s\nwant %s", topic, gs[i], ws[i])
				break
			}
		}
		// Per-key order (per-profile order per destination topic).
		byKey := func(rs []outRecord) map[string][]string {
			m := map[string][]string{}
			for _, r := range rs {
				m[r.key] = append(m[r.key], canon(r))
			}
			return m
		}
		gk := byKey(g)
		for k, seq := range byKey(w) {
			if !slices.Equal(seq, gk[k]) {
				t.Errorf("%s: key %q records out of order", topic, k)
			}
		}
	}
	for topic := range got {
		if _, ok := want[topic]; !ok {
			t.Errorf("unexpected topic %s", topic)
		}
	}
}

type running struct {
	p      *Pipeline
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, e *env, src ConnectionSource, mutate func(*Config)) *running {
	t.Helper()
	tmpl, err := idsync.ParseTopicTemplate(e.template())
	if err != nil {
		t.Fatal(err)
	}
	opt := idsync.DefaultOptions()
	opt.MaxCombinations = 100
	cfg := Config{
		Brokers: e.brokers, InputTopic: e.input(), GroupID: e.group(), DLQTopic: e.dlq(), Topics: tmpl,
		CreateTopics: true, TopicPartitions: 2, TopicReplicationFactor: 1,
		Limits: idsync.Limits{MaxRecordBytes: 2048}, Options: opt,
		Now: func() time.Time { return testNow }, RetryBackoff: 100 * time.Millisecond,
		ShutdownTimeout: 20 * time.Second, MaxPollRecords: 300,
		TransactionalID: e.prefix + ".txn",
	}
	if mutate != nil {
		mutate(&cfg)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	p, err := New(cfg, src, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it; it returns Run's error.
func (r *running) stop(t *testing.T) error {
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of cancellation")
		return nil
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// waitCommitted polls the group's committed offsets until they reach the
// input topic's end offsets.
func waitCommitted(t *testing.T, e *env, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		ends, err := e.adm.ListEndOffsets(ctx, e.input())
		if err == nil {
			committed, cerr := e.adm.FetchOffsets(ctx, e.group())
			if cerr == nil {
				done := true
				ends.Each(func(o kadm.ListedOffset) {
					c, ok := committed.Lookup(o.Topic, o.Partition)
					if o.Offset > 0 && (!ok || c.At < o.Offset) {
						done = false
					}
				})
				if done {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("offsets not committed to the end within %s", within)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestGoldenRun(t *testing.T) {
	for _, delivery := range []Delivery{AtLeastOnce, ExactlyOnce} {
		t.Run(string(delivery), func(t *testing.T) {
			backends(t, func(t *testing.T, e *env) {
				e.createInput(t, 3)
				src := fixture(t)
				in := produceInputs(t, e, inputs(400))
				r := start(t, e, src, func(c *Config) { c.Delivery = delivery })
				waitCommitted(t, e, 90*time.Second)
				opt := idsync.DefaultOptions()
				opt.MaxCombinations = 100
				want := expect(t, e, src, in, opt, idsync.Limits{MaxRecordBytes: 2048})
				got := readAll(t, e, want, delivery == ExactlyOnce)
				compare(t, want, got)
				if err := r.stop(t); err != nil {
					t.Fatalf("Run: %v", err)
				}
				// Every input counted once; every DLQ code seen.
				if n := testutil.ToFloat64(r.p.m.input); int(n) != len(in) {
					t.Errorf("idsync_input_records_total = %v, want %d", n, len(in))
				}
				// The codes of the event's own faults; the failure model's
				// other codes have their own tests (failure_test.go).
				for _, code := range []idsync.Code{idsync.CodeMalformedJSON, idsync.CodeSchemaViolation,
					idsync.CodeInvalidTimestamp, idsync.CodeTooLarge, idsync.CodeFanoutLimit} {
					if testutil.ToFloat64(r.p.m.dlq.WithLabelValues(string(code))) == 0 {
						t.Errorf("no DLQ record with code %s", code)
					}
				}
				if testutil.ToFloat64(r.p.m.skipped.WithLabelValues(idsync.SkipNoConnections)) == 0 {
					t.Error("no no_connections skip counted")
				}
			})
		})
	}
}

// waitHeld waits up to 30 s for a partition to wait for its configuration
// and returns that deadline.
func waitHeld(t *testing.T, r *running) time.Time {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for float64(r.p.waits.count(WaitConfig)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no partition waiting for configuration")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return deadline
}

func TestConfigUnavailableWaits(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.createInput(t, 2)
		src := fixture(t)
		down := "aud_gg"
		src.fail.Store(&down)
		in := produceInputs(t, e, inputs(40))
		r := start(t, e, src, nil)
		// The partitions holding aud_gg events wait: the gauge shows it and
		// nothing is dead-lettered for it.
		deadline := waitHeld(t, r)
		calls := src.calls.Load()
		for src.calls.Load() < calls+5 { // it keeps retrying
			if time.Now().After(deadline) {
				t.Fatal("no retries")
			}
			time.Sleep(20 * time.Millisecond)
		}
		src.fail.Store(nil) // "Redis" answers again
		waitCommitted(t, e, 60*time.Second)
		want := expect(t, e, src, in, func() idsync.Options { o := idsync.DefaultOptions(); o.MaxCombinations = 100; return o }(), idsync.Limits{MaxRecordBytes: 2048})
		compare(t, want, readAll(t, e, want, false))
		if n := float64(r.p.waits.count(WaitConfig)); n != 0 {
			t.Errorf("partitions still waiting: %v", n)
		}
	})
}

// TestOneBusyPartition runs batches of one partition's records through
// several processing windows, processed on every core, with a record whose
// configuration cannot be read far into the first batch: the partition stops
// at exactly that record (nothing after it is produced before it, so nothing
// is produced twice), and every profile's records keep their order.
func TestOneBusyPartition(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.createInput(t, 1)
		src := fixture(t)
		down := "aud_gg"
		src.fail.Store(&down)
		var values [][]byte
		for i := range 3 * window {
			aud := []string{"aud_fb", "aud_multi", "aud_none"}[i%3]
			if i == window+window/2 {
				aud = down
			}
			values = append(values, event(i, aud, "entered"))
		}
		in := produceInputs(t, e, values)
		r := start(t, e, src, func(c *Config) { c.MaxPollRecords = 2000 })
		waitHeld(t, r)
		src.fail.Store(nil)
		waitCommitted(t, e, 60*time.Second)
		opt := idsync.DefaultOptions()
		opt.MaxCombinations = 100
		want := expect(t, e, src, in, opt, idsync.Limits{MaxRecordBytes: 2048})
		compare(t, want, readAll(t, e, want, false))
		if n := testutil.ToFloat64(r.p.m.input); int(n) != len(in) {
			t.Errorf("idsync_input_records_total = %v, want %d (each input counted once)", n, len(in))
		}
	})
}

func TestMissingTopicWaitsWhenCreationDisabled(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.createInput(t, 1)
		ctx := context.Background()
		if _, err := e.adm.CreateTopic(ctx, 1, 1, nil, e.dlq()); err != nil {
			t.Fatal(err)
		}
		src := fixture(t)
		in := produceInputs(t, e, [][]byte{event(1, "aud_gg", "entered"), event(2, "aud_gg", "entered")})
		r := start(t, e, src, func(c *Config) { c.CreateTopics = false })
		deadline := time.Now().Add(30 * time.Second)
		for testutil.ToFloat64(r.p.m.missingTopics) != 1 {
			if time.Now().After(deadline) {
				t.Fatal("missing topic not visible in idsync_destination_topics_missing")
			}
			time.Sleep(20 * time.Millisecond)
		}
		topic := e.prefix + ".dest.gads_01"
		if _, err := e.adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
		waitCommitted(t, e, 60*time.Second)
		want := expect(t, e, src, in, idsync.DefaultOptions(), idsync.Limits{MaxRecordBytes: 2048})
		compare(t, want, readAll(t, e, want, false))
		if n := testutil.ToFloat64(r.p.m.missingTopics); n != 0 {
			t.Errorf("missing topics gauge %v after the topic appeared", n)
		}
	})
}

// TestRestartAfterShutdownRepeatsNothing: a clean stop commits everything
// processed; a second instance continues where the first stopped, so the
// outputs are exactly the expected ones, none repeated.
func TestRestartAfterShutdownRepeatsNothing(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.createInput(t, 3)
		src := fixture(t)
		first := produceInputs(t, e, inputs(150))
		r := start(t, e, src, nil)
		waitCommitted(t, e, 60*time.Second)
		if err := r.stop(t); err != nil {
			t.Fatalf("Run: %v", err)
		}
		second := produceInputs(t, e, inputs(150)[:100])
		start(t, e, src, nil)
		waitCommitted(t, e, 60*time.Second)
		opt := idsync.DefaultOptions()
		opt.MaxCombinations = 100
		want := expect(t, e, src, append(first, second...), opt, idsync.Limits{MaxRecordBytes: 2048})
		compare(t, want, readAll(t, e, want, false))
	})
}

func TestConfigErrors(t *testing.T) {
	tmpl, _ := idsync.ParseTopicTemplate("d.{destination_id}")
	good := Config{Brokers: []string{"x:1"}, InputTopic: "i", GroupID: "g", DLQTopic: "q", Topics: tmpl}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"brokers", func(c *Config) { c.Brokers = nil }, "no brokers"},
		{"input", func(c *Config) { c.InputTopic = "" }, "no input topic"},
		{"group", func(c *Config) { c.GroupID = "" }, "no group id"},
		{"dlq", func(c *Config) { c.DLQTopic = "" }, "no dead-letter topic"},
		{"template", func(c *Config) { c.Topics = idsync.TopicTemplate{} }, "no output topic template"},
		{"delivery", func(c *Config) { c.Delivery = "twice" }, `delivery "twice"`},
		{"txn id", func(c *Config) { c.Delivery = ExactlyOnce }, "transactional id"},
		{"inflight", func(c *Config) { c.MaxInflightBytes = 10 }, "max in-flight bytes"},
		{"options", func(c *Config) { c.Options = idsync.Options{MaxCombinations: 1, FacebookMaxRows: 1, PhoneRegion: "ZZ"} }, "phone region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mutate(&c)
			_, err := New(c, &staticSource{}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
