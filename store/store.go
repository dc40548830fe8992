// Package store keeps idsync's connections, their versions and their audit
// log in Redis, and caches them in process for the pipeline.
//
// [Store] is the system of record the admin API edits: every edit is one
// Redis transaction (WATCH/MULTI/EXEC) that writes the connection's versions,
// appends an audit entry and publishes a [Notification]. [Cache] is what the
// pipeline reads: a bounded, process-local copy of each audience's
// connections, invalidated by those notifications, that keeps serving what it
// has while Redis is unreachable (DESIGN.md §3 and §7). The data model is
// documented in docs/store.md.
//
// The package works on a standalone Redis, behind Sentinel and on Redis
// Cluster: all keys of one audience share a hash slot, no command spans
// slots, and nothing scans the keyspace. Authentication, TLS and topology
// are the business of the [redis.UniversalClient] the caller builds.
//
// What is read is checked: a stored record that cannot be decoded, or a
// version whose configuration this binary cannot use, is marked
// ([idsync.Connection].Invalid, [idsync.Version].Invalid) rather than
// failing the whole audience, so that the pipeline dead-letters the events
// of that one destination and serves the others (see [Store.List]).
//
// Non-goals: reporting configuration problems to users (callers validate
// with [idsync.Validate] before Put, which checks again), choosing the
// version that applies to an event (the domain's [idsync.VersionAt]), and
// anything about HTTP.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
)

// Defaults applied by New to zero Options fields.
const (
	// DefaultPrefix starts every key and the notification channel.
	DefaultPrefix = "idsync:"
	// DefaultAuditLimit is how many audit entries are kept per connection.
	DefaultAuditLimit = 100
)

// Errors of the store. Redis failures are returned wrapped and are none of
// these.
var (
	// ErrConflict means an edit lost the race against other edits of the
	// same audience several times in a row and was given up; nothing was
	// written. Retrying later is safe.
	ErrConflict = errors.New("concurrent edits, try again")
	// ErrPreconditionFailed means If-Match named a version that is not the
	// connection's newest; nothing was written (HTTP 412).
	ErrPreconditionFailed = errors.New("version precondition failed")
	// ErrInvalidKey means a space, audience or destination id is not
	// acceptable; the error's message names which part, never its value.
	// It is idsync.ErrInvalidKey, which the pipeline dead-letters on.
	ErrInvalidKey = idsync.ErrInvalidKey

	// ErrNotReplicated means an edit was applied on the Redis master but
	// fewer replicas than Options.ReplicaAcks acknowledged it within
	// Options.ReplicaAckTimeout: it is readable now, and may be lost if the
	// master fails before its replicas have it. Like any Redis failure,
	// the outcome of the edit is not known to the caller for sure; History
	// tells.
	ErrNotReplicated = errors.New("edit applied on the Redis master but not acknowledged by enough replicas: it may be lost if the master fails now")

	// errCorrupt marks a value in Redis that cannot be decoded: Redis
	// answered, so it is not unreachable.
	errCorrupt = errors.New("corrupt record")
)

// editAttempts bounds the WATCH/MULTI/EXEC attempts of one edit; between
// attempts the edit waits a random time below backoffBase<<attempt, at
// most backoffMax.
const (
	editAttempts = 6
	backoffBase  = 2 * time.Millisecond
	backoffMax   = 100 * time.Millisecond
)

// Options configure a Store. Zero fields take the defaults New documents.
type Options struct {
	// Prefix starts every key and the channel name (default "idsync:"). It
	// must pass CheckPrefix: no braces (they would change the keys' hash
	// slot), no glob characters (so that Prefix+"*" is a safe ACL and SCAN
	// pattern), no white space or control characters.
	Prefix string
	// Activation holds the activation delay and the retention of superseded
	// versions. The zero value means idsync.DefaultActivation().
	Activation idsync.Activation
	// AuditLimit is how many audit entries are kept per connection, newest
	// first (default 100).
	AuditLimit int
	// Now is the clock (default time.Now). Tests inject one.
	Now func() time.Time
	// ResyncRetention is how long a resync and its progress are kept
	// (default DefaultResyncRetention).
	ResyncRetention time.Duration
	// ReplicaAcks, when positive, is how many replicas must acknowledge
	// an edit (Redis WAIT, after EXEC, on the same connection) before Put
	// or Delete report success; fewer within ReplicaAckTimeout give
	// ErrNotReplicated. Redis replicates asynchronously: without it, an
	// edit acknowledged by a master that is killed an instant later can be
	// missing from the replica promoted in its place. 0 (the default)
	// waits for none, as a standalone Redis without replicas needs.
	ReplicaAcks int
	// ReplicaAckTimeout bounds that wait (default DefaultReplicaAckTimeout).
	ReplicaAckTimeout time.Duration
}

