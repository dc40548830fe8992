package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/demo"
)

func logTally(t *testing.T, what string, tl tally) {
	t.Logf("%s: %d expected records, %d missing, %d duplicated, %d unexpected", what, tl.expected, tl.missing, tl.duplicates, tl.unexpected)
}

// TestGoldenBinary: the real binary on the real stack turns a fixed input,
// bad records included, into exactly the records the domain function says.
func TestGoldenBinary(t *testing.T) {
	s := newStack(t, 3)
	in := s.start("a")
	in.seedDemo()
	inputs := s.produce(events(1, 2000))
	s.waitCommitted(90 * time.Second)
	exp := s.expect(inputs, time.Now())
	tl := compare(exp, s.read(exp, false, 60*time.Second))
	logTally(t, "golden", tl)
	if tl.missing+tl.duplicates+tl.unexpected != 0 {
		t.Fatal("outputs differ from the domain's")
	}
	// Every metric of DESIGN.md §10 is exported, with the franz-go client
	// and Go runtime metrics beside them.
	for _, name := range []string{
		"idsync_input_records_total", "idsync_output_records_total", "idsync_dlq_records_total",
		"idsync_skipped_total", "idsync_unmatched_total", "idsync_invalid_identifiers_total",
		"idsync_process_duration_seconds_count", "idsync_end_to_end_latency_seconds_count",
		"idsync_consumer_lag_records", "idsync_config_cache_requests_total", "idsync_config_cache_entries",
		"idsync_redis_up", "idsync_config_staleness_seconds", "idsync_build_info",
		"idsync_kafka_produce_uncompressed_bytes_total", "go_goroutines", "process_resident_memory_bytes",
	} {
		if v := in.metric(name); v < 0 {
			t.Errorf("metric %s missing", name)
		}
		if !in.hasMetric(name) {
			t.Errorf("metric %s not exported", name)
		}
	}
	if n := in.metric("idsync_input_records_total"); n != float64(len(inputs)) {
		t.Errorf("idsync_input_records_total = %v, want %d", n, len(inputs))
	}
	if code, took := in.terminate(30 * time.Second); code != 0 {
		t.Fatalf("exit %d after %s", code, took)
	}
}

// TestRebalanceNoDuplicates: a second instance joins mid-stream and leaves
// again (SIGTERM) while the first keeps going: clean rebalances move
// partitions without losing or repeating a record in at_least_once.
func TestRebalanceNoDuplicates(t *testing.T) {
	s := newStack(t, 6)
	a := s.start("a", "IDSYNC_KAFKA_MAX_POLL_RECORDS=100")
	a.seedDemo()
	inputs := s.produce(events(7, 12000))
	s.waitFraction(0.1, 60*time.Second)
	b := s.start("b", "IDSYNC_KAFKA_MAX_POLL_RECORDS=100")
	s.waitFraction(0.5, 60*time.Second)
	if code, _ := b.terminate(25 * time.Second); code != 0 {
		t.Fatalf("b exit %d", code)
	}
	s.waitCommitted(90 * time.Second)
	exp := s.expect(inputs, time.Now())
	tl := compare(exp, s.read(exp, false, 60*time.Second))
	logTally(t, "rebalances", tl)
	if tl.missing+tl.duplicates+tl.unexpected != 0 {
		t.Fatal("a clean rebalance lost or repeated records")
	}
	if a.metric("idsync_rebalances_total") < 2 {
		t.Errorf("instance a saw %v rebalance events", a.metric("idsync_rebalances_total"))
	}
}

// crashRun kills one instance mid-stream with SIGKILL, restarts it, and
// checks every expected record is there.
func crashRun(t *testing.T, delivery string) tally {
	s := newStack(t, 3)
	extra := []string{"IDSYNC_KAFKA_DELIVERY=" + delivery, "IDSYNC_KAFKA_MAX_POLL_RECORDS=200"}
	in := s.start("a", extra...)
	in.seedDemo()
	inputs := s.produce(events(2, 8000))
	// Kill at about a third of the stream.
	s.waitFraction(0.3, 60*time.Second)
	in.kill()
	s.start("a", extra...)
	s.waitCommitted(120 * time.Second)
	exp := s.expect(inputs, time.Now())
	tl := compare(exp, s.read(exp, delivery == "exactly_once", 60*time.Second))
	logTally(t, delivery+" after SIGKILL", tl)
	return tl
}

func TestCrashAtLeastOnce(t *testing.T) {
	tl := crashRun(t, "at_least_once")
	if tl.missing != 0 || tl.unexpected != 0 {
		t.Fatalf("%d missing, %d unexpected", tl.missing, tl.unexpected)
	}
}

