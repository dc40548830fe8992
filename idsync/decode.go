package idsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// Limits bound what Decode accepts (configurable by the service). A zero or
// negative field takes its default, so Limits{} behaves as DefaultLimits().
type Limits struct {
	// MaxRecordBytes is the largest record accepted, in bytes (default 1 MiB).
	MaxRecordBytes int
	// MaxExternalIDs is the most entries external_ids may hold (default 1000).
	MaxExternalIDs int
	// MaxFutureSkew is how far ahead of the processor's clock a timestamp or
	// sync.started_at may be (default 24h); further ahead is invalid.
	MaxFutureSkew time.Duration
}

// Default limits (DESIGN.md §2).
const (
	DefaultMaxRecordBytes = 1 << 20
	DefaultMaxExternalIDs = 1000
	DefaultMaxFutureSkew  = 24 * time.Hour
)

// DefaultLimits returns the limits of DESIGN.md §2: records up to 1 MiB, up
// to 1000 external ids, timestamps at most 24 h ahead of the clock.
func DefaultLimits() Limits {
	return Limits{
		MaxRecordBytes: DefaultMaxRecordBytes,
		MaxExternalIDs: DefaultMaxExternalIDs,
		MaxFutureSkew:  DefaultMaxFutureSkew,
	}
}

// withDefaults replaces unset (zero or negative) limits by their defaults.
func (l Limits) withDefaults() Limits {
	if l.MaxRecordBytes <= 0 {
		l.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if l.MaxExternalIDs <= 0 {
		l.MaxExternalIDs = DefaultMaxExternalIDs
	}
	if l.MaxFutureSkew <= 0 {
		l.MaxFutureSkew = DefaultMaxFutureSkew
	}
	return l
}

// Reasons of decode errors. They are fixed strings: a DecodeError never
// carries a value taken from the record.
const (
	reasonRequired      = "required"
	reasonString        = "must be a string"
	reasonObject        = "must be a JSON object"
	reasonArray         = "must be a JSON array"
	reasonWrongType     = "has the wrong type"
	reasonTimestamp     = "must be an RFC 3339 timestamp"
	reasonAction        = `must be "entered" or "exited"`
	reasonClass         = `must be "audience" or "journey_step"`
	reasonEmpty         = "empty record"
	reasonInvalidUTF8   = "invalid UTF-8 at byte offset "
	reasonInvalidJSON   = "invalid JSON at byte offset "
	reasonTooLarge      = "record larger than "
	reasonTooMany       = "more entries than "
	reasonFutureSkewPre = "more than "
	reasonFutureSkewSuf = " ahead of the processor's clock"
)

// wireEvent is the JSON shape of the input event (DESIGN.md §2). Decode
// unmarshals into it once and then validates; ev and sync are not decoded:
// they share the wire struct's allocation so that a decoded event costs one
// allocation less.
type wireEvent struct {
	MessageID        string           `json:"message_id"`
	Timestamp        string           `json:"timestamp"`
	SpaceID          string           `json:"space_id"`
	ComputationClass string           `json:"computation_class"`
	AudienceID       string           `json:"audience_id"`
	AudienceKey      string           `json:"audience_key"`
	Action           string           `json:"action"`
	Sync             wireSync         `json:"sync"`
	Profile          wireProfile      `json:"profile"`
	ExternalIDs      []wireExternalID `json:"external_ids"`
	Traits           wireTraits       `json:"traits"`

	ev   Event
	sync Sync
	// idsBuf is a pooled wire event's storage for ExternalIDs, which
	// stays nil until the record has the key (validate tells "absent").
	idsBuf []wireExternalID
}

type wireSync struct {
	ID        string   `json:"id"`
	StartedAt wireTime `json:"started_at"`
}

type wireProfile struct {
	SegmentID string `json:"segment_id"`
}

type wireExternalID struct {
	Type      string   `json:"type"`
	ID        string   `json:"id"`
	CreatedAt wireTime `json:"created_at"`
}

// timeState is what a wireTime received.
type timeState uint8

const (
	timeAbsent    timeState = iota // missing, null or ""
	timeValid                      // an RFC 3339 string
	timeInvalid                    // another string
	timeNotString                  // a JSON value that is not a string
)

// wireTime parses an RFC 3339 string while the record is decoded, without
// keeping the string. It never fails the decode: validate reports its state
// with the field's path.
type wireTime struct {
	t     time.Time
	state timeState
}

// UnmarshalJSON implements json.Unmarshaler. b is a complete, syntactically
// valid JSON value.
func (w *wireTime) UnmarshalJSON(b []byte) error {
	*w = wireTime{}
	switch b[0] {
	case 'n':
		return nil
	case '"':
	default:
		w.state = timeNotString
		return nil
	}
	s := b[1 : len(b)-1]
	if bytes.IndexByte(s, '\\') >= 0 {
		// Rare: an escaped string. b is a valid JSON string, so this
		// cannot fail.
		var unquoted string
		_ = json.Unmarshal(b, &unquoted)
		s = []byte(unquoted)
	}
	if len(s) == 0 {
		return nil
	}
	// Time.UnmarshalText parses RFC 3339 (fractional seconds allowed) from
	// bytes, as time.Parse(time.RFC3339Nano, ...) does from a string.
	if err := w.t.UnmarshalText(s); err != nil {
		w.state = timeInvalid
		return nil
	}
	w.t, w.state = w.t.UTC(), timeValid
	return nil
}

// wireTraits keeps the traits idsync reads; every other trait is skipped by
// the JSON decoder without being stored.
type wireTraits struct {
	Name      looseString `json:"name"`
	FirstName looseString `json:"first_name"`
	LastName  looseString `json:"last_name"`
}

// looseString takes a JSON string and ignores any other JSON value, so that a
// trait of an unexpected type does not refuse the event.
type looseString string

// UnmarshalJSON implements json.Unmarshaler. b is a complete, syntactically
// valid JSON value (the decoder checked the whole record before decoding).
func (s *looseString) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' {
		return nil // not a string: ignored
	}
	if bytes.IndexByte(b, '\\') < 0 {
		*s = looseString(b[1 : len(b)-1])
		return nil
	}
	var v string
	if err := json.Unmarshal(b, &v); err == nil {
		*s = looseString(v)
	}
	return nil
}

