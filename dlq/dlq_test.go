package dlq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/internal/stacktest"
	"github.com/idsync/idsync/pipeline"
)

// The tests run the real pipeline on the real broker to make the dead
// letters, so that Stats and Replay read what the pipeline writes.

// source serves one good audience and one whose stored configuration this
// binary cannot use (as after a bad edit: its records are dead-lettered
// invalid_config until it is fixed).
type source struct {
	conns map[string][]idsync.Connection
	// fixed: aud_broken's connection (gads_fix) has been repaired.
	fixed atomic.Bool
}

func (s *source) Connections(_ context.Context, space, audience string) ([]idsync.Connection, error) {
	if audience == "aud_broken" && !s.fixed.Load() {
		return nil, fmt.Errorf("connection gads_fix: %w", idsync.ErrUnusableConfig)
	}
	return s.conns[space+"/"+audience], nil
}

func newSource(t *testing.T) *source {
	t.Helper()
	conn := func(dest, raw string) []idsync.Connection {
		cfg, err := idsync.ParseConfig([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return []idsync.Connection{{DestinationID: dest, Versions: []idsync.Version{{Version: 1, Config: cfg}}}}
	}
	return &source{conns: map[string][]idsync.Connection{
		"spa/aud_gg":     conn("gads_01", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","setup":"default"}`),
		"spa/aud_broken": conn("gads_fix", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_2","setup":"default"}`),
		"spa/aud_fan": conn("wh_fan", `{"destination_type":"webhook","settings":{"send_identify":true},"setup":"customized",
			"identifiers":[{"segment":"email","destination":"email","strategy":"all"},{"segment":"user_id","destination":"userId","strategy":"all"}]}`),
	}}
}

var testNow = time.Date(2026, 6, 1, 12, 0, 5, 0, time.UTC)

// event is a good event of profile n for audience; ids external ids of
// each type.
func event(n int, audience string, ids int) []byte {
	var ext []map[string]any
	for i := range ids {
		ext = append(ext,
			map[string]any{"type": "email", "id": fmt.Sprintf("p%d.%d@example.com", n, i), "created_at": "2024-01-01T00:00:00Z"},
			map[string]any{"type": "user_id", "id": fmt.Sprintf("u%d.%d", n, i), "created_at": "2024-01-01T00:00:00Z"})
	}
	b, _ := json.Marshal(map[string]any{
		"message_id": fmt.Sprintf("m%d", n), "timestamp": "2026-06-01T12:00:00.000Z",
		"space_id": "spa", "audience_id": audience, "audience_key": "k", "action": "entered",
		"profile": map[string]any{"segment_id": fmt.Sprintf("use_%d", n)}, "external_ids": ext,
	})
	return b
}

// fixture is a pipeline run's input and dead letters.
type fixture struct {
	src               *source
	tmpl              idsync.TopicTemplate
	k                 *stacktest.Cluster
	brokers           []string
	input, dlq        string
	inputs            []*kgo.Record
	codes             []idsync.Code // per input: the code of its dead letter ("": none)
	base              time.Time
	truncatedInputIdx int
}

const (
	nGood, nBroken, nMalformed, nFan = 6, 6, 4, 3
)

// run makes the dead letters: nBroken invalid_config, nMalformed
// malformed_json, nFan fanout_limit (destination wh_fan) and one too_large
// whose dead letter is truncated, among nGood good records, each input
// with headers and a timestamp a minute after the one before, in
// mode (exactly_once writes the dead letters in transactions). The
// pipeline stops once it has committed every input, unless keep: then it
// runs until the test ends.
func run(t *testing.T, mode pipeline.Delivery, keep bool) *fixture {
	t.Helper()
	k := stacktest.Kafka(t)
	prefix := stacktest.Name(t)
	adm := k.Admin(t)
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
		_, _ = adm.DeleteTopics(ctx, mine...)
		_, _ = adm.DeleteGroup(ctx, prefix+".group")
	})
	fx := &fixture{k: k, brokers: k.Brokers(), input: prefix + ".input", dlq: prefix + ".dlq",
		base: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	for _, topic := range []string{fx.input, fx.dlq} {
		// The inputs are dated 2026-06-01 and dead letters keep their
		// input's timestamp: with the broker's default retention (7 days,
		// counted from record timestamps) a retention check would delete
		// them mid-test. Keep them.
		if resp, err := adm.CreateTopic(context.Background(), 2, 1, keepForever(), topic); err != nil || resp.Err != nil {
			t.Fatalf("creating %s: %v %v", topic, err, resp.Err)
		}
	}
	rnd := rand.New(rand.NewPCG(7, 8))
	big := make([]byte, 40<<10)
	for i := range big {
		big[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[rnd.IntN(36)]
	}
	add := func(value []byte, code idsync.Code) {
		i := len(fx.inputs)
		fx.inputs = append(fx.inputs, &kgo.Record{
			Topic: fx.input, Key: []byte(fmt.Sprint("spa:use_", i)), Value: value, Timestamp: fx.base.Add(time.Duration(i) * time.Minute),
			Headers: []kgo.RecordHeader{
				{Key: "x-tenant", Value: []byte(fmt.Sprint("t", i))},
				{Key: "traceparent", Value: []byte(fmt.Sprintf("00-4bf92f3577b34da6a3ce929d0e0e%04d-00f067aa0ba902b7-01", i))},
				{Key: "x-binary", Value: []byte{0, 0xff, byte(i)}},
			},
		})
		fx.codes = append(fx.codes, code)
	}
	for i := range max(nGood, nBroken, nMalformed, nFan) {
		if i < nGood {
			add(event(i, "aud_gg", 1), "")
		}
		if i < nBroken {
			add(event(100+i, "aud_broken", 1), idsync.CodeInvalidConfig)
		}
		if i < nMalformed {
			add([]byte(`{"message_id": "broken`), idsync.CodeMalformedJSON)
		}
		if i < nFan {
			add(event(200+i, "aud_fan", 40), idsync.CodeFanoutLimit)
		}
	}
	fx.truncatedInputIdx = len(fx.inputs)
	add(big, idsync.CodeTooLarge)
	cl := k.NewClient(t, kgo.ProducerBatchMaxBytes(1<<20))
	if err := cl.ProduceSync(context.Background(), fx.inputs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	tmpl, err := idsync.ParseTopicTemplate(prefix + ".dest.{destination_id}")
	if err != nil {
		t.Fatal(err)
	}
	fx.tmpl, fx.src = tmpl, newSource(t)
	opt := idsync.DefaultOptions()
	opt.MaxCombinations = 100
	p, err := pipeline.New(pipeline.Config{
		Brokers: fx.brokers, InputTopic: fx.input, GroupID: prefix + ".group", DLQTopic: fx.dlq, Topics: tmpl,
		Delivery: mode, TransactionalID: prefix + ".txn",
		CreateTopics: true, TopicPartitions: 1, TopicReplicationFactor: 1,
		MaxRecordBytes: 16 << 10, MaxInflightBytes: 1 << 20, Limits: idsync.Limits{MaxRecordBytes: 8 << 10},
		Options: opt, Now: func() time.Time { return testNow }, RetryBackoff: 100 * time.Millisecond,
	}, fx.src, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pipeline: %v", err)
		}
	}
	if keep {
		t.Cleanup(stop)
	} else {
		defer stop()
	}
	// Wait for the group to commit every input.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ends, err1 := adm.ListEndOffsets(context.Background(), fx.input)
		committed, err2 := adm.FetchOffsets(context.Background(), prefix+".group")
		if err1 == nil && err2 == nil {
			all := true
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(o.Topic, o.Partition)
				all = all && (o.Offset == 0 || ok && c.At >= o.Offset)
			})
			if all {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the pipeline did not commit every input within 60s")
		}
		time.Sleep(100 * time.Millisecond) // polling the committed offsets
	}
	// In exactly_once the group's offsets are visible before the commit
	// markers of the dead letters' transaction are written: wait until no
	// transaction of the dead-letter topic is open or finishing, so that a
	// read_committed reader sees every dead letter.
	for {
		lso, err1 := adm.ListCommittedOffsets(context.Background(), fx.dlq)
		hwm, err2 := adm.ListEndOffsets(context.Background(), fx.dlq)
		if err1 == nil && err2 == nil && settled(lso, hwm) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead letters' transactions did not settle within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// And until a reader sees them all: what the tests below count.
	want := 0
	for _, n := range fx.expected(func(int, *kgo.Record) bool { return true }) {
		want += n
	}
	c, err := New(Config{Brokers: fx.brokers, DLQTopic: fx.dlq, InputTopic: fx.input, IdleTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for {
		st, err := c.Stats(context.Background(), Filter{})
		if err == nil && st.Matched >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead letters are not all readable within 60s: %d of %d (%v)", st.Matched, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fx
}

func (fx *fixture) client(t *testing.T, mutate func(*Config)) *Client {
	t.Helper()
	cfg := Config{Brokers: fx.brokers, DLQTopic: fx.dlq, InputTopic: fx.input}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// expected counts the dead letters of the inputs keep selects, by code.
func (fx *fixture) expected(keep func(i int, in *kgo.Record) bool) map[idsync.Code]int {
	m := map[idsync.Code]int{}
	for i, in := range fx.inputs {
		if fx.codes[i] != "" && keep(i, in) {
			m[fx.codes[i]]++
		}
	}
	return m
}

func TestStats(t *testing.T) {
	for _, mode := range []pipeline.Delivery{pipeline.ExactlyOnce, pipeline.AtLeastOnce} {
		t.Run(string(mode), func(t *testing.T) { stats(t, run(t, mode, false)) })
	}
}

func stats(t *testing.T, fx *fixture) {
	c := fx.client(t, nil)
	ctx := context.Background()
	p0 := fx.inputs[0].Partition
	cases := []struct {
		name string
		f    Filter
		keep func(i int, in *kgo.Record) bool
	}{
		{"everything", Filter{}, func(int, *kgo.Record) bool { return true }},
		{"time range", Filter{Since: fx.base.Add(5 * time.Minute), Until: fx.base.Add(12 * time.Minute)},
			func(i int, _ *kgo.Record) bool { return i >= 5 && i < 12 }},
		{"since only", Filter{Since: fx.base.Add(10 * time.Minute)}, func(i int, _ *kgo.Record) bool { return i >= 10 }},
		{"source partition", Filter{SourcePartitions: []int32{p0}}, func(_ int, in *kgo.Record) bool { return in.Partition == p0 }},
		{"source offsets", Filter{SourcePartitions: []int32{p0}, SourceOffsets: &OffsetRange{Min: 2, Max: 5}},
			func(_ int, in *kgo.Record) bool { return in.Partition == p0 && in.Offset >= 2 && in.Offset <= 5 }},
		{"code", Filter{Codes: []idsync.Code{idsync.CodeInvalidConfig, idsync.CodeTooLarge}},
			func(i int, _ *kgo.Record) bool {
				return fx.codes[i] == idsync.CodeInvalidConfig || fx.codes[i] == idsync.CodeTooLarge
			}},
		{"destination", Filter{Destinations: []string{"wh_fan"}}, func(i int, _ *kgo.Record) bool { return fx.codes[i] == idsync.CodeFanoutLimit }},
		{"no destination", Filter{Destinations: []string{""}}, func(i int, _ *kgo.Record) bool { return fx.codes[i] != idsync.CodeFanoutLimit }},
		{"nothing", Filter{Since: fx.base.Add(time.Hour)}, func(int, *kgo.Record) bool { return false }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, err := c.Stats(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			want := fx.expected(tc.keep)
			got := st.ByCode()
			for code := range got {
				if got[code] == 0 {
					delete(got, code)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("counts by code %v, want %v", got, want)
			}
			total := 0
			for _, n := range want {
				total += n
			}
			if st.Matched != total || len(st.Unread) != 0 {
				t.Errorf("matched %d (want %d), unread partitions %v", st.Matched, total, st.Unread)
			}
			if n := st.ByDestination()["wh_fan"]; n != want[idsync.CodeFanoutLimit] {
				t.Errorf("wh_fan has %d dead letters, want %d", n, want[idsync.CodeFanoutLimit])
			}
			for _, cnt := range st.Counts {
				if cnt.SourcePartition < 0 || cnt.DeadLetters <= 0 {
					t.Errorf("count %+v", cnt)
				}
			}
		})
	}
	if _, err := c.Stats(ctx, Filter{Since: fx.base.Add(time.Hour), Until: fx.base}); err == nil {
		t.Error("an empty time range was accepted")
	}
}

// replays reads the input topic with read_committed and returns the
// records that carry HeaderReplayOf, by its value, once it holds at least
// want of them (then a second more, to catch extras).
func replays(t *testing.T, fx *fixture, want int) map[string][]*kgo.Record {
	t.Helper()
	cl := fx.k.NewClient(t, kgo.ConsumeTopics(fx.input), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	got := map[string][]*kgo.Record{}
	n := 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var extra time.Time
	for ctx.Err() == nil {
		if n >= want {
			if extra.IsZero() {
				extra = time.Now().Add(time.Second)
			} else if time.Now().After(extra) {
				break
			}
		}
		pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		fs := cl.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == HeaderReplayOf {
					got[string(h.Value)] = append(got[string(h.Value)], r)
					n++
				}
			}
		})
	}
	if n < want {
		t.Fatalf("the input topic holds %d replays, want %d", n, want)
	}
	return got
}

// checkReplay checks that r replays in faithfully: key, value, headers in
// order and byte for byte, then HeaderReplayOf; the timestamp.
func checkReplay(t *testing.T, r, in *kgo.Record, id string) {
	t.Helper()
	// The last header is the replay's time: recent, RFC 3339.
	n := len(r.Headers)
	if n == 0 || r.Headers[n-1].Key != idsync.HeaderReplayAt {
		t.Errorf("replay %s: headers %v end without %s", id, r.Headers, idsync.HeaderReplayAt)
		return
	}
	if at, err := time.Parse(time.RFC3339Nano, string(r.Headers[n-1].Value)); err != nil || time.Since(at) > 10*time.Minute || time.Until(at) > time.Minute {
		t.Errorf("replay %s: %s %q, %v", id, idsync.HeaderReplayAt, r.Headers[n-1].Value, err)
	}
	want := append(slices.Clone(in.Headers), kgo.RecordHeader{Key: HeaderReplayOf, Value: []byte(id)})
	same := slices.EqualFunc(r.Headers[:n-1], want, func(a, b kgo.RecordHeader) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) })
	if !same || !bytes.Equal(r.Key, in.Key) || !bytes.Equal(r.Value, in.Value) || !r.Timestamp.Equal(in.Timestamp) {
		t.Errorf("replay %s: key %q headers %v timestamp %s; want the input's key %q headers %v timestamp %s",
			id, r.Key, r.Headers, r.Timestamp, in.Key, want, in.Timestamp)
	}
}

// inputOf returns the input a letter came from.
func (fx *fixture) inputOf(t *testing.T, l Letter) *kgo.Record {
	t.Helper()
	for _, in := range fx.inputs {
		if in.Partition == l.SourcePartition && in.Offset == l.SourceOffset {
			return in
		}
	}
	t.Fatalf("dead letter %d/%d names no input (%d/%d)", l.Partition, l.Offset, l.SourcePartition, l.SourceOffset)
	return nil
}

func TestReplay(t *testing.T) {
	fx := run(t, pipeline.ExactlyOnce, false)
	c := fx.client(t, nil)
	ctx := context.Background()
	adm := fx.k.Admin(t)
	endsBefore, err := adm.ListEndOffsets(ctx, fx.input)
	if err != nil {
		t.Fatal(err)
	}
	broken := Filter{Codes: []idsync.Code{idsync.CodeInvalidConfig}}

	// A dry run lists what would be replayed and changes nothing.
	dry, err := c.Replay(ctx, broken, ReplayOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Matched != nBroken || dry.Replayed != nBroken || len(dry.Letters) != nBroken || dry.AlreadyReplayed != 0 {
		t.Fatalf("dry run: %+v, want %d to replay", dry, nBroken)
	}
	for _, l := range dry.Letters {
		if l.Outcome != OutcomeReplay || l.Code != idsync.CodeInvalidConfig {
			t.Errorf("dry run lists %+v", l)
		}
	}
	endsAfter, err := adm.ListEndOffsets(ctx, fx.input)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(endsAfter) != fmt.Sprint(endsBefore) {
		t.Errorf("a dry run wrote to the input topic: %v, was %v", endsAfter, endsBefore)
	}
	if topics, _ := adm.ListTopics(ctx, fx.dlq+".replayed"); topics.Has(fx.dlq + ".replayed") {
		t.Error("a dry run made the marker topic")
	}

	// The replay lands in the input topic as the input was, with the
	// marker header; progress counts up to the total.
	var progress [][2]int
	sum, err := c.Replay(ctx, broken, ReplayOptions{BatchSize: 4, Progress: func(done, total int) {
		progress = append(progress, [2]int{done, total})
	}})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Replayed != nBroken || sum.AlreadyReplayed != 0 {
		t.Fatalf("replay: %+v", sum)
	}
	if fmt.Sprint(progress) != fmt.Sprint([][2]int{{4, nBroken}, {nBroken, nBroken}}) {
		t.Errorf("progress %v", progress)
	}
	// A dry run right after it sees it (its commit markers may still be
	// being written).
	if dry, err := c.Replay(ctx, broken, ReplayOptions{DryRun: true}); err != nil || dry.Replayed != 0 || dry.AlreadyReplayed != nBroken {
		t.Errorf("dry run after the replay: %+v %v, want %d already replayed", dry, err, nBroken)
	}
	got := replays(t, fx, nBroken)
	for _, l := range sum.Letters {
		id := l.ID(fx.dlq)
		if len(got[id]) != 1 {
			t.Errorf("%s replayed %d times", id, len(got[id]))
			continue
		}
		checkReplay(t, got[id][0], fx.inputOf(t, l.Letter), id)
	}

	// The second run replays nothing.
	again, err := c.Replay(ctx, broken, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Replayed != 0 || again.AlreadyReplayed != nBroken {
		t.Errorf("second run: %+v, want %d already replayed", again, nBroken)
	}
	for _, l := range again.Letters {
		if l.Outcome != OutcomeAlreadyReplayed {
			t.Errorf("second run lists %+v", l)
		}
	}

	// A truncated dead letter is skipped and counted with its reason.
	big, err := c.Replay(ctx, Filter{Codes: []idsync.Code{idsync.CodeTooLarge}}, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if big.Matched != 1 || big.Replayed != 0 || big.Skipped[SkipValueTruncated] != 1 {
		t.Errorf("truncated dead letter: %+v", big)
	}

	// Again replays one letter once more when asked.
	first := sum.Letters[0]
	one := Filter{SourcePartitions: []int32{first.SourcePartition}, SourceOffsets: &OffsetRange{first.SourceOffset, first.SourceOffset}}
	re, err := c.Replay(ctx, one, ReplayOptions{Again: true})
	if err != nil {
		t.Fatal(err)
	}
	if re.Replayed != 1 {
		t.Errorf("--again: %+v", re)
	}
	if got := replays(t, fx, nBroken+1); len(got[first.ID(fx.dlq)]) != 2 {
		t.Errorf("%s replayed %d times after --again, want 2", first.ID(fx.dlq), len(got[first.ID(fx.dlq)]))
	}
}

// A run cut short replays the rest on the next run, each dead letter once;
// a run that died with its transaction open is fenced and its work
// aborted.
func TestReplayCrashSafety(t *testing.T) {
	fx := run(t, pipeline.ExactlyOnce, false)
	c := fx.client(t, nil)
	malformed := Filter{Codes: []idsync.Code{idsync.CodeMalformedJSON}}

	// A crashed run: its transaction holds the replay and marker of one
	// dead letter, open.
	plan, err := c.Replay(context.Background(), malformed, ReplayOptions{DryRun: true})
	if err != nil || plan.Replayed != nMalformed {
		t.Fatalf("dry run: %+v %v", plan, err)
	}
	zombie := fx.k.NewClient(t, kgo.TransactionalID("idsync-dlq-replay."+fx.dlq), kgo.TransactionTimeout(60*time.Second))
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	l := plan.Letters[0]
	if call, err := c.begin(); err != nil {
		t.Fatal(err)
	} else if err := call.makeMarkerTopic(context.Background()); err != nil {
		t.Fatal(err)
	} else {
		call.end()
	}
	if err := zombie.ProduceSync(context.Background(),
		&kgo.Record{Topic: fx.input, Key: []byte("zombie"), Value: []byte("{"), Headers: []kgo.RecordHeader{{Key: HeaderReplayOf, Value: []byte(l.ID(fx.dlq))}}},
		&kgo.Record{Topic: fx.dlq + ".replayed", Key: []byte(l.markerKey()), Value: []byte("zombie")},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// A run cancelled after its second batch.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sum, err := c.Replay(ctx, malformed, ReplayOptions{BatchSize: 1, Progress: func(done, _ int) {
		if done == 2 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || sum.Replayed != 2 {
		t.Fatalf("cancelled run: replayed %d, err %v; want 2 and context.Canceled", sum.Replayed, err)
	}
	if err := zombie.EndTransaction(context.Background(), kgo.TryCommit); err == nil {
		t.Error("the crashed run's transaction committed after a later run started")
	}

	rest, err := c.Replay(context.Background(), malformed, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rest.Replayed != nMalformed-2 || rest.AlreadyReplayed != 2 {
		t.Errorf("the run after the cancelled one: %+v, want %d replayed and 2 already", rest, nMalformed-2)
	}
	got := replays(t, fx, nMalformed)
	for _, l := range plan.Letters {
		id := l.ID(fx.dlq)
		if len(got[id]) != 1 {
			t.Errorf("%s replayed %d times, want once", id, len(got[id]))
			continue
		}
		checkReplay(t, got[id][0], fx.inputOf(t, l.Letter), id)
	}
}

// The story of docs/operations.md: a connection is broken, its events are
// dead-lettered invalid_config; once it is fixed, the replay is processed
// by the running pipeline, delivered with the input's timestamp and trace
// context, and dead-lettered no more.
func TestReplayAfterFix(t *testing.T) {
	fx := run(t, pipeline.ExactlyOnce, true)
	c := fx.client(t, nil)
	ctx := context.Background()
	broken := Filter{Codes: []idsync.Code{idsync.CodeInvalidConfig}}
	fx.src.fixed.Store(true)
	sum, err := c.Replay(ctx, broken, ReplayOptions{})
	if err != nil || sum.Replayed != nBroken {
		t.Fatalf("replay: %+v %v", sum, err)
	}
	topic := fx.tmpl.Topic("gads_fix")
	cl := fx.k.NewClient(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var outs []*kgo.Record
	deadline, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for len(outs) < nBroken && deadline.Err() == nil {
		pctx, pcancel := context.WithTimeout(deadline, 300*time.Millisecond)
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) { outs = append(outs, r) })
		pcancel()
	}
	if len(outs) != nBroken {
		t.Fatalf("%s holds %d records, want %d", topic, len(outs), nBroken)
	}
	byTime := map[int64]*kgo.Record{}
	for i, in := range fx.inputs {
		if fx.codes[i] == idsync.CodeInvalidConfig {
			byTime[in.Timestamp.UnixMilli()] = in
		}
	}
	for _, o := range outs {
		in := byTime[o.Timestamp.UnixMilli()]
		if in == nil {
			t.Errorf("output with timestamp %s is no broken input's", o.Timestamp)
			continue
		}
		var tp string
		for _, h := range o.Headers {
			if h.Key == "traceparent" {
				tp = string(h.Value)
			}
		}
		if want := string(in.Headers[1].Value); tp != want {
			t.Errorf("output of the input at %s: traceparent %q, want %q", in.Timestamp, tp, want)
		}
		delete(byTime, o.Timestamp.UnixMilli())
	}
	st, err := c.Stats(ctx, broken)
	if err != nil {
		t.Fatal(err)
	}
	if st.Matched != nBroken {
		t.Errorf("%d invalid_config dead letters after the replay, want the %d from before it", st.Matched, nBroken)
	}
}

// keepForever is a topic configuration without time-based retention, for
// topics whose records carry old timestamps.
func keepForever() map[string]*string {
	never := "-1"
	return map[string]*string{"retention.ms": &never}
}
