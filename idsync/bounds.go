package idsync

import (
	"fmt"
	"math"
	"unicode/utf8"
)

// This file computes what a destination's records will be — how many, how
// many bytes in all, how large the largest — from the selected values'
// JSON-escaped lengths and the fixed text of the envelope and payloads,
// before a byte of them is written, and checks that against the bounds of
// Options. The shaper then writes exactly what was planned: the sizes here
// mirror shape.go text for text, and the tests check every planned size
// against the records written (plan_test.go).
//
// The bounds are checked in this order; a destination gets one dead letter,
// for the first bound it breaks:
//
//  1. fan-out in rows or records: Facebook rows above MaxFacebookRows, or
//     Segment messages (and the one Google record) above MaxCombinations →
//     CodeFanoutLimit;
//  2. the destination's bytes above MaxOutputBytes → CodeFanoutLimit;
//  3. a record (key plus value) above MaxRecordBytes → CodeOutputTooLarge
//     (Facebook records are split by bytes first: only a single row that
//     fits in no record gives it);
//  4. Facebook records above MaxCombinations (after splitting) →
//     CodeFanoutLimit;
//  5. the event's bytes over all its destinations so far above
//     MaxEventOutputBytes → CodeFanoutLimit (checked by Process).

// Lengths of the constant text shape.go writes, named after it.
const (
	lenMessageIDKey    = len(`{"message_id":`)
	lenRecordClose     = len(`}`)
	lenFacebookHead    = len(`{"external_audience_id":`) + len(`,"method":`) + len(`,"schema":[`) + len(`],"data":[`)
	lenFacebookTail    = len(`]}`)
	lenGoogleHead      = len(`{"user_list_id":`) + len(`,"upload_key_type":`) + len(`,"operation":`) + len(`,"user_identifiers":[`)
	lenGoogleTail      = len(`]}`)
	lenGoogleEntry     = len(`{`) + len(`:`) + len(`}`) // around the key and value
	lenSegmentMsgID    = len(`,"messageId":`)
	lenSegmentTS       = len(`,"timestamp":`)
	lenTrackOpen       = len(`{"type":"track"`) + len(`,"event":`) + len(`,"properties":{`) + len(`"audience_key":`)
	lenIdentifyOpen    = len(`{"type":"identify"`) + len(`,"traits":{`) + len(`:`) // "<audience_key>":
	lenContextOpen     = len(`},"context":{`)
	lenContextTraits   = len(`"traits":{`) + len(`},`)
	lenContextEmailKey = len(`"email":`)
	lenContextNameKey  = len(`"name":`)
	lenIdentifyNameKey = len(`,"name":`)
	lenPersonas        = len(`"personas":{"computation_class":`) + len(`,"computation_id":`) + len(`,"computation_key":`) + len(`,"space_id":`) + len(`}}}`)
	lenExternalAudKey  = len(`,"external_audience_id":`)
	lenField           = len(`,`) + len(`:`) // around a field's quoted key and value
)

// sizeBound caps the sizes computed here: sums and products saturate at
// tooMany once past it, so that no input overflows them.
const sizeBound = 1 << 56

// addSat returns a+b, or tooMany once it passes sizeBound.
func addSat(a, b int) int {
	if a == tooMany || b == tooMany || a+b > sizeBound {
		return tooMany
	}
	return a + b
}

// mulSat returns a×b, or tooMany once it passes sizeBound.
func mulSat(a, b int) int {
	if a == tooMany || b == tooMany {
		if a == 0 || b == 0 {
			return 0
		}
		return tooMany
	}
	return mulCapped(a, b, sizeBound)
}

// quotedLen is len(jsonBuf.str(s)): s escaped as a JSON string, with its
// quotes.
func quotedLen(s string) int {
	n := plainRun(s)
	if n == len(s) {
		return n + 2
	}
	return n + 2 + escapedLen(s[n:])
}

