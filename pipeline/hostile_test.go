package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/internal/hostile"
	"github.com/idsync/idsync/internal/stacktest"
	"github.com/idsync/idsync/store"
)

// The property test of issue 12: whatever the input, every input offset is
// accounted for (delivered as idsync.Process says, or dead-lettered with the
// right code), committed offsets reach the end, Run never returns, and the
// heap stays under a bound derived from the pipeline's limits.
//
//	go test -run TestHostileInput ./pipeline/                         fixed seeds
//	IDSYNC_TEST_HOSTILE_SEEDS=50 go test -run TestHostileInput ...    50 random seeds
//	IDSYNC_TEST_HOSTILE_SEED=123 go test -run TestHostileInput ...    replay one seed
//
// The generator, the fixture and the oracle are in internal/hostile.

// Environment variables of the property test.
const (
	hostileSeedsEnv = "IDSYNC_TEST_HOSTILE_SEEDS"
	hostileSeedEnv  = "IDSYNC_TEST_HOSTILE_SEED"
)

// hostileFixedSeeds run by default.
var hostileFixedSeeds = []uint64{1, 2}

// Records per run: kfake, kfake under -short, the real broker (whose run
// must stay under a minute for both delivery modes).
const (
	hostileRecords      = 2000
	hostileRecordsShort = 400
	hostileRecordsKafka = 600
)

// The pipeline's limits in this test, small so that the heap bound means
// something (see hostileHeapBound).
const (
	hostileFetchMaxBytes   = 1 << 20
	hostileInflightBytes   = 4 << 20
	hostileInflightRecords = 2000
	hostilePollRecords     = 300
	hostileInputPartitions = 4
)

// hostileSeeds returns the seeds to run: one replayed seed, N random ones,
// or the fixed ones.
func hostileSeeds(t *testing.T) []uint64 {
	if v := os.Getenv(hostileSeedEnv); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", hostileSeedEnv, v, err)
		}
		return []uint64{seed}
	}
	if v := os.Getenv(hostileSeedsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive count", hostileSeedsEnv, v)
		}
		seeds := make([]uint64, n)
		for i := range seeds {
			seeds[i] = rand.Uint64() >> 1 // printable in any signedness
		}
		return seeds
	}
	return hostileFixedSeeds
}

func TestHostileInput(t *testing.T) {
	for _, seed := range hostileSeeds(t) {
		t.Logf("seed %d (replay with %s=%d)", seed, hostileSeedEnv, seed)
		for _, delivery := range []Delivery{AtLeastOnce, ExactlyOnce} {
			t.Run(fmt.Sprintf("seed=%d/%s", seed, delivery), func(t *testing.T) {
				backends(t, func(t *testing.T, e *env) {
					runHostile(t, e, seed, delivery)
				})
			})
		}
	}
}

// hostileRedis returns a Redis client, the address the pipeline process
// connects to (host:port or a redis:// URL) and the key prefix for the
// fixture: miniredis beside kfake, the real Redis beside the real broker.
func hostileRedis(t *testing.T, real bool) (redis.UniversalClient, string, string) {
	if real {
		ks := stacktest.Redis(t)
		return ks.Client, os.Getenv(stacktest.RedisEnv), ks.Prefix()
	}
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, mr.Addr(), "idsync:"
}

