package idsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// decodeNow is the processor clock of the decode tests: the example event's
// timestamp.
var decodeNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// decodeBase is the minimal valid event with three external ids, the
// starting point of the table's edits.
func decodeBase() map[string]any {
	return map[string]any{
		"message_id":  "ame_1",
		"timestamp":   "2026-06-01T11:00:00Z",
		"space_id":    "spa_1",
		"audience_id": "aud_1",
		"action":      "entered",
		"profile":     map[string]any{"segment_id": "use_1"},
		"external_ids": []any{
			map[string]any{"type": "user_id", "id": "u1", "created_at": "2024-01-02T10:00:00Z"},
			map[string]any{"type": "email", "id": "jane@example.com", "created_at": "2024-01-03T10:00:00Z"},
			map[string]any{"type": "phone", "id": "+1 650 555 0100", "created_at": "2024-01-04T10:00:00Z"},
		},
	}
}

// edit changes decodeBase at a path ("profile.segment_id",
// "external_ids[2].created_at"); a value of deleted removes the key.
type edit struct {
	path string
	v    any
}

type deletedT struct{}

var deleted = deletedT{}

func set(path string, v any) edit { return edit{path, v} }
func del(path string) edit        { return edit{path, deleted} }

// event returns decodeBase with edits applied, marshalled.
func event(edits ...edit) []byte {
	m := decodeBase()
	for _, e := range edits {
		applyEdit(m, e.path, e.v)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func applyEdit(m map[string]any, path string, v any) {
	segs := strings.Split(path, ".")
	var cur any = m
	for i, seg := range segs {
		key, idx := seg, -1
		if j := strings.IndexByte(seg, '['); j >= 0 {
			key = seg[:j]
			n, err := strconv.Atoi(strings.TrimSuffix(seg[j+1:], "]"))
			if err != nil {
				panic(path)
			}
			idx = n
		}
		obj := cur.(map[string]any)
		last := i == len(segs)-1
		if idx < 0 {
			if last {
				if v == deleted {
					delete(obj, key)
				} else {
					obj[key] = v
				}
				return
			}
			next, ok := obj[key].(map[string]any)
			if !ok {
				next = map[string]any{}
				obj[key] = next
			}
			cur = next
			continue
		}
		arr := obj[key].([]any)
		if last {
			arr[idx] = v
			return
		}
		cur = arr[idx]
	}
}

type decodeCase struct {
	name  string
	raw   []byte
	lim   Limits // zero: defaults
	code  Code   // "": success
	field string
	check func(t *testing.T, ev *Event)
}

func readExample(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "decode", "example.json"))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// padTo pads a JSON object with trailing whitespace to exactly n bytes.
func padTo(b []byte, n int) []byte {
	return append(append([]byte(nil), b...), bytes.Repeat([]byte(" "), n-len(b))...)
}

func manyIDs(n int) []any {
	ids := make([]any, n)
	for i := range ids {
		ids[i] = map[string]any{"type": "user_id", "id": "u" + strconv.Itoa(i), "created_at": "2024-01-02T10:00:00Z"}
	}
	return ids
}

func decodeCases(tb testing.TB) []decodeCase {
	example := readExample(tb)
	skewTS := func(d time.Duration) string { return decodeNow.Add(d).Format(time.RFC3339Nano) }
	small := Limits{MaxExternalIDs: 3}
	cases := []decodeCase{
		{name: "design example", raw: example, check: func(t *testing.T, ev *Event) {
			want := &Event{
				MessageID:        "ame_6f1c9a",
				Timestamp:        decodeNow,
				TimestampRaw:     "2026-06-01T12:00:00.000Z",
				SpaceID:          "spa_w5akhv",
				ComputationClass: ClassAudience,
				AudienceID:       "aud_2Ab3",
				AudienceKey:      "first_time_shopper",
				Action:           ActionEntered,
				Sync:             &Sync{ID: "run_8812", StartedAt: time.Date(2026, 6, 1, 11, 59, 30, 0, time.UTC)},
				SegmentID:        "use_4paoty",
				ExternalIDs: []ExternalID{
					{"user_id", "u123", time.Date(2024, 1, 2, 10, 0, 0, 0, time.UTC)},
					{"email", "Jane@Work.com ", time.Date(2024, 1, 2, 10, 0, 0, 0, time.UTC)},
					{"email", "jane@gmail.com", time.Date(2025, 3, 9, 8, 30, 0, 0, time.UTC)},
					{"phone", "+1 (650) 555-0100", time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)},
					{"ios.idfa", "AECE52E7-03EE-455A-B3C4-E57283966239", time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)},
					{"shopify_id", "98765", time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)},
				},
				Traits: Traits{Name: "Jane Doe", FirstName: "Jane", LastName: "Doe"},
			}
			assertEvent(t, ev, want)
		}},
		{name: "minimal", raw: []byte(`{"message_id":"m","timestamp":"2026-06-01T11:00:00Z","space_id":"s","audience_id":"a","action":"exited","profile":{"segment_id":"p"},"external_ids":[]}`),
			check: func(t *testing.T, ev *Event) {
				assertEvent(t, ev, &Event{
					MessageID: "m", Timestamp: decodeNow.Add(-time.Hour), TimestampRaw: "2026-06-01T11:00:00Z",
					SpaceID: "s", ComputationClass: ClassAudience, AudienceID: "a", AudienceKey: "a",
					Action: ActionExited, SegmentID: "p", ExternalIDs: []ExternalID{},
				})
				if ev.ExternalIDs == nil {
					t.Error("ExternalIDs is nil for an empty array")
				}
			}},
		{name: "audience_key empty defaults", raw: event(set("audience_key", "")), check: func(t *testing.T, ev *Event) {
			eq(t, "AudienceKey", ev.AudienceKey, "aud_1")
		}},
		{name: "audience_key null defaults", raw: event(set("audience_key", nil)), check: func(t *testing.T, ev *Event) {
			eq(t, "AudienceKey", ev.AudienceKey, "aud_1")
		}},
		{name: "audience_key kept", raw: event(set("audience_key", "vip")), check: func(t *testing.T, ev *Event) {
			eq(t, "AudienceKey", ev.AudienceKey, "vip")
		}},
		{name: "computation_class empty defaults", raw: event(set("computation_class", "")), check: func(t *testing.T, ev *Event) {
			eq(t, "ComputationClass", ev.ComputationClass, ClassAudience)
		}},
		{name: "computation_class journey_step", raw: event(set("computation_class", "journey_step")), check: func(t *testing.T, ev *Event) {
			eq(t, "ComputationClass", ev.ComputationClass, ClassJourneyStep)
		}},
		{name: "computation_class audience", raw: event(set("computation_class", "audience")), check: func(t *testing.T, ev *Event) {
			eq(t, "ComputationClass", ev.ComputationClass, ClassAudience)
		}},
		{name: "timestamp with offset and nanoseconds", raw: event(set("timestamp", "2026-06-01T13:30:00.123456789+02:00")), check: func(t *testing.T, ev *Event) {
			eq(t, "TimestampRaw", ev.TimestampRaw, "2026-06-01T13:30:00.123456789+02:00")
			if want := time.Date(2026, 6, 1, 11, 30, 0, 123456789, time.UTC); !ev.Timestamp.Equal(want) {
				t.Errorf("Timestamp = %v, want %v", ev.Timestamp, want)
			}
		}},
		{name: "sync absent", raw: event(), check: func(t *testing.T, ev *Event) {
			if ev.Sync != nil {
				t.Errorf("Sync = %+v, want nil", ev.Sync)
			}
		}},
		{name: "sync null", raw: event(set("sync", nil)), check: func(t *testing.T, ev *Event) {
			if ev.Sync != nil {
				t.Errorf("Sync = %+v, want nil", ev.Sync)
			}
		}},
		{name: "sync empty object", raw: event(set("sync", map[string]any{})), check: func(t *testing.T, ev *Event) {
			if ev.Sync != nil {
				t.Errorf("Sync = %+v, want nil", ev.Sync)
			}
		}},
		{name: "sync id only", raw: event(set("sync", map[string]any{"id": "run_1", "started_at": nil})), check: func(t *testing.T, ev *Event) {
			if ev.Sync == nil || ev.Sync.ID != "run_1" || !ev.Sync.StartedAt.IsZero() {
				t.Errorf("Sync = %+v, want {run_1, zero}", ev.Sync)
			}
		}},
		{name: "sync started_at only", raw: event(set("sync", map[string]any{"started_at": "2026-06-01T10:00:00Z"})), check: func(t *testing.T, ev *Event) {
			if ev.Sync == nil || ev.Sync.ID != "" || !ev.Sync.StartedAt.Equal(decodeNow.Add(-2*time.Hour)) {
				t.Errorf("Sync = %+v", ev.Sync)
			}
		}},
		{name: "sync.started_at empty is absent", raw: event(set("sync", map[string]any{"id": "r", "started_at": ""})), check: func(t *testing.T, ev *Event) {
			if ev.Sync == nil || ev.Sync.ID != "r" || !ev.Sync.StartedAt.IsZero() {
				t.Errorf("Sync = %+v, want {r, zero}", ev.Sync)
			}
		}},
		{name: "escaped timestamps", raw: []byte(`{"message_id":"m","timestamp":"\u0032026-06-01T11:00:00Z","space_id":"s","audience_id":"a","action":"entered","sync":{"started_at":"2026-06-01T10:00:00\u005a"},"profile":{"segment_id":"p"},"external_ids":[{"type":"t","id":"i","created_at":"2024-01-02T10:00:00\u002b02:00"}]}`),
			check: func(t *testing.T, ev *Event) {
				eq(t, "TimestampRaw", ev.TimestampRaw, "2026-06-01T11:00:00Z")
				eq(t, "Sync.StartedAt", ev.Sync.StartedAt, decodeNow.Add(-2*time.Hour))
				eq(t, "CreatedAt", ev.ExternalIDs[0].CreatedAt, time.Date(2024, 1, 2, 8, 0, 0, 0, time.UTC))
			}},
		{name: "escaped created_at with a control character", raw: []byte(`{"message_id":"m","timestamp":"2026-06-01T11:00:00Z","space_id":"s","audience_id":"a","action":"entered","profile":{"segment_id":"p"},"external_ids":[{"type":"t","id":"i","created_at":"\u0000"}]}`),
			code: CodeInvalidTimestamp, field: "external_ids[0].created_at"},
		{name: "times are in UTC", raw: event(set("timestamp", "2026-06-01T13:00:00+02:00"), set("external_ids[1].created_at", "2024-01-02T10:00:00-05:00"), set("sync.started_at", "2026-06-01T11:00:00+01:00")),
			check: func(t *testing.T, ev *Event) {
				eq(t, "Timestamp", ev.Timestamp, decodeNow.Add(-time.Hour))
				eq(t, "Sync.StartedAt", ev.Sync.StartedAt, decodeNow.Add(-2*time.Hour))
				eq(t, "CreatedAt", ev.ExternalIDs[1].CreatedAt, time.Date(2024, 1, 2, 15, 0, 0, 0, time.UTC))
			}},
		{name: "escaped created_at invalid", raw: event(set("external_ids[0].created_at", "2024-01-02\t10:00:00Z")), code: CodeInvalidTimestamp, field: "external_ids[0].created_at"},
		{name: "traits name kept, others dropped, non-strings ignored",
			raw: event(set("traits", map[string]any{"name": "Jane Doe", "first_name": 5, "last_name": nil, "email": "x@y.z", "nested": map[string]any{"name": "no"}})),
			check: func(t *testing.T, ev *Event) {
				eq(t, "Traits", ev.Traits, Traits{Name: "Jane Doe"})
			}},
		{name: "traits object and array values ignored",
			raw: event(set("traits", map[string]any{"name": map[string]any{"a": 1}, "first_name": []any{"Jane"}, "last_name": true})),
			check: func(t *testing.T, ev *Event) {
				eq(t, "Traits", ev.Traits, Traits{})
			}},
		{name: "traits escaped strings", raw: event(set("traits", map[string]any{"first_name": "Jérôme \"J\"", "last_name": "Ünal"})),
			check: func(t *testing.T, ev *Event) {
				eq(t, "Traits", ev.Traits, Traits{FirstName: "Jérôme \"J\"", LastName: "Ünal"})
			}},
		{name: "traits unicode escapes", raw: bytes.Replace(event(), []byte(`"action"`), []byte(`"traits":{"name":"J\u00e9r\u00f4me \ud83d\ude00"},"action"`), 1),
			check: func(t *testing.T, ev *Event) {
				eq(t, "Traits.Name", ev.Traits.Name, "Jérôme 😀")
			}},
		{name: "traits null", raw: event(set("traits", nil)), check: func(t *testing.T, ev *Event) {
			eq(t, "Traits", ev.Traits, Traits{})
		}},
		{name: "unknown fields ignored everywhere",
			raw: event(set("extra", map[string]any{"a": []any{1, "x", nil, map[string]any{"b": []any{}}}}),
				set("profile.anonymous_id", "anon"), set("profile.traits", []any{1}),
				set("external_ids[0].source", map[string]any{"k": 1}), set("sync.kind", 7), set("sync.id", "r"),
				set("context", nil), set("n", 1e300)),
			check: func(t *testing.T, ev *Event) {
				eq(t, "SegmentID", ev.SegmentID, "use_1")
				eq(t, "len(ExternalIDs)", len(ev.ExternalIDs), 3)
			}},
		{name: "duplicate keys: last wins",
			raw: []byte(`{"message_id":"m1","message_id":"m2","timestamp":"2026-06-01T11:00:00Z","space_id":"s","audience_id":"a","action":"entered","action":"exited","profile":{"segment_id":"p1"},"profile":{"segment_id":"p2"},"external_ids":[],"external_ids":[{"type":"t","id":"i","created_at":"2024-01-02T10:00:00Z"}]}`),
			check: func(t *testing.T, ev *Event) {
				eq(t, "MessageID", ev.MessageID, "m2")
				eq(t, "Action", ev.Action, ActionExited)
				eq(t, "SegmentID", ev.SegmentID, "p2")
				eq(t, "len(ExternalIDs)", len(ev.ExternalIDs), 1)
			}},
		{name: "duplicate keys: a mistyped occurrence refuses the record",
			raw:  []byte(`{"message_id":5,"message_id":"m2","timestamp":"2026-06-01T11:00:00Z","space_id":"s","audience_id":"a","action":"entered","profile":{"segment_id":"p"},"external_ids":[]}`),
			code: CodeSchemaViolation, field: "message_id"},
		{name: "keys match case-insensitively like encoding/json",
			raw: []byte(`{"Message_ID":"m","timestamp":"2026-06-01T11:00:00Z","space_id":"s","audience_id":"a","ACTION":"entered","profile":{"Segment_Id":"p"},"external_ids":[]}`),
			check: func(t *testing.T, ev *Event) {
				eq(t, "MessageID", ev.MessageID, "m")
				eq(t, "SegmentID", ev.SegmentID, "p")
			}},
		{name: "mistyped case-variant key reports the canonical path",
			raw:  []byte(`{"message_id":"m","timestamp":"2026-06-01T11:00:00Z","space_id":"s","audience_id":"a","action":"entered","Profile":{"SEGMENT_ID":5},"external_ids":[]}`),
			code: CodeSchemaViolation, field: "profile.segment_id"},
		{name: "whitespace around the object", raw: append(append([]byte(" \n\t"), event()...), "\r\n "...)},

		// Skew boundary: at most MaxFutureSkew ahead is accepted.
		{name: "timestamp exactly at skew limit", raw: event(set("timestamp", skewTS(24*time.Hour)))},
		{name: "timestamp just under skew limit", raw: event(set("timestamp", skewTS(24*time.Hour-time.Nanosecond)))},
		{name: "timestamp just over skew limit", raw: event(set("timestamp", skewTS(24*time.Hour+time.Nanosecond))), code: CodeInvalidTimestamp, field: "timestamp"},
		{name: "timestamp far future", raw: event(set("timestamp", "9999-12-31T23:59:59Z")), code: CodeInvalidTimestamp, field: "timestamp"},
		{name: "timestamp in the past", raw: event(set("timestamp", "2001-01-01T00:00:00Z"))},
		{name: "custom skew accepted", raw: event(set("timestamp", skewTS(time.Minute))), lim: Limits{MaxFutureSkew: time.Minute}},
		{name: "custom skew exceeded", raw: event(set("timestamp", skewTS(time.Minute+time.Second))), lim: Limits{MaxFutureSkew: time.Minute}, code: CodeInvalidTimestamp, field: "timestamp"},
		{name: "sync.started_at at skew limit", raw: event(set("sync", map[string]any{"started_at": skewTS(24 * time.Hour)}))},
		{name: "sync.started_at over skew limit", raw: event(set("sync", map[string]any{"id": "r", "started_at": skewTS(24*time.Hour + time.Nanosecond)})), code: CodeInvalidTimestamp, field: "sync.started_at"},
		{name: "external created_at in the future is accepted", raw: event(set("external_ids[0].created_at", "2030-01-01T00:00:00Z"))},

		// Limits on size and external ids.
		{name: "external_ids at limit", raw: event(), lim: small},
		{name: "external_ids over limit", raw: event(set("external_ids", manyIDs(4))), lim: small, code: CodeSchemaViolation, field: "external_ids"},
		{name: "external_ids at default limit", raw: event(set("external_ids", manyIDs(1000)))},
		{name: "external_ids over default limit", raw: event(set("external_ids", manyIDs(1001))), code: CodeSchemaViolation, field: "external_ids"},
		{name: "record at size limit", raw: padTo(event(), 600), lim: Limits{MaxRecordBytes: 600}},
		{name: "record over size limit", raw: padTo(event(), 601), lim: Limits{MaxRecordBytes: 600}, code: CodeTooLarge},
		{name: "over size limit is checked before parsing", raw: padTo([]byte("\xff{"), 601), lim: Limits{MaxRecordBytes: 600}, code: CodeTooLarge},
		{name: "record at default size limit", raw: padTo(event(), 1<<20)},
		{name: "record over default size limit", raw: padTo(event(), 1<<20+1), code: CodeTooLarge},

		// Enumerations.
		{name: "unknown action", raw: event(set("action", "joined")), code: CodeSchemaViolation, field: "action"},
		{name: "action is case-sensitive", raw: event(set("action", "ENTERED")), code: CodeSchemaViolation, field: "action"},
		{name: "unknown computation_class", raw: event(set("computation_class", "segment")), code: CodeSchemaViolation, field: "computation_class"},
		{name: "computation_class mistyped", raw: event(set("computation_class", 1)), code: CodeSchemaViolation, field: "computation_class"},
		{name: "audience_key mistyped", raw: event(set("audience_key", false)), code: CodeSchemaViolation, field: "audience_key"},

		// Unparseable timestamps in each position.
		{name: "timestamp not RFC 3339", raw: event(set("timestamp", "2026-06-01 11:00:00")), code: CodeInvalidTimestamp, field: "timestamp"},
		{name: "timestamp without zone", raw: event(set("timestamp", "2026-06-01T11:00:00")), code: CodeInvalidTimestamp, field: "timestamp"},
		{name: "timestamp bad month", raw: event(set("timestamp", "2026-13-01T11:00:00Z")), code: CodeInvalidTimestamp, field: "timestamp"},
		{name: "timestamp words", raw: event(set("timestamp", "yesterday")), code: CodeInvalidTimestamp, field: "timestamp"},
		{name: "timestamp unix seconds string", raw: event(set("timestamp", "1780315200")), code: CodeInvalidTimestamp, field: "timestamp"},
		{name: "sync.started_at not RFC 3339", raw: event(set("sync", map[string]any{"started_at": "Mon, 01 Jun 2026 11:00:00 GMT"})), code: CodeInvalidTimestamp, field: "sync.started_at"},
		{name: "created_at not RFC 3339", raw: event(set("external_ids[2].created_at", "2024-02-30T00:00:00Z")), code: CodeInvalidTimestamp, field: "external_ids[2].created_at"},

		// Containers of the wrong type.
		{name: "profile missing", raw: event(del("profile")), code: CodeSchemaViolation, field: "profile.segment_id"},
		{name: "profile null", raw: event(set("profile", nil)), code: CodeSchemaViolation, field: "profile.segment_id"},
		{name: "profile string", raw: event(set("profile", "x")), code: CodeSchemaViolation, field: "profile"},
		{name: "profile array", raw: event(set("profile", []any{})), code: CodeSchemaViolation, field: "profile"},
		{name: "sync string", raw: event(set("sync", "run_1")), code: CodeSchemaViolation, field: "sync"},
		{name: "sync array", raw: event(set("sync", []any{map[string]any{"id": "r"}})), code: CodeSchemaViolation, field: "sync"},
		{name: "sync.id mistyped", raw: event(set("sync", map[string]any{"id": 42})), code: CodeSchemaViolation, field: "sync.id"},
		{name: "sync.started_at mistyped", raw: event(set("sync", map[string]any{"started_at": 1780315200})), code: CodeSchemaViolation, field: "sync.started_at"},
		{name: "traits string", raw: event(set("traits", "x")), code: CodeSchemaViolation, field: "traits"},
		{name: "traits array", raw: event(set("traits", []any{"name"})), code: CodeSchemaViolation, field: "traits"},
		{name: "traits number", raw: event(set("traits", 3)), code: CodeSchemaViolation, field: "traits"},
		{name: "external_ids object", raw: event(set("external_ids", map[string]any{})), code: CodeSchemaViolation, field: "external_ids"},
		{name: "external_ids string", raw: event(set("external_ids", "")), code: CodeSchemaViolation, field: "external_ids"},
		{name: "external_ids element string", raw: event(set("external_ids[1]", "jane@example.com")), code: CodeSchemaViolation, field: "external_ids[1]"},
		{name: "external_ids element array", raw: event(set("external_ids[2]", []any{})), code: CodeSchemaViolation, field: "external_ids[2]"},
		{name: "external_ids element null", raw: event(set("external_ids[1]", nil)), code: CodeSchemaViolation, field: "external_ids[1].type"},
		{name: "mistyped field after unknown nested fields",
			raw: event(set("aaa", []any{[]any{map[string]any{"x": []any{1}}}}), set("external_ids[2].type", 7), set("external_ids[0].meta", map[string]any{"k": []any{}}),
				set("zzz", 1), set("profile.flag", true), set("profile.nothing", nil)),
			code: CodeSchemaViolation, field: "external_ids[2].type"},

		// Whole-record problems.
		{name: "empty", raw: []byte(""), code: CodeMalformedJSON},
		{name: "only whitespace", raw: []byte(" \n"), code: CodeMalformedJSON},
		{name: "truncated", raw: event()[:40], code: CodeMalformedJSON},
		{name: "trailing garbage", raw: append(event(), " x"...), code: CodeMalformedJSON},
		{name: "two objects", raw: append(event(), "{}"...), code: CodeMalformedJSON},
		{name: "single quotes", raw: []byte(`{'message_id':'m'}`), code: CodeMalformedJSON},
		{name: "trailing comma", raw: []byte(`{"message_id":"m",}`), code: CodeMalformedJSON},
		{name: "too deeply nested", raw: []byte(`{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`), code: CodeMalformedJSON},
		{name: "null", raw: []byte("null"), code: CodeSchemaViolation},
		{name: "array", raw: []byte(`[{"message_id":"m"}]`), code: CodeSchemaViolation},
		{name: "string", raw: []byte(`"hello"`), code: CodeSchemaViolation},
		{name: "number", raw: []byte(` 42 `), code: CodeSchemaViolation},
		{name: "true", raw: []byte(`true`), code: CodeSchemaViolation},
		{name: "empty object", raw: []byte(`{}`), code: CodeSchemaViolation, field: "message_id"},
		{name: "invalid UTF-8 in a value", raw: bytes.Replace(event(), []byte("jane@example.com"), []byte("jane\xff@example.com"), 1), code: CodeMalformedJSON},
		{name: "invalid UTF-8 in a key", raw: bytes.Replace(event(), []byte(`"space_id"`), []byte("\"space\xc3_id\""), 1), code: CodeMalformedJSON},
		{name: "invalid UTF-8 in an unknown field", raw: bytes.Replace(event(), []byte(`{`), []byte("{\"x\":\"\xed\xa0\x80\","), 1), code: CodeMalformedJSON},
	}

	// Every required string: missing, empty, null and mistyped.
	required := []string{
		"message_id", "timestamp", "space_id", "audience_id", "action", "profile.segment_id",
		"external_ids[0].type", "external_ids[1].id", "external_ids[2].type", "external_ids[2].id", "external_ids[2].created_at",
	}
	for _, f := range required {
		cases = append(cases,
			decodeCase{name: f + " missing", raw: event(del(f)), code: CodeSchemaViolation, field: f},
			decodeCase{name: f + " empty", raw: event(set(f, "")), code: CodeSchemaViolation, field: f},
			decodeCase{name: f + " null", raw: event(set(f, nil)), code: CodeSchemaViolation, field: f},
			decodeCase{name: f + " number", raw: event(set(f, 5)), code: CodeSchemaViolation, field: f},
			decodeCase{name: f + " bool", raw: event(set(f, true)), code: CodeSchemaViolation, field: f},
			decodeCase{name: f + " object", raw: event(set(f, map[string]any{"v": "x"})), code: CodeSchemaViolation, field: f},
			decodeCase{name: f + " array", raw: event(set(f, []any{"x"})), code: CodeSchemaViolation, field: f},
		)
	}
	cases = append(cases,
		decodeCase{name: "external_ids missing", raw: event(del("external_ids")), code: CodeSchemaViolation, field: "external_ids"},
		decodeCase{name: "external_ids null", raw: event(set("external_ids", nil)), code: CodeSchemaViolation, field: "external_ids"},
		decodeCase{name: "external_ids number", raw: event(set("external_ids", 0)), code: CodeSchemaViolation, field: "external_ids"},
	)
	return cases
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func assertEvent(t *testing.T, got, want *Event) {
	t.Helper()
	if !got.Timestamp.Equal(want.Timestamp) {
		t.Errorf("Timestamp = %v, want %v", got.Timestamp, want.Timestamp)
	}
	g, w := *got, *want
	g.Timestamp, w.Timestamp = time.Time{}, time.Time{}
	if (g.Sync == nil) != (w.Sync == nil) || g.Sync != nil && (g.Sync.ID != w.Sync.ID || !g.Sync.StartedAt.Equal(w.Sync.StartedAt)) {
		t.Errorf("Sync = %+v, want %+v", g.Sync, w.Sync)
	}
	g.Sync, w.Sync = nil, nil
	if len(g.ExternalIDs) != len(w.ExternalIDs) {
		t.Fatalf("ExternalIDs = %+v, want %+v", g.ExternalIDs, w.ExternalIDs)
	}
	for i := range g.ExternalIDs {
		a, b := g.ExternalIDs[i], w.ExternalIDs[i]
		if a.Type != b.Type || a.ID != b.ID || !a.CreatedAt.Equal(b.CreatedAt) {
			t.Errorf("ExternalIDs[%d] = %+v, want %+v", i, a, b)
		}
	}
	g.ExternalIDs, w.ExternalIDs = nil, nil
	if fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", w) {
		t.Errorf("event =\n%+v\nwant\n%+v", g, w)
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Decode(tc.raw, decodeNow, tc.lim)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				checkEventInvariants(t, ev, tc.lim.withDefaults())
				if tc.check != nil {
					tc.check(t, ev)
				}
				return
			}
			if ev != nil {
				t.Errorf("event = %+v, want nil", ev)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error = %v (%T), want *DecodeError", err, err)
			}
			if de.Code != tc.code || de.Field != tc.field {
				t.Errorf("error = %q (code %q, field %q), want code %q, field %q", err, de.Code, de.Field, tc.code, tc.field)
			}
			if CodeOf(err) != tc.code {
				t.Errorf("CodeOf = %q, want %q", CodeOf(err), tc.code)
			}
			checkErrorShape(t, de)
		})
	}
}