// Decode parses and validates one audience-membership record (DESIGN.md §2).
// now is the processor's clock (the package reads no clock); lim bounds what
// is accepted. On failure the error is a *DecodeError carrying the
// dead-letter code and the path of the offending field; its message never
// contains a value of the record. Decode is safe for concurrent use.
//
// Where DESIGN.md is silent:
//   - JSON null counts as absent, for optional and required fields alike; an
//     empty audience_key, computation_class or sync.started_at counts as
//     absent too. Required strings are not trimmed ("  " is accepted).
//   - Event.Sync is nil unless sync has a non-empty id or started_at.
//   - Every time in the Event is in UTC; TimestampRaw keeps the original.
//   - Object keys are matched as encoding/json matches them (exact, then
//     case-insensitively). A repeated key's last occurrence wins, except that
//     an occurrence of the wrong JSON type refuses the record (timestamps
//     excepted: there only the last occurrence counts). Unknown keys are
//     ignored.
//   - external_ids[i].created_at is not checked against the clock, and
//     identifier types are not checked beyond being non-empty.
func Decode(raw []byte, now time.Time, lim Limits) (*Event, error) {
	lim = lim.withDefaults()
	if len(raw) > lim.MaxRecordBytes {
		return nil, &DecodeError{Code: CodeTooLarge, Reason: reasonTooLarge + strconv.Itoa(lim.MaxRecordBytes) + " bytes"}
	}
	// encoding/json replaces invalid UTF-8 silently; the contract refuses it.
	if !utf8.Valid(raw) {
		return nil, &DecodeError{Code: CodeMalformedJSON, Reason: reasonInvalidUTF8 + strconv.Itoa(invalidUTF8Offset(raw))}
	}
	w := getWire()
	if decodeFast(raw, w) {
		de := w.validate(now, lim)
		var ev *Event
		if de == nil {
			ev = w.event()
		}
		w.release()
		if de != nil {
			return nil, de
		}
		return ev, nil
	}
	w.release()
	// The slow path's event is the wire event's own: it is not pooled.
	w = new(wireEvent)
	err := json.Unmarshal(raw, w)
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, syntaxError(raw, se)
		}
	}
	if first := firstByte(raw); first != '{' {
		// Valid JSON but not an object ("null" decodes without error).
		return nil, &DecodeError{Code: CodeSchemaViolation, Reason: reasonObject}
	}
	if err != nil {
		return nil, typeError(raw, err)
	}
	if de := w.validate(now, lim); de != nil {
		return nil, de
	}
	return &w.ev, nil
}

