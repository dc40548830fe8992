package pipeline

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
)

// window is how many input records are processed ahead of the one being
// produced: the records of a batch are processed window by window, each
// window on every core at once, while the window before it is produced. A
// window also ends early once its results hold windowBytes (see
// windowBudget), so the results held in memory besides the producer's
// buffer stay bounded whatever the input: two windows of at most
// windowBudget plus one event's output per worker each.
const window = 256

// windowBudget is how many bytes of results one window may hold: a quarter
// of the producer's buffer, at least 1 MiB.
func (p *Pipeline) windowBudget() int64 {
	return int64(max(p.cfg.MaxInflightBytes/4, 1<<20))
}

// work is one input record on its way through the batch: processed (in
// parallel with its neighbours), then produced (in offset order).
type work struct {
	rec  *kgo.Record
	part int // index of its partition in the batch
	done bool
	// control: one of idsync's control records (see control), handled
	// when produced; more: records of its partition followed it in the
	// fetch.
	control, more bool
	// inline: a control record handled where it is, only copied on (see
	// batch).
	inline bool
	// ev is the decoded event (for its membership record).
	ev *idsync.Event
	// next is the decoded event, until processed (decodeErr is set
	// instead when it cannot be), decoded at now in decodeTook, ahead of
	// its processing when decodeAhead did it.
	next       *idsync.Event
	now        time.Time
	decodeTook time.Duration
	// decodeErr, else connErr (its configuration cannot be read, or can
	// never be), else res.
	decodeErr error
	connErr   error
	res       idsync.Result
}

// stop says why a partition stopped at a record in a batch: reason is a
// Wait reason (the partition waits); without one, the partition goes on
// from the record at once (a refusal was learnt), or, with shutdown set,
// not at all (the shutdown deadline passed).
type stop struct {
	rec      *kgo.Record
	reason   string
	cause    error
	shutdown bool
	// pace, when positive, is how long the partition is paused at rec
	// without waiting for any cause: a resync control record that must
	// wait for its start time or the rate limit (see deferControl).
	pace time.Duration
	// probe: the wait follows a failed produce, so the partition's next
	// attempts try its stopped record alone (see waits.probing).
	probe bool
}

// records processes one poll's records and produces what they give, each
// partition's in offset order. Processing (decode, connections, Process) is
// pure and runs on every core, GOMAXPROCS workers taking small runs of
// records of any partition: a poll usually holds a single partition's
// records, which one goroutine per partition would process on one core.
// Producing, which must keep each partition's order, runs on this goroutine
// a window behind.
//
// It returns, per partition, where it stopped (see stop); nil when every
// record was handled.
func (p *Pipeline) records(ctx context.Context, a *acks, parts []kgo.FetchTopicPartition) []*stop {
	n := 0
	for _, pt := range parts {
		n += len(pt.Records)
	}
	all := make([]work, 0, n)
	for i, pt := range parts {
		for _, r := range pt.Records {
			all = append(all, work{rec: r, part: i})
		}
		if len(p.inline) > 0 {
			for k := len(all) - len(pt.Records); k < len(all); k++ {
				if p.inline[all[k].rec] {
					all[k].control, all[k].more, all[k].inline = true, true, true
				}
			}
		}
		if p.heads[i] {
			// A control record is alone in its partition's records (see
			// batch).
			w := &all[len(all)-1]
			w.control, w.more = true, p.headMore[i]
		}
	}
	stops := make([]*stop, len(parts))
	workers := runtime.GOMAXPROCS(0)
	budget := p.windowBudget()

	// compute processes all[from:to] on the workers, or a prefix of it once
	// the window's results reach the budget, sets w.end to where the
	// processed prefix ends and closes w.done. The first record is always
	// processed, so a window always moves on.
	compute := func(from, to int, w *win) {
		defer close(w.done)
		var next atomic.Int64
		next.Store(int64(from))
		var used atomic.Int64
		const run = 16 // records a worker takes at a time
		var wg sync.WaitGroup
		for range min(workers, (to-from+run-1)/run) {
			wg.Go(func() {
				for {
					i := int(next.Add(run)) - run
					if i >= to {
						return
					}
					p.decodeAhead(ctx, all[i:min(i+run, to)])
					for j := i; j < min(i+run, to); j++ {
						if j != from && used.Load() >= budget {
							return
						}
						p.process(ctx, &all[j])
						all[j].done = true
						used.Add(int64(all[j].res.Bytes))
					}
				}
			})
		}
		wg.Wait()
		end := from
		for end < to && all[end].done {
			end++
		}
		// Records processed past a gap are processed again in the next
		// window: their results are dropped now to keep the bound.
		for k := end; k < to; k++ {
			if all[k].done {
				all[k] = work{rec: all[k].rec, part: all[k].part, control: all[k].control, more: all[k].more, inline: all[k].inline}
			}
		}
		w.end = end
	}

	cur := &win{done: make(chan struct{})}
	go compute(0, min(window, n), cur)
	stopped := 0 // partitions stopped
	for from := 0; from < n; {
		<-cur.done
		to := cur.end
		if stopped == len(parts) {
			break // nothing more can be produced in this batch
		}
		if to < n {
			next := &win{done: make(chan struct{})}
			go compute(to, min(to+window, n), next)
			cur = next
		}
		for i := from; i < to; i++ {
			w := &all[i]
			if stops[w.part] != nil {
				w.res = idsync.Result{}
				continue // its partition stopped at an earlier record
			}
			if s := p.emit(ctx, a, w); s != nil {
				stops[w.part] = s
				stopped++
			}
			w.res = idsync.Result{} // produced: its records now belong to the client
		}
		from = to
	}
	return stops
}

