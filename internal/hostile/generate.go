// Package hostile generates the input of idsync's pipeline-level property
// test and judges what the pipeline made of it.
//
// The generator (Generate) is seeded (math/rand/v2): a seed always gives
// the same records. It mixes good audience-membership events with every
// hostile class the failure model must absorb (Classes): random bytes,
// invalid UTF-8, truncated and malformed JSON, deep nesting, huge strings,
// wrong types and missing fields, unknown actions, too many external ids,
// records over the input limit, timestamps far in the future, space and
// audience ids the store cannot hold, amplifying events, outputs over the
// record limit or over a destination topic's max.message.bytes, stored
// connections this binary cannot use, audiences without connections, random
// ids, duplicates and exits.
//
// The fixture (NewFixture) is the stored configuration those events are
// judged against; Install writes it to Redis, valid connections through
// store.Store and hostile ones as raw Redis writes.
//
// The oracle (Oracle.Expect) says, for one input record, what the pipeline
// must do with it, independently of the pipeline's code: idsync.Decode, the
// connection source's rules, idsync.Process, then the broker's refusals by
// the destination topics' max.message.bytes. Check compares what a run wrote
// (every destination topic and the dead-letter topic) with the oracle's
// expectations, input offset by input offset.
package hostile

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Class names what kind of input a generated record is.
type Class string

// The classes of generated records. Good ones first.
const (
	GoodFacebook   Class = "good_facebook"  // small event, Facebook customized
	GoodGoogle     Class = "good_google"    // small event, Google default
	GoodMulti      Class = "good_multi"     // Iterable, webhook, Zendesk
	GoodSmallTopic Class = "good_small"     // fits the small topic
	Exited         Class = "exited"         // an exit on a connected audience
	NoConnections  Class = "no_connections" // an audience with no connections
	Deleted        Class = "deleted_conn"   // a connection deleted long ago
	RandomIDs      Class = "random_ids"     // random unicode message and segment ids
	Duplicate      Class = "duplicate"      // an exact copy of an earlier record
	HugeString     Class = "huge_string"    // a huge trait string (a good event)
	DeepNesting    Class = "deep_nesting"   // a deeply nested unknown field

	UnusableMixed Class = "unusable_mixed" // one usable connection, four unusable
	UnknownType   Class = "unknown_type"   // the only connection has an unknown type
	Undecodable   Class = "undecodable"    // the only connection record is not JSON
	WrongType     Class = "wrongtype"      // the connections key is a string

	RandomBytes     Class = "random_bytes"
	InvalidUTF8     Class = "invalid_utf8"
	TruncatedJSON   Class = "truncated_json"
	MalformedJSON   Class = "malformed_json"
	WrongFieldType  Class = "wrong_field_type"
	MissingField    Class = "missing_field"
	UnknownAction   Class = "unknown_action"
	TooManyIDs      Class = "too_many_ids"
	TooLarge        Class = "too_large"           // over the input limit, fits the DLQ
	TooLargeHuge    Class = "too_large_truncated" // over the DLQ record limit too
	FutureTimestamp Class = "future_timestamp"
	InvalidKey      Class = "invalid_key"

	AmplifyFacebook Class = "amplify_facebook" // emails x phones x idfas, all strategies
	AmplifyWebhook  Class = "amplify_webhook"  // many values under webhook all mappings
	AmplifyPair     Class = "amplify_pair"     // both, for the per-event byte bound
	HugeOutput      Class = "huge_output"      // huge message or segment id: one record over the limit
	Refused         Class = "refused"          // a record over the small topic's max.message.bytes
)

// classWeights are the classes with their relative frequencies.
var classWeights = []struct {
	class  Class
	weight int
}{
	{GoodFacebook, 90}, {GoodGoogle, 60}, {GoodMulti, 90}, {GoodSmallTopic, 40}, {Exited, 60},
	{NoConnections, 30}, {Deleted, 15}, {RandomIDs, 40}, {Duplicate, 40}, {HugeString, 12}, {DeepNesting, 15},
	{UnusableMixed, 40}, {UnknownType, 20}, {Undecodable, 20}, {WrongType, 20},
	{RandomBytes, 30}, {InvalidUTF8, 25}, {TruncatedJSON, 25}, {MalformedJSON, 20}, {WrongFieldType, 40},
	{MissingField, 30}, {UnknownAction, 15}, {TooManyIDs, 6}, {TooLarge, 5}, {TooLargeHuge, 3},
	{FutureTimestamp, 20}, {InvalidKey, 40},
	{AmplifyFacebook, 25}, {AmplifyWebhook, 25}, {AmplifyPair, 10}, {HugeOutput, 12}, {Refused, 15},
}

