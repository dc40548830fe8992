package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
)

// Resyncs (docs/resync.md) are stored beside the connections:
//
//	<prefix>resync:{<id>}              STRING  the resync as JSON
//	<prefix>resync:{<id>}:progress     HASH    partition → idsync.ResyncProgress as JSON
//	<prefix>resync:{<id>}:progress:at  HASH    partition → the entry's time (µs)
//	<prefix>{<space>/<audience>}:resyncs:<destination>   LIST  resync ids, newest first
//
// A resync and its progress share a hash slot; each expires ResyncRetention
// after it was created (or last reported progress).

// DefaultResyncRetention is how long a resync and its progress are kept.
const DefaultResyncRetention = 30 * 24 * time.Hour

// maxResyncsListed bounds the resync ids kept per connection.
const maxResyncsListed = 50

// maxProgressFields bounds the progress entries read for one resync.
const maxProgressFields = 100_000

func (s *Store) resyncKey(id string) string { return s.prefix + "resync:{" + id + "}" }

func (s *Store) resyncProgressKey(id string) string { return s.resyncKey(id) + ":progress" }

func (s *Store) resyncListKey(k Key) string {
	return s.prefix + "{" + k.Space + "/" + k.Audience + "}:resyncs:" + k.Destination
}

// ErrResyncExists means a resync of that id is stored already.
var ErrResyncExists = errors.New("resync exists")

// CreateResync stores r (which must pass Check) and lists it under its
// connection.
func (s *Store) CreateResync(ctx context.Context, r idsync.Resync) error {
	if err := r.Check(); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	k := Key{r.SpaceID, r.AudienceID, r.DestinationID}
	if err := k.Validate(); err != nil {
		return err
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding resync %s: %w", r.ID, err)
	}
	// Kept for the retention after its start, however far ahead that is.
	ttl := s.resyncRetention + max(0, r.StartAt.Sub(s.now()))
	ok, err := s.rdb.SetNX(ctx, s.resyncKey(r.ID), raw, ttl).Result()
	if err != nil {
		return fmt.Errorf("storing resync %s: %w", r.ID, err)
	}
	if !ok {
		return ErrResyncExists
	}
	lk := s.resyncListKey(k)
	pipe := s.rdb.TxPipeline()
	pipe.LPush(ctx, lk, r.ID)
	pipe.LTrim(ctx, lk, 0, maxResyncsListed-1)
	pipe.Expire(ctx, lk, ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("listing resync %s under its connection: %w", r.ID, err)
	}
	return nil
}

// Resync returns the resync named id, nil when there is none. A stored
// value that is not a valid resync is an error wrapping
// idsync.ErrUnusableConfig.
func (s *Store) Resync(ctx context.Context, id string) (*idsync.Resync, error) {
	if !idsync.ValidResyncID(id) {
		return nil, nil
	}
	raw, err := s.rdb.Get(ctx, s.resyncKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		if redis.HasErrorPrefix(err, "WRONGTYPE") {
			return nil, fmt.Errorf("%w: resync %s: the key is not a string", idsync.ErrUnusableConfig, id)
		}
		return nil, fmt.Errorf("reading resync %s: %w", id, err)
	}
	var r idsync.Resync
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("%w: resync %s: %s", idsync.ErrUnusableConfig, id, jsonReason(err))
	}
	if err := r.Check(); err != nil || r.ID != id {
		return nil, fmt.Errorf("%w: resync %s: %v", idsync.ErrUnusableConfig, id, err)
	}
	return &r, nil
}

// CancelResync marks resync id cancelled at at (a resync cancelled already
// keeps its first time). It returns idsync.ErrNotFound for an unknown id.
func (s *Store) CancelResync(ctx context.Context, id string, at time.Time) (*idsync.Resync, error) {
	key := s.resyncKey(id)
	var out *idsync.Resync
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		r, err := s.Resync(ctx, id)
		if err != nil {
			return err
		}
		if r == nil {
			return fmt.Errorf("resync %s: %w", id, idsync.ErrNotFound)
		}
		out = r
		if r.Cancelled() {
			return nil
		}
		at := at.UTC()
		r.CancelledAt = &at
		raw, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, raw, redis.KeepTTL)
			return nil
		})
		return err
	}, key)
	if errors.Is(err, redis.TxFailedErr) {
		return nil, ErrConflict
	}
	return out, err
}

// ListResyncs returns the resyncs of connection k, newest first (those
// expired or unreadable left out).
func (s *Store) ListResyncs(ctx context.Context, k Key) ([]idsync.Resync, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	ids, err := s.rdb.LRange(ctx, s.resyncListKey(k), 0, maxResyncsListed-1).Result()
	if err != nil {
		return nil, fmt.Errorf("listing resyncs: %w", err)
	}
	out := []idsync.Resync{}
	for _, id := range ids {
		r, err := s.Resync(ctx, id)
		if errors.Is(err, idsync.ErrUnusableConfig) || (err == nil && r == nil) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, nil
}

// SaveResyncProgress records progress entries of resync id.
func (s *Store) SaveResyncProgress(ctx context.Context, id string, ps []idsync.ResyncProgress) error {
	if len(ps) == 0 || !idsync.ValidResyncID(id) {
		return nil
	}
	args := make([]any, 0, 1+3*len(ps))
	args = append(args, int64(s.resyncRetention/time.Millisecond))
	for _, p := range ps {
		raw, err := json.Marshal(p)
		if err != nil {
			return err
		}
		at := int64(0)
		if !p.Updated.IsZero() {
			at = p.Updated.UnixMicro() // exact in Lua's numbers (below 2^53)
		}
		args = append(args, strconv.Itoa(int(p.Partition)), at, raw)
	}
	key := s.resyncProgressKey(id)
	if err := saveProgress.Run(ctx, s.rdb, []string{key, key + ":at"}, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("saving the progress of resync %s: %w", id, err)
	}
	return nil
}

// saveProgress writes each partition's entry only if it is newer than the
// one stored (KEYS[2] holds the entries' times): a late report of an
// instance that no longer owns the partition never replaces its new
// owner's. ARGV: the TTL in ms, then partition, time (ns), entry, ….
var saveProgress = redis.NewScript(`
for i = 2, #ARGV, 3 do
  local old = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0')
  local at = tonumber(ARGV[i+1])
  if at >= old then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+2])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i+1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
`)

// ResyncProgress returns the progress entries of resync id, by partition
// (entries that cannot be read are left out).
func (s *Store) ResyncProgress(ctx context.Context, id string) ([]idsync.ResyncProgress, error) {
	if !idsync.ValidResyncID(id) {
		return nil, nil
	}
	key := s.resyncProgressKey(id)
	n, err := s.rdb.HLen(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("reading the progress of resync %s: %w", id, err)
	}
	if n > maxProgressFields {
		return nil, fmt.Errorf("%w: resync %s has %d progress entries, above %d", idsync.ErrUnusableConfig, id, n, maxProgressFields)
	}
	m, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		if redis.HasErrorPrefix(err, "WRONGTYPE") {
			return nil, nil
		}
		return nil, fmt.Errorf("reading the progress of resync %s: %w", id, err)
	}
	out := make([]idsync.ResyncProgress, 0, len(m))
	for field, raw := range m {
		var p idsync.ResyncProgress
		if json.Unmarshal([]byte(raw), &p) != nil || strconv.Itoa(int(p.Partition)) != field {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}