// escapedLen is the length of s as jsonBuf.escape writes it, without the
// closing quote.
func escapedLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c >= 0x20 && c != '"' && c != '\\':
				n++
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			default:
				n += len(`\u0000`)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r == '\u2028', r == '\u2029':
			n += len(`\ufffd`)
		default:
			n += size
		}
		i += size
	}
	return n
}

// plainLen is quotedLen of a string known to need no escaping: a word of
// a fixed set (a destination type, a setup, a Facebook or Google key).
func plainLen(s string) int { return len(s) + 2 }

// intLen is len(strconv.AppendInt(nil, v, 10)).
func intLen(v int64) int {
	if v == math.MinInt64 {
		return 20
	}
	if v < 0 {
		return 1 + decimalLen(int(-v))
	}
	return decimalLen(int(v))
}

// digitsSum is the sum of decimalLen(n) for n in [0, count).
func digitsSum(count int) int {
	total := 0
	for d, lo, hi := 1, 0, 10; lo < count; d++ {
		total = addSat(total, mulSat(min(count, hi)-lo, d))
		lo = hi
		if hi > math.MaxInt/10 {
			hi = math.MaxInt
		} else {
			hi *= 10
		}
	}
	return total
}

// eventSizes are the quoted lengths of the event's values that the Segment
// payloads repeat, computed once per Process call, when first needed.
type eventSizes struct {
	// The quoted values the Segment payloads repeat, set with haveSegment.
	timestamp, class, audienceID, audienceKey, spaceID int
	haveSegment                                        bool
}

// segment computes the quoted values of the Segment payloads, once.
func (z *eventSizes) segment(ev *Event) {
	if z.haveSegment {
		return
	}
	z.timestamp = quotedLen(ev.TimestampRaw)
	z.class = quotedLen(ev.ComputationClass)
	z.audienceID = quotedLen(ev.AudienceID)
	z.audienceKey = quotedLen(ev.AudienceKey)
	z.spaceID = quotedLen(ev.SpaceID)
	z.haveSegment = true
}

// eventText is the text of the event's values that the records of every
// destination repeat, escaped once per Process call (when first needed)
// and copied from then on.
type eventText struct {
	// haveEnvelope and haveSegment say which parts are written.
	haveEnvelope, haveSegment bool
	// The quoted source message id, and the envelope's members from
	// space_id to timestamp (`,"space_id":…,"timestamp":…`).
	msgID, envelope jsonBuf
	// For Segment payloads: the envelope's last member, which they
	// repeat; the quoted audience key; and the context's personas object
	// up to its space_id (`"personas":{"computation_class":…,"space_id":…`).
	timestamp, audienceKey, personas []byte
	segment                          jsonBuf
}

// fillEnvelope writes the envelope's text, once per Process call.
func (t *eventText) fillEnvelope(ev *Event) {
	if t.haveEnvelope {
		return
	}
	t.msgID = t.msgID[:0].str(ev.MessageID)
	b := t.envelope[:0].litStr(`,"space_id":`, ev.SpaceID)
	b = b.litStr(`,"audience_id":`, ev.AudienceID)
	b = b.litStr(`,"audience_key":`, ev.AudienceKey)
	b = b.litStr(`,"segment_id":`, ev.SegmentID)
	b = b.litStr(`,"action":`, string(ev.Action))
	ts := len(b)
	t.envelope = b.litStr(`,"timestamp":`, ev.TimestampRaw)
	t.timestamp = t.envelope[ts:]
	t.haveEnvelope = true
}

// fillSegment writes the Segment payloads' text, once per Process call,
// after fillEnvelope.
func (t *eventText) fillSegment(ev *Event) {
	if t.haveSegment {
		return
	}
	b := t.segment[:0].str(ev.AudienceKey)
	ak := len(b)
	b = b.litStr(`"personas":{"computation_class":`, ev.ComputationClass)
	b = b.litStr(`,"computation_id":`, ev.AudienceID)
	b = b.litStr(`,"computation_key":`, ev.AudienceKey)
	t.segment = b.litStr(`,"space_id":`, ev.SpaceID)
	t.audienceKey, t.personas = t.segment[:ak], t.segment[ak:]
	t.haveSegment = true
}

