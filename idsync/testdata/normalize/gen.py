#!/usr/bin/env python3
"""Generate vectors.jsonl, the golden vectors of idsync/normalize.go.

The expected values are computed by an oracle independent of the Go code:
Python's `phonenumbers` (the Python port of Google's libphonenumber, pinned to
9.0.32, the metadata the Go port github.com/nyaruka/phonenumbers v1.8.1 was
regenerated against) for phones, `hashlib` for SHA-256, and the string rules
of DESIGN.md §5 written again here in Python for emails.

Re-run from the repository root:

    pip install 'phonenumbers==9.0.32'
    python3 idsync/testdata/normalize/gen.py > idsync/testdata/normalize/vectors.jsonl

Each output line is one JSON object:
    {"class": "email"|"phone"|"other", "type": <destination type>,
     "key": <destination key>, "region": <default phone region>,
     "raw": <input>, "want": <normalized value>}
or, for a value that must be refused (error wrapping ErrInvalidIdentifier),
"invalid": true instead of "want". "note" says what the vector covers.
"""

import hashlib
import json
import re
import sys

import phonenumbers
from phonenumbers import PhoneNumberFormat, ValidationResult

FB = "facebook_custom_audiences"
GOOGLE = "google_ads_remarketing_lists"

HEX64 = re.compile(r"[0-9A-Fa-f]{64}")

KNOWN_EMAIL_HASH = "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345"
KNOWN_PHONE_HASH = "dc008fda46e2e64002cf2f82a4906236282d431c4f75e5b60bfe79fc48546383"


class Invalid(Exception):
    pass


def sha(s):
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def email(raw, google):
    s = raw.strip()
    if s == "":
        return ""
    if HEX64.fullmatch(s):
        return s.lower()
    s = s.lower()
    local, sep, domain = s.rpartition("@")
    if not sep or not local or not domain:
        raise Invalid()
    if google and domain in ("gmail.com", "googlemail.com"):
        local = local.replace(".", "")
        if not local:
            raise Invalid()
    return sha(local + "@" + domain)


def phone(raw, region, plus):
    s = raw.strip()
    if s == "":
        return ""
    if HEX64.fullmatch(s):
        return s.lower()
    try:
        n = phonenumbers.parse(s, region)
    except phonenumbers.NumberParseException:
        raise Invalid()
    if phonenumbers.is_possible_number_with_reason(n) != ValidationResult.IS_POSSIBLE:
        raise Invalid()
    e164 = phonenumbers.format_number(n, PhoneNumberFormat.E164)
    return sha(e164 if plus else e164[1:])


EMAILS = [
    ("person@example.com", "known vector: SHA-256 of person@example.com"),
    ("Person@Example.com", "known vector, mixed case"),
    ("Jane@Work.com ", "design sample, trailing space"),
    ("  Jane@Work.com\t", "surrounding whitespace"),
    ("\u00a0jane@work.com\u00a0", "no-break spaces around"),
    ("jane@gmail.com", "gmail, no dots"),
    ("Jane.Doe@gmail.com", "gmail dots: removed for Google only"),
    ("Jane.Doe@GMAIL.COM", "gmail dots, upper-case domain"),
    ("j.a.n.e.d.o.e@googlemail.com", "googlemail dots"),
    ("JANE.DOE@GOOGLEMAIL.COM", "googlemail upper-case"),
    ("jane.doe@example.com", "dots kept for other domains"),
    ("jane.doe@gmail.co.uk", "not gmail.com: dots kept"),
    ("jane.doe@mail.gmail.com", "gmail subdomain: dots kept"),
    ("jane.doe@googlemail.com.au", "not googlemail.com: dots kept"),
    ("jane.doe+promo@gmail.com", "plus-addressing kept, gmail dots"),
    ("Test.User+tag.with.dots@gmail.com", "gmail: every dot of the local part"),
    ("jane+newsletter@example.com", "plus-addressing kept"),
    ("\tJOHN.SMITH@Yahoo.CO.UK\n", "tab/newline trimmed, upper-case"),
    ("first.last@sub.example.org", "subdomain"),
    ("user_name-123@example.io", "underscore, dash, digits"),
    ("x@y", "minimal local and domain"),
    ("a.b@gmail.com", "short gmail with dot"),
    ("...@gmail.com", "gmail local of dots only: empty for Google"),
    ("a@b@example.com", "split at the last '@'"),
    ("jane doe@example.com", "inner space kept"),
    ("J\u00f6rg.M\u00fcller@Example.de", "non-ASCII local part"),
    ("\u00dcn\u00efcode.User@GMAIL.com", "non-ASCII gmail"),
    ("no-at-sign.example.com", "invalid: no '@'"),
    ("@example.com", "invalid: empty local part"),
    ("jane@", "invalid: empty domain"),
    ("@", "invalid: '@' only"),
    ("   @   ", "invalid: '@' with whitespace"),
    ("", "empty"),
    ("   ", "whitespace only"),
    ("\t\n", "tab and newline only"),
    (KNOWN_EMAIL_HASH, "already hashed: passed through"),
    (KNOWN_EMAIL_HASH.upper(), "already hashed, upper-case: lower-cased"),
    ("  " + KNOWN_EMAIL_HASH + " ", "already hashed with whitespace"),
    (KNOWN_EMAIL_HASH[:63], "63 hex characters: not a hash, no '@': invalid"),
    (KNOWN_EMAIL_HASH[:63] + "g", "64 characters, not all hex: invalid"),
    (KNOWN_EMAIL_HASH + "0", "65 hex characters: invalid"),
]

