package pipeline

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/idsync"
)

// A resync (docs/resync.md) runs as a chain of control records in the input
// topic, one chain per input partition: the admin API writes a start record
// into every partition; the instance that owns the partition takes the
// snapshot of the partition's membership when it reaches that record, and
// each step sends the next members and writes the next control record
// (with the cursor) into the same partition, in the same transaction
// (exactly_once) or before the offset commit (at_least_once) as its
// records. A step is thus ordered with the partition's live events, and
// committed, fenced and resumed exactly like them.

// HeaderControl marks an input record as one of idsync's own control
// records; its value is ControlResync for a resync's.
const HeaderControl = "idsync-control"

// ControlResync is HeaderControl's value on a resync's control records.
const ControlResync = "resync"

// HeaderResync names the resync on every record a resync sends.
const HeaderResync = "idsync-resync"

// WaitMembership: the membership topic cannot be read now (a resync step
// waits for it).
const WaitMembership = "membership_unavailable"

// errTooManyMembers: an audience has more members in a partition than a
// resync may hold (resync.max_members_per_partition).
var errTooManyMembers = errors.New("too many members")

// maxControlBytes bounds a control record's value.
const maxControlBytes = 4 << 10

// resyncControl is a resync control record's value. Step 0 is the start
// record the admin API writes; every later step carries the cursor.
type resyncControl struct {
	ResyncID string `json:"resync_id"`
	Step     int64  `json:"step"`
	// End is the membership partition's end offset when the resync
	// started on it: the snapshot is the membership before it.
	End int64 `json:"membership_end"`
	// Next is the membership offset the step reads from.
	Next int64 `json:"next"`
	// Done counts the snapshot's members passed so far (sent or skipped);
	// Total is the snapshot's members.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// MAC signs the record with the resync's secret (see mac): only idsync
	// writes control records a resync accepts.
	MAC string `json:"mac"`
}

// mac is the HMAC-SHA256, keyed with the resync's secret, of everything the
// record says and the partition it is in (a record copied to another
// partition does not verify).
func (c *resyncControl) mac(secret string, partition int32) string {
	h := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(h, "idsync-resync|%s|%d|%d|%d|%d|%d|%d", c.ResyncID, partition, c.Step, c.End, c.Next, c.Done, c.Total)
	return hex.EncodeToString(h.Sum(nil))
}

// ResyncStartRecords returns the start records of resync r for an input
// topic of partitions partitions, one per partition, signed with r.Secret.
func ResyncStartRecords(topic string, partitions int32, r *idsync.Resync) []*kgo.Record {
	out := make([]*kgo.Record, partitions)
	for p := range partitions {
		c := resyncControl{ResyncID: r.ID}
		c.MAC = c.mac(r.Secret, p)
		value, _ := json.Marshal(c)
		out[p] = &kgo.Record{Topic: topic, Partition: p, Value: value,
			Headers: []kgo.RecordHeader{{Key: HeaderControl, Value: []byte(ControlResync)}}}
	}
	return out
}

// isStart reports whether rec is a resync's start record (a control record
// of step 0).
func isStart(rec *kgo.Record) bool {
	c, err := parseControl(rec)
	return err == nil && c.Step == 0
}

// isControl reports whether rec is one of idsync's control records.
func isControl(rec *kgo.Record) bool {
	for _, h := range rec.Headers {
		if h.Key == HeaderControl {
			return true
		}
	}
	return false
}

// parseControl reads a control record, naming what is wrong with one that
// is not a resync control record idsync wrote.
func parseControl(rec *kgo.Record) (resyncControl, error) {
	var c resyncControl
	kind := ""
	for _, h := range rec.Headers {
		if h.Key == HeaderControl {
			kind = string(h.Value)
		}
	}
	switch {
	case kind != ControlResync:
		return c, fmt.Errorf("control record of unknown kind %.64q", kind)
	case len(rec.Value) > maxControlBytes:
		return c, fmt.Errorf("resync control record of %d bytes, above %d", len(rec.Value), maxControlBytes)
	}
	if err := json.Unmarshal(rec.Value, &c); err != nil {
		return c, fmt.Errorf("resync control record: %w", err)
	}
	switch {
	case !idsync.ValidResyncID(c.ResyncID):
		return c, errors.New("resync control record: resync_id is not a resync id")
	case c.Step < 0 || c.End < 0 || c.Next < 0 || c.Done < 0 || c.Total < 0:
		return c, errors.New("resync control record: a negative step, offset or count")
	case c.Step > 0 && c.Next > c.End:
		return c, errors.New("resync control record: next is past membership_end")
	}
	return c, nil
}

