package store

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
)

// ErrUnavailable means the connections of an audience are not cached and
// Redis cannot be reached (or answered with an error reply) to fetch them.
// It is never "no connections": the pipeline waits and asks again. What
// Redis answers but cannot be used is not ErrUnavailable: see
// Cache.Connections.
var ErrUnavailable = errors.New("connections unavailable: redis unreachable and audience not cached")

// Defaults applied by NewCache to zero CacheOptions fields.
const (
	DefaultCacheMaxEntries     = 100_000
	DefaultCacheTTL            = time.Minute
	DefaultCacheHealthInterval = time.Second
)

// fetchTimeout bounds one fetch; the Redis client's own timeouts normally
// end it sooner.
const fetchTimeout = 10 * time.Second

// CacheOptions configure a Cache. Zero fields take the defaults NewCache
// documents.
type CacheOptions struct {
	// MaxEntries bounds the cached audiences; beyond it the least recently
	// used one is evicted (default 100,000).
	MaxEntries int
	// TTL is the safety net behind pub/sub invalidation: an entry older than
	// TTL is refetched on its next access (default 1 minute).
	TTL time.Duration
	// Now is the clock of TTLs and staleness (default time.Now).
	Now func() time.Time
	// Registerer receives the cache's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives state changes (Redis down and up again, resubscribed);
	// nil discards. No id is ever logged.
	Logger *slog.Logger
	// HealthInterval is the period of the PING health check (default 1s).
	HealthInterval time.Duration
}

// Cache is the pipeline's process-local copy of connections, per (space,
// audience), in front of a Store. A fresh entry is served without any Redis
// round trip; an absent, expired (older than TTL) or invalidated entry is
// fetched with one HGETALL, concurrent requests for one audience sharing
// that one fetch. Audiences without connections are cached too.
//
// Entries are invalidated by the store's notifications, received by Run,
// and all of them when the subscription is re-established (notifications
// may have been missed) or Redis comes back after being unreachable. While
// Redis is believed unreachable (the health check's last PING or the last
// fetch failed), every cached entry is served as it is, however old,
// without trying Redis, and an uncached audience fails at once with
// ErrUnavailable. Invalid ids and unusable stored records are final
// answers, never ErrUnavailable (see Connections).
//
// A Cache is safe for concurrent use. Run must be running for invalidation
// and for noticing that Redis is back.
type Cache struct {
	s        *Store
	rdb      redis.UniversalClient
	max      int
	ttl      time.Duration
	now      func() time.Time
	log      *slog.Logger
	interval time.Duration
	m        *metrics

	up       atomic.Bool
	lastSync atomic.Int64 // unix nanoseconds of the last successful PING or fetch
	subs     atomic.Int64 // subscription confirmations received by Run
	running  atomic.Bool

	mu      sync.Mutex
	entries map[audienceKey]*entry
	lru     entry // sentinel of the recency list: lru.next is the most recent
	flights map[audienceKey]*flight
	epoch   uint64 // incremented by invalidateAll
}

type audienceKey struct{ space, audience string }

// entry is one cached audience. Its connections are shared with callers and
// never modified.
type entry struct {
	key   audienceKey
	conns []idsync.Connection
	// unusable, when set, is the answer instead of conns: Redis said the
	// audience's connections cannot be used at all (an error wrapping
	// idsync.ErrUnusableConfig). It is served like a fresh entry until the
	// TTL or a notification, never stale.
	unusable   error
	fetched    int64 // unix nanoseconds when the fetch started
	stale      bool  // invalidated: refetch on next access
	prev, next *entry
}

// flight is one fetch in progress; the callers that need it wait on done.
type flight struct {
	done        chan struct{}
	epoch       uint64
	invalidated bool // a notification arrived during the fetch
	// Results, set before done is closed.
	conns  []idsync.Connection
	result string
	err    error
}

