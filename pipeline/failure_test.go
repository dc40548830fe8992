package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/idsync/idsync/idsync"
)

// The regression tests of issue 12's numbered cases: each of them stopped
// the stream on d8c0b09 (the pipeline waited forever, returned an error or
// committed part of an event).

// alive fails the test when Run has returned: whatever the input, the
// pipeline never stops by itself.
func alive(t *testing.T, r *running) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		t.Fatalf("Run returned while records were flowing: %v", err)
	default:
	}
}

// keySource refuses, as the store does, spaces and audiences no connection
// can be stored under, and serves the fixture otherwise.
type keySource struct{ *staticSource }

var storeKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func (s keySource) Connections(ctx context.Context, space, audience string) ([]idsync.Connection, error) {
	if !storeKey.MatchString(space) {
		return nil, fmt.Errorf("config cache: %w: space must match %s", idsync.ErrInvalidKey, storeKey)
	}
	if !storeKey.MatchString(audience) {
		return nil, fmt.Errorf("config cache: %w: audience must match %s", idsync.ErrInvalidKey, storeKey)
	}
	return s.staticSource.Connections(ctx, space, audience)
}

// withSpace returns ev with its space_id replaced.
func withSpace(t *testing.T, ev []byte, space string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ev, &m); err != nil {
		t.Fatal(err)
	}
	m["space_id"] = space
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameKey builds n good events of one profile (n%37 fixed) for audience.
func sameKey(from, n int, audience string) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, event(from+37*i, audience, "entered"))
	}
	return out
}

// Case 1: an event whose space_id the store refuses was waited on forever
// and held back every later record of its partition.
func TestInvalidAudienceKeyIsDeadLettered(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.createInput(t, 1)
		src := keySource{fixture(t)}
		values := [][]byte{event(1, "aud_gg", "entered")}
		for _, space := range []string{"sp a", "sp/a", strings.Repeat("s", 200), "späce"} {
			values = append(values, withSpace(t, event(1, "aud_gg", "entered"), space))
		}
		values = append(values, sameKey(1, 50, "aud_gg")...)
		in := produceInputs(t, e, values)
		r := start(t, e, src, nil)
		waitCommitted(t, e, 60*time.Second)
		alive(t, r)
		want := expect(t, e, src, in, r.p.cfg.Options, r.p.cfg.Limits)
		if n := len(want[e.dlq()]); n != 4 {
			t.Fatalf("expected 4 dead letters, the oracle gives %d", n)
		}
		compare(t, want, readAll(t, e, want, false))
		if n := testutil.ToFloat64(r.p.m.dlqBy[idsync.CodeInvalidKey]); n != 4 {
			t.Errorf("idsync_dlq_records_total{code=invalid_key} = %v, want 4", n)
		}
	})
}

// blankErrors drops the error message of dead letters with code, whose text
// comes from the broker.
func blankErrors(recs map[string][]outRecord, topic string, code idsync.Code) {
	for i, r := range recs[topic] {
		if r.headers[idsync.HeaderErrorCode] == string(code) {
			recs[topic][i].headers[idsync.HeaderError] = ""
			recs[topic][i].headers[HeaderConnectExceptionMessage] = ""
		}
	}
}

// refusedFor turns the expected records of destination dest into dead
// letters with code destination_refused (one per input record).
func refusedFor(t *testing.T, e *env, want map[string][]outRecord, in []produced, dest string) {
	t.Helper()
	tmpl, _ := idsync.ParseTopicTemplate(e.template())
	topic := tmpl.Topic(dest)
	seen := map[string]bool{}
	for _, r := range want[topic] {
		src := r.headers[idsync.HeaderSource]
		if seen[src] {
			continue
		}
		seen[src] = true
		for _, p := range in {
			if fmt.Sprintf("%s/%d/%d", e.input(), p.partition, p.offset) != src {
				continue
			}
			want[e.dlq()] = append(want[e.dlq()], outRecord{key: string(p.key), value: string(p.value),
				headers: deadLetterHeaders(e, p, idsync.CodeDestinationRefused, "", dest)})
		}
	}
	delete(want, topic)
}