func TestCrashExactlyOnce(t *testing.T) {
	tl := crashRun(t, "exactly_once")
	if tl.missing != 0 || tl.duplicates != 0 || tl.unexpected != 0 {
		t.Fatalf("%d missing, %d duplicated, %d unexpected", tl.missing, tl.duplicates, tl.unexpected)
	}
}

// TestSIGTERMMidStream: SIGTERM while events flow exits 0 within the
// shutdown timeout; a restart continues where it stopped: nothing lost and,
// in at_least_once, nothing repeated.
func TestSIGTERMMidStream(t *testing.T) {
	s := newStack(t, 3)
	in := s.start("a", "IDSYNC_KAFKA_MAX_POLL_RECORDS=200")
	in.seedDemo()
	inputs := s.produce(events(3, 6000))
	s.waitFraction(0.2, 60*time.Second)
	code, took := in.terminate(25 * time.Second)
	t.Logf("SIGTERM: exit %d in %s", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if f := s.committedFraction(context.Background()); f >= 1 {
		t.Logf("note: the stream was fully processed before SIGTERM (%.0f%%)", 100*f)
	}
	in2 := s.start("b", "IDSYNC_KAFKA_MAX_POLL_RECORDS=200")
	s.waitCommitted(90 * time.Second)
	exp := s.expect(inputs, time.Now())
	tl := compare(exp, s.read(exp, false, 60*time.Second))
	logTally(t, "SIGTERM and restart", tl)
	if tl.missing+tl.duplicates+tl.unexpected != 0 {
		t.Fatal("records lost or repeated across a clean shutdown")
	}
	if code, _ := in2.terminate(25 * time.Second); code != 0 {
		t.Fatalf("second instance exit %d", code)
	}
}

// TestRedisOutage: Redis stops mid-stream and comes back (with its data):
// nothing is lost and nothing is dead-lettered for it.
func TestRedisOutage(t *testing.T) {
	s := newStack(t, 3)
	r := startRedis(t)
	s.redisAddr = r.addr
	s.rdb = redis.NewClient(&redis.Options{Addr: r.addr})
	t.Cleanup(func() { s.rdb.Close() })
	in := s.start("a")
	in.seedDemo()
	before := s.produce(events(4, 1000))
	s.waitCommitted(60 * time.Second)
	// Snapshot the expectation while Redis is up.
	r.stop()
	deadline := time.Now().Add(20 * time.Second)
	for in.metric("idsync_redis_up") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idsync_redis_up did not drop to 0")
		}
		time.Sleep(50 * time.Millisecond)
	}
	during := s.produce(events(5, 1000))
	s.waitFraction(1, 60*time.Second) // the warm cache keeps the stream flowing
	if st := in.metric("idsync_config_staleness_seconds"); st <= 0 {
		t.Errorf("idsync_config_staleness_seconds = %v while Redis is down", st)
	}
	r.restart()
	deadline = time.Now().Add(30 * time.Second)
	for in.metric("idsync_redis_up") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("idsync_redis_up did not come back to 1")
		}
		time.Sleep(50 * time.Millisecond)
	}
	after := s.produce(events(6, 500))
	s.waitCommitted(60 * time.Second)
	all := append(append(before, during...), after...)
	exp := s.expect(all, time.Now())
	tl := compare(exp, s.read(exp, false, 60*time.Second))
	logTally(t, "Redis outage", tl)
	if tl.missing+tl.duplicates+tl.unexpected != 0 {
		t.Fatal("records lost, repeated or dead-lettered because of the outage")
	}
}

