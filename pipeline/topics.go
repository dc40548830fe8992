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

// aloneState is a topic produced to one record at a time, since when, and
// its max.message.bytes when it could be read (0 when not).
type aloneState struct {
	n     int
	since time.Time
}

// aloneTTL is how long a topic stays produced to one record at a time.
const aloneTTL = 5 * time.Minute

// checkBudget bounds the time one batch spends checking and creating
// topics (and reading their limits): past it, a topic not yet known is
// taken as not ready and its partitions wait, so that a batch needing many
// missing topics cannot hold the others (nor a transaction) for long.
const checkBudget = 10 * time.Second

// checkTimeout bounds one admin request about a topic.
const checkTimeout = 5 * time.Second

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
	// exist, so the per-record path costs one lock-free lookup.
	ready sync.Map // destination id → topic name
	// known are the topics known to exist.
	known map[string]bool
	// missing are the topics found missing, with when they were last
	// checked (checks are at most one per retry backoff).
	missing map[string]time.Time
	// limits are the topics whose records are produced one at a time,
	// because the broker refused a batch of theirs: n is the topic's
	// max.message.bytes when it could be read (records above it are
	// dead-lettered without a try), 0 when not. The state expires after
	// aloneTTL, so a topic an operator fixed gets batches again.
	limits map[string]aloneState
	// checked is the time spent checking topics in the current batch,
	// bounded by checkBudget.
	checked time.Duration
	// anyLimit is set once a limit is learnt: until then the per-record
	// check costs no lock.
	anyLimit atomic.Bool
	// purge are the forgotten topics whose producer state (their old
	// topic id) is dropped once the batch has ended.
	purge []string
}

func newTopics(cl *kgo.Client, cfg Config, m *metrics, log *slog.Logger) *topics {
	return &topics{cl: cl, adm: kadm.NewClient(cl), cfg: cfg, m: m, log: log,
		known: map[string]bool{}, missing: map[string]time.Time{}, limits: map[string]aloneState{}}
}

// forDestination returns the topic of destination id if it exists (see
// ensure), else an error wrapping errTopicNotReady.
func (t *topics) forDestination(ctx context.Context, id string) (string, error) {
	if topic, ok := t.ready.Load(id); ok {
		return topic.(string), nil
	}
	topic := t.cfg.Topics.Topic(id)
	if err := t.ensure(ctx, topic); err != nil {
		return "", err
	}
	t.ready.Store(id, topic)
	return topic, nil
}

// membership returns nil once the membership topic exists with at least
// the input topic's partitions (docs/resync.md): created compacted, with
// the input's partition count, when creation is on. A missing topic, or
// one with too few partitions, is an error wrapping errTopicNotReady, so
// the input partition waits (topic_missing) with a log line naming the
// problem.
func (t *topics) membership(ctx context.Context) error {
	topic := t.cfg.MembershipTopic
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.known[topic] {
		return nil
	}
	if last, ok := t.missing[topic]; ok && time.Since(last) < t.cfg.RetryBackoff {
		return fmt.Errorf("topic %s: %w", topic, errTopicNotReady)
	}
	err := t.checkMembership(ctx)
	if err != nil {
		if _, was := t.missing[topic]; !was {
			t.log.Warn("membership topic not usable; input records wait for it", "topic", topic, "err", err)
		}
		t.missing[topic] = time.Now()
		t.pruneMissing()
		return fmt.Errorf("topic %s: %w: %w", topic, errTopicNotReady, err)
	}
	delete(t.missing, topic)
	t.pruneMissing()
	t.known[topic] = true
	return nil
}

