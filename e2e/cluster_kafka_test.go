package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The cluster tests (issue 14, "Prove it where users run it") run the real
// binary against the three-node Kafka cluster of deploy/local/kafka-cluster.sh
// (replication factor 3, min.insync.replicas 2) and bounce its brokers while
// events flow, as Kafka's own broker-bounce system tests do. They are opt-in:
// without IDSYNC_TEST_KAFKA_CLUSTER they skip, whatever -short says, since
// `make test` provides a cluster only when it runs their short versions.
// `make test-cluster` (deploy/local/test-cluster.sh) starts the cluster with
// --tls, sources its cluster.env and runs the full versions.

// Environment variables naming the cluster; kafka-cluster.sh writes them to
// $IDSYNC_RUN_DIR/kafka-cluster/cluster.env. The script itself is run to
// kill and restart nodes, with the test's environment (IDSYNC_RUN_DIR and
// the KAFKA_CLUSTER_* ports must be those the cluster was started with).
const (
	clusterEnv      = "IDSYNC_TEST_KAFKA_CLUSTER"       // plaintext listeners
	clusterTLSEnv   = "IDSYNC_TEST_KAFKA_CLUSTER_TLS"   // TLS listeners
	clusterMTLSEnv  = "IDSYNC_TEST_KAFKA_CLUSTER_MTLS"  // mutual-TLS listeners
	clusterCertsEnv = "IDSYNC_TEST_KAFKA_CLUSTER_CERTS" // certs.sh's directory
)

// kcluster is the three-node test cluster.
type kcluster struct {
	t       *testing.T
	brokers []string
	adm     *kadm.Client
}

