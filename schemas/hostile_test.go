package schemas_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/internal/hostile"
)

// TestHostileRecords runs the seeded generator of the pipeline's
// hostile-input property test (internal/hostile: good events, random bytes,
// invalid UTF-8, truncated and malformed JSON, mistyped and missing fields,
// random unicode ids, huge strings, deep nesting, amplifying events) through
// Decode and event.schema.json: both accept or both refuse every record,
// except where schemas/README.md says they cannot agree (the record's size,
// the clock, invalid UTF-8). Every record Process makes of the accepted
// ones, with the generator's fixture of connections, is valid against
// output-record.schema.json.
func TestHostileRecords(t *testing.T) {
	s := compile(t)
	fx := hostile.NewFixture()
	now := hostile.DefaultSizes().Now
	lim, opt := hostile.Limits(), hostile.Options()
	accepted, refused, outputs := 0, 0, 0
	for _, seed := range []uint64{1, 2, 3} {
		for i, rec := range hostile.Generate(seed, 600) {
			ev, err := idsync.Decode(rec.Value, now, lim)
			if beyondSchema(rec.Value, err) {
				continue
			}
			schemaErr := validate(s.event, rec.Value)
			if (err == nil) != (schemaErr == nil) {
				t.Errorf("seed %d record %d (%s): Decode error %v, schema error %v", seed, i, rec.Class, err, schemaErr)
				continue
			}
			if err != nil {
				refused++
				continue
			}
			accepted++
			lk := fx.Lookup(ev.SpaceID, ev.AudienceID)
			for _, o := range idsync.Process(ev, lk.Usable, now, opt).Outputs {
				outputs++
				if err := validate(s.output, o.Value); err != nil {
					t.Errorf("seed %d record %d (%s): output %s: %v", seed, i, rec.Class, o.MessageID, err)
				}
			}
		}
	}
	if accepted < 1000 || refused < 200 || outputs < 3000 {
		t.Fatalf("%d records accepted, %d refused, %d outputs: the generator no longer covers both sides", accepted, refused, outputs)
	}
}

// beyondSchema reports whether Decode refused raw for a reason a JSON
// Schema cannot see (schemas/README.md): the record's size, invalid UTF-8,
// or a time too far ahead of the processor's clock.
func beyondSchema(raw []byte, err error) bool {
	var de *idsync.DecodeError
	if !errors.As(err, &de) {
		return false
	}
	switch {
	case de.Code == idsync.CodeTooLarge:
		return true
	case de.Code == idsync.CodeMalformedJSON && !utf8.Valid(raw):
		return true
	case de.Code == idsync.CodeInvalidTimestamp && strings.Contains(de.Reason, "ahead of the processor's clock"):
		return true
	}
	return false
}
