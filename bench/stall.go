package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idsync/idsync/config"
)

// StallResult is the outcome of the stalled-destination test.
type StallResult struct {
	StalledTopic string `json:"stalled_topic"`
	// How the topic was stalled.
	Method             string  `json:"method"`
	Seconds            float64 `json:"seconds"`
	MaxInflightBytesMB float64 `json:"max_inflight_bytes_mb"`
	// FetchMaxBytesMB is kafka.fetch_max_bytes: the client keeps one fetch
	// response buffered per broker leading input partitions (one here).
	FetchMaxBytesMB float64 `json:"fetch_max_bytes_mb"`
	// BoundMB is what the configuration lets the instance buffer: the
	// producer's buffer and one fetch.
	BoundMB    float64 `json:"bound_mb"`
	StartRSSMB float64 `json:"start_rss_mb"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
	// RSSGrowthMB is the peak RSS during the stall less the RSS before it.
	RSSGrowthMB float64 `json:"rss_growth_mb"`
	PeakHeapMB  float64 `json:"peak_heap_mb"`
	// LiveHeapGrowthMB is the live heap (after a GC) at the end of the stall
	// less the live heap before it: what the instance, and the in-process
	// broker's storage of what was written meanwhile, really hold, without
	// the garbage collector's slack that RSS includes.
	LiveHeapGrowthMB float64 `json:"live_heap_growth_mb"`
	// UnderBound says whether RSSGrowthMB stayed below BoundMB.
	UnderBound      bool    `json:"under_bound"`
	InputConsumed   float64 `json:"input_consumed"`
	OutputsAcked    int64   `json:"outputs_acked"`
	OutputsExpected int64   `json:"outputs_expected"`
	// RecoveredSec is how long idsync took, once the stall ended, to
	// produce and commit everything (0: did not finish).
	RecoveredSec float64 `json:"recovered_sec"`
}

func (s *StallResult) writeText(w io.Writer) {
	fmt.Fprintf(w, "stalled destination %s for %.0fs (%s)\n", s.StalledTopic, s.Seconds, s.Method)
	fmt.Fprintf(w, "  rss %.1f MB → peak %.1f MB (growth %.1f MB; Go heap peak %.1f MB; live heap growth %.1f MB)\n",
		s.StartRSSMB, s.PeakRSSMB, s.RSSGrowthMB, s.PeakHeapMB, s.LiveHeapGrowthMB)
	fmt.Fprintf(w, "  bound processing.max_inflight_bytes %.0f MB + kafka.fetch_max_bytes %.0f MB = %.0f MB: under=%v\n",
		s.MaxInflightBytesMB, s.FetchMaxBytesMB, s.BoundMB, s.UnderBound)
	fmt.Fprintf(w, "  during the stall: %.0f input events consumed, %d of %d outputs acknowledged; after it: done in %.1fs\n",
		s.InputConsumed, s.OutputsAcked, s.OutputsExpected, s.RecoveredSec)
}

// stallTest runs idsync over the workload while the destination topic that
// receives the most records cannot be written: on a two-broker kfake, its
// partitions are the only ones led by broker 1, which holds every produce
// request without answering until the stall ends, as a leader that hangs
// would. (A real single broker cannot stall one topic: Kafka 4.4 accepted
// acks=all produces to a one-replica topic set to min.insync.replicas=2.)
// The rest of the pipeline keeps going as long as its bounds let it. RSS is
// sampled for Stall; then the topic is released and the test waits for
// idsync to finish.
func (e *env) stallTest(ctx context.Context) (*Report, error) {
	var err error
	if e.exp, err = e.computeExpected(); err != nil {
		return nil, err
	}
	counts := make([]int, len(e.exp.topics))
	for _, o := range e.exp.outs {
		counts[o.topic]++
	}
	busiest := 0
	for i, c := range counts {
		if c > counts[busiest] {
			busiest = i
		}
	}
	topic := e.exp.topics[busiest]
	in, err := e.produceInput(ctx, "stall", e.cfg.Events)
	if err != nil {
		return nil, err
	}
	e.logf("input: %d events; stalling %s (%d of %d records)", e.cfg.Events, topic, counts[busiest], len(e.exp.outs))
	// The stalled topic's partitions are led by broker 1, everything else
	// by broker 0; broker 1 then holds every produce request until the
	// stall ends (kfake's control hooks), as a leader that stopped
	// answering would.
	kc := e.kfake
	for _, t := range append(slices.Clone(e.exp.topics), e.dlq, in.name) {
		node := int32(0)
		if t == topic {
			node = 1
		}
		for p := range e.cfg.Partitions {
			if err := kc.MoveTopicPartition(t, p, node); err != nil {
				return nil, fmt.Errorf("bench: moving %s/%d to broker %d: %w", t, p, node, err)
			}
		}
	}
	release := make(chan struct{})
	var releaseOnce sync.Once
	unstall := func() { releaseOnce.Do(func() { close(release) }) }
	defer unstall()
	kc.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		if kc.CurrentNode() == 1 {
			kc.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})

	tr := newTracker(e.exp, e.cfg.Events, false)
	tr.input = in
	reg := prometheus.NewRegistry()
	group := "idsync-bench-" + e.run + "-stall"
	run, err := e.idsyncLoop(in, group, tr, reg)
	if err != nil {
		return nil, err
	}
	quiesce()
	live0 := liveHeap()
	sampler := startSampler(10 * time.Millisecond)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- run(runCtx) }()
	if err := sleepCtx(ctx, e.cfg.Stall); err != nil {
		return nil, err
	}
	peak := sampler.finish()
	live := liveHeap()
	inflight := float64(e.cfg.MaxInflightBytes) / (1 << 20)
	fetchMax := float64(config.Default().Kafka.FetchMaxBytes) / (1 << 20)
	res := &StallResult{
		StalledTopic:       topic,
		Method:             "kfake, 2 brokers: the topic's leader (broker 1) holds every produce request until the stall ends",
		Seconds:            e.cfg.Stall.Seconds(),
		MaxInflightBytesMB: inflight,
		FetchMaxBytesMB:    fetchMax,
		BoundMB:            inflight + fetchMax,
		LiveHeapGrowthMB:   round1(float64(int64(live)-int64(live0)) / (1 << 20)),
		StartRSSMB:         round1(float64(sampler.startKB) / 1024),
		PeakRSSMB:          round1(peak),
		PeakHeapMB:         round1(float64(sampler.peakHeap.Load()) / (1 << 20)),
		InputConsumed:      counterValue(reg, "idsync_input_records_total"),
		OutputsAcked:       tr.acked.Load(),
		OutputsExpected:    tr.want,
	}
	res.RSSGrowthMB = round1(res.PeakRSSMB - res.StartRSSMB)
	res.UnderBound = res.RSSGrowthMB < res.BoundMB
	e.logf("stall over: peak rss %.1f MB (start %.1f); releasing %s", res.PeakRSSMB, res.StartRSSMB, topic)
	unstall()
	t0 := time.Now()
	if err := tr.wait(ctx, done); err == nil {
		if err := e.awaitCommitted(ctx, group, in.name, done); err == nil {
			res.RecoveredSec = round3(time.Since(t0).Seconds())
		}
	}
	stop()
	<-done
	return &Report{Mode: string(e.cfg.Delivery), Events: e.cfg.Events, Broker: "kfake", Stall: res}, nil
}

// liveHeap returns the Go heap in use right after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// counterValue returns the sum of a counter family of reg.
func counterValue(reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