// DefaultReplicaAckTimeout is the default Options.ReplicaAckTimeout.
const DefaultReplicaAckTimeout = time.Second

// MaxPrefixLen is the longest key prefix CheckPrefix accepts, in bytes.
const MaxPrefixLen = 256

// CheckPrefix returns an error saying what is wrong with prefix as a key
// prefix, or nil. A prefix is at most MaxPrefixLen bytes without braces
// ('{' and '}' would change the keys' cluster hash slot), glob characters
// ('*', '?', '[', ']', '\', so that prefix+"*" is a safe ACL and SCAN
// pattern), white space or control characters. New applies it (after
// defaulting "" to DefaultPrefix); package config applies the same check to
// redis.key_prefix, so that what validation accepts New accepts too. The
// message never quotes the prefix.
func CheckPrefix(prefix string) error {
	switch {
	case len(prefix) > MaxPrefixLen:
		return fmt.Errorf("must be at most %d bytes (got %d)", MaxPrefixLen, len(prefix))
	case strings.ContainsAny(prefix, "{}"):
		return errors.New("must not contain braces ('{', '}'): they would change the keys' Redis Cluster hash slot")
	case strings.ContainsAny(prefix, "*?[]\\"):
		return errors.New("must not contain glob characters ('*', '?', '[', ']', '\\')")
	case strings.IndexFunc(prefix, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return errors.New("must not contain spaces or control characters")
	}
	return nil
}

// Store reads and edits connections in Redis. It is safe for concurrent use
// by many goroutines and by many processes sharing one Redis.
type Store struct {
	rdb     redis.UniversalClient
	prefix  string
	act     idsync.Activation
	limit   int64
	now     func() time.Time
	channel string
	strs    *interner
	// resyncRetention: see Options.ResyncRetention.
	resyncRetention time.Duration
	acks            int
	ackWait         time.Duration
}

// New returns a Store on rdb. It validates opt and applies the defaults
// (prefix "idsync:", idsync.DefaultActivation, 100 audit entries,
// time.Now); it does not contact Redis.
func New(rdb redis.UniversalClient, opt Options) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("store: nil redis client")
	}
	if opt.Prefix == "" {
		opt.Prefix = DefaultPrefix
	}
	if err := CheckPrefix(opt.Prefix); err != nil {
		return nil, fmt.Errorf("store: prefix: %w", err)
	}
	if opt.Activation == (idsync.Activation{}) {
		opt.Activation = idsync.DefaultActivation()
	}
	if err := opt.Activation.Check(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	switch {
	case opt.AuditLimit == 0:
		opt.AuditLimit = DefaultAuditLimit
	case opt.AuditLimit < 0:
		return nil, fmt.Errorf("store: audit limit %d is negative", opt.AuditLimit)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	switch {
	case opt.ResyncRetention == 0:
		opt.ResyncRetention = DefaultResyncRetention
	case opt.ResyncRetention < time.Second:
		return nil, fmt.Errorf("store: resync retention %s is below a second", opt.ResyncRetention)
	}
	switch {
	case opt.ReplicaAcks < 0 || opt.ReplicaAckTimeout < 0:
		return nil, errors.New("store: negative replica acknowledgements or timeout")
	case opt.ReplicaAckTimeout == 0:
		opt.ReplicaAckTimeout = DefaultReplicaAckTimeout
	}
	return &Store{
		resyncRetention: opt.ResyncRetention,
		acks:            opt.ReplicaAcks,
		ackWait:         opt.ReplicaAckTimeout,
		rdb:             rdb,
		prefix:          opt.Prefix,
		act:             opt.Activation,
		limit:           int64(opt.AuditLimit),
		now:             opt.Now,
		channel:         opt.Prefix + "notifications",
		strs:            newInterner(),
	}, nil
}

// Key names one connection: a destination connected to an audience of a
// space.
type Key struct {
	Space, Audience, Destination string
}

// Validate returns an error wrapping ErrInvalidKey that names the first
// invalid part of k, or nil. Spaces and audiences follow
// idsync.ValidEntityID, destinations idsync.ValidDestinationID.
func (k Key) Validate() error {
	if err := validAudience(k.Space, k.Audience); err != nil {
		return err
	}
	if !idsync.ValidDestinationID(k.Destination) {
		return fmt.Errorf("%w: destination_id must match ^[a-z0-9][a-z0-9_-]{0,63}$", ErrInvalidKey)
	}
	return nil
}

func validAudience(space, audience string) error {
	if !idsync.ValidEntityID(space) {
		return fmt.Errorf("%w: space must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", ErrInvalidKey)
	}
	if !idsync.ValidEntityID(audience) {
		return fmt.Errorf("%w: audience must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", ErrInvalidKey)
	}
	return nil
}

// AuditEntry is one accepted edit of a connection.
type AuditEntry struct {
	// Version is the version the edit created.
	Version int64 `json:"version"`
	// Action is "put" or "delete".
	Action string `json:"action"`
	// Actor is who made the edit, as the caller named them.
	Actor string `json:"actor"`
	// At is when the edit was made (the version's updated_at).
	At time.Time `json:"at"`
	// EffectiveAt is when the new version takes (or took) effect.
	EffectiveAt time.Time `json:"effective_at"`
	// Old is the configuration of the newest version before the edit
	// (pending or active), nil when there was none or it was a tombstone.
	Old *idsync.Config `json:"old"`
	// New is the configuration the edit stored, nil for a delete.
	New *idsync.Config `json:"new"`
}

// The actions of an AuditEntry.
const (
	ActionPut    = "put"
	ActionDelete = "delete"
)

// Notification is what every edit publishes on Channel: which connection
// changed and the version the edit created.
type Notification struct {
	Space       string `json:"space"`
	Audience    string `json:"audience"`
	Destination string `json:"destination"`
	Version     int64  `json:"version"`
}

// ParseNotification decodes a payload received on Channel. It fails when
// the payload is not a notification or names an invalid key.
func ParseNotification(payload string) (Notification, error) {
	var n Notification
	if err := json.Unmarshal([]byte(payload), &n); err != nil {
		return Notification{}, fmt.Errorf("parsing notification: %w", err)
	}
	if err := (Key{n.Space, n.Audience, n.Destination}).Validate(); err != nil {
		return Notification{}, fmt.Errorf("parsing notification: %w", err)
	}
	if n.Version < 1 {
		return Notification{}, errors.New("parsing notification: version must be positive")
	}
	return n, nil
}

// Channel returns the pub/sub channel every edit publishes its Notification
// on: the prefix followed by "notifications".
func (s *Store) Channel() string { return s.channel }

// Activation returns the activation rules the store edits with.
func (s *Store) Activation() idsync.Activation { return s.act }

// connectionsKey is the HASH of one audience: field destination id, value
// the connection's record. The braces are the cluster hash tag.
func (s *Store) connectionsKey(space, audience string) string {
	return s.prefix + "{" + space + "/" + audience + "}:connections"
}

// auditKey is the LIST of one connection's audit entries, newest first, in
// the same hash slot as its audience's connections.
func (s *Store) auditKey(k Key) string {
	return s.prefix + "{" + k.Space + "/" + k.Audience + "}:audit:" + k.Destination
}

// record is the value of one field of the connections hash.
type record struct {
	Versions []idsync.Version `json:"versions"`
}

// IfAbsent is the ifMatch of an edit that must create the connection: it
// fails with ErrPreconditionFailed when the connection has a version in
// effect or pending (HTTP's If-None-Match: *).
const IfAbsent int64 = -1

// Put stores cfg as a new version of the connection k, creating the
// connection if needed, and returns that version. The first version of a
// connection (or the first after its deletion took effect) is effective at
// once; a later one after the activation delay, replacing a pending one.
//
// ifMatch > 0 requires the connection's newest version, pending or active,
// to be exactly ifMatch, else ErrPreconditionFailed; IfAbsent requires that
// the connection have no version in effect or pending (it was never
// created, or its deletion took effect); 0 means no condition.
// Edits of the same audience race optimistically; an edit that loses
// several times in a row fails with ErrConflict. Both leave Redis
// untouched. Any other error is Redis's or ctx's, or ErrNotReplicated
// (Options.ReplicaAcks): the edit may or may not have been applied, and
// History tells.
//
// cfg must be valid (the caller reports problems to the user); Put checks
// it again with idsync.Validate and refuses an invalid one with the
// *idsync.ValidationError. Put blocks for a few Redis round trips.
func (s *Store) Put(ctx context.Context, k Key, cfg *idsync.Config, actor string, ifMatch int64) (idsync.Version, error) {
	if err := k.Validate(); err != nil {
		return idsync.Version{}, err
	}
	if cfg == nil {
		return idsync.Version{}, errors.New("store: putting connection: nil configuration")
	}
	if err := idsync.Validate(cfg); err != nil {
		return idsync.Version{}, fmt.Errorf("store: putting connection: %w", err)
	}
	v, err := s.edit(ctx, k, cfg, actor, ifMatch)
	if err != nil {
		return idsync.Version{}, fmt.Errorf("store: putting connection: %w", err)
	}
	return v, nil
}

// Delete disconnects k: it stores a tombstone version, effective after the
// activation delay like any later edit, and returns it. It returns
// idsync.ErrNotFound when the connection does not exist or its deletion is
// already effective. ifMatch, conflicts and other errors are as for Put.
func (s *Store) Delete(ctx context.Context, k Key, actor string, ifMatch int64) (idsync.Version, error) {
	if err := k.Validate(); err != nil {
		return idsync.Version{}, err
	}
	v, err := s.edit(ctx, k, nil, actor, ifMatch)
	if err != nil {
		return idsync.Version{}, fmt.Errorf("store: deleting connection: %w", err)
	}
	return v, nil
}

// edit applies one edit (cfg nil deletes) in a WATCH/MULTI/EXEC
// transaction, retrying lost races with jittered backoff.
func (s *Store) edit(ctx context.Context, k Key, cfg *idsync.Config, actor string, ifMatch int64) (idsync.Version, error) {
	hkey := s.connectionsKey(k.Space, k.Audience)
	akey := s.auditKey(k)
	for attempt := 0; ; attempt++ {
		var created idsync.Version
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			raw, err := tx.HGet(ctx, hkey, k.Destination).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return fmt.Errorf("reading connection: %w", readError(err))
			}
			var versions []idsync.Version
			if err == nil {
				// A record that cannot be decoded is not overwritten: its
				// version numbers are unknown (docs/store.md says how to
				// repair it).
				if versions, err = s.decodeRecord(raw); err != nil {
					return fmt.Errorf("%w: %w", idsync.ErrUnusableConfig, err)
				}
			}
			var newest int64
			var old *idsync.Config
			if n := len(versions); n > 0 {
				newest, old = versions[n-1].Version, versions[n-1].Config
			}
			now := s.now().UTC().Round(0)
			if ifMatch > 0 && newest != ifMatch {
				return fmt.Errorf("%w: newest version is %d, not %d", ErrPreconditionFailed, newest, ifMatch)
			}
			if ifMatch == IfAbsent && idsync.Current(versions, now) {
				return fmt.Errorf("%w: the connection exists (newest version %d)", ErrPreconditionFailed, newest)
			}
			next, v, err := s.act.Edit(versions, cfg, now)
			if err != nil {
				return err
			}
			value, err := json.Marshal(record{Versions: next})
			if err != nil {
				return fmt.Errorf("encoding connection: %w", err)
			}
			action := ActionPut
			if cfg == nil {
				action = ActionDelete
			}
			audit, err := json.Marshal(AuditEntry{
				Version: v.Version, Action: action, Actor: actor,
				At: v.UpdatedAt, EffectiveAt: v.EffectiveAt, Old: old, New: cfg,
			})
			if err != nil {
				return fmt.Errorf("encoding audit entry: %w", err)
			}
			note, err := json.Marshal(Notification{k.Space, k.Audience, k.Destination, v.Version})
			if err != nil {
				return fmt.Errorf("encoding notification: %w", err)
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.HSet(ctx, hkey, k.Destination, value)
				p.LPush(ctx, akey, audit)
				p.LTrim(ctx, akey, 0, s.limit-1)
				p.Publish(ctx, s.channel, note)
				return nil
			})
			if err != nil {
				return err
			}
			created = v
			return s.waitReplicas(ctx, tx)
		}, hkey)
		switch {
		case err == nil:
			return created, nil
		case !errors.Is(err, redis.TxFailedErr):
			return idsync.Version{}, err
		case attempt+1 >= editAttempts:
			return idsync.Version{}, fmt.Errorf("%w (%d attempts)", ErrConflict, editAttempts)
		}
		wait := min(backoffBase<<attempt, backoffMax)
		t := time.NewTimer(rand.N(wait) + 1)
		select {
		case <-ctx.Done():
			t.Stop()
			return idsync.Version{}, ctx.Err()
		case <-t.C:
		}
	}
}

