package hostile

import (
	"bytes"
	"compress/flate"
	"fmt"
	"strconv"
	"time"

	"github.com/idsync/idsync/idsync"
)

// Oracle says what the pipeline must do with each input record, from the
// fixture and the pipeline's limits, without any of the pipeline's code.
// Its rules, in order:
//
//  1. idsync.Decode(value, Now, Limits) fails: one dead letter with the
//     error's code, no destination.
//  2. The space or audience id is not one the store can hold
//     (idsync.ValidEntityID): one dead letter invalid_key.
//  3. The audience's connections key cannot be read as connections at all
//     (WRONGTYPE): one dead letter invalid_config, no destination.
//  4. Each stored connection this binary cannot use (unknown destination
//     type, undecodable record, broken rules, a field that is no
//     destination id): one dead letter invalid_config with its
//     destination id; the others are served.
//  5. idsync.Process(event, usable connections, Now, Options): its outputs
//     must be delivered, its dead letters (fanout_limit, output_too_large)
//     written with their destination ids. The oracle checks Process's
//     results against Options' bounds and reports a breach in
//     Expectation.Problems.
//  6. Broker refusals: a destination whose record cannot fit its topic's
//     max.message.bytes even compressed (its DEFLATE size is over 110% of
//     the limit) gets one dead letter destination_refused instead of its
//     records, which become optional (some may have been accepted before
//     the refusal); a record that surely fits (key, value and headers plus
//     512 bytes of framing within the limit) must be delivered; in between,
//     both outcomes are accepted.
//  7. A dead letter's value is the input, or, when it is truncated, a
//     strict prefix of it with header idsync-original-size (likewise its
//     key, with idsync-original-key-size). It must not be truncated when
//     key and value fit the dead-letter topic's limit with 8 KiB to spare,
//     and must be when the value alone exceeds the limit.
//
// Audiences without effective connections, and connections with nothing
// to send, expect nothing (a counted skip).
type Oracle struct {
	Fixture *Fixture
	// Limits, Options and Now are the pipeline's.
	Limits  idsync.Limits
	Options idsync.Options
	Now     time.Time
	// Topics maps destination ids to topics; InputTopic is the input.
	Topics     idsync.TopicTemplate
	InputTopic string
	// RecordLimit is the max.message.bytes of the topics the pipeline
	// creates (destination topics and the dead-letter topic).
	RecordLimit int
	// TopicLimits overrides RecordLimit per destination id (topics the
	// test created itself).
	TopicLimits map[string]int
}

// Input is one input record as it was written.
type Input struct {
	Class     Class
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
}

// maxTraceHeader is the longest trace context header an output or dead
// letter carries over; maxKeptHeaders what a dead letter keeps of an
// input's headers (keys, values and headerFraming each).
const (
	maxTraceHeader = 1 << 10
	maxKeptHeaders = 16 << 10
	headerFraming  = 10
)

// Trace returns the trace context the input's outputs and dead letters
// carry: the first traceparent and the first tracestate header, each when
// it is at most 1 KiB, in the input's order.
func (in *Input) Trace() []Header {
	var out []Header
	seen := map[string]bool{}
	for _, h := range in.Headers {
		if (h.Key == "traceparent" || h.Key == "tracestate") && !seen[h.Key] {
			seen[h.Key] = true
			if len(h.Value) <= maxTraceHeader {
				out = append(out, h)
			}
		}
	}
	return out
}

// headerBytes is what headers weigh by the pipeline's count.
func headerBytes(hs []Header) int {
	n := 0
	for _, h := range hs {
		n += len(h.Key) + len(h.Value) + headerFraming
	}
	return n
}

// ID returns "partition/offset".
func (in *Input) ID() string { return fmt.Sprintf("%d/%d", in.Partition, in.Offset) }

// Output is one record a destination topic must hold: the fields the
// contract fixes.
type Output struct {
	Topic string
	Key   string
	Value string
	// ConfigVersion is the idsync-config-version header.
	ConfigVersion string
	// DestinationID is the destination the record is for.
	DestinationID string
}

// Truncation says whether a dead letter's value may be cut.
type Truncation int

// Truncation states.
const (
	// TruncNever: the value must be the whole input.
	TruncNever Truncation = iota
	// TruncMust: the value must be a strict prefix, with
	// idsync-original-size.
	TruncMust
	// TruncMay: either.
	TruncMay
)

// DeadLetter is one dead-letter record an input must give.
type DeadLetter struct {
	Code idsync.Code
	// DestinationID is the idsync-destination-id header ("" when absent).
	DestinationID string
	Truncate      Truncation
	// Headers says whether the input's headers may be left out (but its
	// trace context): never when they fit with dlqSlack to spare, always
	// when they weigh more than the 16 KiB a dead letter keeps.
	Headers Truncation
	// Optional: the record may be absent (an ambiguous refusal).
	Optional bool
}

