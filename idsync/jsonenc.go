package idsync

import (
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// jsonBuf appends JSON to a byte slice. Output records are written with it
// rather than encoding/json: the shapes are fixed, the key order must be
// deterministic, and this is the per-record hot path. Strings are escaped as
// encoding/json does with HTML escaping off.
type jsonBuf []byte

const hexDigits = "0123456789abcdef"

// Word-at-a-time constants for plainRun: every byte 0x01, every byte 0x80,
// and every byte '"' or '\\'.
const (
	ones      = 0x0101010101010101
	highs     = 0x8080808080808080
	quotes    = '"' * ones
	backslash = '\\' * ones
)

// load8 returns s[i:i+8] as a little-endian word (the compiler makes it one
// load).
func load8(s string, i int) uint64 {
	w := s[i : i+8]
	return uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
}

// specialBytes sets the high bit of each byte of x that is below 0x20, '"'
// or '\\' (the "has zero byte" test (v - ones) & ^v & highs applied to
// x, x^quotes and x^backslash, and its "less than" form to x). A borrow can
// flag a byte wrongly only above a byte that is rightly flagged, so the
// lowest flag is always exact.
func specialBytes(x uint64) uint64 {
	q := x ^ quotes
	bs := x ^ backslash
	return ((x - 0x20*ones) & ^x & highs) | ((q - ones) & ^q & highs) | ((bs - ones) & ^bs & highs)
}

// plainRun returns how many leading bytes of s need no escaping: printable
// ASCII other than '"' and '\\'. It looks at eight bytes at a time; most
// values (ids, hashes, keys) are plain from end to end.
func plainRun(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := load8(s, i)
		if m := specialBytes(x) | x&highs; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return i
		}
	}
	return i
}

// stringEnd returns the index of the first byte at or after i that is '"',
// '\\' or below 0x20 (len(s) when there is none): where a JSON string that
// starts before i ends or needs unescaping. Bytes from 0x80 up are content.
func stringEnd(s string, i int) int {
	for ; i+8 <= len(s); i += 8 {
		if m := specialBytes(load8(s, i)); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			return i
		}
	}
	return i
}

// str appends s as a JSON string.
func (b jsonBuf) str(s string) jsonBuf {
	b = append(b, '"')
	n := plainRun(s)
	b = append(b, s[:n]...)
	if n == len(s) {
		return append(b, '"')
	}
	return append(b.escape(s[n:]), '"')
}

// strBody appends s escaped as the inside of a JSON string, without the
// quotes. Escaping works rune by rune, so the bodies of strings joined by
// an ASCII byte are the body of the joined string: the message ids are
// written that way (shaper.open).
func (b jsonBuf) strBody(s string) jsonBuf {
	n := plainRun(s)
	b = append(b, s[:n]...)
	if n == len(s) {
		return b
	}
	return b.escape(s[n:])
}

// escape appends s, which starts with a byte that needs escaping, without
// the closing quote.
func (b jsonBuf) escape(s string) jsonBuf {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// plainStr appends s, which needs no escaping (a word of a fixed set, or a
// value whose quotedLen is len(s)+2), as a JSON string.
func (b jsonBuf) plainStr(s string) jsonBuf {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// key appends "k": after a comma when the object already has members.
func (b jsonBuf) key(k string, first bool) jsonBuf {
	if !first {
		b = append(b, ',')
	}
	b = b.str(k)
	return append(b, ':')
}

// field appends "k":"v".
func (b jsonBuf) field(k, v string, first bool) jsonBuf {
	return b.key(k, first).str(v)
}

// lit appends JSON text as it is: the constant keys of the record shapes,
// written with their quotes, colon and any leading comma (`,"action":`), so
// that the hot path does not escape strings known to need no escaping.
func (b jsonBuf) lit(text string) jsonBuf { return append(b, text...) }

// litStr appends the constant text (a key with its punctuation) and then v
// as a JSON string.
func (b jsonBuf) litStr(text, v string) jsonBuf { return append(b, text...).str(v) }

// boolean appends true or false.
func (b jsonBuf) boolean(v bool) jsonBuf {
	if v {
		return append(b, "true"...)
	}
	return append(b, "false"...)
}

// int appends an integer.
func (b jsonBuf) int(v int64) jsonBuf {
	return strconv.AppendInt(b, v, 10)
}
