package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/demo"
	"github.com/idsync/idsync/internal/stacktest"
	"github.com/idsync/idsync/store"
)

// The failover tests run the real binary on a live Redis Cluster or a
// Sentinel-managed Redis (opt-in: deploy/local/redis-cluster.sh and
// redis-sentinel.sh start them, `make test-redis-cluster` runs everything),
// SIGKILL the master that owns the test's keys and its notification channel
// while a stream flows and edits arrive through the admin API, and measure:
// that outputs keep flowing, that every edit answered 2xx is readable after
// the failover, how long the failover took, and how long after it an edit
// takes to reach the running instance (its cache TTL is 10 minutes: only a
// notification can bring it). The killed node is started again afterwards
// with the script, so the deployment is whole for the next test.

// haDeployment is the live deployment one failover test runs on.
type haDeployment struct {
	r *stacktest.RedisHA
	// script is the deploy/local script that restarts a killed node.
	script string
	// settings point the binary at the deployment.
	settings []string
	// owner returns the address of the master that owns the slot of key
	// (the only master, behind Sentinel), as the deployment says now,
	// asking any node or Sentinel but skip.
	owner func(ctx context.Context, key, skip string) (string, error)
}

func clusterDeployment(t *testing.T) *haDeployment {
	r := stacktest.RedisCluster(t)
	o := r.Options()
	return &haDeployment{r: r, script: "redis-cluster.sh",
		settings: append([]string{"IDSYNC_REDIS_ADDRS=" + strings.Join(o.Addrs, ",")}, tlsSettings()...),
		owner: func(ctx context.Context, key, skip string) (string, error) {
			err := errors.New("no cluster node answers")
			for _, addr := range o.Addrs {
				if addr == skip {
					continue
				}
				var m string
				if m, err = slotMaster(ctx, addr, o.TLSConfig, key); err == nil {
					return m, nil
				}
			}
			return "", err
		}}
}

func sentinelDeployment(t *testing.T) *haDeployment {
	r := stacktest.RedisSentinel(t)
	o := r.Options()
	return &haDeployment{r: r, script: "redis-sentinel.sh",
		settings: append([]string{"IDSYNC_REDIS_ADDRS=" + strings.Join(o.Addrs, ","), "IDSYNC_REDIS_MASTER_NAME=" + o.MasterName}, tlsSettings()...),
		owner: func(ctx context.Context, _, _ string) (string, error) {
			err := errors.New("no Sentinel answers")
			for _, addr := range o.Addrs {
				sc := redis.NewSentinelClient(&redis.Options{Addr: addr, TLSConfig: o.TLSConfig})
				var a []string
				a, err = sc.GetMasterAddrByName(ctx, o.MasterName).Result()
				sc.Close()
				if err == nil {
					return net.JoinHostPort(a[0], a[1]), nil
				}
			}
			return "", err
		}}
}

// tlsSettings are the binary's redis.tls.* settings when the deployment
// runs with TLS (IDSYNC_TEST_REDIS_TLS_DIR).
func tlsSettings() []string {
	dir := stacktest.RedisTLSDir()
	if dir == "" {
		return nil
	}
	return []string{"IDSYNC_REDIS_TLS_ENABLED=true", "IDSYNC_REDIS_TLS_CA_FILE=" + dir + "/ca.pem",
		"IDSYNC_REDIS_TLS_CERT_FILE=" + dir + "/client.pem", "IDSYNC_REDIS_TLS_KEY_FILE=" + dir + "/client.key"}
}

// slotMaster asks the cluster node at addr which master owns key's slot.
func slotMaster(ctx context.Context, addr string, tc *tls.Config, key string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: tc, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	slot, err := c.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", fmt.Errorf("CLUSTER KEYSLOT on %s: %w", addr, err)
	}
	//lint:ignore SA1019 CLUSTER SLOTS answers slot ranges with their master directly; Redis 7 still serves it
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		return "", fmt.Errorf("CLUSTER SLOTS on %s: %w", addr, err)
	}
	for _, r := range slots {
		if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
			return r.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("%s says no master owns slot %d", addr, slot)
}