// wires are the wire events of the fast path, reused: the event Decode
// returns is copied out of its wire event (event), whose external ids'
// list is then reused by the next record.
var wires = sync.Pool{New: func() any { return new(wireEvent) }}

// maxPooledWireIDs bounds the external ids' list a pooled wire event keeps.
const maxPooledWireIDs = 1024

func getWire() *wireEvent { return wires.Get().(*wireEvent) }

// release empties w, keeping its external ids' storage, and returns it to
// the pool.
func (w *wireEvent) release() {
	ids := w.ExternalIDs
	if cap(ids) < cap(w.idsBuf) {
		ids = w.idsBuf // the record had no external ids
	}
	if cap(ids) > maxPooledWireIDs {
		ids = nil
	}
	clear(ids[:cap(ids)]) // no record's strings pinned
	*w = wireEvent{idsBuf: ids[:0]}
	wires.Put(w)
}

// event returns a copy of the event validate filled, in an allocation of
// its own (with its sync).
func (w *wireEvent) event() *Event {
	e := &struct {
		ev   Event
		sync Sync
	}{ev: w.ev, sync: w.sync}
	if e.ev.Sync != nil {
		e.ev.Sync = &e.sync
	}
	return &e.ev
}

// validate checks the decoded wire event and fills w.ev. Fields are checked in
// a fixed order, the first problem is reported.
func (w *wireEvent) validate(now time.Time, lim Limits) *DecodeError {
	ev := &w.ev
	if w.MessageID == "" {
		return schemaError("message_id", reasonRequired)
	}
	ev.MessageID = w.MessageID

	if w.Timestamp == "" {
		return schemaError("timestamp", reasonRequired)
	}
	ts, de := parseTimestamp("timestamp", w.Timestamp)
	if de != nil {
		return de
	}
	if de := checkSkew("timestamp", ts, now, lim.MaxFutureSkew); de != nil {
		return de
	}
	ev.Timestamp, ev.TimestampRaw = ts.UTC(), w.Timestamp

	if w.SpaceID == "" {
		return schemaError("space_id", reasonRequired)
	}
	ev.SpaceID = w.SpaceID

	switch w.ComputationClass {
	case "", ClassAudience:
		ev.ComputationClass = ClassAudience
	case ClassJourneyStep:
		ev.ComputationClass = ClassJourneyStep
	default:
		return schemaError("computation_class", reasonClass)
	}

	if w.AudienceID == "" {
		return schemaError("audience_id", reasonRequired)
	}
	ev.AudienceID = w.AudienceID
	ev.AudienceKey = w.AudienceKey
	if ev.AudienceKey == "" {
		ev.AudienceKey = w.AudienceID
	}

	switch Action(w.Action) {
	case ActionEntered:
		ev.Action = ActionEntered
	case ActionExited:
		ev.Action = ActionExited
	case "":
		return schemaError("action", reasonRequired)
	default:
		return schemaError("action", reasonAction)
	}

	switch st := &w.Sync.StartedAt; st.state {
	case timeNotString:
		return schemaError("sync.started_at", reasonString)
	case timeInvalid:
		return &DecodeError{Code: CodeInvalidTimestamp, Field: "sync.started_at", Reason: reasonTimestamp}
	case timeValid:
		if de := checkSkew("sync.started_at", st.t, now, lim.MaxFutureSkew); de != nil {
			return de
		}
		w.sync.StartedAt = st.t
	}
	if w.Sync.ID != "" || w.Sync.StartedAt.state != timeAbsent {
		w.sync.ID = w.Sync.ID
		ev.Sync = &w.sync
	}

	if w.Profile.SegmentID == "" {
		return schemaError("profile.segment_id", reasonRequired)
	}
	ev.SegmentID = w.Profile.SegmentID

	if w.ExternalIDs == nil {
		return schemaError("external_ids", reasonRequired)
	}
	if len(w.ExternalIDs) > lim.MaxExternalIDs {
		return schemaError("external_ids", reasonTooMany+strconv.Itoa(lim.MaxExternalIDs))
	}
	ids := make([]ExternalID, len(w.ExternalIDs))
	for i := range w.ExternalIDs {
		x := &w.ExternalIDs[i]
		switch {
		case x.Type == "":
			return schemaError(indexPath("external_ids", i, "type"), reasonRequired)
		case x.ID == "":
			return schemaError(indexPath("external_ids", i, "id"), reasonRequired)
		case x.CreatedAt.state == timeAbsent:
			return schemaError(indexPath("external_ids", i, "created_at"), reasonRequired)
		case x.CreatedAt.state == timeNotString:
			return schemaError(indexPath("external_ids", i, "created_at"), reasonString)
		case x.CreatedAt.state == timeInvalid:
			return &DecodeError{Code: CodeInvalidTimestamp, Field: indexPath("external_ids", i, "created_at"), Reason: reasonTimestamp}
		}
		ids[i] = ExternalID{Type: x.Type, ID: x.ID, CreatedAt: x.CreatedAt.t}
	}
	ev.ExternalIDs = ids

	ev.Traits = Traits{
		Name:      string(w.Traits.Name),
		FirstName: string(w.Traits.FirstName),
		LastName:  string(w.Traits.LastName),
	}
	return nil
}

