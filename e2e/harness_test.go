// Package e2e runs the real idsync binary against the real Kafka broker and
// Redis server of deploy/local: crash and restart, Redis outages, graceful
// shutdown, activation while events flow. A verifier reads every destination
// topic and the dead-letter topic and compares what it finds with what the
// domain function says the inputs must produce.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/demo"
	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/internal/stacktest"
	"github.com/idsync/idsync/store"
)

// binary is the idsync binary built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "idsync-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "idsync")
	out, err := exec.Command("go", "build", "-o", binary, "../cmd/idsync").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building idsync: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Admin tokens of every instance: one with write scope, one read-only.
const (
	adminToken = "e2e-admin-token-0123456789"
	readToken  = "e2e-read-token-0123456789"
)

// stack is one test's slice of the real stack: unique topics, group and
// Redis key prefix.
type stack struct {
	t         *testing.T
	brokers   []string
	adm       *kadm.Client
	redisAddr string
	// rdb is the Redis the instances use: the shared test server, or a
	// cluster or Sentinel client (redisha_test.go).
	rdb   redis.UniversalClient
	name  string // unique per test
	input string
	// The names a group of instances uses; view gives others.
	groupName, dlqName, tmplName string
	// opts are the processing options the instances run with (the
	// expectation is computed with them).
	opts idsync.Options
}

func newStack(t *testing.T, partitions int32) *stack {
	t.Helper()
	k := stacktest.Kafka(t)
	return newStackOn(t, k.Brokers(), partitions, nil)
}

// newStackOn builds a stack on the given brokers with a new input topic
// (topic configs optional) and a Redis prefix on the shared test Redis.
func newStackOn(t *testing.T, brokers []string, partitions int32, topicConfig map[string]*string) *stack {
	t.Helper()
	ks := stacktest.Redis(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	name := stacktest.Name(t)
	s := &stack{t: t, brokers: brokers, adm: kadm.NewClient(cl), rdb: ks.Client, redisAddr: ks.Options().Addr, name: name,
		input: name + ".input", groupName: name + ".group", dlqName: name + ".dlq", tmplName: name + ".dest.{destination_id}",
		opts: idsync.DefaultOptions()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The brokers' default replication factor: 1 on the single test broker,
	// 3 on the cluster of deploy/local/kafka-cluster.sh.
	resp, err := s.adm.CreateTopic(ctx, partitions, -1, topicConfig, s.input)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating %s: %v", s.input, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		topics, err := s.adm.ListTopics(ctx)
		if err == nil {
			var mine []string
			for _, n := range topics.Names() {
				if strings.HasPrefix(n, s.name) {
					mine = append(mine, n)
				}
			}
			if len(mine) > 0 {
				_, _ = s.adm.DeleteTopics(ctx, mine...)
			}
		}
		if groups, err := s.adm.ListGroups(ctx); err == nil {
			for _, g := range groups.Groups() {
				if strings.HasPrefix(g, s.name) {
					_, _ = s.adm.DeleteGroup(ctx, g)
				}
			}
		}
		// One key at a time: on a cluster they live in different slots.
		keys, _ := stacktest.ScanAll(ctx, s.rdb, s.prefix()+"*")
		for _, k := range keys {
			s.rdb.Del(ctx, k)
		}
	})
	return s
}

// view returns the stack as another group of instances sees it: the same
// input and connections, its own group, dead-letter and output topics.
func (s *stack) view(suffix string) *stack {
	v := *s
	v.groupName = s.name + "." + suffix + ".group"
	v.dlqName = s.name + "." + suffix + ".dlq"
	v.tmplName = s.name + "." + suffix + ".dest.{destination_id}"
	return &v
}

func (s *stack) group() string    { return s.groupName }
func (s *stack) dlq() string      { return s.dlqName }
func (s *stack) template() string { return s.tmplName }
func (s *stack) prefix() string   { return s.name + ":" }
func (s *stack) topicOf(dest string) string {
	return strings.Replace(s.template(), "{destination_id}", dest, 1)
}

// client returns a Kafka client on the stack's brokers, closed after the test.
func (s *stack) client(opts ...kgo.Opt) *kgo.Client {
	s.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.brokers...)}, opts...)...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(cl.Close)
	return cl
}

