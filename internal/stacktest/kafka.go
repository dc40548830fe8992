package stacktest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Cluster is the Kafka cluster named by IDSYNC_TEST_KAFKA. Its methods take
// the test that will own what they create, so a Cluster obtained in a parent
// test can serve its subtests. A Cluster is safe for concurrent use.
type Cluster struct {
	brokers []string
}

// Kafka returns the Kafka cluster named by IDSYNC_TEST_KAFKA, after checking
// once per test binary that it answers a metadata request. When the variable
// is unset the test is skipped under -short and failed otherwise.
func Kafka(t testing.TB) *Cluster {
	t.Helper()
	addrs := lookupEnv(t, KafkaEnv)
	var brokers []string
	for _, b := range strings.Split(addrs, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	c := &Cluster{brokers: brokers}
	checkReachable(t, "Kafka", addrs, func(ctx context.Context) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			return err
		}
		defer cl.Close()
		_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
		return err
	})
	return c
}

// Brokers returns the seed brokers, host:port each.
func (c *Cluster) Brokers() []string {
	return append([]string(nil), c.brokers...)
}

// NewClient returns a franz-go client seeded with the cluster's brokers, with
// opts applied after this package's defaults (so they can override them). The
// client is closed when t's cleanup runs; closing a group consumer leaves its
// group. Creating the client does not contact the cluster.
func (c *Cluster) NewClient(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	all := append([]kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		// Topics are created and deleted all the time in tests: learn about
		// them quickly rather than every 5 s (franz-go's default).
		kgo.MetadataMinAge(250 * time.Millisecond),
	}, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		t.Fatalf("creating Kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Admin returns an admin client for the cluster, closed when t's cleanup runs.
func (c *Cluster) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(c.NewClient(t))
}

// Topic creates a topic named by [Name] with the given number of partitions
// and the broker's default replication factor, waits until every partition
// has a leader, and returns its name. When t's cleanup runs the topic is
// deleted, and the cleanup waits until metadata no longer lists it. Any
// failure fails t.
func (c *Cluster) Topic(t testing.TB, partitions int32) string {
	t.Helper()
	return c.TopicWithConfig(t, partitions, nil)
}

// TopicWithConfig is [Cluster.Topic] with topic-level configs, such as
// "cleanup.policy": "compact".
func (c *Cluster) TopicWithConfig(t testing.TB, partitions int32, configs map[string]string) string {
	t.Helper()
	adm := c.Admin(t)
	topic := Name(t)

	var cfg map[string]*string
	if len(configs) > 0 {
		cfg = make(map[string]*string, len(configs))
		for k, v := range configs {
			cfg[k] = &v
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, partitions, -1, cfg, topic); err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
	// Registered before waiting, so that a topic that never becomes ready is
	// still deleted. Cleanups run last-in first-out: this one runs before the
	// admin client registered above is closed.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		resp, err := adm.DeleteTopic(ctx, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Errorf("deleting topic %s: %v", topic, err)
			return
		}
		// Deletion is committed by the controller and reaches the brokers
		// shortly after; wait, so that the topic is gone when t is done.
		err = waitFor(ctx, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
			md, err := adm.Metadata(ctx, topic)
			if err != nil {
				return false, err
			}
			td, ok := md.Topics[topic]
			return !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition), nil
		})
		if err != nil {
			t.Errorf("waiting for topic %s to be deleted: %v", topic, err)
		}
	})

	// CreateTopics returns once the controller has committed the topic; the
	// broker that leads each partition may learn of it a little later.
	err := waitFor(ctx, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			return false, err
		}
		td, ok := md.Topics[topic]
		if !ok || td.Err != nil || int32(len(td.Partitions)) != partitions {
			return false, td.Err
		}
		for _, p := range td.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false, p.Err
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("waiting for the partitions of topic %s to have leaders: %v", topic, err)
	}
	return topic
}

// Group returns a consumer group ID named by [Name]. The group is deleted
// when t's cleanup runs, if it exists by then and has no members left: create
// the group's clients after calling Group, so that their cleanups (which
// leave the group) run first.
func (c *Cluster) Group(t testing.TB) string {
	t.Helper()
	adm := c.Admin(t)
	group := Name(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		resp, err := adm.DeleteGroup(ctx, group)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil, errors.Is(err, kerr.GroupIDNotFound):
		case errors.Is(err, kerr.NonEmptyGroup):
			// A client the test created before calling Group is still a
			// member; the group goes away with the broker's data.
			t.Logf("leaving consumer group %s behind: it still has members", group)
		default:
			t.Errorf("deleting consumer group %s: %v", group, err)
		}
	})
	return group
}

// String returns the seed brokers, comma-separated, as in IDSYNC_TEST_KAFKA.
func (c *Cluster) String() string {
	return strings.Join(c.brokers, ",")
}
