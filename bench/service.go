package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// ServicePhase is what `idsync run`, started as its own process on the
// same broker, Redis and workload, cost to drain an input produced before
// it started: the figure a user measures from /proc, which the in-process
// loops do not give (docs/performance.md, "The benchmark and the
// service").
type ServicePhase struct {
	// Partitions of the service's input topic.
	Partitions int32 `json:"partitions"`
	// Membership is resync.enabled as the service ran (on by default: one
	// more record per event to the membership topic).
	Membership bool `json:"membership"`
	// Env are the extra environment variables the service ran with.
	Env []string `json:"env,omitempty"`
	// Events and OutputRecords are what the service read and wrote
	// (OutputRecords counted on the broker: destination and dead-letter
	// topics' end offsets, membership records not included).
	Events        int `json:"events"`
	OutputRecords int `json:"output_records"`
	// MembershipRecords written to the membership topic.
	MembershipRecords int `json:"membership_records"`
	// Seconds from the process's start until the group's committed
	// offsets reach the input's end (lag 0); StartupSec of them until the
	// group was stable with every input partition assigned.
	Seconds    float64 `json:"seconds"`
	StartupSec float64 `json:"startup_sec"`
	// EventsPerSec over the drain (Seconds − StartupSec).
	EventsPerSec float64 `json:"events_per_sec"`
	// CPU of the process (utime + stime, /proc/<pid>/stat), all threads:
	// CPUSecPerMEvents from the process's start to lag 0, as a user reads
	// it; StartupCPUSec until the group was stable; DrainCPUSecPerMEvents
	// the rest, per million events, the figure comparable with the
	// in-process loops' cpu_sec_per_million_events.
	CPUSecPerMEvents      float64 `json:"cpu_sec_per_million_events"`
	StartupCPUSec         float64 `json:"startup_cpu_sec"`
	DrainCPUSecPerMEvents float64 `json:"drain_cpu_sec_per_million_events"`
	MachineBusyPct        float64 `json:"machine_busy_pct"`
	// CPURatioIdsync is CPUSecPerMEvents over the in-process idsync loop's
	// cpu_sec_per_million_events of the same run, CPURatioBaseline over
	// the baseline's (absent with ServiceOnly): CPU per event moves with
	// what else the machine runs, ratios within one run much less.
	CPURatioIdsync   float64 `json:"cpu_ratio_idsync,omitempty"`
	CPURatioBaseline float64 `json:"cpu_ratio_baseline,omitempty"`
	// PeakRSSMB is the process's VmHWM at lag 0.
	PeakRSSMB float64 `json:"peak_rss_mb"`
}

func (s *ServicePhase) line() string {
	return fmt.Sprintf("%d partitions, membership %v: %.0f events/s, cpu %.1f s/M events from process start (start-up %.2f s cpu in %.2f s, drain %.1f s/M events), machine %.0f%% busy, peak rss %.1f MB, %.2fs",
		s.Partitions, s.Membership, s.EventsPerSec, s.CPUSecPerMEvents, s.StartupCPUSec, s.StartupSec, s.DrainCPUSecPerMEvents, s.MachineBusyPct, s.PeakRSSMB, s.Seconds)
}