// win is one window being processed: done is closed once the records up to
// end are processed.
type win struct {
	done chan struct{}
	end  int
}

// process decodes w's record, resolves its audience's connections and runs
// idsync.Process. It only reads: emit acts on the result.
func (p *Pipeline) process(ctx context.Context, w *work) {
	if w.control {
		return // handled when produced, in order
	}
	if !w.decoded() {
		p.decode(w)
	}
	start := time.Now()
	ev, took := w.next, w.decodeTook
	w.next = nil
	if w.decodeErr != nil {
		p.m.processTime.Observe(took.Seconds())
		return
	}
	if p.cfg.MembershipTopic != "" {
		w.ev = ev
	}
	conns, err := p.src.Connections(ctx, ev.SpaceID, ev.AudienceID)
	if err != nil {
		w.connErr = err
		return
	}
	w.res = idsync.Process(ev, conns, w.now, p.cfg.Options)
	p.m.processTime.Observe((took + time.Since(start)).Seconds())
}

// aheadBytes bounds the input of the records a worker decodes ahead of
// their processing beyond the first (decodeAhead): a run of typical
// events, one large event alone.
const aheadBytes = 64 << 10

// decode decodes w's record into w.next or w.decodeErr.
func (p *Pipeline) decode(w *work) {
	start := time.Now()
	w.now = p.cfg.Now()
	ev, err := idsync.Decode(w.rec.Value, w.now, p.cfg.Limits)
	if err != nil {
		w.decodeErr = err
	} else {
		ev.ReplayedAt = replayedAt(w.rec)
		w.next = ev
	}
	w.decodeTook = time.Since(start)
}

// decoded reports whether w's record is decoded and not yet processed.
func (w *work) decoded() bool { return w.next != nil || w.decodeErr != nil }

// decodeAhead decodes the records a worker is about to process and, when
// the connection source can prefetch (Prefetcher), starts the fetch of
// each audience they name before the first of them waits for its own: a
// run's cold audiences are fetched concurrently, not one round trip after
// another (a fresh process, or every entry invalidated when Redis came
// back, met them one at a time). At most one run of records per worker,
// of at most aheadBytes of input beyond the first, is held decoded ahead.
func (p *Pipeline) decodeAhead(ctx context.Context, run []work) {
	bytes := 0
	for i := range run {
		w := &run[i]
		if bytes += len(w.rec.Value); i > 0 && bytes > aheadBytes {
			run = run[:i] // the rest is decoded when processed
			break
		}
		if !w.control && !w.decoded() {
			p.decode(w)
		}
	}
	if pf, ok := p.src.(Prefetcher); ok {
		pf.Prefetch(ctx, func(yield func(string, string) bool) {
			for i := range run {
				if ev := run[i].next; ev != nil && !yield(ev.SpaceID, ev.AudienceID) {
					return
				}
			}
		})
	}
}