// Case 2: a destination topic an operator made with a max.message.bytes
// below the records idsync writes: every produce error was fatal, and the
// restart crash-looped. Now the record's destination is dead-lettered
// destination_refused, its other destinations deliver, and later records
// flow; in exactly_once nothing is duplicated.
func TestRefusedDestinationIsDeadLetteredOthersDeliver(t *testing.T) {
	for _, delivery := range []Delivery{AtLeastOnce, ExactlyOnce} {
		t.Run(string(delivery), func(t *testing.T) {
			backends(t, func(t *testing.T, e *env) {
				e.createInput(t, 2)
				tmpl, _ := idsync.ParseTopicTemplate(e.template())
				small := "300"
				if _, err := e.adm.CreateTopic(context.Background(), 1, 1, map[string]*string{"max.message.bytes": &small}, tmpl.Topic("zd_01")); err != nil {
					t.Fatal(err)
				}
				src := fixture(t)
				in := produceInputs(t, e, append(sameKey(0, 30, "aud_multi"), sameKey(1, 30, "aud_gg")...))
				r := start(t, e, src, func(c *Config) { c.Delivery = delivery })
				waitCommitted(t, e, 90*time.Second)
				alive(t, r)
				want := expect(t, e, src, in, r.p.cfg.Options, r.p.cfg.Limits)
				refusedFor(t, e, want, in, "zd_01")
				got := readAll(t, e, want, delivery == ExactlyOnce)
				blankErrors(got, e.dlq(), idsync.CodeDestinationRefused)
				if delivery == ExactlyOnce {
					compare(t, want, got)
				} else {
					containsAll(t, want, got)
				}
				if n := testutil.ToFloat64(r.p.m.dlqBy[idsync.CodeDestinationRefused]); n < 30 {
					t.Errorf("idsync_dlq_records_total{code=destination_refused} = %v, want ≥ 30", n)
				}
			})
		})
	}
}

// containsAll checks that got holds every record of want (at_least_once
// may repeat records, never lose or invent one).
func containsAll(t *testing.T, want, got map[string][]outRecord) {
	t.Helper()
	key := func(r outRecord) string {
		b, _ := json.Marshal(r.headers)
		return r.key + "|" + string(b) + "|" + r.value
	}
	for topic, w := range want {
		have := map[string]bool{}
		for _, r := range got[topic] {
			have[key(r)] = true
		}
		missing := 0
		for _, r := range w {
			if !have[key(r)] {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%s: %d of %d expected records missing", topic, missing, len(w))
		}
		wantSet := map[string]bool{}
		for _, r := range w {
			wantSet[key(r)] = true
		}
		for _, r := range got[topic] {
			if !wantSet[key(r)] {
				t.Errorf("%s: unexpected record %s", topic, key(r))
				break
			}
		}
	}
	for topic := range got {
		if _, ok := want[topic]; !ok {
			t.Errorf("unexpected topic %s", topic)
		}
	}
}

// Case 2: an input record far above the record limit was too_large but
// could not itself be dead-lettered (the DLQ refused it), which stopped the
// pipeline. Its dead letter now holds its first bytes and its size, and
// fits a DLQ topic made with a small max.message.bytes.
func TestOversizedDeadLetterIsTruncated(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.createInput(t, 1)
		small := "4096"
		if _, err := e.adm.CreateTopic(context.Background(), 1, 1, map[string]*string{"max.message.bytes": &small}, e.dlq()); err != nil {
			t.Fatal(err)
		}
		// Incompressible, so that the broker cannot take it whole.
		rnd := rand.New(rand.NewPCG(1, 2))
		pad := make([]byte, 40000)
		for i := range pad {
			pad[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[rnd.IntN(36)]
		}
		big := append([]byte(`{"pad":"`), append(pad, '"', '}')...)
		in := produceInputs(t, e, append([][]byte{event(1, "aud_gg", "entered"), big}, sameKey(1, 20, "aud_gg")...))
		r := start(t, e, fixture(t), func(c *Config) { c.MaxRecordBytes = 16 << 10 })
		waitCommitted(t, e, 60*time.Second)
		alive(t, r)
		got := readAll(t, e, map[string][]outRecord{e.dlq(): {{}}}, false)
		dl := got[e.dlq()]
		if len(dl) != 1 {
			t.Fatalf("got %d dead letters, want 1", len(dl))
		}
		h := dl[0].headers
		if h[idsync.HeaderErrorCode] != string(idsync.CodeTooLarge) || h[idsync.HeaderSourceOffset] != strconv.FormatInt(in[1].offset, 10) {
			t.Errorf("dead letter headers %v", h)
		}
		if h[HeaderOriginalSize] != strconv.Itoa(len(big)) {
			t.Errorf("%s = %q, want %d", HeaderOriginalSize, h[HeaderOriginalSize], len(big))
		}
		if len(dl[0].value) == 0 || len(dl[0].value) >= 4096 || !strings.HasPrefix(string(big), dl[0].value) {
			t.Errorf("dead letter value has %d bytes, want a prefix of the input below the DLQ topic's 4096", len(dl[0].value))
		}
		tmpl, _ := idsync.ParseTopicTemplate(e.template())
		out := readAll(t, e, map[string][]outRecord{tmpl.Topic("gads_01"): make([]outRecord, 21)}, false)
		if n := len(out[tmpl.Topic("gads_01")]); n < 21 {
			t.Errorf("%d records delivered after the oversized one, want 21", n)
		}
	})
}

