package idsync

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// normalizeVector is one line of testdata/normalize/vectors.jsonl, written by
// testdata/normalize/gen.py from an independent oracle (Python phonenumbers
// and hashlib).
type normalizeVector struct {
	Class   string          `json:"class"`
	Type    DestinationType `json:"type"`
	Key     string          `json:"key"`
	Region  string          `json:"region"`
	Raw     string          `json:"raw"`
	Want    string          `json:"want"`
	Invalid bool            `json:"invalid"`
	Note    string          `json:"note"`
}

func loadNormalizeVectors(tb testing.TB) []normalizeVector {
	tb.Helper()
	f, err := os.Open(filepath.Join("testdata", "normalize", "vectors.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var vs []normalizeVector
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var v normalizeVector
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			tb.Fatalf("vectors.jsonl:%d: %v", line, err)
		}
		if v.Region == "" {
			v.Region = "US"
		}
		vs = append(vs, v)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return vs
}

// normalizerCase is one (type, key, region) combination a test runs.
type normalizerCase struct {
	dt     DestinationType
	key    string
	region string
	hashed bool
}

// allNormalizerCases covers every normalizer NormalizerFor can return, plus
// pass-through keys of every type.
var allNormalizerCases = []normalizerCase{
	{FacebookCustomAudiences, "EMAIL", "US", true},
	{FacebookCustomAudiences, "PHONE", "US", true},
	{FacebookCustomAudiences, "PHONE", "GB", true},
	{FacebookCustomAudiences, "MADID", "US", false},
	{FacebookCustomAudiences, "EXTERN_ID", "US", false},
	{GoogleAdsRemarketingLists, "hashed_email", "US", true},
	{GoogleAdsRemarketingLists, "hashed_phone_number", "US", true},
	{GoogleAdsRemarketingLists, "hashed_phone_number", "DE", true},
	{GoogleAdsRemarketingLists, "mobile_id", "US", false},
	{GoogleAdsRemarketingLists, "third_party_user_id", "US", false},
	{Iterable, "email", "US", false},
	{Zendesk, "external_id", "US", false},
	{Webhook, "userId", "US", false},
	{Webhook, "EMAIL", "US", false},
}

// isHashedKey says whether the key's non-empty outputs are SHA-256 hex.
func isHashedKey(dt DestinationType, key string) bool {
	switch dt {
	case FacebookCustomAudiences:
		return key == "EMAIL" || key == "PHONE"
	case GoogleAdsRemarketingLists:
		return key == "hashed_email" || key == "hashed_phone_number"
	}
	return false
}

func isLowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// knownNormalizeErrors are every error a NormalizeFunc may return: fixed
// messages, so none can carry a value.
var knownNormalizeErrors = []error{errEmailNoAt, errPhoneParse, errPhoneNotPossible}

func checkNormalizeError(t *testing.T, err error, raw string) {
	t.Helper()
	if !errors.Is(err, ErrInvalidIdentifier) {
		t.Errorf("error %q does not wrap ErrInvalidIdentifier", err)
	}
	known := false
	for _, k := range knownNormalizeErrors {
		if err == k {
			known = true
		}
	}
	if !known {
		t.Errorf("error %q is not one of the fixed normalize errors", err)
	}
	// A fixed message cannot carry a value; a value that happens to be a word
	// of the messages ("phone") is no leak.
	if s := strings.TrimSpace(raw); s != "" && strings.Contains(err.Error(), s) && !inFixedMessages(s) {
		t.Errorf("error %q contains the raw value %q", err, raw)
	}
}

func inFixedMessages(s string) bool {
	for _, k := range knownNormalizeErrors {
		if strings.Contains(k.Error(), s) {
			return true
		}
	}
	return false
}

func TestNormalizeVectors(t *testing.T) {
	vs := loadNormalizeVectors(t)
	count := map[string]map[string]bool{}
	for _, v := range vs {
		if count[v.Class] == nil {
			count[v.Class] = map[string]bool{}
		}
		count[v.Class][v.Raw+"\x00"+v.Region] = true
		got, err := NormalizerFor(v.Type, v.Key, v.Region)(v.Raw)
		switch {
		case v.Invalid && err == nil:
			t.Errorf("%s %s region %s %q (%s): got %q, want an invalid-identifier error", v.Type, v.Key, v.Region, v.Raw, v.Note, got)
		case v.Invalid:
			checkNormalizeError(t, err, v.Raw)
			if got != "" {
				t.Errorf("%s %s %q: error with non-empty value %q", v.Type, v.Key, v.Raw, got)
			}
		case err != nil:
			t.Errorf("%s %s region %s %q (%s): unexpected error %v", v.Type, v.Key, v.Region, v.Raw, v.Note, err)
		case got != v.Want:
			t.Errorf("%s %s region %s %q (%s): got %q, want %q", v.Type, v.Key, v.Region, v.Raw, v.Note, got, v.Want)
		}
	}
	// The brief asks for at least 30 email and 30 phone inputs.
	if n := len(count["email"]); n < 30 {
		t.Errorf("only %d email inputs in vectors.jsonl", n)
	}
	if n := len(count["phone"]); n < 30 {
		t.Errorf("only %d phone inputs in vectors.jsonl", n)
	}
}

// TestNormalizeKnownVectors pins the two published vectors independently of
// the vector file.
func TestNormalizeKnownVectors(t *testing.T) {
	tests := []struct {
		dt       DestinationType
		key, raw string
		want     string
		region   string
	}{
		{FacebookCustomAudiences, "EMAIL", "Person@Example.com", "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345", "US"},
		{GoogleAdsRemarketingLists, "hashed_email", " person@example.com ", "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345", "US"},
		{FacebookCustomAudiences, "PHONE", "+44 844 412 4653", "dc008fda46e2e64002cf2f82a4906236282d431c4f75e5b60bfe79fc48546383", "US"},
		{FacebookCustomAudiences, "PHONE", "0844 412 4653", "dc008fda46e2e64002cf2f82a4906236282d431c4f75e5b60bfe79fc48546383", "gb"},
		// SHA-256 of "+442079460958" and "442079460958".
		{GoogleAdsRemarketingLists, "hashed_phone_number", "+44 (0)20 7946 0958", "f0bf0228144d9fe2bdf1da2d8ca698f17bf1410ee688b075c27062e47b6f0b6d", "US"},
		{FacebookCustomAudiences, "PHONE", "+44 (0)20 7946 0958", "35e206e5dec4c89b9e8b71b8c32724a5bb518483ac5a20c6617d738375b3b823", "US"},
	}
	for _, tt := range tests {
		got, err := NormalizerFor(tt.dt, tt.key, tt.region)(tt.raw)
		if err != nil || got != tt.want {
			t.Errorf("%s %s %q: got %q, %v; want %q", tt.dt, tt.key, tt.raw, got, err, tt.want)
		}
	}
}

// TestNormalizeIdempotent: normalize(normalize(x)) == normalize(x) for every
// vector's raw value under every normalizer.
func TestNormalizeIdempotent(t *testing.T) {
	vs := loadNormalizeVectors(t)
	for _, c := range allNormalizerCases {
		norm := NormalizerFor(c.dt, c.key, c.region)
		for _, v := range vs {
			once, err := norm(v.Raw)
			if err != nil {
				checkNormalizeError(t, err, v.Raw)
				continue
			}
			twice, err := norm(once)
			if err != nil || twice != once {
				t.Errorf("%s %s %q: normalize once %q, twice %q, %v", c.dt, c.key, v.Raw, once, twice, err)
			}
			if c.hashed && once != "" && !isLowerHex64(once) {
				t.Errorf("%s %s %q: hashed output %q is not 64 lower-hex", c.dt, c.key, v.Raw, once)
			}
		}
	}
}

// TestNormalizeErrorsOmitValue: errors never carry the value, even for values
// made to look like messages.
func TestNormalizeErrorsOmitValue(t *testing.T) {
	raws := []string{
		"secret.person.example.com",
		"SECRET@",
		"@secret-domain.example",
		"secret-phone-abc",
		"+999 123 4567",
		"0044 20 7946 0958",
		"12345",
		"phone: not parseable as a phone number",
		"invalid identifier",
	}
	for _, c := range allNormalizerCases {
		if !c.hashed {
			continue
		}
		norm := NormalizerFor(c.dt, c.key, c.region)
		for _, raw := range raws {
			_, err := norm(raw)
			if err == nil {
				continue
			}
			if !errors.Is(err, ErrInvalidIdentifier) {
				t.Errorf("%s %s: %v does not wrap ErrInvalidIdentifier", c.dt, c.key, err)
			}
			if raw != "invalid identifier" && raw != "phone: not parseable as a phone number" &&
				strings.Contains(err.Error(), raw) {
				t.Errorf("%s %s: error %q contains the value", c.dt, c.key, err)
			}
		}
	}
	for _, k := range knownNormalizeErrors {
		if !errors.Is(k, ErrInvalidIdentifier) {
			t.Errorf("%v does not wrap ErrInvalidIdentifier", k)
		}
	}
}

// TestNormalizeEmailRules spells out the rules that differ by type, beside
// the golden file.
func TestNormalizeEmailRules(t *testing.T) {
	fb := NormalizerFor(FacebookCustomAudiences, "EMAIL", "US")
	g := NormalizerFor(GoogleAdsRemarketingLists, "hashed_email", "US")
	same := func(a, b NormalizeFunc, x, y string) bool {
		ha, errA := a(x)
		hb, errB := b(y)
		return errA == nil && errB == nil && ha == hb
	}
	if !same(g, g, "Jane.Doe@gmail.com", "janedoe@gmail.com") {
		t.Error("google: gmail dots not removed")
	}
	if !same(g, g, "J.ane@googlemail.com", "jane@googlemail.com") {
		t.Error("google: googlemail dots not removed")
	}
	if same(fb, fb, "Jane.Doe@gmail.com", "janedoe@gmail.com") {
		t.Error("facebook: gmail dots removed")
	}
	if same(g, g, "jane.doe@example.com", "janedoe@example.com") {
		t.Error("google: dots removed for another domain")
	}
	if same(g, g, "jane+x@gmail.com", "jane@gmail.com") {
		t.Error("google: plus-addressing removed")
	}
	if !same(fb, g, "Jane@Work.com ", "jane@work.com") {
		t.Error("facebook and google differ on a non-gmail address")
	}
}

func TestValidPhoneRegion(t *testing.T) {
	for _, r := range []string{"US", "GB", "de", "Fr", "IT", "JP"} {
		if !ValidPhoneRegion(r) {
			t.Errorf("ValidPhoneRegion(%q) = false", r)
		}
	}
	for _, r := range []string{"", "ZZ", "XX", "USA", "001", "uk"} {
		if ValidPhoneRegion(r) {
			t.Errorf("ValidPhoneRegion(%q) = true", r)
		}
	}
}

// TestNormalizePhoneUnknownRegion: with an unknown default region, national
// numbers are refused and international ones still parse.
func TestNormalizePhoneUnknownRegion(t *testing.T) {
	norm := NormalizerFor(GoogleAdsRemarketingLists, "hashed_phone_number", "ZZ")
	if _, err := norm("650-555-0100"); !errors.Is(err, ErrInvalidIdentifier) {
		t.Errorf("national number without a region: err = %v", err)
	}
	want, _ := NormalizerFor(GoogleAdsRemarketingLists, "hashed_phone_number", "US")("+1 650 555 0100")
	if got, err := norm("+1 650 555 0100"); err != nil || got != want {
		t.Errorf("international number: got %q, %v; want %q", got, err, want)
	}
}

// TestNormalizeAllocs guards the hot path: one allocation (the result) for
// a hashed email, none for already-normalized plain or hashed values.
func TestNormalizeAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	fb := NormalizerFor(FacebookCustomAudiences, "EMAIL", "US")
	g := NormalizerFor(GoogleAdsRemarketingLists, "hashed_email", "US")
	madid := NormalizerFor(FacebookCustomAudiences, "MADID", "US")
	hashed := "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345"
	tests := []struct {
		name string
		f    func()
		max  float64
	}{
		{"facebook EMAIL", func() { _, _ = fb(" Jane.Doe@Example.com ") }, 1},
		{"google hashed_email gmail", func() { _, _ = g("Jane.Doe@GMail.com") }, 1},
		{"already hashed", func() { _, _ = fb(hashed) }, 0},
		{"invalid email", func() { _, _ = fb("no-at-sign") }, 0},
		{"MADID lower", func() { _, _ = madid("aece52e7-03ee-455a-b3c4-e57283966239") }, 0},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.f); n > tt.max {
			t.Errorf("%s: %v allocs, want ≤ %v", tt.name, n, tt.max)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, v := range loadNormalizeVectors(f) {
		ti := 0
		for i, dt := range DestinationTypes {
			if dt == v.Type {
				ti = i
			}
		}
		f.Add(uint8(ti), v.Key, v.Raw)
	}
	f.Add(uint8(0), "PHONE", "tel:+1;phone-context=tel:")
	f.Add(uint8(1), "hashed_email", "\u0130STANBUL@GMAIL.COM")
	regions := []string{"US", "GB", "IT"}
	f.Fuzz(func(t *testing.T, ti uint8, key, raw string) {
		dt := DestinationTypes[int(ti)%len(DestinationTypes)]
		region := regions[int(ti)/len(DestinationTypes)%len(regions)]
		cases := []normalizerCase{{dt, key, region, isHashedKey(dt, key)}}
		// Every hashed normalizer sees every input, whatever key the fuzzer chose.
		for _, c := range allNormalizerCases {
			if c.hashed || c.key == "MADID" {
				cases = append(cases, c)
			}
		}
		for _, c := range cases {
			norm := NormalizerFor(c.dt, c.key, c.region)
			once, err := norm(raw)
			if err != nil {
				if once != "" {
					t.Errorf("%s %s: error with value %q", c.dt, c.key, once)
				}
				checkNormalizeError(t, err, raw)
				continue
			}
			if c.hashed && once != "" && !isLowerHex64(once) {
				t.Errorf("%s %s %q: hashed output %q is not 64 lower-hex", c.dt, c.key, raw, once)
			}
			if !c.hashed && c.key != "MADID" && once != raw {
				t.Errorf("%s %s %q: plain key changed the value to %q", c.dt, c.key, raw, once)
			}
			twice, err := norm(once)
			if err != nil || twice != once {
				t.Errorf("%s %s %q: once %q, twice %q, %v", c.dt, c.key, raw, once, twice, err)
			}
		}
	})
}

func benchmarkNormalize(b *testing.B, dt DestinationType, key, raw string) {
	norm := NormalizerFor(dt, key, "US")
	if _, err := norm(raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = norm(raw)
	}
}

func BenchmarkNormalize(b *testing.B) {
	b.Run("facebook_EMAIL", func(b *testing.B) {
		benchmarkNormalize(b, FacebookCustomAudiences, "EMAIL", " Jane.Doe@Example.com ")
	})
	b.Run("facebook_PHONE", func(b *testing.B) {
		benchmarkNormalize(b, FacebookCustomAudiences, "PHONE", "+1 (650) 555-0100")
	})
	b.Run("facebook_PHONE_national", func(b *testing.B) {
		benchmarkNormalize(b, FacebookCustomAudiences, "PHONE", "(650) 555-0100")
	})
	b.Run("google_hashed_email", func(b *testing.B) {
		benchmarkNormalize(b, GoogleAdsRemarketingLists, "hashed_email", "Jane.Doe@GMail.com")
	})
	b.Run("google_hashed_phone_number", func(b *testing.B) {
		benchmarkNormalize(b, GoogleAdsRemarketingLists, "hashed_phone_number", "+44 (0)20 7946 0958")
	})
	b.Run("already_hashed", func(b *testing.B) {
		benchmarkNormalize(b, FacebookCustomAudiences, "EMAIL", "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345")
	})
}
