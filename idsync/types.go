// Package idsync holds the rules of audience ID Sync: decoding the
// audience-membership event, validating a connection's configuration, the
// catalog of destination types, versions and their activation, selecting a
// profile's identifiers by strategy, normalizing and hashing them, and shaping
// the records each destination type needs.
//
// The package does no I/O and reads no clock: time is always a parameter.
// Process is the one function the pipeline and the admin API's preview both
// call. Kafka, Redis, HTTP and configuration loading live elsewhere.
package idsync

import (
	"time"
)

// Action says whether a profile entered or exited an audience.
type Action string

// The two actions of an audience-membership event.
const (
	ActionEntered Action = "entered"
	ActionExited  Action = "exited"
)

// Computation classes of an audience-membership event.
const (
	ClassAudience    = "audience"
	ClassJourneyStep = "journey_step"
)

// Event is a decoded, validated audience-membership event (DESIGN.md §2).
// Only the fields idsync uses are kept; unknown fields are dropped by Decode.
type Event struct {
	MessageID string
	// Timestamp is the parsed "timestamp"; TimestampRaw is the string as it
	// arrived, echoed unchanged in every output envelope.
	Timestamp        time.Time
	TimestampRaw     string
	SpaceID          string
	ComputationClass string
	AudienceID       string
	// AudienceKey defaults to AudienceID when the event has none.
	AudienceKey string
	Action      Action
	// Sync is nil when the event carries no "sync" object.
	Sync        *Sync
	SegmentID   string
	ExternalIDs []ExternalID
	// Traits holds only the traits idsync forwards (Zendesk's name).
	Traits Traits
	// ReplayedAt is when the record was replayed from the dead-letter topic
	// (HeaderReplayAt; zero for every other record). It is not part of the
	// event's JSON: the pipeline sets it from the record's header.
	ReplayedAt time.Time
	// ResyncID names the resync that re-sends this event (empty for every
	// other event; docs/resync.md). It is not part of the event's JSON:
	// the pipeline sets it from the resync it runs. Process then writes it
	// in each record's envelope ("idsync":{"resync_id":…}) and in each
	// message id, "<message_id>:resync:<resync id>:<destination_id>:<n>",
	// so that a resync's records are told apart from the event's first
	// delivery and a replay of the same resync yields the same ids. It must
	// pass ValidResyncID.
	ResyncID string
	// ResyncAt, set by the pipeline on an event a resync re-sends, is the
	// reference time of that event (clamped to now): the resync's start, so
	// that every record of the resync has the version in effect then,
	// whatever the event's own times.
	ResyncAt time.Time
}

// Sync identifies the audience sync run that produced an event.
type Sync struct {
	ID        string
	StartedAt time.Time
}

// ExternalID is one identifier value of a profile.
type ExternalID struct {
	Type      string
	ID        string
	CreatedAt time.Time
}

// Traits are the profile traits idsync reads. Other traits are not forwarded.
type Traits struct {
	Name      string
	FirstName string
	LastName  string
}

// ReferenceTime is the time that chooses the configuration version for the
// event: sync.started_at when present, otherwise timestamp, clamped to now so
// that no version is ever used before it is effective. A replayed event
// (ReplayedAt set, later than that) takes the time of its replay: it was
// dead-lettered under the configuration of its time, and is replayed to be
// processed under the one fixed since. The replay time travels with the
// record, so a redelivery resolves the same way.
func (e *Event) ReferenceTime(now time.Time) time.Time {
	if !e.ResyncAt.IsZero() {
		return minTime(e.ResyncAt, now)
	}
	ref := e.Timestamp
	if e.Sync != nil && !e.Sync.StartedAt.IsZero() {
		ref = e.Sync.StartedAt
	}
	if e.ReplayedAt.After(ref) {
		ref = e.ReplayedAt
	}
	if ref.After(now) {
		return now
	}
	return ref
}

func minTime(a, b time.Time) time.Time {
	if a.After(b) {
		return b
	}
	return a
}

// DestinationType names a kind of destination in the catalog.
type DestinationType string

// The destination types idsync knows (DESIGN.md §5).
const (
	FacebookCustomAudiences   DestinationType = "facebook_custom_audiences"
	GoogleAdsRemarketingLists DestinationType = "google_ads_remarketing_lists"
	Iterable                  DestinationType = "iterable"
	Zendesk                   DestinationType = "zendesk"
	Webhook                   DestinationType = "webhook"
)

// DestinationTypes lists every destination type in a fixed order. Metric
// labels are initialised from it.
var DestinationTypes = []DestinationType{
	FacebookCustomAudiences, GoogleAdsRemarketingLists, Iterable, Zendesk, Webhook,
}

// Setup says whether a connection uses the destination type's default
// behaviour or a customized ID Sync mapping.
type Setup string

// The two setups.
const (
	SetupDefault    Setup = "default"
	SetupCustomized Setup = "customized"
)

// Strategy chooses which values of an identifier type are sent.
type Strategy string

// The three strategies.
const (
	LastAdded  Strategy = "last_added"
	FirstAdded Strategy = "first_added"
	All        Strategy = "all"
)

// Google Customer Match upload key types.
const (
	UploadContactInfo = "CONTACT_INFO"
	UploadMobileAdID  = "MOBILE_ADVERTISING_ID"
	UploadCRMID       = "CRM_ID"
)

