package idsync

import (
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// The phone fast path. libphonenumber's parse costs 15–40 µs (it matches a
// dozen regular expressions against every number), which made a profile's
// first event cost twice a JSON round-trip. Most numbers arrive in a few
// well-formed spellings ("+1 (650) 555-0100", "+447946000958",
// "(650) 555-0100"), for which the parse reduces to: take the digits, find
// the country calling code, check that no national prefix, trunk or IDD
// prefix is there to strip, and check the length against the region's
// possible lengths. phoneFast does exactly that with the same metadata,
// and answers only when it is sure libphonenumber would accept the number
// with the same E.164 form; anything else (letters, extensions, leading
// zeros, prefixes to strip, lengths that are not plainly possible, errors of
// any kind) goes to libphonenumber. phonefast_test.go holds it to
// libphonenumber on every region's example numbers in many spellings and
// mutations, and FuzzPhoneFast on arbitrary input.

// phoneFastMaxLen bounds the spellings the fast path reads.
const phoneFastMaxLen = 48

// phoneCC is what the fast path knows of a country calling code: the
// metadata libphonenumber checks an international number against (its main
// region's).
type phoneCC struct {
	code string // the calling code's digits
	// possible and localOnly are bit sets of national significant number
	// lengths (general description, as testNumberLength reads them).
	possible, localOnly uint32
	// prefix decides whether a national number starts with something
	// libphonenumber may strip (national prefix for parsing).
	prefix prefixMatcher
	// usable is false when the fast path must not answer for this code
	// (non-geographic entities, regions without a national number pattern).
	usable bool
}

// phoneRegionFast is what the fast path knows of a default region, for
// numbers written without '+'.
type phoneRegionFast struct {
	cc     *phoneCC      // the region's calling code (its main region's lengths)
	idd    prefixMatcher // the region's international (IDD) prefix
	prefix prefixMatcher // the region's own national prefix for parsing
	usable bool
}

// prefixMatcher reports whether a digit string starts with a pattern: a
// plain prefix when the pattern is digits only, else the anchored regular
// expression libphonenumber itself compiles.
type prefixMatcher struct {
	plain string
	re    *regexp.Regexp
}

func newPrefixMatcher(pattern string) (prefixMatcher, error) {
	if pattern == "" {
		return prefixMatcher{}, nil
	}
	if strings.Trim(pattern, "0123456789") == "" {
		return prefixMatcher{plain: pattern}, nil
	}
	re, err := regexp.Compile("^(?:" + pattern + ")")
	if err != nil {
		return prefixMatcher{}, err
	}
	return prefixMatcher{re: re}, nil
}

// matches reports whether digits start with the pattern (false for an
// empty pattern, which libphonenumber never applies).
func (m prefixMatcher) matches(digits string) bool {
	switch {
	case m.plain != "":
		return strings.HasPrefix(digits, m.plain)
	case m.re != nil:
		return m.re.MatchString(digits)
	}
	return false
}

// phoneFastData is built once from libphonenumber's own metadata.
var phoneFastData = sync.OnceValue(func() *phoneFastTables {
	t := &phoneFastTables{codes: map[int]*phoneCC{}, regions: map[string]*phoneRegionFast{}}
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		return t // no fast path: every number goes to libphonenumber
	}
	byRegion := map[string]*phonenumbers.PhoneMetadata{}
	for _, m := range coll.GetMetadata() {
		if m.GetId() != "001" {
			byRegion[m.GetId()] = m
		}
	}
	for code := range phonenumbers.GetSupportedCallingCodes() {
		cc := &phoneCC{code: strconv.Itoa(code)}
		t.codes[code] = cc
		main := phonenumbers.GetRegionCodeForCountryCode(code)
		m := byRegion[main]
		if m == nil || m.GetGeneralDesc().GetNationalNumberPattern() == "" {
			continue // non-geographic entity or no metadata: not fast
		}
		var ok bool
		if cc.possible, cc.localOnly, ok = lengthSets(m.GetGeneralDesc()); !ok {
			continue
		}
		if cc.prefix, err = newPrefixMatcher(m.GetNationalPrefixForParsing()); err != nil {
			continue
		}
		cc.usable = true
	}
	for region, m := range byRegion {
		r := &phoneRegionFast{cc: t.codes[int(m.GetCountryCode())]}
		t.regions[region] = r
		if r.cc == nil || !r.cc.usable {
			continue
		}
		if r.idd, err = newPrefixMatcher(m.GetInternationalPrefix()); err != nil {
			continue
		}
		if r.prefix, err = newPrefixMatcher(m.GetNationalPrefixForParsing()); err != nil {
			continue
		}
		r.usable = true
	}
	return t
})

type phoneFastTables struct {
	codes   map[int]*phoneCC
	regions map[string]*phoneRegionFast
}

// lengthSets returns the possible and local-only lengths of a description
// as bit sets; ok is false when a length is out of the range a national
// significant number can have (so the fast path never answers for it).
func lengthSets(d *phonenumbers.PhoneNumberDesc) (possible, localOnly uint32, ok bool) {
	for _, l := range d.GetPossibleLength() {
		if l < 2 || l > 17 {
			return 0, 0, false
		}
		possible |= 1 << l
	}
	for _, l := range d.GetPossibleLengthLocalOnly() {
		if l < 2 || l > 17 {
			return 0, 0, false
		}
		localOnly |= 1 << l
	}
	return possible, localOnly, possible != 0
}

// phoneFast returns the E.164 form of the trimmed phone s under the
// upper-case default region, when s is a well-formed spelling whose parse
// it can decide; ok is false when libphonenumber must decide (including
// every number it would refuse).
func phoneFast(s, region string) (e164 string, ok bool) {
	if len(s) < 3 || len(s) > phoneFastMaxLen {
		return "", false
	}
	var digits [phoneFastMaxLen]byte
	n := 0
	plus := s[0] == '+'
	start := 0
	if plus {
		start = 1
	}
	for i := start; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			digits[n] = c
			n++
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return "", false // letters, extensions, other signs, non-ASCII
		}
	}
	if n < 3 {
		return "", false
	}
	d := string(digits[:n]) // the one allocation besides the result
	t := phoneFastData()
	var cc *phoneCC
	var nsn string
	if plus {
		// extractCountryCode: the first 1, 2 or 3 digits that name a
		// calling code; never a leading 0.
		if d[0] == '0' {
			return "", false
		}
		for i := 1; i <= 3 && i < len(d); i++ {
			code, _ := strconv.Atoi(d[:i])
			if c, found := t.codes[code]; found {
				cc, nsn = c, d[i:]
				break
			}
		}
		if cc == nil || !cc.usable || cc.prefix.matches(nsn) {
			return "", false
		}
	} else {
		r := t.regions[region]
		if r == nil || !r.usable {
			return "", false
		}
		// No IDD to strip, no calling code of the region to consider, no
		// national prefix to strip: the digits are the national number.
		if r.idd.matches(d) || strings.HasPrefix(d, r.cc.code) || r.prefix.matches(d) {
			return "", false
		}
		cc, nsn = r.cc, d
		if cc.prefix.matches(nsn) {
			return "", false
		}
	}
	// No Italian leading zero; a plainly possible length (and not one only
	// possible locally).
	l := len(nsn)
	if l < 2 || l > 17 || nsn[0] == '0' || cc.localOnly&(1<<l) != 0 || cc.possible&(1<<l) == 0 {
		return "", false
	}
	return "+" + cc.code + nsn, true
}
