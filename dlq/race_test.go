package dlq

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/internal/stacktest"
	"github.com/idsync/idsync/pipeline"
)

// letters writes synthetic dead letters in the pipeline's layout: one per
// source offset for destination d1, and a second one (d2) for the first
// `shared` sources, as an event dead-lettered for two destinations has.
func letters(t *testing.T, k *stacktest.Cluster, input, dlqTopic string, sources, shared int) {
	t.Helper()
	var recs []*kgo.Record
	for i := range sources {
		dests := []string{"d1"}
		if i < shared {
			dests = append(dests, "d2")
		}
		for _, d := range dests {
			hs := slices.Concat(hdrs("traceparent", fmt.Sprintf("00-%032x-%016x-01", i+1, i+1)), hdrs(
				pipeline.HeaderOriginalHeaders, "1",
				idsync.HeaderErrorCode, "invalid_config", idsync.HeaderError, "connection "+d+": unusable",
				idsync.HeaderSourceTopic, input, idsync.HeaderSourcePartition, "0", idsync.HeaderSourceOffset, fmt.Sprint(i),
				idsync.HeaderDestinationID, d, pipeline.HeaderSourceTimestamp, "1700000000123",
				pipeline.HeaderConnectTopic, input, pipeline.HeaderConnectPartition, "0", pipeline.HeaderConnectOffset, fmt.Sprint(i),
				pipeline.HeaderConnectExceptionClass, "idsync.error.invalid_config", pipeline.HeaderConnectExceptionMessage, "unusable"))
			recs = append(recs, &kgo.Record{Topic: dlqTopic, Partition: 0, Key: []byte(fmt.Sprint("spa:use_", i)),
				Value: []byte(fmt.Sprintf(`{"n":%d}`, i)), Headers: hs, Timestamp: time.UnixMilli(1700000000123)})
		}
	}
	cl := k.NewClient(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// inputCounts reads the input topic: how many replays name each source.
func inputCounts(t *testing.T, k *stacktest.Cluster, input string) map[string]int {
	t.Helper()
	cl := k.NewClient(t, kgo.ConsumeTopics(input), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	out := map[string]int{}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { out[string(r.Value)]++; n++ })
		if n == 0 {
			return out
		}
	}
}

func raceTopics(t *testing.T) (*stacktest.Cluster, string, string) {
	k := stacktest.Kafka(t)
	// The letters are dated 2023: no time-based retention (see keepForever).
	keep := map[string]string{"retention.ms": "-1"}
	input, dlqTopic := k.TopicWithConfig(t, 1, keep), k.TopicWithConfig(t, 1, keep)
	return k, input, dlqTopic
}

// TestReplayOncePerInput: an input dead-lettered for two destinations is
// replayed once (the pipeline processes it for both), and both its dead
// letters are marked.
func TestReplayOncePerInput(t *testing.T) {
	k, input, dlqTopic := raceTopics(t)
	letters(t, k, input, dlqTopic, 6, 3)
	c, err := New(Config{Brokers: k.Brokers(), DLQTopic: dlqTopic, InputTopic: input, MarkerTopic: dlqTopic + ".m"})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := c.Replay(context.Background(), Filter{}, ReplayOptions{})
	if err != nil || sum.Replayed != 9 {
		t.Fatalf("replay: %+v, %v", sum, err)
	}
	got := inputCounts(t, k, input)
	if len(got) != 6 {
		t.Fatalf("the input topic holds %d distinct inputs, want 6: %v", len(got), got)
	}
	for v, n := range got {
		if n != 1 {
			t.Errorf("input %s replayed %d times", v, n)
		}
	}
	again, err := c.Replay(context.Background(), Filter{}, ReplayOptions{DryRun: true})
	if err != nil || again.Replayed != 0 || again.AlreadyReplayed != 9 {
		t.Errorf("after the replay: %+v, %v", again, err)
	}
}

// TestConcurrentReplays: a replay that read the markers and then waited
// while another replay did the whole job replays nothing twice: the later
// one fenced it.
func TestConcurrentReplays(t *testing.T) {
	k, input, dlqTopic := raceTopics(t)
	letters(t, k, input, dlqTopic, 8, 0)
	cfg := Config{Brokers: k.Brokers(), DLQTopic: dlqTopic, InputTopic: input, MarkerTopic: dlqTopic + ".m"}
	reached, release := make(chan struct{}), make(chan struct{})
	slow := cfg
	slow.afterMarkers = func() { close(reached); <-release }
	a, err := New(slow)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var sumA Summary
	var errA error
	wg.Go(func() { sumA, errA = a.Replay(context.Background(), Filter{}, ReplayOptions{BatchSize: 3}) })
	<-reached
	sumB, errB := b.Replay(context.Background(), Filter{}, ReplayOptions{BatchSize: 3})
	close(release)
	wg.Wait()
	if errB != nil || sumB.Replayed != 8 {
		t.Fatalf("the second replay: %+v, %v", sumB, errB)
	}
	if errA == nil || sumA.Replayed != 0 || !strings.Contains(errA.Error(), "fence") && !strings.Contains(errA.Error(), "epoch") && !strings.Contains(errA.Error(), "FENCED") {
		t.Errorf("the first replay, fenced by the second: %+v, %v", sumA, errA)
	}
	for v, n := range inputCounts(t, k, input) {
		if n != 1 {
			t.Errorf("input %s replayed %d times", v, n)
		}
	}
}
