package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
)

// fakeResyncs serves resyncs from memory.
type fakeResyncs struct {
	mu sync.Mutex
	m  map[string]*idsync.Resync
}

func (f *fakeResyncs) Resync(_ context.Context, id string) (*idsync.Resync, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[id], nil
}

// resyncSource is one audience connected to one webhook, version 1 sending
// user ids, version 2 (effective at 12:00:02, before the resync starts)
// emails too.
func resyncSource(t *testing.T) *staticSource {
	v1 := mustConfig(t, `{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"last_added"}]}`)
	v2 := mustConfig(t, `{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"last_added"},{"segment":"email","destination":"email","strategy":"last_added"}]}`)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &staticSource{conns: map[string][]idsync.Connection{
		"spa/aud_rs": {{DestinationID: "wh_rs", Versions: []idsync.Version{
			{Version: 1, EffectiveAt: t0, UpdatedAt: t0, Config: v1},
			{Version: 2, EffectiveAt: testNow.Add(-3 * time.Second), UpdatedAt: t0, Config: v2},
		}}},
	}}
}

// memberEvent is an event of profile n of aud_rs at ts.
func memberEvent(n int, action string, ts time.Time) []byte {
	b, _ := json.Marshal(map[string]any{
		"message_id": fmt.Sprintf("rs-%s-%d-%d", action, n, ts.UnixMilli()), "timestamp": ts.Format(time.RFC3339Nano),
		"space_id": "spa", "audience_id": "aud_rs", "action": action,
		"profile": map[string]any{"segment_id": fmt.Sprintf("prof_%04d", n)},
		"external_ids": []map[string]any{
			{"type": "user_id", "id": fmt.Sprintf("u%d", n), "created_at": "2024-01-01T00:00:00Z"},
			{"type": "email", "id": fmt.Sprintf("p%d@example.com", n), "created_at": "2024-01-02T00:00:00Z"},
		},
	})
	return b
}

// destRecord is a record of the resync test's destination topic, as a
// delivery worker reads it.
type destRecord struct {
	profile, action, messageID, resync string
	version                            int64
	partition                          int32
	offset                             int64
}

func readDest(t *testing.T, e *env, topic string, readCommitted bool, until func([]destRecord) bool) []destRecord {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []destRecord
	deadline := time.Now().Add(60 * time.Second)
	var settle time.Time
	for time.Now().Before(deadline) {
		if until(out) {
			if settle.IsZero() {
				settle = time.Now().Add(time.Second) // then a little more, for extras
			} else if time.Now().After(settle) {
				return out
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
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
				t.Errorf("destination record is not JSON: %v", err)
			}
			hdr := ""
			for _, h := range r.Headers {
				if h.Key == HeaderResync {
					hdr = string(h.Value)
				}
			}
			if hdr != v.Idsync.ResyncID {
				t.Errorf("record %s: header %s=%q, envelope resync_id %q", v.MessageID, HeaderResync, hdr, v.Idsync.ResyncID)
			}
			out = append(out, destRecord{profile: v.SegmentID, action: v.Action, messageID: v.MessageID, resync: v.Idsync.ResyncID,
				version: v.Idsync.ConfigVersion, partition: r.Partition, offset: r.Offset})
		})
	}
	t.Fatalf("reading %s: condition not met within 60s (%d records)", topic, len(out))
	return nil
}

// TestResync: a resync re-sends the audience's current members once each
// under the version in effect at its start, to its destination only, with
// deterministic resync message ids; members who exited before get nothing;
// members whose live events arrive during the resync are left to the live
// stream, and the last record of every member at the destination matches
// its final state (no "entered" after its exit). A restart of the pipeline
// in the middle of the resync resumes it, and in exactly_once nothing is
// sent twice.
func TestResync(t *testing.T) {
	for _, mode := range []Delivery{AtLeastOnce, ExactlyOnce} {
		t.Run(string(mode), func(t *testing.T) {
			backends(t, func(t *testing.T, e *env) {
				testResync(t, e, mode)
			})
		})
	}
}

