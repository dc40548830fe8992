package idsync

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Options tune Process. Start from DefaultOptions.
type Options struct {
	// MaxCombinations bounds the records one event may produce for one
	// destination; above it the destination gets nothing and the event is
	// dead-lettered with CodeFanoutLimit.
	MaxCombinations int
	// FacebookMaxRows is the number of rows per Facebook record.
	FacebookMaxRows int
	// PhoneRegion is the default region for phone numbers written without
	// an international prefix.
	PhoneRegion string

	// MaxRecordBytes bounds one output record's key plus value. Facebook
	// records are split by bytes as well as by rows to fit; any other
	// record above it is not made and the destination is dead-lettered
	// with CodeOutputTooLarge. The pipeline passes its producer record
	// limit less room for headers and framing.
	MaxRecordBytes int
	// MaxOutputBytes bounds the output of one event for one destination
	// (the sum of its records' values), computed before anything is
	// materialized; above it the destination gets nothing and the event is
	// dead-lettered with CodeFanoutLimit.
	MaxOutputBytes int
	// MaxEventOutputBytes bounds the output of one event over all its
	// destinations; a destination whose output would pass it is
	// dead-lettered with CodeFanoutLimit (earlier destinations, in
	// connection order, are served).
	MaxEventOutputBytes int
	// MaxFacebookRows bounds the Facebook rows (combinations of values) of
	// one event for one destination; above it the destination is
	// dead-lettered with CodeFanoutLimit.
	MaxFacebookRows int
}

// DefaultOptions returns the defaults: 1000 combinations, 10,000 Facebook
// rows per record and 100,000 per event, region US, records of at most
// 4 MiB, 16 MiB per event and destination, 64 MiB per event.
func DefaultOptions() Options {
	return Options{MaxCombinations: 1000, FacebookMaxRows: 10000, PhoneRegion: "US",
		MaxRecordBytes: 4<<20 - 1<<10, MaxOutputBytes: 16 << 20, MaxEventOutputBytes: 64 << 20,
		MaxFacebookRows: 100000}
}

// MinRecordBytes is the smallest MaxRecordBytes Options.Check accepts:
// below it not even a record's envelope with a short key fits.
const MinRecordBytes = 1024

// Check returns an error naming the first invalid field of o, by its
// configuration setting where it has one. A zero field is invalid: callers
// that set only some fields start from DefaultOptions.
func (o Options) Check() error {
	switch {
	case o.MaxCombinations < 1:
		return fmt.Errorf("max_combinations %d must be at least 1", o.MaxCombinations)
	case o.FacebookMaxRows < 1:
		return fmt.Errorf("facebook max rows %d must be at least 1", o.FacebookMaxRows)
	case !ValidPhoneRegion(o.PhoneRegion):
		return fmt.Errorf("phone region %q is not a known region code", o.PhoneRegion)
	case o.MaxRecordBytes < MinRecordBytes:
		return fmt.Errorf("max record bytes %d (from kafka.producer_batch_max_bytes, less room for headers) must be at least %d to hold a record's envelope",
			o.MaxRecordBytes, MinRecordBytes)
	case o.MaxOutputBytes < 1:
		return fmt.Errorf("processing.max_output_bytes %d must be at least 1", o.MaxOutputBytes)
	case o.MaxEventOutputBytes < 1:
		return fmt.Errorf("processing.max_event_output_bytes %d must be at least 1", o.MaxEventOutputBytes)
	case o.MaxFacebookRows < 1:
		return fmt.Errorf("processing.max_facebook_rows %d must be at least 1", o.MaxFacebookRows)
	}
	return nil
}