func schemaError(field, reason string) *DecodeError {
	return &DecodeError{Code: CodeSchemaViolation, Field: field, Reason: reason}
}

// parseTimestamp parses an RFC 3339 timestamp (fractional seconds allowed).
// The error names the field only: time's own message quotes the value.
func parseTimestamp(field, s string) (time.Time, *DecodeError) {
	if t, ok := parseTimeZ(s); ok {
		return t, nil
	}
	t, err := time.ParseInLocation(time.RFC3339Nano, s, time.UTC)
	if err != nil {
		return time.Time{}, &DecodeError{Code: CodeInvalidTimestamp, Field: field, Reason: reasonTimestamp}
	}
	return t, nil
}

// checkSkew refuses a time more than skew ahead of now.
func checkSkew(field string, t, now time.Time, skew time.Duration) *DecodeError {
	if t.Sub(now) > skew {
		return &DecodeError{Code: CodeInvalidTimestamp, Field: field, Reason: reasonFutureSkewPre + skew.String() + reasonFutureSkewSuf}
	}
	return nil
}

// indexPath returns "array[i].field".
func indexPath(array string, i int, field string) string {
	return array + "[" + strconv.Itoa(i) + "]." + field
}

// firstByte returns the first byte of raw that is not JSON whitespace, or 0.
func firstByte(raw []byte) byte {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

// invalidUTF8Offset returns the offset of the first invalid UTF-8 sequence
// (len(raw) when there is none).
func invalidUTF8Offset(raw []byte) int {
	i := 0
	for i < len(raw) {
		r, n := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && n == 1 {
			break
		}
		i += n
	}
	return i
}

// syntaxError turns encoding/json's syntax error into a DecodeError. The
// stdlib message quotes the offending character, so only the offset is kept.
func syntaxError(raw []byte, se *json.SyntaxError) *DecodeError {
	if firstByte(raw) == 0 {
		return &DecodeError{Code: CodeMalformedJSON, Reason: reasonEmpty}
	}
	return &DecodeError{Code: CodeMalformedJSON, Reason: reasonInvalidJSON + strconv.FormatInt(se.Offset, 10)}
}

// typeError is the slow path, taken only when the record is a syntactically
// valid JSON object with a field of the wrong type. encoding/json does not
// report array indexes, so the record is decoded again with encoding/json/v2
// (github.com/go-json-experiment/json), whose semantic errors carry the
// JSON Pointer of the first mistyped field in document order. Keys match as
// encoding/json matches them (case-insensitively, a repeated key's every
// occurrence checked), and the path names each member by its canonical
// name, never by the key as received.
func typeError(raw []byte, err error) *DecodeError {
	var w wireEvent
	v2err := jsonv2.Unmarshal(raw, &w, typeErrorOptions)
	var se *jsonv2.SemanticError
	if errors.As(v2err, &se) && se.GoType != nil {
		if field, ok := fieldPath(se.JSONPointer); ok {
			return schemaError(field, typeReason(se.GoType))
		}
	}
	// Not expected (a differential fuzz against the former walker found
	// no such record): should encoding/json and v2 ever disagree on a
	// record, encoding/json's path, without array indexes, is reported.
	field := ""
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		field = ute.Field
	}
	return schemaError(field, reasonWrongType)
}

