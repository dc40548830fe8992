package hostile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/store"
)

// generated memoizes Generate for the tests that share seeds.
var generated = struct {
	sync.Mutex
	m map[[2]uint64][]Record
}{m: map[[2]uint64][]Record{}}

func generate(seed uint64, n int) []Record {
	generated.Lock()
	defer generated.Unlock()
	k := [2]uint64{seed, uint64(n)}
	if generated.m[k] == nil {
		generated.m[k] = Generate(seed, n)
	}
	return generated.m[k]
}

// testOracle is the oracle with the property test's limits.
func testOracle(t testing.TB) *Oracle {
	t.Helper()
	tmpl, err := idsync.ParseTopicTemplate("t.dest.{destination_id}")
	if err != nil {
		t.Fatal(err)
	}
	fx := NewFixture()
	return &Oracle{Fixture: fx, Limits: Limits(), Options: Options(), Now: DefaultSizes().Now, Topics: tmpl,
		InputTopic: "t.input", RecordLimit: RecordLimit, TopicLimits: fx.SmallTopics()}
}

func TestGenerateIsDeterministic(t *testing.T) {
	a, b, c := Generate(7, 400), Generate(7, 400), Generate(8, 400)
	if len(a) != 400 {
		t.Fatalf("%d records, want 400", len(a))
	}
	same := func(x, y []Record) bool {
		return slices.EqualFunc(x, y, func(p, q Record) bool {
			return p.Class == q.Class && bytes.Equal(p.Key, q.Key) && bytes.Equal(p.Value, q.Value)
		})
	}
	if !same(a, b) {
		t.Error("seed 7 gave different records on two calls")
	}
	if same(a, c) {
		t.Error("seeds 7 and 8 gave the same records")
	}
}

func TestGenerateCoversEveryClass(t *testing.T) {
	for _, tc := range []struct {
		seed uint64
		n    int
	}{{1, 2000}, {2, 2000}, {3, 2000}, {99, len(Classes())}, {1 << 60, 400}} {
		t.Run(fmt.Sprintf("seed=%d/n=%d", tc.seed, tc.n), func(t *testing.T) {
			recs := generate(tc.seed, tc.n)
			count := map[Class]int{}
			seen := map[string]bool{}
			for i, r := range recs {
				count[r.Class]++
				if r.Class == Duplicate && !seen[string(r.Key)+"\x00"+string(r.Value)] {
					t.Errorf("record %d: a duplicate of nothing before it", i)
				}
				seen[string(r.Key)+"\x00"+string(r.Value)] = true
			}
			for _, c := range Classes() {
				if count[c] == 0 {
					t.Errorf("class %s missing", c)
				}
			}
			if len(count) != len(Classes()) {
				t.Errorf("%d classes, want %d", len(count), len(Classes()))
			}
		})
	}
}

// codes returns the dead-letter codes of x (destination ids after '@'),
// sorted.
func codes(x Expectation) []string {
	var cs []string
	for _, d := range x.DeadLetters {
		c := string(d.Code)
		if d.DestinationID != "" {
			c += "@" + d.DestinationID
		}
		if d.Optional {
			c += "?"
		}
		cs = append(cs, c)
	}
	slices.Sort(cs)
	return cs
}

// onlyCodes reports whether every dead letter of x has one of the codes.
func onlyCodes(x Expectation, allowed ...idsync.Code) bool {
	for _, d := range x.DeadLetters {
		if !slices.Contains(allowed, d.Code) {
			return false
		}
	}
	return true
}