// Expectation is what the pipeline must do with one input.
type Expectation struct {
	// Outputs must all be delivered (exactly once in exactly_once, at
	// least once in at_least_once).
	Outputs []Output
	// Optional outputs may be delivered (at most once in exactly_once).
	Optional []Output
	// DeadLetters must be written.
	DeadLetters []DeadLetter
	// Outcome summarises the verdict: "delivered", "skipped",
	// "dead_lettered:<code>" or "partly:<code>" (some destinations served),
	// codes joined by "+".
	Outcome string
	// Secrets are identifier values of the event that must never appear in
	// a dead letter's error message.
	Secrets []string
	// Problems are breaches of Options' bounds by idsync.Process itself.
	Problems []string
}

// dlqSlack is the room the oracle leaves for a dead letter's headers and
// framing before it demands that the value be kept whole.
const dlqSlack = 8 << 10

// framing is the room left for a record's batch and record framing, besides
// its key, value and headers, when deciding that it surely fits a topic
// (the broker counts a 61-byte batch header and a few varints).
const framing = 512

// Expect returns what the pipeline must do with in. It depends on in's key,
// value and trace context only, not on where in landed.
func (o *Oracle) Expect(in *Input) Expectation {
	var x Expectation
	trunc, htrunc := o.truncation(in), o.headerTruncation(in)
	dead := func(code idsync.Code, dest string) {
		x.DeadLetters = append(x.DeadLetters, DeadLetter{Code: code, DestinationID: dest, Truncate: trunc, Headers: htrunc})
	}
	ev, err := idsync.Decode(in.Value, o.Now, o.Limits)
	if err != nil {
		code := idsync.CodeOf(err)
		if code == "" {
			x.Problems = append(x.Problems, fmt.Sprintf("idsync.Decode returned an error without a code: %v", err))
		}
		dead(code, "")
		x.Outcome = outcome(&x, false)
		return x
	}
	for _, id := range ev.ExternalIDs {
		if len(id.ID) >= 8 {
			x.Secrets = append(x.Secrets, id.ID)
		}
	}
	lk := o.Fixture.Lookup(ev.SpaceID, ev.AudienceID)
	switch {
	case lk.InvalidKey:
		dead(idsync.CodeInvalidKey, "")
		x.Outcome = outcome(&x, false)
		return x
	case lk.Unusable:
		dead(idsync.CodeInvalidConfig, "")
		x.Outcome = outcome(&x, false)
		return x
	}
	for _, dest := range lk.Invalid {
		dead(idsync.CodeInvalidConfig, dest)
	}
	res := idsync.Process(ev, lk.Usable, o.Now, o.Options)
	x.Problems = append(x.Problems, o.checkBounds(&res)...)
	for _, d := range res.DeadLetters {
		dead(d.Code, d.DestinationID)
	}
	// Group the outputs by destination, in order, and judge each
	// destination's records against its topic's limit.
	// The idsync-source header at its longest (partition and offset at
	// their widest), so that the expectation does not depend on where the
	// input landed.
	srcLen := len(o.InputTopic) + len("/-2147483648/-9223372036854775808")
	var order []string
	byDest := map[string][]Output{}
	for _, out := range res.Outputs {
		if _, ok := byDest[out.DestinationID]; !ok {
			order = append(order, out.DestinationID)
		}
		byDest[out.DestinationID] = append(byDest[out.DestinationID], Output{
			Topic: o.Topics.Topic(out.DestinationID), Key: out.Key, Value: string(out.Value),
			ConfigVersion: strconv.FormatInt(out.ConfigVersion, 10), DestinationID: out.DestinationID,
		})
	}
	for _, dest := range order {
		outs := byDest[dest]
		limit := o.RecordLimit
		if l, ok := o.TopicLimits[dest]; ok {
			limit = l
		}
		verdict := fitsAll
		for i := range outs {
			verdict = max(verdict, fits(&outs[i], srcLen+headerBytes(in.Trace()), limit))
		}
		switch verdict {
		case fitsAll:
			x.Outputs = append(x.Outputs, outs...)
		case fitsMaybe:
			x.Optional = append(x.Optional, outs...)
			x.DeadLetters = append(x.DeadLetters, DeadLetter{Code: idsync.CodeDestinationRefused, DestinationID: dest, Truncate: trunc, Headers: htrunc, Optional: true})
		default:
			x.Optional = append(x.Optional, outs...)
			dead(idsync.CodeDestinationRefused, dest)
		}
	}
	x.Outcome = outcome(&x, len(x.Outputs)+len(x.Optional) > 0)
	return x
}

// outcome summarises an expectation.
func outcome(x *Expectation, served bool) string {
	required := 0
	for _, d := range x.DeadLetters {
		if !d.Optional {
			required++
		}
	}
	if len(x.DeadLetters) == 0 {
		if served {
			return "delivered"
		}
		return "skipped"
	}
	s := "dead_lettered:"
	if served || required == 0 {
		s = "partly:"
	}
	seen := map[string]bool{}
	first := true
	for _, d := range x.DeadLetters {
		c := string(d.Code)
		if d.Optional {
			c += "?"
		}
		if seen[c] {
			continue
		}
		seen[c] = true
		if !first {
			s += "+"
		}
		s += c
		first = false
	}
	return s
}

