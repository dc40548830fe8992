package dlq

import (
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/pipeline"
)

func hdrs(kv ...string) []kgo.RecordHeader {
	var hs []kgo.RecordHeader
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return hs
}

// idsyncHeaders are the headers the pipeline adds to a dead letter of
// in.input/1/42 (timestamp 1700000000123), after n input headers.
func idsyncHeaders(n string, extra ...string) []kgo.RecordHeader {
	return hdrs(append([]string{
		pipeline.HeaderOriginalHeaders, n,
		idsync.HeaderErrorCode, "invalid_config", idsync.HeaderError, "connection fbca_01: unusable",
		idsync.HeaderSourceTopic, "in.input", idsync.HeaderSourcePartition, "1", idsync.HeaderSourceOffset, "42",
		idsync.HeaderDestinationID, "fbca_01", pipeline.HeaderSourceTimestamp, "1700000000123",
		pipeline.HeaderConnectTopic, "in.input", pipeline.HeaderConnectPartition, "1", pipeline.HeaderConnectOffset, "42",
		pipeline.HeaderConnectExceptionClass, "idsync.error.invalid_config", pipeline.HeaderConnectExceptionMessage, "connection fbca_01: unusable",
	}, extra...)...)
}

func TestParse(t *testing.T) {
	input := hdrs("traceparent", "00-x-y-01", "x-tenant", "t1")
	// Input headers named like idsync's must not be read as idsync's.
	impostor := hdrs(idsync.HeaderErrorCode, "too_large", pipeline.HeaderOriginalSize, "99", idsync.HeaderSourceOffset, "7")
	ts := time.UnixMilli(1700000000123).UTC()
	cases := []struct {
		name      string
		headers   []kgo.RecordHeader
		skip      SkipReason
		originals int
	}{
		{"whole", slices.Concat(input, idsyncHeaders("2")), "", 2},
		{"no input headers", idsyncHeaders("0"), "", 0},
		{"impostor input headers", slices.Concat(impostor, idsyncHeaders("3")), "", 3},
		{"value truncated", slices.Concat(input, idsyncHeaders("2", pipeline.HeaderOriginalSize, "5000000")), SkipValueTruncated, 2},
		{"key truncated", slices.Concat(input, idsyncHeaders("2", pipeline.HeaderOriginalKeySize, "9000")), SkipKeyTruncated, 2},
		{"key and value truncated", slices.Concat(input, idsyncHeaders("2", pipeline.HeaderOriginalKeySize, "9000", pipeline.HeaderOriginalSize, "5000000")), SkipValueTruncated, 2},
		{"headers truncated", slices.Concat(hdrs("traceparent", "00-x-y-01"), idsyncHeaders("1", pipeline.HeaderOriginalHeadersSize, "100000")), SkipHeadersTruncated, 1},
		{"written before headers were kept", idsyncHeaders("0")[1:], SkipNoContext, -1},
		{"a count that does not match its place", slices.Concat(input, idsyncHeaders("5")), SkipNoContext, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := parse(&kgo.Record{Partition: 3, Offset: 9, Headers: tc.headers, Timestamp: time.Unix(1, 0)})
			if l.Skip != tc.skip || l.originals != tc.originals {
				t.Errorf("skip %q originals %d, want %q %d", l.Skip, l.originals, tc.skip, tc.originals)
			}
			if tc.originals < 0 {
				return
			}
			if l.Code != idsync.CodeInvalidConfig || l.Destination != "fbca_01" || l.SourceTopic != "in.input" ||
				l.SourcePartition != 1 || l.SourceOffset != 42 || !l.Timestamp.Equal(ts) || l.Partition != 3 || l.Offset != 9 {
				t.Errorf("parsed %+v", l)
			}
		})
	}
}