// Classes returns every class, in a fixed order.
func Classes() []Class {
	out := make([]Class, len(classWeights))
	for i, cw := range classWeights {
		out[i] = cw.class
	}
	return out
}

// Record is one generated input record.
type Record struct {
	Class Class
	// Key is "<space_id>:<segment_id>" for an event (upstream keys by
	// profile), random for garbage.
	Key   []byte
	Value []byte
	// Headers, on one record in eight of any class, are a hostile header
	// set (see headerSet).
	Headers []Header
}

// Sizes the generator aims at. They are chosen against the limits the
// property test runs with (see Limits and the pipeline test): the input
// limit, the record limit of the destination and dead-letter topics, and
// the small topic's max.message.bytes.
type Sizes struct {
	// MaxInput is the input record limit (idsync.Limits.MaxRecordBytes).
	MaxInput int
	// MaxExternalIDs is idsync.Limits.MaxExternalIDs.
	MaxExternalIDs int
	// DLQRecord is the dead-letter topic's record limit: too_large_truncated
	// records are well above it, too_large ones well below.
	DLQRecord int
	// Now is the processor's clock: future timestamps are days past it,
	// good ones months before it.
	Now time.Time
}

// DefaultSizes are the sizes of the pipeline property test: inputs up to
// 128 KiB, 1000 external ids, dead letters up to 192 KiB, now 2026-06-01.
func DefaultSizes() Sizes {
	return Sizes{MaxInput: 128 << 10, MaxExternalIDs: 1000, DLQRecord: 192 << 10,
		Now: time.Date(2026, 6, 1, 12, 0, 5, 0, time.UTC)}
}

// Generate returns n records for seed with DefaultSizes.
func Generate(seed uint64, n int) []Record {
	return NewGenerator(seed, DefaultSizes()).Generate(n)
}

// Generator makes records. It is deterministic for a seed and not safe for
// concurrent use.
type Generator struct {
	r *rand.Rand
	// hr draws the header sets, apart from r so that a seed's keys and
	// values do not depend on them.
	hr   *rand.Rand
	sz   Sizes
	prev []Record
	seq  int
	// spliced are the placeholders of the record being made, with their
	// characters (see big).
	spliced [][2]string
}

// NewGenerator returns a generator for seed.
func NewGenerator(seed uint64, sz Sizes) *Generator {
	return &Generator{r: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)), hr: rand.New(rand.NewPCG(seed, 0x68656164657273)), sz: sz}
}

// Generate returns n records. When n is at least the number of classes,
// every class appears at least once; the rest are drawn by weight, and the
// order is shuffled (a duplicate always follows what it copies).
func (g *Generator) Generate(n int) []Record {
	classes := make([]Class, 0, n)
	if n >= len(classWeights) {
		classes = append(classes, Classes()...)
	}
	total := 0
	for _, cw := range classWeights {
		total += cw.weight
	}
	for len(classes) < n {
		x := g.r.IntN(total)
		for _, cw := range classWeights {
			if x < cw.weight {
				classes = append(classes, cw.class)
				break
			}
			x -= cw.weight
		}
	}
	g.r.Shuffle(len(classes), func(i, j int) { classes[i], classes[j] = classes[j], classes[i] })
	// A duplicate needs something before it.
	if i := slices.IndexFunc(classes, func(c Class) bool { return c != Duplicate }); i > 0 {
		classes[0], classes[i] = classes[i], classes[0]
	}
	out := make([]Record, 0, n)
	for _, c := range classes {
		out = append(out, g.Make(c))
	}
	for i := range out {
		if g.hr.IntN(8) == 0 {
			out[i].Headers = g.headerSet()
		}
	}
	return out
}