// Case 4: a partition paused while its configuration could not be read
// stayed paused for good once it was revoked and handed back to the same
// member (the client keeps pauses across rebalances).
func TestPausedPartitionHandedBackResumes(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.createInput(t, 4)
		src := fixture(t)
		down := "aud_gg"
		src.fail.Store(&down)
		var values [][]byte
		for i := range 40 {
			values = append(values, event(i, "aud_gg", "entered"))
		}
		in := produceInputs(t, e, values)
		a := start(t, e, src, nil)
		waitHeld(t, a)
		// A second member takes some partitions, then leaves: they come
		// back to the first one, which had them paused.
		b := start(t, e, src, func(c *Config) { c.TransactionalID += ".b" })
		eventually(t, 60*time.Second, func() bool { return b.p.assigned.Load() > 0 },
			func() string { return "second member got no partition" })
		if err := b.stop(t); err != nil {
			t.Fatalf("second member: %v", err)
		}
		eventually(t, 60*time.Second, func() bool { return a.p.assigned.Load() == 4 },
			func() string { return fmt.Sprintf("first member has %d partitions, want 4", a.p.assigned.Load()) })
		src.fail.Store(nil)
		waitCommitted(t, e, 60*time.Second)
		alive(t, a)
		want := expect(t, e, src, in, a.p.cfg.Options, a.p.cfg.Limits)
		containsAll(t, want, readAll(t, e, want, false))
		if w := a.p.Waiting(); len(w) != 0 {
			t.Errorf("partitions still waiting: %+v", w)
		}
	})
}

// Case 5: in exactly_once, when a later destination's topic could not be
// made ready, the earlier destinations' records were already in the
// transaction, which committed with the offset rewound: the retry wrote
// them again. Now nothing of the record is produced until every topic it
// needs exists.
func TestExactlyOnceNeverCommitsPartOfAnEvent(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.createInput(t, 1)
		ctx := context.Background()
		tmpl, _ := idsync.ParseTopicTemplate(e.template())
		for _, topic := range []string{e.dlq(), tmpl.Topic("iter_01"), tmpl.Topic("zd_01")} {
			if _, err := e.adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
				t.Fatal(err)
			}
		}
		src := fixture(t)
		in := produceInputs(t, e, sameKey(0, 10, "aud_multi"))
		r := start(t, e, src, func(c *Config) { c.Delivery = ExactlyOnce; c.CreateTopics = false })
		eventually(t, 30*time.Second, func() bool { return r.p.waits.count(WaitTopic) > 0 },
			func() string { return "no partition waiting for the missing topic" })
		// A few attempts while it is missing (each looks the audience up).
		calls := src.calls.Load()
		eventually(t, 30*time.Second, func() bool { return src.calls.Load() >= calls+3 },
			func() string { return "the waiting record was not tried again" })
		if _, err := e.adm.CreateTopic(ctx, 1, 1, nil, tmpl.Topic("wh_01")); err != nil {
			t.Fatal(err)
		}
		waitCommitted(t, e, 60*time.Second)
		alive(t, r)
		want := expect(t, e, src, in, r.p.cfg.Options, r.p.cfg.Limits)
		compare(t, want, readAll(t, e, want, true))
	})
}