func TestDefaultLimits(t *testing.T) {
	want := Limits{MaxRecordBytes: 1 << 20, MaxExternalIDs: 1000, MaxFutureSkew: 24 * time.Hour}
	if got := DefaultLimits(); got != want {
		t.Errorf("DefaultLimits() = %+v, want %+v", got, want)
	}
	if got := (Limits{MaxRecordBytes: -1}).withDefaults(); got != want {
		t.Errorf("negative limits = %+v, want defaults %+v", got, want)
	}
}

// TestDecodeTypeErrorPaths checks the path and reason of a mistyped field
// found by the slow path (encoding/json/v2): the first in document order,
// array indexes included, each member by its canonical name whatever the
// case of the key received; a repeated key's every occurrence checked; a key
// that differs by more than case (an underscore) unknown, as encoding/json
// has it.
func TestDecodeTypeErrorPaths(t *testing.T) {
	tests := []struct {
		raw, field, reason string
	}{
		{`{"message_id":5}`, "message_id", reasonString},
		{`{"Message_ID":5}`, "message_id", reasonString},
		{`{"message_id":"a","Message_Id":5}`, "message_id", reasonString},
		{`{"message_id":5,"message_id":"a"}`, "message_id", reasonString},
		{`{"external_ids":[{"type":"x"},{"TYPE":5}]}`, "external_ids[1].type", reasonString},
		{`{"external_ids":{}}`, "external_ids", reasonArray},
		{`{"external_ids":[null,5]}`, "external_ids[1]", reasonObject},
		{`{"profile":[]}`, "profile", reasonObject},
		{`{"Profile":{"Segment_Id":{}}}`, "profile.segment_id", reasonString},
		{`{"sync":5}`, "sync", reasonObject},
		{`{"sync":{"ID":5}}`, "sync.id", reasonString},
		{`{"traits":[1]}`, "traits", reasonObject},
		{`{"x":1,"audience_id":true,"message_id":5}`, "audience_id", reasonString},
		{`{"unknown":{"a":[1,2,{"b":3}]},"space_id":1}`, "space_id", reasonString},
		{`{"externalids":"","timestamp":true}`, "timestamp", reasonString},
		{`{"audience-key":5,"action":{}}`, "action", reasonString},
		{`{"profile":5,"profile":{"segment_id":"a"}}`, "profile", reasonObject},
		{`{"external_ids":[{"type":"a","type":5}]}`, "external_ids[0].type", reasonString},
	}
	for _, tt := range tests {
		_, err := Decode([]byte(tt.raw), decodeNow, DefaultLimits())
		var de *DecodeError
		if !errors.As(err, &de) || de.Code != CodeSchemaViolation || de.Field != tt.field || de.Reason != tt.reason {
			t.Errorf("Decode(%s) = %v, want schema_violation: %s: %s", tt.raw, err, tt.field, tt.reason)
		}
	}
}

