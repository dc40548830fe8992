package hostile

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/idsync/idsync/idsync"
)

// HeaderOriginalSize is the header of a dead letter whose value was
// truncated: the input value's length in bytes. HeaderOriginalKeySize is
// the same for a truncated key (the pipeline bounds dead-letter keys too).
const (
	HeaderOriginalSize    = "idsync-original-size"
	HeaderOriginalKeySize = "idsync-original-key-size"
)

// Header is one record header.
type Header struct {
	Key, Value string
}

// Got is one record read back from a destination topic or the dead-letter
// topic after the run.
type Got struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
}

// header returns the value of the last header named key, and whether there
// is one.
func (g *Got) header(key string) (string, bool) {
	for i := len(g.Headers) - 1; i >= 0; i-- {
		if g.Headers[i].Key == key {
			return g.Headers[i].Value, true
		}
	}
	return "", false
}

// Report is the result of Check.
type Report struct {
	// Problems are the invariant's breaches, at most MaxProblems of them
	// in detail; Dropped counts the others.
	Problems []string
	Dropped  int
	// Inputs per class, and outcomes per class ("delivered",
	// "dead_lettered:too_large", ...), from the oracle.
	Classes  map[Class]int
	Outcomes map[Class]map[string]int
	// Records read: outputs (with duplicates) and dead letters per code.
	Outputs     int
	Duplicates  int
	DeadLetters map[idsync.Code]int
	// Truncated counts dead letters whose value was cut.
	Truncated int
}

// MaxProblems bounds the problems a Report lists in detail.
const MaxProblems = 40