func runHostile(t *testing.T, e *env, seed uint64, delivery Delivery) {
	real := !strings.HasSuffix(t.Name(), "/kfake")
	n := hostileRecords
	switch {
	case real:
		n = hostileRecordsKafka
	case testing.Short():
		n = hostileRecordsShort
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	began := time.Now()

	// The fixture in Redis, which the pipeline reads through the store's
	// cache.
	fx := hostile.NewFixture()
	rdb, redisAddr, prefix := hostileRedis(t, real)
	if err := fx.Install(ctx, rdb, prefix); err != nil {
		t.Fatal(err)
	}

	// Topics: the input, and the destination topics an operator made with
	// a small max.message.bytes.
	e.createInput(t, hostileInputPartitions)
	tmpl, err := idsync.ParseTopicTemplate(e.template())
	if err != nil {
		t.Fatal(err)
	}
	for dest, limit := range fx.SmallTopics() {
		v := strconv.Itoa(limit)
		resp, err := e.adm.CreateTopic(ctx, 2, 1, map[string]*string{"max.message.bytes": &v}, tmpl.Topic(dest))
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("creating %s: %v", tmpl.Topic(dest), err)
		}
	}

	phase := began
	var phases []string
	lap := func(name string) {
		phases = append(phases, fmt.Sprintf("%s %s", name, time.Since(phase).Round(time.Millisecond)))
		phase = time.Now()
	}
	lap("setup")
	recs := hostileGenerate(seed, n)
	lap("generate")
	inputs := produceHostile(t, e, recs)
	lap("produce")

	spec := hostileSpec{
		Brokers: e.brokers, InputTopic: e.input(), GroupID: e.group(), DLQTopic: e.dlq(), Template: e.template(),
		Delivery: delivery, TransactionalID: e.prefix + ".txn", Redis: redisAddr, RedisPrefix: prefix,
		MaxRecordBytes: hostile.RecordLimit, Limits: hostile.Limits(), Options: hostile.Options(),
	}
	cfg := spec.config(tmpl)
	oracle := &hostile.Oracle{
		Fixture: fx, Limits: cfg.Limits, Options: cfg.Options, Now: testNow, Topics: tmpl, InputTopic: e.input(),
		RecordLimit: int(cfg.MaxRecordBytes), TopicLimits: fx.SmallTopics(),
	}
	exps := hostileExpectations(oracle, seed, inputs)
	lap("oracle")
	proc := startHostileProcess(t, spec)
	lap("start")
	if proc.started.Options != oracle.Options || proc.started.Limits != oracle.Limits {
		// The pipeline adjusted its options: judge it by the ones it runs
		// with.
		t.Logf("the pipeline runs with options %+v and limits %+v; the oracle follows", proc.started.Options, proc.started.Limits)
		oracle.Options, oracle.Limits = proc.started.Options, proc.started.Limits
		exps = hostileExpectations(oracle, seed, inputs)
	}
	processing := time.Now()
	waitHostileCommitted(t, e, proc, inputs, 120*time.Second)
	processed := time.Since(processing)
	res := proc.stop(t)
	if res.Err != "" {
		t.Errorf("Run returned %s", res.Err)
	}

	if log := proc.stderr.tail(4000); testing.Verbose() && log != "" {
		t.Logf("the pipeline's warnings (the last 4000 bytes):\n%s", log)
	}
	lap("process+stop")
	got := readHostile(t, e, tmpl, fx, exps, delivery == ExactlyOnce)
	lap("read")
	rep := hostile.Check(oracle, inputs, exps, got, e.dlq(), delivery == ExactlyOnce)
	lap("check")
	t.Logf("phases: %s", strings.Join(phases, ", "))
	liveBound, heapBound, terms := hostileHeapBound(cfg, res.Base, proc.started.Procs)
	t.Logf("seed %d, %s, %d records: processed in %s (whole run %s); pipeline heap peak %.1f MiB, bound %.1f MiB = 2 x (%s = %.1f) + 8 MiB; live heap peak %.1f MiB\n%s",
		seed, delivery, len(inputs), processed.Round(time.Millisecond), time.Since(began).Round(time.Millisecond),
		mib(res.Peak), mib(heapBound), terms, mib(liveBound), mib(res.Live), rep.Summary())
	backend := "kfake"
	if real {
		backend = "kafka"
	}
	hostileReport(t, map[string]any{
		"seed": seed, "delivery": delivery, "backend": backend, "records": len(inputs), "classes": rep.Classes,
		"outputs": rep.Outputs, "duplicates": rep.Duplicates, "dead_letters": rep.DeadLetters, "truncated": rep.Truncated,
		"problems": len(rep.Problems) + rep.Dropped, "processed_s": processed.Seconds(),
		"heap_peak_mib": mib(res.Peak), "heap_bound_mib": mib(heapBound), "live_heap_peak_mib": mib(res.Live),
	})
	if !rep.OK() {
		t.Errorf("seed %d (%s): %d problems (replay with %s=%d):\n  %s", seed, delivery, len(rep.Problems)+rep.Dropped,
			hostileSeedEnv, seed, strings.Join(rep.Problems, "\n  "))
		if rep.Dropped > 0 {
			t.Errorf("... and %d more", rep.Dropped)
		}
	}
	if res.Peak > heapBound {
		t.Errorf("seed %d (%s): the pipeline's heap peaked at %.1f MiB, over its bound of %.1f MiB = 2 x (%s) + 8 MiB (replay with %s=%d)",
			seed, delivery, mib(res.Peak), mib(heapBound), terms, hostileSeedEnv, seed)
	}
}