// victim is owner, failing the test on an error.
func (h *haDeployment) victim(t *testing.T, key string) string {
	t.Helper()
	m, err := h.owner(t.Context(), key, "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitPromoted polls until the deployment names another master than
// victim for key's slot, and returns the time since since: the failover as
// the deployment itself sees it.
func (h *haDeployment) waitPromoted(t *testing.T, key, victim string, since time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		m, err := h.owner(ctx, key, victim)
		cancel()
		if err == nil && m != victim {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no master other than %s for %s within 60s of the kill (last: %q, %v)", victim, key, m, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill SIGKILLs the Redis server at addr (found by its INFO process_id: the
// deployment runs on this machine) and returns the function that starts
// it again with the deploy/local script and waits until the deployment is
// whole (a master with a synchronised replica); the test's cleanup calls
// it if the test did not.
func (h *haDeployment) kill(t *testing.T, addr string) (restart func()) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: h.r.Options().TLSConfig})
	info, err := c.Info(t.Context(), "server").Result()
	c.Close()
	if err != nil {
		t.Fatalf("INFO server on %s: %v", addr, err)
	}
	var pid int
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid <= 0 {
		t.Fatalf("INFO server on %s names no process_id", addr)
	}
	// Never kill a process that is not that server: the deployment must
	// run on this machine (deploy/local's scripts).
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || !strings.HasPrefix(string(comm), "redis-server") {
		t.Fatalf("process %d, which %s says it is, is not a redis-server on this machine (%q, %v): the failover tests need the deployment of deploy/local", pid, addr, comm, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing the Redis server at %s (pid %d): %v", addr, pid, err)
	}
	_, port, _ := net.SplitHostPort(addr)
	var once sync.Once
	restart = func() {
		once.Do(func() {
			cmd := exec.Command("bash", "../deploy/local/"+h.script, "restart", port)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("restarting the killed node %s with deploy/local/%s (run with the IDSYNC_RUN_DIR and ports it was started with): %v\n%s", addr, h.script, err, out)
			}
		})
	}
	t.Cleanup(restart)
	return restart
}

// onVictim returns the first name base_N whose audience key hashes to the
// same master as channel (always base_0 behind Sentinel).
func onVictim(t *testing.T, h *haDeployment, victim, base string) string {
	t.Helper()
	for i := range 1000 {
		name := fmt.Sprintf("%s_%d", base, i)
		if h.victim(t, "{"+demo.Space+"/"+name+"}") == victim {
			return name
		}
	}
	t.Fatalf("no audience %s_N on %s", base, victim)
	return ""
}

// TestRedisClusterFailover: the master of the test's slots SIGKILLed on a
// live Redis Cluster (testFailover says what is checked).
func TestRedisClusterFailover(t *testing.T) {
	testFailover(t, clusterDeployment(t))
}

// TestRedisSentinelFailover: the master SIGKILLed behind Sentinel.
func TestRedisSentinelFailover(t *testing.T) {
	testFailover(t, sentinelDeployment(t))
}

// editResult is one admin API edit made during a failover or a reshard.
type editResult struct {
	at      time.Time // when the answer came
	dest    string
	status  int // 0 when no HTTP response came
	version int64
	err     string
}

// testFailover streams events and edits through the real binary, kills
// the master that owns the notification channel and the edited audiences,
// starts it again once the deployment has failed over, and checks that
// outputs kept flowing, that every edit answered 2xx is readable, that
// edits resume within 5 s of the deployment being whole again, and that an
// edit made afterwards reaches the running instance.
func testFailover(t *testing.T, h *haDeployment) {
	const rate = 300
	s := newStack(t, 3)
	s.rdb = h.r.UniversalClient
	// The channel carries every notification: the victim is the master that
	// owns it, and the audiences edited below live there too.
	victim := h.victim(t, s.prefix()+"notifications")
	editAud := onVictim(t, h, victim, "aud_edits")
	lateAud := onVictim(t, h, victim, "aud_late")
	in := s.start("a", haSettings(h)...)
	in.seedDemo()
	in.put(demo.Space, lateAud, "late_a", hookConfig)

	// The stream the instance processes, and a trickle of events of
	// lateAud kept apart from it (its connections change below).
	stream := s.stream(events(41, rate*40), rate)
	lateStop := s.trickle(lateAud, 100*time.Millisecond)
	defer lateStop()
	s.waitFraction(0.01, 60*time.Second)
	time.Sleep(5 * time.Second) // a warm, steady stream
	stalls := s.watchStalls()
	ed := in.startEdits(editAud)
	time.Sleep(2 * time.Second)

	restart := h.kill(t, victim)
	killed := time.Now()
	failover := h.waitPromoted(t, "{"+demo.Space+"/"+editAud+"}", victim, killed)
	t.Logf("failover: %s after the SIGKILL of %s", failover.Round(time.Millisecond), victim)
	// The promoted master has no replica until the killed node is back:
	// with redis.replica_acks=1 edits are refused meanwhile, as they must
	// be. The operator's part: start it again.
	restart()
	whole := time.Since(killed)
	t.Logf("whole again: %s after the SIGKILL", whole.Round(time.Millisecond))
	time.Sleep(5 * time.Second)
	edits := ed.stop()
	maxStall := stalls.stop()

	invalidation := s.invalidationDelay(t, in, lateAud)
	lateStop()
	inputs := stream.wait(t)
	s.waitCommitted(120 * time.Second)
	tl := s.verify(t, inputs, false)
	logTally(t, "stream", tl)
	es := s.checkEdits(t, editAud, edits)
	editsBack := 0.0
	if !es.lastRefused.IsZero() {
		editsBack = es.lastRefused.Sub(killed).Seconds()
	}
	report(t, map[string]any{"events": len(inputs), "edits_refused_until_s": round(editsBack), "edits": len(edits),
		"edits_acknowledged": es.ok, "edits_refused": es.refused, "refusals": es.statuses, "lost_edits": es.lost,
		"failover_s": round(failover.Seconds()), "whole_again_s": round(whole.Seconds()),
		"invalidation_after_failover_s": round(invalidation.Seconds()), "max_partition_stall_s": round(maxStall.Seconds()),
		"missing": tl.missing, "duplicates": tl.duplicates, "unexpected": tl.unexpected})
	checkStream(t, tl, es, maxStall, invalidation)
	if back := time.Duration(editsBack * float64(time.Second)); back > whole+5*time.Second {
		t.Errorf("edits were refused until %s after the kill, %s after the deployment was whole again (limit 5s)",
			back.Round(time.Millisecond), (back - whole).Round(time.Millisecond))
	}
}

// TestRedisClusterReshard: while a stream flows and edits arrive, every
// slot of the master that owns the notification channel and the edited
// audiences moves to another master (redis-cli --cluster reshard, through
// deploy/local/redis-cluster.sh move-slots), and back: outputs keep
// flowing, no acknowledged edit is lost, invalidations still arrive.
func TestRedisClusterReshard(t *testing.T) {
	const rate = 300
	h := clusterDeployment(t)
	s := newStack(t, 3)
	s.rdb = h.r.UniversalClient
	from := h.victim(t, s.prefix()+"notifications")
	editAud := onVictim(t, h, from, "aud_edits")
	lateAud := onVictim(t, h, from, "aud_late")
	to := ""
	for i := 0; to == ""; i++ {
		if m := h.victim(t, fmt.Sprintf("{other_%d}", i)); m != from {
			to = m
		}
	}
	in := s.start("a", haSettings(h)...)
	in.seedDemo()
	in.put(demo.Space, lateAud, "late_a", hookConfig)
	stream := s.stream(events(42, rate*40), rate)
	lateStop := s.trickle(lateAud, 100*time.Millisecond)
	defer lateStop()
	s.waitFraction(0.01, 60*time.Second)
	time.Sleep(5 * time.Second)
	stalls := s.watchStalls()
	ed := in.startEdits(editAud)
	time.Sleep(2 * time.Second)

	_, fromPort, _ := net.SplitHostPort(from)
	_, toPort, _ := net.SplitHostPort(to)
	started := time.Now()
	out := moveSlots(t, fromPort, toPort, "")
	away := time.Since(started)
	if m := h.victim(t, "{"+demo.Space+"/"+editAud+"}"); m != to {
		t.Errorf("after the reshard the edited audience is on %s, want %s", m, to)
	}
	// Back: as many slots as moved (from the lowest of to's).
	n := strings.Fields(strings.TrimSpace(out))
	started = time.Now()
	moveSlots(t, toPort, fromPort, n[len(n)-1])
	back := time.Since(started)
	time.Sleep(3 * time.Second)
	edits := ed.stop()
	maxStall := stalls.stop()

	invalidation := s.invalidationDelay(t, in, lateAud)
	lateStop()
	inputs := stream.wait(t)
	s.waitCommitted(120 * time.Second)
	tl := s.verify(t, inputs, false)
	logTally(t, "stream", tl)
	es := s.checkEdits(t, editAud, edits)
	report(t, map[string]any{"events": len(inputs), "edits": len(edits), "edits_acknowledged": es.ok,
		"edits_refused": es.refused, "refusals": es.statuses, "lost_edits": es.lost,
		"reshard_away_s": round(away.Seconds()), "reshard_back_s": round(back.Seconds()),
		"invalidation_after_reshard_s": round(invalidation.Seconds()), "max_partition_stall_s": round(maxStall.Seconds()),
		"missing": tl.missing, "duplicates": tl.duplicates, "unexpected": tl.unexpected})
	checkStream(t, tl, es, maxStall, invalidation)
}

// moveSlots runs deploy/local/redis-cluster.sh move-slots and returns how
// many slots it moved ("" moves all of from's).
func moveSlots(t *testing.T, from, to, count string) string {
	t.Helper()
	args := []string{"../deploy/local/redis-cluster.sh", "move-slots", from, to}
	if count != "" {
		args = append(args, count)
	}
	out, err := exec.Command("bash", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/local/redis-cluster.sh move-slots %s %s (run with the IDSYNC_RUN_DIR and ports the cluster was started with): %v\n%s", from, to, err, out)
	}
	// "[deploy/local] moved N slots from A to B in Xs"
	for _, line := range strings.Split(string(out), "\n") {
		if _, rest, ok := strings.Cut(line, "] moved "); ok {
			t.Logf("reshard: %s", strings.TrimSpace(line))
			return strings.Fields(rest)[0]
		}
	}
	t.Fatalf("move-slots did not say how many slots it moved:\n%s", out)
	return ""
}

// hookConfig is the webhook connection the failover tests PUT.
var hookConfig = json.RawMessage(`{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"last_added"}]}`)

// haSettings are the instance settings of the failover tests: edits wait
// for the master's replica (WAIT), so that an acknowledged edit survives
// the master's death; the cache TTL is long, so that only a notification
// brings an edit to the running instance.
func haSettings(h *haDeployment) []string {
	return append([]string{"IDSYNC_CONNECTIONS_CACHE_TTL=10m", "IDSYNC_REDIS_REPLICA_ACKS=1"}, h.settings...)
}

// editor PUTs a new connection of one audience through the admin API every
// 100 ms until stopped.
type editor struct {
	stopc chan struct{}
	done  chan []editResult
}

func (in *instance) startEdits(audience string) *editor {
	e := &editor{stopc: make(chan struct{}), done: make(chan []editResult, 1)}
	go func() {
		var edits []editResult
		defer func() { e.done <- edits }()
		hc := &http.Client{Timeout: 10 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-e.stopc:
				return
			case <-time.After(100 * time.Millisecond):
			}
			r := in.tryPut(hc, demo.Space, audience, fmt.Sprintf("edit_%04d", i), hookConfig)
			r.at = time.Now()
			edits = append(edits, r)
		}
	}()
	return e
}

