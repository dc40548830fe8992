package idsync

import (
	"regexp"
	"strings"
)

// Kind says how a destination type takes audience data.
type Kind string

// The two kinds of destination type.
const (
	// KindList types take list membership uploads (one record per event).
	KindList Kind = "list"
	// KindEvent types take Segment-spec track and identify messages.
	KindEvent Kind = "event"
)

// The default identifier types (DESIGN.md §1). Any other lower-case type is
// a custom identifier.
var DefaultIdentifierTypes = []string{
	"user_id", "email", "phone", "anonymous_id",
	"android.id", "android.idfa", "android.push_token",
	"ios.id", "ios.idfa", "ios.push_token",
	"ga_client_id", "braze_id", "cross_domain_id",
}

// IsDefaultIdentifierType reports whether t is one of DefaultIdentifierTypes.
func IsDefaultIdentifierType(t string) bool {
	for _, d := range DefaultIdentifierTypes {
		if d == t {
			return true
		}
	}
	return false
}

// IsMobileAdID reports whether t is a mobile advertising id type, which is
// sent only when settings.send_mobile_ids is on.
func IsMobileAdID(t string) bool {
	return t == "ios.idfa" || t == "android.idfa"
}

// identifierTypeRE is what a Segment identifier type must look like.
var identifierTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

