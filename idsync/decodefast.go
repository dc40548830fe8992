package idsync

// decodeFast fills w from raw as json.Unmarshal(raw, w) would, for the
// records that make up real traffic, in one pass and with a handful of
// allocations (encoding/json costs about as much as the rest of the hot path
// together). It reports false, leaving w in an unspecified state, whenever
// the record holds anything it does not handle exactly as encoding/json
// does; Decode then starts again with encoding/json, so that errors, their
// codes and their paths are encoding/json's (and encoding/json/v2's for a
// mistyped field), and every
// accepted record decodes to the same wire event either way.
//
// What makes it give up: a syntax error of any kind, a key that differs
// from a known one only by case (encoding/json matches keys
// case-insensitively) or that holds a backslash or a non-ASCII byte, a
// known key repeated in one object (encoding/json merges repeated objects),
// a known field of the wrong JSON type, a known string value with an
// escape, an external_ids entry that is not an object, nesting deeper than
// maxFastDepth. raw must be valid UTF-8 (Decode checks it first).
func decodeFast(raw []byte, w *wireEvent) bool {
	// One copy of the record backs every string of the event.
	d := fastDecoder{raw: raw, s: string(raw)}
	d.ws()
	if !d.consume('{') {
		return false
	}
	var seen uint32
	ok := d.object(func(key string) bool {
		f := topField(key)
		if f < 0 {
			return !foldsTo(key, topFields[:]) && d.skip(0)
		}
		if seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		switch f {
		case fMessageID:
			return d.str(&w.MessageID)
		case fTimestamp:
			return d.str(&w.Timestamp)
		case fSpaceID:
			return d.str(&w.SpaceID)
		case fComputationClass:
			return d.str(&w.ComputationClass)
		case fAudienceID:
			return d.str(&w.AudienceID)
		case fAudienceKey:
			return d.str(&w.AudienceKey)
		case fAction:
			return d.str(&w.Action)
		case fSync:
			return d.sync(&w.Sync)
		case fProfile:
			return d.profile(&w.Profile)
		case fExternalIDs:
			return d.externalIDs(&w.ExternalIDs, w.idsBuf)
		default: // fTraits
			return d.traits(&w.Traits)
		}
	})
	if !ok {
		return false
	}
	d.ws()
	return d.i == len(d.s)
}

// Known keys of the event object, in wireEvent's order.
const (
	fMessageID = iota
	fTimestamp
	fSpaceID
	fComputationClass
	fAudienceID
	fAudienceKey
	fAction
	fSync
	fProfile
	fExternalIDs
	fTraits
)

var topFields = [...]string{"message_id", "timestamp", "space_id", "computation_class", "audience_id",
	"audience_key", "action", "sync", "profile", "external_ids", "traits"}

var (
	syncFields       = []string{"id", "started_at"}
	profileFields    = []string{"segment_id"}
	externalIDFields = []string{"type", "id", "created_at"}
	traitFields      = []string{"name", "first_name", "last_name"}
)

func topField(key string) int {
	for i, f := range topFields {
		if f == key {
			return i
		}
	}
	return -1
}

func indexOf(key string, fields []string) int {
	for i, f := range fields {
		if f == key {
			return i
		}
	}
	return -1
}