// stop ends the edits and returns them.
func (e *editor) stop() []editResult {
	close(e.stopc)
	return <-e.done
}

// editStats is what became of the edits.
type editStats struct {
	ok, refused, lost int
	statuses          map[string]int
	lastRefused       time.Time
}

// checkEdits reads back every edit answered 2xx, which must be there at
// the version answered, and counts the others.
func (s *stack) checkEdits(t *testing.T, audience string, edits []editResult) editStats {
	t.Helper()
	st, err := store.New(s.rdb, store.Options{Prefix: s.prefix()})
	if err != nil {
		t.Fatal(err)
	}
	es := editStats{statuses: map[string]int{}}
	for _, e := range edits {
		if e.status/100 != 2 {
			es.refused++
			es.statuses[fmt.Sprint(e.status)+" "+e.err]++
			if e.at.After(es.lastRefused) {
				es.lastRefused = e.at
			}
			continue
		}
		es.ok++
		c, err := st.Get(context.Background(), store.Key{Space: demo.Space, Audience: audience, Destination: e.dest})
		if err != nil || len(c.Versions) == 0 || c.Versions[len(c.Versions)-1].Version != e.version {
			es.lost++
			t.Errorf("edit %s answered %d (version %d) is not readable afterwards: %+v, %v", e.dest, e.status, e.version, c.Versions, err)
		}
	}
	return es
}