// needCluster returns the cluster named by IDSYNC_TEST_KAFKA_CLUSTER, or
// skips the test when it is unset.
func needCluster(t *testing.T) *kcluster {
	t.Helper()
	v := strings.TrimSpace(os.Getenv(clusterEnv))
	if v == "" {
		t.Skipf("%s is not set: the cluster tests need the three-node Kafka cluster of deploy/local/kafka-cluster.sh; "+
			"run `make test-cluster`, or `bash deploy/local/kafka-cluster.sh start --tls` and source the cluster.env it prints", clusterEnv)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(v, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	c := &kcluster{t: t, brokers: strings.Split(v, ","), adm: kadm.NewClient(cl)}
	// Every test starts on a whole cluster: a failed test may have left a
	// node down.
	for n := int32(1); n <= 3; n++ {
		if !c.nodeUp(n) {
			t.Logf("node %d is down at the start: restarting it", n)
			c.script("restart", n)
		}
	}
	return c
}

// script runs kafka-cluster.sh CMD N.
func (c *kcluster) script(cmd string, node int32) {
	c.t.Helper()
	out, err := exec.Command("bash", filepath.Join("..", "deploy", "local", "kafka-cluster.sh"), cmd, fmt.Sprint(node)).CombinedOutput()
	if err != nil {
		c.t.Fatalf("kafka-cluster.sh %s %d: %v\n%s", cmd, node, err, out)
	}
}

// nodeUp reports whether kafka-cluster.sh status says node n is up.
func (c *kcluster) nodeUp(n int32) bool {
	out, err := exec.Command("bash", filepath.Join("..", "deploy", "local", "kafka-cluster.sh"), "status").Output()
	return err == nil && strings.Contains(string(out), fmt.Sprintf("node %d: up", n))
}

// partitions returns the metadata of topics' partitions (topics that do
// not exist yet, such as the transaction state before a first transaction,
// are left out).
func (c *kcluster) partitions(ctx context.Context, topics []string) ([]kadm.PartitionDetail, error) {
	md, err := c.adm.Metadata(ctx, topics...)
	if err != nil {
		return nil, err
	}
	var ps []kadm.PartitionDetail
	for _, td := range md.Topics {
		if td.Err != nil {
			continue
		}
		for _, p := range td.Partitions {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

// busiestLeader returns the broker leading the most of topics' partitions.
func (c *kcluster) busiestLeader(topics []string) int32 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ps, err := c.partitions(ctx, topics)
	if err != nil {
		c.t.Fatalf("metadata: %v", err)
	}
	led := map[int32]int{}
	for _, p := range ps {
		led[p.Leader]++
	}
	best, most := int32(1), -1
	for n := int32(1); n <= 3; n++ {
		if led[n] > most {
			best, most = n, led[n]
		}
	}
	return best
}

// waitFullISR polls until every partition of topics has all its replicas in
// sync and a leader, and returns how long that took.
func (c *kcluster) waitFullISR(topics []string, within time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var lagging []string
	for {
		ps, err := c.partitions(ctx, topics)
		lagging = lagging[:0]
		for _, p := range ps {
			if p.Leader < 0 || len(p.ISR) < len(p.Replicas) {
				lagging = append(lagging, fmt.Sprintf("%s/%d isr %v of %v", p.Topic, p.Partition, p.ISR, p.Replicas))
			}
		}
		if err == nil && len(ps) > 0 && len(lagging) == 0 {
			return time.Since(start)
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("ISR not full within %s: %v %v", within, err, lagging)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// bounce is one broker stop and restart and its timings.
type bounce struct {
	Node    int32   `json:"node"`
	Signal  string  `json:"signal"`
	DownS   float64 `json:"down_s"`     // stop to registered again
	ISRFull float64 `json:"isr_full_s"` // registered again to every ISR full
}

// bounceBusiest stops the broker leading the most of topics' partitions with
// cmd ("kill": SIGKILL, "term": controlled shutdown), restarts it on its
// storage, and waits until it is back in the ISR of every partition.
func (c *kcluster) bounceBusiest(cmd string, topics []string) bounce {
	c.t.Helper()
	node := c.busiestLeader(topics)
	start := time.Now()
	c.script(cmd, node)
	c.script("restart", node)
	up := time.Now()
	isr := c.waitFullISR(topics, 3*time.Minute)
	sig := map[string]string{"kill": "SIGKILL", "term": "SIGTERM"}[cmd]
	b := bounce{Node: node, Signal: sig, DownS: round(up.Sub(start).Seconds()), ISRFull: round(isr.Seconds())}
	c.t.Logf("bounced node %d (%s): registered again after %.1fs, every ISR full %.1fs later", node, sig, b.DownS, b.ISRFull)
	return b
}

// clusterTopics lists the stack's topics (input, outputs, dead letters) and the
// internal ones the pipeline depends on.
func (s *stack) clusterTopics(c *kcluster) []string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts, err := c.adm.ListTopics(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	topics := []string{"__consumer_offsets", "__transaction_state"}
	for _, n := range ts.Names() {
		if strings.HasPrefix(n, s.name) {
			topics = append(topics, n)
		}
	}
	slices.Sort(topics)
	return topics
}

// clusterExtra are the settings of an instance on the cluster: replicated
// output and dead-letter topics.
func clusterExtra(delivery string) []string {
	return []string{"IDSYNC_KAFKA_DELIVERY=" + delivery, "IDSYNC_KAFKA_TOPIC_REPLICATION_FACTOR=3",
		"IDSYNC_KAFKA_MAX_POLL_RECORDS=500"}
}

// supervisor restarts instances that exit, as Kubernetes or systemd would:
// idsync stops with an error when it cannot go on (an exactly_once
// transaction that cannot end within the rebalance timeout, DESIGN.md §7)
// and relies on being restarted. Each exit is counted and its last log line
// kept for the report.
type supervisor struct {
	mu    sync.Mutex
	exits []string
	stop  chan struct{}
	once  sync.Once
	done  sync.WaitGroup
}

func newSupervisor() *supervisor {
	return &supervisor{stop: make(chan struct{})}
}

// run starts an instance with s.start and restarts it whenever it exits,
// until the supervisor is closed.
func (sv *supervisor) run(s *stack, id string, extra ...string) *instance {
	in := s.start(id, extra...)
	// Each launch registers a cleanup that kills its instance; closing the
	// supervisor is registered after it, so it runs first and no instance
	// is restarted while the test ends.
	s.t.Cleanup(sv.close)
	sv.done.Add(1)
	go func() {
		defer sv.done.Done()
		for {
			select {
			case <-sv.stop:
				return
			case <-in.exited:
			}
			sv.mu.Lock()
			sv.exits = append(sv.exits, fmt.Sprintf("%s: %v: %s", id, in.exitErr, lastLine(in.log())))
			sv.mu.Unlock()
			s.t.Logf("idsync %s exited (%v), restarting it; its log ends:\n%s", id, in.exitErr, tail([]byte(in.log()), 5))
			select {
			case <-sv.stop:
				return
			default:
			}
			in = s.launch(id, extra...)
			s.t.Cleanup(sv.close)
		}
	}()
	return in
}

// restarts returns the exits seen so far.
func (sv *supervisor) restarts() []string {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return slices.Clone(sv.exits)
}

// close stops restarting (the instances keep running) and waits for the
// watching goroutines.
func (sv *supervisor) close() {
	sv.once.Do(func() { close(sv.stop) })
	sv.done.Wait()
}

// TestClusterLeaderBounce: while a stream flows, the broker leading the most
// input, output and transaction-state partitions is SIGKILLed and restarted,
// again and again, each time once it is back in every ISR; then one is shut
// down cleanly (SIGTERM) and restarted. Two groups read the same input, one
// at_least_once and one exactly_once: neither loses a record, and
// exactly_once (read_committed) repeats none.
func TestClusterLeaderBounce(t *testing.T) {
	c := needCluster(t)
	n, kills := pick(20000, 100000), pick(2, 5)
	// The stream outlasts the bounces (some 15-25 s each, three in the short
	// version, six in the full one), so every bounce happens under load.
	rate := pick(250, 600)
	alo := newStackOn(t, c.brokers, 6, nil)
	eos := alo.view("eos")
	sv := newSupervisor()
	aloIn := sv.run(alo, "alo", clusterExtra("at_least_once")...)
	sv.run(eos, "eos", clusterExtra("exactly_once")...)
	aloIn.seedDemo()
	st := alo.stream(events(21, n), rate)
	alo.waitFraction(0.01, time.Minute)
	eos.waitFraction(0.01, time.Minute)

	topics := alo.clusterTopics(c)
	var bounces []bounce
	for range kills {
		bounces = append(bounces, c.bounceBusiest("kill", topics))
	}
	bounces = append(bounces, c.bounceBusiest("term", topics))
	underLoad := st.running()
	inputs := st.wait(t)
	streamEnd := time.Now()
	alo.waitCommitted(4 * time.Minute)
	aloLagZero := time.Since(streamEnd)
	eos.waitCommitted(4 * time.Minute)
	eosLagZero := time.Since(streamEnd)
	sv.close()

	tlA := alo.verify(t, inputs, false)
	tlE := eos.verify(t, inputs, true)
	logTally(t, "at_least_once", tlA)
	logTally(t, "exactly_once", tlE)
	report(t, map[string]any{"events": len(inputs), "sigkill_bounces": kills, "sigterm_bounces": 1, "bounces": bounces,
		"bounces_during_stream": underLoad, "alo_expected": tlA.expected, "alo_missing": tlA.missing,
		"alo_duplicates": tlA.duplicates, "alo_unexpected": tlA.unexpected, "eos_expected": tlE.expected,
		"idsync_restarts": sv.restarts(), "eos_missing": tlE.missing, "eos_duplicates": tlE.duplicates, "eos_unexpected": tlE.unexpected,
		"alo_lag_zero_s_after_stream_end": round(aloLagZero.Seconds()), "eos_lag_zero_s_after_stream_end": round(eosLagZero.Seconds())})
	if !underLoad {
		t.Errorf("the stream ended before the last bounce: the bounces did not all happen under load")
	}
	if tlA.missing+tlA.unexpected != 0 {
		t.Errorf("at_least_once: %d missing, %d unexpected", tlA.missing, tlA.unexpected)
	}
	if tlE.missing+tlE.unexpected+tlE.duplicates != 0 {
		t.Errorf("exactly_once: %d missing, %d duplicated, %d unexpected", tlE.missing, tlE.duplicates, tlE.unexpected)
	}
}

// TestClusterScaleOut: three instances share a 24-partition input while the
// busiest broker is bounced: every output is accounted for.
func TestClusterScaleOut(t *testing.T) {
	c := needCluster(t)
	n, kills := pick(10000, 60000), pick(1, 3)
	s := newStackOn(t, c.brokers, 24, nil)
	extra := clusterExtra("at_least_once")
	sv := newSupervisor()
	first := sv.run(s, "a", extra...)
	sv.run(s, "b", extra...)
	sv.run(s, "c", extra...)
	first.seedDemo()
	st := s.stream(events(22, n), pick(250, 600))
	s.waitFraction(0.01, time.Minute)
	topics := s.clusterTopics(c)
	var bounces []bounce
	for range kills {
		bounces = append(bounces, c.bounceBusiest("kill", topics))
	}
	underLoad := st.running()
	inputs := st.wait(t)
	s.waitCommitted(4 * time.Minute)
	sv.close()
	tl := s.verify(t, inputs, false)
	logTally(t, "scale-out", tl)
	report(t, map[string]any{"events": len(inputs), "instances": 3, "idsync_restarts": sv.restarts(), "input_partitions": 24, "sigkill_bounces": kills,
		"bounces": bounces, "bounces_during_stream": underLoad, "expected": tl.expected, "missing": tl.missing,
		"duplicates": tl.duplicates, "unexpected": tl.unexpected})
	if !underLoad {
		t.Errorf("the stream ended before the last bounce: the bounces did not all happen under load")
	}
	if tl.missing+tl.unexpected != 0 {
		t.Errorf("%d missing, %d unexpected", tl.missing, tl.unexpected)
	}
}
