package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/idsync/idsync/demo"
	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/store"
)

// TestPausedRebalance (issue 12, case 4 and "How we will know"): a rebalance
// while partitions are paused because Redis is down, on the real broker.
// Instance A waits on every partition (the events' audiences were never
// cached); B joins, so some of A's paused partitions are revoked, then B
// stops and they are handed back to A: the "revoked and handed back to the
// same member" case. While Redis is down the wait is visible
// (idsync_partitions_waiting, /readyz); once Redis returns every partition
// resumes: committed offsets reach the end offsets (read with kadm), every
// event's outputs are delivered, idsync_consumer_lag_records is 0 on every
// assigned partition and nothing waits any more.
func TestPausedRebalance(t *testing.T) {
	const partitions = 6
	began := time.Now()
	s := newStackOn(t, stacktestKafka(t), partitions, nil)
	r := startRedis(t)
	s.redisAddr = r.addr
	s.rdb = redisClient(t, r.addr)
	extra := []string{"IDSYNC_PROCESSING_LAG_INTERVAL=1s", "IDSYNC_KAFKA_MAX_POLL_RECORDS=100"}
	a := s.start("a", extra...)
	ctx := context.Background()

	// The connections go straight to Redis (not through A's admin API), so
	// A has cached none of their audiences.
	st, err := store.New(s.rdb, store.Options{Prefix: s.prefix()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range demo.Connections() {
		cfg, err := idsync.ParseConfig(c.Config)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Put(ctx, store.Key{Space: demo.Space, Audience: c.Audience, Destination: c.Destination}, cfg, "e2e", 0); err != nil {
			t.Fatal(err)
		}
	}
	aMember := prOnlyMember(t, s)

	r.stop()
	prWait(t, 20*time.Second, "idsync_redis_up on A to drop to 0 after Redis stopped", func() (bool, string) {
		v := a.metric("idsync_redis_up")
		return v == 0, fmt.Sprintf("idsync_redis_up = %v", v)
	})
	inputs := s.produce(events(41, 1200))
	perPartition := map[int32]int{}
	for _, in := range inputs {
		perPartition[in.partition]++
	}
	if len(perPartition) != partitions {
		t.Fatalf("the events fill %d of %d partitions", len(perPartition), partitions)
	}

	// Every partition of A waits for configuration.
	prWait(t, 30*time.Second, "every partition of A to wait for configuration while Redis is down", func() (bool, string) {
		n, detail := prWaiting(t, a)
		return n == partitions, detail
	})

	// B joins: some of A's paused partitions move to B (which waits too).
	b := s.launch("b", extra...)
	var moved []int32
	prWait(t, 45*time.Second, "B to join the group and take partitions from A", func() (bool, string) {
		assigned, err := prAssignments(s)
		if err != nil {
			return false, err.Error()
		}
		moved = nil
		for m, ps := range assigned {
			if m != aMember {
				moved = append(moved, ps...)
			}
		}
		sort.Slice(moved, func(i, j int) bool { return moved[i] < moved[j] })
		return len(assigned) == 2 && len(moved) > 0 && len(assigned[aMember]) > 0, fmt.Sprintf("assignment %v", assigned)
	})
	t.Logf("B took partitions %v from A", moved)
	prWait(t, 30*time.Second, "B to wait for configuration on the partitions it took", func() (bool, string) {
		n, detail := prWaiting(t, b)
		return n > 0, detail
	})
	if v := a.metric(`idsync_rebalances_total{kind="revoked"}`); v < 1 {
		t.Errorf(`A: idsync_rebalances_total{kind="revoked"} = %v after B took partitions`, v)
	}

	// B stops: its partitions are handed back to A.
	if code, took := b.terminate(25 * time.Second); code != 0 {
		t.Fatalf("B: exit %d after SIGTERM (%s)", code, took)
	}
	prWait(t, 45*time.Second, "A to get every partition back after B left", func() (bool, string) {
		assigned, err := prAssignments(s)
		if err != nil {
			return false, err.Error()
		}
		return len(assigned) == 1 && len(assigned[aMember]) == partitions, fmt.Sprintf("assignment %v", assigned)
	})

	// Redis still down: the handed-back partitions wait again, visibly.
	// (Not fatal: on failure the test goes on to show whether the
	// partitions resume once Redis returns.)
	prExpect(t, 15*time.Second, fmt.Sprintf("A to show all %d partitions waiting for configuration after partitions %v came back", partitions, moved), func() (bool, string) {
		n, detail := prWaiting(t, a)
		return n == partitions, detail
	})
	series := scrapeSeries(t, a.ops)
	if v, ok := series[`idsync_partitions_waiting{reason="config_unavailable"}`]; !ok || v <= 0 {
		t.Errorf(`A: idsync_partitions_waiting{reason="config_unavailable"} = %v (exported: %v) while Redis is down; series: %v`,
			v, ok, seriesOf(series, "idsync_partitions_waiting"))
	}
	if v, ok := series["idsync_oldest_wait_seconds"]; !ok || v <= 0 {
		t.Errorf("A: idsync_oldest_wait_seconds = %v (exported: %v) while partitions wait", v, ok)
	}
	// /readyz names each waiting partition: "waiting: <topic>/<partition>
	// at offset <n>: <reason> for <age> (since <time>)".
	code, body := prReadyz(a)
	var unlisted []int
	for p := range partitions {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^waiting: %s/%d at offset \d+: config_unavailable for `, regexp.QuoteMeta(s.input), p)).MatchString(body) {
			unlisted = append(unlisted, p)
		}
	}
	if len(unlisted) > 0 {
		t.Errorf("A: /readyz (%d) does not list partitions %v as waiting for configuration:\n%s", code, unlisted, body)
	} else {
		t.Logf("A: /readyz while Redis is down (%d):\n%s", code, strings.TrimSpace(body))
	}
	if committed := prProgress(t, s); committed.done() {
		t.Fatalf("the input was fully committed while Redis was down: nothing waited (%s)", committed)
	}

	// Redis returns: every partition resumes and the lag reaches 0.
	r.restart()
	back := time.Now()
	prWait(t, 45*time.Second, "committed offsets to reach the end offsets on every partition after Redis returned", func() (bool, string) {
		p := prProgress(t, s)
		return p.done(), p.String()
	})
	resumed := time.Since(back)
	prWait(t, 20*time.Second, "idsync_consumer_lag_records to be 0 on every partition of A", func() (bool, string) {
		series := scrapeSeries(t, a.ops)
		var bad []string
		for p := range partitions {
			name := fmt.Sprintf(`idsync_consumer_lag_records{partition="%d"}`, p)
			if v, ok := series[name]; !ok || v != 0 {
				bad = append(bad, fmt.Sprintf("%d: %v (exported %v)", p, v, ok))
			}
		}
		return len(bad) == 0, "partition: lag " + strings.Join(bad, ", ")
	})
	prWait(t, 20*time.Second, "nothing to wait on A any more", func() (bool, string) {
		series := scrapeSeries(t, a.ops)
		total, detail := 0.0, []string{}
		for _, name := range append(seriesOf(series, "idsync_partitions_waiting"), seriesOf(series, "idsync_partitions_waiting_config")...) {
			total += series[name]
			detail = append(detail, fmt.Sprintf("%s %v", name, series[name]))
		}
		return total == 0, strings.Join(detail, ", ")
	})
	if code, body := prReadyz(a); code != 200 || strings.Contains(body, "waiting:") {
		t.Errorf("A: /readyz %d after the wait ended:\n%s", code, body)
	}

	// Every event's outputs are delivered; nothing was dead-lettered for
	// the outage.
	exp := s.expect(inputs, time.Now())
	tl := compare(exp, s.read(exp, false, 60*time.Second))
	logTally(t, "paused rebalance", tl)
	if tl.missing+tl.unexpected != 0 {
		t.Errorf("%d expected records missing, %d unexpected (lost or dead-lettered for the outage)", tl.missing, tl.unexpected)
	}
	if !a.running() {
		t.Errorf("A exited: %v", a.exitErr)
	}
	t.Logf("paused rebalance: %d events on %d partitions %v, partitions %v revoked and handed back; all committed %s after Redis returned; test %s",
		len(inputs), partitions, perPartition, moved, resumed.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// prWait polls cond every 200 ms until it holds, failing the test after
// within with what was awaited and the last state cond described.
func prWait(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stuck: waited %s for %s; last state: %s", within, what, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// prExpect is prWait that reports a timeout as an error and returns.
func prExpect(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("stuck: waited %s for %s; last state: %s", within, what, state)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// prWaiting returns how many partitions in waits for configuration, from
// idsync_partitions_waiting{reason="config_unavailable"} (or, from a
// binary without it, idsync_partitions_waiting_config: its absence is
// reported once the partitions are handed back), and the waiting series it
// read.
func prWaiting(t *testing.T, in *instance) (int, string) {
	t.Helper()
	series := scrapeSeries(t, in.ops)
	names := append(seriesOf(series, "idsync_partitions_waiting"), seriesOf(series, "idsync_partitions_waiting_config")...)
	var detail []string
	for _, n := range names {
		detail = append(detail, fmt.Sprintf("%s %v", n, series[n]))
	}
	v, ok := series[`idsync_partitions_waiting{reason="config_unavailable"}`]
	if !ok {
		v = series["idsync_partitions_waiting_config"]
	}
	return int(v), strings.Join(detail, ", ")
}

// prOnlyMember returns the member id of the group's single member.
func prOnlyMember(t *testing.T, s *stack) string {
	t.Helper()
	var id string
	prWait(t, 30*time.Second, "the group to have one member with every partition", func() (bool, string) {
		assigned, err := prAssignments(s)
		if err != nil {
			return false, err.Error()
		}
		for m := range assigned {
			id = m
		}
		return len(assigned) == 1, fmt.Sprintf("assignment %v", assigned)
	})
	return id
}

// prAssignments describes the group: member id → assigned input partitions.
func prAssignments(s *stack) (map[string][]int32, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	groups, err := s.adm.DescribeGroups(ctx, s.group())
	if err != nil {
		return nil, err
	}
	g, ok := groups[s.group()]
	if !ok {
		return nil, fmt.Errorf("group %s not described", s.group())
	}
	if g.Err != nil {
		return nil, g.Err
	}
	if g.State != "Stable" {
		return nil, fmt.Errorf("group %s is %s", s.group(), g.State)
	}
	out := map[string][]int32{}
	for _, m := range g.Members {
		out[m.MemberID] = nil
		ca, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		for _, tp := range ca.Topics {
			if tp.Topic == s.input {
				out[m.MemberID] = append(out[m.MemberID], tp.Partitions...)
			}
		}
	}
	return out, nil
}

// prProgress is the group's committed offset against the end offset, per
// input partition, read with kadm.
type prProgressT map[int32][2]int64

func prProgress(t *testing.T, s *stack) prProgressT {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := prProgressT{}
	ends, err := s.adm.ListEndOffsets(ctx, s.input)
	if err != nil {
		return out
	}
	committed, err := s.adm.FetchOffsets(ctx, s.group())
	if err != nil {
		return out
	}
	ends.Each(func(o kadm.ListedOffset) {
		c := int64(-1)
		if co, ok := committed.Lookup(o.Topic, o.Partition); ok {
			c = co.At
		}
		out[o.Partition] = [2]int64{c, o.Offset}
	})
	return out
}

func (p prProgressT) done() bool {
	if len(p) == 0 {
		return false
	}
	for _, v := range p {
		if v[0] < v[1] {
			return false
		}
	}
	return true
}

// String names the partitions that are behind: "partition 3 committed 40
// of 210".
func (p prProgressT) String() string {
	if len(p) == 0 {
		return "offsets could not be read"
	}
	var parts []int32
	for k := range p {
		parts = append(parts, k)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	var behind []string
	for _, k := range parts {
		if v := p[k]; v[0] < v[1] {
			behind = append(behind, fmt.Sprintf("partition %d committed %d of %d", k, v[0], v[1]))
		}
	}
	if len(behind) == 0 {
		return "every partition committed to its end"
	}
	return strings.Join(behind, "; ")
}

// prReadyz returns /readyz's status and body.
func prReadyz(in *instance) (int, string) {
	resp, err := http.Get("http://" + in.ops + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
