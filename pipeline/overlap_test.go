package pipeline

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Tests of the overlap of a batch's acknowledgements with the next poll
// (at_least_once; see Pipeline.overlap), on kfake, whose request control
// holds the first produce request until the test lets it go.

// holdFirstProduce holds the cluster's first produce request until until
// returns true (checked every 10 ms) or within passes, then answers it
// with code for every partition (0: as the broker would). It returns
// whether until was met while the request was held, once it was let go.
func holdFirstProduce(c *kfake.Cluster, within time.Duration, until func() bool, code int16) <-chan bool {
	met := make(chan bool, 1)
	var seen atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		if seen.Add(1) > 1 {
			c.DropControl()
			return nil, nil, false
		}
		ok := false
		c.SleepControl(func() {
			deadline := time.Now().Add(within)
			for time.Now().Before(deadline) {
				if ok = until(); ok {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
		met <- ok
		if code == 0 {
			return nil, nil, false
		}
		return produceError(kreq, code), nil, true
	})
	return met
}

// distinct builds n events of n profiles for audience.
func distinct(n int, audience string) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, event(i, audience, "entered"))
	}
	return out
}

// In at_least_once the next batch is polled and processed while the one
// before it waits for its acknowledgements; in exactly_once (one
// transaction at a time) it is not, nor with the membership topic (a
// resync's snapshot must hold every earlier record's membership). Either
// way every record is delivered once, in order, and every offset
// committed.
func TestNextBatchOverlapsAcknowledgements(t *testing.T) {
	for _, tc := range []struct {
		delivery   Delivery
		membership bool
		overlap    bool
	}{{AtLeastOnce, false, true}, {ExactlyOnce, false, false}, {AtLeastOnce, true, false}} {
		name := string(tc.delivery)
		if tc.membership {
			name += "_membership"
		}
		t.Run(name, func(t *testing.T) {
			e, c := kfakeEnv(t, 1)
			e.createInput(t, 1)
			src := fixture(t)
			in := produceInputs(t, e, distinct(40, "aud_multi"))
			const batch = 10
			// Held until a record of the second batch is processed (its
			// connections looked up), for at most 3 s.
			met := holdFirstProduce(c, 3*time.Second, func() bool { return src.calls.Load() > batch }, 0)
			r := start(t, e, src, func(c *Config) {
				c.Delivery = tc.delivery
				c.MaxPollRecords = batch
				if tc.membership {
					c.MembershipTopic = e.prefix + ".membership"
				}
			})
			select {
			case ok := <-met:
				if ok != tc.overlap {
					t.Errorf("the next batch processed while the first one's records were unacknowledged: %v, want %v (%d lookups)",
						ok, tc.overlap, src.calls.Load())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no produce request within 30s")
			}
			waitCommitted(t, e, 30*time.Second)
			alive(t, r)
			want := expect(t, e, src, in, r.p.cfg.Options, r.p.cfg.Limits)
			compare(t, want, readAll(t, e, want, tc.delivery == ExactlyOnce))
		})
	}
}

// A record of the batch in flight fails while the next batch, with later
// records of the same partition, is already produced: the partition goes
// back to the failed record (nothing after it is committed before it is
// delivered) and every record is delivered in the end, each profile's last
// record last.
func TestOverlappedFailureGoesBackToTheFailedRecord(t *testing.T) {
	e, c := kfakeEnv(t, 1)
	e.createInput(t, 1)
	src := fixture(t)
	// Two events of each profile: entered in the first half, exited in
	// the second, so that order shows.
	var values [][]byte
	for i := range 30 {
		values = append(values, event(i, "aud_multi", "entered"))
	}
	for i := range 30 {
		values = append(values, event(i, "aud_multi", "exited"))
	}
	in := produceInputs(t, e, values)
	const batch = 10
	met := holdFirstProduce(c, 3*time.Second, func() bool { return src.calls.Load() > batch }, kerr.UnknownServerError.Code)
	r := start(t, e, src, func(c *Config) { c.MaxPollRecords = batch; c.RetryBackoff = 50 * time.Millisecond })
	select {
	case ok := <-met:
		if !ok {
			t.Errorf("the next batch was not processed while the first one's records were held (%d lookups)", src.calls.Load())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no produce request within 30s")
	}
	waitCommitted(t, e, 30*time.Second)
	alive(t, r)
	want := expect(t, e, src, in, r.p.cfg.Options, r.p.cfg.Limits)
	got := readAll(t, e, want, false)
	containsAll(t, want, got)
	// at_least_once may repeat records, but each profile's last record at
	// each destination is its last event's.
	for topic, w := range want {
		last := map[string]outRecord{}
		for _, rec := range w {
			last[rec.key] = rec
		}
		gotLast := map[string]outRecord{}
		for _, rec := range got[topic] {
			gotLast[rec.key] = rec
		}
		for k, rec := range last {
			if g := gotLast[k]; g.value != rec.value {
				t.Errorf("%s: key %q ends with %q, want %q", topic, k, g.value, rec.value)
			}
		}
	}
	if n := testutil.ToFloat64(r.p.m.produceErrors); n == 0 {
		t.Error("no produce error counted: the failure did not happen")
	}
}
