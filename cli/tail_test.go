package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestTail(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "idsync.dest.fbca_01"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := strings.Join(cluster.ListenAddrs(), ",")

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("idsync.dest.fbca_01"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	records := []*kgo.Record{
		{Key: []byte("use_1"), Value: []byte(`{"message_id": "m:fbca_01:0", "payload": {"a": [1, 2]}}`),
			Headers: []kgo.RecordHeader{{Key: "idsync-source", Value: []byte("in/0/7")}, {Key: "idsync-config-version", Value: []byte("3")}}},
		{Key: []byte("use_2"), Value: []byte("not json <&>")},
		{Value: nil},
	}
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runWith(ctx, map[string]string{"IDSYNC_KAFKA_BROKERS": brokers}, "", "tail", "idsync.dest.fbca_01", "--from-beginning", "--max", "3")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	type line struct {
		Topic     string            `json:"topic"`
		Partition *int32            `json:"partition"`
		Offset    *int64            `json:"offset"`
		Key       *string           `json:"key"`
		Headers   map[string]string `json:"headers"`
		Value     json.RawMessage   `json:"value"`
	}
	byValue := map[string]line{}
	for _, l := range lines {
		var got line
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("line %s: %v", l, err)
		}
		if got.Topic != "idsync.dest.fbca_01" || got.Partition == nil || got.Offset == nil || got.Headers == nil {
			t.Errorf("line %s", l)
		}
		byValue[string(got.Value)] = got
	}
	j, ok := byValue[`{"message_id":"m:fbca_01:0","payload":{"a":[1,2]}}`]
	if !ok || j.Key == nil || *j.Key != "use_1" || j.Headers["idsync-source"] != "in/0/7" || j.Headers["idsync-config-version"] != "3" {
		t.Errorf("JSON record not embedded as JSON: %v", byValue)
	}
	if s, ok := byValue[`"not json <&>"`]; !ok || *s.Key != "use_2" {
		t.Errorf("non-JSON record not a string: %v", byValue)
	}
	if n, ok := byValue["null"]; !ok || n.Key != nil {
		t.Errorf("null record: %v", byValue)
	}
}

// TestTailStopsOnCancel: without --max, tail returns 0 when ctx ends.
func TestTailStopsOnCancel(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	code, out, errOut := runWith(ctx, nil, "", "tail", "t", "--brokers", strings.Join(cluster.ListenAddrs(), ","))
	if code != ExitOK || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestTailUsage(t *testing.T) {
	for _, args := range [][]string{
		{"tail"},
		{"tail", "a", "b"},
		{"tail", "t", "--max", "-1"},
		{"tail", "t", "--max", "x"},
		{"tail", "t", "--brokers", " , "},
		{"tail", "t", "--nope"},
	} {
		code, _, errOut := runCLI(t, nil, args...)
		if code != ExitUsage || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}
