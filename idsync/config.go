package idsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Configuration limits beyond DESIGN.md §3, chosen so a stored configuration
// stays small and a mistake is caught early.
const (
	// MaxMappings bounds the identifiers of a customized setup.
	MaxMappings = 50
	// MaxAllMappings is the product rule: at most three mappings use "all".
	MaxAllMappings = 3
	// maxTextLen bounds free-text settings (external audience id, event names).
	maxTextLen = 256
)

// configWire mirrors Config with pointers, so ParseConfig can tell an absent
// setting (which takes its default) from one set to its zero value.
type configWire struct {
	DestinationType    *string       `json:"destination_type"`
	ExternalAudienceID *string       `json:"external_audience_id"`
	Settings           *settingsWire `json:"settings"`
	Setup              *string       `json:"setup"`
	Identifiers        []Mapping     `json:"identifiers"`
}

type settingsWire struct {
	SendTrack     *bool   `json:"send_track"`
	SendIdentify  *bool   `json:"send_identify"`
	EnterEvent    *string `json:"enter_event"`
	ExitEvent     *string `json:"exit_event"`
	SendMobileIDs *bool   `json:"send_mobile_ids"`
	UploadKeyType *string `json:"upload_key_type"`
}

// ParseConfig decodes a connection configuration from JSON, applies the
// defaults of DESIGN.md §3 to absent settings and validates it. Unknown
// fields are refused. On failure the error is a *ValidationError naming
// every problem by its field path.
func ParseConfig(raw []byte) (*Config, error) {
	var w configWire
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, &ValidationError{Problems: []Problem{jsonProblem(err)}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &ValidationError{Problems: []Problem{{Field: "", Message: "unexpected data after the configuration object"}}}
	}
	c := &Config{Settings: DefaultSettings(), Setup: SetupDefault}
	if w.DestinationType != nil {
		c.DestinationType = DestinationType(*w.DestinationType)
	}
	if w.ExternalAudienceID != nil {
		c.ExternalAudienceID = *w.ExternalAudienceID
	}
	if w.Setup != nil {
		c.Setup = Setup(*w.Setup)
	}
	c.Identifiers = w.Identifiers
	if s := w.Settings; s != nil {
		setBool(&c.Settings.SendTrack, s.SendTrack)
		setBool(&c.Settings.SendIdentify, s.SendIdentify)
		setBool(&c.Settings.SendMobileIDs, s.SendMobileIDs)
		setString(&c.Settings.EnterEvent, s.EnterEvent)
		setString(&c.Settings.ExitEvent, s.ExitEvent)
	}
	// upload_key_type defaults to CONTACT_INFO for Google only; set
	// explicitly on another type it stays, and Validate refuses it.
	if c.DestinationType != GoogleAdsRemarketingLists && (w.Settings == nil || w.Settings.UploadKeyType == nil) {
		c.Settings.UploadKeyType = ""
	} else if w.Settings != nil && w.Settings.UploadKeyType != nil {
		c.Settings.UploadKeyType = *w.Settings.UploadKeyType
	}
	if err := Validate(c); err != nil {
		return nil, err
	}
	return c, nil
}

func setBool(dst *bool, src *bool) {
	if src != nil {
		*dst = *src
	}
}

func setString(dst *string, src *string) {
	if src != nil {
		*dst = *src
	}
}

// jsonProblem turns a decoding error into a problem with a field path.
func jsonProblem(err error) Problem {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return Problem{Field: te.Field, Message: "must be " + jsonTypeName(te.Type.Kind().String())}
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return Problem{Field: strings.Trim(msg, `"`), Message: "unknown field"}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return Problem{Field: "", Message: fmt.Sprintf("malformed JSON at byte %d", se.Offset)}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return Problem{Field: "", Message: "malformed JSON: unexpected end of input"}
	}
	return Problem{Field: "", Message: "malformed JSON"}
}

func jsonTypeName(kind string) string {
	switch kind {
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "ptr", "map":
		return "an object"
	}
	return "a " + kind
}

// Validate checks every rule of DESIGN.md §3 on c and returns a
// *ValidationError listing all problems, or nil when c is valid. Validate
// does not apply defaults; ParseConfig does.
func Validate(c *Config) error {
	var v validator
	v.config(c)
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: v.problems}
}

type validator struct {
	problems []Problem
}

