package idsync

import (
	"strconv"
)

// shaper builds the records of one event for one destination (DESIGN.md §6).
type shaper struct {
	ev      *Event
	dest    string
	cfg     *Config
	version int64
	sel     *selection
	opt     Options
	// envelope is the envelope after message_id, up to the payload's
	// value: the same for every record of the destination, so it is
	// written once, in the first record, and copied (see open).
	envelope jsonBuf
}

// count returns how many records shape would produce, or tooMany when the
// product of the selected values is beyond counting.
func (s *shaper) count() int {
	switch s.cfg.DestinationType {
	case GoogleAdsRemarketingLists:
		return 1
	case FacebookCustomAudiences:
		rows := 1
		for _, vs := range s.sel.values {
			rows = mulCapped(rows, len(vs), countBound)
		}
		if rows == tooMany {
			return tooMany
		}
		return (rows + s.opt.FacebookMaxRows - 1) / s.opt.FacebookMaxRows
	}
	combos := s.perCombination()
	for _, vs := range s.sel.values {
		combos = mulCapped(combos, len(vs), countBound)
	}
	return combos
}

// perCombination is the number of Segment messages per combination of
// values: a track and/or an identify.
func (s *shaper) perCombination() int {
	n := 0
	if s.cfg.Settings.SendTrack {
		n++
	}
	if s.cfg.Settings.SendIdentify {
		n++
	}
	return n
}

// shape appends the destination's records to out.
func (s *shaper) shape(out []Output) []Output {
	switch s.cfg.DestinationType {
	case FacebookCustomAudiences:
		return s.facebook(out)
	case GoogleAdsRemarketingLists:
		return s.google(out)
	}
	return s.segment(out)
}

func (s *shaper) messageID(n int) string {
	id := make([]byte, 0, len(s.ev.MessageID)+len(s.dest)+8)
	id = append(id, s.ev.MessageID...)
	id = append(id, ':')
	id = append(id, s.dest...)
	id = append(id, ':')
	id = strconv.AppendInt(id, int64(n), 10)
	return string(id)
}

// open writes the envelope up to the payload's value and returns the buffer
// and the record's message id.
func (s *shaper) open(n int, sizeHint int) (jsonBuf, string) {
	id := s.messageID(n)
	ev := s.ev
	size := len(s.envelope)
	if size == 0 {
		// The envelope's fixed text is about 230 bytes, plus its values.
		size = 240 + len(ev.MessageID) + len(s.dest) + len(s.cfg.DestinationType) + len(ev.SpaceID) +
			len(ev.AudienceID) + len(ev.AudienceKey) + len(ev.SegmentID) + len(ev.TimestampRaw)
	}
	// Sized so that the record is written without growing.
	b := make(jsonBuf, 0, 16+2*len(id)+size+sizeHint)
	b = append(b, '{')
	b = b.field("message_id", id, true)
	if s.envelope != nil {
		return append(b, s.envelope...), id
	}
	start := len(b)
	b = s.writeEnvelope(b)
	// Later records of the destination copy these bytes instead of writing
	// them again; the first record's buffer is never changed before them.
	s.envelope = b[start:len(b):len(b)]
	return b, id
}

// writeEnvelope appends the envelope's members after message_id, up to the
// payload's key.
func (s *shaper) writeEnvelope(b jsonBuf) jsonBuf {
	ev := s.ev
	b = b.field("source_message_id", ev.MessageID, false)
	b = b.field("destination_id", s.dest, false)
	b = b.field("destination_type", string(s.cfg.DestinationType), false)
	b = b.field("space_id", ev.SpaceID, false)
	b = b.field("audience_id", ev.AudienceID, false)
	b = b.field("audience_key", ev.AudienceKey, false)
	b = b.field("segment_id", ev.SegmentID, false)
	b = b.field("action", string(ev.Action), false)
	b = b.field("timestamp", ev.TimestampRaw, false)
	b = b.key("idsync", false)
	b = append(b, '{')
	b = b.key("config_version", true).int(s.version)
	b = b.field("setup", string(s.cfg.Setup), false)
	b = append(b, '}')
	return b.key("payload", false)
}

