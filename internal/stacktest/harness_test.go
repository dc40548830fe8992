package stacktest_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/internal/stacktest"
)

// TestHarness proves the end-to-end stack does what the other end-to-end
// tests rely on: a real broker that keeps and commits offsets for a consumer
// group, honours transactions, and a real Redis.
func TestHarness(t *testing.T) {
	t.Run("ConsumerGroupCommits", testConsumerGroupCommits)
	t.Run("TransactionsReadCommitted", testTransactionsReadCommitted)
	t.Run("Redis", testRedis)
	t.Run("Cleanup", testCleanup)
}

// testConsumerGroupCommits produces 10,000 records to six partitions, reads
// them back in a consumer group that commits explicitly, and checks both the
// values and the committed offsets.
func testConsumerGroupCommits(t *testing.T) {
	t.Parallel()
	const n = 10_000
	k := stacktest.Kafka(t)
	topic := k.Topic(t, 6)
	group := k.Group(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	producer := k.NewClient(t, kgo.DefaultProduceTopic(topic))
	want := make(map[string]bool, n)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for i := range n {
		v := fmt.Sprintf("value-%05d", i)
		want[v] = true
		wg.Add(1)
		r := &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(v)}
		producer.Produce(ctx, r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("producing: %v", firstErr)
	}

	consumer := k.NewClient(t,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)
	got := make(map[string]int, n)
	total := 0
	for len(got) < n {
		fetches := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d distinct values before the deadline: %v", len(got), n, err)
		}
		fetches.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetching %s/%d: %v", topic, p, err)
		})
		recs := fetches.Records()
		for _, r := range recs {
			got[string(r.Value)]++
			total++
		}
		if err := consumer.CommitRecords(ctx, recs...); err != nil {
			t.Fatalf("committing: %v", err)
		}
	}
	for v := range want {
		if got[v] == 0 {
			t.Errorf("value %s was produced but not consumed", v)
		}
	}
	for v := range got {
		if !want[v] {
			t.Errorf("value %s was consumed but never produced", v)
		}
	}
	if total != n {
		// Possible in principle (at-least-once across a rebalance), never
		// expected with one member; worth seeing, not worth failing.
		t.Logf("consumed %d records for %d distinct values", total, n)
	}

	adm := k.Admin(t)
	committed, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		t.Fatalf("fetching committed offsets: %v", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("listing end offsets: %v", err)
	}
	var sum int64
	ends.Each(func(end kadm.ListedOffset) {
		c, ok := committed.Lookup(topic, end.Partition)
		if !ok {
			t.Errorf("partition %d: no committed offset, end offset %d", end.Partition, end.Offset)
			return
		}
		if c.At != end.Offset {
			t.Errorf("partition %d: committed offset %d, end offset %d", end.Partition, c.At, end.Offset)
		}
		sum += c.At
	})
	if sum != n {
		t.Errorf("committed offsets sum to %d, want %d", sum, n)
	}
}

// testTransactionsReadCommitted aborts one transaction and commits another,
// then checks that a read_committed consumer sees exactly the committed
// records while a read_uncommitted one sees both, proving the aborted records
// did reach the log.
func testTransactionsReadCommitted(t *testing.T) {
	t.Parallel()
	const perTxn = 100
	k := stacktest.Kafka(t)
	topic := k.Topic(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	producer := k.NewClient(t,
		kgo.DefaultProduceTopic(topic),
		kgo.TransactionalID(stacktest.Name(t)),
	)
	transact := func(prefix string, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := producer.BeginTransaction(); err != nil {
			t.Fatalf("beginning the %s transaction: %v", prefix, err)
		}
		recs := make([]*kgo.Record, perTxn)
		for i := range recs {
			recs[i] = kgo.StringRecord(fmt.Sprintf("%s-%03d", prefix, i))
		}
		if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("producing in the %s transaction: %v", prefix, err)
		}
		if err := producer.EndTransaction(ctx, commit); err != nil {
			t.Fatalf("ending the %s transaction: %v", prefix, err)
		}
	}
	transact("aborted", kgo.TryAbort)
	transact("committed", kgo.TryCommit)

	// consume reads the topic from the start until it has want records.
	consume := func(want int, level kgo.IsolationLevel) []string {
		t.Helper()
		cl := k.NewClient(t,
			kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(level),
		)
		var vals []string
		for len(vals) < want {
			fetches := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				t.Fatalf("consumed %d of %d records before the deadline: %v", len(vals), want, err)
			}
			fetches.EachError(func(topic string, p int32, err error) {
				t.Fatalf("fetching %s/%d: %v", topic, p, err)
			})
			fetches.EachRecord(func(r *kgo.Record) { vals = append(vals, string(r.Value)) })
		}
		return vals
	}

	// One partition: the aborted records come before the committed ones in
	// the log, so a consumer that has read all committed records has already
	// passed every aborted one.
	committed := consume(perTxn, kgo.ReadCommitted())
	if len(committed) != perTxn {
		t.Errorf("read_committed consumer got %d records, want %d", len(committed), perTxn)
	}
	for i, v := range committed {
		if want := fmt.Sprintf("committed-%03d", i); v != want {
			t.Errorf("read_committed record %d = %q, want %q", i, v, want)
		}
	}

	all := consume(2*perTxn, kgo.ReadUncommitted())
	if len(all) != 2*perTxn || all[0] != "aborted-000" || all[perTxn] != "committed-000" {
		t.Errorf("read_uncommitted consumer got %d records starting %q, want %d starting with the aborted ones",
			len(all), all[0], 2*perTxn)
	}
}

// testRedis writes and reads keys under the test's prefix.
func testRedis(t *testing.T) {
	t.Parallel()
	r := stacktest.Redis(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	key := r.Key("greeting")
	if err := r.Set(ctx, key, "hello", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	got, err := r.Get(ctx, key).Result()
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	if got != "hello" {
		t.Errorf("GET %s = %q, want %q", key, got, "hello")
	}
	if err := r.HSet(ctx, r.Key("hash"), "field", "1").Err(); err != nil {
		t.Fatalf("HSET: %v", err)
	}
	n, err := r.HIncrBy(ctx, r.Key("hash"), "field", 41).Result()
	if err != nil || n != 42 {
		t.Errorf("HINCRBY = %d, %v; want 42, nil", n, err)
	}
}

// testCleanup checks that what a test creates is gone after it: its topic
// and its Redis keys.
func testCleanup(t *testing.T) {
	t.Parallel()
	k := stacktest.Kafka(t)
	outer := stacktest.Redis(t)
	var topic, prefix string
	t.Run("inner", func(t *testing.T) {
		topic = k.Topic(t, 1)
		r := stacktest.Redis(t)
		prefix = r.Prefix()
		for i := range 1200 { // more than one SCAN page and DEL batch
			if err := r.Set(t.Context(), r.Key(strconv.Itoa(i)), i, 0).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	keys, err := outer.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	if len(keys) != 0 {
		t.Errorf("%d keys under %q left after the test that owned them", len(keys), prefix)
	}

	adm := k.Admin(t)
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatalf("listing topics: %v", err)
	}
	if td, ok := topics[topic]; ok && td.Err == nil {
		t.Errorf("topic %s still exists after the test that owned it", topic)
	}
}