// recordPlan is what planRecords decided for one destination.
type recordPlan struct {
	// records is the number of records, bytes the sum of their values'
	// lengths (exact), maxRecord the largest key plus value (exact for
	// Google and for Facebook records split by bytes, an upper bound
	// otherwise: the largest combination with the longest message id).
	records, bytes, maxRecord int
	// ends holds, for Facebook records split by bytes, the row each record
	// ends before; nil when every record but the last holds FacebookMaxRows
	// rows.
	ends []int
}

// planScratch is planRecords' reused storage: the quoted lengths of the
// selected values, the Facebook record ends and the destination's
// envelope.
type planScratch struct {
	lens     []int
	ends     []int
	envelope jsonBuf
	// The destination's message id before its n (shaper.messageIDs).
	idRaw, idQuoted jsonBuf
}

// planRecords computes the destination's records without writing them and
// checks them against the bounds of s.opt (steps 1 to 4 above). It returns
// false with the dead letter when a bound is broken; otherwise s.plan holds the
// records' count and sizes. It is called once per destination, after
// selection and before messageIDs.
func (s *shaper) planRecords(ps *planScratch) (DeadLetter, bool) {
	// The text every record of the destination shares: the envelope
	// after message_id, written now and copied into each record (its
	// length is then known exactly), and the quoted message id without
	// its n.
	var msgID, dest int
	ps.envelope, msgID, dest = s.writeEnvelope(ps.envelope[:0])
	s.envelope = ps.envelope
	// "<message id>:<destination id>:" quoted: two colons and two quotes,
	// and a resync's ":resync:<id>" (a valid resync id needs no escape).
	s.idLen = msgID + dest + resyncIDLen(s.ev)
	// The quoted length of every selected value, key by key.
	lens := ps.lens[:0]
	for _, vs := range s.sel.values {
		for _, v := range vs {
			lens = append(lens, quotedLen(v))
		}
	}
	ps.lens, s.lens = lens, lens
	switch s.cfg.DestinationType {
	case FacebookCustomAudiences:
		return s.planFacebook(ps)
	case GoogleAdsRemarketingLists:
		return s.planGoogle(lens)
	}
	return s.planSegment(lens)
}

// recordFixed is the length of a record's text outside its payload, for
// record n: the message_id member, the envelope and the closing brace.
func (s *shaper) recordFixed(n int) int {
	return lenMessageIDKey + s.idLen + decimalLen(n) + len(s.envelope) + lenRecordClose
}

// deadLetter returns a dead letter for the destination.
func (s *shaper) deadLetter(code Code, format string, args ...any) (DeadLetter, bool) {
	return DeadLetter{DestinationID: s.dest, Code: code,
		Message: "destination " + clip(s.dest, 64) + ": " + fmt.Sprintf(format, args...)}, false
}

// checkBytes applies steps 2 and 3 to a plan whose sizes are final.
func (s *shaper) checkBytes() (DeadLetter, bool) {
	if s.plan.bytes > s.opt.MaxOutputBytes {
		return s.deadLetter(CodeFanoutLimit, "the event would produce %s bytes of output, above max_output_bytes %d",
			countText(s.plan.bytes, sizeBound), s.opt.MaxOutputBytes)
	}
	if s.plan.maxRecord > s.opt.MaxRecordBytes {
		return s.deadLetter(CodeOutputTooLarge, "a record would be %s bytes with its key, above the record limit %d",
			countText(s.plan.maxRecord, sizeBound), s.opt.MaxRecordBytes)
	}
	return DeadLetter{}, true
}

