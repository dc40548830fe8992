package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestResyncBinary follows docs/resync.md with the real binary, two
// instances on six partitions: members enter two audiences (aud_a, aud_b),
// some exit; aud_a's webhook connection is edited (version 2 adds the
// email); `idsync config resync` re-sends aud_a's members; live exits and
// entries arrive during it; one instance is SIGKILLed once the resync is
// half done and restarted; `idsync config resync-status --wait` waits for
// the end. Then the destination holds exactly one resync record (version 2)
// for every member of aud_a that no live event touched meanwhile (at
// least one in at_least_once), none for members who exited before, none
// for members who entered during it, none at aud_b's destination, and the
// last record of every member matches its final state: no "entered" after
// an exit.
func TestResyncBinary(t *testing.T) {
	for _, delivery := range []string{"at_least_once", "exactly_once"} {
		t.Run(delivery, func(t *testing.T) {
			testResyncBinary(t, delivery)
		})
	}
}

// resyncMember is a profile of the resync test.
func resyncMember(audience string, n int) string { return fmt.Sprintf("%s_p%06d", audience, n) }

func resyncEvent(audience string, n int, action string, ts time.Time) []byte {
	b, _ := json.Marshal(map[string]any{
		"message_id": fmt.Sprintf("%s-%s-%d-%d", audience, action, n, ts.UnixNano()), "timestamp": ts.UTC().Format(time.RFC3339Nano),
		"space_id": "spa_rs", "audience_id": audience, "action": action,
		"profile": map[string]any{"segment_id": resyncMember(audience, n)},
		"external_ids": []map[string]any{
			{"type": "user_id", "id": fmt.Sprintf("u%d", n), "created_at": "2024-01-01T00:00:00Z"},
			{"type": "email", "id": fmt.Sprintf("p%d@example.com", n), "created_at": "2024-01-02T00:00:00Z"},
		},
	})
	return b
}

func (s *stack) produceRaw(keys []string, values [][]byte) {
	s.t.Helper()
	cl := s.client(kgo.DefaultProduceTopic(s.input), kgo.ProducerBatchMaxBytes(4<<20))
	recs := make([]*kgo.Record, len(values))
	for i := range values {
		recs[i] = &kgo.Record{Key: []byte(keys[i]), Value: values[i]}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		s.t.Fatal(err)
	}
}

// apiResync is GET /v1/resyncs/{id}, as much as the test reads.
type apiResync struct {
	ID         string            `json:"id"`
	State      string            `json:"state"`
	Version    int64             `json:"version"`
	Done       int64             `json:"done"`
	Total      int64             `json:"total"`
	Finished   int32             `json:"partitions_finished"`
	Partitions int32             `json:"partitions"`
	Progress   []json.RawMessage `json:"progress"`
}

func (in *instance) getResync(id string) (apiResync, bool) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+in.admin+"/v1/resyncs/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return apiResync{}, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r apiResync
	if resp.StatusCode != 200 || json.Unmarshal(body, &r) != nil {
		return apiResync{}, false
	}
	return r, true
}

// destRecord is one record of a destination topic, as a delivery worker
// reads it.
type destRecord struct {
	profile, action, messageID, resync string
	version                            int64
	partition                          int32
	offset                             int64
}

func (s *stack) readDest(topic string, readCommitted bool, done func([]destRecord) bool, within time.Duration) []destRecord {
	s.t.Helper()
	opts := []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl := s.client(opts...)
	var out []destRecord
	deadline := time.Now().Add(within)
	var settle time.Time
	for time.Now().Before(deadline) {
		if done(out) {
			if settle.IsZero() {
				settle = time.Now().Add(2 * time.Second)
			} else if time.Now().After(settle) {
				return out
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var v struct {
				MessageID string `json:"message_id"`
				SegmentID string `json:"segment_id"`
				Action    string `json:"action"`
				Idsync    struct {
					ConfigVersion int64  `json:"config_version"`
					ResyncID      string `json:"resync_id"`
				} `json:"idsync"`
			}
			if err := json.Unmarshal(r.Value, &v); err != nil {
				s.t.Errorf("%s: a record that is not JSON: %v", topic, err)
			}
			out = append(out, destRecord{profile: v.SegmentID, action: v.Action, messageID: v.MessageID, resync: v.Idsync.ResyncID,
				version: v.Idsync.ConfigVersion, partition: r.Partition, offset: r.Offset})
		})
	}
	if done(out) {
		return out
	}
	s.t.Fatalf("%s: %d records read within %s, not all expected", topic, len(out), within)
	return nil
}

