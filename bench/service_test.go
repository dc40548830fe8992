package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestProcCPU checks the /proc reading against getrusage on this process.
func TestProcCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	_ = x
	got, want := procCPU(os.Getpid()), cpuTime()
	// /proc counts in clock ticks (10 ms); a tick or two apart is the same.
	if got <= 0 || got > want+50*time.Millisecond || got < want-50*time.Millisecond {
		t.Fatalf("procCPU %v, getrusage %v", got, want)
	}
	if kb := procStatusKB(os.Getpid(), "VmHWM"); kb <= 0 {
		t.Fatalf("VmHWM %d", kb)
	}
}

// TestServicePhaseEmbedded builds the binary and runs the service phase
// on the embedded broker and Redis: every event read, its outputs and its
// membership record written, the CPU read.
func TestServicePhaseEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs it")
	}
	bin := filepath.Join(t.TempDir(), "idsync")
	build := exec.Command("go", "build", "-o", bin, "../cmd/idsync")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Events: 300, Service: bin, ServiceOnly: true, ServicePartitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Service
	if s == nil || s.Events != 300 || s.Partitions != 4 || !s.Membership || s.MembershipRecords != 300 ||
		s.OutputRecords < 300 || s.CPUSecPerMEvents <= 0 || s.DrainCPUSecPerMEvents <= 0 || s.PeakRSSMB <= 0 {
		t.Fatalf("service phase %+v", s)
	}
	if rep.OutputRecords != s.OutputRecords {
		t.Fatalf("report's output records %d, the service's %d", rep.OutputRecords, s.OutputRecords)
	}
}
