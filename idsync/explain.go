package idsync

import "time"

// Explanation says, mapping by mapping, how the identifiers of one event
// were selected for one connection (DESIGN.md §4): the candidates in the
// order the strategy reads them, which were picked, which were dropped and
// why. It is what the admin API's preview shows beside the records, so that
// a person can see why an identifier was or was not sent.
type Explanation struct {
	// Mappings follow the connection's plan (the default plan in default
	// setup), in order.
	Mappings []MappingExplanation `json:"mappings"`
}

// The statuses of a mapping.
const (
	// MappingUsed: at least one candidate was picked.
	MappingUsed = "used"
	// MappingNoIdentifiers: the event has no usable identifier of the type.
	MappingNoIdentifiers = "no_identifiers"
	// MappingMobileIDsOff: a mobile advertising id while send_mobile_ids is off.
	MappingMobileIDsOff = "skipped_send_mobile_ids_off"
	// MappingCustomInDefault: a custom identifier type in default setup.
	MappingCustomInDefault = "skipped_custom_in_default_setup"
	// MappingAlreadySent: what the strategy picked is already sent under
	// the same destination key by an earlier mapping.
	MappingAlreadySent = "already_sent"
	// MappingNotExplained: the explanation reached its bounds before this
	// mapping; its candidates are counted in Omitted, not examined.
	MappingNotExplained = "not_explained"
)

// The outcomes of a candidate.
const (
	// CandidatePicked: sent.
	CandidatePicked = "picked"
	// CandidateNotPicked: valid, but the strategy took another.
	CandidateNotPicked = "not_picked"
	// CandidateDuplicate: equal, once normalized, to an earlier candidate,
	// or to a value an earlier mapping sends under the same destination key
	// (sent once).
	CandidateDuplicate = "duplicate"
	// CandidateInvalid: the value could not be normalized (not sent).
	CandidateInvalid = "invalid"
	// CandidateEmpty: the value normalized to nothing (not sent).
	CandidateEmpty = "empty"
)

// MappingExplanation is one mapping of the plan and what it did.
type MappingExplanation struct {
	Mapping
	// AppliedStrategy is the strategy used: the mapping's for an entered
	// event, all for an exited one.
	AppliedStrategy Strategy `json:"applied_strategy"`
	// Status is one of the Mapping* constants.
	Status string `json:"status"`
	// Candidates are the external ids of the mapping's type, ordered by
	// created_at (ties in event order): the order strategies read.
	Candidates []CandidateExplanation `json:"candidates"`
	// Omitted counts the candidates left out of Candidates because the
	// explanation reached its bounds (ExplainBounds).
	Omitted int `json:"omitted,omitempty"`
}

// ExplainBounds bound what an Explanation lists, so that explaining a
// hostile event costs no more than shaping it: at most Candidates
// candidates in all, and at most Bytes of their normalized values and
// reasons. Beyond them candidates are counted in Omitted, not listed.
type ExplainBounds struct {
	Candidates int
	Bytes      int
}

// CandidateExplanation is one external id a mapping considered.
type CandidateExplanation struct {
	// Index is the external id's position in the event's external_ids.
	Index int `json:"index"`
	// CreatedAt is its created_at.
	CreatedAt time.Time `json:"created_at"`
	// Normalized is the value as the destination receives it (empty when
	// invalid).
	Normalized string `json:"normalized,omitempty"`
	// Outcome is one of the Candidate* constants.
	Outcome string `json:"outcome"`
	// Reason says why an invalid value was refused.
	Reason string `json:"reason,omitempty"`
}

// Explain tells how selectIdentifiers treats ev under cfg: the same rules,
// told mapping by mapping. Its picked values are exactly the values Process
// sends (explain_test.go holds them to it), as long as the explanation is
// within b. It is for preview, not the hot path.
func Explain(ev *Event, cfg *Config, phoneRegion string, b ExplainBounds) Explanation {
	out := Explanation{Mappings: []MappingExplanation{}}
	listed, bytes := 0, 0
	sent := map[string]map[string]bool{} // destination key → values sent under it
	for _, m := range Plan(cfg) {
		me := MappingExplanation{Mapping: m, AppliedStrategy: m.Strategy, Candidates: []CandidateExplanation{}}
		if ev.Action == ActionExited {
			me.AppliedStrategy = All
		}
		switch {
		case IsMobileAdID(m.Segment) && !cfg.Settings.SendMobileIDs:
			me.Status = MappingMobileIDsOff
			out.Mappings = append(out.Mappings, me)
			continue
		case cfg.Setup != SetupCustomized && !IsDefaultIdentifierType(m.Segment):
			me.Status = MappingCustomInDefault
			out.Mappings = append(out.Mappings, me)
			continue
		}
		if listed >= b.Candidates || bytes >= b.Bytes {
			// Explaining costs no more than its bounds: past them a mapping
			// is counted, not normalized.
			me.Status = MappingNotExplained
			for i := range ev.ExternalIDs {
				if ev.ExternalIDs[i].Type == m.Segment {
					me.Omitted++
				}
			}
			out.Mappings = append(out.Mappings, me)
			continue
		}
		var order []int
		for i := range ev.ExternalIDs {
			if ev.ExternalIDs[i].Type == m.Segment {
				order = insertByCreated(ev.ExternalIDs, order, i)
			}
		}
		normalize := NormalizerFor(cfg.DestinationType, m.Destination, phoneRegion)
		var valid []int // indexes into me.Candidates of the distinct valid values
		seen := map[string]bool{}
		for _, i := range order {
			c := CandidateExplanation{Index: i, CreatedAt: ev.ExternalIDs[i].CreatedAt}
			v, err := normalize(ev.ExternalIDs[i].ID)
			switch {
			case err != nil:
				c.Outcome, c.Reason = CandidateInvalid, err.Error()
			case v == "":
				c.Outcome = CandidateEmpty
			case seen[v]:
				c.Outcome, c.Normalized = CandidateDuplicate, v
			default:
				seen[v] = true
				c.Outcome, c.Normalized = CandidateNotPicked, v
				valid = append(valid, len(me.Candidates))
			}
			me.Candidates = append(me.Candidates, c)
		}
		var picks []int
		switch {
		case len(valid) == 0:
		case me.AppliedStrategy == FirstAdded:
			picks = valid[:1]
		case me.AppliedStrategy == LastAdded:
			picks = valid[len(valid)-1:]
		default:
			picks = valid
		}
		me.Status = MappingNoIdentifiers
		if len(picks) > 0 {
			me.Status = MappingAlreadySent
		}
		if sent[m.Destination] == nil {
			sent[m.Destination] = map[string]bool{}
		}
		for _, j := range picks {
			c := &me.Candidates[j]
			if sent[m.Destination][c.Normalized] {
				c.Outcome = CandidateDuplicate
				c.Reason = "already sent under " + m.Destination + " by an earlier mapping"
				continue
			}
			sent[m.Destination][c.Normalized] = true
			c.Outcome = CandidatePicked
			me.Status = MappingUsed
		}
		// Keep what fits the bounds, in order; count the rest.
		keep := 0
		for _, c := range me.Candidates {
			n := len(c.Normalized) + len(c.Reason)
			if listed >= b.Candidates || bytes+n > b.Bytes {
				break
			}
			listed, bytes = listed+1, bytes+n
			keep++
		}
		me.Omitted = len(me.Candidates) - keep
		me.Candidates = me.Candidates[:keep]
		out.Mappings = append(out.Mappings, me)
	}
	return out
}
