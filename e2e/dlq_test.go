package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// dlqCLI runs "idsync dlq ARGS" with the stack's kafka settings, as an
// operator would with the service's environment.
func (s *stack) dlqCLI(args ...string) (code int, stdout, stderr string) {
	s.t.Helper()
	return runBinary(s.t, []string{"IDSYNC_KAFKA_BROKERS=" + strings.Join(s.brokers, ","),
		"IDSYNC_KAFKA_INPUT_TOPIC=" + s.input, "IDSYNC_KAFKA_DLQ_TOPIC=" + s.dlq()}, "", append([]string{"dlq"}, args...)...)
}

// TestDLQReplayAfterFix follows docs/operations.md, "Replaying dead
// letters", with the real binary: events dead-lettered fanout_limit by a
// limit set too low; see them (stats); fix the cause (restart with the
// default limit); look (dry run); replay; check (the outputs arrive, a
// second run replays nothing). And the commands' usage errors and an
// unreachable broker, with their exit codes.
func TestDLQReplayAfterFix(t *testing.T) {
	s := newStack(t, 3)
	// Each event has two emails; the webhook sends one track per email:
	// two records, above a max_combinations of 1.
	in := s.start("low", "IDSYNC_PROCESSING_MAX_COMBINATIONS=1")
	in.put("spa_dlq", "aud_dlq", "hook", json.RawMessage(`{"destination_type":"webhook","setup":"customized",
		"identifiers":[{"segment":"email","destination":"email","strategy":"all"}]}`))
	const n = 12
	cl := s.client(kgo.DefaultProduceTopic(s.input))
	now := time.Now().UTC()
	var recs []*kgo.Record
	for i := range n {
		ev := fmt.Sprintf(`{"message_id":"m%d","timestamp":%q,"space_id":"spa_dlq","audience_id":"aud_dlq","action":"entered",
			"profile":{"segment_id":"use_%d"},"external_ids":[{"type":"email","id":"a%d@example.com","created_at":%q},
			{"type":"email","id":"b%d@example.com","created_at":%q}]}`, i, now.Format(time.RFC3339), i, i, now.Format(time.RFC3339), i, now.Format(time.RFC3339))
		recs = append(recs, &kgo.Record{Key: []byte("spa_dlq:use_" + fmt.Sprint(i)), Value: []byte(ev),
			Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(fmt.Sprintf("00-%032x-%016x-01", i+1, i+1))}}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s.waitCommitted(60 * time.Second)

	// 1. See what is there.
	code, out, errOut := s.dlqCLI("stats", "--since", "1h", "-o", "json")
	if code != 0 {
		t.Fatalf("dlq stats: exit %d\n%s%s", code, out, errOut)
	}
	var st struct {
		Matched       int            `json:"matched"`
		ByCode        map[string]int `json:"by_code"`
		ByDestination map[string]int `json:"by_destination"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.ByCode["fanout_limit"] != n || st.ByDestination["hook"] != n {
		t.Fatalf("dlq stats -o json: %v %+v\n%s", err, st, out)
	}
	code, out, _ = s.dlqCLI("stats", "--since", "1h")
	if code != 0 || !strings.Contains(out, "fanout_limit") || !strings.Contains(out, fmt.Sprintf("by code: fanout_limit %d", n)) {
		t.Fatalf("dlq stats (text): exit %d\n%s", code, out)
	}

	// 2. Fix the cause: the default limit, and a restart.
	if c, _ := in.terminate(30 * time.Second); c != 0 {
		t.Fatalf("stopping: exit %d", c)
	}
	in = s.start("fixed")

	// 3. Look before replaying: nothing is produced.
	code, out, errOut = s.dlqCLI("replay", "--code", "fanout_limit", "--destination", "hook", "--dry-run")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("would replay %d", n)) || strings.Count(out, "replay\t")+strings.Count(out, " replay ") < 1 {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}

	// 4. Replay.
	code, out, errOut = s.dlqCLI("replay", "--code", "fanout_limit", "--destination", "hook")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("replayed %d", n)) {
		t.Fatalf("replay: exit %d\n%s%s", code, out, errOut)
	}
	// The running idsync processes them: two records per event, with the
	// input's trace context.
	dest := s.client(kgo.ConsumeTopics(s.topicOf("hook")), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	traced := 0
	deadline := time.Now().Add(60 * time.Second)
	for got < 2*n && time.Now().Before(deadline) {
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		fs := dest.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) {
			got++
			for _, h := range r.Headers {
				if h.Key == "traceparent" && strings.HasPrefix(string(h.Value), "00-") {
					traced++
				}
			}
		})
	}
	if got != 2*n || traced != 2*n {
		t.Fatalf("after the replay the destination holds %d records (%d with the trace context), want %d", got, traced, 2*n)
	}

	// 5. Check: nothing is replayed twice.
	code, out, errOut = s.dlqCLI("replay", "--code", "fanout_limit", "--destination", "hook", "-o", "json")
	var sum struct {
		Replayed, AlreadyReplayed int
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err == nil {
		sum.Replayed, sum.AlreadyReplayed = int(raw["replayed"].(float64)), int(raw["already_replayed"].(float64))
	}
	if code != 0 || sum.Replayed != 0 || sum.AlreadyReplayed != n {
		t.Fatalf("second replay: exit %d, %+v\n%s%s", code, sum, out, errOut)
	}
	if in.metric("idsync_dlq_records_total") != 0 {
		t.Errorf("the replayed events were dead-lettered again: %v", in.metric("idsync_dlq_records_total"))
	}

	// Usage errors (2) and an unreachable broker (4).
	for _, args := range [][]string{
		{"replay", "--code", "nope"},
		{"stats", "--since", "yesterday"},
		{"replay", "--source-offsets", "9-3"},
		{"stats", "extra"},
	} {
		if code, _, errOut := s.dlqCLI(args...); code != 2 {
			t.Errorf("dlq %v: exit %d, want 2 (usage)\n%s", args, code, errOut)
		}
	}
	if code, _, errOut := runBinary(t, []string{"IDSYNC_KAFKA_BROKERS=127.0.0.1:1", "IDSYNC_KAFKA_DIAL_TIMEOUT=1s"}, "", "dlq", "stats"); code != 4 {
		t.Errorf("dlq stats with no broker: exit %d, want 4\n%s", code, errOut)
	}
}

// TestDLQReplayAfterConnectionFix follows docs/operations.md for
// invalid_config: a stored connection this binary cannot use dead-letters
// its events; the connection is fixed with an ordinary edit; once the edit
// is in effect the dead letters are replayed, resolved under the fixed
// configuration (the replay's time, not the events'), and delivered. Every
// step is a command of the docs.
func TestDLQReplayAfterConnectionFix(t *testing.T) {
	s := newStack(t, 3)
	in := s.start("a", "IDSYNC_CONNECTIONS_ACTIVATION_DELAY=2s", "IDSYNC_CONNECTIONS_RETAIN_SUPERSEDED=2s")
	// A record written by a newer idsync: a destination type this one does
	// not know.
	hour := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	record := `{"versions":[{"version":1,"updated_at":"` + hour + `","effective_at":"` + hour + `","config":{"destination_type":"tiktok_audiences","setup":"default"}}]}`
	rdb := redisClient(t, s.redisAddr)
	if err := rdb.HSet(context.Background(), s.prefix()+"{spa_fix/aud_fix}:connections", "hook", record).Err(); err != nil {
		t.Fatal(err)
	}
	const n = 8
	cl := s.client(kgo.DefaultProduceTopic(s.input))
	now := time.Now().UTC().Format(time.RFC3339)
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint("spa_fix:use_", i)), Value: []byte(fmt.Sprintf(
			`{"message_id":"f%d","timestamp":%q,"space_id":"spa_fix","audience_id":"aud_fix","action":"entered","profile":{"segment_id":"use_%d"},
			"external_ids":[{"type":"email","id":"p%d@example.com","created_at":%q}]}`, i, now, i, i, now))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s.waitCommitted(60 * time.Second)
	if code, out, errOut := s.dlqCLI("stats", "--code", "invalid_config", "-o", "json"); code != 0 || !strings.Contains(out, `"hook": 8`) {
		t.Fatalf("dlq stats: exit %d\n%s%s", code, out, errOut)
	}

	// The fix: an ordinary edit, in effect after the activation delay.
	if code, out, errOut := in.cli("", "config", "get", "spa_fix", "aud_fix", "hook"); code != 0 || !strings.Contains(out+errOut, "tiktok_audiences") {
		t.Fatalf("config get shows what is wrong: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := in.cli(`{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"email","destination":"email","strategy":"all"}]}`,
		"config", "put", "spa_fix", "aud_fix", "hook", "-f", "-")
	if code != 0 || !strings.Contains(out, "pending") {
		t.Fatalf("config put: exit %d\n%s%s", code, out, errOut)
	}
	// Wait for the edit to take effect (2s here, 5 minutes by default), as
	// the docs say: config get shows no pending version.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, out, _ := in.cli("", "config", "get", "spa_fix", "aud_fix", "hook", "-o", "json")
		if code == 0 && (strings.Contains(out, `"pending": null`) || strings.Contains(out, `"pending":null`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edit is not in effect after 30s:\n%s", out)
		}
	}

	code, out, errOut = s.dlqCLI("replay", "--code", "invalid_config", "--destination", "hook")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("replayed %d", n)) {
		t.Fatalf("replay: exit %d\n%s%s", code, out, errOut)
	}
	dest := s.client(kgo.ConsumeTopics(s.topicOf("hook")), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	for deadline := time.Now().Add(60 * time.Second); got < n && time.Now().Before(deadline); {
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		dest.PollFetches(pctx).EachRecord(func(*kgo.Record) { got++ })
		pcancel()
	}
	if got != n {
		t.Fatalf("after the fix and the replay the destination holds %d records, want %d (dead letters now: %v)", got, n, in.metric("idsync_dlq_records_total"))
	}
	if dl := in.metric("idsync_dlq_records_total"); dl != n {
		t.Errorf("%v dead letters in all, want the %d of before the fix", dl, n)
	}
}
