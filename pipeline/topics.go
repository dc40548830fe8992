package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// unknownTopicRetries is how many times the producer tries a record whose
// topic is unknown (each try after a metadata refresh) before failing it;
// the pipeline then checks the topic itself (see topics).
const unknownTopicRetries = 4

// errTopicNotReady means a topic records must go to does not exist now:
// the input partition waits (WaitTopic) and tries again after the backoff.
var errTopicNotReady = errors.New("topic not ready")

// topics makes sure a destination topic (or the DLQ topic) exists before
// records go to it: it creates a missing one when creation is enabled, and
// otherwise reports it missing (a log line naming the topic, the
// missing-topics gauge) and lets the input partition wait. It never blocks
// the pipeline on one topic: a check that fails returns at once and the
// next one for the same topic waits for the retry backoff.
//
// A topic deleted after its first use is noticed by the producer
// (UNKNOWN_TOPIC_OR_PARTITION once the client's unknown-topic retries are
// spent): forget drops it from the known topics, so the next record for it
// creates it again or waits for it.
type topics struct {
	cl  *kgo.Client
	adm *kadm.Client
	cfg Config
	m   *metrics
	log *slog.Logger

	mu sync.Mutex
	// ready maps a destination id to its topic once that topic is known to
	// exist, so the per-record path costs one lookup.
	ready map[string]string
	// known are the topics known to exist.
	known map[string]bool
	// missing are the topics found missing, with when they were last
	// checked (checks are at most one per retry backoff).
	missing map[string]time.Time
	// limits are the max.message.bytes of topics that refused a record as
	// too large: below the producer's batch size, so their records are
	// produced one at a time and those above it dead-lettered.
	limits map[string]int
	// anyLimit is set once a limit is learnt: until then the per-record
	// check costs no lock.
	anyLimit atomic.Bool
	// purge are the forgotten topics whose producer state (their old
	// topic id) is dropped once the batch has ended.
	purge []string
}

func newTopics(cl *kgo.Client, cfg Config, m *metrics, log *slog.Logger) *topics {
	return &topics{cl: cl, adm: kadm.NewClient(cl), cfg: cfg, m: m, log: log,
		ready: map[string]string{}, known: map[string]bool{}, missing: map[string]time.Time{}, limits: map[string]int{}}
}

// forDestination returns the topic of destination id if it exists (see
// ensure), else an error wrapping errTopicNotReady.
func (t *topics) forDestination(ctx context.Context, id string) (string, error) {
	t.mu.Lock()
	topic, ok := t.ready[id]
	t.mu.Unlock()
	if ok {
		return topic, nil
	}
	topic = t.cfg.Topics.Topic(id)
	if err := t.ensure(ctx, topic); err != nil {
		return "", err
	}
	t.mu.Lock()
	t.ready[id] = topic
	t.mu.Unlock()
	return topic, nil
}

// dlq returns nil once the DLQ topic exists (see ensure).
func (t *topics) dlq(ctx context.Context) error { return t.ensure(ctx, t.cfg.DLQTopic) }

// ensure returns nil once topic exists (or was created), else an error
// wrapping errTopicNotReady. A known topic costs one map lookup.
func (t *topics) ensure(ctx context.Context, topic string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.known[topic] {
		return nil
	}
	if last, ok := t.missing[topic]; ok && time.Since(last) < t.cfg.RetryBackoff {
		return fmt.Errorf("topic %s: %w", topic, errTopicNotReady)
	}
	var err error
	if t.cfg.CreateTopics {
		err = t.create(ctx, topic)
	} else {
		err = t.exists(ctx, topic)
	}
	if err != nil {
		if _, was := t.missing[topic]; !was {
			if t.cfg.CreateTopics {
				t.log.Warn("destination topic cannot be created; its records wait", "topic", topic, "err", err)
			} else {
				t.log.Warn("destination topic does not exist and topic creation is disabled; its records wait", "topic", topic)
			}
		}
		t.missing[topic] = time.Now()
		t.m.missingTopics.Set(float64(len(t.missing)))
		return fmt.Errorf("topic %s: %w: %w", topic, errTopicNotReady, err)
	}
	if _, was := t.missing[topic]; was {
		delete(t.missing, topic)
		t.m.missingTopics.Set(float64(len(t.missing)))
		t.log.Info("topic is there again; its records flow", "topic", topic)
	}
	t.known[topic] = true
	return nil
}

// forget drops topic from the known topics after the producer found it
// missing: the next record for it checks again.
func (t *topics) forget(topic string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.known[topic] {
		return
	}
	t.purge = append(t.purge, topic)
	delete(t.known, topic)
	for id, tp := range t.ready {
		if tp == topic {
			delete(t.ready, id)
		}
	}
	t.log.Warn("topic disappeared after records were produced to it; checking it again", "topic", topic)
}

// purgeForgotten drops the producer's state of the forgotten topics, so
// that a topic deleted and made again is produced to under its new id. It
// runs between batches, when none of their records is in flight (and no
// transaction is open).
func (t *topics) purgeForgotten() {
	t.mu.Lock()
	purge := t.purge
	t.purge = nil
	t.mu.Unlock()
	if len(purge) > 0 {
		t.cl.PurgeTopicsFromProducing(purge...)
	}
}

func (t *topics) create(ctx context.Context, topic string) error {
	maxBytes := strconv.Itoa(int(t.cfg.MaxRecordBytes))
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := t.adm.CreateTopic(ctx, t.cfg.TopicPartitions, t.cfg.TopicReplicationFactor,
		map[string]*string{"max.message.bytes": &maxBytes}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	if err == nil {
		t.log.Info("created topic", "topic", topic, "partitions", t.cfg.TopicPartitions)
	}
	return nil
}

// exists asks the cluster's metadata whether topic exists.
func (t *topics) exists(ctx context.Context, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	details, err := t.adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("listing topic %s: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok {
		return fmt.Errorf("topic %s does not exist", topic)
	}
	if d.Err != nil {
		return fmt.Errorf("topic %s: %w", topic, d.Err)
	}
	return nil
}

// limit returns the learnt max.message.bytes of topic, if it refused a
// record as too large before.
func (t *topics) limit(topic string) (int, bool) {
	if !t.anyLimit.Load() {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.limits[topic]
	return n, ok
}

// learnLimit reads topic's max.message.bytes after it refused a batch as too
// large. The producer batches records up to kafka.producer_batch_max_bytes,
// which an operator-made topic may not take: from now on its records are
// produced alone, and only those that cannot fit on their own are
// dead-lettered.
func (t *topics) learnLimit(ctx context.Context, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	rcs, err := t.adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return fmt.Errorf("describing topic %s: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return fmt.Errorf("describing topic %s: %w", topic, err)
	}
	if rc.Err != nil {
		return fmt.Errorf("describing topic %s: %w", topic, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key != "max.message.bytes" || c.Value == nil {
			continue
		}
		n, err := strconv.Atoi(*c.Value)
		if err != nil {
			return fmt.Errorf("topic %s: max.message.bytes %q: %w", topic, *c.Value, err)
		}
		t.mu.Lock()
		_, had := t.limits[topic]
		t.limits[topic] = n
		t.anyLimit.Store(true)
		t.mu.Unlock()
		if !had {
			t.log.Warn("topic takes smaller records than kafka.producer_batch_max_bytes; its records are produced one at a time and those above its limit dead-lettered (raise its max.message.bytes)",
				"topic", topic, "max_message_bytes", n, "producer_batch_max_bytes", t.cfg.MaxRecordBytes)
		}
		return nil
	}
	return fmt.Errorf("topic %s: no max.message.bytes in its configuration", topic)
}