func testResyncBinary(t *testing.T, delivery string) {
	nA, nB := pick(8000, 80000), pick(2000, 20000)
	rate := pick(1000, 5000) // members/s per instance
	s := newStack(t, 6)
	extra := []string{"IDSYNC_KAFKA_DELIVERY=" + delivery, "IDSYNC_CONNECTIONS_ACTIVATION_DELAY=3s",
		fmt.Sprint("IDSYNC_RESYNC_RATE=", rate), "IDSYNC_RESYNC_STEP_MEMBERS=200"}
	ins := []*instance{s.start("a", extra...), s.start("b", extra...)}
	v1 := json.RawMessage(`{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"last_added"}]}`)
	v2 := json.RawMessage(`{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"last_added"},{"segment":"email","destination":"email","strategy":"last_added"}]}`)
	ins[0].put("spa_rs", "aud_a", "wh_a", v1)
	ins[0].put("spa_rs", "aud_b", "wh_b", v1)

	// Members enter; every tenth exits again.
	final := map[string]string{}
	var keys []string
	var values [][]byte
	add := func(aud string, n int, action string, ts time.Time) {
		p := resyncMember(aud, n)
		keys = append(keys, "spa_rs:"+p)
		values = append(values, resyncEvent(aud, n, action, ts))
		final[p] = action
	}
	now := time.Now()
	for n := range nA {
		add("aud_a", n, "entered", now)
	}
	for n := range nB {
		add("aud_b", n, "entered", now)
	}
	exitedBefore := map[string]bool{}
	for n := 0; n < nA; n += 10 {
		add("aud_a", n, "exited", now.Add(time.Millisecond))
		exitedBefore[resyncMember("aud_a", n)] = true
	}
	s.produceRaw(keys, values)
	liveBefore := len(values)
	s.waitCommitted(3 * time.Minute)

	// Version 2, then the resync: it starts when version 2 takes effect.
	version, effective := ins[0].put("spa_rs", "aud_a", "wh_a", v2)
	code, stdout, stderr := ins[1].cli("", "config", "resync", "spa_rs", "aud_a", "wh_a", "-o", "json")
	if code != 0 {
		t.Fatalf("idsync config resync: exit %d: %s", code, stderr)
	}
	var started apiResync
	if err := json.Unmarshal([]byte(stdout), &started); err != nil || started.ID == "" {
		t.Fatalf("idsync config resync printed %q: %v", stdout, err)
	}
	if started.Version != version || started.State != "scheduled" {
		t.Errorf("resync started with version %d, state %q; want version %d, scheduled (version 2 takes effect at %s)",
			started.Version, started.State, version, effective)
	}
	t.Logf("resync %s of version %d, effective at %s", started.ID, version, effective.Format(time.RFC3339Nano))

	// Live events during the resync: exits of members 1, 11, 21, … and
	// new members, once it has begun.
	began := time.Now()
	waitDone := func(frac float64) apiResync {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for time.Now().Before(deadline) {
			for _, in := range ins {
				if r, ok := in.getResync(started.ID); ok && r.Total > 0 && len(r.Progress) == int(r.Partitions) && float64(r.Done) >= frac*float64(r.Total) {
					return r
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("resync %s did not reach %.0f%%", started.ID, frac*100)
		return apiResync{}
	}
	waitDone(0.05)
	keys, values = nil, nil
	exitedDuring := map[string]bool{}
	for n := 1; n < nA; n += 10 {
		add("aud_a", n, "exited", time.Now())
		exitedDuring[resyncMember("aud_a", n)] = true
	}
	newMembers := map[string]bool{}
	for n := nA; n < nA+nA/20; n++ {
		add("aud_a", n, "entered", time.Now())
		newMembers[resyncMember("aud_a", n)] = true
	}
	s.produceRaw(keys, values)
	liveDuring := len(values)

	// Half way: SIGKILL one instance, start it again.
	half := waitDone(0.5)
	ins[0].kill()
	killedAt := time.Now()
	ins[0] = s.launch("a", extra...)
	t.Logf("killed instance a at %d/%d members", half.Done, half.Total)

	// The API first, with a deadline (a resync that never finishes fails
	// the test instead of hanging it), then the CLI's --wait.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if r, ok := ins[1].getResync(started.ID); ok && r.State != "running" && r.State != "scheduled" {
			break
		}
		if time.Now().After(deadline) {
			r, _ := ins[1].getResync(started.ID)
			t.Fatalf("resync %s not finished within 3 minutes of the kill: %+v", started.ID, r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	code, stdout, stderr = ins[1].cli("", "config", "resync-status", started.ID, "--wait", "-o", "json")
	if code != 0 {
		t.Fatalf("idsync config resync-status --wait: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "resync") {
		t.Errorf("resync-status --wait drew no progress on stderr: %q", stderr)
	}
	var end apiResync
	if err := json.Unmarshal([]byte(stdout), &end); err != nil || end.State != "finished" {
		t.Fatalf("resync-status --wait ended with %q: %v", stdout, err)
	}
	elapsed := time.Since(began)
	wantTotal := int64(nA - len(exitedBefore))
	if end.Total != wantTotal || end.Done != wantTotal {
		t.Errorf("resync progress %d/%d, want %d/%d (the members of aud_a when it started)", end.Done, end.Total, wantTotal, wantTotal)
	}

	// What the destinations hold.
	eos := delivery == "exactly_once"
	s.waitCommitted(3 * time.Minute)
	untouched := wantTotal - int64(len(exitedDuring))
	wantA := liveBefore - nB + liveDuring // every live event of aud_a gives one record (user_id)
	got := s.readDest(s.topicOf("wh_a"), eos, func(rs []destRecord) bool {
		live, resent := 0, int64(0)
		for _, r := range rs {
			if r.resync == "" {
				live++
			} else {
				resent++
			}
		}
		return live >= wantA && resent >= untouched
	}, 3*time.Minute)
	gotB := s.readDest(s.topicOf("wh_b"), eos, func(rs []destRecord) bool { return len(rs) >= nB }, time.Minute)
	for _, r := range gotB {
		if r.resync != "" {
			t.Errorf("aud_b's destination got a resync record: %+v", r)
			break
		}
	}

	resent := map[string]int{}
	last := map[string]destRecord{}
	live, duplicates, missing := 0, 0, 0
	for _, r := range got {
		if old, ok := last[r.profile]; !ok || r.offset > old.offset {
			last[r.profile] = r
		}
		if r.resync == "" {
			live++
			continue
		}
		resent[r.profile]++
		if r.resync != started.ID || r.version != version || r.action != "entered" || !strings.Contains(r.messageID, ":resync:"+started.ID+":wh_a:") {
			t.Errorf("resync record %+v: want resync %s, version %d, entered", r, started.ID, version)
		}
	}
	bad := 0
	for p, state := range final {
		if !strings.HasPrefix(p, "aud_a") {
			continue
		}
		n := resent[p]
		switch {
		case newMembers[p] && n != 0, exitedBefore[p] && n != 0:
			bad++
		case exitedDuring[p] && n > 1 && eos:
			duplicates++
		case state == "entered" && !newMembers[p] && n == 0:
			missing++
		case state == "entered" && !newMembers[p] && n > 1:
			duplicates++
		}
		if last[p].action != state {
			bad++
			if bad < 5 {
				t.Errorf("%s: the last record at the destination is %q (resync %q), want %q", p, last[p].action, last[p].resync, state)
			}
		}
	}
	report(t, map[string]any{"delivery": delivery, "members": wantTotal, "live_exits_during": len(exitedDuring),
		"live_entries_during": len(newMembers), "kills": 1, "resync_s": round(elapsed.Seconds()),
		"members_per_s": round(float64(wantTotal) / elapsed.Seconds()), "missing": missing, "duplicates": duplicates,
		"order_or_scope_violations": bad, "recovered_s_after_kill": round(time.Since(killedAt).Seconds())})
	t.Logf("%s: %d members re-sent in %s (%d live records), %d missing, %d duplicated, %d violations",
		delivery, len(resent), elapsed.Round(time.Millisecond), live, missing, duplicates, bad)
	if missing != 0 || bad != 0 {
		t.Errorf("%d members missing their resync record, %d order or scope violations", missing, bad)
	}
	if eos && duplicates != 0 {
		t.Errorf("%d members got their resync record twice in exactly_once", duplicates)
	}
	if eos && live != wantA {
		t.Errorf("%d live records at aud_a's destination, want %d", live, wantA)
	}
}