// headerSet returns a hostile header set: a sane W3C trace context among
// application headers; thousands of empty headers with the trace context
// among them; one huge header; oversize and repeated trace headers; or
// headers weighing about the 16 KiB a dead letter keeps of them.
func (g *Generator) headerSet() []Header {
	r := g.hr
	hex := func(n int) string {
		const digits = "0123456789abcdef"
		b := make([]byte, n)
		for i := range b {
			b[i] = digits[r.IntN(16)]
		}
		return string(b)
	}
	raw := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	tp := Header{"traceparent", "00-" + hex(32) + "-" + hex(16) + "-01"}
	ts := Header{"tracestate", "rojo=" + hex(16) + ",congo=" + hex(12)}
	switch r.IntN(5) {
	case 0:
		return []Header{{"x-app", hex(8)}, tp, {"x-bin", raw(16)}, ts}
	case 1:
		hs := make([]Header, 2000+r.IntN(18000))
		for i := range hs {
			hs[i] = Header{Key: "h"}
		}
		hs[r.IntN(len(hs))] = tp
		return hs
	case 2:
		return []Header{ts, {"blob", raw(16<<10 + r.IntN(80<<10))}, tp}
	case 3:
		return []Header{{"traceparent", strings.Repeat("0", 1025+r.IntN(3000))}, tp, ts, ts, {"tracestate", hex(1024)}}
	}
	var hs []Header
	for left := 15<<10 + r.IntN(2<<10); left > 0; left -= 1024 {
		hs = append(hs, Header{fmt.Sprint("x-", len(hs)), raw(max(min(left, 1024)-14, 0))})
	}
	return append(hs, tp)
}

// Make returns one record of class c.
func (g *Generator) Make(c Class) Record {
	g.seq++
	g.spliced = g.spliced[:0]
	rec := g.make(c)
	rec.Class = c
	if c != Duplicate {
		g.prev = append(g.prev, rec)
	}
	return rec
}

// ev is an event under construction: a JSON object, marshalled with
// sorted keys.
type ev map[string]any