// Process decides what idsync does with one decoded event: for each
// connection of the event's audience, the version that applies at the
// event's reference time (clamped to now), the identifiers selected by its
// plan, and the records shaped for its destination type. conns are the
// audience's connections with their retained versions; outputs follow their
// order. The same event, connections and now always give the same result.
//
// What the records of a destination will be (how many, how many bytes, how
// large the largest) is computed before any is written and checked against
// the bounds of opt (see bounds.go for the order): a destination that would
// break one gets nothing and a DeadLetter instead, its other destinations are
// served. Facebook records are split by bytes as well as by rows so that each
// fits in MaxRecordBytes.
//
// A connection that cannot be used — Connection.Invalid or the applied
// version's Invalid set, a version that is neither a deletion nor holds a
// configuration, or a configuration this binary cannot shape (see
// unusableConfig) — gets a DeadLetter with CodeInvalidConfig. It still
// counts as an effective connection: the event is not a no_connections
// skip.
//
// Process is pure and safe for concurrent use, and does not panic whatever
// the connections hold. opt must pass Options.Check. The pipeline and the
// admin API's preview both call it.
func Process(ev *Event, conns []Connection, now time.Time, opt Options) Result {
	var res Result
	sc := getScratch()
	defer sc.release()
	// The records' bytes, shared by all destinations, and the selection,
	// reset for each connection.
	mem, sel := &sc.rec, &sc.sel
	sizes := &sc.sizes // in the scratch: a local would escape through the shaper
	*sizes = eventSizes{}
	text := &sc.text
	text.haveEnvelope, text.haveSegment = false, false
	ref := ev.ReferenceTime(now)
	served := 0
	for i := range conns {
		c := &conns[i]
		if c.Invalid != "" {
			served++
			res.DeadLetters = append(res.DeadLetters, DeadLetter{DestinationID: c.DestinationID, Code: CodeInvalidConfig,
				Message: "destination " + clip(c.DestinationID, 64) + ": the stored connection cannot be used: " + clip(c.Invalid, 256)})
			continue
		}
		v := VersionAt(c.Versions, ref)
		if v == nil || v.Deleted {
			continue
		}
		served++
		if reason := unusableVersion(v); reason != "" {
			res.DeadLetters = append(res.DeadLetters, DeadLetter{DestinationID: c.DestinationID, Code: CodeInvalidConfig,
				Message: fmt.Sprintf("destination %s: version %d: %s", clip(c.DestinationID, 64), v.Version, reason)})
			continue
		}
		cfg := v.Config
		invalid := selectIdentifiers(ev, cfg, opt.PhoneRegion, sel)
		if invalid > 0 {
			if res.Invalid == nil {
				res.Invalid = make(map[DestinationType]int)
			}
			res.Invalid[cfg.DestinationType] += invalid
		}
		if sel.empty() {
			res.Unmatched = append(res.Unmatched, cfg.DestinationType)
			continue
		}
		sh := shaper{ev: ev, dest: c.DestinationID, cfg: cfg, version: v.Version, sel: sel, opt: opt, mem: mem, sizes: sizes, text: text}
		if cfg.DestinationType == Zendesk {
			sh.name = ev.Traits.displayName()
		}
		if dl, ok := sh.planRecords(&sc.plan); !ok {
			res.DeadLetters = append(res.DeadLetters, dl)
			continue
		}
		n := sh.plan.records
		if n == 0 {
			// Nothing to shape (a Facebook selection without a schema key).
			res.Unmatched = append(res.Unmatched, cfg.DestinationType)
			continue
		}
		if sh.plan.bytes > opt.MaxEventOutputBytes-len(mem.b) {
			dl, _ := sh.deadLetter(CodeFanoutLimit, "the event's output would reach %s bytes with this destination, above max_event_output_bytes %d",
				countText(addSat(len(mem.b), sh.plan.bytes), sizeBound), opt.MaxEventOutputBytes)
			res.DeadLetters = append(res.DeadLetters, dl)
			continue
		}
		sh.messageIDs(&sc.plan)
		// The outputs grow in the scratch; the result gets a copy of
		// exactly their number.
		from := len(sc.outs)
		sc.outs = sh.shape(slices.Grow(sc.outs, n))
		if planHook != nil {
			planHook(sh.plan, sc.outs[from:])
		}
	}
	// Every record was written, one after the other, into mem.b.
	res.Bytes = len(mem.b)
	if len(sc.outs) > 0 {
		res.Outputs = append([]Output(nil), sc.outs...)
		mem.finish(res.Outputs)
	}
	res.NoConnections = served == 0
	return res
}

// planHook, when set (by tests only), is called with each destination's
// plan and the records then written, so that tests check one against the
// other.
var planHook func(p recordPlan, outs []Output)

// unusableVersion says why Process cannot use an applied version that is
// not a deletion, or returns "" when it can.
func unusableVersion(v *Version) string {
	if v.Invalid != "" {
		return clip(v.Invalid, 256)
	}
	if v.Config == nil {
		return "it holds no configuration and is not a deletion"
	}
	if reason := unusableConfig(v.Config); reason != "" {
		return "its configuration cannot be used: " + reason
	}
	return ""
}

// unusableConfig checks the rules of DESIGN.md §3 whose breach would make
// Process send something else than the configuration says, or could not be
// shaped at all: a known destination type, a known setup, known strategies,
// destination keys from the type's fixed list, a known Google upload key
// type, an event type that sends a track or an identify. It returns why
// the configuration cannot be used, or "" when it can. It is cheap and
// allocates only to describe a refusal; the full Validate is the store's
// business when it reads a configuration.
func unusableConfig(c *Config) string {
	kind := KindOf(c.DestinationType)
	if kind == "" {
		return fmt.Sprintf("destination_type: unknown destination type %q", clip(string(c.DestinationType), 64))
	}
	switch c.Setup {
	case SetupDefault, SetupCustomized:
	default:
		return fmt.Sprintf("setup: %q is not default or customized", clip(string(c.Setup), 64))
	}
	if kind == KindEvent && !c.Settings.SendTrack && !c.Settings.SendIdentify {
		return "settings.send_track: send_track and send_identify are both false"
	}
	if c.DestinationType == GoogleAdsRemarketingLists {
		if _, ok := googleUploadKeys[c.Settings.UploadKeyType]; !ok {
			return fmt.Sprintf("settings.upload_key_type: %q is not a known upload key type", clip(c.Settings.UploadKeyType, 64))
		}
	}
	if c.Setup != SetupCustomized {
		return ""
	}
	if len(c.Identifiers) == 0 {
		return "identifiers: setup customized without identifiers"
	}
	fixed := allowedKeys(c)
	for i, m := range c.Identifiers {
		switch m.Strategy {
		case LastAdded, FirstAdded, All:
		default:
			return fmt.Sprintf("identifiers[%d].strategy: %q is not last_added, first_added or all", i, clip(string(m.Strategy), 64))
		}
		if kind == KindList && !contains(fixed, m.Destination) {
			return fmt.Sprintf("identifiers[%d].destination: %q is not a key of %s", i, clip(m.Destination, 64), c.DestinationType)
		}
	}
	return ""
}

// countText prints a record count that may have been capped.
func countText(n, limit int) string {
	if n == tooMany {
		return fmt.Sprintf("more than %d", limit)
	}
	return fmt.Sprint(n)
}

// tooMany is the count reported once a product exceeds countBound, so that
// counting never overflows nor materializes anything.
const (
	tooMany    = math.MaxInt
	countBound = 1 << 40
)

// mulCapped multiplies a by b, returning tooMany once the product exceeds
// bound.
func mulCapped(a, b, bound int) int {
	if a == 0 || b == 0 {
		return 0
	}
	if a == tooMany || a > bound/b {
		return tooMany
	}
	return a * b
}