// typeErrorOptions make encoding/json/v2 match keys and repeated keys as
// encoding/json does: case-insensitively as strings.EqualFold does (v2
// would also ignore '_' and '-'), every occurrence of a repeated key
// decoded.
var typeErrorOptions = jsonv2.JoinOptions(
	jsonv2.MatchCaseInsensitiveNames(true),
	jsonv1.MatchCaseSensitiveDelimiter(true),
	jsontext.AllowDuplicateNames(true),
)

// typeReason says what a field of Go type t must be.
func typeReason(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return reasonString
	case reflect.Slice:
		return reasonArray
	case reflect.Struct:
		return reasonObject
	}
	return reasonWrongType
}

// wireEventType is the Go type fieldPath walks.
var wireEventType = reflect.TypeFor[wireEvent]()

// fieldPath turns the JSON Pointer of a field of wireEvent into Decode's
// path ("external_ids[2].type"), each member named by its json tag (keys
// match case-insensitively, so the pointer may hold another case). It
// reports false for a pointer that does not lead to a field.
func fieldPath(ptr jsontext.Pointer) (string, bool) {
	var b strings.Builder
	t := wireEventType
	for tok := range ptr.Tokens() {
		switch t.Kind() {
		case reflect.Slice:
			if _, err := strconv.Atoi(tok); err != nil {
				return "", false
			}
			b.WriteString("[" + tok + "]")
			t = t.Elem()
		case reflect.Struct:
			name, typ, ok := jsonField(t, tok)
			if !ok {
				return "", false
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(name)
			t = typ
		default:
			return "", false
		}
	}
	return b.String(), true
}

// jsonField returns the json name and the type of the field of struct t
// that key names, exactly or else as strings.EqualFold matches it.
func jsonField(t reflect.Type, key string) (name string, typ reflect.Type, ok bool) {
	for i := range t.NumField() {
		n, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		switch {
		case n == "" || n == "-":
		case n == key:
			return n, t.Field(i).Type, true
		case !ok && strings.EqualFold(n, key):
			name, typ, ok = n, t.Field(i).Type, true
		}
	}
	return name, typ, ok
}