// waitReplicas waits, when the store was asked to, until s.acks replicas
// have what tx's connection wrote (WAIT).
func (s *Store) waitReplicas(ctx context.Context, tx *redis.Tx) error {
	if s.acks == 0 {
		return nil
	}
	n, err := tx.Wait(ctx, s.acks, s.ackWait).Result()
	switch {
	case err != nil:
		return fmt.Errorf("%w: WAIT: %w", ErrNotReplicated, err)
	case n < int64(s.acks):
		return fmt.Errorf("%w (%d of %d replicas within %s)", ErrNotReplicated, n, s.acks, s.ackWait)
	}
	return nil
}

// Get returns the connection k with its retained versions (pruned at now),
// including a tombstone still within retention (check Deleted with
// idsync.ActiveAndPending). It returns idsync.ErrNotFound when the
// connection never existed or all that is left is a tombstone past
// retention. Get is one Redis round trip.
//
// Versions are checked as List checks them: one whose configuration this
// binary cannot use is returned with Version.Invalid set. A stored record
// that cannot be decoded at all (or a connections key of another Redis
// type) gives an error wrapping idsync.ErrUnusableConfig that says why,
// without any value: there is no version to show, and the record must be
// repaired by hand (docs/store.md).
func (s *Store) Get(ctx context.Context, k Key) (idsync.Connection, error) {
	if err := k.Validate(); err != nil {
		return idsync.Connection{}, err
	}
	raw, err := s.rdb.HGet(ctx, s.connectionsKey(k.Space, k.Audience), k.Destination).Result()
	if errors.Is(err, redis.Nil) {
		return idsync.Connection{}, idsync.ErrNotFound
	}
	if err != nil {
		return idsync.Connection{}, fmt.Errorf("store: getting connection: %w", readError(err))
	}
	versions, err := s.decodeRecord(raw)
	if err != nil {
		return idsync.Connection{}, fmt.Errorf("store: getting connection: %w: %w", idsync.ErrUnusableConfig, err)
	}
	now := s.now()
	versions = s.prune(versions, now)
	if s.act.Expired(versions, now) {
		return idsync.Connection{}, idsync.ErrNotFound
	}
	return idsync.Connection{DestinationID: k.Destination, Versions: versions}, nil
}

