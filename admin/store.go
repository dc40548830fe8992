package admin

import (
	"context"
	"errors"
	"time"

	"github.com/idsync/idsync/idsync"
)

// Store is what the admin API needs from the connection store. The server
// calls it concurrently from every request.
//
// Errors: Get, Delete and History return an error wrapping
// idsync.ErrNotFound for a connection that does not exist; Put and Delete
// return an error wrapping ErrPreconditionFailed when ifMatch is positive and
// differs from the connection's newest version, or is IfAbsent and the
// connection has a version in effect or pending, and ErrConflict when a
// concurrent edit won the race. An error wrapping ErrInvalidKey means the
// store refused the key. Any other error is a store failure (500).
type Store interface {
	// Put validates nothing (the server has) and records cfg as a new
	// version of the connection k, made by actor. ifMatch 0 means no
	// precondition.
	Put(ctx context.Context, k Key, cfg *idsync.Config, actor string, ifMatch int64) (idsync.Version, error)
	// Delete records a tombstone version of the connection k.
	Delete(ctx context.Context, k Key, actor string, ifMatch int64) (idsync.Version, error)
	// Get returns the connection k with its retained versions in ascending
	// version order.
	Get(ctx context.Context, k Key) (idsync.Connection, error)
	// List returns every connection of an audience.
	List(ctx context.Context, space, audience string) ([]idsync.Connection, error)
	// History returns the audit log of the connection k, newest first.
	History(ctx context.Context, k Key) ([]AuditEntry, error)
}

// IfAbsent is the ifMatch of an edit made with If-None-Match: * (create
// only): the connection must have no version in effect or pending.
const IfAbsent int64 = -1

// Key names one connection. Its fields mirror the store's key, so a store
// adapter converts one into the other with a type conversion.
type Key struct{ Space, Audience, Destination string }

// AuditEntry is one edit of a connection as the audit log records it. Its
// fields mirror the store's audit entry (a type conversion turns one into
// the other).
type AuditEntry struct {
	// Version is the version the edit created.
	Version int64 `json:"version"`
	// Action says what the edit did, e.g. "put" or "delete".
	Action string `json:"action"`
	// Actor is the name of the token that made the edit.
	Actor       string    `json:"actor"`
	At          time.Time `json:"at"`
	EffectiveAt time.Time `json:"effective_at"`
	// Old and New are the configurations before and after the edit; nil
	// when the connection did not exist or was deleted.
	Old *idsync.Config `json:"old"`
	New *idsync.Config `json:"new"`
}

// Errors a Store wraps so the server can answer with the right status.
var (
	// ErrConflict means a concurrent edit of the same connection won (409).
	ErrConflict = errors.New("concurrent edit of the connection")
	// ErrPreconditionFailed means If-Match named another version than the
	// newest (412).
	ErrPreconditionFailed = errors.New("version precondition failed")
	// ErrInvalidKey means the store refused a space, audience or
	// destination id (400).
	ErrInvalidKey = errors.New("invalid connection key")
	// ErrNotConfirmed means an edit was written but not confirmed as the
	// store asks (e.g. not yet on enough Redis replicas): it may be lost in
	// a failover (500, saying so).
	ErrNotConfirmed = errors.New("edit not confirmed by the store")
)
