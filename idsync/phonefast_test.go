package idsync

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// The phone fast path must never disagree with libphonenumber: whenever it
// answers, libphonenumber accepts the number with the same E.164 form.

// phoneTypes are the number types whose example numbers the generated set
// starts from.
var phoneTypes = []phonenumbers.PhoneNumberType{
	phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE, phonenumbers.PREMIUM_RATE,
	phonenumbers.SHARED_COST, phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER, phonenumbers.PAGER,
	phonenumbers.UAN, phonenumbers.VOICEMAIL,
}

// phoneSpellings writes a number the ways people and systems write it, and
// a few ways they mistype it.
func phoneSpellings(num *phonenumbers.PhoneNumber, region string, r *rand.Rand) []string {
	e164 := phonenumbers.Format(num, phonenumbers.E164)
	intl := phonenumbers.Format(num, phonenumbers.INTERNATIONAL)
	national := phonenumbers.Format(num, phonenumbers.NATIONAL)
	nsn := phonenumbers.GetNationalSignificantNumber(num)
	cc := fmt.Sprint(num.GetCountryCode())
	ndd := phonenumbers.GetNddPrefixForRegion(region, true)
	digitsOnly := phonenumbers.NormalizeDigitsOnly(national)
	sep := func(s string, seps string) string {
		var b strings.Builder
		for i, c := range s {
			if i > 0 && r.IntN(3) == 0 {
				b.WriteByte(seps[r.IntN(len(seps))])
			}
			b.WriteRune(c)
		}
		return b.String()
	}
	out := []string{
		e164, intl, national, digitsOnly, nsn,
		"+" + cc + " " + nsn, "+" + cc + "-" + sep(nsn, "-. "), "+" + cc + " (" + nsn[:min(3, len(nsn))] + ") " + nsn[min(3, len(nsn)):],
		"(" + nsn[:min(3, len(nsn))] + ") " + sep(nsn[min(3, len(nsn)):], "- ."),
		sep(e164, " -.()"), sep(nsn, " -.()"), sep(digitsOnly, " -."),
		ndd + nsn, ndd + " " + nsn, "+" + cc + ndd + nsn, "+" + cc + " (" + ndd + ") " + nsn,
		"00" + cc + nsn, "011" + cc + nsn, "011 " + cc + " " + nsn, cc + nsn, cc + " " + nsn,
		"0" + nsn, "+0" + nsn, "+" + cc + "0" + nsn, "00" + nsn,
		e164[:len(e164)-1], e164 + "1", e164 + "12", nsn[:max(1, len(nsn)-2)], nsn + "999",
		e164 + " ext. 123", e164 + " x12", e164 + "#", e164 + ";ext=9", intl + " extension 7", national + " x 99",
		"++" + cc + nsn, "+ " + cc + " " + nsn, "(+" + cc + ") " + nsn, "+" + cc + "/" + nsn, e164 + ")", "(" + e164,
		"tel:" + e164, "+" + cc + " " + nsn[:1] + "A" + nsn[1:], "1-800-FLOWERS", "+" + cc + " ١٢٣" + nsn,
		"+" + strings.Repeat(cc, 5), "+1" + nsn, "+44" + nsn, "+49" + nsn, "+7" + nsn, "+86" + nsn, "+91" + nsn, "+39" + nsn,
	}
	return out
}

// slowOutcome is libphonenumber's verdict as the normalizer uses it.
func slowOutcome(s, region string) (string, bool) {
	e, err := parsePhoneSlow(s, region)
	return e, err == nil
}

