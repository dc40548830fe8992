package idsync

import (
	"slices"
	"strconv"
)

// shaper builds the records of one event for one destination (DESIGN.md §6).
// planRecords (bounds.go) decides first what the records will be; the
// methods here write exactly that.
type shaper struct {
	ev      *Event
	dest    string
	cfg     *Config
	version int64
	sel     *selection
	opt     Options
	// sizes are the event's lengths shared by its destinations, text
	// their escaped values (bounds.go).
	sizes *eventSizes
	text  *eventText
	// plan is what planRecords decided: the records' count and sizes.
	plan recordPlan
	// idLen is the quoted length of the destination's message ids without
	// their n.
	idLen int
	// Facebook: the schema keys sent and their values, ncols of them, and
	// where each column's values start in lens.
	schema [len(facebookSchemaOrder)]string
	cols   [len(facebookSchemaOrder)][]string
	starts [len(facebookSchemaOrder)]int
	ncols  int
	// lens are the quoted lengths of the selected values, key by key, as
	// planRecords measured them.
	lens []int
	// name is what Zendesk gets as the profile's name ("" for the other
	// types), worked out once for all the destination's messages.
	name string
	// envelope is the envelope after message_id, up to the payload's
	// value: the same for every record of the destination, so
	// planRecords writes it once and open copies it into each record.
	envelope jsonBuf
	// mem receives the records of the whole Process call; recStart is
	// where the open record starts in mem.b.
	mem      *recordBuf
	recStart int
	// idQuoted is the destination's message id without its n, escaped
	// and with its opening quote: `"<source>:<dest>:`; idRaw the same
	// unescaped, without the quote.
	idQuoted, idRaw []byte
	// envelope[destAt:destEnd] is the quoted destination id.
	destAt, destEnd int
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

// shape appends the destination's records, as planRecords planned them, to
// out.
func (s *shaper) shape(out []Output) []Output {
	// Room for every record of the destination at once: open and close
	// then never grow the buffer.
	s.mem.b = slices.Grow(s.mem.b, s.plan.bytes)
	switch s.cfg.DestinationType {
	case FacebookCustomAudiences:
		return s.facebook(out)
	case GoogleAdsRemarketingLists:
		return s.google(out)
	}
	return s.segment(out)
}

// facebookMethod is the Custom Audiences method of the event's action.
func (s *shaper) facebookMethod() string {
	if s.ev.Action == ActionExited {
		return "DELETE"
	}
	return "POST"
}

// googleOperation is the Customer Match operation of the event's action.
func (s *shaper) googleOperation() string {
	if s.ev.Action == ActionExited {
		return "remove"
	}
	return "create"
}

// messageIDs prepares the message ids of the destination's records,
// "<source message_id>:<destination_id>:<n>" (with ":resync:<resync id>"
// after the source message id for a resync): the text before n, raw and
// escaped, in reused scratch.
func (s *shaper) messageIDs(ps *planScratch) {
	raw := appendIDBase(ps.idRaw[:0], s.ev)
	raw = append(raw, ':')
	raw = append(raw, s.dest...)
	s.idRaw = append(raw, ':')
	// Escaping works rune by rune (jsonBuf.strBody), so the escaped id is
	// made of the parts the envelope already holds escaped: the quoted
	// source message id without its closing quote, the destination id
	// without its quotes.
	msgID := s.text.msgID
	q := append(ps.idQuoted[:0], msgID[:len(msgID)-1]...)
	if s.ev.ResyncID != "" {
		q = append(q, resyncMark...)
		q = q.strBody(s.ev.ResyncID)
	}
	q = append(q, ':')
	q = append(q, s.envelope[s.destAt+1:s.destEnd-1]...)
	s.idQuoted = append(q, ':')
	ps.idRaw, ps.idQuoted = s.idRaw, s.idQuoted
}

// resyncMark is what a resync's message ids hold between the source message
// id and the resync id.
const resyncMark = ":resync:"

// resyncIDLen is what ev's resync adds to each message id: nothing for an
// event that is not re-sent by a resync.
func resyncIDLen(ev *Event) int {
	if ev.ResyncID == "" {
		return 0
	}
	return len(resyncMark) + len(ev.ResyncID)
}

// appendIDBase appends the start of ev's message ids: its message_id, and
// for a resync ":resync:<resync id>".
func appendIDBase(b []byte, ev *Event) []byte {
	b = append(b, ev.MessageID...)
	if ev.ResyncID != "" {
		b = append(b, resyncMark...)
		b = append(b, ev.ResyncID...)
	}
	return b
}

// decimalLen is the number of decimal digits of n ≥ 0.
func decimalLen(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// open writes the envelope up to the payload's value and returns the buffer
// and where the record's quoted message id lies in it. The id itself goes
// to the call's ids, which finish makes the outputs' MessageID.
func (s *shaper) open(n int) (b jsonBuf, idFrom, idTo int) {
	s.mem.ids = strconv.AppendInt(append(s.mem.ids, s.idRaw...), int64(n), 10)
	s.mem.idEnds = append(s.mem.idEnds, len(s.mem.ids))
	s.recStart = len(s.mem.b)
	b = s.mem.b.lit(`{"message_id":`)
	idFrom = len(b)
	b = strconv.AppendInt(append(b, s.idQuoted...), int64(n), 10)
	b = append(b, '"')
	return append(b, s.envelope...), idFrom, len(b)
}

// writeEnvelope appends the envelope's members after message_id, up to the
// payload's key.
// It also returns the quoted lengths of the source message id and of the
// destination id, which the message ids repeat.
func (s *shaper) writeEnvelope(b jsonBuf) (_ jsonBuf, msgID, dest int) {
	ev, t := s.ev, s.text
	t.fillEnvelope(ev)
	b = append(b.lit(`,"source_message_id":`), t.msgID...)
	msgID = len(t.msgID)
	b = b.lit(`,"destination_id":`)
	s.destAt = len(b)
	b = b.str(s.dest)
	s.destEnd = len(b)
	dest = s.destEnd - s.destAt
	// The type is a known one and the setup default or customized
	// (unusableConfig): words that need no escaping.
	b = b.lit(`,"destination_type":`).plainStr(string(s.cfg.DestinationType))
	b = append(b, t.envelope...) // space_id to timestamp
	b = b.lit(`,"idsync":{"config_version":`).int(s.version)
	b = b.lit(`,"setup":`).plainStr(string(s.cfg.Setup))
	if ev.ResyncID != "" {
		b = b.litStr(`,"resync_id":`, ev.ResyncID)
	}
	return b.lit(`},"payload":`), msgID, dest
}

// close ends the envelope and appends the record (its MessageID is set by
// finish).
func (s *shaper) close(out []Output, b jsonBuf) []Output {
	b = append(b, '}')
	// The record's bytes for now; finish moves them to their final place.
	s.mem.offs = append(s.mem.offs, s.recStart)
	s.mem.b = b
	return append(out, Output{
		DestinationID:   s.dest,
		DestinationType: s.cfg.DestinationType,
		Key:             s.ev.SegmentID,
		ConfigVersion:   s.version,
		Value:           b[s.recStart:],
	})
}

// facebook writes Custom Audiences payloads: a schema of the keys sent in
// the order EXTERN_ID, EMAIL, PHONE, MADID (planFacebook found them), and
// rows that are every combination of their values, the first key varying
// slowest; a record holds FacebookMaxRows rows or, when the plan split them
// by bytes, the rows up to its end in plan.ends.
func (s *shaper) facebook(out []Output) []Output {
	schema, cols := s.schema[:s.ncols], s.cols[:s.ncols]
	method := s.facebookMethod()
	rows := 1
	for _, c := range cols {
		rows *= len(c)
	}
	per := max(s.opt.FacebookMaxRows, 1)
	var idxBuf [len(facebookSchemaOrder)]int
	idx := idxBuf[:len(cols)] // odometer over the columns, last fastest
	for n, start := 0, 0; start < rows; n++ {
		end := min(start+per, rows)
		if s.plan.ends != nil {
			end = s.plan.ends[n]
		}
		b, _, _ := s.open(n)
		b = b.litStr(`{"external_audience_id":`, s.cfg.ExternalAudienceID)
		b = b.lit(`,"method":`).plainStr(method)
		b = b.lit(`,"schema":[`)
		for i, k := range schema {
			if i > 0 {
				b = append(b, ',')
			}
			b = b.plainStr(k) // a key of facebookSchemaOrder
		}
		b = b.lit(`],"data":[`)
		for r := start; r < end; r++ {
			if r > start {
				b = append(b, ',')
			}
			b = append(b, '[')
			for i, c := range cols {
				if i > 0 {
					b = append(b, ',')
				}
				b = s.value(b, c[idx[i]], s.starts[i]+idx[i])
			}
			b = append(b, ']')
			advance(idx, cols)
		}
		b = append(b, ']', '}')
		out = s.close(out, b)
		start = end
	}
	return out
}

// value appends the selected value v, whose quoted length is lens[at]:
// as it is when that says it needs no escaping, without looking at it
// again.
func (s *shaper) value(b jsonBuf, v string, at int) jsonBuf {
	if s.lens[at] == len(v)+2 {
		return b.plainStr(v)
	}
	return b.str(v)
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
	op := s.googleOperation()
	b, _, _ := s.open(0)
	b = b.litStr(`{"user_list_id":`, s.cfg.ExternalAudienceID)
	// The upload key type and the keys are words of googleUploadKeys
	// (unusableConfig), the operation create or remove.
	b = b.lit(`,"upload_key_type":`).plainStr(s.cfg.Settings.UploadKeyType)
	b = b.lit(`,"operation":`).plainStr(op)
	b = b.lit(`,"user_identifiers":[`)
	at := 0
	for i, k := range s.sel.keys {
		for _, v := range s.sel.values[i] {
			if at > 0 {
				b = append(b, ',')
			}
			b = append(append(b, '{').plainStr(k), ':')
			b = append(s.value(b, v, at), '}')
			at++
		}
	}
	b = append(b, ']', '}')
	return s.close(out, b)
}

// segment writes Segment-spec messages for event destination types: for
// every combination of the selected values (keys in plan order, the first
// varying slowest) a track when send_track, then an identify when
// send_identify.
func (s *shaper) segment(out []Output) []Output {
	s.text.fillSegment(s.ev)
	cols := s.sel.values
	combos := 1
	for _, c := range cols {
		combos *= len(c)
	}
	var idxBuf [8]int // the odometer, on the stack for up to 8 keys
	var idx []int
	if len(cols) <= len(idxBuf) {
		idx = idxBuf[:len(cols)]
	} else {
		idx = make([]int, len(cols))
	}
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
// (track) or traits (identify), as placeOf says. The audience's flags come
// first and win over an identifier key of the same name.
func (s *shaper) segmentMessage(out []Output, n int, typ string, idx []int) []Output {
	ev, cfg := s.ev, s.cfg
	entered := ev.Action == ActionEntered
	track := typ == "track"
	b, idFrom, idTo := s.open(n)
	if track {
		b = b.lit(`{"type":"track"`)
	} else {
		b = b.lit(`{"type":"identify"`)
	}
	b = append(b.lit(`,"messageId":`), b[idFrom:idTo]...) // the quoted id again
	b = append(b, s.text.timestamp...)
	if track {
		event := cfg.Settings.EnterEvent
		if !entered {
			event = cfg.Settings.ExitEvent
		}
		b = b.litStr(`,"event":`, event)
	}
	keys := s.sel.keys
	vals := s.sel.values
	for i, k := range keys {
		if s.placeOf(k, track) == placeTop {
			b = b.field(k, vals[i][idx[i]], false)
		}
	}
	name := s.name
	// Members of the properties (track) or traits (identify) object.
	if track {
		b = b.lit(`,"properties":{`)
		b = append(b.lit(`"audience_key":`), s.text.audienceKey...)
		if ev.AudienceKey != "audience_key" {
			b = append(append(b, ','), s.text.audienceKey...)
			b = append(b, ':').boolean(entered)
		}
	} else {
		b = b.lit(`,"traits":{`)
		b = append(b, s.text.audienceKey...)
		b = append(b, ':').boolean(entered)
	}
	email := ""
	for i, k := range keys {
		switch s.placeOf(k, track) {
		case placeContextEmail:
			email = vals[i][idx[i]]
		case placeField:
			b = b.field(k, vals[i][idx[i]], false)
		}
	}
	if !track && name != "" {
		b = b.litStr(`,"name":`, name)
	}
	b = b.lit(`},"context":{`)
	if track && (email != "" || name != "") {
		b = b.lit(`"traits":{`)
		if email != "" {
			b = b.litStr(`"email":`, email)
			if name != "" {
				b = append(b, ',')
			}
		}
		if name != "" {
			b = b.litStr(`"name":`, name)
		}
		b = b.lit(`},`)
	}
	b = append(b, s.text.personas...)
	if cfg.ExternalAudienceID != "" {
		b = b.litStr(`,"external_audience_id":`, cfg.ExternalAudienceID)
	}
	b = append(b, '}', '}', '}')
	return s.close(out, b)
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