// TestDecodeTypeErrorFallback covers the slow path's defences: a record
// encoding/json/v2 cannot read, or one where it finds no mistyped field, is
// still refused as a schema violation, with encoding/json's path when there
// is one.
func TestDecodeTypeErrorFallback(t *testing.T) {
	ute := &json.UnmarshalTypeError{Field: "external_ids.type"}
	for _, raw := range []string{
		`{}`, `{"message_id":"m"}`, ``, `{"message_id":`, `{"x":[1,`, `{"x":{"a":1`, `{"x"`, `{1:2}`,
		`{"external_ids":[`, `{"external_ids":[{}`, `{"profile":{`, `{"sync":{"id":"r"`,
	} {
		if de := typeError([]byte(raw), ute); de.Code != CodeSchemaViolation || de.Field != "external_ids.type" {
			t.Errorf("typeError(%q) = %+v, want schema_violation on external_ids.type", raw, de)
		}
	}
	if de := typeError([]byte(`{}`), errors.New("other")); de.Code != CodeSchemaViolation || de.Field != "" {
		t.Errorf("typeError without a type error = %+v, want schema_violation on the record", de)
	}
}

// TestDecodeErrorNamesNoValue checks that no DecodeError message repeats a
// value of the record, whichever field is at fault.
func TestDecodeErrorNamesNoValue(t *testing.T) {
	secrets := []string{"jane.secret@example.com", "+1 650 555 0199", "16505550199", "use_S3CR3T", "u_S3CR3T", "aud_S3CR3T", "spa_S3CR3T", "ame_S3CR3T", "run_S3CR3T", "Secretname"}
	base := func(edits ...edit) []byte {
		all := append([]edit{
			set("message_id", "ame_S3CR3T"), set("space_id", "spa_S3CR3T"), set("audience_id", "aud_S3CR3T"),
			set("profile.segment_id", "use_S3CR3T"), set("external_ids[0].id", "u_S3CR3T"),
			set("external_ids[1].id", "jane.secret@example.com"), set("external_ids[2].id", "+1 650 555 0199"),
			set("sync", map[string]any{"id": "run_S3CR3T"}), set("traits", map[string]any{"name": "Secretname"}),
		}, edits...)
		return event(all...)
	}
	records := map[string][]byte{
		"timestamp is an email":       base(set("timestamp", "jane.secret@example.com")),
		"action is a phone":           base(set("action", "+1 650 555 0199")),
		"class is an email":           base(set("computation_class", "jane.secret@example.com")),
		"created_at is an email":      base(set("external_ids[1].created_at", "jane.secret@example.com")),
		"started_at is a phone":       base(set("sync.started_at", "16505550199")),
		"type is a number":            base(set("external_ids[2].type", 16505550199)),
		"element is an email":         base(set("external_ids[1]", "jane.secret@example.com")),
		"profile is an id":            base(set("profile", "use_S3CR3T")),
		"sync is an id":               base(set("sync", "run_S3CR3T")),
		"traits is a name":            base(set("traits", "Secretname")),
		"too many ids":                base(set("external_ids", tooManySecretIDs())),
		"invalid UTF-8 in email":      bytes.Replace(base(), []byte("jane.secret@"), []byte("jane.secret\xff@"), 1),
		"syntax error after email":    bytes.Replace(base(), []byte(`"jane.secret@example.com"`), []byte(`"jane.secret@example.com" x`), 1),
		"syntax error inside email":   bytes.Replace(base(), []byte(`jane.secret@example.com"`), []byte(`jane.secret@example.com`), 1),
		"truncated after phone":       base()[:bytes.Index(base(), []byte("0199"))+4],
		"control char in email":       bytes.Replace(base(), []byte(`jane.secret@`), []byte("jane.secret\x01@"), 1),
		"record is an email string":   []byte(`"jane.secret@example.com"`),
		"record is an array of ids":   []byte(`["jane.secret@example.com","+1 650 555 0199"]`),
		"unquoted email":              []byte(`{"id": jane.secret@example.com}`),
		"email key with invalid JSON": []byte(`{"jane.secret@example.com": }`),
		"segment_id missing":          base(del("profile.segment_id")),
	}
	for name, raw := range records {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(raw, decodeNow, DefaultLimits())
			if err == nil {
				t.Fatal("Decode accepted the record")
			}
			msg := err.Error()
			for _, s := range secrets {
				if strings.Contains(msg, s) {
					t.Errorf("error %q contains the value %q", msg, s)
				}
			}
			for _, frag := range []string{"@", "secret", "S3CR3T", "555", "Secret"} {
				if strings.Contains(msg, frag) {
					t.Errorf("error %q contains %q of a value", msg, frag)
				}
			}
		})
	}
}

