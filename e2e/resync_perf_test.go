package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestResyncLiveEffect measures (it asserts nothing about speed) what a
// resync at the default rate limit costs the live stream, with the real
// binary: one instance, six partitions; 40,000 members of aud_a; then a
// backlog of 60,000 live events of aud_b drained alone, and another drained
// while aud_a is resynced (once it has started on every partition). It reports both drain rates, their ratio and the
// resync's members/s (docs/performance.md). Opt-in:
// IDSYNC_TEST_RESYNC_PERF=1.
func TestResyncLiveEffect(t *testing.T) {
	if os.Getenv("IDSYNC_TEST_RESYNC_PERF") == "" {
		t.Skip("a measurement: set IDSYNC_TEST_RESYNC_PERF=1 (docs/performance.md, Resync)")
	}
	const members, live = 40000, 60000
	s := newStack(t, 6)
	in := s.start("a", "IDSYNC_CONNECTIONS_ACTIVATION_DELAY=2s")
	v1 := json.RawMessage(`{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"last_added"}]}`)
	v2 := json.RawMessage(`{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"last_added"},{"segment":"email","destination":"email","strategy":"last_added"}]}`)
	in.put("spa_rs", "aud_a", "wh_a", v1)
	in.put("spa_rs", "aud_b", "wh_b", v1)
	batch := func(aud string, from, n int) ([]string, [][]byte) {
		var keys []string
		var values [][]byte
		now := time.Now()
		for i := from; i < from+n; i++ {
			keys = append(keys, "spa_rs:"+resyncMember(aud, i))
			values = append(values, resyncEvent(aud, i, "entered", now))
		}
		return keys, values
	}
	s.produceRaw(batch("aud_a", 0, members))
	s.waitCommitted(5 * time.Minute)
	_, effective := in.put("spa_rs", "aud_a", "wh_a", v2)
	time.Sleep(time.Until(effective) + time.Second)

	// The live events are drained once aud_b's destination holds one
	// record for each (the input's end moves on while a resync's control
	// records are appended, so its commits are no measure).
	destB := s.topicOf("wh_b")
	sent := 0
	drain := func(n int) float64 {
		k, v := batch("aud_b", sent, n)
		sent += n
		start := time.Now()
		s.produceRaw(k, v)
		deadline := time.Now().Add(5 * time.Minute)
		for s.topicEnd(destB) < int64(sent) {
			if time.Now().After(deadline) {
				t.Fatalf("%s holds %d records, want %d", destB, s.topicEnd(destB), sent)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return float64(n) / time.Since(start).Seconds()
	}
	drain(2000) // warm-up: aud_b's topic made and its connections cached
	alone := drain(live)

	code, stdout, stderr := in.cli("", "config", "resync", "spa_rs", "aud_a", "wh_a", "-o", "json")
	if code != 0 {
		t.Fatalf("idsync config resync: exit %d: %s", code, stderr)
	}
	var started apiResync
	if err := json.Unmarshal([]byte(stdout), &started); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	// Once the partitions' snapshots are read (a read of the membership
	// topic per partition, once per resync and owner), in the steady part.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r, ok := in.getResync(started.ID)
		if ok && r.Total > 0 && len(r.Progress) == int(r.Partitions) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the resync did not start on every partition within 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	during := drain(live)
	code, _, stderr = in.cli("", "config", "resync-status", started.ID, "--wait")
	if code != 0 {
		t.Fatalf("resync-status --wait: exit %d: %s", code, stderr)
	}
	resyncS := time.Since(began).Seconds()
	figures := map[string]any{"members": members, "live_events": live, "live_events_per_s_alone": round(alone),
		"live_events_per_s_during_resync": round(during), "ratio": round(during / alone),
		"resync_s": round(resyncS), "resync_members_per_s": round(float64(members) / resyncS), "resync_rate_setting": 2000}
	report(t, figures)
	t.Log(fmt.Sprint(figures))
}