// planGoogle plans the one Customer Match record.
func (s *shaper) planGoogle(lens []int) (DeadLetter, bool) {
	if 1 > s.opt.MaxCombinations {
		return s.deadLetter(CodeFanoutLimit, "the event would produce 1 records, above max_combinations %d", s.opt.MaxCombinations)
	}
	size := s.recordFixed(0) + lenGoogleHead + quotedLen(s.cfg.ExternalAudienceID) +
		plainLen(s.cfg.Settings.UploadKeyType) + plainLen(s.googleOperation()) + lenGoogleTail
	at, entries := 0, 0
	for i, k := range s.sel.keys {
		kl := plainLen(k) + lenGoogleEntry // a key of the upload key type's list
		for range s.sel.values[i] {
			size = addSat(size, kl+lens[at])
			at++
			entries++
		}
	}
	size = addSat(size, entries-1) // commas
	s.plan = recordPlan{records: 1, bytes: size, maxRecord: addSat(size, len(s.ev.SegmentID))}
	return s.checkBytes()
}

// planSegment plans the Segment messages of an event type: per
// combination a track and/or an identify.
func (s *shaper) planSegment(lens []int) (DeadLetter, bool) {
	per := s.perCombination()
	records := per
	for _, vs := range s.sel.values {
		records = mulCapped(records, len(vs), countBound)
	}
	if records == tooMany || records > s.opt.MaxCombinations {
		return s.deadLetter(CodeFanoutLimit, "the event would produce %s records, above max_combinations %d",
			countText(records, s.opt.MaxCombinations), s.opt.MaxCombinations)
	}
	if records == 0 {
		s.plan = recordPlan{}
		return DeadLetter{}, true
	}
	combos := records / per
	z := s.sizes
	z.segment(s.ev)
	// Text of every message whatever its type: the record around the
	// payload, the message id again, the timestamp, the personas.
	common := s.recordFixed(0) - decimalLen(0) + lenSegmentMsgID + s.idLen + lenSegmentTS + z.timestamp +
		lenPersonas + z.class + z.audienceID + z.audienceKey + z.spaceID
	if s.cfg.ExternalAudienceID != "" {
		common += lenExternalAudKey + quotedLen(s.cfg.ExternalAudienceID)
	}
	entered := s.ev.Action == ActionEntered
	boolLen := len("false")
	if entered {
		boolLen = len("true")
	}
	nameLen := 0
	if s.name != "" {
		nameLen = quotedLen(s.name)
	}
	total, largest := 0, 0
	for _, track := range [2]bool{true, false} {
		if (track && !s.cfg.Settings.SendTrack) || (!track && !s.cfg.Settings.SendIdentify) {
			continue
		}
		base := common
		hasEmail := false
		if track {
			event := s.cfg.Settings.EnterEvent
			if !entered {
				event = s.cfg.Settings.ExitEvent
			}
			base += lenTrackOpen + quotedLen(event) + z.audienceKey + lenContextOpen
			if s.ev.AudienceKey != "audience_key" {
				base += lenField + z.audienceKey + boolLen
			}
		} else {
			base += lenIdentifyOpen + z.audienceKey + boolLen + lenContextOpen
			if nameLen > 0 {
				base += lenIdentifyNameKey + nameLen
			}
		}
		sum, most := mulSat(combos, base), base
		at := 0
		for i, k := range s.sel.keys {
			vs := s.sel.values[i]
			kl := 0 // the text around each value of key k
			switch s.placeOf(k, track) {
			case placeTop, placeField:
				kl = lenField + quotedLen(k)
			case placeContextEmail:
				kl = lenContextEmailKey
				hasEmail = true
			case placeNone:
				at += len(vs)
				continue
			}
			sumK, maxK := 0, 0
			for range vs {
				sumK += lens[at]
				maxK = max(maxK, lens[at])
				at++
			}
			// Every value of k appears in combos/len(vs) combinations.
			sum = addSat(sum, mulSat(combos/len(vs), addSat(mulSat(len(vs), kl), sumK)))
			most = addSat(most, kl+maxK)
		}
		if track && (hasEmail || nameLen > 0) {
			extra := lenContextTraits
			if hasEmail && nameLen > 0 {
				extra++ // the comma between email and name
			}
			if nameLen > 0 {
				extra += lenContextNameKey + nameLen
			}
			sum = addSat(sum, mulSat(combos, extra))
			most = addSat(most, extra)
		}
		total = addSat(total, sum)
		largest = max(largest, most)
	}
	// The record number n appears twice in every message: in the
	// envelope's message_id and in the payload's messageId.
	total = addSat(total, mulSat(2, digitsSum(records)))
	largest = addSat(largest, 2*decimalLen(records-1)+len(s.ev.SegmentID))
	s.plan = recordPlan{records: records, bytes: total, maxRecord: largest}
	return s.checkBytes()
}