// servicePhase runs the binary cfg.Service as `idsync run` on its own input
// topic of cfg.ServicePartitions partitions holding the workload's events,
// produced before it starts, with the service's default settings
// (membership on unless the environment turns it off, metrics, the admin
// API with a token) pointed at the run's topics and Redis prefix.
func (e *env) servicePhase(ctx context.Context) (*ServicePhase, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.PhaseTimeout)
	defer cancel()
	parts := e.cfg.ServicePartitions
	in := &input{name: e.inputTopic("service")}
	if err := e.createTopicParts(ctx, parts, in.name); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := e.produceTo(ctx, in, e.cfg.Events, 0, func(i int) []byte { return e.w.Event(i, e.genNow).Value }); err != nil {
		return nil, err
	}
	e.logf("service input: %d events produced to %s (%d partitions) in %s", e.cfg.Events, in.name, parts, time.Since(t0).Round(time.Millisecond))

	outTopics := []string{e.dlq}
	for _, d := range destinations {
		outTopics = append(outTopics, e.tmpl.Topic(d.id))
	}
	before, err := e.sumEnds(ctx, outTopics...)
	if err != nil {
		return nil, err
	}

	group := "idsync-bench-" + e.run + "-service"
	membershipTopic := group + ".membership"
	dir, err := os.MkdirTemp("", "idsync-bench-service-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// admin.tokens is a file-only setting: the admin API runs, as it does
	// in a deployment.
	conf := filepath.Join(dir, "idsync.yaml")
	if err := os.WriteFile(conf, []byte("admin:\n  tokens:\n    - name: bench\n      token: idsync-bench-token-0123456789\n      scope: write\n"), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(e.cfg.Service, "run")
	cmd.Env = append(os.Environ(),
		"IDSYNC_CONFIG="+conf,
		"IDSYNC_KAFKA_BROKERS="+strings.Join(e.brokers, ","),
		"IDSYNC_REDIS_ADDRS="+e.redisAddr,
		"IDSYNC_REDIS_KEY_PREFIX="+e.prefix,
		"IDSYNC_KAFKA_INPUT_TOPIC="+in.name,
		"IDSYNC_KAFKA_GROUP_ID="+group,
		"IDSYNC_KAFKA_DLQ_TOPIC="+e.dlq,
		"IDSYNC_KAFKA_OUTPUT_TOPIC_TEMPLATE="+e.tmpl.String(),
		"IDSYNC_KAFKA_DELIVERY="+string(e.cfg.Delivery),
		"IDSYNC_KAFKA_TRANSACTIONAL_ID_SUFFIX="+e.run,
		"IDSYNC_OPS_LISTEN=127.0.0.1:0",
		"IDSYNC_ADMIN_LISTEN=127.0.0.1:0",
		"IDSYNC_LOG_FORMAT=json",
	)
	cmd.Env = append(cmd.Env, e.cfg.ServiceEnv...)
	var stdout bytes.Buffer
	opsAddr := make(chan string, 1)
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	go func() {
		sc := bufio.NewScanner(pr)
		re := regexp.MustCompile(`metrics\s+http://([^/]+)/metrics`)
		for sc.Scan() {
			stdout.Write(sc.Bytes())
			stdout.WriteByte('\n')
			if m := re.FindSubmatch(sc.Bytes()); m != nil {
				select {
				case opsAddr <- string(m[1]):
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	logDir := dir
	if e.cfg.ServiceProfileDir != "" { // kept beside the profiles
		if err := os.MkdirAll(e.cfg.ServiceProfileDir, 0o755); err != nil {
			return nil, err
		}
		logDir = e.cfg.ServiceProfileDir
	}
	stderr, err := os.Create(filepath.Join(logDir, "service.log"))
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	cmd.Stderr = stderr

	busy0, total0 := machineCPU()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting %s run: %w", e.cfg.Service, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			return <-exited
		}
	}
	defer func() { _ = stop() }()
	fail := func(err error) (*ServicePhase, error) {
		_ = stop()
		tail, _ := os.ReadFile(stderr.Name())
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return nil, fmt.Errorf("bench: service phase: %w; its log ends with:\n%s", err, tail)
	}

	// Profiles of the service over the drain, fetched in consecutive
	// slices from its /debug/pprof (ops.pprof must be on).
	var profWG sync.WaitGroup
	profCtx, stopProf := context.WithCancel(ctx)
	defer func() { stopProf(); profWG.Wait() }()
	if e.cfg.ServiceProfileDir != "" {
		profWG.Go(func() {
			var addr string
			select {
			case addr = <-opsAddr:
			case <-profCtx.Done():
				return
			}
			e.fetchProfiles(profCtx, addr, e.cfg.ServiceProfileDir)
		})
	}

	// Start-up: until the group is stable with every input partition.
	if err := awaitService(ctx, exited, "joining", func() bool {
		groups, err := e.adm.DescribeGroups(ctx, group)
		g, ok := groups[group]
		return err == nil && ok && g.State == "Stable" && countAssigned(g) == int(parts)
	}); err != nil {
		return fail(err)
	}
	startupCPU, startupAt := procCPU(pid), time.Now()
	// Drain: until the committed offsets reach the input's end.
	if err := awaitService(ctx, exited, "lag 0", func() bool {
		done, err := e.committedAll(ctx, group, in.name)
		return err == nil && done
	}); err != nil {
		return fail(err)
	}
	cpu := procCPU(pid)
	end := time.Now()
	busy1, total1 := machineCPU()
	peak := procStatusKB(pid, "VmHWM")
	stopProf()
	profWG.Wait()
	if err := stop(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 0 {
			return fail(fmt.Errorf("the service's exit: %w", err))
		}
	}
	after, err := e.sumEnds(ctx, outTopics...)
	if err != nil {
		return nil, err
	}
	membership, _ := e.sumEnds(ctx, membershipTopic)
	_, _ = e.adm.DeleteTopics(context.WithoutCancel(ctx), membershipTopic, in.name)

	n := float64(e.cfg.Events)
	secs := end.Sub(start).Seconds()
	drain := end.Sub(startupAt).Seconds()
	sp := &ServicePhase{
		Partitions:            parts,
		Membership:            membership > 0,
		Env:                   e.cfg.ServiceEnv,
		Events:                e.cfg.Events,
		OutputRecords:         int(after - before),
		MembershipRecords:     int(membership),
		Seconds:               round3(secs),
		StartupSec:            round3(startupAt.Sub(start).Seconds()),
		EventsPerSec:          math.Round(n / drain),
		CPUSecPerMEvents:      round3(cpu.Seconds() / n * 1e6),
		StartupCPUSec:         round3(startupCPU.Seconds()),
		DrainCPUSecPerMEvents: round3((cpu - startupCPU).Seconds() / n * 1e6),
		MachineBusyPct:        round1(busyPercent(busy0, total0, busy1, total1)),
		PeakRSSMB:             round1(float64(peak) / 1024),
	}
	return sp, nil
}

// fetchProfiles saves consecutive 2-second CPU profiles of the service
// into dir until ctx ends (go tool pprof merges them: pprof -top dir/*).
func (e *env) fetchProfiles(ctx context.Context, addr, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.logf("service profile: %v", err)
		return
	}
	for i := 0; ctx.Err() == nil; i++ {
		req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, "http://"+addr+"/debug/pprof/profile?seconds=2", nil)
		if err != nil {
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			e.logf("service profile: %v", err)
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			e.logf("service profile: %s %v (ops.pprof on? IDSYNC_OPS_PPROF=true)", resp.Status, err)
			return
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("cpu-%03d.pprof", i)), b, 0o644); err != nil {
			e.logf("service profile: %v", err)
			return
		}
	}
}

