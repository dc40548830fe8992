package idsync

// selection is the identifiers chosen for one connection: destination keys
// in the order their first mapping appears, each with its normalized values
// in selection order, without duplicates.
type selection struct {
	keys   []string
	values [][]string
	// Scratch of selectIdentifiers, kept with the selection so that one
	// Process call reuses it for all of its connections.
	order []int
	cands []string
}

// reset empties s for the next connection, keeping its storage: the value
// lists past len(values) are reused by add.
func (s *selection) reset() {
	s.keys = s.keys[:0]
	s.values = s.values[:0]
}

// clear drops every string s holds (keeping its storage), so that a pooled
// selection pins no event's strings.
func (s *selection) clear() {
	clear(s.keys[:cap(s.keys)])
	for _, vs := range s.values[:cap(s.values)] {
		clear(vs[:cap(vs)])
	}
	clear(s.cands[:cap(s.cands)])
	s.reset()
}

// empty reports whether nothing was selected.
func (s *selection) empty() bool { return len(s.keys) == 0 }

// add appends v to key k, unless k already holds v (the union of several
// Segment types mapped to one key counts each value once).
func (s *selection) add(k, v string) {
	for i, key := range s.keys {
		if key != k {
			continue
		}
		for _, have := range s.values[i] {
			if have == v {
				return
			}
		}
		s.values[i] = append(s.values[i], v)
		return
	}
	s.keys = append(s.keys, k)
	if n := len(s.values); n < cap(s.values) && s.values[:n+1][n] != nil {
		s.values = s.values[:n+1]
		s.values[n] = append(s.values[n][:0], v)
		return
	}
	s.values = append(s.values, []string{v})
}

// selectIdentifiers applies cfg's plan to the event's external ids
// (DESIGN.md §4) and returns what to send, with the number of values that
// could not be normalized.
//
// For each mapping the candidates are the external ids of its Segment type
// whose value normalizes to a non-empty value, ordered by created_at (ties
// keep event order), values equal after normalization counted once at their
// first place. An entered event takes all, the first or the last candidate
// by strategy; an exited event takes every candidate so the profile is
// removed whatever identifier the destination matched it by.
//
// sel is reset first; its storage is reused.
func selectIdentifiers(ev *Event, cfg *Config, phoneRegion string, sel *selection) (invalid int) {
	sel.reset()
	order := sel.order[:0] // indexes into ev.ExternalIDs, reused across mappings
	cands := sel.cands[:0]
	for _, m := range Plan(cfg) {
		if IsMobileAdID(m.Segment) && !cfg.Settings.SendMobileIDs {
			continue
		}
		if cfg.Setup != SetupCustomized && !IsDefaultIdentifierType(m.Segment) {
			continue // custom identifiers are never sent in default setup
		}
		order = order[:0]
		for i := range ev.ExternalIDs {
			if ev.ExternalIDs[i].Type == m.Segment {
				order = insertByCreated(ev.ExternalIDs, order, i)
			}
		}
		if len(order) == 0 {
			continue
		}
		normalize := NormalizerFor(cfg.DestinationType, m.Destination, phoneRegion)
		cands = cands[:0]
		for _, i := range order {
			v, err := normalize(ev.ExternalIDs[i].ID)
			if err != nil {
				invalid++
				continue
			}
			if v == "" || containsString(cands, v) {
				continue
			}
			cands = append(cands, v)
		}
		if len(cands) == 0 {
			continue
		}
		strategy := m.Strategy
		if ev.Action == ActionExited {
			strategy = All
		}
		switch strategy {
		case FirstAdded:
			sel.add(m.Destination, cands[0])
		case LastAdded:
			sel.add(m.Destination, cands[len(cands)-1])
		default:
			for _, v := range cands {
				sel.add(m.Destination, v)
			}
		}
	}
	sel.order, sel.cands = order, cands // kept for the next connection
	return invalid
}

// insertByCreated inserts index i into order, kept sorted by created_at;
// equal times keep event order because i grows.
func insertByCreated(ids []ExternalID, order []int, i int) []int {
	t := ids[i].CreatedAt
	at := len(order)
	for at > 0 && ids[order[at-1]].CreatedAt.After(t) {
		at--
	}
	order = append(order, 0)
	copy(order[at+1:], order[at:])
	order[at] = i
	return order
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