// truncation decides whether in's dead letters may be cut: never when key
// and value fit the dead-letter topic with dlqSlack to spare, always when
// the value alone is over its limit.
func (o *Oracle) truncation(in *Input) Truncation {
	switch {
	case len(in.Key)+len(in.Value)+dlqSlack <= o.RecordLimit:
		return TruncNever
	case len(in.Value) > o.RecordLimit:
		return TruncMust
	}
	return TruncMay
}

// headerTruncation decides whether in's dead letters may leave its headers
// out (keeping its trace context): never when key, value and headers fit
// the dead-letter topic with dlqSlack to spare and the headers weigh at
// most maxKeptHeaders, always when they weigh more.
func (o *Oracle) headerTruncation(in *Input) Truncation {
	hb := headerBytes(in.Headers)
	switch {
	case hb > maxKeptHeaders:
		return TruncMust
	case len(in.Key)+len(in.Value)+hb+dlqSlack <= o.RecordLimit:
		return TruncNever
	}
	return TruncMay
}

// fit verdicts, ordered from best to worst.
const (
	fitsAll = iota
	fitsMaybe
	fitsNever
)

// fits judges one record against a topic limit: it surely fits when its
// raw size (key, value, the two headers, framing) is within the limit; it
// surely does not when even DEFLATE (stronger than the snappy or lz4 a
// producer may use) leaves it 10% over the limit.
func fits(out *Output, srcLen, limit int) int {
	raw := len(out.Key) + len(out.Value) + len("idsync-source") + srcLen + len("idsync-config-version") + len(out.ConfigVersion) + framing
	if raw <= limit {
		return fitsAll
	}
	if deflated(out.Key, out.Value) > limit+limit/10 {
		return fitsNever
	}
	return fitsMaybe
}

// deflated returns the DEFLATE size of the strings, at the best
// compression.
func deflated(ss ...string) int {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	for _, s := range ss {
		_, _ = w.Write([]byte(s))
	}
	_ = w.Close()
	return b.Len()
}

// checkBounds reports where Process's result breaks the bounds of
// Options: a record above MaxRecordBytes, a destination above
// MaxOutputBytes, MaxCombinations records or MaxFacebookRows rows, an event
// above MaxEventOutputBytes. Bounds that are zero are not checked.
func (o *Oracle) checkBounds(res *idsync.Result) []string {
	opt := o.Options
	var probs []string
	type tally struct{ records, bytes, rows int }
	per := map[string]*tally{}
	total := 0
	for _, out := range res.Outputs {
		t := per[out.DestinationID]
		if t == nil {
			t = &tally{}
			per[out.DestinationID] = t
		}
		t.records++
		t.bytes += len(out.Value)
		total += len(out.Value)
		if opt.MaxRecordBytes > 0 && len(out.Key)+len(out.Value) > opt.MaxRecordBytes {
			probs = append(probs, fmt.Sprintf("Process made a %d-byte record for %s, above MaxRecordBytes %d", len(out.Key)+len(out.Value), out.DestinationID, opt.MaxRecordBytes))
		}
		if out.DestinationType == idsync.FacebookCustomAudiences {
			t.rows += facebookRows(out.Value)
		}
	}
	for dest, t := range per {
		if opt.MaxOutputBytes > 0 && t.bytes > opt.MaxOutputBytes {
			probs = append(probs, fmt.Sprintf("Process made %d bytes for %s, above MaxOutputBytes %d", t.bytes, dest, opt.MaxOutputBytes))
		}
		if opt.MaxCombinations > 0 && t.records > opt.MaxCombinations {
			probs = append(probs, fmt.Sprintf("Process made %d records for %s, above MaxCombinations %d", t.records, dest, opt.MaxCombinations))
		}
		if opt.MaxFacebookRows > 0 && t.rows > opt.MaxFacebookRows {
			probs = append(probs, fmt.Sprintf("Process made %d Facebook rows for %s, above MaxFacebookRows %d", t.rows, dest, opt.MaxFacebookRows))
		}
	}
	if opt.MaxEventOutputBytes > 0 && total > opt.MaxEventOutputBytes {
		probs = append(probs, fmt.Sprintf("Process made %d bytes for one event, above MaxEventOutputBytes %d", total, opt.MaxEventOutputBytes))
	}
	return probs
}

// facebookRows counts the rows of a Facebook record's payload.data: a
// cheap count of the "],[" between rows, which holds for the generator's
// values (none has a bracket). A record without rows counts none.
func facebookRows(value []byte) int {
	i := bytes.Index(value, []byte(`"data":[[`))
	if i < 0 {
		return 0
	}
	data := value[i+len(`"data":[`):]
	end := bytes.Index(data, []byte(`]]`))
	if end < 0 {
		return 0
	}
	return bytes.Count(data[:end+1], []byte(`],[`)) + 1
}
