package pipeline

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
)

// window is how many input records are processed ahead of the one being
// produced: the records of a batch are processed window by window, each
// window on every core at once, while the window before it is produced. It
// bounds the results held in memory besides the producer's buffer (two
// windows of a few KiB per record).
const window = 256

// work is one input record on its way through the batch: processed (in
// parallel with its neighbours), then produced (in offset order).
type work struct {
	rec  *kgo.Record
	part int // index of its partition in the batch
	// decodeErr, else connErr (its configuration cannot be read now), else
	// res.
	decodeErr error
	connErr   error
	res       idsync.Result
}

// records processes one poll's records and produces what they give, each
// partition's in offset order. Processing (decode, connections, Process) is
// pure and runs on every core, GOMAXPROCS workers taking small runs of
// records of any partition: a poll usually holds a single partition's
// records, which one goroutine per partition would process on one core.
// Producing, which must keep each partition's order, runs on this goroutine
// a window behind.
//
// It returns, per partition, the record it stopped at because that
// record's configuration cannot be read (the caller rewinds the partition
// to it) or because the shutdown deadline passed; nil when every record was
// handled.
func (p *Pipeline) records(ctx context.Context, a *acks, parts []kgo.FetchTopicPartition) []*kgo.Record {
	n := 0
	for _, pt := range parts {
		n += len(pt.Records)
	}
	all := make([]work, 0, n)
	for i, pt := range parts {
		for _, r := range pt.Records {
			all = append(all, work{rec: r, part: i})
		}
	}
	holds := make([]*kgo.Record, len(parts))
	workers := runtime.GOMAXPROCS(0)

	// compute processes all[from:to] on the workers and closes done.
	compute := func(from, to int, done chan struct{}) {
		defer close(done)
		var next atomic.Int64
		next.Store(int64(from))
		const run = 16 // records a worker takes at a time
		var wg sync.WaitGroup
		for range min(workers, (to-from+run-1)/run) {
			wg.Go(func() {
				for {
					i := int(next.Add(run)) - run
					if i >= to {
						return
					}
					for j := i; j < min(i+run, to); j++ {
						p.process(ctx, &all[j])
					}
				}
			})
		}
		wg.Wait()
	}

	ready := make(chan struct{})
	go compute(0, min(window, n), ready)
	stopped := 0 // partitions held
	for from := 0; from < n; from += window {
		to := min(from+window, n)
		<-ready
		if stopped == len(parts) {
			break // nothing more can be produced in this batch
		}
		if to < n {
			ready = make(chan struct{})
			go compute(to, min(to+window, n), ready)
		}
		for i := from; i < to; i++ {
			w := &all[i]
			if holds[w.part] != nil {
				continue // its partition stopped at an earlier record
			}
			if !p.emit(ctx, a, w) {
				holds[w.part] = w.rec
				stopped++
			}
			w.res = idsync.Result{} // produced: its records now belong to the client
		}
	}
	return holds
}

// process decodes w's record, resolves its audience's connections and runs
// idsync.Process. It only reads: emit acts on the result.
func (p *Pipeline) process(ctx context.Context, w *work) {
	start := time.Now()
	now := p.cfg.Now()
	ev, err := idsync.Decode(w.rec.Value, now, p.cfg.Limits)
	if err != nil {
		w.decodeErr = err
		p.m.processTime.Observe(time.Since(start).Seconds())
		return
	}
	conns, err := p.src.Connections(ctx, ev.SpaceID, ev.AudienceID)
	if err != nil {
		w.connErr = err
		return
	}
	w.res = idsync.Process(ev, conns, now, p.cfg.Options)
	p.m.processTime.Observe(time.Since(start).Seconds())
}

// emit produces what processing w's record gave: its outputs, its dead
// letters, or its record to the DLQ when it could not be decoded. It reports
// false when the partition must stop at this record: its configuration
// cannot be read, a destination topic could not be made ready, or the
// shutdown deadline passed.
func (p *Pipeline) emit(ctx context.Context, a *acks, w *work) bool {
	rec := w.rec
	if ctx.Err() != nil {
		return false // past the shutdown deadline: leave the rest uncommitted
	}
	if err := w.decodeErr; err != nil {
		p.m.input.Inc()
		a.deadLetter(ctx, rec, idsync.CodeOf(err), err.Error(), "")
		return true
	}
	if err := w.connErr; err != nil {
		p.log.Warn("configuration unavailable; partition waits", "topic", rec.Topic, "partition", rec.Partition,
			"offset", rec.Offset, "err", err)
		return false
	}
	p.m.input.Inc()
	res := &w.res
	p.count(res)
	in := a.input(rec, len(res.Outputs)+len(res.DeadLetters))
	if len(res.Outputs) > 0 {
		// One allocation holds the input's output records with their
		// headers and promise data; the source header and the key (every
		// output's key is the profile's segment_id) are shared.
		outs := make([]producedRecord, len(res.Outputs))
		src := sourceHeader(rec) // the client only reads headers
		var key []byte
		for i := range res.Outputs {
			o := &res.Outputs[i]
			topic, err := p.topics.forDestination(ctx, o.DestinationID)
			if err != nil {
				a.fail(err)
				return false
			}
			if key == nil || string(key) != o.Key {
				key = []byte(o.Key)
			}
			r := &outs[i]
			r.hdrs = [2]kgo.RecordHeader{
				{Key: idsync.HeaderSource, Value: src},
				{Key: idsync.HeaderConfigVersion, Value: versionHeader(o.ConfigVersion)},
			}
			r.meta = recordMeta{Context: ctx, counter: p.m.outputBy[o.DestinationType], in: in}
			r.rec = kgo.Record{Topic: topic, Key: key, Value: o.Value, Headers: r.hdrs[:], Context: &r.meta}
			a.produce(ctx, &r.rec)
		}
	}
	for _, d := range res.DeadLetters {
		a.deadLetterFor(ctx, rec, d.Code, d.Message, d.DestinationID, in)
	}
	return true
}

