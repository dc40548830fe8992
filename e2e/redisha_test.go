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

func TestRedisClusterFailover(t *testing.T) {
	testFailover(t, clusterDeployment(t))
}

func TestRedisSentinelFailover(t *testing.T) {
	testFailover(t, sentinelDeployment(t))
}

// editResult is one admin API edit made while the master was killed.
type editResult struct {
	at      time.Time // when the answer came
	dest    string
	status  int // 0 when no HTTP response came
	version int64
	err     string
}

func testFailover(t *testing.T, h *haDeployment) {
	const rate = 300
	s := newStack(t, 3)
	s.rdb = h.r.UniversalClient
	// The channel carries every notification: the victim is the master that
	// owns it, and the audiences edited below live there too.
	victim := h.victim(t, s.prefix()+"notifications")
	editAud := onVictim(t, h, victim, "aud_edits")
	lateAud := onVictim(t, h, victim, "aud_late")

	// Edits wait for the master's replica (WAIT), so that an acknowledged
	// edit survives the master's death; the cache TTL is long, so that
	// only a notification brings an edit to the running instance.
	settings := append([]string{"IDSYNC_CONNECTIONS_CACHE_TTL=10m", "IDSYNC_REDIS_REPLICA_ACKS=1"}, h.settings...)
	in := s.start("a", settings...)
	in.seedDemo()
	hook := json.RawMessage(`{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"last_added"}]}`)
	in.put(demo.Space, lateAud, "late_a", hook)

	// The stream the instance processes, and a trickle of events of
	// lateAud kept apart from it (its connections change below).
	stream := s.stream(events(41, rate*40), rate)
	lateStop := s.trickle(lateAud, 100*time.Millisecond)
	defer lateStop()
	s.waitFraction(0.01, 60*time.Second)
	time.Sleep(5 * time.Second) // a warm, steady stream
	stalls := s.watchStalls()

	// Edits through the admin API, every 100 ms, from before the kill
	// until 5 s after the failover.
	var (
		mu    sync.Mutex
		edits []editResult
	)
	stopEdits := make(chan struct{})
	editsDone := make(chan struct{})
	go func() {
		defer close(editsDone)
		hc := &http.Client{Timeout: 10 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-stopEdits:
				return
			case <-time.After(100 * time.Millisecond):
			}
			r := in.tryPut(hc, demo.Space, editAud, fmt.Sprintf("edit_%04d", i), hook)
			r.at = time.Now()
			mu.Lock()
			edits = append(edits, r)
			mu.Unlock()
		}
	}()
	time.Sleep(2 * time.Second)
	committedAtKill := s.committedFraction(context.Background())
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
	close(stopEdits)
	<-editsDone
	maxStall := stalls.stop()

	// An edit after the failover reaches the running instance: a new
	// connection of lateAud, effective at once, whose first output
	// measures the delay.
	in.put(demo.Space, lateAud, "late_b", hook)
	acked := time.Now()
	invalidation := s.firstRecord(t, s.topicOf("late_b"), 30*time.Second).Sub(acked)
	lateStop()

	inputs := stream.wait(t)
	s.waitCommitted(120 * time.Second)
	tl := s.verify(t, inputs, false)
	logTally(t, "stream", tl)

	// Every edit answered 2xx is readable now, at the version answered.
	st, err := store.New(s.rdb, store.Options{Prefix: s.prefix()})
	if err != nil {
		t.Fatal(err)
	}
	var ok, refused, lost int
	var lastRefused time.Time
	statuses := map[string]int{}
	for _, e := range edits {
		if e.status/100 != 2 && e.at.After(lastRefused) {
			lastRefused = e.at
		}
		if e.status/100 != 2 {
			refused++
			statuses[fmt.Sprint(e.status)+" "+e.err]++
			continue
		}
		ok++
		c, err := st.Get(context.Background(), store.Key{Space: demo.Space, Audience: editAud, Destination: e.dest})
		if err != nil || len(c.Versions) == 0 || c.Versions[len(c.Versions)-1].Version != e.version {
			lost++
			t.Errorf("edit %s answered %d (version %d) is not readable after the failover: %+v, %v", e.dest, e.status, e.version, c.Versions, err)
		}
	}
	editsBack := 0.0
	if !lastRefused.IsZero() {
		editsBack = lastRefused.Sub(killed).Seconds()
	}
	report(t, map[string]any{"events": len(inputs), "edits_refused_until_s": round(editsBack), "edits": len(edits), "edits_acknowledged": ok, "edits_refused": refused,
		"refusals": statuses, "lost_edits": lost, "failover_s": round(failover.Seconds()), "whole_again_s": round(whole.Seconds()),
		"invalidation_after_failover_s": round(invalidation.Seconds()), "max_partition_stall_s": round(maxStall.Seconds()),
		"committed_at_kill": round(committedAtKill), "missing": tl.missing, "duplicates": tl.duplicates, "unexpected": tl.unexpected})
	if tl.missing+tl.unexpected != 0 {
		t.Errorf("stream: %d missing, %d unexpected outputs or dead letters", tl.missing, tl.unexpected)
	}
	if ok == 0 {
		t.Error("no edit was acknowledged during the test")
	}
	if back := time.Duration(editsBack * float64(time.Second)); back > whole+5*time.Second {
		t.Errorf("edits were refused until %s after the kill, %s after the deployment was whole again (limit 5s)",
			back.Round(time.Millisecond), (back - whole).Round(time.Millisecond))
	}
	if maxStall > 15*time.Second {
		t.Errorf("a partition made no progress for %s during the failover (limit 15s): the warm cache should keep serving", maxStall)
	}
	if invalidation > 15*time.Second {
		t.Errorf("an edit after the failover took %s to reach the running instance (limit 15s)", invalidation)
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