// instance is one running idsync process.
type instance struct {
	t       *testing.T
	cmd     *exec.Cmd
	ops     string
	admin   string
	logPath string
	exited  chan struct{}
	exitErr error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs idsync with the stack's names and extra IDSYNC_* settings,
// and waits until it is ready.
func (s *stack) start(id string, extra ...string) *instance {
	s.t.Helper()
	in := s.launch(id, extra...)
	in.waitReady()
	return in
}

// launch runs idsync without waiting for it to be ready.
func (s *stack) launch(id string, extra ...string) *instance {
	t := s.t
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "idsync.yaml")
	yaml := fmt.Sprintf("admin:\n  tokens:\n    - {name: e2e, token: %q, scope: write}\n    - {name: reader, token: %q, scope: read}\n", adminToken, readToken)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	in := &instance{t: t, ops: freeAddr(t), admin: freeAddr(t), logPath: filepath.Join(dir, "idsync.log"), exited: make(chan struct{})}
	logf, err := os.Create(in.logPath)
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"IDSYNC_CONFIG="+cfgPath,
		"IDSYNC_KAFKA_BROKERS="+strings.Join(s.brokers, ","),
		"IDSYNC_KAFKA_INPUT_TOPIC="+s.input,
		"IDSYNC_KAFKA_GROUP_ID="+s.group(),
		"IDSYNC_KAFKA_DLQ_TOPIC="+s.dlq(),
		"IDSYNC_KAFKA_OUTPUT_TOPIC_TEMPLATE="+s.template(),
		"IDSYNC_KAFKA_TOPIC_REPLICATION_FACTOR=1",
		"IDSYNC_KAFKA_TOPIC_PARTITIONS=3",
		"IDSYNC_KAFKA_TRANSACTIONAL_ID_SUFFIX="+s.name+"-"+id,
		"IDSYNC_KAFKA_SESSION_TIMEOUT=10s",
		"IDSYNC_REDIS_ADDRS="+s.redisAddr,
		"IDSYNC_REDIS_KEY_PREFIX="+s.prefix(),
		"IDSYNC_OPS_LISTEN="+in.ops,
		"IDSYNC_ADMIN_LISTEN="+in.admin,
		"IDSYNC_LOG_LEVEL=info",
	)
	env = append(env, extra...)
	cmd := exec.Command(binary, "run")
	cmd.Env = env
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in.cmd = cmd
	go func() {
		in.exitErr = cmd.Wait()
		logf.Close()
		close(in.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-in.exited:
		default:
			_ = cmd.Process.Kill()
			<-in.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(in.logPath)
			t.Logf("idsync %s log (tail):\n%s", id, tail(b, 40))
		}
	})
	return in
}

func tail(b []byte, lines int) string {
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// waitReady polls /readyz until the instance has partitions and config.
func (in *instance) waitReady() {
	in.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-in.exited:
			in.t.Fatalf("idsync exited during start: %v", in.exitErr)
		default:
		}
		resp, err := http.Get("http://" + in.ops + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	in.t.Fatal("idsync not ready within 60s")
}

// running reports whether the process is still alive.
func (in *instance) running() bool {
	select {
	case <-in.exited:
		return false
	default:
		return true
	}
}

// memory returns the process's resident set and its peak, in bytes.
func (in *instance) memory() (rss, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.cmd.Process.Pid))
	if err != nil {
		return -1, -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak
}

// log returns what the instance has logged so far.
func (in *instance) log() string {
	b, _ := os.ReadFile(in.logPath)
	return string(b)
}

// kill sends SIGKILL and waits for the process to end.
func (in *instance) kill() {
	_ = in.cmd.Process.Signal(syscall.SIGKILL)
	<-in.exited
}

// terminate sends SIGTERM and returns the exit code and how long it took.
func (in *instance) terminate(within time.Duration) (int, time.Duration) {
	in.t.Helper()
	start := time.Now()
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exited:
	case <-time.After(within):
		in.t.Fatalf("idsync did not exit within %s of SIGTERM", within)
	}
	code := 0
	if ee, ok := in.exitErr.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if in.exitErr != nil {
		code = -1
	}
	return code, time.Since(start)
}

// metric reads one sample from /metrics (sum over label values).
func (in *instance) metric(name string) float64 {
	resp, err := http.Get("http://" + in.ops + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			total += v
		}
	}
	return total
}

