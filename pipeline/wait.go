package pipeline

import (
	"slices"
	"sync"
	"time"
)

// Why an input partition waits. Each is a cause that passes by itself or by
// an operator's action, never the record's fault (that is dead-lettered).
const (
	// WaitConfig: the record's audience is not cached and Redis cannot be
	// read.
	WaitConfig = "config_unavailable"
	// WaitTopic: a destination topic of the record does not exist (topic
	// creation off, or creating it failed) or was deleted.
	WaitTopic = "topic_missing"
	// WaitDestination: producing to a destination topic failed with an
	// error that may pass (broker or partition unavailable, timeouts).
	WaitDestination = "destination_unavailable"
	// WaitDLQ: the dead-letter topic cannot take the record's dead letter,
	// even reduced to its headers.
	WaitDLQ = "dlq_unavailable"
)

// WaitReasons lists every reason a partition can wait, for metric
// initialisation.
var WaitReasons = []string{WaitConfig, WaitTopic, WaitDestination, WaitDLQ, WaitMembership}

// Wait describes one input partition that is waiting: stopped at Offset
// (nothing past it is committed) since Since, because of Reason.
type Wait struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
}

// hold is a waiting partition's state.
type hold struct {
	Wait
	// until is when the paused partition is resumed to try the record
	// again; zero once it was resumed and the record not yet passed.
	until time.Time
	// probe: only the stopped record is tried until it passes.
	probe bool
}

// waits are the partitions waiting for a cause to pass. The poll loop and
// the group's rebalance callbacks both use it, so it is locked.
type waits struct {
	mu sync.Mutex
	m  map[topicPartition]*hold
	// batchSince is when the batch now waiting for its acknowledgements
	// started waiting (zero when none): a broker that stops answering
	// holds the whole batch, which must show as a wait too.
	batchSince time.Time
}

func newWaits() *waits { return &waits{m: map[topicPartition]*hold{}} }

// set records that tp waits at offset for reason, paused until until, and
// reports whether the wait is new (or its reason changed). A partition that
// already waited at the same offset keeps its Since, so the age of a wait
// spans its retries.
func (w *waits) set(tp topicPartition, offset int64, reason string, probe bool, now, until time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.m[tp]
	changed := h == nil || h.Offset != offset || h.Reason != reason
	if h == nil || h.Offset != offset {
		h = &hold{Wait: Wait{Topic: tp.topic, Partition: tp.partition, Offset: offset, Since: now}}
		w.m[tp] = h
	}
	h.Reason = reason
	h.until = until
	h.probe = probe
	return changed
}

// probing reports whether tp waits after a failed produce at offset: its
// next attempt tries that record alone.
func (w *waits) probing(tp topicPartition, offset int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.m[tp]
	return h != nil && h.probe && h.Offset == offset
}

// passed records that tp's records went through: it no longer waits.
func (w *waits) passed(tp topicPartition) {
	w.mu.Lock()
	delete(w.m, tp)
	w.mu.Unlock()
}

// drop forgets the partitions of parts (revoked or lost) and returns those
// that were paused, which the caller resumes: the client keeps a pause
// across rebalances, so a partition handed back to this member would
// otherwise stay paused with nobody to resume it.
func (w *waits) drop(parts map[string][]int32) map[string][]int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	paused := map[string][]int32{}
	for topic, ps := range parts {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			delete(w.m, tp)
			// Resume every revoked partition, held or not: resuming one
			// that is not paused is a no-op.
			paused[topic] = append(paused[topic], p)
		}
	}
	return paused
}

// due returns the paused partitions whose wait is over and marks them
// resumed.
func (w *waits) due(now time.Time) map[string][]int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var resume map[string][]int32
	for tp, h := range w.m {
		if !h.until.IsZero() && !now.Before(h.until) {
			if resume == nil {
				resume = map[string][]int32{}
			}
			resume[tp.topic] = append(resume[tp.topic], tp.partition)
			h.until = time.Time{}
		}
	}
	return resume
}

// anyPaused reports whether some waiting partition is still paused (the
// poll must then wake up in time to resume it).
func (w *waits) anyPaused() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range w.m {
		if !h.until.IsZero() {
			return true
		}
	}
	return false
}

// list returns the waiting partitions, oldest first.
func (w *waits) list() []Wait {
	w.mu.Lock()
	out := make([]Wait, 0, len(w.m))
	for _, h := range w.m {
		out = append(out, h.Wait)
	}
	w.mu.Unlock()
	slices.SortFunc(out, func(a, b Wait) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
	return out
}

// count returns how many partitions wait for reason.
func (w *waits) count(reason string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, h := range w.m {
		if h.Reason == reason {
			n++
		}
	}
	return n
}

// oldest returns how long the longest wait has lasted at now, counting a
// batch held up by its acknowledgements; 0 when nothing waits.
func (w *waits) oldest(now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var d time.Duration
	for _, h := range w.m {
		d = max(d, now.Sub(h.Since))
	}
	if !w.batchSince.IsZero() {
		d = max(d, now.Sub(w.batchSince))
	}
	return d
}

// inFlight marks the start (and, with a zero time, the end) of a batch's
// wait for its acknowledgements.
func (w *waits) inFlight(since time.Time) {
	w.mu.Lock()
	w.batchSince = since
	w.mu.Unlock()
}

// batchWait returns when the batch in flight started waiting, if one does.
func (w *waits) batchWait() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.batchSince
}

// Waiting returns the input partitions of this instance that are waiting
// for a cause to pass, oldest first (for /readyz).
func (p *Pipeline) Waiting() []Wait { return p.waits.list() }

// InFlightSince returns when the batch now waiting for its
// acknowledgements was produced, or the zero time when none waits.
func (p *Pipeline) InFlightSince() time.Time { return p.waits.batchWait() }
