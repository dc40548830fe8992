package idsync

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// ErrInvalidIdentifier is the error a NormalizeFunc wraps when a value cannot
// be normalized for its destination key (an email without '@', an
// unparseable phone). Errors returned wrap it; their messages never contain
// the value, so they are safe for logs and metrics.
var ErrInvalidIdentifier = errors.New("invalid identifier")

// The errors NormalizeFuncs return. They are fixed values: a message never
// carries the identifier value, and returning one allocates nothing.
var (
	errEmailNoAt        = fmt.Errorf("%w: email: no '@' between a non-empty local part and domain", ErrInvalidIdentifier)
	errPhoneParse       = fmt.Errorf("%w: phone: not parseable as a phone number", ErrInvalidIdentifier)
	errPhoneNotPossible = fmt.Errorf("%w: phone: not a possible number with its country code", ErrInvalidIdentifier)
)

// NormalizeFunc normalizes one raw identifier value. It returns ("", nil)
// when the value normalizes to empty (e.g. only whitespace for a trimmed key)
// and an error wrapping ErrInvalidIdentifier when it cannot be normalized.
type NormalizeFunc func(raw string) (string, error)

// Destination keys whose values idsync normalizes (DESIGN.md §5).
const (
	keyFacebookEmail  = "EMAIL"
	keyFacebookPhone  = "PHONE"
	keyFacebookMADID  = "MADID"
	keyGoogleEmail    = "hashed_email"
	keyGooglePhone    = "hashed_phone_number"
	hashedHexLen      = 2 * sha256.Size
	stackBufferLength = 256
)

// NormalizerFor returns the normalizer for destination key `key` of
// destination type dt. phoneRegion is the default region (ISO 3166 alpha-2,
// e.g. "US", case-insensitive) for phone numbers written without an
// international prefix. Resolve it once per key, not per value.
//
// facebook_custom_audiences:
//   - EMAIL: trimmed, lower-cased, must have a non-empty local part and domain
//     around its last '@', SHA-256 lower hex.
//   - PHONE: parsed with libphonenumber (github.com/nyaruka/phonenumbers),
//     formatted E.164, the digits without '+', SHA-256 lower hex.
//   - MADID: trimmed and lower-cased, not hashed.
//   - EXTERN_ID: unchanged.
//
// google_ads_remarketing_lists:
//   - hashed_email: as EMAIL, and when the domain is gmail.com or
//     googlemail.com the dots of the local part are removed (Google only).
//   - hashed_phone_number: as PHONE but E.164 with its '+' is hashed.
//   - mobile_id, third_party_user_id: unchanged.
//
// Every other key, and every key of the event types (iterable, zendesk,
// webhook), is returned unchanged.
//
// For the hashed keys, a value that after trimming is exactly 64 hex
// characters is taken as already hashed and passed through lower-cased, so
// normalizing twice gives the same result as normalizing once.
//
// Phones: a number is accepted when libphonenumber parses it and judges it
// possible (IsPossibleNumberWithReason is IS_POSSIBLE: a plausible length for
// its country calling code). IsValidNumber is deliberately not required:
// "+1 (650) 555-0100" passes either check, but IsValidNumber also rejects
// numbers from ranges newer than the bundled metadata, and dropping a real
// customer's number costs a match while hashing an unassigned one costs
// nothing (it simply matches no one). IS_POSSIBLE_LOCAL_ONLY numbers (e.g. a
// US number without its area code) are refused: their E.164 form would be
// wrong.
func NormalizerFor(dt DestinationType, key, phoneRegion string) NormalizeFunc {
	switch dt {
	case FacebookCustomAudiences:
		switch key {
		case keyFacebookEmail:
			return normalizeEmailFacebook
		case keyFacebookPhone:
			return phoneNormalizer(phoneRegion, false)
		case keyFacebookMADID:
			return normalizeTrimLower
		}
	case GoogleAdsRemarketingLists:
		switch key {
		case keyGoogleEmail:
			return normalizeEmailGoogle
		case keyGooglePhone:
			return phoneNormalizer(phoneRegion, true)
		}
	}
	return normalizePlain
}

// ValidPhoneRegion reports whether region (case-insensitive) is a region
// phonenumbers has metadata for, and so can be the default region of
// NormalizerFor.
func ValidPhoneRegion(region string) bool {
	return phonenumbers.GetSupportedRegions()[strings.ToUpper(region)]
}

// normalizePlain returns the value unchanged.
func normalizePlain(raw string) (string, error) { return raw, nil }

// normalizeTrimLower trims and lower-cases, without hashing (strings.ToLower
// returns its argument itself, without allocating, when it has nothing to
// lower-case).
func normalizeTrimLower(raw string) (string, error) {
	return strings.ToLower(strings.TrimSpace(raw)), nil
}

