package cli

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestBenchUsage(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"bench", "-o", "yaml"}, `--output "yaml" is not text or json`},
		{[]string{"bench", "--delivery", "twice"}, `--delivery "twice" is not at_least_once or exactly_once`},
		{[]string{"bench", "-n", "0"}, "-n 0 must be at least 1"},
		{[]string{"bench", "--stall", "1s", "--brokers", "127.0.0.1:1"}, "--stall runs on the embedded broker only"},
		{[]string{"bench", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		code, _, errOut := runCLI(t, nil, tt.args...)
		if code != ExitUsage || !strings.Contains(errOut, tt.wantErr) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, errOut, ExitUsage, tt.wantErr)
		}
	}
}

// TestBenchEmbeddedJSON runs a tiny benchmark on the embedded broker and
// checks the JSON report's contract fields.
func TestBenchEmbeddedJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs kfake and two loops")
	}
	code, out, errOut := runCLI(t, nil, "bench", "-n", "300", "--latency-events", "100", "-q", "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Mode   string `json:"mode"`
		Events int    `json:"events"`
		Idsync struct {
			EventsPerSec float64 `json:"events_per_sec"`
			P99Ms        float64 `json:"p99_ms"`
			PeakRSSMB    float64 `json:"peak_rss_mb"`
			Latency      struct {
				InputAck      quantiles `json:"input_ack"`
				OutputAck     quantiles `json:"output_ack"`
				AfterInputAck quantiles `json:"after_input_ack"`
				LatencyMaxMs  float64   `json:"latency_max_ms"`
				WarmupEvents  int       `json:"warmup_events"`
				Warmup        quantiles `json:"warmup"`
			} `json:"latency"`
		} `json:"idsync"`
		Baseline struct {
			EventsPerSec float64 `json:"events_per_sec"`
		} `json:"baseline"`
		Ratio       *float64 `json:"ratio"`
		LatencyRate float64  `json:"latency_rate"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Mode != "at_least_once" || rep.Events != 300 || rep.Idsync.EventsPerSec <= 0 || rep.Baseline.EventsPerSec <= 0 ||
		rep.Idsync.PeakRSSMB <= 0 || rep.Idsync.P99Ms <= 0 || rep.Ratio == nil || *rep.Ratio <= 0 {
		t.Fatalf("report %s", out)
	}
	// The latency's parts: every event's latency counted from its input's
	// acknowledgement is at most its latency from Produce, so each
	// quantile is too; outputs take some time to be acknowledged.
	l := rep.Idsync.Latency
	if l.InputAck.P99Ms <= 0 || l.OutputAck.P50Ms <= 0 || l.OutputAck.P99Ms < l.OutputAck.P50Ms ||
		l.AfterInputAck.P99Ms <= 0 || l.AfterInputAck.P99Ms > rep.Idsync.P99Ms || l.AfterInputAck.MaxMs > l.LatencyMaxMs {
		t.Fatalf("latency parts %+v, p99 %v ms: %s", l, rep.Idsync.P99Ms, out)
	}
	// The first second's events warm the loop up, at most half of the
	// 100.
	if want := min(int(math.Ceil(rep.LatencyRate)), 50); l.WarmupEvents != want || l.Warmup.P99Ms <= 0 {
		t.Fatalf("warm-up %d events (want %d), %+v: %s", l.WarmupEvents, want, l.Warmup, out)
	}
}

// quantiles is a distribution of the bench's JSON report.
type quantiles struct {
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}