// Where segmentMessage writes an identifier key's value.
const (
	placeNone         = iota // not written (the audience's flag wins)
	placeTop                 // userId, anonymousId: at the top level
	placeContextEmail        // email of a track: context.traits.email
	placeField               // any other: properties (track) or traits (identify)
)

// placeOf says where segmentMessage writes the value of key k; it mirrors
// segmentMessage's choices and is what both follow.
func (s *shaper) placeOf(k string, track bool) int {
	switch {
	case k == "userId" || k == "anonymousId":
		return placeTop
	case k == "email" && track:
		return placeContextEmail
	case k == s.ev.AudienceKey || (track && k == "audience_key"):
		return placeNone
	}
	return placeField
}

// planFacebook plans the Custom Audiences records: rows are every
// combination of the columns' values; a record holds at most
// FacebookMaxRows rows and at most what fits in MaxRecordBytes with its
// key.
func (s *shaper) planFacebook(ps *planScratch) (DeadLetter, bool) {
	// The columns, in schema order, with where their lengths start in
	// ps.lens.
	var starts [len(facebookSchemaOrder)]int
	k := 0
	for _, key := range facebookSchemaOrder {
		at := 0
		for i, sk := range s.sel.keys {
			if sk == key {
				s.schema[k], s.cols[k], starts[k] = key, s.sel.values[i], at
				k++
				break
			}
			at += len(s.sel.values[i])
		}
	}
	s.ncols, s.starts = k, starts
	if k == 0 {
		// No key of the schema was selected: nothing to send.
		s.plan = recordPlan{}
		return DeadLetter{}, true
	}
	rows := 1
	for _, c := range s.cols[:k] {
		rows = mulCapped(rows, len(c), countBound)
	}
	if rows == tooMany || rows > s.opt.MaxFacebookRows {
		return s.deadLetter(CodeFanoutLimit, "the event would produce %s Facebook rows, above max_facebook_rows %d",
			countText(rows, s.opt.MaxFacebookRows), s.opt.MaxFacebookRows)
	}
	lens := ps.lens
	// A row is "[v1,v2,…]"; data is the length of every row together,
	// without the commas between rows.
	rowFixed := 2 + k - 1
	data, longest := mulSat(rows, rowFixed), rowFixed
	for i, c := range s.cols[:k] {
		sumC, maxC := 0, 0
		for _, l := range lens[starts[i] : starts[i]+len(c)] {
			sumC += l
			maxC = max(maxC, l)
		}
		data = addSat(data, mulSat(rows/len(c), sumC))
		longest += maxC
	}
	schema := 0
	for _, key := range s.schema[:k] {
		schema += plainLen(key) + 1
	}
	// The record's text but its rows, n and the commas between rows.
	fixed := s.recordFixed(0) - decimalLen(0) + lenFacebookHead + quotedLen(s.cfg.ExternalAudienceID) +
		plainLen(s.facebookMethod()) + schema - 1 + lenFacebookTail
	// At least one record: refuse now what cannot fit in bytes, before
	// walking the rows.
	if least := addSat(addSat(fixed+1, data), rows-1); least > s.opt.MaxOutputBytes {
		return s.deadLetter(CodeFanoutLimit, "the event would produce at least %s bytes of output, above max_output_bytes %d",
			countText(least, sizeBound), s.opt.MaxOutputBytes)
	}
	key := len(s.ev.SegmentID)
	per := max(s.opt.FacebookMaxRows, 1)
	n := (rows + per - 1) / per
	full := min(rows, per)
	worst := addSat(addSat(key+fixed+decimalLen(n-1), mulSat(full, longest)), full-1)
	if worst <= s.opt.MaxRecordBytes {
		// Records of FacebookMaxRows rows fit: no need to look at the rows.
		s.plan = recordPlan{records: n, bytes: addSat(addSat(mulSat(n, fixed), digitsSum(n)), data+rows-n), maxRecord: worst}
	} else if dl, ok := s.splitFacebook(ps, &starts, rows, per, fixed, rowFixed); !ok {
		return dl, false
	}
	if dl, ok := s.checkBytes(); !ok {
		return dl, false
	}
	if s.plan.records > s.opt.MaxCombinations {
		return s.deadLetter(CodeFanoutLimit, "the event would produce %d records, above max_combinations %d",
			s.plan.records, s.opt.MaxCombinations)
	}
	return DeadLetter{}, true
}

