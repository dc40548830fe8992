package pipeline

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// failTxnOffsetCommits answers the next n TxnOffsetCommit requests with
// INVALID_PRODUCER_EPOCH for every partition, as a broker bounce that moved
// the transaction coordinator once did on the three-node cluster.
func failTxnOffsetCommits(c *kfake.Cluster, n int) *atomic.Int32 {
	var answered atomic.Int32
	c.ControlKey(int16(kmsg.TxnOffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		if int(answered.Add(1)) > n {
			c.DropControl()
			return nil, nil, false
		}
		c.KeepControl()
		req := kreq.(*kmsg.TxnOffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewTxnOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.InvalidProducerEpoch.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	return &answered
}

// TestTransactionStuckReplacesClient: in exactly_once, a transaction whose
// offsets cannot be committed (End fails; franz-go's errors there are not
// retryable) no longer stops the pipeline: it replaces its Kafka client,
// rejoins, reads the uncommitted records again, and every output arrives
// exactly once for a read_committed reader.
func TestTransactionStuckReplacesClient(t *testing.T) {
	e, c := kfakeEnv(t, 1)
	e.createInput(t, 2)
	src := fixture(t)
	in := produceInputs(t, e, inputs(60))
	failed := failTxnOffsetCommits(c, 2)
	r := start(t, e, src, func(cfg *Config) {
		cfg.Delivery = ExactlyOnce
		cfg.RebalanceTimeout = 10 * time.Second
		cfg.SessionTimeout = 6 * time.Second
	})
	waitCommitted(t, e, 90*time.Second)
	alive(t, r)
	if failed.Load() < 1 {
		t.Fatal("no transaction offset commit was failed: the test did not test anything")
	}
	if n := testutil.ToFloat64(r.p.m.clientRestarts); n < 1 {
		t.Errorf("idsync_pipeline_client_restarts_total = %v, want at least 1", n)
	}
	want := expect(t, e, src, in, r.p.cfg.Options, r.p.cfg.Limits)
	compare(t, want, readAll(t, e, want, true))
}