// replayedAt reads the record's idsync-replay-at header (the last one; a
// value that is not a short RFC 3339 time is ignored, as if absent).
func replayedAt(rec *kgo.Record) time.Time {
	for i := len(rec.Headers) - 1; i >= 0; i-- {
		h := rec.Headers[i]
		if h.Key != idsync.HeaderReplayAt {
			continue
		}
		if len(h.Value) > 64 {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, string(h.Value))
		if err != nil {
			return time.Time{}
		}
		return t
	}
	return time.Time{}
}

// aloneOverhead is what a broker counts of a record produced alone besides
// its key, value and headers: the batch header (61 bytes) and the record's
// own framing.
const aloneOverhead = 100

// recordOverhead is the room kept in a record's size limit for what the
// broker counts besides key, value and headers (batch and record framing).
const recordOverhead = 512

// emit produces what processing w's record gave: its outputs, its dead
// letters, or its record to the DLQ when it could not be decoded or names
// an audience that can never be configured. Before producing anything of
// the record it makes sure every topic the record needs exists and applies
// what an earlier attempt learnt was refused, so that a record is produced
// whole or not at all (an exactly_once transaction never holds part of an
// event). It returns nil once the record is produced, or why its partition
// must stop at it.
func (p *Pipeline) emit(ctx context.Context, a *acks, w *work) *stop {
	rec := w.rec
	if ctx.Err() != nil {
		return &stop{rec: rec, shutdown: true} // past the shutdown deadline: leave the rest uncommitted
	}
	if w.control {
		return p.control(ctx, a, rec, w.more, w.inline)
	}
	var code idsync.Code
	var msg string
	switch err := w.decodeErr; {
	case err != nil:
		code, msg = idsync.CodeOf(err), err.Error()
		if code == "" {
			code = idsync.CodeMalformedJSON
		}
	case w.connErr != nil && errors.Is(w.connErr, idsync.ErrInvalidKey):
		code, msg = idsync.CodeInvalidKey, w.connErr.Error()
	case w.connErr != nil && errors.Is(w.connErr, idsync.ErrUnusableConfig):
		code, msg = idsync.CodeInvalidConfig, w.connErr.Error()
	case w.connErr != nil:
		return &stop{rec: rec, reason: WaitConfig, cause: w.connErr}
	}
	if code != "" {
		if err := p.topics.dlq(ctx); err != nil {
			return &stop{rec: rec, reason: WaitTopic, cause: err}
		}
		p.m.input.Inc()
		a.deadLetter(ctx, rec, code, msg, "", nil)
		return nil
	}

	res := &w.res
	trace := traceContext(rec)
	// Pre-flight: the topic of every destination, what was refused before,
	// and the size of every record, before anything is produced.
	outs := res.Outputs
	topicOf := make([]string, len(outs)) // "" for a destination dead-lettered here
	dls := res.DeadLetters
	for i := 0; i < len(outs); {
		j := i + 1
		for j < len(outs) && outs[j].DestinationID == outs[i].DestinationID {
			j++
		}
		dest := outs[i].DestinationID
		if r, ok := p.refusals.get(refusalKey{rec.Topic, rec.Partition, rec.Offset, dest, false}); ok {
			dls = append(dls, idsync.DeadLetter{DestinationID: dest, Code: idsync.CodeDestinationRefused,
				Message: fmt.Sprintf("destination %s: the broker refused its record for good: %v", dest, r.err)})
			i = j
			continue
		}
		if p.m.outputBy[outs[i].DestinationType] == nil {
			dls = append(dls, idsync.DeadLetter{DestinationID: dest, Code: idsync.CodeInvalidConfig,
				Message: fmt.Sprintf("destination %s: destination type %q is not known to this binary", dest, outs[i].DestinationType)})
			i = j
			continue
		}
		topic, err := p.topics.forDestination(ctx, dest)
		if err != nil {
			return &stop{rec: rec, reason: WaitTopic, cause: err}
		}
		var dl *idsync.DeadLetter
		lim, limited := p.topics.limit(topic)
		for k := i; k < j && dl == nil; k++ {
			size := p.recordSize(rec, &outs[k], &trace)
			switch {
			case limited && lim > 0 && size-recordOverhead+aloneOverhead > lim:
				dl = &idsync.DeadLetter{DestinationID: dest, Code: idsync.CodeDestinationRefused,
					Message: fmt.Sprintf("destination %s: a record of %d bytes is above the max.message.bytes %d of topic %s", dest, size-recordOverhead, lim, topic)}
			case size > int(p.cfg.MaxRecordBytes):
				dl = &idsync.DeadLetter{DestinationID: dest, Code: idsync.CodeOutputTooLarge,
					Message: fmt.Sprintf("destination %s: a record would exceed the record size limit of %d bytes", dest, p.cfg.MaxRecordBytes)}
			}
		}
		if dl != nil {
			dls = append(dls, *dl)
			i = j
			continue
		}
		for k := i; k < j; k++ {
			topicOf[k] = topic
		}
		i = j
	}
	if len(dls) > 0 {
		if err := p.topics.dlq(ctx); err != nil {
			return &stop{rec: rec, reason: WaitTopic, cause: err}
		}
	}
	if w.ev != nil {
		if err := p.topics.membership(ctx); err != nil {
			return &stop{rec: rec, reason: WaitTopic, cause: err}
		}
	}

	p.m.input.Inc()
	p.count(res)
	n := len(dls)
	for _, t := range topicOf {
		if t != "" {
			n++
		}
	}
	in := a.input(rec, n)
	var src []byte // the source header, shared by the outputs and the membership record
	if len(outs) > 0 {
		// One allocation holds the input's output records with their
		// headers and promise data; the source header, the trace context
		// and the key (every output's key is the profile's segment_id) are
		// shared.
		prs := make([]producedRecord, len(outs))
		src = sourceHeader(rec) // the client only reads headers
		ts := sourceTimestamp(rec)
		var key []byte
		for i := range outs {
			if topicOf[i] == "" {
				continue
			}
			o := &outs[i]
			if key == nil || string(key) != o.Key {
				key = []byte(o.Key)
			}
			r := &prs[i]
			r.hdrs = [4]kgo.RecordHeader{
				{Key: idsync.HeaderSource, Value: src},
				{Key: idsync.HeaderConfigVersion, Value: versionHeader(o.ConfigVersion)},
				trace.h[0], trace.h[1],
			}
			r.meta = recordMeta{Context: ctx, counter: p.m.outputBy[o.DestinationType], in: in, src: rec, dest: o.DestinationID}
			r.rec = kgo.Record{Topic: topicOf[i], Key: key, Value: o.Value, Headers: r.hdrs[:2+trace.n],
				Timestamp: ts, Context: &r.meta}
			if _, limited := p.topics.limit(topicOf[i]); limited {
				a.produceAlone(ctx, &r.rec)
			} else {
				a.produce(ctx, &r.rec)
			}
		}
	}
	for _, d := range dls {
		a.deadLetter(ctx, rec, d.Code, d.Message, d.DestinationID, in)
	}
	if w.ev != nil {
		// The membership after this event, in the same transaction (or
		// before the same commit) as its outputs.
		if src == nil {
			src = sourceHeader(rec)
		}
		m := p.membershipRecord(rec, w.ev, src)
		a.control(ctx, rec, &m)
		if len(p.rs.byPart) > 0 {
			p.touch(rec.Partition, w.ev)
		}
	}
	return nil
}