// hostileLast keeps the records and expectations of the last seed, for
// the other delivery mode of the same seed (expectations depend on the
// records, the topic names and the oracle's limits, not on where the
// records landed).
var hostileLast struct {
	sync.Mutex
	gen, key string
	recs     []hostile.Record
	exps     []hostile.Expectation
}

// hostileGenerate returns hostile.Generate(seed, n).
func hostileGenerate(seed uint64, n int) []hostile.Record {
	key := fmt.Sprintf("%d/%d", seed, n)
	hostileLast.Lock()
	defer hostileLast.Unlock()
	if hostileLast.gen != key {
		hostileLast.gen, hostileLast.recs = key, hostile.Generate(seed, n)
	}
	return hostileLast.recs
}

// hostileExpectations returns the oracle's expectation for each input.
func hostileExpectations(o *hostile.Oracle, seed uint64, inputs []hostile.Input) []hostile.Expectation {
	key := fmt.Sprintf("%d/%d/%s/%s/%+v/%+v", seed, len(inputs), o.InputTopic, o.Topics, o.Options, o.Limits)
	hostileLast.Lock()
	defer hostileLast.Unlock()
	if hostileLast.key == key {
		return hostileLast.exps
	}
	exps := make([]hostile.Expectation, len(inputs))
	for i := range inputs {
		exps[i] = o.Expect(&inputs[i])
	}
	hostileLast.key, hostileLast.exps = key, exps
	return exps
}

// hostileReport appends one JSON line of figures to the file named by
// IDSYNC_TEST_RELIABILITY_REPORT, as the reliability suite does (make
// test-reliability; docs/reliability.md is written from them).
func hostileReport(t *testing.T, figures map[string]any) {
	path := os.Getenv("IDSYNC_TEST_RELIABILITY_REPORT")
	if path == "" {
		return
	}
	figures["test"] = t.Name()
	b, err := json.Marshal(figures)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		t.Errorf("report: %v", err)
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// produceHostile writes the records to the input topic in order and
// returns them with their positions.
func produceHostile(t *testing.T, e *env, recs []hostile.Record) []hostile.Input {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(e.input()),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(len(recs)+1))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		krs[i] = &kgo.Record{Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			krs[i].Headers = append(krs[i].Headers, kgo.RecordHeader{Key: h.Key, Value: []byte(h.Value)})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, krs...).FirstErr(); err != nil {
		t.Fatalf("producing the input: %v", err)
	}
	out := make([]hostile.Input, len(recs))
	for i, r := range krs {
		out[i] = hostile.Input{Class: recs[i].Class, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Headers: recs[i].Headers}
	}
	return out
}