// close ends the envelope and appends the record.
func (s *shaper) close(out []Output, b jsonBuf, id string) []Output {
	b = append(b, '}')
	return append(out, Output{
		DestinationID:   s.dest,
		DestinationType: s.cfg.DestinationType,
		Key:             s.ev.SegmentID,
		MessageID:       id,
		ConfigVersion:   s.version,
		Value:           b,
	})
}

// facebook writes Custom Audiences payloads: a schema of the keys sent in
// the order EXTERN_ID, EMAIL, PHONE, MADID, and rows that are every
// combination of their values, FacebookMaxRows rows per record.
func (s *shaper) facebook(out []Output) []Output {
	var schema []string
	var cols [][]string
	for _, k := range facebookSchemaOrder {
		if vs := s.sel.get(k); len(vs) > 0 {
			schema = append(schema, k)
			cols = append(cols, vs)
		}
	}
	method := "POST"
	if s.ev.Action == ActionExited {
		method = "DELETE"
	}
	rows := 1
	for _, c := range cols {
		rows *= len(c)
	}
	idx := make([]int, len(cols)) // odometer over the columns, last fastest
	for n, start := 0, 0; start < rows; n, start = n+1, start+s.opt.FacebookMaxRows {
		end := min(start+s.opt.FacebookMaxRows, rows)
		b, id := s.open(n, (end-start)*len(cols)*70)
		b = append(b, '{')
		b = b.field("external_audience_id", s.cfg.ExternalAudienceID, true)
		b = b.field("method", method, false)
		b = b.key("schema", false)
		b = append(b, '[')
		for i, k := range schema {
			if i > 0 {
				b = append(b, ',')
			}
			b = b.str(k)
		}
		b = append(b, ']')
		b = b.key("data", false)
		b = append(b, '[')
		for r := start; r < end; r++ {
			if r > start {
				b = append(b, ',')
			}
			b = append(b, '[')
			for i, c := range cols {
				if i > 0 {
					b = append(b, ',')
				}
				b = b.str(c[idx[i]])
			}
			b = append(b, ']')
			advance(idx, cols)
		}
		b = append(b, ']', '}')
		out = s.close(out, b, id)
	}
	return out
}

// advance moves the odometer idx to the next combination of cols, the last
// column varying fastest.
func advance(idx []int, cols [][]string) {
	for i := len(idx) - 1; i >= 0; i-- {
		idx[i]++
		if idx[i] < len(cols[i]) {
			return
		}
		idx[i] = 0
	}
}

// google writes one Customer Match payload with one user identifier per
// selected value, keys in plan order.
func (s *shaper) google(out []Output) []Output {
	op := "create"
	if s.ev.Action == ActionExited {
		op = "remove"
	}
	hint := 96 + len(s.cfg.ExternalAudienceID) + len(s.cfg.Settings.UploadKeyType)
	for i, k := range s.sel.keys {
		hint += len(s.sel.values[i]) * (len(k) + 72)
	}
	b, id := s.open(0, hint)
	b = append(b, '{')
	b = b.field("user_list_id", s.cfg.ExternalAudienceID, true)
	b = b.field("upload_key_type", s.cfg.Settings.UploadKeyType, false)
	b = b.field("operation", op, false)
	b = b.key("user_identifiers", false)
	b = append(b, '[')
	first := true
	for i, k := range s.sel.keys {
		for _, v := range s.sel.values[i] {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, '{')
			b = b.field(k, v, true)
			b = append(b, '}')
		}
	}
	b = append(b, ']', '}')
	return s.close(out, b, id)
}

// segment writes Segment-spec messages for event destination types: for
// every combination of the selected values (keys in plan order, the first
// varying slowest) a track when send_track, then an identify when
// send_identify.
func (s *shaper) segment(out []Output) []Output {
	cols := s.sel.values
	combos := 1
	for _, c := range cols {
		combos *= len(c)
	}
	idx := make([]int, len(cols))
	n := 0
	for range combos {
		if s.cfg.Settings.SendTrack {
			out = s.segmentMessage(out, n, "track", idx)
			n++
		}
		if s.cfg.Settings.SendIdentify {
			out = s.segmentMessage(out, n, "identify", idx)
			n++
		}
		advance(idx, cols)
	}
	return out
}