// createTopicParts creates a topic of parts partitions and waits until
// every partition has a leader (a producer started at once could be told
// the topic is unknown).
func (e *env) createTopicParts(ctx context.Context, parts int32, name string) error {
	resp, err := e.adm.CreateTopics(ctx, parts, -1, nil, name)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("bench: creating topic %s: %w", name, err)
	}
	for {
		md, err := e.adm.Metadata(ctx, name)
		if err == nil {
			if t, ok := md.Topics[name]; ok && t.Err == nil && len(t.Partitions) == int(parts) {
				ready := true
				for _, p := range t.Partitions {
					if p.Err != nil || p.Leader < 0 {
						ready = false
					}
				}
				if ready {
					return nil
				}
			}
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func countAssigned(g kadm.DescribedGroup) int {
	n := 0
	for _, ps := range g.AssignedPartitions() {
		n += len(ps)
	}
	return n
}

// committedAll reports whether the group's committed offsets reach the end
// of every partition of topic.
func (e *env) committedAll(ctx context.Context, group, topic string) (bool, error) {
	ends, err := e.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return false, err
	}
	offs, err := e.adm.FetchOffsets(ctx, group)
	if err != nil {
		return false, err
	}
	all := true
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := offs.Lookup(topic, o.Partition)
		if o.Offset > 0 && (!ok || c.At < o.Offset) {
			all = false
		}
	})
	return all, nil
}

// sumEnds returns the sum of the end offsets of topics' partitions.
func (e *env) sumEnds(ctx context.Context, topics ...string) (int64, error) {
	ends, err := e.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return 0, fmt.Errorf("bench: end offsets: %w", err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			n += o.Offset
		}
	})
	return n, nil
}

// clockTicks is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on
// every Linux that matters).
const clockTicks = 100

// procCPU returns the user + system CPU time of process pid, all its
// threads (/proc/<pid>/stat fields 14 and 15); 0 when it cannot be read.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: fields count from
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(string(f[11]), 10, 64)
	st, _ := strconv.ParseInt(string(f[12]), 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// procStatusKB is statusKB of another process.
func procStatusKB(pid int, field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			rest = bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte("kB")))
			n, _ := strconv.ParseInt(string(rest), 10, 64)
			return n
		}
	}
	return 0
}

// awaitService polls cond every 10 ms until it holds, the service's
// process exits (its exit stays in exited) or ctx ends.
func awaitService(ctx context.Context, exited chan error, what string, cond func() bool) error {
	for !cond() {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("the service stopped before %s: %v", what, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