// NewCache returns a Cache reading s through rdb, which must be the client
// s was built on (or one for the same Redis). It validates opt, applies the
// defaults (100,000 entries, 1 minute TTL, time.Now, 1s health interval)
// and registers the metrics; it does not contact Redis.
func NewCache(s *Store, rdb redis.UniversalClient, opt CacheOptions) (*Cache, error) {
	if s == nil || rdb == nil {
		return nil, errors.New("config cache: nil store or redis client")
	}
	if opt.MaxEntries < 0 || opt.TTL < 0 || opt.HealthInterval < 0 {
		return nil, errors.New("config cache: negative max entries, TTL or health interval")
	}
	if opt.MaxEntries == 0 {
		opt.MaxEntries = DefaultCacheMaxEntries
	}
	if opt.TTL == 0 {
		opt.TTL = DefaultCacheTTL
	}
	if opt.HealthInterval == 0 {
		opt.HealthInterval = DefaultCacheHealthInterval
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cache{
		s: s, rdb: rdb, max: opt.MaxEntries, ttl: opt.TTL, now: opt.Now,
		log: opt.Logger, interval: opt.HealthInterval,
		entries: make(map[audienceKey]*entry),
		flights: make(map[audienceKey]*flight),
	}
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	c.up.Store(true) // until a PING or a fetch says otherwise
	c.lastSync.Store(opt.Now().UnixNano())
	m, err := newMetrics(opt.Registerer, c.entriesGauge, c.upGauge, c.stalenessGauge)
	if err != nil {
		return nil, fmt.Errorf("config cache: %w", err)
	}
	c.m = m
	return c, nil
}

// Connections returns the connections of (space, audience) with their
// retained versions, sorted by destination id, as Store.List returned them
// when they were fetched; an audience without connections gives an empty
// result. The caller picks the version per event with idsync.VersionAt and
// must treat the result as read-only: it is shared. Connections and
// versions the store marked Invalid are returned as such (see Store.List).
//
// A fresh entry returns at once. Otherwise Connections blocks for one
// Redis fetch (shared with concurrent callers for the same audience) or
// until ctx is done. When the fetch fails, or Redis is already believed
// unreachable, a cached entry is served stale without error; an uncached
// audience returns an error wrapping ErrUnavailable. ctx's error is
// returned when it ends first.
//
// Two answers are final, never ErrUnavailable, whatever Redis's state:
// invalid ids give an error wrapping ErrInvalidKey (checked before
// anything else, Redis never asked), and an audience whose connections
// key Redis says cannot be used (another Redis type) gives an error
// wrapping idsync.ErrUnusableConfig. The latter is cached like an audience
// without connections, for the TTL or until a notification, so that a
// stream of such events does not send one HGETALL each; it is not served
// stale while Redis is unreachable (that gives ErrUnavailable, as for an
// uncached audience). Neither marks Redis unreachable.
func (c *Cache) Connections(ctx context.Context, space, audience string) ([]idsync.Connection, error) {
	k := audienceKey{space, audience}
	now := c.now().UnixNano()
	c.mu.Lock()
	e := c.entries[k]
	switch {
	case e != nil:
		// Only a valid key is ever cached.
		c.touch(e)
		if !e.stale && now-e.fetched < int64(c.ttl) {
			c.mu.Unlock()
			c.m.count(ResultHit)
			return e.conns, e.unusable
		}
		if !c.up.Load() {
			c.mu.Unlock()
			if e.unusable != nil {
				c.m.count(ResultError)
				return nil, fmt.Errorf("config cache: %w", ErrUnavailable)
			}
			c.m.count(ResultStale)
			return e.conns, nil
		}
	default:
		if err := validAudience(space, audience); err != nil {
			c.mu.Unlock()
			c.m.count(ResultError)
			return nil, fmt.Errorf("config cache: %w", err)
		}
		if !c.up.Load() {
			c.mu.Unlock()
			c.m.count(ResultError)
			return nil, fmt.Errorf("config cache: %w", ErrUnavailable)
		}
	}
	f := c.flights[k]
	if f == nil {
		f = &flight{done: make(chan struct{}), epoch: c.epoch}
		c.flights[k] = f
		go c.fetch(context.WithoutCancel(ctx), k, f, now)
	}
	c.mu.Unlock()

	select {
	case <-f.done:
		c.m.count(f.result)
		return f.conns, f.err
	case <-ctx.Done():
		c.m.count(ResultError)
		return nil, ctx.Err()
	}
}

// Prefetch starts, without waiting for them, the fetches that Connections
// would make for the (space, audience) pairs of audiences: none for an
// entry that is fresh, invalid ids, an audience already in flight, or
// while Redis is believed unreachable. A later Connections shares the
// fetch, or finds its result cached. The pipeline calls it for the records
// it is about to process (under one lock for all of them), so that a
// batch's cold audiences are fetched concurrently rather than one after
// another; it counts in no lookup metric (the lookups that follow do).
func (c *Cache) Prefetch(ctx context.Context, audiences iter.Seq2[string, string]) {
	if !c.up.Load() {
		return
	}
	now := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	for space, audience := range audiences {
		k := audienceKey{space, audience}
		if c.flights[k] != nil {
			continue
		}
		if e := c.entries[k]; e != nil {
			if !e.stale && now-e.fetched < int64(c.ttl) {
				continue
			}
		} else if validAudience(space, audience) != nil {
			continue
		}
		f := &flight{done: make(chan struct{}), epoch: c.epoch}
		c.flights[k] = f
		go c.fetch(context.WithoutCancel(ctx), k, f, now)
	}
}

// fetch runs one flight: it lists the audience, stores the result and
// wakes the waiters.
func (c *Cache) fetch(ctx context.Context, k audienceKey, f *flight, started int64) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	conns, rep, err := c.s.list(ctx, k.space, k.audience)
	c.report(rep, err)

	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.flights, k)
	e := c.entries[k]
	var unusable error
	switch {
	case err == nil:
	case errors.Is(err, idsync.ErrUnusableConfig):
		// Redis answered: cache the answer, as for no connections.
		conns, unusable = nil, fmt.Errorf("config cache: %w", err)
	case e != nil && e.unusable == nil:
		f.conns, f.result = e.conns, ResultStale
		c.fetchFailed(err)
		close(f.done)
		return
	default:
		f.result = ResultError
		f.err = fmt.Errorf("config cache: %w: %w", ErrUnavailable, err)
		c.fetchFailed(err)
		close(f.done)
		return
	}
	if e == nil {
		e = &entry{key: k}
		c.entries[k] = e
		c.evict()
	}
	c.touch(e)
	e.conns, e.unusable = conns, unusable
	e.fetched = started
	e.stale = f.invalidated || f.epoch != c.epoch
	c.synced()
	f.conns, f.err, f.result = conns, unusable, ResultMiss
	close(f.done)
}