func tooManySecretIDs() []any {
	ids := make([]any, 1001)
	for i := range ids {
		ids[i] = map[string]any{"type": "email", "id": "jane.secret@example.com", "created_at": "2024-01-02T10:00:00Z"}
	}
	return ids
}

var (
	// fieldPattern is every shape of path Decode may report.
	fieldPattern = regexp.MustCompile(`^([a-z_]+(\[[0-9]+\])?)(\.[a-z_]+(\[[0-9]+\])?)*$`)
	// reasonPattern is every reason Decode may give: fixed text, numbers and
	// durations only.
	reasonPattern = regexp.MustCompile(`^(required|must be a string|must be a JSON object|must be a JSON array|has the wrong type|must be an RFC 3339 timestamp|must be "entered" or "exited"|must be "audience" or "journey_step"|empty record|invalid JSON|invalid UTF-8 at byte offset [0-9]+|invalid JSON at byte offset [0-9]+|record larger than [0-9]+ bytes|more entries than [0-9]+|more than [0-9hms.]+ ahead of the processor's clock)$`)
)

func checkErrorShape(t *testing.T, de *DecodeError) {
	t.Helper()
	if de.Field != "" && !fieldPattern.MatchString(de.Field) {
		t.Errorf("field %q is not a field path", de.Field)
	}
	if !reasonPattern.MatchString(de.Reason) {
		t.Errorf("reason %q is not a known reason", de.Reason)
	}
}