// TestClassVerdicts checks that each class gives the verdicts it is meant
// to give (so the generator makes what it says, and Decode and Process
// judge it as the contract does), and that over three seeds every class
// reaches its intended verdict.
func TestClassVerdicts(t *testing.T) {
	o := testOracle(t)
	type rule struct {
		// ok says whether one verdict is acceptable for the class.
		ok func(Expectation) bool
		// want are outcomes that must be seen at least once over the seeds.
		want []string
	}
	decodeCode := func(cs ...idsync.Code) func(Expectation) bool {
		return func(x Expectation) bool {
			return len(x.DeadLetters) == 1 && slices.Contains(cs, x.DeadLetters[0].Code) && x.DeadLetters[0].DestinationID == "" &&
				len(x.Outputs)+len(x.Optional) == 0
		}
	}
	served := func(x Expectation) bool { return len(x.DeadLetters) == 0 }
	rules := map[Class]rule{
		GoodFacebook:   {served, []string{"delivered"}},
		GoodGoogle:     {served, []string{"delivered", "skipped"}},
		GoodMulti:      {served, []string{"delivered"}},
		GoodSmallTopic: {func(x Expectation) bool { return served(x) && len(x.Outputs) >= 2 }, []string{"delivered"}},
		Exited: {func(x Expectation) bool { return onlyCodes(x, idsync.CodeInvalidConfig, idsync.CodeFanoutLimit) },
			[]string{"delivered", "partly:invalid_config"}},
		NoConnections: {func(x Expectation) bool { return x.Outcome == "skipped" }, []string{"skipped"}},
		Deleted:       {func(x Expectation) bool { return x.Outcome == "skipped" }, []string{"skipped"}},
		RandomIDs:     {served, []string{"delivered", "skipped"}},
		Duplicate:     {func(Expectation) bool { return true }, nil},
		HugeString:    {served, []string{"delivered"}},
		DeepNesting: {func(x Expectation) bool { return served(x) || decodeCode(idsync.CodeMalformedJSON)(x) },
			[]string{"delivered", "dead_lettered:malformed_json"}},
		UnusableMixed: {func(x Expectation) bool {
			return slices.Equal(codes(x), []string{"invalid_config@ZZ bad/dest", "invalid_config@zz_corrupt", "invalid_config@zz_rules", "invalid_config@zz_unknown"})
		}, []string{"partly:invalid_config"}},
		UnknownType:   {func(x Expectation) bool { return slices.Equal(codes(x), []string{"invalid_config@zz_unknown"}) }, nil},
		Undecodable:   {func(x Expectation) bool { return slices.Equal(codes(x), []string{"invalid_config@zz_corrupt"}) }, nil},
		WrongType:     {decodeCode(idsync.CodeInvalidConfig), nil},
		RandomBytes:   {decodeCode(idsync.CodeMalformedJSON, idsync.CodeSchemaViolation), []string{"dead_lettered:malformed_json"}},
		InvalidUTF8:   {decodeCode(idsync.CodeMalformedJSON), nil},
		TruncatedJSON: {decodeCode(idsync.CodeMalformedJSON), nil},
		MalformedJSON: {decodeCode(idsync.CodeMalformedJSON, idsync.CodeSchemaViolation),
			[]string{"dead_lettered:malformed_json", "dead_lettered:schema_violation"}},
		WrongFieldType: {func(x Expectation) bool {
			return served(x) || decodeCode(idsync.CodeSchemaViolation, idsync.CodeInvalidTimestamp)(x)
		}, []string{"dead_lettered:schema_violation", "dead_lettered:invalid_timestamp"}},
		MissingField:  {decodeCode(idsync.CodeSchemaViolation), nil},
		UnknownAction: {decodeCode(idsync.CodeSchemaViolation), nil},
		TooManyIDs:    {decodeCode(idsync.CodeSchemaViolation), nil},
		TooLarge: {func(x Expectation) bool {
			return decodeCode(idsync.CodeTooLarge)(x) && x.DeadLetters[0].Truncate == TruncNever
		}, nil},
		TooLargeHuge: {func(x Expectation) bool {
			return decodeCode(idsync.CodeTooLarge)(x) && x.DeadLetters[0].Truncate == TruncMust
		}, nil},
		FutureTimestamp: {decodeCode(idsync.CodeInvalidTimestamp), nil},
		InvalidKey:      {decodeCode(idsync.CodeInvalidKey), nil},
		AmplifyFacebook: {func(x Expectation) bool { return onlyCodes(x, idsync.CodeFanoutLimit) },
			[]string{"delivered", "dead_lettered:fanout_limit"}},
		AmplifyWebhook: {func(x Expectation) bool { return onlyCodes(x, idsync.CodeFanoutLimit) },
			[]string{"delivered", "dead_lettered:fanout_limit"}},
		AmplifyPair: {func(x Expectation) bool { return onlyCodes(x, idsync.CodeFanoutLimit) },
			[]string{"partly:fanout_limit"}},
		HugeOutput: {func(x Expectation) bool {
			return onlyCodes(x, idsync.CodeOutputTooLarge, idsync.CodeFanoutLimit, idsync.CodeDestinationRefused)
		}, []string{"dead_lettered:output_too_large"}},
		Refused: {func(x Expectation) bool {
			return slices.Equal(codes(x), []string{"destination_refused@fb_small"}) && len(x.Outputs) == 1 && x.Outputs[0].DestinationID == DestSide
		}, []string{"partly:destination_refused"}},
	}
	seen := map[Class]map[string]bool{}
	for seed := uint64(1); seed <= 3; seed++ {
		for i, r := range generate(seed, 2000) {
			in := Input{Class: r.Class, Key: r.Key, Value: r.Value}
			x := o.Expect(&in)
			if seen[r.Class] == nil {
				seen[r.Class] = map[string]bool{}
			}
			seen[r.Class][x.Outcome] = true
			where := fmt.Sprintf("seed %d record %d (%s)", seed, i, r.Class)
			rl, ok := rules[r.Class]
			if !ok {
				t.Fatalf("%s: no rule for the class", where)
			}
			if !rl.ok(x) {
				t.Errorf("%s: verdict %s %v not what the class is for; value %.200q", where, x.Outcome, codes(x), r.Value)
			}
			for _, p := range x.Problems {
				t.Errorf("%s: %s", where, p)
			}
			// The generator stays out of the oracle's bands of doubt.
			for _, d := range x.DeadLetters {
				if d.Optional || d.Truncate == TruncMay {
					t.Errorf("%s: an ambiguous verdict (%s optional %v truncation %d)", where, d.Code, d.Optional, d.Truncate)
				}
			}
		}
	}
	for c, rl := range rules {
		for _, w := range rl.want {
			if !seen[c][w] {
				t.Errorf("class %s: verdict %s never seen in seeds 1-3 (seen %v)", c, w, seen[c])
			}
		}
	}
}