// Resyncs is where the pipeline reads the resyncs it is asked to run.
type Resyncs interface {
	// Resync returns the resync named id, nil (and no error) when there is
	// none. An error means it cannot be read now: the partition waits.
	Resync(ctx context.Context, id string) (*idsync.Resync, error)
}

// ProgressSaver is what Resyncs may also do: record progress at once (the
// end of a partition's resync, which nothing would report again).
type ProgressSaver interface {
	SaveResyncProgress(ctx context.Context, id string, ps []idsync.ResyncProgress) error
}

// cursorKey names a resync on one partition.
type cursorKey struct {
	id   string
	part int32
}

// cursor is a resync's state on a partition this instance owns, built from
// the membership partition when the instance first meets the resync's
// chain there (see initCursor).
type cursor struct {
	job  *idsync.Resync
	part int32
	end  int64
	// last maps each member of the audience to the offset of its last
	// membership record before end (-1-offset for a tombstone): the
	// snapshot.
	last map[memberHash]int64
	// touched are the members with a membership record at or past end:
	// their live events since the start send them (or their exit).
	touched map[memberHash]struct{}
	// maxStep is the highest step handled and committed in this
	// ownership: a lower or equal one is a copy left by a redelivery, and
	// is dropped.
	maxStep int64
	// reader reads the membership partition from pos; pending are records
	// it fetched past what a step used.
	reader  *kgo.Client
	pos     int64
	pending []*kgo.Record
	// total is the snapshot's members; started and finished say the
	// membership partition records that this resync started, or finished,
	// on it (exactly_once writes these records).
	total             int64
	started, finished bool
	// overflow: more members changed during the resync than
	// resync.max_members_per_partition allows to track.
	overflow bool
}

// resyncs is the pipeline's resync state. Only the loop goroutine touches
// cursors and tokens; progress is read by the admin API.
type resyncs struct {
	cursors map[cursorKey]*cursor
	byPart  map[int32][]*cursor
	tokens  float64
	filled  time.Time

	mu       sync.Mutex
	progress map[cursorKey]idsync.ResyncProgress
}

func newResyncs() *resyncs {
	return &resyncs{cursors: map[cursorKey]*cursor{}, byPart: map[int32][]*cursor{},
		progress: map[cursorKey]idsync.ResyncProgress{}}
}

// ResyncProgress returns this instance's progress in resync id, one entry
// per partition it has worked on.
func (p *Pipeline) ResyncProgress(id string) []idsync.ResyncProgress {
	p.rs.mu.Lock()
	defer p.rs.mu.Unlock()
	var out []idsync.ResyncProgress
	for k, v := range p.rs.progress {
		if k.id == id {
			out = append(out, v)
		}
	}
	return out
}

// ResyncUpdates returns the progress entries updated since since, by
// resync id, for the caller to publish (see app).
func (p *Pipeline) ResyncUpdates(since time.Time) map[string][]idsync.ResyncProgress {
	p.rs.mu.Lock()
	defer p.rs.mu.Unlock()
	out := map[string][]idsync.ResyncProgress{}
	for k, v := range p.rs.progress {
		if !v.Updated.Before(since) {
			out[k.id] = append(out[k.id], v)
		}
	}
	return out
}

func (p *Pipeline) setProgress(c resyncControl, part int32, sent int64, finished, cancelled bool) {
	p.rs.mu.Lock()
	defer p.rs.mu.Unlock()
	k := cursorKey{c.ResyncID, part}
	old := p.rs.progress[k]
	p.rs.progress[k] = idsync.ResyncProgress{Partition: part, Done: c.Done, Total: c.Total,
		Sent: old.Sent + sent, Finished: finished, Cancelled: cancelled, Updated: time.Now()}
	if len(p.rs.progress) > maxProgressEntries {
		// Bounded: the oldest finished entries go first.
		var oldest cursorKey
		var at time.Time
		for k, v := range p.rs.progress {
			if (v.Finished || v.Cancelled) && (at.IsZero() || v.Updated.Before(at)) {
				oldest, at = k, v.Updated
			}
		}
		if !at.IsZero() {
			delete(p.rs.progress, oldest)
		}
	}
}

// maxProgressEntries bounds the progress entries kept for the admin API.
const maxProgressEntries = 4096