// foldsTo reports whether key equals one of fields ignoring ASCII case.
// Keys reaching it are ASCII (d.key refuses others).
func foldsTo(key string, fields []string) bool {
	for _, f := range fields {
		if len(f) != len(key) {
			continue
		}
		i := 0
		for ; i < len(f); i++ {
			c := key[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != f[i] {
				break
			}
		}
		if i == len(f) {
			return true
		}
	}
	return false
}

// maxFastDepth bounds the nesting the fast path follows (encoding/json's
// own limit is 10,000; deeper records take the slow path).
const maxFastDepth = 64

type fastDecoder struct {
	raw []byte // the record
	s   string // its copy: values are substrings of it
	i   int
}

func (d *fastDecoder) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// consume skips whitespace and then c, reporting whether c was there.
func (d *fastDecoder) consume(c byte) bool {
	d.ws()
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	return false
}

// peek skips whitespace and returns the next byte (0 at the end).
func (d *fastDecoder) peek() byte {
	d.ws()
	if d.i < len(d.s) {
		return d.s[d.i]
	}
	return 0
}

// object reads the members of an object whose '{' was consumed, calling
// member with each key once the ':' is consumed; member reads the value.
func (d *fastDecoder) object(member func(key string) bool) bool {
	if d.consume('}') {
		return true
	}
	for {
		if d.peek() != '"' {
			return false
		}
		key, ok := d.key()
		if !ok || !d.consume(':') || !member(key) {
			return false
		}
		d.ws()
		if d.i >= len(d.s) {
			return false
		}
		switch d.s[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return true
		default:
			return false
		}
	}
}

// key reads an object key: plain ASCII without escapes only.
func (d *fastDecoder) key() (string, bool) {
	start := d.i + 1
	j := start + plainRun(d.s[start:])
	if j < len(d.s) && d.s[j] == '"' {
		d.i = j + 1
		return d.s[start:j], true
	}
	return "", false
}

// rawString reads a string without escapes at d.i (after whitespace) and
// returns its content.
func (d *fastDecoder) rawString() (string, bool) {
	if d.peek() != '"' {
		return "", false
	}
	start := d.i + 1
	j := stringEnd(d.s, start)
	if j < len(d.s) && d.s[j] == '"' {
		d.i = j + 1
		return d.s[start:j], true
	}
	return "", false // an escape or a control character: the slow path decides
}

// null consumes a null literal if one is next.
func (d *fastDecoder) null() bool {
	if d.peek() == 'n' && len(d.s)-d.i >= 4 && d.s[d.i:d.i+4] == "null" {
		d.i += 4
		return true
	}
	return false
}

// str reads a string field; null leaves it as it is (encoding/json's rule).
func (d *fastDecoder) str(dst *string) bool {
	if d.null() {
		return true
	}
	v, ok := d.rawString()
	*dst = v
	return ok
}

// time reads a timestamp field as wireTime.UnmarshalJSON does; a value that
// is not a string or null goes to the slow path.
func (d *fastDecoder) time(dst *wireTime) bool {
	*dst = wireTime{}
	if d.null() {
		return true
	}
	start := d.i + 1
	v, ok := d.rawString()
	if !ok {
		return false
	}
	if v == "" {
		return true
	}
	if t, ok := parseTimeZ(v); ok {
		dst.t, dst.state = t, timeValid
		return true
	}
	if err := dst.t.UnmarshalText(d.raw[start : start+len(v)]); err != nil {
		dst.state = timeInvalid
		return true
	}
	dst.t, dst.state = dst.t.UTC(), timeValid
	return true
}

func (d *fastDecoder) sync(dst *wireSync) bool {
	if d.null() {
		return true
	}
	if !d.consume('{') {
		return false
	}
	var seen uint32
	return d.object(func(key string) bool {
		f := indexOf(key, syncFields)
		switch {
		case f < 0:
			return !foldsTo(key, syncFields) && d.skip(1)
		case seen&(1<<f) != 0:
			return false
		}
		seen |= 1 << f
		if f == 0 {
			return d.str(&dst.ID)
		}
		return d.time(&dst.StartedAt)
	})
}

func (d *fastDecoder) profile(dst *wireProfile) bool {
	if d.null() {
		return true
	}
	if !d.consume('{') {
		return false
	}
	seen := false
	return d.object(func(key string) bool {
		if key != "segment_id" {
			return !foldsTo(key, profileFields) && d.skip(1)
		}
		if seen {
			return false
		}
		seen = true
		return d.str(&dst.SegmentID)
	})
}

func (d *fastDecoder) externalIDs(dst *[]wireExternalID, spare []wireExternalID) bool {
	if d.null() {
		*dst = nil
		return true
	}
	if !d.consume('[') {
		return false
	}
	ids := spare[:0] // a pooled wire event's storage (Decode), else nil
	if cap(ids) == 0 {
		ids = make([]wireExternalID, 0, 12)
	}
	if d.consume(']') {
		*dst = ids
		return true
	}
	for {
		if !d.consume('{') {
			return false
		}
		ids = append(ids, wireExternalID{})
		x := &ids[len(ids)-1]
		var seen uint32
		ok := d.object(func(key string) bool {
			f := indexOf(key, externalIDFields)
			switch {
			case f < 0:
				return !foldsTo(key, externalIDFields) && d.skip(2)
			case seen&(1<<f) != 0:
				return false
			}
			seen |= 1 << f
			switch f {
			case 0:
				return d.str(&x.Type)
			case 1:
				return d.str(&x.ID)
			}
			return d.time(&x.CreatedAt)
		})
		if !ok {
			return false
		}
		d.ws()
		if d.i >= len(d.s) {
			return false
		}
		switch d.s[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			*dst = ids
			return true
		default:
			return false
		}
	}
}

func (d *fastDecoder) traits(dst *wireTraits) bool {
	if d.null() {
		return true
	}
	if !d.consume('{') {
		return false
	}
	var seen uint32
	return d.object(func(key string) bool {
		f := indexOf(key, traitFields)
		switch {
		case f < 0:
			return !foldsTo(key, traitFields) && d.skip(1)
		case seen&(1<<f) != 0:
			return false
		}
		seen |= 1 << f
		target := [...]*looseString{&dst.Name, &dst.FirstName, &dst.LastName}[f]
		if d.peek() != '"' {
			return d.skip(1) // looseString ignores every other JSON value
		}
		v, ok := d.rawString()
		*target = looseString(v)
		return ok
	})
}

// skip validates and skips one JSON value of any kind, at nesting depth.
func (d *fastDecoder) skip(depth int) bool {
	if depth > maxFastDepth {
		return false
	}
	switch d.peek() {
	case '"':
		return d.skipString()
	case '{':
		d.i++
		return d.object(func(string) bool { return d.skip(depth + 1) })
	case '[':
		d.i++
		if d.consume(']') {
			return true
		}
		for {
			if !d.skip(depth + 1) {
				return false
			}
			d.ws()
			if d.i >= len(d.s) {
				return false
			}
			switch d.s[d.i] {
			case ',':
				d.i++
			case ']':
				d.i++
				return true
			default:
				return false
			}
		}
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	default:
		return d.number()
	}
}

func (d *fastDecoder) literal(lit string) bool {
	if len(d.s)-d.i >= len(lit) && d.s[d.i:d.i+len(lit)] == lit {
		d.i += len(lit)
		return true
	}
	return false
}

// skipString skips a string, escapes included, checking it as JSON does.
func (d *fastDecoder) skipString() bool {
	for j := d.i + 1; j < len(d.s); j++ {
		c := d.s[j]
		switch {
		case c == '"':
			d.i = j + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			j++
			if j >= len(d.s) {
				return false
			}
			switch d.s[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(d.s) {
					return false
				}
				for _, h := range []byte(d.s[j+1 : j+5]) {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				j += 4
			default:
				return false
			}
		}
	}
	return false
}

// number skips a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *fastDecoder) number() bool {
	s, i := d.s, d.i
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
	}
	d.i = i
	return true
}
