package bench

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/idsync/idsync/pipeline"
)

// LatencyDetail is the evidence behind a loop's paced-phase latency: where
// idsync's batches spent their time, and the Go collector's pauses.
type LatencyDetail struct {
	// BatchPhases is, for idsync, the p50 and p99 in ms of each phase of
	// idsync_batch_phase_seconds (queued, process, acks, commit), read
	// from the histogram's buckets (linear within a bucket, as PromQL's
	// histogram_quantile).
	BatchPhases map[string]Quantiles `json:"batch_phases,omitempty"`
	// Batches is how many batches idsync observed.
	Batches int `json:"batches,omitempty"`
	// GCCycles and GCPauseMaxMs are this process's garbage collections
	// during the phase and the longest stop-the-world pause among them.
	GCCycles     int     `json:"gc_cycles"`
	GCPauseMaxMs float64 `json:"gc_pause_max_ms"`
	// InputAck is the time from producing a paced input event to the
	// broker's acknowledgement of it (the bench's producer): the broker's
	// write path, part of every loop's latency. A tail here that matches
	// a loop's is the broker's. Like OutputAck and AfterInputAck, it
	// counts the events after the warm-up (WarmupEvents).
	InputAck Quantiles `json:"input_ack"`
	// OutputAck is the time from handing an output record to the
	// loop's producer to the broker's acknowledgement of it: the broker's
	// write path on the way out (linger included).
	OutputAck Quantiles `json:"output_ack"`
	// AfterInputAck is the end-to-end latency counted from the input's
	// acknowledgement instead of its Produce call: what the loop and its
	// output writes add to the input's write path.
	AfterInputAck Quantiles `json:"after_input_ack"`
	// LatencyMaxMs is the loop's slowest event after the warm-up.
	LatencyMaxMs float64 `json:"latency_max_ms"`
	// WarmupEvents are the phase's first events, its first second's (at
	// most half of them), left out of the p50 and p99: the loop starts
	// consuming after the first are written, with cold caches. Warmup is
	// their end-to-end latency (Config.LatencyEvents).
	WarmupEvents int       `json:"warmup_events"`
	Warmup       Quantiles `json:"warmup"`
}

// Quantiles are a distribution's p50 and p99 in milliseconds.
type Quantiles struct {
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms,omitempty"`
}

// gcMark is the collector's state at a phase's start.
type gcMark struct{ numGC uint32 }

func markGC() gcMark {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return gcMark{ms.NumGC}
}

// since returns the collections since m and their longest pause (the
// runtime keeps the last 256 pauses).
func (m gcMark) since() (int, float64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n := int(ms.NumGC - m.numGC)
	var longest uint64
	for i := range min(n, len(ms.PauseNs)) {
		longest = max(longest, ms.PauseNs[(int(ms.NumGC)-1-i+len(ms.PauseNs))%len(ms.PauseNs)])
	}
	return n, round3(float64(longest) / 1e6)
}

// batchPhases reads idsync_batch_phase_seconds from reg.
func batchPhases(reg prometheus.Gatherer) (map[string]Quantiles, int) {
	mfs, err := reg.Gather()
	if err != nil {
		return nil, 0
	}
	out := map[string]Quantiles{}
	batches := 0
	for _, mf := range mfs {
		if mf.GetName() != "idsync_batch_phase_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			phase := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "phase" {
					phase = l.GetValue()
				}
			}
			h := m.GetHistogram()
			if h.GetSampleCount() == 0 {
				continue
			}
			if phase == pipeline.PhaseProcess {
				batches = int(h.GetSampleCount())
			}
			out[phase] = Quantiles{P50Ms: round3(bucketQuantile(0.5, h) * 1000), P99Ms: round3(bucketQuantile(0.99, h) * 1000)}
		}
	}
	return out, batches
}

// bucketQuantile estimates the q quantile of h as PromQL's
// histogram_quantile does: linear within the bucket it falls in; the
// highest finite bound when it falls in the +Inf bucket.
func bucketQuantile(q float64, h *dto.Histogram) float64 {
	bs := slices.Clone(h.GetBucket())
	sort.Slice(bs, func(i, j int) bool { return bs[i].GetUpperBound() < bs[j].GetUpperBound() })
	total := float64(h.GetSampleCount())
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range bs {
		upper, cum := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if cum >= rank {
			if math.IsInf(upper, 1) {
				return lower
			}
			if cum == below {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(cum-below)
		}
		lower, below = upper, cum
	}
	return lower
}

// line is d in one line of text.
func (d *LatencyDetail) line() string {
	var b strings.Builder
	for _, ph := range pipeline.BatchPhases {
		if q, ok := d.BatchPhases[ph]; ok {
			fmt.Fprintf(&b, "%s p50/p99 %.1f/%.1f ms, ", ph, q.P50Ms, q.P99Ms)
		}
	}
	if d.Batches > 0 {
		fmt.Fprintf(&b, "%d batches, ", d.Batches)
	}
	fmt.Fprintf(&b, "%d GCs (longest pause %.2f ms), input acks p50/p99/max %.1f/%.1f/%.1f ms, output acks p50/p99/max %.1f/%.1f/%.1f ms, from input ack p50/p99 %.1f/%.1f ms, slowest event %.1f ms; the %d warm-up events p50/p99/max %.1f/%.1f/%.1f ms",
		d.GCCycles, d.GCPauseMaxMs, d.InputAck.P50Ms, d.InputAck.P99Ms, d.InputAck.MaxMs,
		d.OutputAck.P50Ms, d.OutputAck.P99Ms, d.OutputAck.MaxMs, d.AfterInputAck.P50Ms, d.AfterInputAck.P99Ms, d.LatencyMaxMs,
		d.WarmupEvents, d.Warmup.P50Ms, d.Warmup.P99Ms, d.Warmup.MaxMs)
	return b.String()
}