// event builds an event of the fixture's space.
func event(aud, action string, ids ...[3]string) []byte {
	list := []map[string]string{}
	for _, id := range ids {
		list = append(list, map[string]string{"type": id[0], "id": id[1], "created_at": id[2]})
	}
	b, _ := json.Marshal(map[string]any{"message_id": "m1", "timestamp": "2025-03-01T00:00:00Z", "space_id": Space,
		"audience_id": aud, "action": action, "profile": map[string]string{"segment_id": "use_1"}, "external_ids": list})
	return b
}

// many returns n external ids of type typ with values made by val.
func many(typ string, n int, val func(int) string) [][3]string {
	out := make([][3]string, n)
	for i := range out {
		out[i] = [3]string{typ, val(i), "2024-01-01T00:00:00Z"}
	}
	return out
}

func TestOracleVerdicts(t *testing.T) {
	o := testOracle(t)
	long := func(n int) func(int) string {
		return func(i int) string { return fmt.Sprintf("%06d", i) + NewGenerator(uint64(i), DefaultSizes()).alnum(n) }
	}
	email := [3]string{"email", "pat@example.com", "2024-01-01T00:00:00Z"}
	user := [3]string{"user_id", "u12345678", "2024-01-01T00:00:00Z"}
	tests := []struct {
		name    string
		value   []byte
		outcome string
		codes   []string
		// outputs per destination id (required ones)
		outputs map[string]int
		trunc   Truncation
	}{
		{"empty object", []byte(`{}`), "dead_lettered:schema_violation", []string{"schema_violation"}, nil, TruncNever},
		{"invalid utf-8", []byte("\xff"), "dead_lettered:malformed_json", []string{"malformed_json"}, nil, TruncNever},
		{"not an object", []byte(`[1]`), "dead_lettered:schema_violation", []string{"schema_violation"}, nil, TruncNever},
		{"no connections", event(AudNone, "entered", email), "skipped", nil, nil, TruncNever},
		{"unknown audience", event("aud_nobody", "exited", email), "skipped", nil, nil, TruncNever},
		{"deleted connection", event(AudDeleted, "entered", email, user), "skipped", nil, nil, TruncNever},
		{"good multi", event(AudMulti, "entered", email, user), "delivered", nil,
			map[string]int{DestIterable: 1, DestWebhook: 1, DestZendesk: 2}, TruncNever},
		{"invalid space", bytes.Replace(event(AudMulti, "entered", email), []byte(Space), []byte("spa/x"), 1),
			"dead_lettered:invalid_key", []string{"invalid_key"}, nil, TruncNever},
		{"long audience", event(strings.Repeat("a", 129), "entered", email), "dead_lettered:invalid_key", []string{"invalid_key"}, nil, TruncNever},
		{"wrongtype key", event(AudWrongType, "entered", email), "dead_lettered:invalid_config", []string{"invalid_config"}, nil, TruncNever},
		{"mixed", event(AudMixed, "entered", email, user), "partly:invalid_config",
			[]string{"invalid_config@ZZ bad/dest", "invalid_config@zz_corrupt", "invalid_config@zz_rules", "invalid_config@zz_unknown"},
			map[string]int{DestMixed: 1}, TruncNever},
		{"unknown type only", event(AudUnknownType, "entered", email), "dead_lettered:invalid_config", []string{"invalid_config@zz_unknown"}, nil, TruncNever},
		{"small topic fits", event(AudSmall, "entered", email, user), "delivered", nil, map[string]int{DestSmall: 1, DestSide: 1}, TruncNever},
		{"small topic refuses", event(AudSmall, "entered", many("user_id", 120, long(550))...), "partly:destination_refused",
			[]string{"destination_refused@fb_small"}, map[string]int{DestSide: 1}, TruncNever},
		{"facebook rows over the bound", event(AudFacebookAmp, "entered", slices.Concat(
			many("email", 30, func(i int) string { return fmt.Sprintf("e%d@x.co", i) }),
			many("phone", 30, func(i int) string { return fmt.Sprintf("+1 650 253 %04d", i) }),
			many("ios.idfa", 10, func(i int) string { return fmt.Sprintf("AECE52E7-03EE-455A-B3C4-%012d", i) }))...),
			"dead_lettered:fanout_limit", []string{"fanout_limit@fb_amp"}, nil, TruncNever},
		{"facebook rows under the bound", event(AudFacebookAmp, "entered", slices.Concat(
			many("email", 3, func(i int) string { return fmt.Sprintf("e%d@x.co", i) }),
			many("phone", 3, func(i int) string { return fmt.Sprintf("+1 650 253 %04d", i) }))...),
			"delivered", nil, map[string]int{DestFacebookAmp: 1}, TruncNever},
		{"webhook combinations over the bound", event(AudWebhookAmp, "entered", slices.Concat(
			many("email", 5, func(i int) string { return fmt.Sprintf("e%d@x.co", i) }),
			many("user_id", 5, func(i int) string { return fmt.Sprintf("u%d", i) }),
			many("phone", 5, func(i int) string { return fmt.Sprintf("+1 650 253 %04d", i) }))...),
			"dead_lettered:fanout_limit", []string{"fanout_limit@wh_amp"}, nil, TruncNever},
		{"output over the record limit", bytes.Replace(event(AudGoogle, "entered", email), []byte(`"m1"`),
			[]byte(`"`+strings.Repeat("m", 100<<10)+`"`), 1), "dead_lettered:output_too_large", []string{"output_too_large@gg_main"}, nil, TruncNever},
		{"too large, fits the DLQ", bytes.Replace(event(AudGoogle, "entered", email), []byte(`"m1"`),
			[]byte(`"`+strings.Repeat("m", 140<<10)+`"`), 1), "dead_lettered:too_large", []string{"too_large"}, nil, TruncNever},
		{"too large for the DLQ", bytes.Replace(event(AudGoogle, "entered", email), []byte(`"m1"`),
			[]byte(`"`+strings.Repeat("m", 300<<10)+`"`), 1), "dead_lettered:too_large", []string{"too_large"}, nil, TruncMust},
		{"future", bytes.Replace(event(AudMulti, "entered"), []byte("2025-03-01"), []byte("2026-06-03"), 1),
			"dead_lettered:invalid_timestamp", []string{"invalid_timestamp"}, nil, TruncNever},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := o.Expect(&Input{Key: []byte("k"), Value: tt.value})
			if x.Outcome != tt.outcome {
				t.Errorf("outcome %s, want %s", x.Outcome, tt.outcome)
			}
			if got := codes(x); !slices.Equal(got, tt.codes) {
				t.Errorf("dead letters %v, want %v", got, tt.codes)
			}
			got := map[string]int{}
			for _, out := range x.Outputs {
				got[out.DestinationID]++
				if out.Topic != "t.dest."+out.DestinationID {
					t.Errorf("output topic %s for %s", out.Topic, out.DestinationID)
				}
			}
			if len(got) != len(tt.outputs) {
				t.Errorf("outputs %v, want %v", got, tt.outputs)
			}
			for d, n := range tt.outputs {
				if got[d] != n {
					t.Errorf("outputs %v, want %v", got, tt.outputs)
				}
			}
			for _, d := range x.DeadLetters {
				if d.Truncate != tt.trunc {
					t.Errorf("truncation %d, want %d", d.Truncate, tt.trunc)
				}
			}
			if len(x.Problems) > 0 {
				t.Errorf("problems: %v", x.Problems)
			}
		})
	}
}