func (v *validator) add(field, format string, args ...any) {
	v.problems = append(v.problems, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) text(field, s string, required bool) {
	switch {
	case s == "" && required:
		v.add(field, "required")
	case len(s) > maxTextLen:
		v.add(field, "longer than %d bytes", maxTextLen)
	case !utf8.ValidString(s):
		v.add(field, "not valid UTF-8")
	}
}

func (v *validator) config(c *Config) {
	kind := KindOf(c.DestinationType)
	switch {
	case c.DestinationType == "":
		v.add("destination_type", "required")
	case kind == "":
		v.add("destination_type", "unknown destination type %q (known: %s)", truncate(string(c.DestinationType)), typeNames())
	}
	v.text("external_audience_id", c.ExternalAudienceID, kind == KindList)
	v.settings(c, kind)

	switch c.Setup {
	case SetupDefault:
		if len(c.Identifiers) > 0 {
			v.add("identifiers", "setup default takes no identifiers (use setup customized)")
		}
	case SetupCustomized:
		v.mappings(c, kind)
	case "":
		v.add("setup", "required")
	default:
		v.add("setup", "must be default or customized")
	}
}

func (v *validator) settings(c *Config, kind Kind) {
	s := c.Settings
	if kind == KindEvent {
		if !s.SendTrack && !s.SendIdentify {
			v.add("settings.send_track", "send_track and send_identify are both false: nothing would be sent")
		}
		v.text("settings.enter_event", s.EnterEvent, s.SendTrack)
		v.text("settings.exit_event", s.ExitEvent, s.SendTrack)
	}
	if c.DestinationType == GoogleAdsRemarketingLists {
		if _, ok := googleUploadKeys[s.UploadKeyType]; !ok {
			v.add("settings.upload_key_type", "must be %s, %s or %s", UploadContactInfo, UploadMobileAdID, UploadCRMID)
		} else if s.UploadKeyType == UploadMobileAdID && c.Setup == SetupDefault && !s.SendMobileIDs {
			v.add("settings.send_mobile_ids", "must be true for upload_key_type %s: its default plan sends only mobile ids", UploadMobileAdID)
		}
	} else if s.UploadKeyType != "" && kind != "" {
		v.add("settings.upload_key_type", "applies to google_ads_remarketing_lists only")
	}
}

func (v *validator) mappings(c *Config, kind Kind) {
	if len(c.Identifiers) == 0 {
		v.add("identifiers", "setup customized needs at least one identifier")
		return
	}
	if len(c.Identifiers) > MaxMappings {
		v.add("identifiers", "at most %d identifiers", MaxMappings)
	}
	fixed := allowedKeys(c)
	seen := make(map[string]int, len(c.Identifiers))
	alls := 0
	for i, m := range c.Identifiers {
		at := fmt.Sprintf("identifiers[%d]", i)
		switch {
		case m.Segment == "":
			v.add(at+".segment", "required")
		case !identifierTypeRE.MatchString(m.Segment):
			v.add(at+".segment", "must be a lower-case identifier type matching %s", identifierTypeRE)
		default:
			if j, dup := seen[m.Segment]; dup {
				v.add(at+".segment", "%s is already mapped by identifiers[%d]", m.Segment, j)
			} else {
				seen[m.Segment] = i
			}
			if IsMobileAdID(m.Segment) && !c.Settings.SendMobileIDs {
				v.add(at+".segment", "%s needs settings.send_mobile_ids=true", m.Segment)
			}
		}
		switch {
		case m.Destination == "":
			v.add(at+".destination", "required")
		case kind == KindList && c.DestinationType == GoogleAdsRemarketingLists && fixed == nil:
			// upload_key_type is invalid and already reported.
		case kind == KindList && !contains(fixed, m.Destination):
			if c.DestinationType == GoogleAdsRemarketingLists {
				v.add(at+".destination", "must be one of %s for upload_key_type %s", strings.Join(fixed, ", "), c.Settings.UploadKeyType)
			} else {
				v.add(at+".destination", "must be one of %s", strings.Join(fixed, ", "))
			}
		case kind == KindEvent && !freeKeyRE.MatchString(m.Destination):
			v.add(at+".destination", "must match %s", FreeKeyPattern)
		}
		switch m.Strategy {
		case LastAdded, FirstAdded:
		case All:
			alls++
		case "":
			v.add(at+".strategy", "required")
		default:
			v.add(at+".strategy", "must be last_added, first_added or all")
		}
	}
	if alls > MaxAllMappings {
		v.add("identifiers", "at most %d identifiers may use strategy all (found %d)", MaxAllMappings, alls)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func typeNames() string {
	names := make([]string, len(DestinationTypes))
	for i, t := range DestinationTypes {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// truncate shortens an echoed configuration value so an error message stays
// readable. Configuration values are not identifiers of a profile.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