# (raw, default region, note)
PHONES = [
    ("+44 844 412 4653", "US", "known vector: 448444124653"),
    ("+1 (650) 555-0100", "US", "design sample"),
    ("650-555-0100", "US", "national US, dashes"),
    ("(650) 555.0100", "US", "parentheses and dot"),
    ("650.555.0100", "US", "dots"),
    ("6505550100", "US", "digits only"),
    ("1 650 555 0100", "US", "US trunk prefix 1"),
    ("+1-650-555-0100", "US", "international with dashes"),
    ("  +1 650 555 0100  ", "US", "surrounding whitespace"),
    ("+1 650 555 0100 ext. 123", "US", "extension dropped"),
    ("1-800-FLOWERS", "US", "vanity letters"),
    ("+1 416 555 0199", "US", "Canada"),
    ("+44 (0)20 7946 0958", "US", "trunk prefix (0) dropped"),
    ("+44 20 7946 0958", "US", "UK london"),
    ("011 44 20 7946 0958", "US", "011 international prefix from US"),
    ("0044 20 7946 0958", "GB", "00 international prefix from GB"),
    ("00 1 650 555 0100", "DE", "00 international prefix from DE"),
    ("0044 20 7946 0958", "US", "00 is not the US international prefix: invalid"),
    ("020 7946 0958", "GB", "national GB with trunk 0"),
    ("0844 412 4653", "GB", "national GB, known vector number"),
    ("07700 900123", "GB", "GB mobile national"),
    ("+44 7700 900123", "US", "GB mobile international"),
    ("+33 1 23 45 67 89", "US", "France"),
    ("01 23 45 67 89", "FR", "France national"),
    ("+49 30 901820", "US", "Germany"),
    ("+49 (0)30 901820", "US", "Germany with (0)"),
    ("+39 06 1234 5678", "US", "Italy: leading zero kept"),
    ("06 1234 5678", "IT", "Italy national: leading zero kept"),
    ("+81 3-1234-5678", "US", "Japan"),
    ("+61 2 9876 5432", "US", "Australia"),
    ("+91 98765 43210", "US", "India"),
    ("+55 11 91234-5678", "US", "Brazil"),
    ("+86 10 1234 5678", "US", "China"),
    ("+52 55 1234 5678", "US", "Mexico"),
    ("+353 1 234 5678", "US", "Ireland"),
    ("\uff0b\uff11 \uff16\uff15\uff10 \uff15\uff15\uff15 \uff10\uff11\uff10\uff10", "US", "full-width digits"),
    ("tel:+1-650-555-0100", "US", "RFC 3966"),
    ("abcdefg", "US", "invalid: letters only"),
    ("phone", "US", "invalid: a word"),
    ("12345", "US", "invalid: too short"),
    ("+1 650", "US", "invalid: too short international"),
    ("555-0100", "US", "invalid: local only, no area code"),
    ("+", "US", "invalid: plus only"),
    ("+999 1234567", "US", "invalid: unknown country code"),
    ("+1 650 555 0100 1234 5678 9012", "US", "invalid: too long"),
    ("", "US", "empty"),
    ("   ", "US", "whitespace only"),
    (KNOWN_PHONE_HASH, "US", "already hashed: passed through"),
    (KNOWN_PHONE_HASH.upper(), "US", "already hashed upper-case: lower-cased"),
    (" " + KNOWN_PHONE_HASH + "\n", "US", "already hashed with whitespace"),
]