// List returns every connection of the audience, sorted by destination id,
// each with its retained versions (pruned at now) as Get returns them.
// Connections of which only an expired tombstone is left are omitted. An
// audience without connections gives an empty result and no error. List is
// one Redis round trip (HGETALL).
//
// Stored records are checked as they are read, so that one bad record
// never hides the audience's other connections:
//   - a record that cannot be decoded, or stored under a field that is not
//     a valid destination id, is returned as a Connection with only
//     DestinationID and Invalid set;
//   - a version whose configuration cannot be decoded, is missing, or
//     breaks the rules of idsync.Validate (an unknown destination type
//     after a rolling upgrade, a hand-edited key) keeps the configuration
//     as decoded, if it could be, and gets Version.Invalid.
//
// Invalid names fields and says what is wrong with them, as
// idsync.Validate does; it never holds an identifier value (a stored
// record holds none to begin with). A connections key holding another Redis
// type than a hash (WRONGTYPE) gives an error wrapping
// idsync.ErrUnusableConfig: Redis answered, and waiting will not mend it.
func (s *Store) List(ctx context.Context, space, audience string) ([]idsync.Connection, error) {
	conns, _, err := s.list(ctx, space, audience)
	return conns, err
}

// readReport counts what one read found that cannot be used, for the
// cache's metric and log. It holds no id and no value.
type readReport struct {
	// connections counts records that cannot be used at all.
	connections int
	// versions counts retained versions whose configuration cannot be used.
	versions int
	// reason is the first reason found.
	reason string
}