// Case 6: a destination topic deleted after its first use was never made
// again (its existence was cached for the life of the process) and the
// producer retried forever, stalling the instance while
// idsync_destination_topics_missing stayed 0.
func TestDeletedTopicIsMadeAgainOrWaitedFor(t *testing.T) {
	for _, create := range []bool{true, false} {
		t.Run(fmt.Sprintf("create=%v", create), func(t *testing.T) {
			backends(t, func(t *testing.T, e *env) {
				e.createInput(t, 1)
				ctx := context.Background()
				tmpl, _ := idsync.ParseTopicTemplate(e.template())
				topic := tmpl.Topic("gads_01")
				for _, tp := range []string{e.dlq(), topic} {
					if _, err := e.adm.CreateTopic(ctx, 1, 1, nil, tp); err != nil {
						t.Fatal(err)
					}
				}
				src := fixture(t)
				first := produceInputs(t, e, sameKey(1, 5, "aud_gg"))
				r := start(t, e, src, func(c *Config) { c.CreateTopics = create })
				waitCommitted(t, e, 60*time.Second)
				if _, err := e.adm.DeleteTopics(ctx, topic); err != nil {
					t.Fatal(err)
				}
				waitGone(t, e, topic)
				second := produceInputs(t, e, sameKey(38, 5, "aud_gg"))
				if !create {
					eventually(t, 60*time.Second, func() bool {
						return testutil.ToFloat64(r.p.m.missingTopics) == 1 && r.p.waits.count(WaitTopic) == 1
					}, func() string {
						return fmt.Sprintf("deleted topic not visible: missing=%v waiting=%+v", testutil.ToFloat64(r.p.m.missingTopics), r.p.Waiting())
					})
					if _, err := e.adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
						t.Fatal(err)
					}
				}
				waitCommitted(t, e, 90*time.Second)
				alive(t, r)
				want := expect(t, e, src, second, r.p.cfg.Options, r.p.cfg.Limits)
				containsAll(t, want, readAll(t, e, want, false))
				_ = first
				if n := testutil.ToFloat64(r.p.m.missingTopics); n != 0 {
					t.Errorf("idsync_destination_topics_missing = %v after the topic is back", n)
				}
			})
		})
	}
}

// eventually polls cond every 20 ms and fails the test with what() when it
// has not held within d.
func eventually(t *testing.T, d time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGone waits until topic is no longer listed.
func waitGone(t *testing.T, e *env, topic string) {
	t.Helper()
	eventually(t, 30*time.Second, func() bool {
		ts, err := e.adm.ListTopics(context.Background(), topic)
		return err == nil && !ts.Has(topic)
	}, func() string { return "topic " + topic + " still listed" })
}

// Case 7: a stored connection whose destination_type this binary does not
// know panicked on a nil counter. Its events are dead-lettered for that
// destination (invalid_config) and the audience's other connections
// deliver.
func TestUnknownDestinationTypeIsDeadLettered(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.createInput(t, 1)
		src := fixture(t)
		cfg := *mustConfig(t, `{"destination_type":"webhook","setup":"default"}`)
		cfg.DestinationType = "snapchat_audiences"
		conns := append([]idsync.Connection{}, src.conns["spa/aud_gg"]...)
		conns = append(conns, idsync.Connection{DestinationID: "snap_01", Versions: []idsync.Version{{Version: 1, Config: &cfg}}})
		src.conns["spa/aud_gg"] = conns
		produceInputs(t, e, sameKey(1, 10, "aud_gg"))
		r := start(t, e, src, nil)
		waitCommitted(t, e, 60*time.Second)
		alive(t, r)
		tmpl, _ := idsync.ParseTopicTemplate(e.template())
		got := readAll(t, e, map[string][]outRecord{e.dlq(): make([]outRecord, 10), tmpl.Topic("gads_01"): make([]outRecord, 10)}, false)
		if n := len(got[tmpl.Topic("gads_01")]); n != 10 {
			t.Errorf("%d records for the known destination, want 10", n)
		}
		if n := len(got[e.dlq()]); n != 10 {
			t.Fatalf("%d dead letters, want 10", n)
		}
		for _, d := range got[e.dlq()] {
			if d.headers[idsync.HeaderErrorCode] != string(idsync.CodeInvalidConfig) || d.headers[idsync.HeaderDestinationID] != "snap_01" {
				t.Errorf("dead letter headers %v", d.headers)
			}
		}
	})
}

// Case 9: the lag gauge was set only when a fetch returned records, so it
// froze exactly when a partition waited. It now comes from the committed
// offsets, and shows the waiting partition's lag, then 0.
func TestLagShowsWhileWaiting(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.createInput(t, 1)
		src := fixture(t)
		down := "aud_gg"
		src.fail.Store(&down)
		produceInputs(t, e, sameKey(1, 20, "aud_gg"))
		r := start(t, e, src, func(c *Config) { c.LagInterval = 100 * time.Millisecond })
		lag := func() float64 { return testutil.ToFloat64(r.p.m.lag.WithLabelValues("0")) }
		waitHeld(t, r)
		eventually(t, 30*time.Second, func() bool { return lag() == 20 },
			func() string { return fmt.Sprintf("lag of the waiting partition is %v, want 20", lag()) })
		if r.p.waits.oldest(time.Now()) <= 0 {
			t.Error("idsync_oldest_wait_seconds is 0 while a partition waits")
		}
		src.fail.Store(nil)
		waitCommitted(t, e, 60*time.Second)
		eventually(t, 30*time.Second, func() bool { return lag() == 0 },
			func() string { return fmt.Sprintf("lag is %v after every record was committed", lag()) })
		alive(t, r)
	})
}
