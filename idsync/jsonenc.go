package idsync

import (
	"strconv"
	"unicode/utf8"
)

// jsonBuf appends JSON to a byte slice. Output records are written with it
// rather than encoding/json: the shapes are fixed, the key order must be
// deterministic, and this is the per-record hot path. Strings are escaped as
// encoding/json does with HTML escaping off.
type jsonBuf []byte

const hexDigits = "0123456789abcdef"

// str appends s as a JSON string.
func (b jsonBuf) str(s string) jsonBuf {
	b = append(b, '"')
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
	b = append(b, s[start:]...)
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
