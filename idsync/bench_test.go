package idsync

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// perEventInput is a realistic ~1 KiB event with 10 external ids.
var perEventInput = []byte(`{
  "message_id": "ame_6f1c9a0b-2f4e-4c1e-9a55-1b7d0c9e8f21",
  "timestamp": "2026-06-01T12:00:00.000Z",
  "space_id": "spa_w5akhv",
  "computation_class": "audience",
  "audience_id": "aud_2Ab3xQ9",
  "audience_key": "first_time_shopper",
  "action": "entered",
  "sync": {"id": "run_8812", "started_at": "2026-06-01T11:59:30Z"},
  "profile": {"segment_id": "use_4paotyXk2Qz"},
  "external_ids": [
    {"type": "user_id", "id": "u123456789", "created_at": "2024-01-02T10:00:00Z"},
    {"type": "email", "id": "Jane@Work.com ", "created_at": "2024-01-02T10:00:00Z"},
    {"type": "email", "id": "jane.doe@gmail.com", "created_at": "2025-03-09T08:30:00Z"},
    {"type": "phone", "id": "+1 (650) 555-0100", "created_at": "2025-02-01T00:00:00Z"},
    {"type": "phone", "id": "+44 20 7946 0958", "created_at": "2024-02-01T00:00:00Z"},
    {"type": "ios.idfa", "id": "AECE52E7-03EE-455A-B3C4-E57283966239", "created_at": "2025-04-01T00:00:00Z"},
    {"type": "android.idfa", "id": "38400000-8cf0-11bd-b23e-10b96e40000d", "created_at": "2025-04-02T00:00:00Z"},
    {"type": "anonymous_id", "id": "anon-5b0c6f8e-1d2a", "created_at": "2023-11-11T11:11:11Z"},
    {"type": "shopify_id", "id": "98765", "created_at": "2025-05-01T00:00:00Z"},
    {"type": "ga_client_id", "id": "GA1.2.1234567890.1234567890", "created_at": "2025-05-02T00:00:00Z"}
  ],
  "traits": {"first_name": "Jane", "last_name": "Doe", "name": "Jane Doe", "plan": "pro"}
}`)

var benchNow = time.Date(2026, 6, 1, 12, 0, 5, 0, time.UTC)

// benchConnections returns five connections, one of each destination type.
func benchConnections(tb testing.TB) []Connection {
	configs := []string{
		`{"destination_type":"facebook_custom_audiences","external_audience_id":"23851234567890123","settings":{"send_mobile_ids":true},"setup":"customized",
		  "identifiers":[{"segment":"email","destination":"EMAIL","strategy":"all"},{"segment":"phone","destination":"PHONE","strategy":"last_added"},{"segment":"ios.idfa","destination":"MADID","strategy":"first_added"}]}`,
		`{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_42","setup":"default"}`,
		`{"destination_type":"iterable","setup":"default"}`,
		`{"destination_type":"zendesk","settings":{"send_identify":true},"setup":"customized","identifiers":[{"segment":"email","destination":"email","strategy":"last_added"},{"segment":"user_id","destination":"external_id","strategy":"last_added"}]}`,
		`{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"last_added"},{"segment":"shopify_id","destination":"shopify_id","strategy":"last_added"}]}`,
	}
	var conns []Connection
	for i, raw := range configs {
		cfg, err := ParseConfig([]byte(raw))
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, Connection{DestinationID: string(cfg.DestinationType) + "_" + string(rune('a'+i)),
			Versions: []Version{{Version: 1, EffectiveAt: benchNow.Add(-time.Hour), Config: cfg}}})
	}
	return conns
}

// stdEvent mirrors the input event for the encoding/json reference.
type stdEvent struct {
	MessageID        string `json:"message_id"`
	Timestamp        string `json:"timestamp"`
	SpaceID          string `json:"space_id"`
	ComputationClass string `json:"computation_class"`
	AudienceID       string `json:"audience_id"`
	AudienceKey      string `json:"audience_key"`
	Action           string `json:"action"`
	Sync             *struct {
		ID        string `json:"id"`
		StartedAt string `json:"started_at"`
	} `json:"sync"`
	Profile struct {
		SegmentID string `json:"segment_id"`
	} `json:"profile"`
	ExternalIDs []struct {
		Type      string `json:"type"`
		ID        string `json:"id"`
		CreatedAt string `json:"created_at"`
	} `json:"external_ids"`
	Traits map[string]any `json:"traits"`
}