// recordSize is what the producer counts of an output record: key, value
// and headers (the trace context's too), plus the framing room.
func (p *Pipeline) recordSize(rec *kgo.Record, o *idsync.Output, trace *traceHeaders) int {
	return len(o.Key) + len(o.Value) + len(idsync.HeaderSource) + len(rec.Topic) + 24 +
		len(idsync.HeaderConfigVersion) + 20 + headerBytes(trace.h[:trace.n]) + recordOverhead
}

// W3C Trace Context headers (https://www.w3.org/TR/trace-context/), as the
// OpenTelemetry Kafka instrumentations write them: lower-case names, the
// HTTP header values as UTF-8 bytes.
const (
	// HeaderTraceparent is the W3C traceparent header.
	HeaderTraceparent = "traceparent"
	// HeaderTracestate is the W3C tracestate header.
	HeaderTracestate = "tracestate"
)

// maxTraceHeader bounds a trace context header carried over from an input
// record: W3C asks to propagate tracestate up to 512 characters, and a
// traceparent is 55. A longer value is not carried (cutting it would
// corrupt it).
const maxTraceHeader = 1 << 10

// traceHeaders are the trace context headers of an input record that its
// output records and dead letters carry: h[:n].
type traceHeaders struct {
	h [2]kgo.RecordHeader
	n int
}

