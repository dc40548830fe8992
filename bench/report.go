package bench

import (
	"fmt"
	"io"
)

// Report is the outcome of a benchmark run; its JSON form is what
// `idsync bench -o json` prints.
type Report struct {
	Mode   string `json:"mode"`
	Broker string `json:"broker"`
	Events int    `json:"events"`
	// OutputRecords is the number of records each loop produces.
	OutputRecords int   `json:"output_records"`
	InputBytes    int64 `json:"input_bytes,omitempty"`
	Rounds        int   `json:"rounds"`
	WarmupRounds  int   `json:"warmup_rounds"`
	// Idsync and Baseline are the rounds' medians (by events/s); their
	// latencies come from the paced phase, at LatencyRate events/s. In
	// at_least_once the baseline is the raw loop (the next poll overlaps
	// the previous batches' acknowledgements, offsets committed in order
	// as batches complete); in exactly_once, where transactions cannot
	// overlap, it is the cycle loop.
	Idsync   Phase `json:"idsync"`
	Baseline Phase `json:"baseline"`
	// Cycle is the cycle loop in at_least_once: idsync's own batch cycle
	// (poll, produce, wait for every acknowledgement, commit) without the
	// processing, the second reference.
	Cycle *Phase `json:"cycle,omitempty"`
	// Ratio is the median of the rounds' idsync/baseline events/s;
	// RatioCycle the same against the cycle loop.
	Ratio       float64   `json:"ratio"`
	RatioCycle  float64   `json:"ratio_cycle,omitempty"`
	RoundRatios []float64 `json:"round_ratios"`
	// CPURatio is the median of the rounds' idsync/baseline CPU seconds
	// per event (this process's CPU: the loop and its client).
	CPURatio    float64 `json:"cpu_ratio"`
	LatencyRate float64 `json:"latency_rate,omitempty"`
	// Service is the service phase (Config.Service): `idsync run` as its
	// own process, CPU from its start to lag 0.
	Service *ServicePhase `json:"service,omitempty"`
	// Stall is set by the stalled-destination test instead of the above.
	Stall *StallResult `json:"stall,omitempty"`
}

// Phase is what one loop did over the input.
type Phase struct {
	Events           int     `json:"events"`
	OutputRecords    int     `json:"output_records"`
	Seconds          float64 `json:"seconds"`
	EventsPerSec     float64 `json:"events_per_sec"`
	RecordsPerSec    float64 `json:"records_per_sec"`
	MBPerSec         float64 `json:"mb_per_sec"`
	P50Ms            float64 `json:"p50_ms"`
	P99Ms            float64 `json:"p99_ms"`
	CPUSecPerMEvents float64 `json:"cpu_sec_per_million_events"`
	// MachineBusyPct is the busy share of all the machine's cores during
	// the phase (this process, the broker and anything else): near 100
	// the cores were the limit, well below it the loop waited.
	MachineBusyPct float64 `json:"machine_busy_pct"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	StartRSSMB     float64 `json:"start_rss_mb"`
	PeakHeapMB     float64 `json:"peak_heap_mb"`
	// JoinAndStartupSec is the time from the loop's start to its first
	// fetched record (group join), left out of the throughput.
	JoinAndStartupSec float64 `json:"join_and_startup_sec"`
	// Latency is the evidence behind P50Ms and P99Ms (paced phase).
	Latency *LatencyDetail `json:"latency,omitempty"`
}

func (p Phase) line() string {
	return fmt.Sprintf("%8.0f events/s %9.0f records/s %7.1f MB/s  cpu %6.1f s/M events  machine %3.0f%% busy  peak rss %6.1f MB (heap %5.1f)  %.2fs (+%.2fs join)",
		p.EventsPerSec, p.RecordsPerSec, p.MBPerSec, p.CPUSecPerMEvents, p.MachineBusyPct, p.PeakRSSMB, p.PeakHeapMB, p.Seconds, p.JoinAndStartupSec)
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) {
	if r.Stall != nil {
		r.Stall.writeText(w)
		return
	}
	fmt.Fprintf(w, "idsync bench: %s on %s, %d events → %d records, %d round(s)\n", r.Mode, r.Broker, r.Events, r.OutputRecords, r.Rounds)
	if r.Rounds == 0 { // the service phase only
		r.writeService(w)
		return
	}
	fmt.Fprintf(w, "%-9s %12s %12s %9s %9s %9s %14s %12s\n", "", "events/s", "records/s", "MB/s", "p50 ms", "p99 ms", "cpu s/M ev", "peak rss MB")
	rows := []struct {
		name string
		p    Phase
	}{{"idsync", r.Idsync}, {"baseline", r.Baseline}}
	if r.Cycle != nil {
		rows = append(rows, struct {
			name string
			p    Phase
		}{"cycle", *r.Cycle})
	}
	for _, x := range rows {
		fmt.Fprintf(w, "%-9s %12.0f %12.0f %9.1f %9.1f %9.1f %14.1f %12.1f\n", x.name, x.p.EventsPerSec, x.p.RecordsPerSec,
			x.p.MBPerSec, x.p.P50Ms, x.p.P99Ms, x.p.CPUSecPerMEvents, x.p.PeakRSSMB)
	}
	fmt.Fprintf(w, "ratio idsync/baseline (events/s): %.3f (rounds %v); cpu per event idsync/baseline: %.3f", r.Ratio, r.RoundRatios, r.CPURatio)
	if r.Cycle != nil {
		fmt.Fprintf(w, "; idsync/cycle: %.3f", r.RatioCycle)
	}
	if r.LatencyRate > 0 {
		fmt.Fprintf(w, "; latencies at %.0f events/s", r.LatencyRate)
	}
	fmt.Fprintln(w)
	r.writeService(w)
}

func (r *Report) writeService(w io.Writer) {
	s := r.Service
	if s == nil {
		return
	}
	fmt.Fprintf(w, "service (idsync run, own process): %d partitions, membership %v, %d records (+%d membership), %.0f events/s\n",
		s.Partitions, s.Membership, s.OutputRecords, s.MembershipRecords, s.EventsPerSec)
	fmt.Fprintf(w, "  cpu s/M events from process start to lag 0: %.1f (start-up %.2f s cpu in %.2f s; drain %.1f s/M events); peak rss %.1f MB\n",
		s.CPUSecPerMEvents, s.StartupCPUSec, s.StartupSec, s.DrainCPUSecPerMEvents, s.PeakRSSMB)
	if s.CPURatioIdsync > 0 {
		fmt.Fprintf(w, "  cpu per event service/idsync loop: %.3f; service/baseline: %.3f\n", s.CPURatioIdsync, s.CPURatioBaseline)
	}
}
