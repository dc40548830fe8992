package idsync

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// BenchmarkPerEventColdPhones is BenchmarkPerEvent/connections=5 with two
// phone numbers never seen before in every event, so that the phone memo
// never hits: the cost of a profile's first event. It reports x-stdlib
// against the encoding/json reference of the same events, measured in the
// same run.
func BenchmarkPerEventColdPhones(b *testing.B) {
	const variants = 1 << 18 // four times the memo's capacity, cycled
	events := make([][]byte, 4096)
	for i := range events {
		ev := bytes.Replace(perEventInput, []byte("+1 (650) 555-0100"), fmt.Appendf(nil, "+1 (650) %03d-%04d", 200+i%700, i%10000), 1)
		events[i] = bytes.Replace(ev, []byte("+44 20 7946 0958"), fmt.Appendf(nil, "+44 20 79%02d %04d", i%100, (i*7)%10000), 1)
	}
	// Rewrite the numbers per iteration so that values repeat only after
	// `variants` events.
	next := func(i int) []byte {
		ev := events[i%len(events)]
		k := i % variants
		copy(ev[bytes.Index(ev, []byte("+1 (650) "))+9:], fmt.Appendf(nil, "%03d-%04d", 200+k/10000%700, k%10000))
		return ev
	}
	var refNs float64
	b.Run("stdlib_unmarshal_marshal", func(b *testing.B) {
		i := 0
		for b.Loop() {
			var e stdEvent
			if err := json.Unmarshal(next(i), &e); err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(&e); err != nil {
				b.Fatal(err)
			}
			i++
		}
		refNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("connections=5", func(b *testing.B) {
		conns := benchConnections(b)
		opt := DefaultOptions()
		b.ReportAllocs()
		i := 1 << 20 // numbers the reference run did not use
		for b.Loop() {
			ev, err := Decode(next(i), benchNow, DefaultLimits())
			if err != nil {
				b.Fatal(err)
			}
			Process(ev, conns, benchNow, opt)
			i++
		}
		if refNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/refNs, "x-stdlib")
		}
	})
}
