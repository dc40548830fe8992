package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
)

// StallResult is the outcome of the stalled-destination test.
type StallResult struct {
	StalledTopic string `json:"stalled_topic"`
	// How the topic was stalled.
	Method             string  `json:"method"`
	Seconds            float64 `json:"seconds"`
	MaxInflightBytesMB float64 `json:"max_inflight_bytes_mb"`
	StartRSSMB         float64 `json:"start_rss_mb"`
	PeakRSSMB          float64 `json:"peak_rss_mb"`
	// RSSGrowthMB is the peak RSS during the stall less the RSS before it.
	RSSGrowthMB float64 `json:"rss_growth_mb"`
	PeakHeapMB  float64 `json:"peak_heap_mb"`
	// UnderBound says whether RSSGrowthMB stayed below MaxInflightBytesMB.
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
	fmt.Fprintf(w, "  rss %.1f MB → peak %.1f MB (growth %.1f MB; Go heap peak %.1f MB); bound processing.max_inflight_bytes %.0f MB: under=%v\n",
		s.StartRSSMB, s.PeakRSSMB, s.RSSGrowthMB, s.PeakHeapMB, s.MaxInflightBytesMB, s.UnderBound)
	fmt.Fprintf(w, "  during the stall: %.0f input events consumed, %d of %d outputs acknowledged; after it: done in %.1fs\n",
		s.InputConsumed, s.OutputsAcked, s.OutputsExpected, s.RecoveredSec)
}

// stallTest runs idsync over the workload while the destination topic that
// receives the most records cannot be written: it is set to
// min.insync.replicas=2 on a one-replica topic, so the broker answers every
// produce to it with NOT_ENOUGH_REPLICAS, a retriable error the producer
// retries without end, exactly as for a partition whose leader is
// unavailable. The rest of the pipeline keeps going as long as its bounds
// let it. RSS is sampled for Stall; then the topic is released and the
// test waits for idsync to finish.
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
	setMinISR := func(v string) error {
		resp, err := e.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "min.insync.replicas", Value: &v}}, topic)
		if err == nil {
			for _, r := range resp {
				if r.Err != nil {
					err = r.Err
				}
			}
		}
		if err != nil {
			return fmt.Errorf("bench: setting min.insync.replicas=%s on %s: %w", v, topic, err)
		}
		return nil
	}
	if err := setMinISR("2"); err != nil {
		return nil, err
	}
	released := false
	defer func() {
		if !released {
			_ = setMinISR("1")
		}
	}()

	tr := newTracker(e.exp, e.cfg.Events, false)
	tr.input = in
	reg := prometheus.NewRegistry()
	group := "idsync-bench-" + e.run + "-stall"
	run, err := e.idsyncLoop(in, group, tr, reg)
	if err != nil {
		return nil, err
	}
	quiesce()
	sampler := startSampler(10 * time.Millisecond)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- run(runCtx) }()
	if err := sleepCtx(ctx, e.cfg.Stall); err != nil {
		return nil, err
	}
	peak := sampler.finish()
	res := &StallResult{
		StalledTopic:       topic,
		Method:             "min.insync.replicas=2 on a 1-replica topic: every produce answered NOT_ENOUGH_REPLICAS (retriable, retried without end)",
		Seconds:            e.cfg.Stall.Seconds(),
		MaxInflightBytesMB: float64(e.cfg.MaxInflightBytes) / (1 << 20),
		StartRSSMB:         round1(float64(sampler.startKB) / 1024),
		PeakRSSMB:          round1(peak),
		PeakHeapMB:         round1(float64(sampler.peakHeap.Load()) / (1 << 20)),
		InputConsumed:      counterValue(reg, "idsync_input_records_total"),
		OutputsAcked:       tr.acked.Load(),
		OutputsExpected:    tr.want,
	}
	res.RSSGrowthMB = round1(res.PeakRSSMB - res.StartRSSMB)
	res.UnderBound = res.RSSGrowthMB < res.MaxInflightBytesMB
	e.logf("stall over: peak rss %.1f MB (start %.1f); releasing %s", res.PeakRSSMB, res.StartRSSMB, topic)
	if err := setMinISR("1"); err != nil {
		return nil, err
	}
	released = true
	t0 := time.Now()
	if err := tr.wait(ctx, done); err == nil {
		if err := e.awaitCommitted(ctx, group, in.name, done); err == nil {
			res.RecoveredSec = round3(time.Since(t0).Seconds())
		}
	}
	stop()
	<-done
	return &Report{Mode: string(e.cfg.Delivery), Events: e.cfg.Events, Broker: "kafka " + e.brokers[0], Stall: res}, nil
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
