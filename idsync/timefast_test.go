package idsync

import (
	"fmt"
	"testing"
	"time"
)

// checkTimeZ checks parseTimeZ against the time package on s: when it
// answers, its time is the one Time.UnmarshalText (then UTC) and
// time.ParseInLocation(time.RFC3339Nano, s, time.UTC) give, to the last
// field of the struct; wantFast says whether it must answer.
func checkTimeZ(t *testing.T, s string, wantFast bool) {
	t.Helper()
	got, ok := parseTimeZ(s)
	gotBytes, okBytes := parseTimeZ([]byte(s))
	if ok != okBytes || got != gotBytes {
		t.Fatalf("%q: string and bytes differ: %v %v, %v %v", s, got, ok, gotBytes, okBytes)
	}
	if wantFast && !ok {
		t.Fatalf("%q: not parsed by the fast path", s)
	}
	if !ok {
		return
	}
	var text time.Time
	if err := text.UnmarshalText([]byte(s)); err != nil {
		t.Fatalf("%q: fast path gave %v, UnmarshalText refused it: %v", s, got, err)
	}
	parsed, err := time.ParseInLocation(time.RFC3339Nano, s, time.UTC)
	if err != nil {
		t.Fatalf("%q: fast path gave %v, Parse refused it: %v", s, got, err)
	}
	if got != text.UTC() || got != parsed.UTC() || got != parsed {
		t.Fatalf("%q: fast path %#v, UnmarshalText %#v, Parse %#v", s, got, text.UTC(), parsed)
	}
}

// TestParseTimeZMatchesTimePackage runs the fast path over every day of
// leap and common years at the ends of the range, and over every field
// just in and just out of its range, with and without fractions, and over
// the spellings it leaves to the time package.
func TestParseTimeZMatchesTimePackage(t *testing.T) {
	fracs := []string{"", ".0", ".1", ".12", ".123", ".999999999", ".000000001", ".123456789"}
	for _, year := range []int{0, 1, 4, 100, 400, 1600, 1900, 1969, 1970, 2000, 2024, 2025, 2100, 9999} {
		for month := 0; month <= 13; month++ {
			for day := 0; day <= 32; day++ {
				valid := month >= 1 && month <= 12 && day >= 1 && day <= time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
				for _, f := range fracs {
					checkTimeZ(t, fmt.Sprintf("%04d-%02d-%02dT12:34:56%sZ", year, month, day, f), valid)
				}
			}
		}
	}
	for _, hms := range [][3]int{{0, 0, 0}, {23, 59, 59}, {24, 0, 0}, {0, 60, 0}, {0, 0, 60}, {99, 99, 99}} {
		valid := hms[0] < 24 && hms[1] < 60 && hms[2] < 60
		checkTimeZ(t, fmt.Sprintf("2026-06-01T%02d:%02d:%02dZ", hms[0], hms[1], hms[2]), valid)
	}
	for _, s := range []string{
		"2026-06-01T12:00:00.1234567890Z", "2026-06-01T12:00:00.Z", "2026-06-01T12:00:00,5Z", "2026-06-01t12:00:00Z",
		"2026-06-01T12:00:00z", "2026-06-01T12:00:00+00:00", "2026-06-01T12:00:00-07:00", "2026-06-01 12:00:00Z",
		"2026-6-01T12:00:00Z", "+026-06-01T12:00:00Z", "2026-06-01T12:00:00.1a3Z", "2026-06-01T1:00:00Z", "2026-06-01T12:00:00",
		"2026-06-01T12:00:00ZZ", "2026-06-01T12:00:00.5ZZ", "２026-06-01T12:00:00Z", "2026-06-01T12:00:00.-5Z", "",
	} {
		checkTimeZ(t, s, false)
	}
}

// FuzzParseTimeZ checks the fast path against the time package on any
// input.
func FuzzParseTimeZ(f *testing.F) {
	for _, s := range []string{"2026-06-01T12:00:00Z", "2024-02-29T23:59:59.123456789Z", "2025-02-29T00:00:00Z", "2026-06-01T12:00:00.1Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkTimeZ(t, s, false)
	})
}