func normalizeEmailFacebook(raw string) (string, error) { return normalizeEmail(raw, false) }

func normalizeEmailGoogle(raw string) (string, error) { return normalizeEmail(raw, true) }

// normalizeEmail trims, lower-cases, checks and hashes an email. With gmail
// set, the dots of a gmail.com / googlemail.com local part are removed.
func normalizeEmail(raw string, gmail bool) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", nil
	}
	if isHex64(s) {
		return strings.ToLower(s), nil
	}
	var buf [stackBufferLength]byte
	b := appendLower(buf[:0], s)
	at := bytes.LastIndexByte(b, '@')
	if at <= 0 || at == len(b)-1 {
		return "", errEmailNoAt
	}
	if gmail {
		if d := b[at+1:]; string(d) == "gmail.com" || string(d) == "googlemail.com" {
			n := 0
			for _, c := range b[:at] {
				if c != '.' {
					b[n] = c
					n++
				}
			}
			if n == 0 {
				return "", errEmailNoAt
			}
			b = append(b[:n], b[at:]...)
		}
	}
	return hashHex(b), nil
}

// phoneNormalizerKey names a phone normalizer: its default region as given
// and whether it keeps the '+'.
type phoneNormalizerKey struct {
	region string
	plus   bool
}

// phoneNormalizers holds the phone normalizers made so far: NormalizerFor
// runs for every mapping of every event, and a new closure each time was an
// allocation per phone mapping. Regions come from configuration, so there
// are few.
var phoneNormalizers sync.Map // phoneNormalizerKey → NormalizeFunc

// phoneNormalizer returns the phone normalizer for a default region; plus
// says whether the hashed E.164 keeps its '+' (Google) or not (Facebook).
func phoneNormalizer(region string, plus bool) NormalizeFunc {
	k := phoneNormalizerKey{region, plus}
	if f, ok := phoneNormalizers.Load(k); ok {
		return f.(NormalizeFunc)
	}
	f := newPhoneNormalizer(region, plus)
	if ValidPhoneRegion(strings.TrimSpace(region)) {
		// Only known regions are kept, so that no input can grow the map.
		phoneNormalizers.Store(k, f)
	}
	return f
}

func newPhoneNormalizer(region string, plus bool) NormalizeFunc {
	region = strings.ToUpper(strings.TrimSpace(region))
	return func(raw string) (string, error) {
		s := strings.TrimSpace(raw)
		if s == "" {
			return "", nil
		}
		if isHex64(s) {
			return strings.ToLower(s), nil
		}
		e164, err := parsePhone(s, region)
		if err != nil {
			return "", err
		}
		if !plus {
			e164 = strings.TrimPrefix(e164, "+")
		}
		var buf [stackBufferLength]byte
		return hashHex(append(buf[:0], e164...)), nil
	}
}

// parsePhone returns the E.164 form of the trimmed phone s (region is the
// upper-case default region): from the fast path when s is a plain
// well-formed spelling (phonefast.go), else through the bounded memo of recent parses
// (values longer than a phone number can be are parsed, and refused, without
// it).
func parsePhone(s, region string) (string, error) {
	if e164, ok := phoneFast(s, region); ok {
		return e164, nil
	}
	k := phoneKey{region: region, raw: s}
	if p, ok := phones.get(k); ok {
		return p.e164, p.err
	}
	var p phoneParse
	p.e164, p.err = parsePhoneSlow(s, region)
	if len(s) <= phoneMemoMaxRaw {
		// The key must not pin the event's buffer: s may be a substring of it.
		k.raw = strings.Clone(s)
		phones.put(k, p)
	}
	return p.e164, p.err
}

// parsePhoneSlow is the rule itself: libphonenumber's parse, then its
// possible-number check (see NormalizerFor).
func parsePhoneSlow(s, region string) (string, error) {
	num := &phonenumbers.PhoneNumber{}
	switch {
	case phonenumbers.ParseToNumber(s, region, num) != nil:
		return "", errPhoneParse
	case phonenumbers.IsPossibleNumberWithReason(num) != phonenumbers.IS_POSSIBLE:
		return "", errPhoneNotPossible
	}
	return phonenumbers.Format(num, phonenumbers.E164), nil
}

// hashHex returns the lower-hex SHA-256 of b. Its one allocation is the
// returned string.
func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	var out [hashedHexLen]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// isHex64 reports whether s is exactly 64 hex digits (either case).
func isHex64(s string) bool {
	if len(s) != hashedHexLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// appendLower appends s lower-cased to b: byte by byte for ASCII, through
// strings.ToLower otherwise (strings.ToLower returns s itself, without
// allocating, when it has nothing to lower-case).
func appendLower(b []byte, s string) []byte {
	start := len(b)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return append(b[:start], strings.ToLower(s)...)
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}
