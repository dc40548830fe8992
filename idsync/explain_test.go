package idsync

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestExplainAgreesWithSelection holds Explain to the selection Process
// uses: on generated events and configurations, the values Explain marks
// picked, gathered by destination key as the selection gathers them, are
// exactly what selectIdentifiers selects, and its invalid candidates are
// exactly the ones it counts.
func TestExplainAgreesWithSelection(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	types := []string{"email", "phone", "user_id", "ios.idfa", "android.idfa", "shopify_id", "anonymous_id"}
	values := []string{"a@x.com", "A@x.com ", "b@x.com", "", " ", "+1 415 555 0100", "4155550100", "not a phone",
		"IDFA-1", "idfa-1", "u1", "u2", "s1", "@", "x@googlemail.com", "x.y@gmail.com"}
	sharedKeys := 0
	for i := range 5000 {
		buf := make(fuzzReader, 64)
		for j := range buf {
			buf[j] = byte(r.IntN(256))
		}
		cfg := fuzzConfig(&buf)
		if cfg == nil {
			continue
		}
		ev := &Event{Action: ActionEntered}
		if r.IntN(3) == 0 {
			ev.Action = ActionExited
		}
		for range r.IntN(8) {
			ev.ExternalIDs = append(ev.ExternalIDs, ExternalID{
				Type:      types[r.IntN(len(types))],
				ID:        values[r.IntN(len(values))],
				CreatedAt: t0.Add(time.Duration(r.IntN(4)) * time.Hour),
			})
		}
		if i%2 == 0 && len(cfg.Identifiers) > 1 {
			// Two mappings under one key: a value both pick is sent once.
			cfg.Identifiers[1].Destination = cfg.Identifiers[0].Destination
			sharedKeys++
		}
		var sel selection
		invalid := selectIdentifiers(ev, cfg, "US", &sel)

		ex := Explain(ev, cfg, "US", unbounded)
		// Gathered by key without the selection's dedupe: a value Explain
		// calls picked twice would show as sent twice.
		var got selection
		gotInvalid := 0
		for _, m := range ex.Mappings {
			for _, c := range m.Candidates {
				switch c.Outcome {
				case CandidatePicked:
					appendPick(&got, m.Destination, c.Normalized)
				case CandidateInvalid:
					gotInvalid++
				}
			}
			if (m.Status == MappingUsed) != hasPicked(m) {
				t.Fatalf("case %d: mapping %+v has status %s", i, m.Mapping, m.Status)
			}
		}
		if gotInvalid != invalid {
			t.Fatalf("case %d: Explain counts %d invalid, the selection %d (config %+v, event %+v)", i, gotInvalid, invalid, cfg, ev)
		}
		if !reflect.DeepEqual(got.keys, sel.keys) || !equalValues(got.values, sel.values) {
			t.Fatalf("case %d: Explain picks %v %v, the selection %v %v (config %+v, event %+v)", i, got.keys, got.values, sel.keys, sel.values, cfg, ev)
		}
	}
	if sharedKeys < 1000 {
		t.Fatalf("only %d cases with two mappings under one key", sharedKeys)
	}
}

var unbounded = ExplainBounds{Candidates: 1 << 30, Bytes: 1 << 30}

// appendPick adds v under key k as the selection does, but keeps repeats.
func appendPick(s *selection, k, v string) {
	for i, key := range s.keys {
		if key == k {
			s.values[i] = append(s.values[i], v)
			return
		}
	}
	s.keys = append(s.keys, k)
	s.values = append(s.values, []string{v})
}

func hasPicked(m MappingExplanation) bool {
	for _, c := range m.Candidates {
		if c.Outcome == CandidatePicked {
			return true
		}
	}
	return false
}