// segmentMessage writes one track or identify message for the combination
// idx. userId and anonymousId go at the top level, email in
// context.traits (track) or traits (identify), any other key in properties
// (track) or traits (identify). The audience's flags come first and win over
// an identifier key of the same name.
func (s *shaper) segmentMessage(out []Output, n int, typ string, idx []int) []Output {
	ev, cfg := s.ev, s.cfg
	entered := ev.Action == ActionEntered
	// Payload: about 330 bytes of fixed text, the ids and keys of the
	// envelope again, the audience key up to three times, the values.
	hint := 352 + len(s.ev.MessageID) + len(s.dest) + 3*len(s.ev.AudienceKey) + len(s.ev.AudienceID) + len(s.ev.SpaceID) +
		len(s.ev.TimestampRaw) + len(s.cfg.ExternalAudienceID) + len(s.cfg.Settings.EnterEvent) + len(s.ev.Traits.Name)
	for i, k := range s.sel.keys {
		hint += len(k) + 8 + len(s.sel.values[i][idx[i]])
	}
	b, id := s.open(n, hint)
	b = append(b, '{')
	b = b.field("type", typ, true)
	b = b.field("messageId", id, false)
	b = b.field("timestamp", ev.TimestampRaw, false)
	if typ == "track" {
		event := cfg.Settings.EnterEvent
		if !entered {
			event = cfg.Settings.ExitEvent
		}
		b = b.field("event", event, false)
	}
	keys := s.sel.keys
	value := func(i int) string { return s.sel.values[i][idx[i]] }
	for i, k := range keys {
		if k == "userId" || k == "anonymousId" {
			b = b.field(k, value(i), false)
		}
	}
	// Members of the properties (track) or traits (identify) object.
	members := func(b jsonBuf, withEmail bool) jsonBuf {
		if typ == "track" {
			b = b.field("audience_key", ev.AudienceKey, true)
			if ev.AudienceKey != "audience_key" {
				b = b.key(ev.AudienceKey, false).boolean(entered)
			}
		} else {
			b = b.key(ev.AudienceKey, true).boolean(entered)
		}
		for i, k := range keys {
			switch {
			case k == "userId" || k == "anonymousId":
			case k == "email" && !withEmail:
			case k == ev.AudienceKey || (typ == "track" && k == "audience_key"):
			default:
				b = b.field(k, value(i), false)
			}
		}
		if withEmail && cfg.DestinationType == Zendesk {
			if name := ev.Traits.displayName(); name != "" {
				b = b.field("name", name, false)
			}
		}
		return b
	}
	if typ == "track" {
		b = b.key("properties", false)
		b = append(b, '{')
		b = members(b, false)
		b = append(b, '}')
	} else {
		b = b.key("traits", false)
		b = append(b, '{')
		b = members(b, true)
		b = append(b, '}')
	}
	b = b.key("context", false)
	b = append(b, '{')
	first := true
	if typ == "track" {
		email := ""
		for i, k := range keys {
			if k == "email" {
				email = value(i)
			}
		}
		name := ""
		if cfg.DestinationType == Zendesk {
			name = ev.Traits.displayName()
		}
		if email != "" || name != "" {
			b = b.key("traits", true)
			b = append(b, '{')
			tf := true
			if email != "" {
				b = b.field("email", email, tf)
				tf = false
			}
			if name != "" {
				b = b.field("name", name, tf)
			}
			b = append(b, '}')
			first = false
		}
	}
	b = b.key("personas", first)
	b = append(b, '{')
	b = b.field("computation_class", ev.ComputationClass, true)
	b = b.field("computation_id", ev.AudienceID, false)
	b = b.field("computation_key", ev.AudienceKey, false)
	b = b.field("space_id", ev.SpaceID, false)
	if cfg.ExternalAudienceID != "" {
		b = b.field("external_audience_id", cfg.ExternalAudienceID, false)
	}
	b = append(b, '}', '}', '}')
	return s.close(out, b, id)
}

// displayName is the name Zendesk requires: traits.name, else first and
// last name joined by a space.
func (t Traits) displayName() string {
	if t.Name != "" {
		return t.Name
	}
	switch {
	case t.FirstName != "" && t.LastName != "":
		return t.FirstName + " " + t.LastName
	case t.FirstName != "":
		return t.FirstName
	}
	return t.LastName
}
