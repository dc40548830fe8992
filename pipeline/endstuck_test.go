package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestEndStuckReason: a transaction that cannot end names the likely cause
// from End's last error (a broker bounce on the cluster showed
// INVALID_PRODUCER_EPOCH, which the message used to blame on the group).
func TestEndStuckReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		says string
	}{
		{fmt.Errorf("unable to commit transaction offsets: %w", kerr.InvalidProducerEpoch), "transaction coordinator"},
		{kerr.ProducerFenced, "transaction coordinator"},
		{context.DeadlineExceeded, "fenced out of the group"},
	} {
		if got := endStuckReason(tc.err); !strings.Contains(got, tc.says) {
			t.Errorf("endStuckReason(%v) = %q, want it to say %q", tc.err, got, tc.says)
		}
	}
}