func checkEventInvariants(t *testing.T, ev *Event, lim Limits) {
	t.Helper()
	if ev == nil {
		t.Fatal("nil event without error")
	}
	for what, v := range map[string]string{
		"MessageID": ev.MessageID, "TimestampRaw": ev.TimestampRaw, "SpaceID": ev.SpaceID,
		"AudienceID": ev.AudienceID, "AudienceKey": ev.AudienceKey, "SegmentID": ev.SegmentID,
	} {
		if v == "" {
			t.Errorf("%s is empty", what)
		}
	}
	if ev.ComputationClass != ClassAudience && ev.ComputationClass != ClassJourneyStep {
		t.Errorf("ComputationClass = %q", ev.ComputationClass)
	}
	if ev.Action != ActionEntered && ev.Action != ActionExited {
		t.Errorf("Action = %q", ev.Action)
	}
	if ts, err := time.Parse(time.RFC3339Nano, ev.TimestampRaw); err != nil || !ts.Equal(ev.Timestamp) {
		t.Errorf("TimestampRaw %q does not give Timestamp %v", ev.TimestampRaw, ev.Timestamp)
	}
	if ev.Timestamp.Sub(decodeNow) > lim.MaxFutureSkew {
		t.Errorf("Timestamp %v beyond skew", ev.Timestamp)
	}
	if ev.Sync != nil && ev.Sync.StartedAt.Sub(decodeNow) > lim.MaxFutureSkew {
		t.Errorf("Sync.StartedAt %v beyond skew", ev.Sync.StartedAt)
	}
	if ev.ExternalIDs == nil || len(ev.ExternalIDs) > lim.MaxExternalIDs {
		t.Errorf("%d external ids (nil: %v), limit %d", len(ev.ExternalIDs), ev.ExternalIDs == nil, lim.MaxExternalIDs)
	}
	for i, x := range ev.ExternalIDs {
		if x.Type == "" || x.ID == "" {
			t.Errorf("ExternalIDs[%d] = %+v", i, x)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases(f) {
		if len(tc.raw) <= 64<<10 {
			f.Add(tc.raw)
		}
	}
	lim := Limits{MaxRecordBytes: 64 << 10, MaxExternalIDs: 8, MaxFutureSkew: time.Hour}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := Decode(raw, decodeNow, lim)
		if err == nil {
			checkEventInvariants(t, ev, lim)
			return
		}
		if ev != nil {
			t.Errorf("event %+v with error %v", ev, err)
		}
		de, ok := err.(*DecodeError)
		if !ok {
			t.Fatalf("error %v is a %T, want *DecodeError", err, err)
		}
		known := false
		for _, c := range Codes {
			known = known || c == de.Code
		}
		if !known || de.Code == CodeFanoutLimit {
			t.Errorf("code %q is not a decode code", de.Code)
		}
		checkErrorShape(t, de)
	})
}