func (g *Generator) make(c Class) Record {
	r := g.r
	switch c {
	case GoodFacebook:
		return g.event(g.good(AudFacebook, "entered"))
	case GoodGoogle:
		return g.event(g.good(AudGoogle, "entered"))
	case GoodMulti:
		return g.event(g.good(AudMulti, "entered"))
	case GoodSmallTopic:
		e := g.good(AudSmall, "entered")
		e["external_ids"] = g.ids(map[string]int{"user_id": 1 + r.IntN(3), "email": r.IntN(2)})
		return g.event(e)
	case Exited:
		aud := pick(r, AudFacebook, AudGoogle, AudMulti, AudSmall, AudFacebookAmp, AudWebhookAmp, AudMixed)
		return g.event(g.good(aud, "exited"))
	case NoConnections:
		return g.event(g.good(AudNone, pick(r, "entered", "exited")))
	case Deleted:
		// After the deletion took effect (an older reference time would
		// still find the version before it).
		e := g.good(AudDeleted, "entered")
		e["timestamp"] = g.pastTime().Format(time.RFC3339)
		delete(e, "sync")
		return g.event(e)
	case RandomIDs:
		aud := pick(r, AudMulti, AudFacebook, "aud_r"+g.alnum(1+r.IntN(40)), "r."+g.alnum(8))
		e := g.good(aud, "entered")
		e["message_id"] = g.unicode(1 + r.IntN(60))
		e["profile"] = ev{"segment_id": g.unicode(1 + r.IntN(60))}
		return g.event(e)
	case Duplicate:
		if len(g.prev) == 0 {
			return g.event(g.good(AudMulti, "entered"))
		}
		p := g.prev[r.IntN(len(g.prev))]
		return Record{Key: slices.Clone(p.Key), Value: slices.Clone(p.Value)}
	case HugeString:
		e := g.good(pick(r, AudMulti, AudFacebook, AudGoogle), "entered")
		e["traits"] = ev{"name": "Pat", "bio": g.big(g.sz.MaxInput/3 + r.IntN(g.sz.MaxInput/2))}
		return g.event(e)
	case DeepNesting:
		return g.deep()

	case UnusableMixed:
		return g.event(g.good(AudMixed, "entered"))
	case UnknownType:
		return g.event(g.good(AudUnknownType, pick(r, "entered", "exited")))
	case Undecodable:
		return g.event(g.good(AudCorrupt, "entered"))
	case WrongType:
		return g.event(g.good(AudWrongType, "entered"))

	case RandomBytes:
		if r.IntN(20) == 0 {
			return Record{Key: g.garbageKey()} // a tombstone: no value at all
		}
		b := make([]byte, r.IntN(2048))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return Record{Key: g.garbageKey(), Value: b}
	case InvalidUTF8:
		rec := g.event(g.good(pick(r, AudMulti, AudFacebook), "entered"))
		// Inside a string value: after the opening quote of "timestamp"'s
		// value or anywhere in the bytes, a lone continuation byte or an
		// overlong encoding.
		bad := pick(r, "\xff", "\xc0\xaf", "\xed\xa0\x80", "\x80")
		i := bytes.Index(rec.Value, []byte(`"message_id":"`)) + len(`"message_id":"`)
		if r.IntN(3) == 0 {
			i = r.IntN(len(rec.Value))
		}
		rec.Value = slices.Concat(rec.Value[:i], []byte(bad), rec.Value[i:])
		return rec
	case TruncatedJSON:
		rec := g.event(g.good(pick(r, AudMulti, AudGoogle), "entered"))
		rec.Value = rec.Value[:1+r.IntN(len(rec.Value)-1)]
		return rec
	case MalformedJSON:
		return g.malformed()
	case WrongFieldType:
		return g.wrongType()
	case MissingField:
		return g.missing()
	case UnknownAction:
		return g.event(g.good(AudMulti, pick(r, "joined", "ENTERED", "enter", " entered", "exit", "entered\u0000")))
	case TooManyIDs:
		e := g.good(AudMulti, "entered")
		n := g.sz.MaxExternalIDs + 1 + r.IntN(100)
		ids := make([]ev, n)
		for i := range ids {
			ids[i] = ev{"type": "email", "id": fmt.Sprintf("e%d@x.co", i), "created_at": "2024-01-01T00:00:00Z"}
		}
		e["external_ids"] = ids
		return g.event(e)
	case TooLarge:
		// Over the input limit, well within the dead-letter record limit.
		hi := min(g.sz.DLQRecord-24<<10, g.sz.MaxInput*4/3)
		return g.padded(g.sz.MaxInput + 1 + r.IntN(max(1, hi-g.sz.MaxInput)))
	case TooLargeHuge:
		// Well over the dead-letter record limit: the dead letter must be
		// truncated. Far below the input topic's default 1 MiB.
		lo := g.sz.DLQRecord + 32<<10
		return g.padded(lo + r.IntN(g.sz.DLQRecord*2))
	case FutureTimestamp:
		e := g.good(pick(r, AudMulti, AudFacebook), "entered")
		future := g.sz.Now.Add(25*time.Hour + time.Duration(r.Int64N(int64(400*24*time.Hour))))
		switch r.IntN(3) {
		case 0:
			e["timestamp"] = future.Format(time.RFC3339Nano)
		case 1:
			e["sync"] = ev{"id": "run_1", "started_at": future.Format(time.RFC3339)}
		default:
			e["timestamp"] = "9999-12-31T23:59:59Z"
		}
		return g.event(e)
	case InvalidKey:
		return g.invalidKey()

	case AmplifyFacebook:
		return g.event(g.amplifyFacebook(AudFacebookAmp))
	case AmplifyWebhook:
		return g.event(g.amplifyWebhook(AudWebhookAmp))
	case AmplifyPair:
		e := g.amplifyFacebook(AudAmpPair)
		w := g.amplifyWebhook(AudAmpPair)
		e["external_ids"] = append(e["external_ids"].([]ev), w["external_ids"].([]ev)...)
		return g.event(e)
	case HugeOutput:
		return g.hugeOutput()
	case Refused:
		return g.refused()
	}
	panic("hostile: unknown class " + string(c))
}

