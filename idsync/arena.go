package idsync

import "sync"

// recordBuf is where one Process call writes its records: one after the
// other into a reused scratch buffer, then copied together into a single
// allocation of exactly their size (finish). An event's records thus cost
// one allocation, whatever their number, and no bytes are wasted on size
// guesses. The records of one event share that allocation and so live as
// long as the longest-lived of them: the pipeline holds them all until the
// whole batch is acknowledged anyway.
type recordBuf struct {
	b jsonBuf
	// offs[i] is where the i-th record of the call starts in b.
	offs []int
	// ids holds the records' message ids one after the other, idEnds[i]
	// where the i-th ends: finish makes them one string, of which each
	// Output.MessageID is a substring.
	ids    []byte
	idEnds []int
}

// maxPooledRecordBuf bounds the scratch buffers kept for reuse: a rare huge
// event (a large fan-out) does not pin its buffer for good.
const maxPooledRecordBuf = 256 << 10

// scratch is what one Process call reuses from earlier calls: the record
// buffer, the selection's lists and the plan's lengths. Nothing in it
// outlives the call: the records are copied out by finish, and the
// selection holds strings only.
type scratch struct {
	rec   recordBuf
	sel   selection
	plan  planScratch
	sizes eventSizes
	text  eventText
	// outs are the call's outputs until Process copies them out.
	outs []Output
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch {
	s := scratches.Get().(*scratch)
	s.rec.b, s.rec.offs = s.rec.b[:0], s.rec.offs[:0]
	s.rec.ids, s.rec.idEnds = s.rec.ids[:0], s.rec.idEnds[:0]
	s.outs = s.outs[:0]
	return s
}

// release returns s to the pool, unless a huge event made it large.
func (s *scratch) release() {
	if cap(s.rec.b) <= maxPooledRecordBuf && cap(s.rec.ids) <= maxPooledRecordBuf && cap(s.outs) <= 1024 &&
		cap(s.sel.cands) <= 1024 && cap(s.plan.lens) <= 4096 && cap(s.plan.ends) <= 4096 &&
		cap(s.plan.envelope) <= 64<<10 && cap(s.plan.idQuoted) <= 64<<10 &&
		cap(s.text.msgID)+cap(s.text.envelope)+cap(s.text.segment) <= 64<<10 {
		s.sel.clear()
		clear(s.outs) // no event's strings or records pinned
		scratches.Put(s)
	}
}

// finish copies the records into one allocation and their message ids
// into one string, and points outs' values and message ids (the records
// written through r, in order) at them.
func (r *recordBuf) finish(outs []Output) {
	if len(r.offs) > 0 {
		all := append([]byte(nil), r.b...) // no zeroing: append copies into fresh memory
		ids := string(r.ids)
		idStart := 0
		for i := range outs {
			start := r.offs[i]
			end := start + len(outs[i].Value)
			outs[i].Value = all[start:end:end]
			outs[i].MessageID = ids[idStart:r.idEnds[i]]
			idStart = r.idEnds[i]
		}
	}
}
