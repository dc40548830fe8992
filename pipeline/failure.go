package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// What a failed produce means for the input record it came from
// (docs/reliability.md, "Failure model").
type failureClass int

const (
	// failRetry: the cause may pass (a broker, partition or coordinator
	// unavailable, retries exhausted, a timeout). The input partition is
	// rewound to the record and waits; the record is tried again.
	failRetry failureClass = iota
	// failMissingTopic: the topic does not exist (deleted after first use,
	// or never made). It is created again when creation is on, else waited
	// for, visibly.
	failMissingTopic
	// failRefused: the broker refuses this record for good (too large for
	// the topic, not authorized, against a policy, invalid). Retrying
	// cannot help: the record's destination is dead-lettered with
	// destination_refused and the others go on.
	failRefused
	// failShutdown: the produce was cancelled by the shutdown deadline.
	failShutdown
)

// classify sorts a produce error into a failure class.
func classify(err error) failureClass {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, kgo.ErrClientClosed):
		return failShutdown
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		return failMissingTopic
	case errors.Is(err, kerr.MessageTooLarge),
		errors.Is(err, kerr.RecordListTooLarge),
		errors.Is(err, kerr.InvalidRecord),
		errors.Is(err, kerr.CorruptMessage),
		errors.Is(err, kerr.PolicyViolation),
		errors.Is(err, kerr.InvalidTopicException),
		errors.Is(err, kerr.TopicAuthorizationFailed),
		errors.Is(err, kerr.InvalidTimestamp),
		errors.Is(err, kerr.UnsupportedForMessageFormat),
		errors.Is(err, kerr.UnsupportedCompressionType):
		return failRefused
	}
	return failRetry
}

// refusalKey names one destination (or the dead-letter topic, dlq set) of
// one input record.
type refusalKey struct {
	topic     string
	partition int32
	offset    int64
	dest      string
	dlq       bool
}

// refusals remembers what the broker refused for good in an attempt that
// was then rewound, so that the next attempt at the same input record
// dead-letters that destination (or shrinks its dead letter) instead of
// failing again. In exactly_once the failed attempt's transaction is
// aborted, so the next attempt is the only one that counts. Entries go once
// their record is committed; the map is bounded all the same.
type refusals struct {
	mu sync.Mutex
	m  map[refusalKey]refusal
	// n is len(m), read without the lock: the per-record lookups cost
	// nothing while nothing was refused (the usual case).
	n atomic.Int64
}

// refusal is what was learnt: the error that refused a destination's
// record, or how many times the dead letter was refused (it is made
// smaller each time).
type refusal struct {
	err        error
	dlqRefused int
}

// maxRefusals bounds the memory: past it everything is forgotten, and a
// record refused again is learnt again (the attempt after that succeeds).
const maxRefusals = 100000

func newRefusals() *refusals { return &refusals{m: map[refusalKey]refusal{}} }

func (r *refusals) get(k refusalKey) (refusal, bool) {
	if r.n.Load() == 0 {
		return refusal{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.m[k]
	return v, ok
}

// refuse records that k's record was refused by err.
func (r *refusals) refuse(k refusalKey, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) >= maxRefusals {
		clear(r.m)
	}
	defer func() { r.n.Store(int64(len(r.m))) }()
	v := r.m[k]
	if k.dlq {
		v.dlqRefused++
	}
	v.err = err
	r.m[k] = v
	r.n.Store(int64(len(r.m)))
}

// any reports whether a refusal is remembered.
func (r *refusals) any() bool { return r.n.Load() > 0 }

// committed forgets the entries of partitions below the committed offsets.
func (r *refusals) committed(offsets map[string]map[int32]kgo.EpochOffset) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) == 0 {
		return
	}
	for k := range r.m {
		if eo, ok := offsets[k.topic][k.partition]; ok && k.offset < eo.Offset {
			delete(r.m, k)
		}
	}
	r.n.Store(int64(len(r.m)))
}

// forget drops the entries of partitions this member no longer owns.
func (r *refusals) forget(parts map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) == 0 {
		return
	}
	for k := range r.m {
		for _, p := range parts[k.topic] {
			if p == k.partition {
				delete(r.m, k)
			}
		}
	}
	r.n.Store(int64(len(r.m)))
}