// waitHostileCommitted waits until the group's committed offsets reach the
// input's end offsets. It fails the test at once when Run returns, and at
// the deadline naming each stuck partition with the record it is stuck at.
func waitHostileCommitted(t *testing.T, e *env, proc *hostileProcess, inputs []hostile.Input, within time.Duration) {
	t.Helper()
	at := map[string]*hostile.Input{}
	for i := range inputs {
		at[inputs[i].ID()] = &inputs[i]
	}
	deadline := time.Now().Add(within)
	var stuck []string
	for {
		select {
		case <-proc.exited:
			t.Fatalf("the pipeline process ended while records were pending: %s", proc.failure())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ends, err := e.adm.ListEndOffsets(ctx, e.input())
		var committed kadm.OffsetResponses
		if err == nil {
			committed, err = e.adm.FetchOffsets(ctx, e.group())
		}
		cancel()
		if err == nil {
			stuck = stuck[:0]
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(o.Topic, o.Partition)
				if o.Offset > 0 && (!ok || c.At < o.Offset) {
					pos := int64(0)
					if ok {
						pos = c.At
					}
					desc := fmt.Sprintf("partition %d committed %d of %d", o.Partition, pos, o.Offset)
					if in := at[fmt.Sprintf("%d/%d", o.Partition, pos)]; in != nil {
						desc += fmt.Sprintf(" (next record: class %s, %d bytes)", in.Class, len(in.Value))
					}
					stuck = append(stuck, desc)
				}
			})
			if len(stuck) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets not committed to the end within %s: %s (last error %v); the pipeline's log ends with:\n%s",
				within, strings.Join(stuck, "; "), err, proc.stderr.tail(3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readHostile reads back every destination topic the run may have written
// (the fixture's valid destinations and any other topic under the
// template's prefix) and the DLQ, once the pipeline has stopped: until it
// holds at least the records the oracle requires and nothing new arrived
// for a second, or nothing arrived for five.
func readHostile(t *testing.T, e *env, tmpl idsync.TopicTemplate, fx *hostile.Fixture, exps []hostile.Expectation, readCommitted bool) []hostile.Got {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	topics := map[string]bool{e.dlq(): true}
	for _, d := range fx.Destinations() {
		topics[tmpl.Topic(d)] = true
	}
	if listed, err := e.adm.ListTopics(ctx); err == nil {
		destPrefix := strings.TrimSuffix(e.template(), idsync.TopicPlaceholder)
		for _, name := range listed.Names() {
			if strings.HasPrefix(name, destPrefix) {
				topics[name] = true
			}
		}
	}
	want := 0
	for i := range exps {
		want += len(exps[i].Outputs)
		for _, d := range exps[i].DeadLetters {
			if !d.Optional {
				want++
			}
		}
	}
	// Only topics that exist are consumed: a missing one would be waited
	// for by the client forever.
	var names []string
	if listed, err := e.adm.ListTopics(ctx, slices.Sorted(mapKeys(topics))...); err == nil {
		for name, d := range listed {
			if d.Err == nil {
				names = append(names, name)
			}
		}
	}
	opts := []kgo.Opt{kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(names...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(16 << 20)}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []hostile.Got
	quietSince := time.Now()
	for ctx.Err() == nil {
		// The pipeline has stopped: nothing more will come once the
		// topics are read. Past the records required, a second of quiet
		// ends the read; short of them (some are missing), five.
		quiet := time.Since(quietSince)
		if len(got) >= want && quiet > time.Second || quiet > 5*time.Second {
			break
		}
		pollCtx, pcancel := context.WithTimeout(ctx, 250*time.Millisecond)
		fs := cl.PollFetches(pollCtx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) {
			quietSince = time.Now()
			g := hostile.Got{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value}
			for _, h := range r.Headers {
				g.Headers = append(g.Headers, hostile.Header{Key: h.Key, Value: string(h.Value)})
			}
			got = append(got, g)
		})
	}
	if len(got) < want {
		t.Logf("read %d records, fewer than the %d required (the check below names what is missing)", len(got), want)
	}
	return got
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// hostileHeapBound states how much heap the pipeline process may hold,
// from the pipeline's limits, with the terms named. The pipeline runs
// alone in that process (the broker, the input and the oracle live in the
// test's), so its live heap is the start-up heap (base: the runtime, the
// package-level tables such as the phone metadata, the clients; measured
// after a collection, before Run) plus what the pipeline holds while
// running:
//
//   - fetch: 4 x FetchMaxBytes: a fetch in hand and one buffered by the
//     client, each up to twice its size once decompressed;
//   - producer: MaxInflightBytes, the producer's buffer (outputs and dead
//     letters until acknowledged; dead letters share the input's bytes);
//   - windows: two processing windows (one being produced, the next being
//     processed) of windowBudget bytes of results each, plus, in each, one
//     event's output (at most MaxEventOutputBytes) per worker, which may
//     pass the budget before it notices (docs/reliability.md, "Memory,
//     whatever the input");
//   - caches: the connection cache (a few hundred audiences, under 1 MiB)
//     and the phone memo (two generations of at most 384 KiB): 2 MiB.
//
// live is that sum. The heap (objects live or not yet swept, what the test
// samples every 50 ms) must stay under heap = 2 x live + 8 MiB: with
// GOGC=100 a collection starts when the heap reaches twice the live heap
// plus the collector's roots (stacks and globals, larger under the race
// detector), and the heap grows a little more while the collection marks.
// The live heap as marked by the last collection is reported beside it, not
// checked: it counts what was allocated during marking as live.
func hostileHeapBound(cfg Config, base uint64, procs int) (live, heap uint64, terms string) {
	fetch := uint64(4 * cfg.FetchMaxBytes)
	producer := uint64(cfg.MaxInflightBytes)
	budget := uint64(max(cfg.MaxInflightBytes/4, 1<<20)) // Pipeline.windowBudget
	windows := 2 * (budget + uint64(procs)*uint64(cfg.Options.MaxEventOutputBytes))
	caches := uint64(2 << 20)
	live = base + fetch + producer + windows + caches
	heap = 2*live + 8<<20
	terms = fmt.Sprintf("base %.1f + fetch %.0f + producer %.0f + windows %.1f + caches %.0f MiB",
		mib(base), mib(fetch), mib(producer), mib(windows), mib(caches))
	return live, heap, terms
}

// heapObjects returns the bytes of heap objects, live or not yet swept.
func heapObjects() uint64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// heapSampler records the peaks of the heap (objects live or not yet
// swept) and of the live heap (as marked by the last collection).
type heapSampler struct {
	done       chan struct{}
	wg         sync.WaitGroup
	peak, live uint64
}

func startHeapSampler(every time.Duration) *heapSampler {
	s := &heapSampler{done: make(chan struct{})}
	s.sample()
	s.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.sample()
			}
		}
	})
	return s
}