// hasMetric reports whether /metrics has a sample named name (with or
// without labels).
func (in *instance) hasMetric(name string) bool {
	resp, err := http.Get("http://" + in.ops + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return bytes.Contains(b, []byte("\n"+name+" ")) || bytes.Contains(b, []byte("\n"+name+"{"))
}

// put stores a connection through the instance's admin API and returns the
// response (version, effective_at).
func (in *instance) put(space, audience, dest string, cfg json.RawMessage) (version int64, effective time.Time) {
	in.t.Helper()
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v1/spaces/%s/audiences/%s/connections/%s", in.admin, space, audience, dest), bytes.NewReader(cfg))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		in.t.Fatalf("PUT %s: %d %s", dest, resp.StatusCode, body)
	}
	var v struct {
		Version     int64     `json:"version"`
		EffectiveAt time.Time `json:"effective_at"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		in.t.Fatal(err)
	}
	return v.Version, v.EffectiveAt
}

// seedDemo stores the demo connections through the admin API.
func (in *instance) seedDemo() {
	for _, c := range demo.Connections() {
		in.put(demo.Space, c.Audience, c.Destination, c.Config)
	}
}

// input is one produced input record.
type input struct {
	key, value []byte
	partition  int32
	offset     int64
}

// produce writes values to the input topic, keyed by profile, and returns
// them with their positions.
func (s *stack) produce(events []demo.Event) []input {
	s.t.Helper()
	cl := s.client(kgo.DefaultProduceTopic(s.input), kgo.ProducerBatchMaxBytes(4<<20))
	recs := make([]*kgo.Record, len(events))
	for i, e := range events {
		recs[i] = &kgo.Record{Key: []byte(e.Key), Value: e.Value}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		s.t.Fatal(err)
	}
	out := make([]input, len(recs))
	for i, r := range recs {
		out[i] = input{key: r.Key, value: r.Value, partition: r.Partition, offset: r.Offset}
	}
	return out
}

// events makes n demo events with timestamps near now.
func events(seed uint64, n int) []demo.Event {
	g := demo.NewGenerator(seed)
	now := time.Now()
	out := make([]demo.Event, n)
	for i := range out {
		out[i] = g.Next(now)
	}
	return out
}

// waitCommitted polls until the group's commits reach the input's end.
func (s *stack) waitCommitted(within time.Duration) {
	s.t.Helper()
	s.waitFraction(1, within)
}

// waitFraction polls until the group has committed at least fraction f of
// the input, failing the test after within.
func (s *stack) waitFraction(f float64, within time.Duration) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		if s.committedFraction(ctx) >= f {
			return
		}
		select {
		case <-ctx.Done():
			_, errEnds := s.adm.ListEndOffsets(context.Background(), s.input)
			_, errCommitted := s.adm.FetchOffsets(context.Background(), s.group())
			s.t.Fatalf("input not %.0f%% committed within %s (%.0f%%; end offsets: %v, committed offsets: %v)",
				100*f, within, 100*s.committedFraction(context.Background()), errEnds, errCommitted)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// committedFraction is committed / end offsets summed over partitions.
func (s *stack) committedFraction(ctx context.Context) float64 {
	ends, err := s.adm.ListEndOffsets(ctx, s.input)
	if err != nil {
		return 0
	}
	committed, err := s.adm.FetchOffsets(ctx, s.group())
	if err != nil {
		return 0
	}
	var end, done int64
	ends.Each(func(o kadm.ListedOffset) {
		end += o.Offset
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.At > 0 {
			at := c.At
			if at < o.Offset && o.Offset-at <= 2 && s.onlyMarkers(ctx, o.Partition, at, o.Offset) {
				// In exactly_once idsync writes resync control records into
				// the input in its transactions: their commit markers take
				// offsets no consumer ever commits past.
				at = o.Offset
			}
			done += at
		}
	})
	if end == 0 {
		return 1
	}
	return float64(done) / float64(end)
}

// onlyMarkers reports whether the input partition's offsets [from, to) hold
// only transaction markers.
func (s *stack) onlyMarkers(ctx context.Context, partition int32, from, to int64) bool {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.input: {partition: kgo.NewOffset().At(from)}}))
	if err != nil {
		return false
	}
	defer cl.Close()
	next := from
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for next < to {
		fs := cl.PollFetches(pctx)
		if pctx.Err() != nil {
			return false
		}
		for _, r := range fs.Records() {
			if r.Offset >= to {
				return true
			}
			if !r.Attrs.IsControl() {
				return false
			}
			next = r.Offset + 1
		}
	}
	return true
}

// expectation is what the inputs must produce: message ids per topic, and
// DLQ records by source position and code.
type expectation struct {
	outputs map[string]map[string]bool // topic → message_id
	dlq     map[string]bool            // "partition/offset/code/destination"
	version map[string]int64           // message_id → config version
}

// expect computes the expectation with the domain function, reading the
// connections from the store as the processor would.
func (s *stack) expect(in []input, now time.Time) expectation {
	s.t.Helper()
	st, err := store.New(s.rdb, store.Options{Prefix: s.prefix()})
	if err != nil {
		s.t.Fatal(err)
	}
	exp := expectation{outputs: map[string]map[string]bool{}, dlq: map[string]bool{}, version: map[string]int64{}}
	cache := map[string][]idsync.Connection{}
	for _, r := range in {
		ev, err := idsync.Decode(r.value, now, idsync.DefaultLimits())
		if err != nil {
			exp.dlq[fmt.Sprintf("%d/%d/%s/", r.partition, r.offset, idsync.CodeOf(err))] = true
			continue
		}
		conns, ok := cache[ev.AudienceID]
		if !ok {
			conns, err = st.List(context.Background(), ev.SpaceID, ev.AudienceID)
			if err != nil {
				s.t.Fatal(err)
			}
			cache[ev.AudienceID] = conns
		}
		res := idsync.Process(ev, conns, now, s.opts)
		for _, o := range res.Outputs {
			topic := s.topicOf(o.DestinationID)
			if exp.outputs[topic] == nil {
				exp.outputs[topic] = map[string]bool{}
			}
			exp.outputs[topic][o.MessageID] = true
			exp.version[o.MessageID] = o.ConfigVersion
		}
		for _, d := range res.DeadLetters {
			exp.dlq[fmt.Sprintf("%d/%d/%s/%s", r.partition, r.offset, d.Code, d.DestinationID)] = true
		}
	}
	return exp
}

// found is what the verifier read.
type found struct {
	outputs map[string]map[string]int // topic → message_id → count
	dlq     map[string]int
	version map[string]int64 // message_id → idsync-config-version header
	records int
}

// read consumes every destination topic of exp and the DLQ until all
// expected records are there (or the deadline), then one second more.
func (s *stack) read(exp expectation, readCommitted bool, within time.Duration) found {
	s.t.Helper()
	topics := []string{s.dlq()}
	for t := range exp.outputs {
		topics = append(topics, t)
	}
	opts := []kgo.Opt{kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl := s.client(opts...)
	f := found{outputs: map[string]map[string]int{}, dlq: map[string]int{}, version: map[string]int64{}}
	complete := func() bool {
		for topic, ids := range exp.outputs {
			for id := range ids {
				if f.outputs[topic][id] == 0 {
					return false
				}
			}
		}
		for k := range exp.dlq {
			if f.dlq[k] == 0 {
				return false
			}
		}
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var doneAt time.Time
	for ctx.Err() == nil {
		if doneAt.IsZero() && complete() {
			doneAt = time.Now()
		}
		if !doneAt.IsZero() && time.Since(doneAt) > time.Second {
			break
		}
		pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		fs := cl.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) {
			f.records++
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			if r.Topic == s.dlq() {
				f.dlq[fmt.Sprintf("%s/%s/%s/%s", h[idsync.HeaderSourcePartition], h[idsync.HeaderSourceOffset], h[idsync.HeaderErrorCode], h[idsync.HeaderDestinationID])]++
				return
			}
			var env struct {
				MessageID string `json:"message_id"`
			}
			if err := json.Unmarshal(r.Value, &env); err != nil {
				s.t.Errorf("%s: output is not JSON: %v", r.Topic, err)
				return
			}
			if f.outputs[r.Topic] == nil {
				f.outputs[r.Topic] = map[string]int{}
			}
			f.outputs[r.Topic][env.MessageID]++
			v, _ := strconv.ParseInt(h[idsync.HeaderConfigVersion], 10, 64)
			f.version[env.MessageID] = v
		})
	}
	return f
}

// tally compares found with exp: missing, duplicated and unexpected records.
type tally struct {
	expected, missing, duplicates, unexpected int
}

func compare(exp expectation, f found) tally {
	var t tally
	for topic, ids := range exp.outputs {
		for id := range ids {
			t.expected++
			switch n := f.outputs[topic][id]; {
			case n == 0:
				t.missing++
			case n > 1:
				t.duplicates += n - 1
			}
		}
	}
	for topic, ids := range f.outputs {
		for id := range ids {
			if !exp.outputs[topic][id] {
				t.unexpected++
			}
		}
	}
	for k := range exp.dlq {
		t.expected++
		switch n := f.dlq[k]; {
		case n == 0:
			t.missing++
		case n > 1:
			t.duplicates += n - 1
		}
	}
	for k := range f.dlq {
		if !exp.dlq[k] {
			t.unexpected++
		}
	}
	return t
}

// stacktestKafka returns the shared test broker addresses (failing the
// test, as every end-to-end test does, when IDSYNC_TEST_KAFKA is unset).
func stacktestKafka(t *testing.T) []string {
	t.Helper()
	return stacktest.Kafka(t).Brokers()
}

func redisClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}