// dropCursor forgets a cursor and closes its reader.
func (p *Pipeline) dropCursor(k cursorKey) {
	c := p.rs.cursors[k]
	if c == nil {
		return
	}
	if c.reader != nil {
		c.reader.Close()
	}
	delete(p.rs.cursors, k)
	list := p.rs.byPart[k.part]
	for i, x := range list {
		if x == c {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(p.rs.byPart, k.part)
	} else {
		p.rs.byPart[k.part] = list
	}
	p.m.resyncCursors.Set(float64(len(p.rs.cursors)))
}

// forgetResyncs drops the cursors of input partitions this member no longer
// owns: their next owner builds its own from the membership topic.
func (p *Pipeline) forgetResyncs(parts map[string][]int32) {
	for _, part := range parts[p.cfg.InputTopic] {
		for _, c := range append([]*cursor(nil), p.rs.byPart[part]...) {
			p.dropCursor(cursorKey{c.job.ID, part})
		}
	}
}

// touch records that a live event of profile in (space, audience) was
// handled on partition part: a resync running there leaves the profile to
// the live stream.
func (p *Pipeline) touch(part int32, ev *idsync.Event) {
	for _, c := range p.rs.byPart[part] {
		if c.job.SpaceID == ev.SpaceID && c.job.AudienceID == ev.AudienceID {
			if len(c.touched) >= p.cfg.ResyncMaxMembers {
				c.overflow = true // the next control record ends the resync here
				continue
			}
			c.touched[hashMember(ev.SegmentID)] = struct{}{}
		}
	}
}

// stepWait is how long until the rate limit allows a whole step (0: now),
// without taking it.
func (p *Pipeline) stepWait() time.Duration {
	if p.rs.filled.IsZero() || len(p.rs.cursors) == 0 && p.rs.tokens >= float64(p.cfg.ResyncStepMembers) {
		return 0
	}
	step := float64(p.cfg.ResyncStepMembers)
	tokens := min(p.rs.tokens+time.Since(p.rs.filled).Seconds()*p.cfg.ResyncRate, max(p.cfg.ResyncRate, step))
	if tokens >= step {
		return 0
	}
	return time.Duration((step - tokens) / p.cfg.ResyncRate * float64(time.Second))
}

// takeStep returns 0 when the instance's rate limit allows a whole step
// now, else how long until it does.
func (p *Pipeline) takeStep() time.Duration {
	now := time.Now()
	rate := p.cfg.ResyncRate
	step := float64(p.cfg.ResyncStepMembers)
	if !p.rs.filled.IsZero() {
		p.rs.tokens += now.Sub(p.rs.filled).Seconds() * rate
	} else {
		p.rs.tokens = step
	}
	p.rs.tokens = min(p.rs.tokens, max(rate, step))
	p.rs.filled = now
	if p.rs.tokens >= step {
		return 0
	}
	return time.Duration((step - p.rs.tokens) / rate * float64(time.Second))
}

func (p *Pipeline) spendTokens(n int) { p.rs.tokens -= float64(n) }

// resyncWait is how long a partition whose only record is a control record
// that must wait (for its start time or the rate limit) stays paused at
// most: live records that arrive behind it wait no longer than this.
const resyncWait = time.Second

// control handles a control record at the head of its partition's batch
// records; more says whether records followed it in the fetch. It returns
// nil once the record is handled (its offset may be committed), or why the
// partition stops at it.
//
// inline is set for a control record handled in the middle of its
// partition's records, while the rate limit allows no step (see batch): it
// is checked, then copied on, or dropped as a copy of a step already made.
func (p *Pipeline) control(ctx context.Context, a *acks, rec *kgo.Record, more, inline bool) *stop {
	c, err := parseControl(rec)
	if err != nil {
		return p.deadLetterRecord(ctx, a, rec, idsync.CodeMalformedJSON, err.Error())
	}
	if p.cfg.MembershipTopic == "" || p.cfg.Resyncs == nil {
		p.m.resyncIgnored.Inc()
		p.log.Warn("resync control record ignored: this instance keeps no membership (resync disabled)",
			"resync_id", c.ResyncID, "partition", rec.Partition, "offset", rec.Offset)
		return nil
	}
	k := cursorKey{c.ResyncID, rec.Partition}
	job, err := p.cfg.Resyncs.Resync(ctx, c.ResyncID)
	if err != nil && !errors.Is(err, idsync.ErrUnusableConfig) {
		if cur := p.rs.cursors[k]; cur != nil {
			// Redis unreachable: the running resync goes on as it was read
			// (a cancel is seen once Redis answers again); the live
			// records behind the control record do not wait for Redis.
			job, err = cur.job, nil
		}
	}
	if err == nil && job != nil {
		if cerr := job.Check(); cerr != nil || job.ID != c.ResyncID {
			err = fmt.Errorf("%w: stored resync %s: %v", idsync.ErrUnusableConfig, c.ResyncID, cerr)
		}
	}
	if errors.Is(err, idsync.ErrUnusableConfig) {
		// A stored resync that can never be used: it does not run (an
		// operator cancels it and asks again).
		p.m.resyncIgnored.Inc()
		p.log.Warn("resync control record ignored: the stored resync cannot be used", "resync_id", c.ResyncID,
			"partition", rec.Partition, "offset", rec.Offset, "err", err)
		return nil
	}
	if err != nil {
		return &stop{rec: rec, reason: WaitConfig, cause: fmt.Errorf("reading resync %s: %w", c.ResyncID, err)}
	}
	if job == nil || job.Cancelled() {
		p.dropCursor(k)
		if job != nil {
			// (A resync that does not exist gets no progress: a record
			// naming any id would otherwise make one.)
			p.cancelProgress(c.ResyncID, rec.Partition)
		}
		if job == nil {
			p.m.resyncIgnored.Inc()
			p.log.Warn("resync control record ignored: no such resync", "resync_id", c.ResyncID,
				"partition", rec.Partition, "offset", rec.Offset)
		}
		return nil
	}
	if !hmac.Equal([]byte(c.MAC), []byte(c.mac(job.Secret, rec.Partition))) {
		return p.deadLetterRecord(ctx, a, rec, idsync.CodeSchemaViolation,
			"resync control record: its mac does not match resync "+c.ResyncID+" (not written by idsync for this resync and partition)")
	}
	if inline {
		if cur := p.rs.cursors[k]; cur != nil && c.Step <= cur.maxStep {
			return nil // a copy from a redelivery: this chain went on already
		}
		return p.deferControl(ctx, a, rec, c, true, 0, job.Secret)
	}
	if now := p.cfg.Now(); now.Before(job.StartAt) {
		// Not yet: the snapshot is taken at the start time, so that the
		// members who enter before it are in it.
		return p.deferControl(ctx, a, rec, c, more, job.StartAt.Sub(now), job.Secret)
	}
	cur := p.rs.cursors[k]
	if cur != nil && c.Step <= cur.maxStep {
		return nil // a copy from a redelivery: this chain went on already
	}
	if cur == nil {
		if cur, err = p.initCursor(ctx, job, rec.Partition, c); errors.Is(err, errTooManyMembers) {
			// It will not pass by itself: the resync ends on this
			// partition, its control record dead-lettered with the reason.
			p.cancelProgress(c.ResyncID, rec.Partition)
			p.log.Error("resync stopped on partition", "resync_id", c.ResyncID, "partition", rec.Partition, "err", err)
			return p.deadLetterRecord(ctx, a, rec, idsync.CodeFanoutLimit, "resync "+c.ResyncID+": "+err.Error())
		}
		if errors.Is(err, errForgedEnd) {
			return p.deadLetterRecord(ctx, a, rec, idsync.CodeSchemaViolation, "resync "+c.ResyncID+": "+err.Error())
		}
		if err != nil {
			return &stop{rec: rec, reason: WaitMembership, cause: err}
		}
		if p.sess != nil && (cur.finished || c.Step == 0 && cur.started) {
			// exactly_once: the membership partition records, in the
			// transactions of the chain, that it started (a second start
			// record, from a retried request, is dropped) or finished (a
			// control record of it read again is dropped).
			p.dropCursor(k)
			return nil
		}
	}
	if cur.overflow {
		p.dropCursor(k)
		p.cancelProgress(c.ResyncID, rec.Partition)
		return p.deadLetterRecord(ctx, a, rec, idsync.CodeFanoutLimit, fmt.Sprintf(
			"resync %s: more than resync.max_members_per_partition (%d) members of audience %s changed in partition %d during the resync",
			c.ResyncID, p.cfg.ResyncMaxMembers, job.AudienceID, rec.Partition))
	}
	if c.Step == 0 {
		c = resyncControl{ResyncID: c.ResyncID, Step: 0, End: cur.end, Total: cur.total}
	}
	// Every attempt of a step covers the same members (a whole step, or
	// what is left): a retried step and the record its first attempt may
	// have left then say the same, and the later one is a copy.
	want := p.cfg.ResyncStepMembers
	if wait := p.takeStep(); wait > 0 {
		if c.Step > 0 {
			return p.deferControl(ctx, a, rec, c, more, wait, job.Secret)
		}
		// A start record is not put off: the snapshot is the membership
		// here, before the live records behind it. Its first members wait
		// for the rate in the next control record.
		want = 0
	}
	return p.step(ctx, a, rec, cur, c, want)
}

// deferControl leaves a control record for later: with records behind it,
// a copy of it goes to the end of the partition (and the live records flow
// on); alone, the partition waits up to resyncWait.
func (p *Pipeline) deferControl(ctx context.Context, a *acks, rec *kgo.Record, c resyncControl, more bool, d time.Duration, secret string) *stop {
	if more {
		c.Step++ // the copy is the next step of the chain
		if c.Step == 1 {
			// A start record stays a start record.
			c.Step = 0
		}
		c.MAC = c.mac(secret, rec.Partition)
		a.control(ctx, rec, p.controlRecord(rec, c))
		return nil
	}
	return &stop{rec: rec, pace: min(d, resyncWait)}
}

// controlRecord is the next control record of rec's chain.
func (p *Pipeline) controlRecord(rec *kgo.Record, c resyncControl) *kgo.Record {
	value, _ := json.Marshal(c)
	return &kgo.Record{Topic: p.cfg.InputTopic, Partition: rec.Partition, Value: value,
		Headers: []kgo.RecordHeader{{Key: HeaderControl, Value: []byte(ControlResync)}}}
}

// initCursor builds the cursor of job on partition part from the
// membership partition: every record up to its end (read committed in
// exactly_once, once no transaction is open on it).
func (p *Pipeline) initCursor(ctx context.Context, job *idsync.Resync, part int32, c resyncControl) (*cursor, error) {
	hwm, err := p.membershipEnd(ctx, part)
	if err != nil {
		return nil, err
	}
	cur := &cursor{job: job, part: part, end: c.End, last: map[memberHash]int64{}, touched: map[memberHash]struct{}{},
		maxStep: -1}
	if c.Step == 0 {
		cur.end = hwm
	} else if c.End > hwm {
		return nil, fmt.Errorf("%w: membership_end %d is past the end %d of %s partition %d", errForgedEnd, c.End, hwm, p.cfg.MembershipTopic, part)
	}
	startKey, finishedKey := resyncStartedKey(job.ID), resyncFinishedKey(job.ID)
	err = p.readMembership(ctx, part, 0, hwm, func(r *kgo.Record) error {
		switch string(r.Key) {
		case string(startKey):
			cur.started = true
			return nil
		case string(finishedKey):
			cur.finished = true
			return nil
		}
		space, audience, profile, err := parseMembershipKey(r.Key)
		if err != nil || space != job.SpaceID || audience != job.AudienceID {
			return nil
		}
		h := hashMember(profile)
		if r.Offset >= cur.end {
			// Written by the live stream since the start: it sends this
			// member.
			cur.touched[h] = struct{}{}
			if len(cur.touched) > p.cfg.ResyncMaxMembers {
				return fmt.Errorf("%w: more than resync.max_members_per_partition (%d) members of audience %s changed in partition %d since the start",
					errTooManyMembers, p.cfg.ResyncMaxMembers, job.AudienceID, part)
			}
			return nil
		}
		if r.Value == nil {
			cur.last[h] = -1 - r.Offset
		} else {
			cur.last[h] = r.Offset
		}
		if len(cur.last) > p.cfg.ResyncMaxMembers {
			return fmt.Errorf("%w: audience %s has more than resync.max_members_per_partition (%d) members in partition %d",
				errTooManyMembers, job.AudienceID, p.cfg.ResyncMaxMembers, part)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var total int64
	for _, o := range cur.last {
		if o >= 0 {
			total++
		}
	}
	cur.total = total
	if c.Step > 0 {
		cur.total = c.Total
	}
	cur.pos = c.Next
	p.rs.cursors[cursorKey{job.ID, part}] = cur
	p.rs.byPart[part] = append(p.rs.byPart[part], cur)
	p.m.resyncCursors.Set(float64(len(p.rs.cursors)))
	return cur, nil
}

// resyncStartedKey is the membership key that records a resync's start on
// a partition (a key membershipKey never writes: it starts with a zero
// length and is not followed by two more ids).
func resyncStartedKey(id string) []byte { return append([]byte{0, 0xff}, id...) }

// resyncFinishedKey records that a resync finished on a partition.
func resyncFinishedKey(id string) []byte { return append([]byte{0, 0xfe}, id...) }

// errForgedEnd: a control record says the snapshot ends past the
// membership partition's end.
var errForgedEnd = errors.New("forged control record")

// cancelProgress marks a partition's progress in resync id cancelled,
// keeping what it had done.
func (p *Pipeline) cancelProgress(id string, part int32) {
	p.rs.mu.Lock()
	defer p.rs.mu.Unlock()
	k := cursorKey{id, part}
	old, ok := p.rs.progress[k]
	if !ok || old.Cancelled {
		if !ok && len(p.rs.progress) >= maxProgressEntries {
			return // bounded: an unknown resync's partitions are not tracked
		}
	}
	old.Partition, old.Cancelled, old.Updated = part, true, time.Now()
	p.rs.progress[k] = old
}

// membershipEnd returns the end of membership partition part: in
// exactly_once, once it equals the last stable offset (no transaction open
// on it), up to a few seconds.
func (p *Pipeline) membershipEnd(ctx context.Context, part int32) (int64, error) {
	adm := kadm.NewClient(p.cl)
	deadline := time.Now().Add(5 * time.Second)
	for {
		ends, err := adm.ListEndOffsets(ctx, p.cfg.MembershipTopic)
		if err != nil {
			return 0, fmt.Errorf("listing the end offsets of %s: %w", p.cfg.MembershipTopic, err)
		}
		end, ok := ends.Lookup(p.cfg.MembershipTopic, part)
		if !ok || end.Err != nil {
			return 0, fmt.Errorf("end offset of %s partition %d: %v", p.cfg.MembershipTopic, part, end.Err)
		}
		if p.sess == nil {
			return end.Offset, nil
		}
		stable, err := adm.ListCommittedOffsets(ctx, p.cfg.MembershipTopic)
		if err != nil {
			return 0, fmt.Errorf("listing the stable offsets of %s: %w", p.cfg.MembershipTopic, err)
		}
		if lso, ok := stable.Lookup(p.cfg.MembershipTopic, part); ok && lso.Err == nil && lso.Offset >= end.Offset {
			return end.Offset, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s partition %d has a transaction open past its end %d", p.cfg.MembershipTopic, part, end.Offset)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// membershipReadTimeout bounds one wait for membership records.
const membershipReadTimeout = 10 * time.Second

// newReader returns a client reading membership partition part from offset.
func (p *Pipeline) newReader(part int32, offset int64) (*kgo.Client, error) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(p.cfg.Brokers...),
		kgo.ClientID(p.cfg.ClientID + "-resync"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{p.cfg.MembershipTopic: {part: kgo.NewOffset().At(offset)}}),
		kgo.FetchMaxBytes(p.cfg.FetchMaxBytes),
		// Transaction markers take offsets too: kept (and skipped by the
		// readers), a read of [from, to) sees its last offset.
		kgo.KeepControlRecords(),
	}, p.cfg.ConnOpts...)
	if p.sess != nil {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the membership reader: %w", err)
	}
	return cl, nil
}

// readMembership calls fn with every record of membership partition part
// in [from, to).
func (p *Pipeline) readMembership(ctx context.Context, part int32, from, to int64, fn func(*kgo.Record) error) error {
	if from >= to {
		return nil
	}
	cl, err := p.newReader(part, from)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		recs, err := pollMembership(ctx, cl)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Offset >= to {
				return nil
			}
			if !r.Attrs.IsControl() {
				if err := fn(r); err != nil {
					return err
				}
			}
			if r.Offset >= to-1 {
				return nil
			}
		}
	}
}

// pollMembership returns the next records of a membership reader.
func pollMembership(ctx context.Context, cl *kgo.Client) ([]*kgo.Record, error) {
	pctx, cancel := context.WithTimeout(ctx, membershipReadTimeout)
	defer cancel()
	for {
		fs := cl.PollFetches(pctx)
		if err := pctx.Err(); err != nil {
			return nil, fmt.Errorf("reading the membership topic: %w", err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("reading the membership topic: %w", ferr)
		}
		if recs := fs.Records(); len(recs) > 0 {
			return recs, nil
		}
	}
}

// step sends the next members of cur's snapshot, up to want, and writes
// the next control record (none once the snapshot is done).
func (p *Pipeline) step(ctx context.Context, a *acks, rec *kgo.Record, cur *cursor, c resyncControl, want int) *stop {
	job := cur.job
	conns, err := p.src.Connections(ctx, job.SpaceID, job.AudienceID)
	if err != nil {
		return &stop{rec: rec, reason: WaitConfig, cause: err}
	}
	var conn []idsync.Connection
	for _, x := range conns {
		if x.DestinationID == job.DestinationID {
			conn = append(conn, x)
		}
	}
	topic := ""
	if len(conn) > 0 {
		if topic, err = p.topics.forDestination(ctx, job.DestinationID); err != nil {
			return &stop{rec: rec, reason: WaitTopic, cause: err}
		}
	}
	if err := p.topics.dlq(ctx); err != nil {
		return &stop{rec: rec, reason: WaitTopic, cause: err}
	}
	if cur.reader == nil || cur.pos != c.Next {
		if cur.reader != nil {
			cur.reader.Close()
		}
		if cur.reader, err = p.newReader(cur.part, c.Next); err != nil {
			return &stop{rec: rec, reason: WaitMembership, cause: err}
		}
		cur.pos, cur.pending = c.Next, nil
	}
	next, done, sent := c.Next, c.Done, int64(0)
	var todo []*kgo.Record // the step's members to send
	passed := 0
	now := p.cfg.Now()
	for passed < want && next < cur.end {
		if len(cur.pending) == 0 {
			recs, err := pollMembership(ctx, cur.reader)
			if err != nil {
				// The reader is rebuilt at the next attempt.
				cur.reader.Close()
				cur.reader = nil
				if passed > 0 {
					// What this step sent is committed with the next
					// control record, which goes on from here.
					p.log.Warn("resync step ended early: the membership topic cannot be read", "resync_id", job.ID,
						"partition", rec.Partition, "err", err)
					break
				}
				return &stop{rec: rec, reason: WaitMembership, cause: err}
			}
			cur.pending = recs
		}
		r := cur.pending[0]
		cur.pending = cur.pending[1:]
		if r.Offset < next {
			continue
		}
		if r.Offset >= cur.end {
			next = cur.end
			break
		}
		next = r.Offset + 1
		if r.Attrs.IsControl() {
			continue // a transaction marker
		}
		_, _, profile, err := parseMembershipKey(r.Key)
		if err != nil || r.Value == nil {
			continue
		}
		h := hashMember(profile)
		if cur.last[h] != r.Offset {
			continue // not the member's last record, or not this audience
		}
		done++
		passed++
		if _, ok := cur.touched[h]; ok {
			continue
		}
		todo = append(todo, r)
	}
	cur.pos = next
	if next >= cur.end && len(cur.pending) == 0 {
		// Nothing of the snapshot is left: a compacted tail may end below
		// cur.end, which is still where the snapshot ends.
		next = cur.end
	}
	// Only once the batch commits: an aborted or rewound batch reads this
	// control record again, and must not take it for a copy.
	step := c.Step
	p.onCommit = append(p.onCommit, commitAction{rec: rec, f: func() { cur.maxStep = max(cur.maxStep, step) }})
	p.spendTokens(passed)
	nc := resyncControl{ResyncID: c.ResyncID, Step: c.Step + 1, End: cur.end, Next: next, Done: done, Total: cur.total}
	nc.MAC = nc.mac(job.Secret, rec.Partition)
	finished := next >= cur.end
	if finished {
		// The partition's end is recorded before anything of the last step
		// is produced: no control record follows it, so a report lost with
		// this instance would leave the resync running for ever. (Redo after
		// a failed batch reports it again.)
		if saver, ok := p.cfg.Resyncs.(ProgressSaver); ok {
			fin := idsync.ResyncProgress{Partition: rec.Partition, Done: done, Total: cur.total, Finished: true,
				Instance: p.cfg.TransactionalID, Updated: time.Now()}
			if err := saver.SaveResyncProgress(ctx, job.ID, []idsync.ResyncProgress{fin}); err != nil {
				return &stop{rec: rec, reason: WaitConfig, cause: fmt.Errorf("recording the end of resync %s: %w", job.ID, err)}
			}
		}
	}
	for _, r := range todo {
		n, _ := p.resend(ctx, a, rec, r, job, conn, topic, now)
		sent += int64(n)
	}
	if p.sess != nil && (c.Step == 0 || finished) {
		// The start and the end of the resync on this partition, recorded
		// in the membership partition in the chain's transactions: a second
		// start record, or a control record of a finished chain read again,
		// finds them.
		key := resyncStartedKey(job.ID)
		if finished {
			key = resyncFinishedKey(job.ID)
		}
		a.control(ctx, rec, &kgo.Record{Topic: p.cfg.MembershipTopic, Partition: rec.Partition, Key: key, Value: []byte(rec.Topic)})
	}
	if !finished {
		a.control(ctx, rec, p.controlRecord(rec, nc))
	}
	p.m.resyncMembers.Add(float64(passed))
	p.setProgress(nc, rec.Partition, sent, finished, false)
	if finished {
		p.dropCursor(cursorKey{job.ID, rec.Partition})
		p.log.Info("resync finished on partition", "resync_id", job.ID, "partition", rec.Partition, "members", done)
	}
	return nil
}

// resend sends one member of a resync's snapshot (membership record m) to
// the resync's destination, through idsync.Process under the version in
// effect at the resync's start. It returns how many records it produced.
func (p *Pipeline) resend(ctx context.Context, a *acks, ctl, m *kgo.Record, job *idsync.Resync, conn []idsync.Connection, topic string, now time.Time) (int, *stop) {
	ev, err := idsync.Decode(m.Value, now, p.cfg.Limits)
	if err != nil {
		// Stored from an event that decoded once; with other limits now,
		// it is dead-lettered like any record.
		a.deadLetterOf(ctx, m, ctl, idsync.CodeOf(err), "resync "+job.ID+": "+err.Error(), "", nil)
		return 0, nil
	}
	if len(conn) == 0 {
		return 0, nil // the connection was deleted: nothing to send
	}
	ev.ResyncID = job.ID
	ev.ResyncAt = job.StartAt
	res := idsync.Process(ev, conn, now, p.cfg.Options)
	for _, d := range res.DeadLetters {
		a.deadLetterOf(ctx, m, ctl, d.Code, "resync "+job.ID+": "+d.Message, d.DestinationID, nil)
	}
	if len(res.Outputs) == 0 {
		return 0, nil
	}
	if r, ok := p.refusals.get(refusalKey{ctl.Topic, ctl.Partition, ctl.Offset, job.DestinationID, false}); ok {
		a.deadLetterOf(ctx, m, ctl, idsync.CodeDestinationRefused,
			fmt.Sprintf("resync %s: destination %s: the broker refused its record for good: %v", job.ID, job.DestinationID, r.err), job.DestinationID, nil)
		return 0, nil
	}
	src := sourceHeader(m)
	id := []byte(job.ID)
	n := 0
	for i := range res.Outputs {
		o := &res.Outputs[i]
		size := p.recordSize(m, o, &traceHeaders{})
		if lim, limited := p.topics.limit(topic); limited && lim > 0 && size-recordOverhead+aloneOverhead > lim {
			a.deadLetterOf(ctx, m, ctl, idsync.CodeDestinationRefused,
				fmt.Sprintf("resync %s: destination %s: a record of %d bytes is above the max.message.bytes %d of topic %s", job.ID, o.DestinationID, size-recordOverhead, lim, topic), o.DestinationID, nil)
			continue
		}
		if size > int(p.cfg.MaxRecordBytes) {
			a.deadLetterOf(ctx, m, ctl, idsync.CodeOutputTooLarge,
				fmt.Sprintf("resync %s: destination %s: a record would exceed the record size limit of %d bytes", job.ID, o.DestinationID, p.cfg.MaxRecordBytes), o.DestinationID, nil)
			continue
		}
		r := &kgo.Record{Topic: topic, Key: []byte(o.Key), Value: o.Value, Timestamp: now,
			Headers: []kgo.RecordHeader{
				{Key: idsync.HeaderSource, Value: src},
				{Key: idsync.HeaderConfigVersion, Value: versionHeader(o.ConfigVersion)},
				{Key: HeaderResync, Value: id},
			}}
		r.Context = &recordMeta{Context: ctx, counter: p.m.outputBy[o.DestinationType], src: ctl, dest: o.DestinationID}
		if _, limited := p.topics.limit(topic); limited {
			a.produceAlone(ctx, r)
		} else {
			a.produce(ctx, r)
		}
		n++
	}
	return n, nil
}

// deadLetterRecord dead-letters rec whole (its topic must be there first).
func (p *Pipeline) deadLetterRecord(ctx context.Context, a *acks, rec *kgo.Record, code idsync.Code, msg string) *stop {
	if err := p.topics.dlq(ctx); err != nil {
		return &stop{rec: rec, reason: WaitTopic, cause: err}
	}
	p.m.input.Inc()
	a.deadLetter(ctx, rec, code, msg, "", nil)
	return nil
}