func (s *heapSampler) sample() {
	m := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(m)
	s.peak = max(s.peak, m[0].Value.Uint64())
	s.live = max(s.live, m[1].Value.Uint64())
}

// stop ends sampling and returns the peaks of the heap and of the live
// heap.
func (s *heapSampler) stop() (peak, live uint64) {
	close(s.done)
	s.wg.Wait()
	s.sample()
	return s.peak, s.live
}

// hostileChildEnv carries the pipeline process's hostileSpec (JSON); set,
// it makes TestHostilePipelineProcess run the pipeline.
const hostileChildEnv = "IDSYNC_TEST_HOSTILE_PROCESS"

// hostileChildPrefix starts the lines the pipeline process writes for the
// test on its standard output.
const hostileChildPrefix = "hostile-process: "

// hostileSpec is what the pipeline process needs: where the broker and
// Redis are, and the pipeline's settings.
type hostileSpec struct {
	Brokers         []string
	InputTopic      string
	GroupID         string
	DLQTopic        string
	Template        string
	Delivery        Delivery
	TransactionalID string
	// Redis is host:port or a redis:// URL; RedisPrefix the store's key
	// prefix.
	Redis          string
	RedisPrefix    string
	MaxRecordBytes int32
	Limits         idsync.Limits
	Options        idsync.Options
}

// config returns the pipeline configuration of the property test.
func (s hostileSpec) config(tmpl idsync.TopicTemplate) Config {
	return Config{
		Brokers: s.Brokers, InputTopic: s.InputTopic, GroupID: s.GroupID, DLQTopic: s.DLQTopic, Topics: tmpl,
		Delivery: s.Delivery, TransactionalID: s.TransactionalID,
		CreateTopics: true, TopicPartitions: 2, TopicReplicationFactor: 1,
		MaxRecordBytes: s.MaxRecordBytes, Limits: s.Limits, Options: s.Options,
		FetchMaxBytes: hostileFetchMaxBytes, MaxPollRecords: hostilePollRecords,
		MaxInflightBytes: hostileInflightBytes, MaxInflightRecords: hostileInflightRecords,
		Now: func() time.Time { return testNow }, RetryBackoff: 100 * time.Millisecond, LagInterval: time.Second,
		ShutdownTimeout: 20 * time.Second,
	}
}

// hostileStarted is the process's first line: the options the pipeline
// runs with after its defaults, and GOMAXPROCS.
type hostileStarted struct {
	Options idsync.Options
	Limits  idsync.Limits
	Procs   int
}

// hostileResult is the process's last line: its heap at start, the peaks
// of its heap and live heap, and Run's error ("" for none).
type hostileResult struct {
	Base, Peak, Live uint64
	Err              string
}

// hostileProcess is the pipeline running in a process of its own (this
// test binary, running TestHostilePipelineProcess), so that its heap can be
// measured apart from the broker's, the input's and the oracle's.
type hostileProcess struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	started hostileStarted
	result  chan hostileResult
	exited  chan struct{}
	waitErr error
	stderr  lockedBuffer
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// tail returns the last n bytes written.
func (l *lockedBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b.Bytes()
	return string(b[max(0, len(b)-n):])
}