// TestActivationWhileFlowing: an edit is effective after the activation
// delay; events whose reference time is before effective_at use the old
// version, later ones the new, and a running sync keeps the old one.
func TestActivationWhileFlowing(t *testing.T) {
	s := newStack(t, 2)
	in := s.start("a", "IDSYNC_CONNECTIONS_ACTIVATION_DELAY=3s")
	v1cfg := json.RawMessage(`{"destination_type":"iterable","setup":"customized","identifiers":[{"segment":"email","destination":"email","strategy":"first_added"}]}`)
	v2cfg := json.RawMessage(`{"destination_type":"iterable","setup":"customized","identifiers":[{"segment":"email","destination":"email","strategy":"last_added"}]}`)
	v1, _ := in.put("spa", "aud", "iter", v1cfg)
	v2, effective := in.put("spa", "aud", "iter", v2cfg)
	if v1 != 1 || v2 != 2 || time.Until(effective) < time.Second {
		t.Fatalf("versions %d, %d effective at %s", v1, v2, effective)
	}
	mk := func(id string, ts time.Time, syncStarted *time.Time) demo.Event {
		ev := map[string]any{"message_id": id, "timestamp": ts.UTC().Format(time.RFC3339Nano), "space_id": "spa", "audience_id": "aud",
			"action": "entered", "profile": map[string]any{"segment_id": "use_" + id},
			"external_ids": []map[string]any{
				{"type": "email", "id": "old@x.com", "created_at": "2024-01-01T00:00:00Z"},
				{"type": "email", "id": "new@x.com", "created_at": "2025-01-01T00:00:00Z"}}}
		if syncStarted != nil {
			ev["sync"] = map[string]any{"id": "run", "started_at": syncStarted.UTC().Format(time.RFC3339Nano)}
		}
		b, _ := json.Marshal(ev)
		return demo.Event{Key: "spa:use_" + id, Value: b}
	}
	// Before effective_at: processed now, old version.
	early := s.produce([]demo.Event{mk("early", time.Now(), nil), mk("future_ts", effective.Add(time.Hour), nil)})
	s.waitCommitted(30 * time.Second)
	// Wait past effective_at (by the wall clock the processor uses).
	for time.Now().Before(effective.Add(200 * time.Millisecond)) {
		time.Sleep(50 * time.Millisecond)
	}
	before := effective.Add(-time.Second)
	late := s.produce([]demo.Event{
		mk("lagging", before, nil),                                            // reference time before effective_at: v1
		mk("running_sync", time.Now(), &before),                               // sync started before the edit: v1
		mk("after", time.Now(), nil),                                          // v2
		mk("sync_after", time.Now(), ptr(effective.Add(10*time.Millisecond))), // v2
	})
	s.waitCommitted(30 * time.Second)
	exp := s.expect(append(early, late...), time.Now())
	got := s.read(exp, false, 30*time.Second)
	want := map[string]int64{"early": 1, "future_ts": 1, "lagging": 1, "running_sync": 1, "after": 2, "sync_after": 2}
	for id, v := range want {
		mid := id + ":iter:0"
		if got.version[mid] != v {
			t.Errorf("%s: config version %d, want %d", id, got.version[mid], v)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestInvalidSettingsStopStartUp: the binary refuses invalid settings with
// exit code 2 and a message naming the setting.
func TestInvalidSettingsStopStartUp(t *testing.T) {
	tests := []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"IDSYNC_KAFKA_DELIVERY=twice"}, nil, "kafka.delivery"},
		{[]string{"IDSYNC_KAFKA_BROKER=x:1"}, nil, "IDSYNC_KAFKA_BROKER"},
		{nil, []string{"--kafka.group-id="}, "kafka.group_id"},
		{[]string{"IDSYNC_PROCESSING_PHONE_REGION=XX"}, nil, "processing.phone_region"},
		{[]string{"IDSYNC_SHUTDOWN_TIMEOUT=soon"}, nil, "shutdown_timeout"},
		{[]string{"IDSYNC_KAFKA_OUTPUT_TOPIC_TEMPLATE=out"}, nil, "kafka.output_topic_template"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			cmd := exec.Command(binary, append([]string{"run"}, tt.args...)...)
			cmd.Env = append(cleanEnv(), tt.env...)
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want 2\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("output does not name %s:\n%s", tt.want, out)
			}
		})
	}
}

// cleanEnv is the environment without IDSYNC_ settings (the test harness's
// own IDSYNC_TEST_ variables are allowed by the binary).
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IDSYNC_") || strings.HasPrefix(kv, "IDSYNC_TEST_") {
			out = append(out, kv)
		}
	}
	return out
}

// ownRedis is a redis-server of the test's own, which it can stop and
// restart (with its data: it saves on shutdown and loads on start).
type ownRedis struct {
	t    *testing.T
	addr string
	dir  string
	port int
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *ownRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &ownRedis{t: t, dir: t.TempDir(), port: port, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	r.restart()
	t.Cleanup(func() {
		if r.cmd != nil {
			_ = r.cmd.Process.Kill()
			_ = r.cmd.Wait()
		}
	})
	return r
}

func (r *ownRedis) restart() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port),
		"--dir", r.dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no")
	r.cmd.Stdout, r.cmd.Stderr = nil, nil
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server (is it installed? deploy/local/install.sh): %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			r.t.Fatal("redis-server did not answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop saves the data set and stops the server.
func (r *ownRedis) stop() {
	r.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.addr})
	_ = c.Do(context.Background(), "SHUTDOWN", "SAVE").Err()
	c.Close()
	_ = r.cmd.Wait()
	r.cmd = nil
	if _, err := os.Stat(filepath.Join(r.dir, "dump.rdb")); err != nil {
		r.t.Fatalf("redis did not save its data: %v", err)
	}
}