func testResync(t *testing.T, e *env, mode Delivery) {
	const members = 300
	e.createInput(t, 3)
	src := resyncSource(t)
	jobs := &fakeResyncs{m: map[string]*idsync.Resync{}}
	membership := e.prefix + ".membership"
	mutate := func(c *Config) {
		c.Delivery = mode
		c.MembershipTopic = membership
		c.Resyncs = jobs
		c.ResyncRate = 150 // members/s: the resync takes about two seconds
		c.ResyncStepMembers = 20
	}
	dest := e.prefix + ".dest.wh_rs"
	liveAt := testNow.Add(-5 * time.Second) // before version 2: live events get version 1

	// Phase 1: members enter; every fifth exits again.
	var values [][]byte
	for n := range members {
		values = append(values, memberEvent(n, "entered", liveAt))
	}
	for n := 0; n < members; n += 5 {
		values = append(values, memberEvent(n, "exited", liveAt.Add(time.Millisecond)))
	}
	produceInputs(t, e, values)
	r := start(t, e, src, mutate)
	readDest(t, e, dest, mode == ExactlyOnce, func(rs []destRecord) bool { return len(rs) >= len(values) })

	// Phase 2: the resync, and live events during it: exits of members
	// 1, 6, 11, … and new members 1000+.
	start0 := testNow.Add(-2 * time.Second)
	job := &idsync.Resync{ID: "rs_test-1", SpaceID: "spa", AudienceID: "aud_rs", DestinationID: "wh_rs", Version: 2, StartAt: start0,
		Secret: "0123456789abcdef0123456789abcdef"}
	jobs.mu.Lock()
	jobs.m["rs_test-1"] = job
	jobs.mu.Unlock()
	produceTo(t, e, ResyncStartRecords(e.input(), 3, job)...)
	waitProgress := func(min int64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			var done int64
			for _, p := range r.p.ResyncProgress("rs_test-1") {
				done += p.Done
			}
			if done >= min {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("resync progress did not reach %d members", min)
	}
	waitProgress(20)
	var during [][]byte
	exitedDuring := map[string]bool{}
	for n := 1; n < members; n += 5 {
		during = append(during, memberEvent(n, "exited", testNow))
		exitedDuring[fmt.Sprintf("prof_%04d", n)] = true
	}
	newMembers := map[string]bool{}
	for n := 1000; n < 1020; n++ {
		during = append(during, memberEvent(n, "entered", testNow))
		newMembers[fmt.Sprintf("prof_%04d", n)] = true
	}
	produceInputs(t, e, during)

	// A restart in the middle of the resync: the next instance resumes it.
	waitProgress(100)
	if err := r.stop(t); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	// A partition can finish before the restart (the instance's token
	// bucket holds up to a second of members, one partition may take them
	// all): progress is per instance, so the next one never sees it.
	finishedBefore := map[int32]bool{}
	before := r.p.ResyncProgress("rs_test-1")
	for _, p := range before {
		if p.Finished {
			finishedBefore[p.Partition] = true
		}
	}
	t.Logf("%s: %d of 3 partitions finished before the restart", mode, len(finishedBefore))
	r = start(t, e, src, mutate)

	// Every partition finishes, those left unfinished by the restart in
	// the next instance.
	deadline := time.Now().Add(90 * time.Second)
	for {
		ps := r.p.ResyncProgress("rs_test-1")
		finished := maps.Clone(finishedBefore)
		for _, p := range ps {
			if p.Finished {
				finished[p.Partition] = true
			}
		}
		if len(finished) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resync did not finish on 3 partitions: before the restart %+v, after %+v", before, ps)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Expected final state.
	final := map[string]string{}
	for n := range members {
		p := fmt.Sprintf("prof_%04d", n)
		final[p] = "entered"
		if n%5 == 0 || exitedDuring[p] {
			final[p] = "exited"
		}
	}
	for p := range newMembers {
		final[p] = "entered"
	}
	wantLive := len(values) + len(during)
	got := readDest(t, e, dest, mode == ExactlyOnce, func(rs []destRecord) bool {
		live, snapshot := 0, 0
		for _, r := range rs {
			if r.resync == "" {
				live++
			} else {
				snapshot++
			}
		}
		// Members neither exited before nor touched during: one each.
		return live >= wantLive && snapshot >= members-members/5-len(exitedDuring)
	})

	resent := map[string]int{}
	last := map[string]destRecord{}
	live := 0
	for _, r := range got {
		if old, ok := last[r.profile]; !ok || r.offset > old.offset {
			if ok && old.partition != r.partition {
				t.Errorf("profile %s in two partitions of the destination", r.profile)
			}
			last[r.profile] = r
		}
		if r.resync == "" {
			live++
			continue
		}
		resent[r.profile]++
		if r.resync != "rs_test-1" || r.version != 2 || r.action != "entered" {
			t.Errorf("resync record %+v: want resync rs_test-1, version 2, entered", r)
		}
		if !strings.Contains(r.messageID, ":resync:rs_test-1:wh_rs:") {
			t.Errorf("resync record message id %q does not name the resync", r.messageID)
		}
	}
	if mode == ExactlyOnce && live != wantLive {
		t.Errorf("live records: %d, want %d", live, wantLive)
	}
	if live < wantLive {
		t.Errorf("live records: %d, want at least %d", live, wantLive)
	}
	for p, state := range final {
		n := resent[p]
		switch {
		case newMembers[p] && n != 0:
			t.Errorf("%s entered during the resync: %d resync records, want 0 (the live stream sends it)", p, n)
		case state == "exited" && !exitedDuring[p] && n != 0:
			t.Errorf("%s exited before the resync: %d resync records, want 0", p, n)
		case exitedDuring[p] && n > 1:
			t.Errorf("%s: %d resync records, want at most 1", p, n)
		case state == "entered" && !newMembers[p] && n != 1 && (mode == ExactlyOnce || n == 0):
			t.Errorf("%s is a member: %d resync records, want exactly 1", p, n)
		}
		if l := last[p]; l.action != state {
			t.Errorf("%s: last record at the destination is %q (resync %q), want %q", p, l.action, l.resync, state)
		}
	}
	t.Logf("%s: %d live records, %d members re-sent", mode, live, len(resent))
}

// TestResyncHostileControlRecords: control records anyone who can write the
// input topic could write never stop the stream: malformed ones and forged
// ones (a mac that does not verify, a copy moved to another partition) are
// dead-lettered with the reason, one naming no stored resync is ignored,
// and the live events behind each are delivered.
func TestResyncHostileControlRecords(t *testing.T) {
	e, _ := kfakeEnv(t, 1)
	e.createInput(t, 2)
	src := resyncSource(t)
	job := &idsync.Resync{ID: "rs_real", SpaceID: "spa", AudienceID: "aud_rs", DestinationID: "wh_rs", Version: 2,
		StartAt: testNow.Add(-time.Second), Secret: "0123456789abcdef0123456789abcdef"}
	jobs := &fakeResyncs{m: map[string]*idsync.Resync{"rs_real": job}}
	r := start(t, e, src, func(c *Config) {
		c.MembershipTopic = e.prefix + ".membership"
		c.Resyncs = jobs
	})
	hdr := []kgo.RecordHeader{{Key: HeaderControl, Value: []byte(ControlResync)}}
	real := ResyncStartRecords(e.input(), 2, job)
	moved := *real[0]
	moved.Partition = 1 // signed for partition 0
	forged, _ := json.Marshal(resyncControl{ResyncID: "rs_real", Step: 7, End: 1 << 40, Next: 0, MAC: "00"})
	unknown, _ := json.Marshal(resyncControl{ResyncID: "rs_nope"})
	recs := []*kgo.Record{
		{Topic: e.input(), Partition: 0, Value: []byte("{not json"), Headers: hdr},
		{Topic: e.input(), Partition: 0, Value: []byte(`{"resync_id":"rs_real"}`), Headers: []kgo.RecordHeader{{Key: HeaderControl, Value: []byte("other")}}},
		{Topic: e.input(), Partition: 0, Value: forged, Headers: hdr},
		{Topic: e.input(), Partition: 1, Value: moved.Value, Headers: hdr},
		{Topic: e.input(), Partition: 1, Value: unknown, Headers: hdr},
	}
	for p := range int32(2) {
		recs = append(recs, &kgo.Record{Topic: e.input(), Partition: p, Value: memberEvent(int(p), "entered", testNow.Add(-time.Minute))})
	}
	produceTo(t, e, recs...)
	waitCommitted(t, e, 60*time.Second)
	alive(t, r)
	dest := readDest(t, e, e.prefix+".dest.wh_rs", false, func(rs []destRecord) bool { return len(rs) >= 2 })
	for _, d := range dest {
		if d.resync != "" {
			t.Errorf("a hostile control record made a resync record: %+v", d)
		}
	}
	codes := map[string]int{}
	dl := readAll(t, e, map[string][]outRecord{e.dlq(): make([]outRecord, 4)}, false)
	for _, d := range dl[e.dlq()] {
		codes[d.headers[idsync.HeaderErrorCode]]++
	}
	if codes[string(idsync.CodeMalformedJSON)] != 2 || codes[string(idsync.CodeSchemaViolation)] != 2 {
		t.Errorf("dead letters by code %v, want 2 malformed_json (bad JSON, unknown kind) and 2 schema_violation (bad mac, moved)", codes)
	}
	if n := testutil.ToFloat64(r.p.m.resyncIgnored); n != 1 {
		t.Errorf("idsync_resync_control_ignored_total = %v, want 1 (the unknown resync)", n)
	}
}

// TestResyncCancel: a resync cancelled while it runs sends nothing more:
// each partition's chain ends at its next control record, its progress
// shows it cancelled, and the live stream goes on.
func TestResyncCancel(t *testing.T) {
	e, _ := kfakeEnv(t, 1)
	e.createInput(t, 2)
	src := resyncSource(t)
	var values [][]byte
	for n := range 400 {
		values = append(values, memberEvent(n, "entered", testNow.Add(-time.Minute)))
	}
	produceInputs(t, e, values)
	job := &idsync.Resync{ID: "rs_cancel", SpaceID: "spa", AudienceID: "aud_rs", DestinationID: "wh_rs", Version: 2,
		StartAt: testNow.Add(-time.Second), Secret: "0123456789abcdef0123456789abcdef"}
	jobs := &fakeResyncs{m: map[string]*idsync.Resync{"rs_cancel": job}}
	r := start(t, e, src, func(c *Config) {
		c.MembershipTopic = e.prefix + ".membership"
		c.Resyncs = jobs
		c.ResyncRate = 20 // a step of 10 every half second: slow enough to cancel mid-way
		c.ResyncStepMembers = 10
	})
	dest := e.prefix + ".dest.wh_rs"
	readDest(t, e, dest, false, func(rs []destRecord) bool { return len(rs) >= 400 })
	produceTo(t, e, ResyncStartRecords(e.input(), 2, job)...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var done int64
		for _, p := range r.p.ResyncProgress("rs_cancel") {
			done += p.Done
		}
		if done >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the resync did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	at := testNow
	jobs.mu.Lock()
	cancelled := *job
	cancelled.CancelledAt = &at
	jobs.m["rs_cancel"] = &cancelled
	jobs.mu.Unlock()
	deadline = time.Now().Add(30 * time.Second)
	for {
		ps := r.p.ResyncProgress("rs_cancel")
		n := 0
		for _, p := range ps {
			if p.Cancelled {
				n++
			}
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress after the cancel: %+v, want both partitions cancelled", ps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	count := func() int {
		n := 0
		for _, d := range readDest(t, e, dest, false, func(rs []destRecord) bool { return len(rs) >= 400 }) {
			if d.resync != "" {
				n++
			}
		}
		return n
	}
	before := count()
	time.Sleep(2 * time.Second) // steps would come every half second
	if after := count(); after != before || before >= 400 {
		t.Errorf("resync records: %d at the cancel, %d two seconds later (of 400 members): want it stopped", before, after)
	}
	// The live stream goes on.
	produceInputs(t, e, [][]byte{memberEvent(9999, "entered", testNow)})
	readDest(t, e, dest, false, func(rs []destRecord) bool { return len(rs) >= 401+before })
	alive(t, r)
}

// produceTo writes recs to the partitions they name.
func produceTo(t *testing.T, e *env, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