// startHostileProcess starts the pipeline process and waits until its
// pipeline is built.
func startHostileProcess(t *testing.T, spec hostileSpec) *hostileProcess {
	t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHostilePipelineProcess$", "-test.count=1", "-test.timeout=15m")
	cmd.Env = append(os.Environ(), hostileChildEnv+"="+string(raw))
	p := &hostileProcess{cmd: cmd, result: make(chan hostileResult, 1), exited: make(chan struct{})}
	cmd.Stderr = &p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the pipeline process: %v", err)
	}
	started := make(chan hostileStarted, 1)
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), hostileChildPrefix)
			if !ok {
				_, _ = p.stderr.Write(append(sc.Bytes(), '\n'))
				continue
			}
			kind, body, _ := strings.Cut(line, " ")
			switch kind {
			case "started":
				var s hostileStarted
				if json.Unmarshal([]byte(body), &s) == nil {
					started <- s
				}
			case "result":
				var r hostileResult
				if json.Unmarshal([]byte(body), &r) == nil {
					p.result <- r
				}
			}
		}
		p.waitErr = cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case p.started = <-started:
	case <-p.exited:
		t.Fatalf("the pipeline process ended before its pipeline started: %s", p.failure())
	case <-time.After(60 * time.Second):
		t.Fatalf("the pipeline process did not start within 60s: %s", p.failure())
	}
	return p
}

// failure describes how the process ended, with the end of its log.
func (p *hostileProcess) failure() string {
	msg := "still running"
	select {
	case <-p.exited:
		msg = fmt.Sprintf("exit: %v", p.waitErr)
	default:
	}
	select {
	case r := <-p.result:
		p.result <- r
		msg += fmt.Sprintf(", Run returned %q", r.Err)
	default:
	}
	return msg + "; its log ends with:\n" + p.stderr.tail(4000)
}

// stop asks the process to shut down (its standard input closes), waits
// for it and returns what it reported.
func (p *hostileProcess) stop(t *testing.T) hostileResult {
	t.Helper()
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatalf("the pipeline process did not stop within 60s of being asked: %s", p.failure())
	}
	select {
	case r := <-p.result:
		if p.waitErr != nil {
			t.Errorf("the pipeline process failed: %s", p.failure())
		}
		return r
	default:
		t.Fatalf("the pipeline process reported nothing: %s", p.failure())
		return hostileResult{}
	}
}

// TestHostilePipelineProcess is the pipeline process of TestHostileInput;
// on its own it skips. It runs the pipeline on the store's cache until its
// standard input closes, sampling its heap every 50 ms, and reports on
// standard output.
func TestHostilePipelineProcess(t *testing.T) {
	raw := os.Getenv(hostileChildEnv)
	if raw == "" {
		t.Skip("the pipeline process of TestHostileInput")
	}
	var spec hostileSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatalf("%s: %v", hostileChildEnv, err)
	}
	report := func(kind string, v any) {
		b, _ := json.Marshal(v)
		fmt.Printf("%s%s %s\n", hostileChildPrefix, kind, b)
	}
	opts := &redis.Options{Addr: spec.Redis}
	if strings.Contains(spec.Redis, "://") {
		var err error
		if opts, err = redis.ParseURL(spec.Redis); err != nil {
			t.Fatal(err)
		}
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	st, err := store.New(rdb, store.Options{Prefix: spec.RedisPrefix, Now: func() time.Time { return hostile.StoreNow }})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := store.NewCache(st, rdb, store.CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { _ = cache.Run(ctx) })
	tmpl, err := idsync.ParseTopicTemplate(spec.Template)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := New(spec.config(tmpl), cache, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	report("started", hostileStarted{Options: p.cfg.Options, Limits: p.cfg.Limits, Procs: runtime.GOMAXPROCS(0)})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	runtime.GC()
	base := heapObjects()
	sampler := startHeapSampler(50 * time.Millisecond)
	runErr := p.Run(ctx)
	res := hostileResult{Base: base}
	res.Peak, res.Live = sampler.stop()
	if runErr != nil {
		res.Err = runErr.Error()
	}
	report("result", res)
}