// TestFixtureMatchesStore installs the fixture in miniredis and reads it
// back through store.Store: the valid connections must be exactly the
// oracle's, the hostile ones marked unusable, the WRONGTYPE audience an
// ErrUnusableConfig, an invalid audience an ErrInvalidKey.
func TestFixtureMatchesStore(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	fx := NewFixture()
	if err := fx.Install(ctx, rdb, "p:"); err != nil {
		t.Fatal(err)
	}
	if err := fx.Install(ctx, rdb, "p:"); err != nil { // idempotent
		t.Fatal(err)
	}
	st, err := store.New(rdb, store.Options{Prefix: "p:", Now: func() time.Time { return StoreNow }})
	if err != nil {
		t.Fatal(err)
	}
	canon := func(c idsync.Connection) string {
		var b strings.Builder
		b.WriteString(c.DestinationID)
		for _, v := range c.Versions {
			cfg, _ := json.Marshal(v.Config)
			fmt.Fprintf(&b, "|%d %s %v %s", v.Version, v.EffectiveAt.UTC().Format(time.RFC3339), v.Deleted, cfg)
		}
		return b.String()
	}
	for _, aud := range fx.Audiences() {
		want := fx.Lookup(Space, aud)
		conns, err := st.List(ctx, Space, aud)
		if want.Unusable {
			if !errors.Is(err, idsync.ErrUnusableConfig) {
				t.Errorf("%s: List error %v, want one wrapping ErrUnusableConfig", aud, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", aud, err)
			continue
		}
		var usable, invalid []string
		for _, c := range conns {
			bad := c.Invalid != ""
			for _, v := range c.Versions {
				bad = bad || v.Invalid != ""
			}
			if bad {
				invalid = append(invalid, c.DestinationID)
			} else if len(c.Versions) > 0 {
				usable = append(usable, canon(c))
			}
		}
		var wantUsable []string
		for _, c := range want.Usable {
			if v := idsync.VersionAt(c.Versions, StoreNow); v != nil && v.Deleted && len(c.Versions) > 0 {
				// A deleted connection may be hidden by the store once
				// its tombstone is past retention; Process skips it
				// either way.
				if !slices.ContainsFunc(conns, func(x idsync.Connection) bool { return x.DestinationID == c.DestinationID }) {
					continue
				}
			}
			wantUsable = append(wantUsable, canon(c))
		}
		if !slices.Equal(usable, wantUsable) {
			t.Errorf("%s: the store gives\n  %v\nthe oracle uses\n  %v", aud, usable, wantUsable)
		}
		if !slices.Equal(invalid, want.Invalid) {
			t.Errorf("%s: unusable %v, the oracle says %v", aud, invalid, want.Invalid)
		}
	}
	if _, err := st.List(ctx, "spa hostile", "aud"); !errors.Is(err, idsync.ErrInvalidKey) {
		t.Errorf("invalid space: %v, want ErrInvalidKey", err)
	}
	if lk := fx.Lookup("spa hostile", AudMulti); !lk.InvalidKey {
		t.Error("Lookup of an invalid space: not InvalidKey")
	}
}

// setHeader sets the value of g's last header named key.
func setHeader(g *Got, key, value string) {
	for i := len(g.Headers) - 1; i >= 0; i-- {
		if g.Headers[i].Key == key {
			g.Headers[i].Value = value
			return
		}
	}
}

// perfect returns what a flawless run writes for the inputs: every required
// output once, every required dead letter once (truncated when it must
// be).
func perfect(o *Oracle, inputs []Input, exps []Expectation) []Got {
	var got []Got
	for i, in := range inputs {
		for _, out := range exps[i].Outputs {
			got = append(got, Got{Topic: out.Topic, Key: []byte(out.Key), Value: []byte(out.Value), Headers: append([]Header{
				{idsync.HeaderSource, fmt.Sprintf("%s/%d/%d", o.InputTopic, in.Partition, in.Offset)},
				{idsync.HeaderConfigVersion, out.ConfigVersion}}, in.Trace()...)})
		}
		for _, d := range exps[i].DeadLetters {
			if d.Optional {
				continue
			}
			kept := in.Headers
			if d.Headers == TruncMust {
				kept = in.Trace()
			}
			g := Got{Topic: "t.dlq", Key: in.Key, Value: in.Value, Headers: slices.Concat(kept, []Header{
				{HeaderOriginalHeaders, strconv.Itoa(len(kept))},
				{idsync.HeaderErrorCode, string(d.Code)}, {idsync.HeaderError, "field: reason"},
				{idsync.HeaderSourceTopic, o.InputTopic}, {idsync.HeaderSourcePartition, strconv.Itoa(int(in.Partition))},
				{idsync.HeaderSourceOffset, strconv.FormatInt(in.Offset, 10)}})}
			if d.Headers == TruncMust {
				g.Headers = append(g.Headers, Header{HeaderOriginalHeadersSize, strconv.Itoa(headerBytes(in.Headers))})
			}
			if d.DestinationID != "" {
				g.Headers = append(g.Headers, Header{idsync.HeaderDestinationID, d.DestinationID})
			}
			if d.Truncate == TruncMust {
				g.Value = in.Value[:1000]
				g.Headers = append(g.Headers, Header{HeaderOriginalSize, strconv.Itoa(len(in.Value))})
			}
			got = append(got, g)
		}
	}
	// Each topic's records at increasing offsets of partition 0.
	next := map[string]int64{}
	for i := range got {
		got[i].Offset = next[got[i].Topic]
		next[got[i].Topic]++
	}
	return got
}

func TestCheck(t *testing.T) {
	o := testOracle(t)
	var inputs []Input
	for i, r := range Generate(5, 300) {
		// One input partition, as if every key hashed to it, so that
		// duplicates keep their order.
		inputs = append(inputs, Input{Class: r.Class, Partition: 0, Offset: int64(i), Key: r.Key, Value: r.Value, Headers: r.Headers})
	}
	exps := make([]Expectation, len(inputs))
	for i := range inputs {
		exps[i] = o.Expect(&inputs[i])
	}
	good := perfect(o, inputs, exps)
	find := func(pred func(*Got) bool) int {
		for i := range good {
			if pred(&good[i]) {
				return i
			}
		}
		t.Fatal("no such record in the perfect run")
		return -1
	}
	isDLQ := func(code idsync.Code) func(*Got) bool {
		return func(g *Got) bool {
			v, _ := g.header(idsync.HeaderErrorCode)
			return g.Topic == "t.dlq" && v == string(code)
		}
	}
	output := func(g *Got) bool { return g.Topic != "t.dlq" }
	tests := []struct {
		name        string
		mutate      func([]Got) []Got
		exactlyOnce bool
		want        string // in the first problem; "" for none
	}{
		{"perfect exactly_once", nil, true, ""},
		{"perfect at_least_once", nil, false, ""},
		{"duplicates at_least_once", func(g []Got) []Got { return append(g, g...) }, false, ""},
		{"duplicates exactly_once", func(g []Got) []Got { return append(g, g[find(output)]) }, true, "times in exactly_once"},
		{"missing output", func(g []Got) []Got { return slices.Delete(g, find(output), find(output)+1) }, false, "missing"},
		{"missing dead letter", func(g []Got) []Got {
			i := find(isDLQ(idsync.CodeInvalidKey))
			return slices.Delete(g, i, i+1)
		}, false, "no dead letter with code invalid_key"},
		{"wrong code", func(g []Got) []Got {
			setHeader(&g[find(isDLQ(idsync.CodeInvalidKey))], idsync.HeaderErrorCode, string(idsync.CodeSchemaViolation))
			return g
		}, false, "unexpected dead letter"},
		{"truncated though it fits", func(g []Got) []Got {
			d := &g[find(isDLQ(idsync.CodeMalformedJSON))]
			d.Value = d.Value[:len(d.Value)/2]
			d.Headers = append(d.Headers, Header{HeaderOriginalSize, strconv.Itoa(2 * len(d.Value))})
			return g
		}, false, "truncated"},
		{"not truncated though too large", func(g []Got) []Got {
			i := find(func(g *Got) bool { _, ok := g.header(HeaderOriginalSize); return ok })
			g[i].Headers = g[i].Headers[:len(g[i].Headers)-1]
			return g
		}, false, "not truncated"},
		{"value changed", func(g []Got) []Got {
			d := &g[find(isDLQ(idsync.CodeSchemaViolation))]
			d.Value = append(slices.Clone(d.Value), ' ')
			return g
		}, false, "is not the input"},
		{"input headers dropped though they fit", func(g []Got) []Got {
			d := &g[find(func(g *Got) bool { n, _ := g.header(HeaderOriginalHeaders); return g.Topic == "t.dlq" && n == "4" })]
			d.Headers = append(d.Headers[4:], Header{HeaderOriginalHeadersSize, "1"})
			setHeader(d, HeaderOriginalHeaders, "0")
			return g
		}, false, "though they fit"},
		{"input headers changed", func(g []Got) []Got {
			d := &g[find(func(g *Got) bool { n, _ := g.header(HeaderOriginalHeaders); return g.Topic == "t.dlq" && n == "4" })]
			d.Headers[0].Value += "x"
			return g
		}, false, "that are not the input's"},
		{"too many input headers kept", func(g []Got) []Got {
			d := &g[find(func(g *Got) bool { _, ok := g.header(HeaderOriginalHeadersSize); return g.Topic == "t.dlq" && ok })]
			d.Headers = d.Headers[:len(d.Headers)-1]
			return g
		}, false, "above the"},
		{"trace context not carried", func(g []Got) []Got {
			o := &g[find(func(g *Got) bool { return g.Topic != "t.dlq" && len(g.Headers) > 2 })]
			o.Headers = o.Headers[:2]
			return g
		}, false, "trace context"},
		{"unknown source", func(g []Got) []Got {
			return append(g, Got{Topic: "t.dest.wh_main", Headers: []Header{{idsync.HeaderSource, "t.input/9/999999"}}})
		}, false, "names no input record"},
		{"out of order", func(g []Got) []Got {
			// Two records of one key and topic from different inputs,
			// swapped in the topic.
			for i := range g {
				for j := i + 1; j < len(g); j++ {
					a, b := &g[i], &g[j]
					sa, _ := a.header(idsync.HeaderSource)
					sb, _ := b.header(idsync.HeaderSource)
					if a.Topic != "t.dlq" && a.Topic == b.Topic && string(a.Key) == string(b.Key) && sa != sb {
						a.Offset, b.Offset = b.Offset, a.Offset
						return g
					}
				}
			}
			t.Fatal("no two records of one key")
			return nil
		}, true, "order broken"},
		{"unexpected output", func(g []Got) []Got {
			x := g[find(output)]
			x.Value = append(slices.Clone(x.Value), ' ')
			return append(g, x)
		}, false, "unexpected record"},
		{"identifier in the error", func(g []Got) []Got {
			for i := range inputs {
				if len(exps[i].Secrets) > 0 && len(exps[i].DeadLetters) > 0 && !exps[i].DeadLetters[0].Optional {
					in := &inputs[i]
					d := &g[find(func(g *Got) bool {
						p, _ := g.header(idsync.HeaderSourcePartition)
						off, _ := g.header(idsync.HeaderSourceOffset)
						return g.Topic == "t.dlq" && p == strconv.Itoa(int(in.Partition)) && off == strconv.FormatInt(in.Offset, 10)
					})]
					setHeader(d, idsync.HeaderError, "bad value "+exps[i].Secrets[0])
					return g
				}
			}
			t.Fatal("no input with a secret")
			return nil
		}, false, "identifier value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := slices.Clone(good)
			for i := range got {
				got[i].Headers = slices.Clone(got[i].Headers)
			}
			if tt.mutate != nil {
				got = tt.mutate(got)
			}
			rep := Check(o, inputs, exps, got, "t.dlq", tt.exactlyOnce)
			switch {
			case tt.want == "" && !rep.OK():
				t.Errorf("problems: %v", rep.Problems)
			case tt.want != "" && rep.OK():
				t.Errorf("no problem found, want one saying %q", tt.want)
			case tt.want != "" && !strings.Contains(strings.Join(rep.Problems, "\n"), tt.want):
				t.Errorf("problems %v, want one saying %q", rep.Problems, tt.want)
			}
		})
	}
	rep := Check(o, inputs, exps, good, "t.dlq", true)
	if s := rep.Summary(); !strings.Contains(s, "invalid_key") {
		t.Errorf("summary lacks the codes:\n%s", s)
	}
}

// TestOracleVersionByReferenceTime: an event whose sync started before
// every version gets the oldest retained one (wh_main's version 1, the
// default setup), a recent one the newest (version 2).
func TestOracleVersionByReferenceTime(t *testing.T) {
	o := testOracle(t)
	user := [3]string{"user_id", "u1", "2024-01-01T00:00:00Z"}
	recent := event(AudMulti, "entered", user)
	old := bytes.Replace(recent, []byte(`"space_id"`), []byte(`"sync":{"id":"r","started_at":"2019-06-01T00:00:00Z"},"space_id"`), 1)
	for _, tc := range []struct {
		name    string
		value   []byte
		version string
	}{{"recent", recent, "2"}, {"old sync", old, "1"}} {
		x := o.Expect(&Input{Value: tc.value})
		found := false
		for _, out := range x.Outputs {
			if out.DestinationID == DestWebhook {
				found = true
				if out.ConfigVersion != tc.version {
					t.Errorf("%s: %s version %s, want %s", tc.name, DestWebhook, out.ConfigVersion, tc.version)
				}
			}
		}
		if !found {
			t.Errorf("%s: no output for %s (%s %v)", tc.name, DestWebhook, x.Outcome, codes(x))
		}
	}
}
