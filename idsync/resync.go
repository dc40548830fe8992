package idsync

import (
	"errors"
	"fmt"
	"time"
)

// Resync is a request to re-send the current members of an audience to one
// of its destinations, under the configuration in effect at StartAt
// (docs/resync.md). The admin API stores it; the pipeline runs it on the
// partitions each instance owns.
type Resync struct {
	// ID names the resync (ValidResyncID); it is in every record the
	// resync sends.
	ID            string `json:"id"`
	SpaceID       string `json:"space_id"`
	AudienceID    string `json:"audience_id"`
	DestinationID string `json:"destination_id"`
	// Version is the connection's version the resync was asked for: the
	// one in effect at StartAt when no later edit became effective before
	// it.
	Version int64 `json:"version"`
	// StartAt is when the resync starts, and the reference time that
	// chooses the version of every record it sends.
	StartAt   time.Time `json:"start_at"`
	CreatedAt time.Time `json:"created_at"`
	// CreatedBy names the admin token that asked for it.
	CreatedBy string `json:"created_by"`
	// Partitions is the input topic's partition count when the resync was
	// started: one start record went to each.
	Partitions int32 `json:"partitions"`
	// CancelledAt is set once the resync is cancelled: partitions not
	// finished then send nothing more.
	CancelledAt *time.Time `json:"cancelled_at,omitempty"`
	// Secret keys the signatures of the resync's control records (only
	// idsync writes records the resync accepts). Stored, never shown by the
	// API.
	Secret string `json:"secret,omitempty"`
}

// Cancelled reports whether the resync was cancelled.
func (r *Resync) Cancelled() bool { return r.CancelledAt != nil }

// maxResyncID bounds a resync id.
const maxResyncID = 64

// ValidResyncID reports whether id can name a resync: 1–64 characters of
// a–z, 0–9, '_' and '-' (so that it needs no escaping in JSON, a header or
// a message id).
func ValidResyncID(id string) bool {
	if id == "" || len(id) > maxResyncID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Check validates a resync read from storage or a control record, naming
// the first bad field.
func (r *Resync) Check() error {
	switch {
	case !ValidResyncID(r.ID):
		return errors.New("id: not a resync id (1-64 of a-z, 0-9, _ and -)")
	case r.SpaceID == "" || len(r.SpaceID) > maxIDLen:
		return fmt.Errorf("space_id: must be 1-%d bytes", maxIDLen)
	case r.AudienceID == "" || len(r.AudienceID) > maxIDLen:
		return fmt.Errorf("audience_id: must be 1-%d bytes", maxIDLen)
	case !ValidDestinationID(r.DestinationID):
		return errors.New("destination_id: not a destination id")
	case r.StartAt.IsZero():
		return errors.New("start_at: missing")
	case len(r.Secret) < 16 || len(r.Secret) > 256:
		return errors.New("secret: must be 16-256 bytes")
	}
	return nil
}

// ResyncProgress is a resync's progress on one input partition.
type ResyncProgress struct {
	Partition int32 `json:"partition"`
	// Done counts the partition's snapshot members passed so far (sent,
	// or left to the live stream because a live event of theirs came
	// during the resync); Total is the snapshot's members.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Sent counts the records sent (as far as this instance knows: a
	// restarted step counts again).
	Sent      int64 `json:"sent"`
	Finished  bool  `json:"finished"`
	Cancelled bool  `json:"cancelled,omitempty"`
	// Instance names the instance that reported it.
	Instance string    `json:"instance,omitempty"`
	Updated  time.Time `json:"updated"`
}

// maxIDLen bounds the space and audience ids of a resync.
const maxIDLen = 256
