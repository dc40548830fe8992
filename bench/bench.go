// Package bench measures idsync against the limit of its Kafka broker: a
// seeded load generator writes realistic audience-membership events and
// stores their connections in Redis; then, on the same broker and in the
// same process, the idsync pipeline (built as the binary builds it) and a
// baseline (a minimal franz-go consume→produce loop that writes the same
// number of records, of the same sizes, to the same topics, without
// processing) each consume the whole input. The report gives, for both,
// events/s, output records/s, MB/s, end-to-end latency, CPU per million
// events and peak RSS, and the ratio idsync/baseline.
//
// It is a tool, not a service: `idsync bench` is its command line. It
// does not measure the admin API, and figures on the embedded broker
// (kfake, in process) say little about a real one.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/pipeline"
	"github.com/idsync/idsync/store"
)

// Config is one benchmark. Zero fields take the defaults noted.
type Config struct {
	// Events is the number of input events (default 100,000).
	Events int
	// Delivery is the delivery mode of both idsync and the baseline
	// (default at_least_once).
	Delivery pipeline.Delivery
	// Brokers are the Kafka seed brokers; empty starts an embedded kfake.
	Brokers []string
	// Redis is the Redis address; empty starts an embedded miniredis.
	Redis string
	// Audiences is the audience pool (default 200); Profiles the profile
	// pool (default Events/4).
	Audiences, Profiles int
	// Seed seeds the workload (default 1).
	Seed uint64
	// Rounds is the number of baseline + idsync throughput rounds; the
	// report gives their medians (default 1).
	Rounds int
	// WarmupRounds are run before the counted rounds and left out of the
	// report (default 0; the CLI's default is 1). The first loop to write
	// to the run's fresh destination topics pays the broker's cost of
	// creating their segments and compiling its code paths, which made the
	// first round's first loop (always the baseline) up to twice as slow.
	WarmupRounds int
	// Partitions of the input and destination topics (default 6).
	Partitions int32
	// LatencyEvents is the size of the paced latency phase (default
	// min(Events, 20,000)); LatencyRate its rate in events/s (default half
	// the slower loop's measured throughput, the same rate for both).
	// LatencyEvents < 0 skips it. The phase's first second of events (at
	// most half of them) warms the loop up: a fresh loop starts consuming
	// after the first events are written and with cold caches, and a
	// service runs for days; their latencies are reported apart
	// (LatencyDetail.Warmup), the p50 and p99 are the events after them.
	LatencyEvents int
	LatencyRate   float64
	// MaxInflightBytes is processing.max_inflight_bytes of both loops
	// (default 64 MiB, the service's default).
	MaxInflightBytes int
	// Membership makes idsync write the membership topic as the service
	// does by default (resync.enabled, docs/resync.md): one more record per
	// event, which the baseline loops do not write. Off by default, so that
	// both loops produce the same records.
	Membership bool
	// Service, when set, is the path of an idsync binary that the
	// benchmark also runs as `idsync run`, its own process, on the same
	// broker, Redis and workload (ServicePhase): what the deployed service
	// costs, membership, metrics and admin API on, CPU read from /proc
	// from the process's start to lag 0. ServicePartitions is its input
	// topic's partition count (default 12); ServiceEnv are extra
	// environment variables of the process (IDSYNC_* settings, GOMAXPROCS,
	// GOGC); ServiceProfileDir, when set, receives CPU profiles of the
	// drain from its /debug/pprof (needs IDSYNC_OPS_PPROF=true) and the
	// service's log (service.log).
	// ServiceOnly skips the in-process loops.
	Service           string
	ServicePartitions int32
	ServiceEnv        []string
	ServiceProfileDir string
	ServiceOnly       bool
	// Stall, when positive, runs the stalled-destination test instead of
	// the throughput comparison, for that long (embedded broker only).
	Stall time.Duration
	// PhaseTimeout bounds one phase (default 10 minutes).
	PhaseTimeout time.Duration
	// Progress receives one line per step (nil: none).
	Progress io.Writer
	// Logger receives the pipeline's log (nil: warnings to io.Discard).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Events <= 0 {
		c.Events = 100_000
	}
	if c.Delivery == "" {
		c.Delivery = pipeline.AtLeastOnce
	}
	if c.Audiences <= 0 {
		c.Audiences = 200
	}
	if c.Profiles <= 0 {
		c.Profiles = max(1, c.Events/4)
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Rounds <= 0 {
		c.Rounds = 1
	}
	if c.Partitions <= 0 {
		c.Partitions = 6
	}
	if c.ServicePartitions <= 0 {
		c.ServicePartitions = 12
	}
	if c.LatencyEvents == 0 {
		c.LatencyEvents = min(c.Events, 20_000)
	}
	if c.MaxInflightBytes <= 0 {
		c.MaxInflightBytes = 64 << 20
	}
	if c.PhaseTimeout <= 0 {
		c.PhaseTimeout = 10 * time.Minute
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// env is the running benchmark: broker, Redis, topics and workload.
type env struct {
	cfg       Config
	run       string // unique per run: topics, group ids and Redis prefix
	brokers   []string
	kfake     *kfake.Cluster
	mini      *miniredis.Miniredis
	rdb       *redis.Client
	redisAddr string
	st        *store.Store
	prefix    string
	adm       *kadm.Client
	admCl     *kgo.Client
	tmpl      idsync.TopicTemplate
	dlq       string
	w         *Workload
	exp       *expected
	genNow    time.Time
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.cfg.Progress, "bench: "+format+"\n", args...)
}

// Run runs the benchmark and returns its report. It blocks for the whole
// run; ctx cancels it.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.setDefaults()
	if cfg.Delivery != pipeline.AtLeastOnce && cfg.Delivery != pipeline.ExactlyOnce {
		return nil, fmt.Errorf("bench: delivery %q is not %s or %s", cfg.Delivery, pipeline.AtLeastOnce, pipeline.ExactlyOnce)
	}
	if cfg.Stall > 0 && len(cfg.Brokers) > 0 {
		return nil, errors.New("bench: the stalled-destination test runs on the embedded broker only (it stalls one topic's leader)")
	}
	e, err := setup(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer e.close()
	if cfg.Stall > 0 {
		return e.stallTest(ctx)
	}
	return e.compare(ctx)
}

func setup(ctx context.Context, cfg Config) (*env, error) {
	e := &env{cfg: cfg, run: strconv.FormatInt(time.Now().UnixNano()%1e12, 36), genNow: time.Now().UTC()}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	e.brokers = cfg.Brokers
	if len(e.brokers) == 0 {
		brokers := 1
		if cfg.Stall > 0 {
			brokers = 2 // the stalled topic gets a leader of its own
		}
		kc, err := kfake.NewCluster(kfake.NumBrokers(brokers), kfake.DefaultNumPartitions(int(cfg.Partitions)))
		if err != nil {
			return nil, fmt.Errorf("bench: starting kfake: %w", err)
		}
		e.kfake, e.brokers = kc, kc.ListenAddrs()
	}
	addr := cfg.Redis
	if addr == "" {
		e.mini = miniredis.NewMiniRedis()
		if err := e.mini.Start(); err != nil {
			return nil, fmt.Errorf("bench: starting miniredis: %w", err)
		}
		addr = e.mini.Addr()
	}
	e.redisAddr = addr
	e.rdb = redis.NewClient(&redis.Options{Addr: addr})
	e.prefix = "idsync-bench:" + e.run + ":"
	st, err := store.New(e.rdb, store.Options{Prefix: e.prefix})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	e.st = st
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		return nil, fmt.Errorf("bench: kafka admin client: %w", err)
	}
	e.admCl, e.adm = cl, kadm.NewClient(cl)
	if e.tmpl, err = idsync.ParseTopicTemplate("idsync-bench." + e.run + ".dest.{destination_id}"); err != nil {
		return nil, err
	}
	e.dlq = "idsync-bench." + e.run + ".dlq"

	e.logf("run %s: brokers %v, redis %s, %d events, delivery %s", e.run, e.brokers, addr, cfg.Events, cfg.Delivery)
	if e.w, err = NewWorkload(cfg.Seed, cfg.Audiences, cfg.Profiles); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	for _, c := range e.w.Connections {
		k := store.Key{Space: Space, Audience: c.Audience, Destination: c.Destination}
		if _, err := e.st.Put(ctx, k, c.Config, "bench", 0); err != nil {
			return nil, fmt.Errorf("bench: storing connection %s/%s: %w", c.Audience, c.Destination, err)
		}
	}
	e.logf("stored %d connections of %d audiences in redis (prefix %s)", len(e.w.Connections), cfg.Audiences, e.prefix)
	if err := e.createTopics(ctx); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// createTopics creates the destination topics and the DLQ up front, so that
// no phase pays for topic creation.
func (e *env) createTopics(ctx context.Context) error {
	names := []string{e.dlq}
	for _, d := range destinations {
		names = append(names, e.tmpl.Topic(d.id))
	}
	return e.createTopic(ctx, nil, names...)
}

func (e *env) createTopic(ctx context.Context, configs map[string]*string, names ...string) error {
	resp, err := e.adm.CreateTopics(ctx, e.cfg.Partitions, -1, configs, names...)
	if err != nil {
		return fmt.Errorf("bench: creating topics: %w", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil {
			return fmt.Errorf("bench: creating topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

func (e *env) close() {
	if e.admCl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var topics []string
		for _, d := range destinations {
			topics = append(topics, e.tmpl.Topic(d.id))
		}
		topics = append(topics, e.dlq, e.inputTopic("throughput"), e.inputTopic("latency"), e.inputTopic("stall"), e.inputTopic("service"))
		_, _ = e.adm.DeleteTopics(ctx, topics...)
		cancel()
		e.admCl.Close()
	}
	if e.rdb != nil {
		if e.mini == nil { // a real Redis: remove what the run stored
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			iter := e.rdb.Scan(ctx, 0, e.prefix+"*", 1000).Iterator()
			for iter.Next(ctx) {
				e.rdb.Del(ctx, iter.Val())
			}
			cancel()
		}
		e.rdb.Close()
	}
	if e.mini != nil {
		e.mini.Close()
	}
	if e.kfake != nil {
		e.kfake.Close()
	}
}

func (e *env) inputTopic(kind string) string { return "idsync-bench." + e.run + ".in-" + kind }

// expected is what idsync produces for each event of the workload, computed
// with idsync.Process on the same connections: the baseline writes records
// of these topics and sizes, and both loops know when they are done.
type expected struct {
	topics []string
	start  []int32   // event i's outputs are outs[start[i]:start[i+1]]
	outs   []outSpec // in production order
	bytes  int64     // value bytes of all outputs
	filler []byte    // real output values, the baseline's record contents
}

type outSpec struct {
	topic uint16
	size  int32
}

func (x *expected) of(i int) []outSpec { return x.outs[x.start[i]:x.start[i+1]] }

// count returns the number of outputs of the first n events.
func (x *expected) count(n int) int { return int(x.start[n]) }

// input is one input topic as produced: which event each offset holds and
// when it was produced.
type input struct {
	name     string
	mu       sync.Mutex
	seq      [][]int32 // partition → offset → event index
	warm     int       // the paced phase's warm-up events (tracker.warm)
	produced []int64   // event index → unix nanoseconds of Produce
	ackedAt  []int64   // event index → unix nanoseconds of its acknowledgement (paced events; 0 until then)
	events   int
	// acked are the paced events' times from Produce to the broker's
	// acknowledgement: the broker's write path, which every loop's
	// latency includes.
	acked latencies
}

func (in *input) eventAt(partition int32, offset int64) int {
	// In the latency phase a record can be consumed a moment before its
	// producer's promise has recorded its offset: wait for it.
	for try := 0; ; try++ {
		in.mu.Lock()
		i := -1
		if int(partition) < len(in.seq) && offset >= 0 && offset < int64(len(in.seq[partition])) {
			i = int(in.seq[partition][offset])
		}
		in.mu.Unlock()
		if i >= 0 || try == 10_000 {
			return i
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// produceInput writes the workload's events [0, n) to a new input topic,
// as fast as the broker takes them.
func (e *env) produceInput(ctx context.Context, kind string, n int) (*input, error) {
	in := &input{name: e.inputTopic(kind)}
	if err := e.createTopic(ctx, nil, in.name); err != nil {
		return nil, err
	}
	return in, e.produceTo(ctx, in, n, 0, func(i int) []byte { return e.w.Event(i, e.genNow).Value })
}

// produceTo produces events [0, n) to in's topic, paced at rate events/s
// when rate > 0, recording which offset holds which event and when each
// was produced.
func (e *env) produceTo(ctx context.Context, in *input, n int, rate float64, event func(int) []byte) error {
	in.mu.Lock()
	in.seq = make([][]int32, e.cfg.Partitions)
	in.produced = make([]int64, n)
	in.ackedAt = make([]int64, n)
	in.events = n
	in.mu.Unlock()
	opts := []kgo.Opt{kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(in.name),
		kgo.ProducerBatchMaxBytes(4 << 20), kgo.MaxBufferedRecords(100_000)}
	if rate > 0 {
		opts = append(opts, kgo.ProducerLinger(0))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var perr atomic.Pointer[error]
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range n {
		if rate > 0 {
			if wait := time.Until(begin.Add(time.Duration(float64(i) / rate * float64(time.Second)))); wait > 0 {
				if err := sleepCtx(ctx, wait); err != nil {
					return err
				}
			}
		}
		value := event(i)
		in.mu.Lock()
		in.produced[i] = time.Now().UnixNano()
		in.mu.Unlock()
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Key: keyOf(value), Value: value}, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				perr.CompareAndSwap(nil, &err)
				return
			}
			in.mu.Lock()
			if rate > 0 {
				now := time.Now().UnixNano()
				in.ackedAt[i] = now
				if i >= in.warm {
					in.acked.add(time.Duration(now - in.produced[i]))
				}
			}
			for int(r.Partition) >= len(in.seq) { // an input of other partitions than the run's
				in.seq = append(in.seq, nil)
			}
			p := in.seq[r.Partition]
			for int64(len(p)) <= r.Offset {
				p = append(p, -1)
			}
			p[r.Offset] = int32(i)
			in.seq[r.Partition] = p
			in.mu.Unlock()
		})
	}
	wg.Wait()
	if p := perr.Load(); p != nil {
		return fmt.Errorf("bench: producing input: %w", *p)
	}
	return nil
}

// keyOf returns the input key of a generated event: "<space>:<segment_id>".
func keyOf(value []byte) []byte {
	const marker = `"segment_id":"`
	s := string(value)
	i := indexOf(s, marker)
	if i < 0 {
		return nil
	}
	rest := s[i+len(marker):]
	j := indexOf(rest, `"`)
	return []byte(Space + ":" + rest[:j])
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// computeExpected runs idsync.Process over the workload's events.
func (e *env) computeExpected() (*expected, error) {
	x := &expected{start: make([]int32, 1, e.cfg.Events+1)}
	topicIdx := map[string]uint16{}
	topic := func(name string) uint16 {
		i, ok := topicIdx[name]
		if !ok {
			i = uint16(len(x.topics))
			topicIdx[name] = i
			x.topics = append(x.topics, name)
		}
		return i
	}
	conns := e.w.connectionsByAudience(e.genNow.Add(-time.Hour))
	opt := idsync.DefaultOptions()
	maxSize := 0
	for i := range e.cfg.Events {
		ev := e.w.Event(i, e.genNow)
		dec, err := idsync.Decode(ev.Value, time.Now(), idsync.DefaultLimits())
		if err != nil {
			return nil, fmt.Errorf("bench: generated event %d does not decode: %w", i, err)
		}
		res := idsync.Process(dec, conns[dec.AudienceID], time.Now(), opt)
		for _, o := range res.Outputs {
			x.outs = append(x.outs, outSpec{topic: topic(e.tmpl.Topic(o.DestinationID)), size: int32(len(o.Value))})
			x.bytes += int64(len(o.Value))
			maxSize = max(maxSize, len(o.Value))
			if len(x.filler) < 8<<20 {
				x.filler = append(x.filler, o.Value...)
			}
		}
		for range res.DeadLetters {
			x.outs = append(x.outs, outSpec{topic: topic(e.dlq), size: int32(len(ev.Value))})
			x.bytes += int64(len(ev.Value))
		}
		x.start = append(x.start, int32(len(x.outs)))
	}
	for len(x.filler) < 2*maxSize+1 {
		x.filler = append(x.filler, x.filler...)
	}
	return x, nil
}

// compare runs the rounds and the latency phases.
func (e *env) compare(ctx context.Context) (*Report, error) {
	var err error
	if e.cfg.ServiceOnly {
		// The service's outputs are counted on the broker: no expected
		// outputs to compute.
		rep := &Report{Mode: string(e.cfg.Delivery), Events: e.cfg.Events, Broker: e.brokerName()}
		if rep.Service, err = e.runService(ctx); err != nil {
			return nil, err
		}
		rep.OutputRecords = rep.Service.OutputRecords
		return rep, nil
	}
	t0 := time.Now()
	if e.exp, err = e.computeExpected(); err != nil {
		return nil, err
	}
	e.logf("workload: %d events → %d output records (%.1f per event), %.1f MB of output; computed in %s",
		e.cfg.Events, len(e.exp.outs), float64(len(e.exp.outs))/float64(e.cfg.Events), float64(e.exp.bytes)/1e6, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	in, err := e.produceInput(ctx, "throughput", e.cfg.Events)
	if err != nil {
		return nil, err
	}
	e.logf("input: %d events produced to %s in %s", e.cfg.Events, in.name, time.Since(t0).Round(time.Millisecond))

	rep := &Report{Mode: string(e.cfg.Delivery), Events: e.cfg.Events, Broker: e.brokerName(), Rounds: e.cfg.Rounds, WarmupRounds: e.cfg.WarmupRounds,
		OutputRecords: len(e.exp.outs), InputBytes: 0}
	kinds := []string{"baseline", "idsync"}
	if rawAvailable(e.cfg.Delivery) {
		// The raw loop is the baseline; the cycle loop (idsync's own
		// batch cycle without the processing) is the second reference.
		kinds = []string{"baseline", "cycle", "idsync"}
	}
	for r := range e.cfg.WarmupRounds {
		for _, kind := range kinds {
			ph, err := e.phase(ctx, kind, fmt.Sprintf("%s-warmup-%d", kind, r), in, 0)
			if err != nil {
				return nil, err
			}
			e.logf("warm-up %-8s %s (not counted)", kind, ph.line())
		}
	}
	var ids, bases, cycles []Phase
	var cycleRatios, cpuRatios []float64
	for r := range e.cfg.Rounds {
		// Each round rotates the order, so no loop always runs first
		// (on a warmer or colder broker).
		order := append(kinds[r%len(kinds):len(kinds):len(kinds)], kinds[:r%len(kinds)]...)
		for _, kind := range order {
			ph, err := e.phase(ctx, kind, fmt.Sprintf("%s-%d", kind, r), in, 0)
			if err != nil {
				return nil, err
			}
			e.logf("round %d %-8s %s", r+1, kind, ph.line())
			switch kind {
			case "idsync":
				ids = append(ids, ph)
			case "cycle":
				cycles = append(cycles, ph)
			default:
				bases = append(bases, ph)
			}
		}
		rep.RoundRatios = append(rep.RoundRatios, round3(ids[r].EventsPerSec/bases[r].EventsPerSec))
		cpuRatios = append(cpuRatios, ids[r].CPUSecPerMEvents/bases[r].CPUSecPerMEvents)
		if len(cycles) > r {
			cycleRatios = append(cycleRatios, ids[r].EventsPerSec/cycles[r].EventsPerSec)
		}
	}
	rep.Idsync, rep.Baseline = median(ids), median(bases)
	rep.Ratio = round3(medianOf(rep.RoundRatios))
	rep.CPURatio = round3(medianOf(cpuRatios))
	if len(cycles) > 0 {
		c := median(cycles)
		rep.Cycle = &c
		rep.RatioCycle = round3(medianOf(cycleRatios))
	}

	if e.cfg.LatencyEvents > 0 {
		rate := e.cfg.LatencyRate
		if rate <= 0 {
			// Half the slower loop's throughput: both run below capacity,
			// so the latency is the loops', not a queue's.
			rate = math.Round(min(rep.Baseline.EventsPerSec, rep.Idsync.EventsPerSec) / 2)
		}
		n := min(e.cfg.LatencyEvents, e.cfg.Events)
		rep.LatencyRate = rate
		for _, kind := range kinds {
			ph, err := e.phase(ctx, kind, kind+"-latency", nil, rate)
			if err != nil {
				return nil, err
			}
			e.logf("latency  %-8s %d events at %.0f/s: p50 %.1f ms, p99 %.1f ms", kind, n, rate, ph.P50Ms, ph.P99Ms)
			if d := ph.Latency; d != nil {
				e.logf("         %-8s %s", kind, d.line())
			}
			target := &rep.Baseline
			switch kind {
			case "idsync":
				target = &rep.Idsync
			case "cycle":
				target = rep.Cycle
			}
			target.P50Ms, target.P99Ms, target.Latency = ph.P50Ms, ph.P99Ms, ph.Latency
		}
	}
	if e.cfg.Service != "" {
		if rep.Service, err = e.runService(ctx); err != nil {
			return nil, err
		}
		if c := rep.Idsync.CPUSecPerMEvents; c > 0 {
			rep.Service.CPURatioIdsync = round3(rep.Service.CPUSecPerMEvents / c)
		}
		if c := rep.Baseline.CPUSecPerMEvents; c > 0 {
			rep.Service.CPURatioBaseline = round3(rep.Service.CPUSecPerMEvents / c)
		}
	}
	return rep, nil
}

func (e *env) brokerName() string {
	if e.kfake != nil {
		return "kfake"
	}
	return "kafka " + e.brokers[0]
}

// runService runs the service phase and logs its line.
func (e *env) runService(ctx context.Context) (*ServicePhase, error) {
	sp, err := e.servicePhase(ctx)
	if err != nil {
		return nil, err
	}
	e.logf("service  %s", sp.line())
	return sp, nil
}

// phase runs one processor over an input until everything is produced and
// committed. With rate > 0 it first starts the processor and then
// produces LatencyEvents events at that rate (latency phase); otherwise it
// consumes in, produced beforehand (throughput phase).
func (e *env) phase(ctx context.Context, kind, name string, in *input, rate float64) (Phase, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.PhaseTimeout)
	defer cancel()
	paced := rate > 0
	var events [][]byte
	n := e.cfg.Events
	if paced {
		n = min(e.cfg.LatencyEvents, e.cfg.Events)
		events = make([][]byte, n)
		for i := range events {
			events[i] = e.w.Event(i, e.genNow).Value
		}
		in = &input{name: e.inputTopic("latency-" + kind)}
		if err := e.createTopic(ctx, nil, in.name); err != nil {
			return Phase{}, err
		}
	}
	tr := newTracker(e.exp, n, paced)
	tr.input = in
	if paced {
		tr.warm = warmupEvents(n, rate)
		in.warm = tr.warm
	}
	quiesce()
	sampler := startSampler(10 * time.Millisecond)
	cpu0 := cpuTime()
	busy0, total0 := machineCPU()
	gc0 := markGC()
	wall0 := time.Now()
	reg := prometheus.NewRegistry()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	group := "idsync-bench-" + e.run + "-" + name
	var run func(context.Context) error
	var err error
	done := make(chan error, 1)
	// The loop's client and every goroutine it starts carry the profiler
	// label loop=<kind>, so a CPU profile of the run separates the two
	// loops (go tool pprof -tagfocus loop=idsync).
	pprof.Do(ctx, pprof.Labels("loop", kind), func(context.Context) {
		switch kind {
		case "idsync":
			run, err = e.idsyncLoop(in, group, tr, reg)
		case "baseline":
			if rawAvailable(e.cfg.Delivery) {
				run, err = e.rawLoop(in, group, tr)
			} else {
				run, err = e.baselineLoop(in, group, tr)
			}
		default: // "cycle"
			run, err = e.baselineLoop(in, group, tr)
		}
		if err == nil {
			go func() { done <- run(runCtx) }()
		}
	})
	if err != nil {
		return Phase{}, err
	}

	if paced {
		// Latency is measured from a joined group: events produced while
		// the group forms would wait for the join, not for the loop.
		if err := e.awaitJoined(ctx, group, done); err != nil {
			stop()
			<-done
			return Phase{}, err
		}
		if err := e.produceTo(ctx, in, n, rate, func(i int) []byte { return events[i] }); err != nil {
			stop()
			<-done
			return Phase{}, err
		}
	}
	// Wait for every output to be acknowledged, then for the commit.
	if err := tr.wait(ctx, done); err != nil {
		stop()
		<-done
		return Phase{}, fmt.Errorf("bench: %s phase: %w", name, err)
	}
	if err := e.awaitCommitted(ctx, group, in.name, done); err != nil {
		stop()
		<-done
		return Phase{}, fmt.Errorf("bench: %s phase: %w", name, err)
	}
	end := time.Now()
	cpu := cpuTime() - cpu0
	busy1, total1 := machineCPU()
	peak := sampler.finish()
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return Phase{}, fmt.Errorf("bench: %s phase: %w", name, err)
	}
	start := time.Unix(0, tr.firstFetch.Load())
	if tr.firstFetch.Load() == 0 || paced {
		start = wall0
	}
	secs := end.Sub(start).Seconds()
	outs := e.exp.count(n)
	var bytes int64
	for _, o := range e.exp.outs[:outs] {
		bytes += int64(o.size)
	}
	ph := Phase{
		Events:            n,
		OutputRecords:     outs,
		Seconds:           round3(secs),
		EventsPerSec:      math.Round(float64(n) / secs),
		RecordsPerSec:     math.Round(float64(outs) / secs),
		MBPerSec:          round3(float64(bytes) / 1e6 / secs),
		CPUSecPerMEvents:  round3(cpu.Seconds() / float64(n) * 1e6),
		MachineBusyPct:    round1(busyPercent(busy0, total0, busy1, total1)),
		PeakRSSMB:         round1(peak),
		StartRSSMB:        round1(float64(sampler.startKB) / 1024),
		PeakHeapMB:        round1(float64(sampler.peakHeap.Load()) / (1 << 20)),
		P50Ms:             tr.lat.quantile(0.50),
		P99Ms:             tr.lat.quantile(0.99),
		JoinAndStartupSec: round3(start.Sub(wall0).Seconds()),
	}
	if paced {
		d := &LatencyDetail{}
		d.GCCycles, d.GCPauseMaxMs = gc0.since()
		d.BatchPhases, d.Batches = batchPhases(reg)
		d.InputAck = in.acked.quantiles()
		d.OutputAck = tr.outAck.quantiles()
		d.AfterInputAck = tr.afterAck.quantiles()
		d.LatencyMaxMs = tr.lat.quantile(1)
		d.WarmupEvents = tr.warm
		d.Warmup = tr.warmLat.quantiles()
		ph.Latency = d
	}
	return ph, nil
}

// warmupEvents is how many of a paced phase's n events at rate events/s
// warm the loop up: the first second's, at most half of them.
func warmupEvents(n int, rate float64) int {
	return min(int(math.Ceil(rate)), n/2)
}

// awaitJoined waits until the group is stable with partitions assigned.
func (e *env) awaitJoined(ctx context.Context, group string, done <-chan error) error {
	for {
		groups, err := e.adm.DescribeGroups(ctx, group)
		if err == nil {
			if g, ok := groups[group]; ok && g.State == "Stable" && len(g.AssignedPartitions()) > 0 {
				return nil
			}
		}
		select {
		case err := <-done:
			return fmt.Errorf("bench: processor stopped before joining: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// awaitCommitted waits until the group's committed offsets reach the end of
// every input partition.
func (e *env) awaitCommitted(ctx context.Context, group, topic string, done <-chan error) error {
	for {
		ends, err := e.adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return err
		}
		offs, err := e.adm.FetchOffsets(ctx, group)
		if err == nil {
			all := true
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := offs.Lookup(topic, o.Partition)
				if o.Offset > 0 && (!ok || c.At < o.Offset) {
					all = false
				}
			})
			if all {
				return nil
			}
		}
		select {
		case err := <-done:
			return fmt.Errorf("processor stopped before committing: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tracker counts the acknowledged output records of a phase, through a
// produce hook on the processor's client, and measures each input's
// end-to-end latency: from the moment its event was produced to the
// acknowledgement of its last output (the definition of
// idsync_end_to_end_latency_seconds).
type tracker struct {
	exp       *expected
	want      int64
	acked     atomic.Int64
	failed    atomic.Int64
	remaining []atomic.Int32
	paced     bool
	// warm is how many of the paced phase's first events warm the loop
	// up; their latencies go to warmLat, the others' to lat.
	warm    int
	warmLat latencies
	lat     latencies
	// afterAck is, per paced event, the time from its input's
	// acknowledgement to its last output's: the end-to-end latency less
	// the broker's write path of the input.
	afterAck latencies
	// outAck is, per paced output record, the time from its hand-over to
	// the producer to its acknowledgement; handed holds the hand-over
	// times of the records not yet acknowledged.
	outAck     latencies
	handedMu   sync.Mutex
	handed     map[*kgo.Record]int64
	firstFetch atomic.Int64
	input      *input
	allDone    chan struct{}
	closeOnce  sync.Once
}

func newTracker(x *expected, n int, paced bool) *tracker {
	t := &tracker{exp: x, want: int64(x.count(n)), remaining: make([]atomic.Int32, n), paced: paced, allDone: make(chan struct{})}
	if paced {
		t.handed = make(map[*kgo.Record]int64)
	}
	for i := range t.remaining {
		t.remaining[i].Store(int32(len(x.of(i))))
	}
	if t.want == 0 {
		close(t.allDone)
	}
	return t
}

// hooks returns the client hooks of the tracker.
func (t *tracker) hooks() kgo.Opt { return kgo.WithHooks(trackerHooks{t}) }

type trackerHooks struct{ t *tracker }

// membershipSuffix ends the membership topic's name (Config.Membership).
const membershipSuffix = ".membership"

// OnProduceRecordUnbuffered implements kgo.HookProduceRecordUnbuffered.
func (h trackerHooks) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	t := h.t
	if strings.HasSuffix(r.Topic, membershipSuffix) {
		return // not an output: the membership topic (Config.Membership)
	}
	var handed int64
	if t.paced {
		t.handedMu.Lock()
		handed = t.handed[r]
		delete(t.handed, r)
		t.handedMu.Unlock()
	}
	if err != nil {
		t.failed.Add(1)
		return
	}
	if t.paced {
		now := time.Now().UnixNano()
		i := t.sourceEvent(r)
		if handed > 0 && i >= t.warm {
			t.outAck.add(time.Duration(now - handed))
		}
		if i >= 0 && i < len(t.remaining) && t.remaining[i].Add(-1) == 0 {
			in := t.input
			in.mu.Lock()
			p, a := in.produced[i], in.ackedAt[i]
			in.mu.Unlock()
			switch {
			case i < t.warm:
				t.warmLat.add(time.Duration(now - p))
			default:
				t.lat.add(time.Duration(now - p))
				if a == 0 {
					// Consumed and processed before the bench's producer
					// saw its acknowledgement: count from Produce (an
					// upper bound).
					a = p
				}
				t.afterAck.add(time.Duration(max(0, now-a)))
			}
		}
	}
	if t.acked.Add(1) == t.want {
		t.closeOnce.Do(func() { close(t.allDone) })
	}
}

// OnProduceRecordBuffered implements kgo.HookProduceRecordBuffered: in the
// paced phase it notes when each output was handed to the producer.
func (h trackerHooks) OnProduceRecordBuffered(r *kgo.Record) {
	t := h.t
	if !t.paced || strings.HasSuffix(r.Topic, membershipSuffix) {
		return
	}
	now := time.Now().UnixNano()
	t.handedMu.Lock()
	t.handed[r] = now
	t.handedMu.Unlock()
}

// OnFetchRecordBuffered implements kgo.HookFetchRecordBuffered: the first
// record fetched starts the throughput clock (group join excluded).
func (h trackerHooks) OnFetchRecordBuffered(*kgo.Record) {
	if h.t.firstFetch.Load() == 0 {
		h.t.firstFetch.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// sourceEvent returns the event index of an output from its idsync-source
// header ("topic/partition/offset").
func (t *tracker) sourceEvent(r *kgo.Record) int {
	for _, h := range r.Headers {
		if h.Key != idsync.HeaderSource {
			continue
		}
		v := h.Value
		slash2 := -1
		slash1 := -1
		for i := len(v) - 1; i >= 0; i-- {
			if v[i] == '/' {
				if slash2 < 0 {
					slash2 = i
				} else {
					slash1 = i
					break
				}
			}
		}
		if slash1 < 0 {
			return -1
		}
		part, err1 := strconv.ParseInt(string(v[slash1+1:slash2]), 10, 32)
		off, err2 := strconv.ParseInt(string(v[slash2+1:]), 10, 64)
		if err1 != nil || err2 != nil {
			return -1
		}
		return t.input.eventAt(int32(part), off)
	}
	return -1
}

func (t *tracker) wait(ctx context.Context, done <-chan error) error {
	select {
	case <-t.allDone:
		if f := t.failed.Load(); f > 0 {
			return fmt.Errorf("%d records failed", f)
		}
		return nil
	case err := <-done:
		return fmt.Errorf("processor stopped after %d of %d records: %v", t.acked.Load(), t.want, err)
	case <-ctx.Done():
		return fmt.Errorf("after %d of %d records: %w", t.acked.Load(), t.want, ctx.Err())
	}
}

// median returns the phase with the median events/s.
func median(ps []Phase) Phase {
	s := slices.Clone(ps)
	slices.SortFunc(s, func(a, b Phase) int {
		switch {
		case a.EventsPerSec < b.EventsPerSec:
			return -1
		case a.EventsPerSec > b.EventsPerSec:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
func round1(x float64) float64 { return math.Round(x*10) / 10 }