// splitFacebook walks the rows and cuts a record before the row that would
// take it past FacebookMaxRows rows or MaxRecordBytes bytes. The walk is
// bounded: rows ≤ MaxFacebookRows and their bytes ≤ MaxOutputBytes.
func (s *shaper) splitFacebook(ps *planScratch, starts *[len(facebookSchemaOrder)]int, rows, per, fixed, rowFixed int) (DeadLetter, bool) {
	lens, k := ps.lens, s.ncols
	limit := s.opt.MaxRecordBytes - len(s.ev.SegmentID)
	var idx [len(facebookSchemaOrder)]int // the odometer, last column fastest
	row := rowFixed                       // the length of row r
	for i := range k {
		row += lens[starts[i]]
	}
	ends := ps.ends[:0]
	n, inRecord, size, total, largest := 0, 0, fixed+decimalLen(0), 0, 0
	for r := 0; r < rows; r++ {
		add := row
		if inRecord > 0 {
			add++ // the comma before the row
		}
		if inRecord == per || size+add > limit {
			if inRecord > 0 {
				ends = append(ends, r)
				total += size
				largest = max(largest, size)
				n++
				size, inRecord, add = fixed+decimalLen(n), 0, row
				if total > s.opt.MaxOutputBytes {
					break // checkBytes refuses it
				}
			}
			if size+add > limit {
				ps.ends = ends
				return s.deadLetter(CodeOutputTooLarge, "one Facebook row would make a record of %d bytes with its key, above the record limit %d",
					size+add+len(s.ev.SegmentID), s.opt.MaxRecordBytes)
			}
		}
		size += add
		inRecord++
		for i := k - 1; i >= 0; i-- {
			row -= lens[starts[i]+idx[i]]
			idx[i]++
			if idx[i] < len(s.cols[i]) {
				row += lens[starts[i]+idx[i]]
				break
			}
			idx[i] = 0
			row += lens[starts[i]]
		}
	}
	if inRecord > 0 {
		ends = append(ends, rows)
		total += size
		largest = max(largest, size)
		n++
	}
	ps.ends = ends
	s.plan = recordPlan{records: n, bytes: total, maxRecord: largest + len(s.ev.SegmentID), ends: ends}
	return DeadLetter{}, true
}

// clip shortens s to at most n bytes on a rune boundary, marking the cut,
// so that a message stays bounded.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