// traceContext returns rec's trace context headers: the first traceparent
// and the first tracestate header, each unchanged (the same bytes), each
// only if it is at most maxTraceHeader bytes long.
func traceContext(rec *kgo.Record) traceHeaders {
	var t traceHeaders
	var seenParent, seenState bool
	for _, h := range rec.Headers {
		var seen *bool
		switch h.Key {
		case HeaderTraceparent:
			seen = &seenParent
		case HeaderTracestate:
			seen = &seenState
		default:
			continue
		}
		if *seen {
			continue
		}
		*seen = true
		if len(h.Value) <= maxTraceHeader {
			t.h[t.n] = h
			t.n++
		}
		if seenParent && seenState {
			break
		}
	}
	return t
}

// sourceTimestamp is the timestamp an input record's outputs and dead
// letters carry: the input's own (as Kafka Streams does), or none (the
// producer's clock) when the input has none.
func sourceTimestamp(rec *kgo.Record) time.Time {
	if rec.Timestamp.UnixMilli() < 0 {
		return time.Time{}
	}
	return rec.Timestamp
}

// headerFraming is what the record format adds to a header besides its key
// and value: two varint lengths of at most 5 bytes each.
const headerFraming = 10

// headerBytes is what hs weigh in a record: keys, values and framing.
func headerBytes(hs []kgo.RecordHeader) int {
	n := 0
	for _, h := range hs {
		n += len(h.Key) + len(h.Value) + headerFraming
	}
	return n
}