// invalidationDelay adds a connection to audience, whose events are
// flowing, and returns how long after the 2xx its first output came.
func (s *stack) invalidationDelay(t *testing.T, in *instance, audience string) time.Duration {
	t.Helper()
	in.put(demo.Space, audience, "late_b", hookConfig)
	acked := time.Now()
	return s.firstRecord(t, s.topicOf("late_b"), 30*time.Second).Sub(acked)
}

// checkStream fails the test on lost or unexpected outputs, on no edit
// acknowledged, on a long stall or a slow invalidation.
func checkStream(t *testing.T, tl tally, es editStats, maxStall, invalidation time.Duration) {
	t.Helper()
	if tl.missing+tl.unexpected != 0 {
		t.Errorf("stream: %d missing, %d unexpected outputs or dead letters", tl.missing, tl.unexpected)
	}
	if es.ok == 0 {
		t.Error("no edit was acknowledged during the test")
	}
	if maxStall > 15*time.Second {
		t.Errorf("a partition made no progress for %s (limit 15s): the warm cache should keep serving", maxStall)
	}
	if invalidation > 15*time.Second {
		t.Errorf("an edit took %s to reach the running instance (limit 15s)", invalidation)
	}
}

// tryPut is put without failing: the status, the version on 2xx, the error
// text otherwise.
func (in *instance) tryPut(hc *http.Client, space, audience, dest string, cfg json.RawMessage) editResult {
	r := editResult{dest: dest}
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v1/spaces/%s/audiences/%s/connections/%s", in.admin, space, audience, dest), bytes.NewReader(cfg))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		r.err = "no response"
		return r
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r.status = resp.StatusCode
	var v struct {
		Version int64  `json:"version"`
		Error   string `json:"error"`
	}
	_ = json.Unmarshal(body, &v)
	r.version, r.err = v.Version, v.Error
	return r
}

// trickle produces one demo event rewritten to audience every interval,
// until the returned function is called (more than once is fine).
func (s *stack) trickle(audience string, every time.Duration) func() {
	cl := s.client(kgo.DefaultProduceTopic(s.input))
	g := demo.NewGenerator(99)
	g.BadEvery = 0 // no dead letters: what the verifier reads is the main stream's
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			e := g.Next(time.Now())
			var m map[string]any
			if json.Unmarshal(e.Value, &m) != nil {
				continue
			}
			m["audience_id"] = audience
			v, _ := json.Marshal(m)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = cl.ProduceSync(ctx, &kgo.Record{Key: []byte(e.Key), Value: v}).FirstErr()
			cancel()
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(stop); <-done }) }
}

// firstRecord waits for the first record of topic and returns when it was
// read.
func (s *stack) firstRecord(t *testing.T, topic string, within time.Duration) time.Time {
	t.Helper()
	cl := s.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AllowAutoTopicCreation())
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		if cl.PollFetches(ctx).NumRecords() > 0 {
			return time.Now()
		}
		if ctx.Err() != nil {
			t.Fatalf("no record on %s within %s", topic, within)
		}
	}
}