// benchEvent is a realistic ~1 KiB event: the design example with eight
// external ids and a few traits and fields idsync does not read.
func benchEvent(tb testing.TB) []byte {
	var m map[string]any
	if err := json.Unmarshal(readExample(tb), &m); err != nil {
		tb.Fatal(err)
	}
	ids := m["external_ids"].([]any)
	ids = append(ids,
		map[string]any{"type": "anonymous_id", "id": "7f3c2b1a-9d8e-4f6a-b5c4-d3e2f1a0b9c8", "created_at": "2025-05-02T00:00:00Z"},
		map[string]any{"type": "android.idfa", "id": "38400000-8cf0-11bd-b23e-10b96e40000d", "created_at": "2025-05-03T00:00:00.123Z"},
	)
	m["external_ids"] = ids
	m["traits"].(map[string]any)["plan"] = "pro"
	m["traits"].(map[string]any)["age"] = 41
	m["context"] = map[string]any{"library": map[string]any{"name": "unify", "version": "2.4.1"}}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func BenchmarkDecode(b *testing.B) {
	raw := benchEvent(b)
	lim := DefaultLimits()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(raw, decodeNow, lim); err != nil {
			b.Fatal(err)
		}
	}
}

// stdlibEvent mirrors the event for BenchmarkDecodeStdlibBaseline: what a
// plain encoding/json decode of the same record costs, without validation.
type stdlibEvent struct {
	MessageID        string    `json:"message_id"`
	Timestamp        time.Time `json:"timestamp"`
	SpaceID          string    `json:"space_id"`
	ComputationClass string    `json:"computation_class"`
	AudienceID       string    `json:"audience_id"`
	AudienceKey      string    `json:"audience_key"`
	Action           string    `json:"action"`
	Sync             *struct {
		ID        string    `json:"id"`
		StartedAt time.Time `json:"started_at"`
	} `json:"sync"`
	Profile struct {
		SegmentID string `json:"segment_id"`
	} `json:"profile"`
	ExternalIDs []struct {
		Type      string    `json:"type"`
		ID        string    `json:"id"`
		CreatedAt time.Time `json:"created_at"`
	} `json:"external_ids"`
	Traits struct {
		Name      string `json:"name"`
		FirstName string `json:"first_name"`
		LastName  string `json:"last_name"`
	} `json:"traits"`
}

