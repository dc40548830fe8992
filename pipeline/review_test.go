package pipeline

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idsync/idsync/idsync"
)

// Tests for what a review of the failure model found; on kfake, whose
// request control makes a broker answer what a test needs.

// kfakeEnv is a kfake cluster of brokers for one test, with its control.
func kfakeEnv(t *testing.T, brokers int) (*env, *kfake.Cluster) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &env{brokers: c.ListenAddrs(), adm: kadm.NewClient(cl), prefix: "t"}, c
}

// failProduce makes the broker answer the next n produce requests with code
// for every partition they hold.
func failProduce(c *kfake.Cluster, n int, code int16) *atomic.Int32 {
	var answered atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		if int(answered.Add(1)) > n {
			c.DropControl() // a kept control stays kept until dropped
			return nil, nil, false
		}
		c.KeepControl()
		return produceError(kreq, code), nil, true
	})
	return &answered
}

// produceError answers a produce request with code for every partition it
// holds.
func produceError(kreq kmsg.Request, code int16) *kmsg.ProduceResponse {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// One refused produce batch fails every record buffered with it: none of
// them may be dead-lettered for it. They are tried again one at a time and
// delivered.
func TestRefusedBatchDeadLettersNoInnocentRecord(t *testing.T) {
	for _, delivery := range []Delivery{AtLeastOnce, ExactlyOnce} {
		t.Run(string(delivery), func(t *testing.T) {
			e, c := kfakeEnv(t, 1)
			e.createInput(t, 1)
			src := fixture(t)
			in := produceInputs(t, e, sameKey(0, 40, "aud_multi"))
			failProduce(c, 1, kerr.InvalidRecord.Code)
			r := start(t, e, src, func(c *Config) { c.Delivery = delivery })
			waitCommitted(t, e, 60*time.Second)
			alive(t, r)
			want := expect(t, e, src, in, r.p.cfg.Options, r.p.cfg.Limits)
			got := readAll(t, e, want, delivery == ExactlyOnce)
			if n := len(got[e.dlq()]); n != 0 {
				t.Errorf("%d dead letters for a batch refused once, want 0", n)
			}
			containsAll(t, want, got)
		})
	}
}

// A topic whose limit cannot be read (no DescribeConfigs permission) after
// it refused a batch as too large: its records are tried one at a time,
// those refused alone dead-lettered, the others delivered; the partition
// never waits for good.
func TestUnreadableTopicLimitDoesNotStopThePartition(t *testing.T) {
	e, c := kfakeEnv(t, 1)
	e.createInput(t, 1)
	tmpl, _ := idsync.ParseTopicTemplate(e.template())
	small := "300"
	if _, err := e.adm.CreateTopic(context.Background(), 1, 1, map[string]*string{"max.message.bytes": &small}, tmpl.Topic("zd_01")); err != nil {
		t.Fatal(err)
	}
	c.ControlKey(int16(kmsg.DescribeConfigs), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.DescribeConfigsRequest)
		resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
		for _, rr := range req.Resources {
			sr := kmsg.NewDescribeConfigsResponseResource()
			sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
			sr.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Resources = append(resp.Resources, sr)
		}
		return resp, nil, true
	})
	src := fixture(t)
	in := produceInputs(t, e, sameKey(0, 20, "aud_multi"))
	r := start(t, e, src, nil)
	waitCommitted(t, e, 60*time.Second)
	alive(t, r)
	want := expect(t, e, src, in, r.p.cfg.Options, r.p.cfg.Limits)
	refusedFor(t, e, want, in, "zd_01")
	got := readAll(t, e, want, false)
	blankErrors(got, e.dlq(), idsync.CodeDestinationRefused)
	containsAll(t, want, got)
}

// A produce failure that may pass makes the partition wait; while it waits
// only its stopped record is tried, so the healthy destinations do not get
// the records after it again at every retry. Two brokers: zd_01 on the
// one that fails, the other destinations on the one that works.
func TestWaitAfterProduceFailureProbesOneRecord(t *testing.T) {
	e, c := kfakeEnv(t, 2)
	e.createInput(t, 1)
	tmpl, _ := idsync.ParseTopicTemplate(e.template())
	ctx := context.Background()
	for _, topic := range []string{e.input(), e.dlq(), tmpl.Topic("iter_01"), tmpl.Topic("wh_01"), tmpl.Topic("zd_01")} {
		if topic != e.input() {
			if _, err := e.adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
				t.Fatal(err)
			}
		}
		node := int32(0)
		if topic == tmpl.Topic("zd_01") {
			node = 1
		}
		if err := c.MoveTopicPartition(topic, 0, node); err != nil {
			t.Fatal(err)
		}
	}
	var answered atomic.Int32
	const failures = 8
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if c.CurrentNode() != 1 {
			return nil, nil, false
		}
		if answered.Add(1) > failures {
			c.DropControl()
			return nil, nil, false
		}
		return produceError(kreq, kerr.UnknownServerError.Code), nil, true
	})
	src := fixture(t)
	in := produceInputs(t, e, sameKey(0, 30, "aud_multi"))
	r := start(t, e, src, func(c *Config) { c.RetryBackoff = 50 * time.Millisecond; c.CreateTopics = false })
	waitCommitted(t, e, 60*time.Second)
	alive(t, r)
	if answered.Load() < failures { // the failures did happen
		t.Fatalf("only %d produce requests failed", answered.Load())
	}
	want := expect(t, e, src, in, r.p.cfg.Options, r.p.cfg.Limits)
	got := readAll(t, e, want, false)
	containsAll(t, want, got)
	iter := tmpl.Topic("iter_01")
	// The first failed attempt may have sent the whole range once; the
	// retries must not multiply it.
	if n, w := len(got[iter]), len(want[iter]); n > 2*w+failures*2 {
		t.Errorf("%s holds %d records for %d expected: retries re-sent the records after the stopped one", iter, n, w)
	}
}

// Run returns when its loop fails (here: the transactional producer cannot
// begin), instead of hanging on its lag refresher.
func TestRunReturnsWhenItsLoopFails(t *testing.T) {
	e, c := kfakeEnv(t, 1)
	e.createInput(t, 1)
	produceInputs(t, e, sameKey(0, 5, "aud_gg"))
	c.ControlKey(int16(kmsg.InitProducerID), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		resp := kreq.(*kmsg.InitProducerIDRequest).ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil, true
	})
	r := start(t, e, fixture(t), func(c *Config) { c.Delivery = ExactlyOnce })
	select {
	case err := <-r.done:
		r.done <- err
		if err == nil || !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
			t.Errorf("Run returned %v, want the producer's authorization error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30 s of its loop failing")
	}
}