// report counts and logs, once per fetch, what the store found unusable:
// the audience as a whole (err wraps idsync.ErrUnusableConfig), or some of
// its connections or versions (rep). No id and no value is logged; the
// dead-lettered events carry the audience and the destination.
func (c *Cache) report(rep readReport, err error) {
	switch {
	case errors.Is(err, idsync.ErrUnusableConfig):
		c.m.unusable(UnusableAudience, 1)
		c.log.Warn("config cache: the stored connections of an audience cannot be used; its events are dead-lettered (invalid_config)", "error", err)
	case err == nil && rep.connections+rep.versions > 0:
		c.m.unusable(UnusableConnection, rep.connections)
		c.m.unusable(UnusableVersion, rep.versions)
		c.log.Warn("config cache: stored connections cannot be used; events they apply to are dead-lettered for their destination (invalid_config), the audience's other connections are served",
			"connections", rep.connections, "versions", rep.versions, "first_reason", rep.reason)
	}
}

// fetchFailed records a failed fetch. Unless Redis answered (with an error
// reply), Redis is taken as unreachable until the health check says
// otherwise.
func (c *Cache) fetchFailed(err error) {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		c.log.Error("config cache: fetching connections failed; serving what is cached", "error", err)
		return
	}
	if c.up.Swap(false) {
		c.log.Warn("config cache: redis unreachable; serving cached connections", "error", err)
	}
}

// synced records that the cache just confirmed it is in sync with Redis.
func (c *Cache) synced() {
	c.lastSync.Store(c.now().UnixNano())
}