// Mapping maps one Segment identifier type to a destination key with a
// strategy (customized setup).
type Mapping struct {
	Segment     string   `json:"segment"`
	Destination string   `json:"destination"`
	Strategy    Strategy `json:"strategy"`
}

// Settings are a connection's event settings. DefaultSettings gives the
// values used for fields a configuration leaves out.
type Settings struct {
	SendTrack     bool   `json:"send_track"`
	SendIdentify  bool   `json:"send_identify"`
	EnterEvent    string `json:"enter_event"`
	ExitEvent     string `json:"exit_event"`
	SendMobileIDs bool   `json:"send_mobile_ids"`
	// UploadKeyType applies to google_ads_remarketing_lists only and is
	// empty for the other types.
	UploadKeyType string `json:"upload_key_type,omitempty"`
}

// DefaultSettings returns the settings a configuration starts from before
// its own fields are applied.
func DefaultSettings() Settings {
	return Settings{
		SendTrack:     true,
		SendIdentify:  false,
		EnterEvent:    "Audience Entered",
		ExitEvent:     "Audience Exited",
		SendMobileIDs: false,
		UploadKeyType: UploadContactInfo,
	}
}

// Config is the ID Sync configuration of one connection (DESIGN.md §3).
// Build one with ParseConfig (which applies defaults) and check it with
// Validate before storing it.
type Config struct {
	DestinationType    DestinationType `json:"destination_type"`
	ExternalAudienceID string          `json:"external_audience_id,omitempty"`
	Settings           Settings        `json:"settings"`
	Setup              Setup           `json:"setup"`
	Identifiers        []Mapping       `json:"identifiers,omitempty"`
}

// Version is an immutable snapshot of a connection's configuration. A
// version with Deleted set is a tombstone: from its EffectiveAt on, the
// connection no longer exists.
type Version struct {
	Version     int64     `json:"version"`
	UpdatedAt   time.Time `json:"updated_at"`
	EffectiveAt time.Time `json:"effective_at"`
	Deleted     bool      `json:"deleted,omitempty"`
	// Config is nil for a tombstone.
	Config *Config `json:"config,omitempty"`
	// Invalid, when not empty, says why this stored version cannot be used
	// (e.g. an unknown destination type after a rolling upgrade). It is
	// set by whoever reads stored versions (package store), never stored.
	// An event to which it applies is dead-lettered for this destination
	// with CodeInvalidConfig; the message never holds identifier values.
	Invalid string `json:"-"`
}

// Connection is one destination connected to an audience, with its retained
// versions in ascending version order.
type Connection struct {
	DestinationID string    `json:"destination_id"`
	Versions      []Version `json:"versions"`
	// Invalid, when not empty, says why the stored connection as a whole
	// cannot be used (its record cannot be decoded): every event of the
	// audience is dead-lettered for this destination with
	// CodeInvalidConfig. Set by the reader, never stored.
	Invalid string `json:"-"`
}

// Output is one record idsync publishes to a destination's topic.
type Output struct {
	DestinationID   string
	DestinationType DestinationType
	// Key is the record key: the profile's segment_id.
	Key string
	// MessageID is "<source message_id>:<destination_id>:<n>".
	MessageID     string
	ConfigVersion int64
	// Value is the JSON envelope with the type-specific payload.
	Value []byte
}

// Skip reasons (the values of idsync_skipped_total's reason label).
const (
	SkipNoConnections = "no_connections"
)

// SkipReasons lists every skip reason, for metric initialisation.
var SkipReasons = []string{SkipNoConnections}

// DeadLetter says the event must go to the dead-letter topic for one
// destination, which gets nothing from it: CodeFanoutLimit (records, rows
// or bytes above the Options bounds), CodeOutputTooLarge (a record above
// MaxRecordBytes even after splitting) or CodeInvalidConfig (a stored
// connection or version Process cannot use). The pipeline adds
// CodeDestinationRefused itself.
type DeadLetter struct {
	DestinationID string `json:"destination_id"`
	Code          Code   `json:"code"`
	// Message names what went wrong without any identifier value.
	Message string `json:"message"`
}

// Result is what Process decided for one event.
type Result struct {
	// Outputs in destination order (the order of the connections passed to
	// Process), each destination's records in message_id order.
	Outputs []Output
	// NoConnections is set when the audience has no effective connection:
	// the event counts as skipped with reason no_connections. A connection
	// that cannot be used (Connection.Invalid, or an applied version that
	// is not a deletion and cannot be used) is effective: it has a dead
	// letter, and the event is not a no_connections skip.
	NoConnections bool
	// Unmatched lists, per connection with nothing to send for the profile,
	// its destination type (counted in idsync_unmatched_total).
	Unmatched []DestinationType
	// Invalid counts identifier values that could not be normalized, per
	// destination type (idsync_invalid_identifiers_total).
	Invalid map[DestinationType]int
	// DeadLetters lists destinations that get nothing from this event,
	// with the reason (fan-out or size limits, an unusable stored
	// configuration), in connection order. Each effective connection ends
	// in exactly one of: records in Outputs, one dead letter, or Unmatched.
	DeadLetters []DeadLetter
	// Bytes is the total length of the Outputs' values: at most
	// Options.MaxEventOutputBytes, and what the records hold in memory
	// (they share one allocation of exactly this size) until they are
	// acknowledged. Keys are not counted: they are the event's segment_id,
	// one string shared by every output.
	Bytes int
}