func TestReplayRecord(t *testing.T) {
	c := &Client{cfg: Config{DLQTopic: "d", InputTopic: "in"}}
	// The input was replayed once before (and dead-lettered again): its old
	// replay headers give way to this replay's.
	r := &kgo.Record{Partition: 3, Offset: 9, Key: []byte("k"), Value: []byte("v"),
		Headers: append(hdrs("traceparent", "00-x-y-01", HeaderReplayOf, "d/0/1", "x-tenant", "t1", idsync.HeaderReplayAt, "2026-01-01T00:00:00Z"), idsyncHeaders("4")...)}
	l := parse(r)
	at := time.Date(2026, 6, 1, 12, 0, 0, 500, time.UTC)
	got := c.replayRecord(r, &l, at)
	want := hdrs("traceparent", "00-x-y-01", "x-tenant", "t1", HeaderReplayOf, "d/3/9", idsync.HeaderReplayAt, "2026-06-01T12:00:00.0000005Z")
	if got.Topic != "in" || string(got.Key) != "k" || string(got.Value) != "v" || !got.Timestamp.Equal(time.UnixMilli(1700000000123)) ||
		len(got.Headers) != len(want) {
		t.Fatalf("replay record %+v", got)
	}
	for i := range want {
		if got.Headers[i].Key != want[i].Key || string(got.Headers[i].Value) != string(want[i].Value) {
			t.Errorf("header %d = %s:%q, want %s:%q", i, got.Headers[i].Key, got.Headers[i].Value, want[i].Key, want[i].Value)
		}
	}
}

func TestFilter(t *testing.T) {
	l := Letter{Code: idsync.CodeFanoutLimit, Destination: "wh_01", SourcePartition: 2, SourceOffset: 100,
		Timestamp: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	at := func(h int) time.Time { return time.Date(2026, 6, 1, h, 0, 0, 0, time.UTC) }
	cases := []struct {
		name string
		f    Filter
		want bool
	}{
		{"empty", Filter{}, true},
		{"code", Filter{Codes: []idsync.Code{idsync.CodeTooLarge, idsync.CodeFanoutLimit}}, true},
		{"other code", Filter{Codes: []idsync.Code{idsync.CodeTooLarge}}, false},
		{"destination", Filter{Destinations: []string{"wh_01"}}, true},
		{"whole records only", Filter{Destinations: []string{""}}, false},
		{"partition", Filter{SourcePartitions: []int32{1, 2}}, true},
		{"other partition", Filter{SourcePartitions: []int32{1}}, false},
		{"offsets", Filter{SourceOffsets: &OffsetRange{100, 100}}, true},
		{"offsets before", Filter{SourceOffsets: &OffsetRange{0, 99}}, false},
		{"since", Filter{Since: at(12)}, true},
		{"since after", Filter{Since: at(13)}, false},
		{"until is exclusive", Filter{Until: at(12)}, false},
		{"range", Filter{Since: at(11), Until: at(13)}, true},
	}
	for _, tc := range cases {
		if got := tc.f.match(&l); got != tc.want {
			t.Errorf("%s: match = %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, f := range []Filter{{SourceOffsets: &OffsetRange{5, 4}}, {Since: at(2), Until: at(2)}} {
		if f.check() == nil {
			t.Errorf("filter %+v accepted", f)
		}
	}
}

func TestConfig(t *testing.T) {
	if _, err := New(Config{Brokers: []string{"127.0.0.1:1"}, DLQTopic: "d", InputTopic: "d.replayed"}); err == nil {
		t.Error("a marker topic that is the input topic was accepted")
	}
	c, err := New(Config{Brokers: []string{"127.0.0.1:1"}, DLQTopic: "d", InputTopic: "in"})
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.MarkerTopic != "d.replayed" || c.cfg.TransactionalID != "idsync-dlq-replay.d" {
		t.Errorf("defaults %+v", c.cfg)
	}
	for _, cfg := range []Config{{DLQTopic: "d", InputTopic: "in"}, {Brokers: []string{"b"}, InputTopic: "in"}, {Brokers: []string{"b"}, DLQTopic: "d"}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}