func BenchmarkDecodeStdlibBaseline(b *testing.B) {
	raw := benchEvent(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		var ev stdlibEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeError measures the slow path (a mistyped field deep in the
// record), which must stay reasonable even though it is rare.
func BenchmarkDecodeError(b *testing.B) {
	raw := bytes.Replace(benchEvent(b), []byte(`"type":"shopify_id"`), []byte(`"type":5`), 1)
	lim := DefaultLimits()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(raw, decodeNow, lim); err == nil {
			b.Fatal("accepted")
		}
	}
}

// TestDecodePooledWireEvents checks that the wire events the fast path
// reuses carry nothing from one record to the next: an event keeps its
// values after later records are decoded, and a record without
// external_ids is refused after one that had them.
func TestDecodePooledWireEvents(t *testing.T) {
	first, err := Decode(perEventInput, benchNow, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	want := *first
	wantIDs := append([]ExternalID(nil), first.ExternalIDs...)
	wantSync := *first.Sync
	without := []byte(`{"message_id":"m2","timestamp":"2026-06-01T12:00:00Z","space_id":"s","audience_id":"a","action":"exited","profile":{"segment_id":"u"}}`)
	for range 4 {
		if _, err := Decode(without, benchNow, DefaultLimits()); err == nil || !strings.Contains(err.Error(), "external_ids") {
			t.Fatalf("record without external_ids: %v", err)
		}
		other, err := Decode(bytes.ReplaceAll(perEventInput, []byte("u123456789"), []byte("other-user")), benchNow, DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		if other == first || &other.ExternalIDs[0] == &first.ExternalIDs[0] || other.Sync == first.Sync {
			t.Fatal("two events share memory")
		}
	}
	if first.MessageID != want.MessageID || first.SegmentID != want.SegmentID || !reflect.DeepEqual(first.ExternalIDs, wantIDs) ||
		*first.Sync != wantSync || first.ExternalIDs[0].ID != "u123456789" {
		t.Fatalf("event changed after later records: %+v", first)
	}
}