// good returns a small valid event for audience aud.
func (g *Generator) good(aud, action string) ev {
	r := g.r
	e := ev{
		"message_id":   fmt.Sprintf("m%d_%s", g.seq, g.alnum(6)),
		"timestamp":    g.pastTime().Format("2006-01-02T15:04:05.000Z07:00"),
		"space_id":     Space,
		"audience_id":  aud,
		"audience_key": pick(r, "first_time_shopper", "vip", "churn_risk"),
		"action":       action,
		"profile":      ev{"segment_id": "use_" + g.alnum(8)},
		"external_ids": g.ids(map[string]int{
			"user_id": r.IntN(3), "email": r.IntN(4), "phone": r.IntN(3), "ios.idfa": r.IntN(2),
			"android.idfa": r.IntN(2), "shopify_id": r.IntN(3), "anonymous_id": r.IntN(2),
		}),
	}
	if r.IntN(3) == 0 {
		e["computation_class"] = pick(r, "audience", "journey_step")
	}
	switch r.IntN(12) {
	case 0, 1, 2:
		e["sync"] = ev{"id": "run_" + g.alnum(4), "started_at": g.pastTime().Format(time.RFC3339)}
	case 3:
		// A sync that started before every version: the oldest retained
		// version applies (webhook wh_main's version 1).
		e["sync"] = ev{"id": "run_old", "started_at": "2019-06-01T00:00:00Z"}
	case 4:
		// A timestamp long past: the same.
		e["timestamp"] = "1999-12-31T23:59:59.999Z"
	}
	if r.IntN(2) == 0 {
		e["traits"] = ev{"name": "Pat " + g.alnum(3), "first_name": "Pat", "last_name": "Doe", "plan": "gold"}
	}
	if r.IntN(5) == 0 {
		e["unknown_field"] = ev{"nested": []any{1, "two", nil, true}}
	}
	return e
}

// pastTime is a time in 2025: after every fixture version, months before
// the processor's clock.
func (g *Generator) pastTime() time.Time {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	return base.Add(time.Duration(g.r.Int64N(int64(300 * 24 * time.Hour)))).Truncate(time.Millisecond)
}

// ids returns external ids: n[type] values of each type, with created_at
// in 2024 (sometimes equal, to exercise ties).
func (g *Generator) ids(n map[string]int) []ev {
	out := []ev{} // never null: external_ids is required
	for _, typ := range slices.Sorted(mapsKeys(n)) {
		for range n[typ] {
			out = append(out, ev{"type": typ, "id": g.idValue(typ), "created_at": g.createdAt()})
		}
	}
	g.r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func mapsKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (g *Generator) createdAt() string {
	if g.r.IntN(5) == 0 {
		return "2024-01-01T00:00:00Z"
	}
	return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(g.r.Int64N(int64(360 * 24 * time.Hour)))).Format(time.RFC3339)
}

// idValue returns a value of an identifier type, sometimes one that cannot
// be normalized (counted, not sent).
func (g *Generator) idValue(typ string) string {
	r := g.r
	switch typ {
	case "email":
		switch r.IntN(10) {
		case 0:
			return "not-an-email-" + g.alnum(4)
		case 1:
			return " " + strings.ToUpper(g.alnum(6)) + "@Work.com "
		case 2:
			return g.alnum(3) + "." + g.alnum(4) + "@gmail.com"
		}
		return g.alnum(4+r.IntN(8)) + "@" + pick(r, "example.com", "x.io", "mail.net")
	case "phone":
		switch r.IntN(8) {
		case 0:
			return "call me " + g.alnum(3)
		case 1:
			return fmt.Sprintf("+44 20 7946 %04d", r.IntN(10000))
		}
		return fmt.Sprintf("+1 (650) 253-%04d", r.IntN(10000))
	case "ios.idfa", "android.idfa":
		b := make([]byte, 16)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		s := fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
		if r.IntN(2) == 0 {
			s = strings.ToLower(s)
		}
		return s
	case "user_id":
		return "u" + g.alnum(3+r.IntN(10))
	}
	return g.alnum(2 + r.IntN(12))
}

// idChars are the characters of random ids and padding: letters, digits,
// '-' and '_', none of which JSON escapes.
const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