// BenchmarkPerEvent runs, in one process, the reference (encoding/json
// Unmarshal and Marshal of the same event) and the per-event function
// (Decode then Process) with 1 and 5 connections. Each per-event result
// reports its cost as a multiple of the reference's (x-stdlib; lower is
// better).
func BenchmarkPerEvent(b *testing.B) {
	if len(perEventInput) < 900 || len(perEventInput) > 1500 {
		b.Fatalf("bench event is %d bytes, want about 1 KiB", len(perEventInput))
	}
	var refNs float64
	b.Run("stdlib_unmarshal_marshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(perEventInput)))
		for b.Loop() {
			var e stdEvent
			if err := json.Unmarshal(perEventInput, &e); err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(&e); err != nil {
				b.Fatal(err)
			}
		}
		refNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	for _, n := range []int{1, 5} {
		b.Run(fmt.Sprintf("connections=%d", n), func(b *testing.B) {
			conns := benchConnections(b)[:n]
			opt := DefaultOptions()
			b.ReportAllocs()
			b.SetBytes(int64(len(perEventInput)))
			outputs := 0
			for b.Loop() {
				ev, err := Decode(perEventInput, benchNow, DefaultLimits())
				if err != nil {
					b.Fatal(err)
				}
				outputs = len(Process(ev, conns, benchNow, opt).Outputs)
			}
			b.ReportMetric(float64(outputs), "records/event")
			if refNs > 0 {
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				b.ReportMetric(ns/refNs, "x-stdlib")
			}
		})
	}
}

// TestBenchFixtures keeps the benchmark inputs honest: the event decodes,
// every connection produces output.
func TestBenchFixtures(t *testing.T) {
	ev, err := Decode(perEventInput, benchNow, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ev.ExternalIDs); n < 6 || n > 12 {
		t.Fatalf("%d external ids", n)
	}
	res := Process(ev, benchConnections(t), benchNow, DefaultOptions())
	seen := map[string]bool{}
	for _, o := range res.Outputs {
		seen[o.DestinationID] = true
	}
	if len(seen) != 5 || res.Unmatched != nil || res.DeadLetters != nil {
		t.Fatalf("outputs for %v, unmatched %v, dead letters %v", seen, res.Unmatched, res.DeadLetters)
	}
}

// BenchmarkProcessFanout measures Process on events with many records for
// one destination (a webhook mapping user_id with strategy all to n
// user ids), whose output outgrows the pooled scratch buffer the ordinary
// events reuse: the case where sizing that buffer up front could pay.
func BenchmarkProcessFanout(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf(`{"type":"user_id","id":"user-%06d","created_at":"2025-01-01T00:00:00Z"}`, i)
			}
			raw := []byte(`{"message_id":"ame_6f1c9a0b-2f4e-4c1e-9a55-1b7d0c9e8f21","timestamp":"2026-06-01T12:00:00.000Z","space_id":"spa_w5akhv",
				"audience_id":"aud_2Ab3xQ9","audience_key":"first_time_shopper","action":"entered","profile":{"segment_id":"use_4paotyXk2Qz"},
				"external_ids":[` + strings.Join(ids, ",") + `]}`)
			ev, err := Decode(raw, benchNow, DefaultLimits())
			if err != nil {
				b.Fatal(err)
			}
			cfg, err := ParseConfig([]byte(`{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"all"}]}`))
			if err != nil {
				b.Fatal(err)
			}
			conns := []Connection{{DestinationID: "webhook_fanout", Versions: []Version{{Version: 1, EffectiveAt: benchNow.Add(-time.Hour), Config: cfg}}}}
			opt := DefaultOptions()
			var res Result
			b.ReportAllocs()
			for b.Loop() {
				res = Process(ev, conns, benchNow, opt)
			}
			if len(res.Outputs) != n {
				b.Fatalf("%d records, want %d", len(res.Outputs), n)
			}
			b.ReportMetric(float64(res.Bytes), "output-bytes/event")
		})
	}
}