func (t *topics) checkMembership(ctx context.Context) error {
	topic := t.cfg.MembershipTopic
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	details, err := t.adm.ListTopics(ctx, t.cfg.InputTopic, topic)
	if err != nil {
		return fmt.Errorf("describing topics %s and %s: %w", t.cfg.InputTopic, topic, err)
	}
	in, ok := details[t.cfg.InputTopic]
	if !ok || in.Err != nil {
		return fmt.Errorf("describing input topic %s: %v", t.cfg.InputTopic, in.Err)
	}
	want := int32(len(in.Partitions))
	m, ok := details[topic]
	if !ok || m.Err != nil {
		if !t.cfg.CreateTopics {
			return fmt.Errorf("membership topic %s does not exist and topic creation is disabled (create it compacted, with %d partitions)", topic, want)
		}
		maxBytes := strconv.Itoa(int(t.cfg.MaxRecordBytes))
		compact := "compact"
		resp, err := t.adm.CreateTopic(ctx, want, t.cfg.TopicReplicationFactor,
			map[string]*string{"max.message.bytes": &maxBytes, "cleanup.policy": &compact}, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating membership topic %s: %w", topic, err)
		}
		t.log.Info("membership topic created", "topic", topic, "partitions", want)
		return nil
	}
	if got := int32(len(m.Partitions)); got < want {
		return fmt.Errorf("membership topic %s has %d partitions, fewer than the %d of input topic %s: add partitions to it", topic, got, want, t.cfg.InputTopic)
	}
	return nil
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
	if t.checked >= checkBudget {
		return fmt.Errorf("topic %s: %w: this batch spent %s checking topics already", topic, errTopicNotReady, checkBudget)
	}
	began := time.Now()
	var err error
	if t.cfg.CreateTopics {
		if err = t.create(ctx, topic); err != nil {
			// Not allowed to create (no CREATE permission answers
			// TOPIC_AUTHORIZATION_FAILED even for an existing topic), or
			// the broker refused: it may exist all the same.
			if t.exists(ctx, topic) == nil {
				err = nil
			}
		}
	} else {
		err = t.exists(ctx, topic)
	}
	t.checked += time.Since(began)
	if err != nil {
		if _, was := t.missing[topic]; !was {
			if t.cfg.CreateTopics {
				t.log.Warn("destination topic cannot be created; its records wait", "topic", topic, "err", err)
			} else {
				t.log.Warn("destination topic does not exist and topic creation is disabled; its records wait", "topic", topic)
			}
		}
		t.missing[topic] = time.Now()
		t.pruneMissing()
		return fmt.Errorf("topic %s: %w: %w", topic, errTopicNotReady, err)
	}
	if _, was := t.missing[topic]; was {
		delete(t.missing, topic)
		t.pruneMissing()
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
	delete(t.limits, topic) // made again, it has a limit of its own
	delete(t.known, topic)
	t.ready.Range(func(id, tp any) bool {
		if tp.(string) == topic {
			t.ready.Delete(id)
		}
		return true
	})
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

// beginBatch starts a batch's topic-check budget and forgets missing topics
// nothing asked about for a while.
func (t *topics) beginBatch() {
	t.mu.Lock()
	t.checked = 0
	t.pruneMissing()
	t.mu.Unlock()
}

// pruneMissing forgets the missing topics not checked for a minute (or ten
// retry backoffs): a record waiting for one checks it every backoff, so
// nothing waits for them any more (the connection was deleted, the
// partition moved). It sets the missing-topics gauge. t.mu is held.
func (t *topics) pruneMissing() {
	stale := max(time.Minute, 10*t.cfg.RetryBackoff)
	for topic, last := range t.missing {
		if time.Since(last) > stale {
			delete(t.missing, topic)
		}
	}
	t.m.missingTopics.Set(float64(len(t.missing)))
}

func (t *topics) create(ctx context.Context, topic string) error {
	maxBytes := strconv.Itoa(int(t.cfg.MaxRecordBytes))
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
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
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
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

// limit reports whether topic's records are produced one at a time, and
// its max.message.bytes when known (0 when not).
func (t *topics) limit(topic string) (int, bool) {
	if !t.anyLimit.Load() {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.limits[topic]
	if ok && time.Since(st.since) > aloneTTL {
		delete(t.limits, topic)
		t.log.Info("topic produced to in batches again; a refused batch will make it one record at a time again", "topic", topic)
		return 0, false
	}
	return st.n, ok
}

// alone makes topic's records produced one at a time, after the broker
// refused a batch of them. The producer batches records up to
// kafka.producer_batch_max_bytes, which an operator-made topic may not take;
// and a refused batch fails every record buffered with it. With readLimit
// (the batch was refused as too large) the topic's max.message.bytes is
// read, once, so that a record above it is dead-lettered without a try;
// when it cannot be read (no DescribeConfigs permission), records are
// tried alone and one refused alone is dead-lettered.
func (t *topics) alone(ctx context.Context, topic string, readLimit bool) {
	t.mu.Lock()
	if _, ok := t.limits[topic]; ok {
		t.mu.Unlock()
		return
	}
	t.limits[topic] = aloneState{since: time.Now()}
	t.anyLimit.Store(true)
	budget := t.checked < checkBudget
	t.mu.Unlock()
	n := 0
	if readLimit && budget {
		began := time.Now()
		var err error
		n, err = t.readLimit(ctx, topic)
		t.mu.Lock()
		t.checked += time.Since(began)
		if err == nil {
			t.limits[topic] = aloneState{n: n, since: time.Now()}
		}
		t.mu.Unlock()
		if err != nil {
			t.log.Warn("reading a topic's max.message.bytes", "topic", topic, "err", err)
		}
	}
	t.log.Warn("the broker refused a batch of records for this topic; its records are produced one at a time for a while, and a record refused on its own is dead-lettered (raise its max.message.bytes if records are too large)",
		"topic", topic, "max_message_bytes", n, "producer_batch_max_bytes", t.cfg.MaxRecordBytes, "for", aloneTTL)
}

// readLimit reads topic's max.message.bytes.
func (t *topics) readLimit(ctx context.Context, topic string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	rcs, err := t.adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describing topic %s: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return 0, fmt.Errorf("describing topic %s: %w", topic, err)
	}
	if rc.Err != nil {
		return 0, fmt.Errorf("describing topic %s: %w", topic, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key != "max.message.bytes" || c.Value == nil {
			continue
		}
		n, err := strconv.Atoi(*c.Value)
		if err != nil {
			return 0, fmt.Errorf("topic %s: max.message.bytes %q: %w", topic, *c.Value, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("topic %s: no max.message.bytes in its configuration", topic)
}