// alnum returns n random id characters: incompressible text (6 bits of
// entropy per byte), eight characters per random number, written eight at
// a time (the race detector checks each write).
func (g *Generator) alnum(n int) string {
	b := make([]byte, (n+7)&^7)
	for i := 0; i < len(b); i += 8 {
		x := g.r.Uint64()
		var w uint64
		for k := range 8 {
			w |= uint64(idChars[x&63]) << (8 * k)
			x >>= 6
		}
		binary.LittleEndian.PutUint64(b[i:], w)
	}
	return string(b[:n])
}

// bigThreshold is the length from which big returns a placeholder.
const bigThreshold = 4 << 10

// big returns n random id characters like alnum; from bigThreshold on it
// returns a placeholder instead, which event replaces with the characters
// after marshalling (so that they are not scanned for escaping: they need
// none).
func (g *Generator) big(n int) string {
	if n < bigThreshold {
		return g.alnum(n)
	}
	ph := fmt.Sprintf("@@big%d@@", len(g.spliced))
	g.spliced = append(g.spliced, [2]string{ph, g.alnum(n)})
	return ph
}

// resolve returns the characters a placeholder of big stands for, or s.
func (g *Generator) resolve(s string) string {
	for _, sp := range g.spliced {
		if sp[0] == s {
			return sp[1]
		}
	}
	return s
}