func (r *readReport) add(conns, versions int, reason string) {
	r.connections += conns
	r.versions += versions
	if r.reason == "" {
		r.reason = reason
	}
}

// list is List, also reporting what it found unusable.
func (s *Store) list(ctx context.Context, space, audience string) ([]idsync.Connection, readReport, error) {
	var rep readReport
	if err := validAudience(space, audience); err != nil {
		return nil, rep, err
	}
	fields, err := s.rdb.HGetAll(ctx, s.connectionsKey(space, audience)).Result()
	if err != nil {
		return nil, rep, fmt.Errorf("store: listing connections: %w", readError(err))
	}
	now := s.now()
	conns := make([]idsync.Connection, 0, len(fields))
	for dest, raw := range fields {
		if c, ok := s.connection(dest, raw, now, &rep); ok {
			conns = append(conns, c)
		}
	}
	slices.SortFunc(conns, func(a, b idsync.Connection) int { return strings.Compare(a.DestinationID, b.DestinationID) })
	return slices.Clip(conns), rep, nil
}

// connection turns one field of an audience's connections hash into the
// connection it stores, counting in rep what cannot be used. ok is false
// when all that is left is a tombstone past retention.
func (s *Store) connection(dest, raw string, now time.Time, rep *readReport) (c idsync.Connection, ok bool) {
	dest = s.strs.get(dest)
	if !idsync.ValidDestinationID(dest) {
		const why = "stored under a field that is not a valid destination id (must match ^[a-z0-9][a-z0-9_-]{0,63}$)"
		rep.add(1, 0, why)
		return idsync.Connection{DestinationID: dest, Invalid: why}, true
	}
	versions, err := s.decodeRecord(raw)
	if err != nil {
		why := "stored record cannot be used: " + err.Error()
		rep.add(1, 0, why)
		return idsync.Connection{DestinationID: dest, Invalid: why}, true
	}
	versions = s.prune(versions, now)
	if s.act.Expired(versions, now) {
		return idsync.Connection{}, false
	}
	for i := range versions {
		if versions[i].Invalid != "" {
			rep.add(0, 1, versions[i].Invalid)
		}
	}
	return idsync.Connection{DestinationID: dest, Versions: versions}, true
}

