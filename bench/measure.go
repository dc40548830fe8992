package bench

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// cpuTime returns the process's user + system CPU time (getrusage).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU returns the busy and total CPU time of the whole machine, all
// cores, in clock ticks since boot (the first line of /proc/stat; zeros when
// it cannot be read). A phase's busy share tells whether the machine's cores
// were the limit (near 100 %) or the loop waited on the network and the
// broker (well below).
func machineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	fields := bytes.Fields(line)
	if len(fields) < 5 || string(fields[0]) != "cpu" {
		return 0, 0
	}
	for i, f := range fields[1:] {
		if i >= 8 { // guest time is already counted in user time
			break
		}
		n, _ := strconv.ParseInt(string(f), 10, 64)
		total += n
		if i != 3 && i != 4 { // everything but idle and iowait (steal counts: the cores were not ours)
			busy += n
		}
	}
	return busy, total
}

// busyPercent is the share of the machine's CPU time that was busy between
// two machineCPU readings.
func busyPercent(busy0, total0, busy1, total1 int64) float64 {
	if total1 <= total0 {
		return 0
	}
	return float64(busy1-busy0) / float64(total1-total0) * 100
}

// statusKB returns a "Vm…:" field of /proc/self/status in KiB (0 when it
// cannot be read: not Linux).
func statusKB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		if rest, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			rest = bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte("kB")))
			n, _ := strconv.ParseInt(string(rest), 10, 64)
			return n
		}
	}
	return 0
}

// rssSampler samples VmRSS (and the Go heap in use) every interval while
// a phase runs, keeping the peaks: VmHWM is process-wide and would carry
// one phase's peak into the next.
type rssSampler struct {
	stop     chan struct{}
	done     chan struct{}
	peakKB   atomic.Int64
	peakHeap atomic.Uint64
	startKB  int64
}

// quiesce returns memory the previous phase left to the OS, so that every
// phase starts from the same floor.
func quiesce() {
	runtime.GC()
	debug.FreeOSMemory()
}

func startSampler(interval time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{}), startKB: statusKB("VmRSS")}
	s.peakKB.Store(s.startKB)
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		var ms runtime.MemStats
		n := 0
		for {
			if kb := statusKB("VmRSS"); kb > s.peakKB.Load() {
				s.peakKB.Store(kb)
			}
			if n%10 == 0 { // ReadMemStats stops the world: sample it less often
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > s.peakHeap.Load() {
					s.peakHeap.Store(ms.HeapInuse)
				}
			}
			n++
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// finish stops the sampler and returns the peak RSS in MiB.
func (s *rssSampler) finish() float64 {
	close(s.stop)
	<-s.done
	return float64(s.peakKB.Load()) / 1024
}

// latencies collects end-to-end latencies.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// quantile returns the q-quantile in milliseconds (0 when empty).
func (l *latencies) quantile(q float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	slices.Sort(l.d)
	i := min(len(l.d)-1, int(q*float64(len(l.d))))
	return float64(l.d[i].Microseconds()) / 1000
}

// quantiles returns the p50, p99 and maximum in milliseconds.
func (l *latencies) quantiles() Quantiles {
	return Quantiles{P50Ms: l.quantile(0.5), P99Ms: l.quantile(0.99), MaxMs: l.quantile(1)}
}

// sleepCtx sleeps d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
