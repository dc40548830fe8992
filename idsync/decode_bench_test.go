package idsync

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"
)

// BenchmarkDecodeFastPath compares Decode (its fast path on a realistic event) with
// decoding the same record with encoding/json into the same wire struct.
func BenchmarkDecodeFastPath(b *testing.B) {
	b.Run("Decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(perEventInput)))
		for b.Loop() {
			if _, err := Decode(perEventInput, benchNow, DefaultLimits()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(perEventInput)))
		for b.Loop() {
			var w wireEvent
			if err := json.Unmarshal(perEventInput, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// decodeSeeds are the records of the decode tests, the golden files and the
// benchmark: every shape the tests know.
func decodeSeeds(tb testing.TB) [][]byte {
	seeds := [][]byte{perEventInput}
	for _, c := range decodeCases(tb) {
		seeds = append(seeds, c.raw)
	}
	inputs, _ := filepath.Glob("testdata/golden/*.in.json")
	for _, in := range inputs {
		raw, err := os.ReadFile(in)
		if err != nil {
			tb.Fatal(err)
		}
		var gc struct {
			Event json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(raw, &gc); err == nil && len(gc.Event) > 0 {
			seeds = append(seeds, gc.Event)
		}
	}
	return append(seeds,
		[]byte(`{"message_id":"a","Message_ID":"b"}`),
		[]byte(`{"message_id":"a","message_id":null}`),
		[]byte(`{"sync":{"id":"a"},"sync":{"started_at":"2026-06-01T11:59:30Z"}}`),
		[]byte(`{"external_ids":[null,{"type":"x"}]}`),
		[]byte(`{"traits":{"name":1,"name":"x","x":[1,-0.5e+3,true,false,null,{"a":"\u00e9\n"}]}}`),
		[]byte(`{"message_id":"a\u0062"} `),
		[]byte(`{"x":01}`),
		[]byte(`{"x":"\x"}`),
		[]byte(`{"x":1} x`),
		[]byte(` null `),
	)
}

// checkFastMatchesSlow fails when the fast path accepts a record that
// encoding/json refuses or decodes differently.
func checkFastMatchesSlow(t *testing.T, raw []byte) {
	if !utf8.Valid(raw) {
		return // Decode refuses invalid UTF-8 before either path
	}
	var fast wireEvent
	if !decodeFast(raw, &fast) {
		return
	}
	var slow wireEvent
	if err := json.Unmarshal(raw, &slow); err != nil {
		t.Fatalf("fast path accepted a record encoding/json refuses (%v): %q", err, raw)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("fast path decoded %q as\n%+v\nencoding/json as\n%+v", raw, fast, slow)
	}
}

// TestDecodeFastMatchesSlow runs the differential check on every seed.
func TestDecodeFastMatchesSlow(t *testing.T) {
	for _, raw := range decodeSeeds(t) {
		checkFastMatchesSlow(t, raw)
	}
	var w wireEvent
	if !decodeFast(perEventInput, &w) {
		t.Fatal("the benchmark event does not take the fast path")
	}
}

// FuzzDecodeFast checks the fast path against encoding/json on arbitrary
// records.
func FuzzDecodeFast(f *testing.F) {
	for _, raw := range decodeSeeds(f) {
		f.Add(raw)
	}
	f.Fuzz(checkFastMatchesSlow)
}
