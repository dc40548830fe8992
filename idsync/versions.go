package idsync

import (
	"errors"
	"fmt"
	"time"
)

// ErrNotFound means an edit refers to a connection that does not exist (or
// whose deletion is already effective).
var ErrNotFound = errors.New("connection not found")

// Activation holds the timing rules of configuration versions (DESIGN.md
// §3). The zero value is not useful; start from DefaultActivation.
type Activation struct {
	// Delay is how long after an edit of an existing connection the new
	// version becomes effective.
	Delay time.Duration
	// RetainSuperseded is how long a version is kept after a newer one
	// became effective, so lagging events resolve the same way everywhere.
	RetainSuperseded time.Duration
}

// DefaultActivation returns the product defaults: 5 minutes and 24 hours.
func DefaultActivation() Activation {
	return Activation{Delay: 5 * time.Minute, RetainSuperseded: 24 * time.Hour}
}

// Check returns an error naming the first invalid field of a.
func (a Activation) Check() error {
	if a.Delay < 0 {
		return fmt.Errorf("activation delay %s is negative", a.Delay)
	}
	if a.RetainSuperseded < 0 {
		return fmt.Errorf("retain_superseded %s is negative", a.RetainSuperseded)
	}
	return nil
}

// Edit returns the versions of a connection after an edit made at now, and
// the version the edit created. cfg nil deletes the connection (a tombstone
// version). versions must be in ascending version order; it is not
// modified.
//
// The first version of a new connection (or of one whose deletion is
// effective) is effective at once; any later edit is effective after
// a.Delay. A pending version is replaced by the new edit, which restarts the
// delay. Deleting a connection that does not exist returns ErrNotFound.
// Superseded versions past retention are pruned from the result.
func (a Activation) Edit(versions []Version, cfg *Config, now time.Time) ([]Version, Version, error) {
	next := Version{UpdatedAt: now, EffectiveAt: now, Deleted: cfg == nil, Config: cfg}
	if len(versions) > 0 {
		next.Version = versions[len(versions)-1].Version + 1
	} else {
		next.Version = 1
	}
	kept := versions
	if n := len(kept); n > 0 && kept[n-1].EffectiveAt.After(now) {
		kept = kept[:n-1] // the pending version is replaced
	}
	current := latestEffective(kept, now)
	exists := current != nil && !current.Deleted
	if !exists && cfg == nil {
		return nil, Version{}, ErrNotFound
	}
	if exists || len(kept) < len(versions) {
		// An existing connection, or one with a pending edit: wait the delay.
		next.EffectiveAt = now.Add(a.Delay)
	}
	out := make([]Version, 0, len(kept)+1)
	out = append(out, kept...)
	out = append(out, next)
	return a.Prune(out, now), next, nil
}

// latestEffective returns the newest version effective at t, or nil.
func latestEffective(versions []Version, t time.Time) *Version {
	for i := len(versions) - 1; i >= 0; i-- {
		if !versions[i].EffectiveAt.After(t) {
			return &versions[i]
		}
	}
	return nil
}

// Prune drops the versions superseded more than a.RetainSuperseded before
// now. A version is superseded when the next one becomes effective. The
// newest version is always kept, so version numbers keep increasing. The
// result shares versions' backing array.
func (a Activation) Prune(versions []Version, now time.Time) []Version {
	cut := 0
	for i := 0; i+1 < len(versions); i++ {
		superseded := versions[i+1].EffectiveAt
		if superseded.After(now) || now.Sub(superseded) <= a.RetainSuperseded {
			break
		}
		cut = i + 1
	}
	return versions[cut:]
}

// Expired reports whether a connection's versions hold nothing but a
// tombstone effective for longer than retention: the store may forget it.
func (a Activation) Expired(versions []Version, now time.Time) bool {
	if len(versions) != 1 || !versions[0].Deleted {
		return false
	}
	return now.Sub(versions[0].EffectiveAt) > a.RetainSuperseded
}

// VersionAt returns the version that applies at reference time ref: the
// newest one effective at ref or, when ref precedes every retained version,
// the oldest retained one. It returns nil when there are no versions. The
// caller clamps ref to its clock (Event.ReferenceTime does) and checks
// Deleted.
func VersionAt(versions []Version, ref time.Time) *Version {
	if len(versions) == 0 {
		return nil
	}
	if v := latestEffective(versions, ref); v != nil {
		return v
	}
	return &versions[0]
}

// State names where a version stands at now.
type State string

// The states of a version.
const (
	StatePending    State = "pending"
	StateActive     State = "active"
	StateSuperseded State = "superseded"
)

// StateOf returns the state at now of versions[i].
func StateOf(versions []Version, i int, now time.Time) State {
	if versions[i].EffectiveAt.After(now) {
		return StatePending
	}
	if i+1 < len(versions) && !versions[i+1].EffectiveAt.After(now) {
		return StateSuperseded
	}
	return StateActive
}

// ActiveAndPending returns the active and pending versions at now; either
// may be nil.
func ActiveAndPending(versions []Version, now time.Time) (active, pending *Version) {
	active = latestEffective(versions, now)
	if n := len(versions); n > 0 && versions[n-1].EffectiveAt.After(now) {
		pending = &versions[n-1]
	}
	return active, pending
}

// Current reports whether a connection with these versions has, at now, a
// version in effect or one waiting to take effect: whether it exists, for
// an edit made on condition that it does not (If-None-Match: *).
func Current(versions []Version, now time.Time) bool {
	active, pending := ActiveAndPending(versions, now)
	return pending != nil || (active != nil && !active.Deleted)
}