func equalValues(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestExplain checks the reasons a person reads in the console's preview.
func TestExplain(t *testing.T) {
	ev := &Event{Action: ActionEntered, ExternalIDs: []ExternalID{
		ext("email", "late@x.com", 3*time.Hour),
		ext("email", "early@x.com", time.Hour),
		ext("email", "EARLY@x.com", 4*time.Hour),
		ext("phone", "not a phone", 0),
		ext("ios.idfa", "IDFA-1", 0),
		ext("shopify_id", "s1", 0),
	}}
	cfg := &Config{DestinationType: FacebookCustomAudiences, Setup: SetupCustomized, Settings: DefaultSettings(), Identifiers: []Mapping{
		{Segment: "email", Destination: "EMAIL", Strategy: LastAdded},
		{Segment: "phone", Destination: "PHONE", Strategy: All},
		{Segment: "ios.idfa", Destination: "MADID", Strategy: All},
	}}
	ex := Explain(ev, cfg, "US", unbounded)
	type cand struct {
		index   int
		outcome string
	}
	want := []struct {
		status string
		cands  []cand
	}{
		{MappingUsed, []cand{{1, CandidateNotPicked}, {0, CandidatePicked}, {2, CandidateDuplicate}}},
		{MappingNoIdentifiers, []cand{{3, CandidateInvalid}}},
		{MappingMobileIDsOff, nil},
	}
	if len(ex.Mappings) != len(want) {
		t.Fatalf("%d mappings, want %d", len(ex.Mappings), len(want))
	}
	for i, w := range want {
		m := ex.Mappings[i]
		if m.Status != w.status {
			t.Errorf("mapping %d: status %s, want %s", i, m.Status, w.status)
		}
		var got []cand
		for _, c := range m.Candidates {
			got = append(got, cand{c.Index, c.Outcome})
		}
		if !reflect.DeepEqual(got, w.cands) {
			t.Errorf("mapping %d: candidates %v, want %v", i, got, w.cands)
		}
	}
	if r := ex.Mappings[1].Candidates[0].Reason; r == "" {
		t.Error("an invalid phone has no reason")
	}
	if ex.Mappings[0].Candidates[1].Normalized != sha("late@x.com") {
		t.Errorf("picked email normalized to %q", ex.Mappings[0].Candidates[1].Normalized)
	}

	ev.Action = ActionExited
	if s := Explain(ev, cfg, "US", unbounded).Mappings[0]; s.AppliedStrategy != All || s.Candidates[0].Outcome != CandidatePicked {
		t.Errorf("an exit applies %s and leaves %s", s.AppliedStrategy, s.Candidates[0].Outcome)
	}
	cfg.Setup = SetupDefault
	cfg.Identifiers = nil
	ev.ExternalIDs = append(ev.ExternalIDs, ext("email", "x", 0))
	if got := Explain(ev, cfg, "US", unbounded).Mappings; len(got) != len(facebookDefaultPlan) {
		t.Errorf("default setup explains %d mappings, want the default plan's %d", len(got), len(facebookDefaultPlan))
	}
}

// TestExplainBounds: a hostile event cannot make an explanation larger than
// its bounds; what is left out is counted.
func TestExplainBounds(t *testing.T) {
	ev := &Event{Action: ActionEntered}
	for i := range 500 {
		ev.ExternalIDs = append(ev.ExternalIDs, ext("user_id", fmt.Sprintf("u%04d", i), time.Duration(i)))
	}
	var ms []Mapping
	for range 3 {
		ms = append(ms, Mapping{Segment: "user_id", Destination: "EXTERN_ID", Strategy: LastAdded})
	}
	cfg := &Config{DestinationType: FacebookCustomAudiences, Setup: SetupCustomized, Settings: DefaultSettings(), Identifiers: ms}
	for _, b := range []ExplainBounds{{Candidates: 100, Bytes: 1 << 20}, {Candidates: 1 << 20, Bytes: 1000}, {Candidates: 0, Bytes: 0}} {
		ex := Explain(ev, cfg, "US", b)
		listed, bytes, omitted := 0, 0, 0
		for _, m := range ex.Mappings {
			listed += len(m.Candidates)
			omitted += m.Omitted
			for _, c := range m.Candidates {
				bytes += len(c.Normalized) + len(c.Reason)
			}
		}
		if listed > b.Candidates || bytes > b.Bytes {
			t.Errorf("bounds %+v: listed %d candidates of %d bytes", b, listed, bytes)
		}
		if listed+omitted != 3*500 {
			t.Errorf("bounds %+v: %d listed + %d omitted, want 1500", b, listed, omitted)
		}
		if last := ex.Mappings[len(ex.Mappings)-1]; last.Status != MappingNotExplained {
			t.Errorf("bounds %+v: the last mapping, past the bounds, is %s", b, last.Status)
		}
	}
}