// count records the skips, unmatched connections and invalid identifiers of
// a result.
func (p *Pipeline) count(res *idsync.Result) {
	if res.NoConnections {
		p.m.noConns.Inc()
	}
	// A type this binary does not know has no series (its connection is
	// dead-lettered invalid_config); it is not counted here.
	for _, t := range res.Unmatched {
		if c := p.m.unmatchedBy[t]; c != nil {
			c.Inc()
		}
	}
	for t, n := range res.Invalid {
		if c := p.m.invalidBy[t]; c != nil {
			c.Add(float64(n))
		}
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
// and keeps every failure with the input record it came from.
type acks struct {
	p  *Pipeline
	wg sync.WaitGroup
	mu sync.Mutex
	// failed are the records that could not be produced (bounded by the
	// batch's records).
	failed []failure
	// promise is a.onAck, made once per batch: every record of the batch
	// shares it and carries what it needs in its recordMeta.
	promise func(*kgo.Record, error)
	// also is a later batch settled together with this one (see
	// joinAcks); guarded by mu.
	also *acks
	// pending are the batch's records not yet acknowledged.
	pending atomic.Int64
}

// failure is one record that could not be produced.
type failure struct {
	src   *kgo.Record // the input record it came from
	topic string
	dest  string // its destination id ("" for a dead letter of the record as a whole)
	dlq   bool   // a dead letter
	alone bool   // produced in a batch of its own
	// control: a membership or resync control record (see acks.control)
	control bool
	err     error
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
	hdrs [4]kgo.RecordHeader
	meta recordMeta
}

// recordMeta is a produced record's Context: the produce context (the client
// watches its Done, as it would the context passed to Produce), what the
// promise counts when the record is acknowledged, and where it came from.
type recordMeta struct {
	context.Context
	counter counter
	in      *inputAck
	src     *kgo.Record
	dest    string
	dlq     bool
	// alone: produced in a batch of its own (see produceAlone), so a
	// refusal as too large is about this record, not its batch.
	alone bool
	// control: one of idsync's own records (membership, resync control),
	// which no refusal can dead-letter: its partition waits instead.
	control bool
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
	a.pending.Add(1)
	if a.p.sess != nil {
		a.p.sess.Produce(ctx, r, a.promise)
	} else {
		a.p.cl.Produce(ctx, r, a.promise)
	}
}

// produceAlone sends r in a batch of its own, for a topic whose
// max.message.bytes is below the producer's batch size: what was buffered
// is flushed first, and r is flushed before anything else is produced.
func (a *acks) produceAlone(ctx context.Context, r *kgo.Record) {
	r.Context.(*recordMeta).alone = true
	_ = a.p.cl.Flush(ctx)
	a.produce(ctx, r)
	_ = a.p.cl.Flush(ctx)
}

// onAck is the promise of every record of the batch.
func (a *acks) onAck(r *kgo.Record, err error) {
	defer a.wg.Done()
	defer a.pending.Add(-1)
	m := r.Context.(*recordMeta)
	if err != nil {
		if classify(err) != failShutdown {
			a.p.m.produceErrors.Inc()
		}
		a.mu.Lock()
		a.failed = append(a.failed, failure{src: m.src, topic: r.Topic, dest: m.dest, dlq: m.dlq, alone: m.alone, control: m.control, err: err})
		a.mu.Unlock()
		return
	}
	if m.counter != nil {
		m.counter.Inc()
	}
	if in := m.in; in != nil && in.remaining.Add(-1) == 0 {
		a.p.m.endToEnd.Observe(time.Since(in.ts).Seconds())
	}
}

// Dead letters are bounded: the message header to maxErrorHeader bytes, the
// key to maxDeadLetterKey bytes, the input record's own headers to
// maxOriginalHeaders bytes, and the value to what fits in the record size
// limit besides them. A dead letter the DLQ topic refused is made smaller
// at each next attempt: at most dlqReducedValue bytes of the value after the
// first refusal, none (and none of the input's headers) after the second. A
// truncated key or value is marked with the headers HeaderOriginalKeySize /
// HeaderOriginalSize, input headers left out with HeaderOriginalHeadersSize.
const (
	maxErrorHeader     = 1 << 10
	maxDeadLetterKey   = 4 << 10
	maxOriginalHeaders = 16 << 10
	dlqReducedValue    = 64 << 10
	dlqShrinkSteps     = 2
)

// Headers of a dead letter besides DESIGN.md §7's (docs/reliability.md,
// "Dead-letter headers").
const (
	// HeaderOriginalSize is the length in bytes of a dead letter's input
	// record value when the dead letter holds only its first bytes.
	HeaderOriginalSize = "idsync-original-size"
	// HeaderOriginalKeySize is the length of the input record's key when
	// the dead letter holds only its first bytes.
	HeaderOriginalKeySize = "idsync-original-key-size"
	// HeaderOriginalHeaders is how many of a dead letter's headers, from
	// the first, are the input record's own headers, in their order
	// (decimal). Every dead letter has it.
	HeaderOriginalHeaders = "idsync-original-headers"
	// HeaderOriginalHeadersSize is what the input record's headers weigh
	// (keys, values and 10 bytes of framing each) when they did not all fit
	// the dead letter: only its trace context headers were kept then.
	HeaderOriginalHeadersSize = "idsync-original-headers-size"
	// HeaderSourceTimestamp is the input record's timestamp in
	// milliseconds since the Unix epoch (decimal): the dead letter's own
	// timestamp is the input's too, but a topic with
	// message.timestamp.type=LogAppendTime replaces it.
	HeaderSourceTimestamp = "idsync-source-timestamp"
)

// The Kafka Connect dead-letter context headers
// (errors.deadletterqueue.context.headers.enable, written by Connect's
// DeadLetterQueueReporter), so that tools made for Connect's dead-letter
// queues read idsync's: UTF-8 strings, the partition and offset in decimal.
const (
	HeaderConnectTopic            = "__connect.errors.topic"
	HeaderConnectPartition        = "__connect.errors.partition"
	HeaderConnectOffset           = "__connect.errors.offset"
	HeaderConnectExceptionClass   = "__connect.errors.exception.class.name"
	HeaderConnectExceptionMessage = "__connect.errors.exception.message"
)

// ExceptionClassPrefix starts a dead letter's
// __connect.errors.exception.class.name: the class-like name of a code is
// the prefix followed by the code, e.g. "idsync.error.invalid_config".
const ExceptionClassPrefix = "idsync.error."

// deadLetter produces rec (the original bytes, bounded as above) to the DLQ
// topic with the error headers of DESIGN.md §7 and Kafka Connect's, after
// the input record's own headers and with its timestamp; destination names
// the destination concerned, if one is.
func (a *acks) deadLetter(ctx context.Context, rec *kgo.Record, code idsync.Code, msg, destination string, in *inputAck) {
	a.deadLetterOf(ctx, rec, rec, code, msg, destination, in)
}

// deadLetterOf is deadLetter for a record rec that src, the input record
// in hand, brought: a resync's membership record. A failure to produce it
// stops src's partition.
func (a *acks) deadLetterOf(ctx context.Context, rec, src *kgo.Record, code idsync.Code, msg, destination string, in *inputAck) {
	if len(msg) > maxErrorHeader {
		// Cut at a character boundary: the header is read as UTF-8.
		cut := maxErrorHeader
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	r, _ := a.p.refusals.get(refusalKey{src.Topic, src.Partition, src.Offset, destination, true})
	partition := strconv.AppendInt(nil, int64(rec.Partition), 10)
	offset := strconv.AppendInt(nil, rec.Offset, 10)
	own := make([]kgo.RecordHeader, 0, 16)
	own = append(own,
		kgo.RecordHeader{Key: idsync.HeaderErrorCode, Value: []byte(code)},
		kgo.RecordHeader{Key: idsync.HeaderError, Value: []byte(msg)},
		kgo.RecordHeader{Key: idsync.HeaderSourceTopic, Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: idsync.HeaderSourcePartition, Value: partition},
		kgo.RecordHeader{Key: idsync.HeaderSourceOffset, Value: offset},
	)
	if destination != "" {
		// A destination id is at most 64 bytes; one read from a hostile
		// stored record (a hash field that is no destination id) is cut
		// like the message, so that the dead letter always fits.
		own = append(own, kgo.RecordHeader{Key: idsync.HeaderDestinationID, Value: []byte(destination[:min(len(destination), maxErrorHeader)])})
	}
	ts := sourceTimestamp(rec)
	if !ts.IsZero() {
		own = append(own, kgo.RecordHeader{Key: HeaderSourceTimestamp, Value: strconv.AppendInt(nil, ts.UnixMilli(), 10)})
	}
	if r.dlqRefused > 0 {
		// Refused before: perhaps for its timestamp (INVALID_TIMESTAMP,
		// a topic's message.timestamp.*.max.ms); the producer's clock
		// then, the input's stays in HeaderSourceTimestamp.
		ts = time.Time{}
	}
	own = append(own,
		kgo.RecordHeader{Key: HeaderConnectTopic, Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: HeaderConnectPartition, Value: partition},
		kgo.RecordHeader{Key: HeaderConnectOffset, Value: offset},
		kgo.RecordHeader{Key: HeaderConnectExceptionClass, Value: []byte(ExceptionClassPrefix + string(code))},
		kgo.RecordHeader{Key: HeaderConnectExceptionMessage, Value: []byte(msg)},
	)
	key, value := rec.Key, rec.Value
	if len(key) > maxDeadLetterKey {
		own = append(own, kgo.RecordHeader{Key: HeaderOriginalKeySize, Value: strconv.AppendInt(nil, int64(len(key)), 10)})
		key = key[:maxDeadLetterKey]
	}
	// The trace context is kept whatever the room (it is bounded), unless
	// even headers alone were refused.
	var trace traceHeaders
	if r.dlqRefused < dlqShrinkSteps {
		trace = traceContext(rec)
	}
	// What the dead letter takes besides its value and the input's other
	// headers (128: room for the size headers and HeaderOriginalHeaders),
	// and so the room left for the value.
	fixed := len(key) + 128 + headerBytes(own) + headerBytes(trace.h[:trace.n])
	room := int(a.p.cfg.MaxRecordBytes) - recordOverhead - fixed
	lim, limited := a.p.topics.limit(a.p.cfg.DLQTopic)
	if limited && lim > 0 {
		room = min(room, lim-aloneOverhead-fixed)
	}
	switch {
	case r.dlqRefused >= dlqShrinkSteps:
		room = 0
	case r.dlqRefused == 1:
		room = min(room, dlqReducedValue)
	}
	if len(value) > max(room, 0) {
		own = append(own, kgo.RecordHeader{Key: HeaderOriginalSize, Value: strconv.AppendInt(nil, int64(len(value)), 10)})
		value = value[:max(room, 0)]
	}
	// The input's headers: all of them, in their order, when they fit
	// beside the whole value; else only its trace context.
	orig := trace.h[:trace.n]
	if len(rec.Headers) > 0 {
		size := headerBytes(rec.Headers)
		spare := room - len(value) + headerBytes(orig) // the trace context's room is reserved
		if r.dlqRefused < dlqShrinkSteps && size <= maxOriginalHeaders && size <= spare && len(value) == len(rec.Value) {
			orig = rec.Headers
		} else if len(orig) != len(rec.Headers) {
			own = append(own, kgo.RecordHeader{Key: HeaderOriginalHeadersSize, Value: strconv.AppendInt(nil, int64(size), 10)})
		}
	}
	headers := make([]kgo.RecordHeader, 0, len(orig)+len(own)+1)
	headers = append(headers, orig...)
	headers = append(headers, kgo.RecordHeader{Key: HeaderOriginalHeaders, Value: strconv.AppendInt(nil, int64(len(orig)), 10)})
	headers = append(headers, own...)
	dl := &kgo.Record{
		Topic:     a.p.cfg.DLQTopic,
		Key:       key,
		Value:     value,
		Headers:   headers,
		Timestamp: ts,
		Context:   &recordMeta{Context: ctx, counter: a.p.m.dlqBy[code], in: in, src: src, dest: destination, dlq: true},
	}
	if limited {
		a.produceAlone(ctx, dl)
	} else {
		a.produce(ctx, dl)
	}
}

// control produces r, a record of idsync's own (membership, resync
// control) that the input record src needs: it is acknowledged with the
// batch, and a failure stops src's partition like any of src's records.
func (a *acks) control(ctx context.Context, src, r *kgo.Record) {
	r.Context = &recordMeta{Context: ctx, src: src, control: true}
	a.produce(ctx, r)
}

// wait blocks until every promise of the batch (and of the batch joined
// to it) has run.
func (a *acks) wait() {
	a.wg.Wait()
	if also := a.joined(); also != nil {
		also.wait()
	}
}

// failures returns the records that could not be produced, the joined
// batch's included.
func (a *acks) failures() []failure {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.also == nil {
		return a.failed
	}
	return append(append([]failure(nil), a.failed...), a.also.failures()...)
}

// done counts a committed batch (two when one was joined to it).
func (a *acks) done() {
	a.p.m.batches.Inc()
	if also := a.joined(); also != nil {
		also.done()
	}
}

// joined returns the batch joined to a's, if any.
func (a *acks) joined() *acks {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.also
}

// joinAcks makes a's wait, failures and done cover b's records too
// (batches settled as one, see merge), and returns a: b is joined after
// the last batch joined to a.
func joinAcks(a, b *acks) *acks {
	last := a
	for next := last.joined(); next != nil; next = last.joined() {
		last = next
	}
	last.mu.Lock()
	last.also = b
	last.mu.Unlock()
	return a
}

// complete reports whether every record of the batch (not counting the
// batches joined to it) is acknowledged; the batch must be fully produced.
func (a *acks) complete() bool { return a.pending.Load() == 0 }
