package idsync

import (
	"encoding/json"
	"strings"
	"testing"
)

// stringEndOneByteAtATime is what stringEnd must return.
func stringEndOneByteAtATime(s string, i int) int {
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			return i
		}
	}
	return i
}

// strOneByteAtATime is the byte-by-byte escaper that str's word-at-a-time
// scan must agree with.
func strOneByteAtATime(s string) string {
	return string(append(jsonBuf{'"'}.escape(s), '"'))
}

// TestJSONStringWordScan puts every byte that needs escaping, and a few
// that do not, at every position of a string long enough to cross several
// eight-byte words, and checks str against the byte-by-byte escaper and
// against a decoder.
func TestJSONStringWordScan(t *testing.T) {
	specials := []string{"\"", "\\", "\x00", "\x1f", "\n", "\x7f", " ", "~", "!", "#", "[", "]", "é", "\xff", "\u2028", "日"}
	base := "abcdefghijklmnopqrstuvwxyz0123"
	for _, sp := range specials {
		for at := 0; at <= len(base); at++ {
			s := base[:at] + sp + base[at:]
			got := string(jsonBuf(nil).str(s))
			if want := strOneByteAtATime(s); got != want {
				t.Fatalf("%q: word scan wrote %s, byte scan %s", s, got, want)
			}
			for from := range 3 {
				if got, want := stringEnd(s, from), stringEndOneByteAtATime(s, from); got != want {
					t.Fatalf("stringEnd(%q, %d) = %d, want %d", s, from, got, want)
				}
			}
			var back string
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Fatalf("%q: %s is not a JSON string: %v", s, got, err)
			}
			if back != strings.ToValidUTF8(s, "\ufffd") {
				t.Fatalf("%q: decodes to %q", s, back)
			}
		}
	}
	for _, tc := range []struct {
		s    string
		want int
	}{
		{"", 0}, {"abc", 3}, {"abcdefgh", 8}, {"abcdefgh\"", 8}, {"\"abcdefgh", 0},
		{"abcdefg\x1f", 7}, {"abcdefghijklmnop", 16}, {"abcdefghijk\\lmnop", 11}, {"ab\x80", 2},
		// bytes just around the ranges: 0x20 and 0x7e are plain, 0x21 and
		// 0x5b/0x5d sit beside '"' and '\\'.
		{" ~!#[]\x7e\x20 !~", 11},
	} {
		if got := plainRun(tc.s); got != tc.want {
			t.Errorf("plainRun(%q) = %d, want %d", tc.s, got, tc.want)
		}
	}
}

// FuzzJSONString checks str against the byte-by-byte escaper on any input.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "0123456789abcdef0123456789abcdef", `a"b\c`, "x\x00y", "é\xffz", "\u2029"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(jsonBuf(nil).str(s)), strOneByteAtATime(s); got != want {
			t.Fatalf("%q: word scan wrote %s, byte scan %s", s, got, want)
		}
		if got, want := stringEnd(s, 0), stringEndOneByteAtATime(s, 0); got != want {
			t.Fatalf("stringEnd(%q, 0) = %d, want %d", s, got, want)
		}
		checkPlainWhenQuotedLen(t, s)
	})
}

// checkPlainWhenQuotedLen checks what the shaper relies on to write a
// selected value without escaping it again (shaper.value): a string whose
// quotedLen is its length plus two is written by str exactly as plainStr
// writes it, and quotedLen is str's length; and the body of a string
// joined by an ASCII byte is the join of the bodies (the message ids).
func checkPlainWhenQuotedLen(t *testing.T, s string) {
	t.Helper()
	str := string(jsonBuf(nil).str(s))
	if quotedLen(s) != len(str) {
		t.Fatalf("quotedLen(%q) = %d, str wrote %d bytes", s, quotedLen(s), len(str))
	}
	if quotedLen(s) == len(s)+2 && str != string(jsonBuf(nil).plainStr(s)) {
		t.Fatalf("%q: quoted length %d, but str wrote %s", s, quotedLen(s), str)
	}
	for cut := 0; cut <= len(s); cut++ {
		joined := string(jsonBuf(nil).strBody(s[:cut] + ":" + s[cut:]))
		parts := string(append(jsonBuf(nil).strBody(s[:cut]), ':')) + string(jsonBuf(nil).strBody(s[cut:]))
		if joined != parts {
			t.Fatalf("%q cut at %d: body %s, bodies joined %s", s, cut, joined, parts)
		}
	}
}

// TestPlainWhenQuotedLen runs checkPlainWhenQuotedLen on the strings that
// need escaping and those that do not but are not ASCII.
func TestPlainWhenQuotedLen(t *testing.T) {
	for _, s := range []string{"", "plain", "é", "日本", "a\u2028b", "\u2028", "\u2029x", "\xff", "\xe2\x80", "x\x00", "\"", "\\", "\x7f",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "jane@work.com", "\xc3"} {
		checkPlainWhenQuotedLen(t, s)
	}
}
