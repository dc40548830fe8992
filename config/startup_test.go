package config

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/store"
)

// TestValidMeansStartable: configurations at the edges of what Validate
// accepts are also accepted by what start-up builds from them (the
// options idsync.Process checks, the store's prefix rule, the pipeline's
// rule that its producer buffer holds a whole batch), so that no setting
// passes validation and then stops idsync with a message naming none.
func TestValidMeansStartable(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    src
	}{
		{"defaults", src{}},
		{"smallest producer batch and buffer", src{file: "kafka: {producer_batch_max_bytes: 2048}\nprocessing: {max_inflight_bytes: 2048, max_record_bytes: 2048}\n"}},
		{"buffer exactly one batch", src{file: "kafka: {producer_batch_max_bytes: 16777216}\nprocessing: {max_inflight_bytes: 16777216}\n"}},
		{"smallest output bounds", src{file: "processing: {max_output_bytes: 1, max_event_output_bytes: 1, max_facebook_rows: 1, max_combinations: 1}\n"}},
		{"longest prefix", src{env: []string{"IDSYNC_REDIS_KEY_PREFIX=" + longPrefix()}}},
		{"prefix with punctuation", src{args: []string{"--redis.key-prefix=idsync:prod/eu-1.", "--embedded"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.s)
			if err := c.ProcessOptions().Check(); err != nil {
				t.Errorf("ProcessOptions().Check() = %v", err)
			}
			if err := c.Processing.Options().Check(); err != nil {
				t.Errorf("Processing.Options().Check() = %v", err)
			}
			if c.Processing.MaxInflightBytes < int64(c.Kafka.ProducerBatchMaxBytes) {
				t.Errorf("max_inflight_bytes %d below producer_batch_max_bytes %d: the pipeline refuses that", c.Processing.MaxInflightBytes, c.Kafka.ProducerBatchMaxBytes)
			}
			if _, err := store.New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), store.Options{Prefix: c.Redis.KeyPrefix}); err != nil {
				t.Errorf("store.New refuses redis.key_prefix: %v", err)
			}
		})
	}
}

func longPrefix() string {
	b := make([]byte, store.MaxPrefixLen)
	for i := range b {
		b[i] = 'p'
	}
	return string(b)
}