func (r *Report) problem(format string, args ...any) {
	if len(r.Problems) >= MaxProblems {
		r.Dropped++
		return
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// OK reports whether the run kept the invariant.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Summary is a short table of the run: classes, outcomes and records.
func (r *Report) Summary() string {
	var b strings.Builder
	for _, c := range slices.Sorted(maps.Keys(r.Classes)) {
		fmt.Fprintf(&b, "  %-20s %5d ", c, r.Classes[c])
		outs := r.Outcomes[c]
		for i, o := range slices.Sorted(maps.Keys(outs)) {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %d", o, outs[o])
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "  records: %d outputs (%d duplicates), dead letters", r.Outputs, r.Duplicates)
	for _, c := range slices.Sorted(maps.Keys(r.DeadLetters)) {
		fmt.Fprintf(&b, " %s=%d", c, r.DeadLetters[c])
	}
	fmt.Fprintf(&b, " (%d truncated)\n", r.Truncated)
	return b.String()
}

// Check compares what a run wrote with the oracle's expectations: inputs[i]
// must have given exps[i]. got holds every record of every destination
// topic and of dlqTopic. In exactly_once, each expected record must appear
// exactly once and an optional one at most once; in at_least_once, each
// expected record at least once, duplicates allowed. In both, a record no
// input explains is a problem.
func Check(o *Oracle, inputs []Input, exps []Expectation, got []Got, dlqTopic string, exactlyOnce bool) *Report {
	rep := &Report{Classes: map[Class]int{}, Outcomes: map[Class]map[string]int{}, DeadLetters: map[idsync.Code]int{}}
	byID := make(map[string]int, len(inputs))
	for i := range inputs {
		in := &inputs[i]
		byID[in.ID()] = i
		rep.Classes[in.Class]++
		if rep.Outcomes[in.Class] == nil {
			rep.Outcomes[in.Class] = map[string]int{}
		}
		rep.Outcomes[in.Class][exps[i].Outcome]++
		for _, p := range exps[i].Problems {
			rep.problem("input %s (%s): the oracle's idsync.Process breaks a bound: %s", in.ID(), in.Class, p)
		}
	}
	outs := make([][]*Got, len(inputs))
	dlqs := make([][]*Got, len(inputs))
	for i := range got {
		g := &got[i]
		if g.Topic == dlqTopic {
			idx, err := dlqSource(o, g, byID)
			if err != nil {
				rep.problem("dead letter %s/%d/%d: %v", g.Topic, g.Partition, g.Offset, err)
				continue
			}
			dlqs[idx] = append(dlqs[idx], g)
			continue
		}
		src, _ := g.header(idsync.HeaderSource)
		rest, ok := strings.CutPrefix(src, o.InputTopic+"/")
		idx, known := byID[rest]
		if !ok || !known {
			rep.problem("record %s/%d/%d: header %s %q names no input record", g.Topic, g.Partition, g.Offset, idsync.HeaderSource, src)
			continue
		}
		outs[idx] = append(outs[idx], g)
	}
	for i := range inputs {
		checkOutputs(rep, &inputs[i], &exps[i], outs[i], exactlyOnce)
		checkDeadLetters(rep, o, &inputs[i], &exps[i], dlqs[i], exactlyOnce)
	}
	if exactlyOnce {
		checkOrder(rep, inputs, outs)
	}
	return rep
}

// checkOrder checks per-profile order in exactly_once: in each destination
// topic partition, one key's records come from input records in offset
// order. (In at_least_once a rewound partition repeats records, so an
// earlier one may follow a later one; the final state is still right.)
func checkOrder(rep *Report, inputs []Input, outs [][]*Got) {
	type placed struct {
		g  *Got
		in *Input
	}
	var all []placed
	for i := range outs {
		for _, g := range outs[i] {
			all = append(all, placed{g, &inputs[i]})
		}
	}
	slices.SortFunc(all, func(a, b placed) int {
		if c := strings.Compare(a.g.Topic, b.g.Topic); c != 0 {
			return c
		}
		if a.g.Partition != b.g.Partition {
			return int(a.g.Partition - b.g.Partition)
		}
		return int(a.g.Offset - b.g.Offset)
	})
	type slot struct {
		topic string
		part  int32
		key   string
	}
	last := map[slot]*Input{}
	for _, p := range all {
		k := slot{p.g.Topic, p.g.Partition, string(p.g.Key)}
		prev := last[k]
		if prev != nil && prev.Partition == p.in.Partition && prev.Offset > p.in.Offset {
			rep.problem("%s/%d/%d: key %q from input %s (%s) after one from input %s: per-profile order broken",
				p.g.Topic, p.g.Partition, p.g.Offset, clip(string(p.g.Key), 40), p.in.ID(), p.in.Class, prev.ID())
		}
		last[k] = p.in
	}
}

// dlqSource returns the index of the input a dead letter names.
func dlqSource(o *Oracle, g *Got, byID map[string]int) (int, error) {
	topic, _ := g.header(idsync.HeaderSourceTopic)
	part, _ := g.header(idsync.HeaderSourcePartition)
	off, _ := g.header(idsync.HeaderSourceOffset)
	if topic != o.InputTopic {
		return 0, fmt.Errorf("header %s %q is not the input topic", idsync.HeaderSourceTopic, topic)
	}
	idx, ok := byID[part+"/"+off]
	if !ok {
		return 0, fmt.Errorf("headers %s %q and %s %q name no input record", idsync.HeaderSourcePartition, part, idsync.HeaderSourceOffset, off)
	}
	return idx, nil
}

func canonOutput(topic, key, value, version string) string {
	return topic + "\x00" + key + "\x00" + version + "\x00" + value
}

// describe names an output record for a problem: topic and message_id.
func describe(topic, value string) string {
	mid := ""
	if i := strings.Index(value, `"message_id":"`); i >= 0 {
		mid = value[i+len(`"message_id":"`):]
		if j := strings.IndexByte(mid, '"'); j >= 0 {
			mid = mid[:j]
		}
	}
	return fmt.Sprintf("%s message_id %q (%d bytes)", topic, clip(mid, 80), len(value))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// sameHeaders reports whether a and b are the same headers in order.
func sameHeaders(a, b []Header) bool { return slices.Equal(a, b) }

func checkOutputs(rep *Report, in *Input, x *Expectation, got []*Got, exactlyOnce bool) {
	trace := in.Trace()
	required := map[string]int{}
	optional := map[string]bool{}
	names := map[string]string{}
	for _, o := range x.Outputs {
		c := canonOutput(o.Topic, o.Key, o.Value, o.ConfigVersion)
		required[c]++
		names[c] = describe(o.Topic, o.Value)
	}
	for _, o := range x.Optional {
		c := canonOutput(o.Topic, o.Key, o.Value, o.ConfigVersion)
		optional[c] = true
		names[c] = describe(o.Topic, o.Value)
	}
	seen := map[string]int{}
	for _, g := range got {
		version, _ := g.header(idsync.HeaderConfigVersion)
		c := canonOutput(g.Topic, string(g.Key), string(g.Value), version)
		seen[c]++
		rep.Outputs++
		if len(g.Headers) < 2 || !sameHeaders(g.Headers[2:], trace) {
			rep.problem("input %s (%s): record at %s/%d/%d carries %d headers besides idsync's two, want the input's trace context (%d headers)",
				in.ID(), in.Class, g.Topic, g.Partition, g.Offset, max(len(g.Headers)-2, 0), len(trace))
		}
		if required[c] == 0 && !optional[c] {
			rep.problem("input %s (%s, expected %s): unexpected record at %s/%d/%d: %s, key %q, version %q",
				in.ID(), in.Class, x.Outcome, g.Topic, g.Partition, g.Offset, describe(g.Topic, string(g.Value)), clip(string(g.Key), 40), version)
		}
	}
	for c, n := range seen {
		want := required[c]
		if want == 0 && optional[c] {
			want = 1
		}
		if n > want && want > 0 {
			rep.Duplicates += n - want
			if exactlyOnce {
				rep.problem("input %s (%s): %s written %d times in exactly_once", in.ID(), in.Class, names[c], n)
			}
		}
	}
	for _, c := range slices.Sorted(maps.Keys(required)) {
		if seen[c] < required[c] {
			rep.problem("input %s (%s, expected %s): missing %s", in.ID(), in.Class, x.Outcome, names[c])
		}
	}
}

func checkDeadLetters(rep *Report, o *Oracle, in *Input, x *Expectation, got []*Got, exactlyOnce bool) {
	type slot struct {
		dl   DeadLetter
		seen int
	}
	slots := map[string]*slot{}
	for _, d := range x.DeadLetters {
		slots[string(d.Code)+"\x00"+d.DestinationID] = &slot{dl: d}
	}
	for _, g := range got {
		code, _ := g.header(idsync.HeaderErrorCode)
		dest, _ := g.header(idsync.HeaderDestinationID)
		rep.DeadLetters[idsync.Code(code)]++
		s := slots[code+"\x00"+dest]
		if s == nil {
			rep.problem("input %s (%s, expected %s): unexpected dead letter %s/%d/%d with code %q destination %q (error %q)",
				in.ID(), in.Class, x.Outcome, g.Topic, g.Partition, g.Offset, code, dest, clip(headerOr(g, idsync.HeaderError), 200))
			continue
		}
		s.seen++
		checkDeadLetter(rep, in, x, g, s.dl)
	}
	for _, k := range slices.Sorted(maps.Keys(slots)) {
		s := slots[k]
		switch {
		case s.seen == 0 && !s.dl.Optional:
			rep.problem("input %s (%s, expected %s): no dead letter with code %s destination %q", in.ID(), in.Class, x.Outcome, s.dl.Code, s.dl.DestinationID)
		case s.seen > 1 && exactlyOnce:
			rep.problem("input %s (%s): dead letter %s destination %q written %d times in exactly_once", in.ID(), in.Class, s.dl.Code, s.dl.DestinationID, s.seen)
		case s.seen > 1:
			rep.Duplicates += s.seen - 1
		}
	}
}

func headerOr(g *Got, key string) string {
	v, _ := g.header(key)
	return v
}

// checkDeadLetter checks one dead letter's key, value, truncation and
// headers.
func checkDeadLetter(rep *Report, in *Input, x *Expectation, g *Got, dl DeadLetter) {
	where := fmt.Sprintf("input %s (%s): dead letter %s at %s/%d/%d", in.ID(), in.Class, dl.Code, g.Topic, g.Partition, g.Offset)
	if ksize, cut := g.header(HeaderOriginalKeySize); cut {
		if ksize != strconv.Itoa(len(in.Key)) || len(g.Key) >= len(in.Key) || string(g.Key) != string(in.Key[:len(g.Key)]) {
			rep.problem("%s: key (%d bytes, %s %q) is not a strict prefix of the input's key (%d bytes)", where, len(g.Key), HeaderOriginalKeySize, ksize, len(in.Key))
		}
	} else if string(g.Key) != string(in.Key) {
		rep.problem("%s: key %q, want the input's %q", where, clip(string(g.Key), 40), clip(string(in.Key), 40))
	}
	size, truncated := g.header(HeaderOriginalSize)
	switch {
	case truncated:
		rep.Truncated++
		if dl.Truncate == TruncNever {
			rep.problem("%s: truncated (%d of %d bytes) though it fits the dead-letter topic", where, len(g.Value), len(in.Value))
		}
		if size != strconv.Itoa(len(in.Value)) {
			rep.problem("%s: header %s %q, want %d", where, HeaderOriginalSize, size, len(in.Value))
		}
		if len(g.Value) >= len(in.Value) || string(g.Value) != string(in.Value[:len(g.Value)]) {
			rep.problem("%s: truncated value (%d bytes) is not a strict prefix of the input (%d bytes)", where, len(g.Value), len(in.Value))
		}
	default:
		if dl.Truncate == TruncMust {
			rep.problem("%s: not truncated (%d bytes, no %s header) though the input is over the dead-letter topic's limit", where, len(g.Value), HeaderOriginalSize)
		}
		if string(g.Value) != string(in.Value) {
			rep.problem("%s: value (%d bytes) is not the input (%d bytes), and there is no %s header", where, len(g.Value), len(in.Value), HeaderOriginalSize)
		}
	}
	checkKeptHeaders(rep, in, g, dl, where)
	msg, ok := g.header(idsync.HeaderError)
	if !ok || msg == "" {
		rep.problem("%s: no %s header", where, idsync.HeaderError)
	}
	for _, s := range x.Secrets {
		if strings.Contains(msg, s) {
			rep.problem("%s: header %s holds an identifier value", where, idsync.HeaderError)
			break
		}
	}
}

// Headers of a dead letter about the input's headers.
const (
	HeaderOriginalHeaders     = "idsync-original-headers"
	HeaderOriginalHeadersSize = "idsync-original-headers-size"
)

// checkKeptHeaders checks that a dead letter starts with its input's
// headers (HeaderOriginalHeaders of them): all of them, or, with
// HeaderOriginalHeadersSize, its trace context (none after the dead-letter
// topic refused it twice).
func checkKeptHeaders(rep *Report, in *Input, g *Got, dl DeadLetter, where string) {
	v, ok := g.header(HeaderOriginalHeaders)
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n < 0 || n > len(g.Headers) {
		rep.problem("%s: header %s %q does not count the input's headers", where, HeaderOriginalHeaders, v)
		return
	}
	kept := g.Headers[:n]
	size, cut := g.header(HeaderOriginalHeadersSize)
	switch {
	case !cut:
		if dl.Headers == TruncMust {
			rep.problem("%s: keeps input headers of %d bytes, above the %d a dead letter keeps", where, headerBytes(in.Headers), maxKeptHeaders)
		}
		if !sameHeaders(kept, in.Headers) {
			rep.problem("%s: starts with %d headers that are not the input's %d, and there is no %s header", where, n, len(in.Headers), HeaderOriginalHeadersSize)
		}
	default:
		if dl.Headers == TruncNever {
			rep.problem("%s: left out the input's headers (%d bytes) though they fit", where, headerBytes(in.Headers))
		}
		if size != strconv.Itoa(headerBytes(in.Headers)) {
			rep.problem("%s: header %s %q, want %d", where, HeaderOriginalHeadersSize, size, headerBytes(in.Headers))
		}
		if n > 0 && !sameHeaders(kept, in.Trace()) {
			rep.problem("%s: of the input's headers keeps %d that are not its trace context", where, n)
		}
	}
}