// readError marks a Redis reply that says the connections key holds
// another type (WRONGTYPE) as idsync.ErrUnusableConfig. Any other error is
// returned as it is.
func readError(err error) error {
	if redis.HasErrorPrefix(err, "WRONGTYPE") {
		return fmt.Errorf("%w: the connections key is not a Redis hash: %w", idsync.ErrUnusableConfig, err)
	}
	return err
}

// History returns the audit log of k, newest first, at most the audit limit
// entries. It returns idsync.ErrNotFound when the connection has never
// been edited. History is one Redis round trip.
func (s *Store) History(ctx context.Context, k Key) ([]AuditEntry, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	raws, err := s.rdb.LRange(ctx, s.auditKey(k), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("store: reading history: %w", err)
	}
	if len(raws) == 0 {
		return nil, idsync.ErrNotFound
	}
	out := make([]AuditEntry, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal([]byte(raw), &out[i]); err != nil {
			return nil, fmt.Errorf("store: reading history: decoding entry %d: %w", i, err)
		}
	}
	return out, nil
}

// prune drops versions past retention, copying what is left so that the
// dropped ones are not kept alive by a cache.
func (s *Store) prune(versions []idsync.Version, now time.Time) []idsync.Version {
	kept := s.act.Prune(versions, now)
	if len(kept) == len(versions) {
		return versions
	}
	return slices.Clone(kept)
}