// unicode returns n random runes: letters, emoji, quotes, backslashes,
// control characters, HTML characters.
func (g *Generator) unicode(n int) string {
	pool := []rune{'a', 'Z', '0', ' ', '"', '\\', '/', '<', '>', '&', '\'', '\n', '\t', 0x01, 0x7f, 'é', 'ß', '中', '文', '😀', '🏳', 0x200b, 0xfeff, 0x2028, 'ﷺ', ':'}
	rs := make([]rune, n)
	for i := range rs {
		rs[i] = pool[g.r.IntN(len(pool))]
	}
	return string(rs)
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

// event marshals e and keys it by "<space_id>:<segment_id>" when it has
// string ones, else by a random key.
func (g *Generator) event(e ev) Record {
	v, err := json.Marshal(e)
	if err != nil {
		panic(fmt.Sprintf("hostile: marshalling an event: %v", err))
	}
	for _, sp := range g.spliced {
		v = bytes.Replace(v, []byte(`"`+sp[0]+`"`), []byte(`"`+sp[1]+`"`), 1)
	}
	return Record{Key: eventKey(e, g), Value: v}
}

func eventKey(e ev, g *Generator) []byte {
	space, _ := e["space_id"].(string)
	var seg string
	if p, ok := e["profile"].(ev); ok {
		seg, _ = p["segment_id"].(string)
	}
	if space == "" || seg == "" {
		return g.garbageKey()
	}
	return []byte(space + ":" + g.resolve(seg))
}

func (g *Generator) garbageKey() []byte {
	if g.r.IntN(10) == 0 {
		return nil // no key at all
	}
	return []byte("garbage:" + g.alnum(10))
}

// padded returns a valid event padded with an unknown field to exactly n
// bytes (n larger than a small event).
func (g *Generator) padded(n int) Record {
	e := g.good(AudMulti, "entered")
	e["padding"] = "@@"
	rec := g.event(e)
	if pad := n - len(rec.Value) + 2; pad > 0 {
		rec.Value = bytes.Replace(rec.Value, []byte(`"@@"`), []byte(`"`+g.alnum(pad)+`"`), 1)
	}
	return rec
}

// deep nests arrays or objects in an unknown field, sometimes past
// encoding/json's depth limit of 10,000.
func (g *Generator) deep() Record {
	r := g.r
	e := g.good(pick(r, AudMulti, AudGoogle), "entered")
	depth := pick(r, 50+r.IntN(500), 1000+r.IntN(9000), 10001+r.IntN(8000))
	e["nested"] = "@@"
	rec := g.event(e)
	var open, close string
	if r.IntN(2) == 0 {
		open, close = "[", "]"
	} else {
		open, close = `{"a":`, "}"
	}
	inner := strings.Repeat(open, depth) + "1" + strings.Repeat(close, depth)
	rec.Value = bytes.Replace(rec.Value, []byte(`"@@"`), []byte(inner), 1)
	return rec
}

// malformed returns JSON with a syntax error, or JSON that is not an
// object.
func (g *Generator) malformed() Record {
	r := g.r
	good := g.event(g.good(AudMulti, "entered"))
	v := good.Value
	switch r.IntN(10) {
	case 0:
		v = append(slices.Clone(v), "x"...) // trailing garbage
	case 1:
		v = append(slices.Clone(v), v...) // two objects
	case 2:
		v = bytes.Replace(v, []byte(`"action":`), []byte(`"action":,`), 1)
	case 3:
		v = bytes.ReplaceAll(v, []byte(`"`), []byte(`'`))
	case 4:
		v = bytes.Replace(v, []byte(`}`), []byte(`,}`), 1)
	case 5:
		v = []byte(pick(r, "null", "[]", `"event"`, "42", "true", "[{}]"))
	case 6:
		v = []byte(pick(r, "", " ", "\n\t", "{", "}", "{]", `{"a":NaN}`, `{"a":1e999}`))
	case 7:
		v = bytes.Replace(v, []byte(`"timestamp":"`), []byte(`"timestamp":"\q`), 1) // bad escape
	case 8:
		v = append([]byte("\xef\xbb\xbf"), v...) // byte order mark
	default:
		v = bytes.Replace(v, []byte(`"space_id"`), []byte(`space_id`), 1) // unquoted key
	}
	good.Value = v
	return good
}

// wrongTypes are, per field, a JSON value of the wrong type for it.
var wrongTypes = []struct {
	field string
	value any
}{
	{"message_id", 123}, {"message_id", []any{"m"}}, {"timestamp", 1717000000}, {"timestamp", true},
	{"space_id", ev{"a": 1}}, {"audience_id", []any{"x"}}, {"audience_key", 7}, {"computation_class", 3},
	{"action", true}, {"action", nil}, {"profile", "use_1"}, {"profile", []any{}}, {"profile.segment_id", 42},
	{"external_ids", ev{"type": "email"}}, {"external_ids", "email"}, {"external_ids[]", "email"},
	{"external_ids[].type", 1}, {"external_ids[].id", ev{"x": 1}}, {"external_ids[].id", 12345},
	{"external_ids[].created_at", 17}, {"sync", "run"}, {"sync.started_at", 5}, {"sync.id", 5},
	{"traits", []any{1}}, {"traits.name", 5}, {"external_ids[].created_at", "yesterday"},
	{"computation_class", "segment"},
}

func (g *Generator) wrongType() Record {
	e := g.good(pick(g.r, AudMulti, AudFacebook), "entered")
	w := wrongTypes[g.r.IntN(len(wrongTypes))]
	setPath(e, w.field, w.value, true)
	rec := g.event(e)
	return rec
}

// requiredFields are the fields of DESIGN.md §2 an event must have.
var requiredFields = []string{"message_id", "timestamp", "space_id", "audience_id", "action", "profile",
	"profile.segment_id", "external_ids", "external_ids[].type", "external_ids[].id", "external_ids[].created_at"}

func (g *Generator) missing() Record {
	e := g.good(pick(g.r, AudMulti, AudGoogle), "entered")
	f := requiredFields[g.r.IntN(len(requiredFields))]
	if g.r.IntN(3) == 0 {
		setPath(e, f, "", false) // present but empty
	} else {
		setPath(e, f, nil, true) // absent
	}
	return g.event(e)
}

// setPath sets (or, with remove and a nil value, deletes) a field given
// as "a", "a.b" or "a[].b" (every element of array a; an element is added
// when a is empty).
func setPath(e ev, path string, value any, remove bool) {
	head, rest, _ := strings.Cut(path, ".")
	if arr, ok := strings.CutSuffix(head, "[]"); ok {
		ids, _ := e[arr].([]ev)
		if len(ids) == 0 {
			ids = []ev{{"type": "email", "id": "a@b.co", "created_at": "2024-01-01T00:00:00Z"}}
			e[arr] = ids
		}
		if rest == "" {
			list := make([]any, len(ids))
			for i := range ids {
				list[i] = ids[i]
			}
			list[len(list)-1] = value
			e[arr] = list
			return
		}
		for _, x := range ids {
			setPath(x, rest, value, remove)
		}
		return
	}
	if rest == "" {
		if remove && value == nil {
			delete(e, head)
		} else {
			e[head] = value
		}
		return
	}
	sub, ok := e[head].(ev)
	if !ok {
		sub = ev{}
		e[head] = sub
	}
	setPath(sub, rest, value, remove)
}

// invalidKeys are space or audience ids the store refuses
// (^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$).
func (g *Generator) invalidKey() Record {
	r := g.r
	bad := pick(r, "spa hostile", "spa/x", "a/../b", strings.Repeat("a", 129+r.IntN(200)), "späce", "aud:1", "aud{x}",
		"_lead", "-lead", ".dot", "aud\x00", "aud\n", "aud*", "ＡＢＣ", "😀", " ", "aud?x=1", strings.Repeat("é", 70))
	e := g.good(AudMulti, "entered")
	if r.IntN(2) == 0 {
		e["space_id"] = bad
	} else {
		e["audience_id"] = bad
	}
	return g.event(e)
}

// amplifyFacebook returns an event with many emails, phones and idfas for a
// Facebook configuration that sends all of each: the rows multiply, from
// a handful to tens of thousands.
func (g *Generator) amplifyFacebook(aud string) ev {
	r := g.r
	e := g.good(aud, pick(r, "entered", "entered", "entered", "exited"))
	var n [3]int
	switch r.IntN(3) {
	case 0: // small
		n = [3]int{1 + r.IntN(4), 1 + r.IntN(4), 1 + r.IntN(4)}
	case 1: // around the limits
		n = [3]int{5 + r.IntN(15), 5 + r.IntN(15), 5 + r.IntN(15)}
	default: // far over them
		n = [3]int{20 + r.IntN(30), 20 + r.IntN(30), 10 + r.IntN(20)}
	}
	e["external_ids"] = g.ids(map[string]int{"email": n[0], "phone": n[1], "ios.idfa": n[2], "user_id": 1})
	return e
}

// amplifyWebhook returns an event with many emails, user ids and phones
// for a webhook configuration that sends all of each, track and identify:
// 2 x emails x user ids x phones messages.
func (g *Generator) amplifyWebhook(aud string) ev {
	r := g.r
	e := g.good(aud, pick(r, "entered", "entered", "exited"))
	k := 1 + r.IntN(9)
	e["external_ids"] = g.ids(map[string]int{"email": 1 + r.IntN(k), "user_id": 1 + r.IntN(k), "phone": 1 + r.IntN(k)})
	return e
}

// hugeOutput returns an event whose records are large: a huge message_id
// (it appears twice in every record) or a huge segment_id (the key and the
// envelope), some over the record limit, some under it.
func (g *Generator) hugeOutput() Record {
	r := g.r
	e := g.good(pick(r, AudMulti, AudGoogle, AudFacebook, AudSmall), "entered")
	max := g.sz.MaxInput - 4<<10
	if r.IntN(3) == 0 {
		seg := g.big(max/4 + r.IntN(max/5))
		e["profile"] = ev{"segment_id": seg}
		e["message_id"] = g.big(max/6 + r.IntN(max/3))
	} else {
		e["message_id"] = g.big(max/3 + r.IntN(max*2/3))
	}
	return g.event(e)
}

// refused returns an event for AudSmall whose Facebook record is far over
// the small topic's max.message.bytes even compressed (many long random
// EXTERN_IDs), while its webhook record fits.
func (g *Generator) refused() Record {
	r := g.r
	e := g.good(AudSmall, "entered")
	var ids []ev
	if r.IntN(3) == 0 {
		// One huge user id.
		ids = append(ids, ev{"type": "user_id", "id": g.big(2*SmallTopicLimit + r.IntN(SmallTopicLimit)), "created_at": g.createdAt()})
	} else {
		n := 110 + r.IntN(70)
		for range n {
			ids = append(ids, ev{"type": "user_id", "id": g.alnum(550), "created_at": g.createdAt()})
		}
	}
	ids = append(ids, ev{"type": "email", "id": g.idValue("email"), "created_at": g.createdAt()})
	e["external_ids"] = ids
	return g.event(e)
}
