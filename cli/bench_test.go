package cli

import (
	"encoding/json"
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
		} `json:"idsync"`
		Baseline struct {
			EventsPerSec float64 `json:"events_per_sec"`
		} `json:"baseline"`
		Ratio *float64 `json:"ratio"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Mode != "at_least_once" || rep.Events != 300 || rep.Idsync.EventsPerSec <= 0 || rep.Baseline.EventsPerSec <= 0 ||
		rep.Idsync.PeakRSSMB <= 0 || rep.Idsync.P99Ms <= 0 || rep.Ratio == nil || *rep.Ratio <= 0 {
		t.Fatalf("report %s", out)
	}
}