# (type, key, raw, want, note): keys without normalization, and MADID.
OTHERS = [
    (FB, "MADID", "AECE52E7-03EE-455A-B3C4-E57283966239", "aece52e7-03ee-455a-b3c4-e57283966239", "MADID lower-cased"),
    (FB, "MADID", " 6D92078A-8246-4BA4-AE5B-76104861E7DC\n", "6d92078a-8246-4ba4-ae5b-76104861e7dc", "MADID trimmed"),
    (FB, "MADID", "", "", "MADID empty"),
    (FB, "MADID", "  ", "", "MADID whitespace only"),
    (FB, "MADID", KNOWN_EMAIL_HASH.upper(), KNOWN_EMAIL_HASH, "MADID is never hashed, only lower-cased"),
    (FB, "EXTERN_ID", "Cust-00123 ", "Cust-00123 ", "EXTERN_ID unchanged"),
    (FB, "EXTERN_ID", "", "", "EXTERN_ID empty"),
    (FB, "email", "Jane@Work.com", "Jane@Work.com", "unknown key (wrong case): unchanged"),
    (GOOGLE, "mobile_id", "AECE52E7-03EE-455A-B3C4-E57283966239", "AECE52E7-03EE-455A-B3C4-E57283966239", "mobile_id unchanged"),
    (GOOGLE, "third_party_user_id", " u123 ", " u123 ", "third_party_user_id unchanged"),
    (GOOGLE, "third_party_user_id", "", "", "third_party_user_id empty"),
    (GOOGLE, "EMAIL", "Jane@Work.com", "Jane@Work.com", "Facebook key on Google: unchanged"),
    ("iterable", "email", "Jane.Doe@GMAIL.com ", "Jane.Doe@GMAIL.com ", "event type: unchanged"),
    ("iterable", "userId", "u123", "u123", "event type: unchanged"),
    ("zendesk", "email", " Jane@Work.com", " Jane@Work.com", "event type: unchanged"),
    ("zendesk", "external_id", "", "", "event type: empty stays empty"),
    ("webhook", "ios_idfa", "AECE52E7-03EE-455A-B3C4-E57283966239", "AECE52E7-03EE-455A-B3C4-E57283966239", "event type: unchanged"),
    ("webhook", "phone", "+1 (650) 555-0100", "+1 (650) 555-0100", "event type: unchanged"),
    ("webhook", "EMAIL", "   ", "   ", "event type: whitespace unchanged"),
]


def emit(out, cls, dtype, key, region, raw, fn, note):
    v = {"class": cls, "type": dtype, "key": key, "region": region, "raw": raw}
    try:
        v["want"] = fn()
    except Invalid:
        v["invalid"] = True
    v["note"] = note
    out.append(v)


def main():
    assert sha("person@example.com") == KNOWN_EMAIL_HASH
    assert phone("+44 844 412 4653", "US", False) == KNOWN_PHONE_HASH
    assert email("Person@Example.com", False) == KNOWN_EMAIL_HASH
    assert phone("+44 (0)20 7946 0958", "US", True) == sha("+442079460958")
    assert phone("+44 (0)20 7946 0958", "US", False) == sha("442079460958")

    out = []
    for raw, note in EMAILS:
        emit(out, "email", FB, "EMAIL", "US", raw, lambda: email(raw, False), note)
        emit(out, "email", GOOGLE, "hashed_email", "US", raw, lambda: email(raw, True), note)
    for raw, region, note in PHONES:
        emit(out, "phone", FB, "PHONE", region, raw, lambda: phone(raw, region, False), note)
        emit(out, "phone", GOOGLE, "hashed_phone_number", region, raw, lambda: phone(raw, region, True), note)
    for dtype, key, raw, want, note in OTHERS:
        emit(out, "other", dtype, key, "US", raw, lambda: want, note)
    for v in out:
        sys.stdout.write(json.dumps(v, ensure_ascii=True) + "\n")
    print(
        "phonenumbers %s: %d email inputs, %d phone inputs, %d vectors"
        % (phonenumbers.__version__, len(EMAILS), len(PHONES), len(out)),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
