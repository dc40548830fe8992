package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topics makes sure a destination topic exists before records go to it:
// it creates a missing one when creation is enabled, and otherwise waits for
// it, visibly (a log line naming the topic, the missing-topics gauge).
type topics struct {
	adm   *kadm.Client
	cfg   Config
	m     *metrics
	log   *slog.Logger
	known sync.Map // topic name → struct{}
	// ready maps a destination id to its topic once that topic is known to
	// exist, so the per-record path costs one lookup and no allocation.
	ready sync.Map // destination id → topic name
	mu    sync.Mutex
}

// forDestination returns the topic of destination id, once it exists (see
// ensure).
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

func newTopics(cl *kgo.Client, cfg Config, m *metrics, log *slog.Logger) *topics {
	return &topics{adm: kadm.NewClient(cl), cfg: cfg, m: m, log: log}
}

func (t *topics) ensureDLQ(ctx context.Context) error {
	return t.ensure(ctx, t.cfg.DLQTopic)
}

// ensure returns once topic exists (or was created). A known topic costs
// one map lookup.
func (t *topics) ensure(ctx context.Context, topic string) error {
	if _, ok := t.known.Load(topic); ok {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.known.Load(topic); ok {
		return nil
	}
	if t.cfg.CreateTopics {
		if err := t.create(ctx, topic); err != nil {
			return err
		}
		t.known.Store(topic, struct{}{})
		return nil
	}
	return t.await(ctx, topic)
}

func (t *topics) create(ctx context.Context, topic string) error {
	maxBytes := strconv.Itoa(int(t.cfg.MaxRecordBytes))
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

// await polls the cluster's metadata until topic exists.
func (t *topics) await(ctx context.Context, topic string) error {
	waiting := false
	defer func() {
		if waiting {
			t.m.missingTopics.Dec()
		}
	}()
	for {
		details, err := t.adm.ListTopics(ctx, topic)
		if err == nil {
			if d, ok := details[topic]; ok && d.Err == nil {
				t.known.Store(topic, struct{}{})
				if waiting {
					t.log.Info("destination topic appeared; records flow again", "topic", topic)
				}
				return nil
			}
		}
		if !waiting {
			waiting = true
			t.m.missingTopics.Inc()
			t.log.Warn("destination topic does not exist and topic creation is disabled; its records wait", "topic", topic)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for topic %s: %w", topic, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}