// count records the skips, unmatched connections and invalid identifiers of
// a result.
func (p *Pipeline) count(res *idsync.Result) {
	if res.NoConnections {
		p.m.noConns.Inc()
	}
	for _, t := range res.Unmatched {
		p.m.unmatchedBy[t].Inc()
	}
	for t, n := range res.Invalid {
		p.m.invalidBy[t].Add(float64(n))
	}
}

// smallVersions are the idsync-config-version header values of versions
// 0–63, shared read-only by every record (most connections have few
// versions).
var smallVersions = func() [][]byte {
	vs := make([][]byte, 64)
	for i := range vs {
		vs[i] = strconv.AppendInt(nil, int64(i), 10)
	}
	return vs
}()

func versionHeader(v int64) []byte {
	if v >= 0 && v < int64(len(smallVersions)) {
		return smallVersions[v]
	}
	return strconv.AppendInt(nil, v, 10)
}

func sourceHeader(rec *kgo.Record) []byte {
	b := make([]byte, 0, len(rec.Topic)+24)
	b = append(b, rec.Topic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(rec.Partition), 10)
	b = append(b, '/')
	return strconv.AppendInt(b, rec.Offset, 10)
}

// acks tracks the records produced for one batch: it waits for all of them
// and remembers the first failure.
type acks struct {
	p   *Pipeline
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
	// promise is a.onAck, made once per batch: every record of the batch
	// shares it and carries what it needs in its recordMeta.
	promise func(*kgo.Record, error)
}

func newAcks(p *Pipeline) *acks {
	a := &acks{p: p}
	a.promise = a.onAck
	return a
}

// producedRecord is one produced record with its headers and promise data, so
// that an input's outputs take one allocation together.
type producedRecord struct {
	rec  kgo.Record
	hdrs [2]kgo.RecordHeader
	meta recordMeta
}

// recordMeta is a produced record's Context: the produce context (the client
// watches its Done, as it would the context passed to Produce) and what the
// promise counts when the record is acknowledged.
type recordMeta struct {
	context.Context
	counter counter
	in      *inputAck
}

// inputAck follows one input record's outputs, to observe the end-to-end
// latency when the last one is acknowledged.
type inputAck struct {
	remaining atomic.Int32
	ts        time.Time
}

func (a *acks) input(rec *kgo.Record, outputs int) *inputAck {
	if outputs == 0 {
		return nil
	}
	in := &inputAck{ts: rec.Timestamp}
	in.remaining.Store(int32(outputs))
	return in
}

type counter interface{ Inc() }

// produce sends r, whose Context is its *recordMeta; the batch's promise
// counts it and releases the batch's wait. Produce blocks while the
// producer's buffer is full (backpressure).
func (a *acks) produce(ctx context.Context, r *kgo.Record) {
	a.wg.Add(1)
	if a.p.sess != nil {
		a.p.sess.Produce(ctx, r, a.promise)
	} else {
		a.p.cl.Produce(ctx, r, a.promise)
	}
}

// onAck is the promise of every record of the batch.
func (a *acks) onAck(r *kgo.Record, err error) {
	defer a.wg.Done()
	if err != nil {
		a.p.m.produceErrors.Inc()
		a.p.log.Error("producing a record", "topic", r.Topic, "err", err)
		a.fail(err)
		return
	}
	m := r.Context.(*recordMeta)
	m.counter.Inc()
	if in := m.in; in != nil && in.remaining.Add(-1) == 0 {
		a.p.m.endToEnd.Observe(time.Since(in.ts).Seconds())
	}
}

// deadLetter produces the original bytes of rec to the DLQ topic with the
// error headers of DESIGN.md §7.
func (a *acks) deadLetter(ctx context.Context, rec *kgo.Record, code idsync.Code, msg, destination string) {
	a.deadLetterFor(ctx, rec, code, msg, destination, nil)
}

func (a *acks) deadLetterFor(ctx context.Context, rec *kgo.Record, code idsync.Code, msg, destination string, in *inputAck) {
	headers := []kgo.RecordHeader{
		{Key: idsync.HeaderErrorCode, Value: []byte(code)},
		{Key: idsync.HeaderError, Value: []byte(msg)},
		{Key: idsync.HeaderSourceTopic, Value: []byte(rec.Topic)},
		{Key: idsync.HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)},
		{Key: idsync.HeaderSourceOffset, Value: strconv.AppendInt(nil, rec.Offset, 10)},
	}
	if destination != "" {
		headers = append(headers, kgo.RecordHeader{Key: idsync.HeaderDestinationID, Value: []byte(destination)})
	}
	a.produce(ctx, &kgo.Record{
		Topic:   a.p.cfg.DLQTopic,
		Key:     rec.Key,
		Value:   rec.Value,
		Headers: headers,
		Context: &recordMeta{Context: ctx, counter: a.p.m.dlqBy[code], in: in},
	})
}

func (a *acks) fail(err error) {
	a.mu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.mu.Unlock()
}

// wait blocks until every promise of the batch has run.
func (a *acks) wait() { a.wg.Wait() }

// failure returns the first produce failure, if any.
func (a *acks) failure() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// done counts a committed batch.
func (a *acks) done() { a.p.m.batches.Inc() }