// freeKeyRE is what a free-text destination key must look like.
var freeKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]{0,63}$`)

// FreeKeyPattern is the pattern free-text destination keys must match.
const FreeKeyPattern = `^[A-Za-z_][A-Za-z0-9_.]{0,63}$`

// TypeInfo describes one destination type of the catalog (DESIGN.md §5). It
// is what GET /v1/destination-types returns.
type TypeInfo struct {
	Type DestinationType `json:"type"`
	Kind Kind            `json:"kind"`
	// Keys is the fixed list of destination keys; empty for free-text types.
	Keys []string `json:"keys,omitempty"`
	// KeyPattern is the pattern free-text keys must match; empty for fixed lists.
	KeyPattern string `json:"key_pattern,omitempty"`
	// UploadKeyTypes maps each Google upload_key_type to the keys it allows.
	UploadKeyTypes map[string][]string `json:"upload_key_types,omitempty"`
	// ProposedKeys maps Segment identifier types to the destination key a UI
	// pre-fills for them.
	ProposedKeys map[string]string `json:"proposed_keys,omitempty"`
	// DefaultPlan is the default setup's mapping; for Google it depends on
	// the upload key type (see DefaultPlans).
	DefaultPlan []Mapping `json:"default_plan,omitempty"`
	// DefaultPlans maps each Google upload_key_type to its default mapping.
	DefaultPlans map[string][]Mapping `json:"default_plans,omitempty"`
	// RequiresExternalAudienceID is set for list types.
	RequiresExternalAudienceID bool `json:"requires_external_audience_id"`
	// Normalization says, per destination key, what happens to a value.
	Normalization map[string]string `json:"normalization"`
}

var googleUploadKeys = map[string][]string{
	UploadContactInfo: {"hashed_email", "hashed_phone_number"},
	UploadMobileAdID:  {"mobile_id"},
	UploadCRMID:       {"third_party_user_id"},
}

var googleDefaultPlans = map[string][]Mapping{
	UploadContactInfo: {{Segment: "email", Destination: "hashed_email", Strategy: LastAdded}},
	UploadMobileAdID: {
		{Segment: "ios.idfa", Destination: "mobile_id", Strategy: LastAdded},
		{Segment: "android.idfa", Destination: "mobile_id", Strategy: LastAdded},
	},
	UploadCRMID: {{Segment: "user_id", Destination: "third_party_user_id", Strategy: LastAdded}},
}

// facebookSchemaOrder is the order of keys in a Facebook payload's schema.
var facebookSchemaOrder = [...]string{"EXTERN_ID", "EMAIL", "PHONE", "MADID"}

// Catalog returns the description of every destination type, in the order
// of DestinationTypes. Each call returns fresh values the caller may keep.
func Catalog() []TypeInfo {
	out := make([]TypeInfo, 0, len(DestinationTypes))
	for _, t := range DestinationTypes {
		info, _ := Describe(t)
		out = append(out, info)
	}
	return out
}

// Describe returns the catalog entry of t, and false when t is unknown.
func Describe(t DestinationType) (TypeInfo, bool) {
	switch t {
	case FacebookCustomAudiences:
		return TypeInfo{
			Type: t, Kind: KindList,
			Keys: append([]string(nil), facebookSchemaOrder[:]...),
			ProposedKeys: map[string]string{
				"email": "EMAIL", "phone": "PHONE", "ios.idfa": "MADID", "android.idfa": "MADID", "user_id": "EXTERN_ID",
			},
			DefaultPlan: []Mapping{
				{Segment: "email", Destination: "EMAIL", Strategy: All},
				{Segment: "ios.idfa", Destination: "MADID", Strategy: All},
				{Segment: "android.idfa", Destination: "MADID", Strategy: All},
			},
			RequiresExternalAudienceID: true,
			Normalization: map[string]string{
				"EMAIL":     "trimmed, lower-cased, SHA-256 hex",
				"PHONE":     "E.164 digits without '+', SHA-256 hex",
				"MADID":     "trimmed, lower-cased, not hashed",
				"EXTERN_ID": "unchanged",
			},
		}, true
	case GoogleAdsRemarketingLists:
		keys := map[string][]string{}
		for k, v := range googleUploadKeys {
			keys[k] = append([]string(nil), v...)
		}
		plans := map[string][]Mapping{}
		for k, v := range googleDefaultPlans {
			plans[k] = append([]Mapping(nil), v...)
		}
		return TypeInfo{
			Type: t, Kind: KindList,
			Keys:           []string{"hashed_email", "hashed_phone_number", "mobile_id", "third_party_user_id"},
			UploadKeyTypes: keys,
			ProposedKeys: map[string]string{
				"email": "hashed_email", "phone": "hashed_phone_number",
				"ios.idfa": "mobile_id", "android.idfa": "mobile_id", "user_id": "third_party_user_id",
			},
			DefaultPlans:               plans,
			RequiresExternalAudienceID: true,
			Normalization: map[string]string{
				"hashed_email":        "trimmed, lower-cased, dots removed before @gmail.com/@googlemail.com, SHA-256 hex",
				"hashed_phone_number": "E.164 with '+', SHA-256 hex",
				"mobile_id":           "unchanged",
				"third_party_user_id": "unchanged",
			},
		}, true
	case Iterable:
		return eventType(t, map[string]string{"email": "email", "user_id": "userId"}, []Mapping{
			{Segment: "email", Destination: "email", Strategy: All},
			{Segment: "user_id", Destination: "userId", Strategy: All},
		}), true
	case Zendesk:
		return eventType(t, map[string]string{"email": "email", "user_id": "external_id"}, []Mapping{
			{Segment: "email", Destination: "email", Strategy: All},
			{Segment: "user_id", Destination: "external_id", Strategy: All},
		}), true
	case Webhook:
		proposed := map[string]string{}
		for _, s := range DefaultIdentifierTypes {
			proposed[s] = ProposedKey(Webhook, s)
		}
		return eventType(t, proposed, []Mapping{
			{Segment: "user_id", Destination: "userId", Strategy: All},
			{Segment: "email", Destination: "email", Strategy: All},
			{Segment: "ios.idfa", Destination: "ios_idfa", Strategy: All},
			{Segment: "android.idfa", Destination: "android_idfa", Strategy: All},
		}), true
	}
	return TypeInfo{}, false
}

func eventType(t DestinationType, proposed map[string]string, plan []Mapping) TypeInfo {
	return TypeInfo{
		Type: t, Kind: KindEvent,
		KeyPattern:    FreeKeyPattern,
		ProposedKeys:  proposed,
		DefaultPlan:   plan,
		Normalization: map[string]string{"*": "unchanged"},
	}
}

// KindOf returns the kind of t ("" for an unknown type).
func KindOf(t DestinationType) Kind {
	switch t {
	case FacebookCustomAudiences, GoogleAdsRemarketingLists:
		return KindList
	case Iterable, Zendesk, Webhook:
		return KindEvent
	}
	return ""
}

// ProposedKey returns the destination key a UI would pre-fill for Segment
// identifier type segment on destination type t, or "" when it has none.
func ProposedKey(t DestinationType, segment string) string {
	if t == Webhook {
		switch segment {
		case "user_id":
			return "userId"
		case "anonymous_id":
			return "anonymousId"
		}
		return strings.ReplaceAll(segment, ".", "_")
	}
	info, ok := Describe(t)
	if !ok {
		return ""
	}
	return info.ProposedKeys[segment]
}

// Plan returns the mappings a configuration applies: its own identifiers in
// customized setup, the destination type's default plan otherwise.
func Plan(c *Config) []Mapping {
	if c.Setup == SetupCustomized {
		return c.Identifiers
	}
	return defaultPlan(c.DestinationType, c.Settings.UploadKeyType)
}

// defaultPlan returns the shared (read-only) default plan of a type.
func defaultPlan(t DestinationType, uploadKeyType string) []Mapping {
	switch t {
	case FacebookCustomAudiences:
		return facebookDefaultPlan
	case GoogleAdsRemarketingLists:
		return googleDefaultPlans[uploadKeyType]
	case Iterable:
		return iterableDefaultPlan
	case Zendesk:
		return zendeskDefaultPlan
	case Webhook:
		return webhookDefaultPlan
	}
	return nil
}

var (
	facebookDefaultPlan = mustDescribe(FacebookCustomAudiences).DefaultPlan
	iterableDefaultPlan = mustDescribe(Iterable).DefaultPlan
	zendeskDefaultPlan  = mustDescribe(Zendesk).DefaultPlan
	webhookDefaultPlan  = mustDescribe(Webhook).DefaultPlan
)

func mustDescribe(t DestinationType) TypeInfo {
	info, _ := Describe(t)
	return info
}

// allowedKeys returns the fixed destination keys a configuration may use,
// or nil when its type takes free-text keys.
func allowedKeys(c *Config) []string {
	switch c.DestinationType {
	case FacebookCustomAudiences:
		return facebookSchemaOrder[:]
	case GoogleAdsRemarketingLists:
		return googleUploadKeys[c.Settings.UploadKeyType]
	}
	return nil
}
