package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestDLQFlags: the selection flags become the filter, and bad ones are
// usage errors (exit 2) before any broker is contacted.
func TestDLQFlags(t *testing.T) {
	now := time.Date(2026, 6, 2, 12, 0, 0, 0, time.UTC)
	f := dlqFilterFlags{since: "24h", until: "2026-06-02T11:00:00Z", codes: []string{"invalid_config"}, dests: []string{"fbca_01", "none"},
		partitions: []int32{3}, offsets: "10-20"}
	got, err := f.filter(now)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Since.Equal(now.Add(-24*time.Hour)) || got.Until.Hour() != 11 || len(got.Codes) != 1 || got.Destinations[1] != "" ||
		got.SourceOffsets == nil || got.SourceOffsets.Min != 10 || got.SourceOffsets.Max != 20 {
		t.Errorf("filter %+v", got)
	}
	for _, args := range [][]string{
		{"dlq", "stats", "--code", "nope"},
		{"dlq", "stats", "--since", "yesterday"},
		{"dlq", "stats", "--since", "1h", "--until", "2h"},
		{"dlq", "replay", "--source-offsets", "5-9"},
		{"dlq", "replay", "--source-partition", "1", "--source-offsets", "9-5"},
		{"dlq", "replay", "--batch-size", "0"},
		{"dlq", "stats", "-o", "yaml"},
		{"dlq", "stats", "extra"},
		{"dlq"},
	} {
		var errOut bytes.Buffer
		if code := Main(context.Background(), Env{Args: args, Stdout: &bytes.Buffer{}, Stderr: &errOut}); code != ExitUsage {
			t.Errorf("idsync %s: exit %d, want %d\n%s", strings.Join(args, " "), code, ExitUsage, errOut.String())
		}
	}
}

// TestRefusedIfDenied: an ACL refusal by the brokers is a refusal by the
// server (exit 3), other errors a failure.
func TestRefusedIfDenied(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("dlq replay: producing: %w", kerr.TopicAuthorizationFailed), ExitRefused},
		{fmt.Errorf("dlq replay: %w", kerr.TransactionalIDAuthorizationFailed), ExitRefused},
		{fmt.Errorf("dlq stats: %w", kerr.UnknownTopicOrPartition), 0},
		{errors.New("boom"), 0},
	} {
		var ee *exitError
		got := refusedIfDenied(tc.err)
		if errors.As(got, &ee) != (tc.code != 0) || (ee != nil && ee.code != tc.code) {
			t.Errorf("%v: %v", tc.err, got)
		}
	}
}