// touch moves e to the front of the recency list (inserting it if new).
// c.mu must be held.
func (c *Cache) touch(e *entry) {
	if e.prev != nil {
		e.prev.next, e.next.prev = e.next, e.prev
	}
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}

// evict drops least recently used entries beyond the bound. c.mu must be
// held.
func (c *Cache) evict() {
	for len(c.entries) > c.max {
		old := c.lru.prev
		if old == &c.lru {
			return
		}
		old.prev.next, old.next.prev = old.next, old.prev
		old.prev, old.next = nil, nil
		delete(c.entries, old.key)
	}
}

// invalidate marks the audience for refetch, and a fetch of it in progress
// as possibly older than the notification.
func (c *Cache) invalidate(k audienceKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[k]; e != nil {
		e.stale = true
	}
	if f := c.flights[k]; f != nil {
		f.invalidated = true
	}
}

// invalidateAll marks every entry, and every fetch in progress, for
// refetch.
func (c *Cache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for _, e := range c.entries {
		e.stale = true
	}
}

// Ready reports whether the cache can serve the pipeline: Redis is
// believed reachable, or at least one audience is cached.
func (c *Cache) Ready() bool {
	if c.up.Load() {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries) > 0
}

// Run receives the store's notifications and checks Redis's health every
// HealthInterval until ctx is done, then returns nil. It returns an error
// only when called twice. Redis being unreachable is not an error: the
// subscription reconnects by itself, and each (re)subscription marks every
// entry for refetch, as notifications may have been lost meanwhile.
func (c *Cache) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("config cache: Run called twice")
	}
	ps := c.rdb.Subscribe(ctx, c.s.Channel())
	msgs := ps.ChannelWithSubscriptions(
		redis.WithChannelHealthCheckInterval(max(c.interval, time.Second)),
	)
	var wg sync.WaitGroup
	wg.Go(func() { c.health(ctx) })
	defer func() {
		// Closing the subscription closes msgs once go-redis's receiving
		// goroutine has handed over what it holds; drain so it never
		// waits on us.
		_ = ps.Close()
		for range msgs {
		}
		wg.Wait()
	}()

	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-msgs:
			if !ok {
				return nil
			}
			c.receive(msg)
		}
	}
}

// receive handles one pub/sub message.
func (c *Cache) receive(msg any) {
	switch m := msg.(type) {
	case *redis.Subscription:
		if m.Kind != "subscribe" {
			return
		}
		if c.subs.Add(1) > 1 {
			c.log.Info("config cache: resubscribed to notifications; refetching every audience on next use")
		}
		// Notifications published before this confirmation (while
		// disconnected, or before Run started) were not received.
		c.invalidateAll()
	case *redis.Message:
		n, err := ParseNotification(m.Payload)
		if err != nil {
			c.log.Warn("config cache: ignoring a malformed notification", "error", err)
			return
		}
		c.invalidate(audienceKey{n.Space, n.Audience})
	}
}

// health PINGs Redis every interval and keeps the up state: down on a
// failed PING, up again (with every entry marked for refetch) on a
// successful one.
func (c *Cache) health(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		c.ping(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Cache) ping(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, c.interval)
	defer cancel()
	err := c.rdb.Ping(pctx).Err()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		if c.up.Swap(false) {
			c.log.Warn("config cache: redis unreachable; serving cached connections", "error", err)
		}
		return
	}
	c.synced()
	if !c.up.Load() {
		// Mark first, so that no lookup trusts an entry that missed
		// notifications while Redis was unreachable.
		c.invalidateAll()
		c.up.Store(true)
		c.log.Info("config cache: redis reachable again; refetching every audience on next use")
	}
}

func (c *Cache) entriesGauge() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return float64(len(c.entries))
}

func (c *Cache) upGauge() float64 {
	if c.up.Load() {
		return 1
	}
	return 0
}

func (c *Cache) stalenessGauge() float64 {
	if c.up.Load() {
		return 0
	}
	return max(0, time.Duration(c.now().UnixNano()-c.lastSync.Load()).Seconds())
}