// versionWire is idsync.Version as decoded from Redis, its configuration
// left raw so that the interner can share identical ones.
type versionWire struct {
	Version     int64           `json:"version"`
	UpdatedAt   time.Time       `json:"updated_at"`
	EffectiveAt time.Time       `json:"effective_at"`
	Deleted     bool            `json:"deleted"`
	Config      json.RawMessage `json:"config"`
}

// decodeRecord decodes a connections-hash value into versions in ascending
// order, sized exactly and with repeated strings, mappings and whole
// configurations shared, so that cached connections cost little memory.
//
// A record that is not JSON, has no versions, or whose versions are out of
// order, not positive or without effective_at is refused with an error
// wrapping errCorrupt. A version that is not a tombstone and whose
// configuration is missing, cannot be decoded or is not valid gets
// Version.Invalid (with the configuration as decoded, when it could be).
// Messages hold no value.
func (s *Store) decodeRecord(raw string) ([]idsync.Version, error) {
	var r struct {
		Versions []versionWire `json:"versions"`
	}
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("decoding connection: %w: %s", errCorrupt, jsonReason(err))
	}
	if len(r.Versions) == 0 {
		return nil, fmt.Errorf("decoding connection: %w: no versions", errCorrupt)
	}
	versions := make([]idsync.Version, len(r.Versions))
	for i, w := range r.Versions {
		switch {
		case w.Version < 1:
			return nil, fmt.Errorf("decoding connection: %w: versions[%d]: version must be positive", errCorrupt, i)
		case i > 0 && w.Version <= r.Versions[i-1].Version:
			return nil, fmt.Errorf("decoding connection: %w: versions out of order", errCorrupt)
		case w.EffectiveAt.IsZero():
			return nil, fmt.Errorf("decoding connection: %w: versions[%d]: effective_at missing", errCorrupt, i)
		}
		v := &versions[i]
		*v = idsync.Version{Version: w.Version, UpdatedAt: w.UpdatedAt, EffectiveAt: w.EffectiveAt, Deleted: w.Deleted}
		if len(w.Config) == 0 || string(w.Config) == "null" {
			if !w.Deleted {
				v.Invalid = fmt.Sprintf("version %d has no configuration", w.Version)
			}
			continue
		}
		c, invalid, err := s.strs.config(w.Config)
		switch {
		case err != nil && !w.Deleted:
			v.Invalid = fmt.Sprintf("configuration of version %d cannot be decoded: %s", w.Version, jsonReason(err))
		case err != nil:
			// A tombstone's configuration is never used.
		case invalid != "" && !w.Deleted:
			v.Config = c
			v.Invalid = fmt.Sprintf("configuration of version %d cannot be used: %s", w.Version, invalid)
		default:
			v.Config = c
		}
	}
	return versions, nil
}

// jsonReason says why encoding/json refused a stored value, naming the
// field or the byte offset but never quoting the value.
func jsonReason(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te) && te.Field != "":
		return fmt.Sprintf("%s must be %s", te.Field, jsonType(te.Type.Kind().String()))
	case errors.As(err, &te):
		return "must be " + jsonType(te.Type.Kind().String())
	}
	return "malformed JSON"
}

// jsonType names the JSON type a Go kind is decoded from.
func jsonType(kind string) string {
	switch kind {
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "struct", "ptr", "map":
		return "an object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	}
	return "a " + kind
}
