package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
)

// TestReplayedAt: the replay time is read from the record's last
// idsync-replay-at header; anything but a short RFC 3339 time is ignored.
func TestReplayedAt(t *testing.T) {
	h := func(kv ...string) []kgo.RecordHeader {
		var out []kgo.RecordHeader
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return out
	}
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		headers []kgo.RecordHeader
		want    time.Time
	}{
		{"none", h("traceparent", "00-a-b-01"), time.Time{}},
		{"one", h(idsync.HeaderReplayAt, "2026-06-01T12:00:00Z"), at},
		{"the last wins", h(idsync.HeaderReplayAt, "2020-01-01T00:00:00Z", idsync.HeaderReplayAt, "2026-06-01T12:00:00Z"), at},
		{"garbage", h(idsync.HeaderReplayAt, "tomorrow"), time.Time{}},
		{"huge", h(idsync.HeaderReplayAt, "2026-06-01T12:00:00Z"+strings.Repeat(" ", 1<<20)), time.Time{}},
		{"empty", h(idsync.HeaderReplayAt, ""), time.Time{}},
	} {
		if got := replayedAt(&kgo.Record{Headers: tc.headers}); !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
