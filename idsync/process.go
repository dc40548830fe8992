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

// Check returns an error naming the first invalid field of o.
func (o Options) Check() error {
	switch {
	case o.MaxCombinations < 1:
		return fmt.Errorf("max_combinations %d must be at least 1", o.MaxCombinations)
	case o.FacebookMaxRows < 1:
		return fmt.Errorf("facebook max rows %d must be at least 1", o.FacebookMaxRows)
	case !ValidPhoneRegion(o.PhoneRegion):
		return fmt.Errorf("phone region %q is not a known region code", o.PhoneRegion)
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
// Process is pure and safe for concurrent use. The pipeline and the admin
// API's preview both call it.
func Process(ev *Event, conns []Connection, now time.Time, opt Options) Result {
	var res Result
	sc := getScratch()
	defer sc.release()
	// The records' bytes, shared by all destinations, and the selection,
	// reset for each connection.
	mem, sel := &sc.rec, &sc.sel
	ref := ev.ReferenceTime(now)
	served := 0
	for i := range conns {
		c := &conns[i]
		v := VersionAt(c.Versions, ref)
		if v == nil || v.Deleted || v.Config == nil {
			continue
		}
		served++
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
		sh := shaper{ev: ev, dest: c.DestinationID, cfg: cfg, version: v.Version, sel: sel, opt: opt, mem: mem}
		n := sh.count()
		if n > opt.MaxCombinations {
			res.DeadLetters = append(res.DeadLetters, DeadLetter{
				DestinationID: c.DestinationID,
				Code:          CodeFanoutLimit,
				Message: fmt.Sprintf("destination %s: the event would produce %s records, above max_combinations %d",
					c.DestinationID, countText(n, opt.MaxCombinations), opt.MaxCombinations),
			})
			continue
		}
		sh.messageIDs(n)
		if res.Outputs == nil {
			// Most connections give one or two records: room for one each
			// saves growing the slice destination by destination.
			res.Outputs = make([]Output, 0, max(n, len(conns)-i))
		}
		res.Outputs = slices.Grow(res.Outputs, n)
		res.Outputs = sh.shape(res.Outputs)
	}
	mem.finish(res.Outputs)
	res.NoConnections = served == 0
	return res
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