func TestPhoneFastAgreesWithLibphonenumber(t *testing.T) {
	regions := make([]string, 0, 300)
	for reg := range phonenumbers.GetSupportedRegions() {
		regions = append(regions, reg)
	}
	sort.Strings(regions)
	defaults := []string{"US", "GB", "DE", "FR", "IT", "BR", "AR", "MX", "IN", "CN", "JP", "RU", "AU", "CA", "ES", "NL"}
	r := rand.New(rand.NewPCG(7, 11))
	var total, fast int
	e164Total, e164Fast := 0, 0
	check := func(s, region string, isE164 bool) {
		total++
		got, ok := phoneFast(s, region)
		want, wantOK := slowOutcome(s, region)
		if isE164 && wantOK {
			e164Total++
		}
		if !ok {
			return
		}
		fast++
		if isE164 {
			e164Fast++
		}
		if !wantOK || got != want {
			t.Errorf("phoneFast(%q, %s) = %s; libphonenumber: %q accepted=%v", s, region, got, want, wantOK)
		}
	}
	examples := 0
	for _, region := range regions {
		for _, typ := range phoneTypes {
			num := phonenumbers.GetExampleNumberForType(region, typ)
			if num == nil {
				continue
			}
			examples++
			parseIn := []string{region, defaults[r.IntN(len(defaults))], defaults[r.IntN(len(defaults))]}
			if testing.Short() {
				parseIn = parseIn[:1]
			}
			for i, s := range phoneSpellings(num, region, r) {
				for _, def := range parseIn {
					check(s, def, i == 0)
				}
			}
		}
	}
	if examples < 500 {
		t.Fatalf("only %d example numbers", examples)
	}
	t.Logf("%d example numbers of %d regions; %d spellings checked, %d answered by the fast path (%.0f %%); E.164 spellings answered: %d of %d accepted",
		examples, len(regions), total, fast, 100*float64(fast)/float64(total), e164Fast, e164Total)
	// The fast path must stay useful: most E.164 numbers are its to answer.
	if e164Fast < e164Total*8/10 {
		t.Errorf("the fast path answers %d of %d accepted E.164 numbers, want at least 80 %%", e164Fast, e164Total)
	}
}

// TestPhoneFastCommonSpellings: the spellings of the benchmark and of real
// traffic are answered by the fast path, and correctly.
func TestPhoneFastCommonSpellings(t *testing.T) {
	tests := []struct{ in, region, want string }{
		{"+1 (650) 555-0100", "US", "+16505550100"},
		{"(650) 555-0100", "US", "+16505550100"},
		{"650.555.0100", "US", "+16505550100"},
		{"+16505550100", "DE", "+16505550100"},
		{"+44 20 7946 0958", "US", "+442079460958"},
		{"+44 7700 900123", "GB", "+447700900123"},
		{"+49 30 901820", "US", "+4930901820"},
		{"030 901820", "DE", ""},          // national prefix: libphonenumber's
		{"1 650 555 0100", "US", ""},      // trunk prefix: libphonenumber's
		{"011 44 20 7946 0958", "US", ""}, // IDD: libphonenumber's
		{"+39 06 6982 0000", "US", ""},    // Italian leading zero: libphonenumber's
		{"+1 650 555 0100 x12", "US", ""}, // extension: libphonenumber's
		{"555-0100", "US", ""},            // local only: refused by libphonenumber
	}
	for _, tc := range tests {
		got, ok := phoneFast(tc.in, tc.region)
		if tc.want == "" {
			if ok {
				t.Errorf("phoneFast(%q, %s) answered %s; it must leave it to libphonenumber", tc.in, tc.region, got)
			}
			continue
		}
		if !ok || got != tc.want {
			t.Errorf("phoneFast(%q, %s) = %q, %v; want %q", tc.in, tc.region, got, ok, tc.want)
		}
		if slow, _ := slowOutcome(tc.in, tc.region); slow != tc.want {
			t.Errorf("libphonenumber gives %q for %q", slow, tc.in)
		}
	}
}

// FuzzPhoneFast: on any input and default region, an answer of the fast
// path is libphonenumber's.
func FuzzPhoneFast(f *testing.F) {
	for _, s := range []string{"+1 (650) 555-0100", "(650) 555-0100", "+44 20 7946 0958", "+39 06 6982 0000", "0049 30 901820",
		"+7 912 345-67-89", "+86 10 1234 5678", "+55 11 91234-5678", "+54 9 11 1234-5678", "+52 1 55 1234 5678", "+800 1234 5678"} {
		for i := range 4 {
			f.Add(s, uint8(i))
		}
	}
	regions := []string{"US", "GB", "DE", "IT", "BR", "AR", "MX", "IN", "RU", "CN", "JP", "KR", "FR", "AU", "CA", "ZZ"}
	f.Fuzz(func(t *testing.T, s string, reg uint8) {
		region := regions[int(reg)%len(regions)]
		got, ok := phoneFast(s, region)
		if !ok {
			return
		}
		want, wantOK := slowOutcome(s, region)
		if !wantOK || got != want {
			t.Fatalf("phoneFast(%q, %s) = %s; libphonenumber: %q accepted=%v", s, region, got, want, wantOK)
		}
	})
}
