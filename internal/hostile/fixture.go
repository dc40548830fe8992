package hostile

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
	"github.com/idsync/idsync/store"
)

// Space is the space id of every audience of the fixture.
const Space = "spa_hostile"

// T0 is when the fixture's first configuration versions were stored: long
// before any event's timestamp, so that which version applies never depends
// on the clock of the run.
var T0 = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// SmallTopicLimit is the max.message.bytes of the destination topics the
// test creates itself before the run (Fixture.SmallTopics), as an operator
// who provisioned them by hand might: some of their good records are
// refused by the broker for good.
const SmallTopicLimit = 32 << 10

// The audiences of the fixture.
const (
	// AudFacebook: one Facebook connection (customized, small outputs).
	AudFacebook = "aud_fb"
	// AudGoogle: one Google connection (default setup).
	AudGoogle = "aud_gg"
	// AudMulti: Iterable, webhook (two versions) and Zendesk.
	AudMulti = "aud_multi"
	// AudFacebookAmp: Facebook with three `all` mappings (rows multiply).
	AudFacebookAmp = "aud_fb_amp"
	// AudWebhookAmp: webhook with three `all` mappings and identify calls.
	AudWebhookAmp = "aud_wh_amp"
	// AudAmpPair: both amplifying destinations, for the per-event byte bound.
	AudAmpPair = "aud_amp_pair"
	// AudSmall: a Facebook destination whose topic has a small
	// max.message.bytes, and a webhook beside it.
	AudSmall = "aud_small"
	// AudMixed: one usable webhook and four stored connections this binary
	// cannot use (unknown type, undecodable record, broken rules, a field
	// that is no destination id).
	AudMixed = "aud_mixed"
	// AudUnknownType: only a connection of an unknown destination type.
	AudUnknownType = "aud_unknown"
	// AudCorrupt: only an undecodable connection record.
	AudCorrupt = "aud_corrupt"
	// AudWrongType: the connections key holds a string (WRONGTYPE).
	AudWrongType = "aud_wrongtype"
	// AudDeleted: a connection deleted long ago.
	AudDeleted = "aud_deleted"
	// AudNone: no connections at all.
	AudNone = "aud_none"
)

// Destination ids of the fixture.
const (
	DestFacebook    = "fb_main"
	DestGoogle      = "gg_main"
	DestIterable    = "it_main"
	DestWebhook     = "wh_main"
	DestZendesk     = "zd_main"
	DestFacebookAmp = "fb_amp"
	DestWebhookAmp  = "wh_amp"
	DestSmall       = "fb_small"
	DestSide        = "wh_side"
	DestMixed       = "wh_mix"
	DestDeleted     = "wh_gone"
	// Hostile stored records.
	DestUnknownType = "zz_unknown"
	DestCorrupt     = "zz_corrupt"
	DestBadRules    = "zz_rules"
	DestBadID       = "ZZ bad/dest"
)

// edit is one accepted edit of a valid connection: a configuration (nil
// deletes) stored at a time.
type edit struct {
	at  time.Time
	cfg string // JSON, "" deletes
}

// conn is one connection of the fixture: valid (edits, stored through
// store.Store) or hostile (raw, written to Redis as is).
type conn struct {
	dest  string
	edits []edit
	raw   string
	// why says, for a hostile record, why it cannot be used.
	why string
}

// audience is one audience of the fixture.
type audience struct {
	id        string
	conns     []conn
	wrongType bool // the connections key is a Redis string
}

// Fixture is the stored configuration every generated record is judged
// against: the audiences of Space with their connections, valid and
// hostile, and the destination topics the test creates with a small
// max.message.bytes. Build it with NewFixture; it is read-only afterwards.
type Fixture struct {
	audiences map[string]*audience
	// expected connections per audience, as a reader must return them
	// (usable ones only), sorted by destination id.
	usable map[string][]idsync.Connection
	// invalid destination ids per audience, sorted.
	invalid map[string][]string
}

// Configurations of the fixture's valid connections.
const (
	cfgFacebook = `{"destination_type":"facebook_custom_audiences","external_audience_id":"23851","settings":{"send_mobile_ids":true},"setup":"customized",
		"identifiers":[{"segment":"email","destination":"EMAIL","strategy":"all"},{"segment":"phone","destination":"PHONE","strategy":"last_added"},
		{"segment":"ios.idfa","destination":"MADID","strategy":"first_added"},{"segment":"user_id","destination":"EXTERN_ID","strategy":"last_added"}]}`
	cfgGoogle    = `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","setup":"default"}`
	cfgIterable  = `{"destination_type":"iterable","setup":"default"}`
	cfgWebhookV1 = `{"destination_type":"webhook","setup":"default"}`
	cfgWebhookV2 = `{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"last_added"},
		{"segment":"shopify_id","destination":"shopify_id","strategy":"all"}]}`
	cfgZendesk     = `{"destination_type":"zendesk","settings":{"send_identify":true},"setup":"default"}`
	cfgFacebookAmp = `{"destination_type":"facebook_custom_audiences","external_audience_id":"23852","settings":{"send_mobile_ids":true},"setup":"customized",
		"identifiers":[{"segment":"email","destination":"EMAIL","strategy":"all"},{"segment":"phone","destination":"PHONE","strategy":"all"},
		{"segment":"ios.idfa","destination":"MADID","strategy":"all"},{"segment":"user_id","destination":"EXTERN_ID","strategy":"last_added"}]}`
	cfgWebhookAmp = `{"destination_type":"webhook","settings":{"send_identify":true},"setup":"customized",
		"identifiers":[{"segment":"email","destination":"email","strategy":"all"},{"segment":"user_id","destination":"userId","strategy":"all"},
		{"segment":"phone","destination":"phone","strategy":"all"}]}`
	cfgSmall = `{"destination_type":"facebook_custom_audiences","external_audience_id":"23853","setup":"customized",
		"identifiers":[{"segment":"user_id","destination":"EXTERN_ID","strategy":"all"},{"segment":"email","destination":"EMAIL","strategy":"last_added"}]}`
	cfgSide  = `{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"last_added"}]}`
	cfgMixed = `{"destination_type":"webhook","setup":"default"}`
)

// rawRecord is a stored connection record (docs/store.md) with one version
// effective at T0 holding configJSON as is.
func rawRecord(configJSON string) string {
	t := T0.Format(time.RFC3339)
	return `{"versions":[{"version":1,"updated_at":"` + t + `","effective_at":"` + t + `","config":` + configJSON + `}]}`
}

// Hostile stored records.
var (
	rawUnknownType = rawRecord(`{"destination_type":"tiktok_audiences","settings":{"send_track":true},"setup":"default"}`)
	rawCorrupt     = `{"versions":[{"version":1,"updated_at":"2020-01-01T00:00:00Z","effective_at":` // cut short
	rawBadRules    = rawRecord(`{"destination_type":"facebook_custom_audiences","external_audience_id":"9","settings":{"send_track":true},"setup":"customized",` +
		`"identifiers":[{"segment":"email","destination":"NOT_A_FACEBOOK_KEY","strategy":"all"}]}`)
	rawBadID = rawRecord(`{"destination_type":"webhook","setup":"default"}`)
)

// NewFixture returns the fixture. It is the same on every call.
func NewFixture() *Fixture {
	at := func(d time.Duration) time.Time { return T0.Add(d) }
	one := func(dest, cfg string) conn { return conn{dest: dest, edits: []edit{{at(0), cfg}}} }
	auds := []*audience{
		{id: AudFacebook, conns: []conn{one(DestFacebook, cfgFacebook)}},
		{id: AudGoogle, conns: []conn{one(DestGoogle, cfgGoogle)}},
		{id: AudMulti, conns: []conn{
			one(DestIterable, cfgIterable),
			{dest: DestWebhook, edits: []edit{{at(0), cfgWebhookV1}, {at(time.Hour), cfgWebhookV2}}},
			one(DestZendesk, cfgZendesk),
		}},
		{id: AudFacebookAmp, conns: []conn{one(DestFacebookAmp, cfgFacebookAmp)}},
		{id: AudWebhookAmp, conns: []conn{one(DestWebhookAmp, cfgWebhookAmp)}},
		{id: AudAmpPair, conns: []conn{one(DestFacebookAmp, cfgFacebookAmp), one(DestWebhookAmp, cfgWebhookAmp)}},
		{id: AudSmall, conns: []conn{one(DestSmall, cfgSmall), one(DestSide, cfgSide)}},
		{id: AudMixed, conns: []conn{
			one(DestMixed, cfgMixed),
			{dest: DestUnknownType, raw: rawUnknownType, why: "unknown destination_type"},
			{dest: DestCorrupt, raw: rawCorrupt, why: "record is not valid JSON"},
			{dest: DestBadRules, raw: rawBadRules, why: "a Facebook mapping to a key outside the fixed list"},
			{dest: DestBadID, raw: rawBadID, why: "stored under a field that is not a destination id"},
		}},
		{id: AudUnknownType, conns: []conn{{dest: DestUnknownType, raw: rawUnknownType, why: "unknown destination_type"}}},
		{id: AudCorrupt, conns: []conn{{dest: DestCorrupt, raw: rawCorrupt, why: "record is not valid JSON"}}},
		{id: AudWrongType, wrongType: true},
		{id: AudDeleted, conns: []conn{{dest: DestDeleted, edits: []edit{{at(0), cfgMixed}, {at(2 * time.Hour), ""}}}}},
		{id: AudNone},
	}
	f := &Fixture{audiences: map[string]*audience{}, usable: map[string][]idsync.Connection{}, invalid: map[string][]string{}}
	act := idsync.DefaultActivation()
	for _, a := range auds {
		f.audiences[a.id] = a
		for _, c := range a.conns {
			if c.raw != "" {
				f.invalid[a.id] = append(f.invalid[a.id], c.dest)
				continue
			}
			// The versions as the store's activation rules make them:
			// the first effective at once, a later one after the delay.
			var vs []idsync.Version
			for i, e := range c.edits {
				v := idsync.Version{Version: int64(i + 1), UpdatedAt: e.at, EffectiveAt: e.at}
				if i > 0 {
					v.EffectiveAt = e.at.Add(act.Delay)
				}
				if e.cfg == "" {
					v.Deleted = true
				} else {
					cfg, err := idsync.ParseConfig([]byte(e.cfg))
					if err != nil {
						panic(fmt.Sprintf("hostile: fixture configuration of %s/%s: %v", a.id, c.dest, err))
					}
					v.Config = cfg
				}
				vs = append(vs, v)
			}
			f.usable[a.id] = append(f.usable[a.id], idsync.Connection{DestinationID: c.dest, Versions: vs})
		}
		slices.SortFunc(f.usable[a.id], func(x, y idsync.Connection) int { return strings.Compare(x.DestinationID, y.DestinationID) })
		slices.Sort(f.invalid[a.id])
	}
	return f
}

// Audiences returns the fixture's audience ids, sorted.
func (f *Fixture) Audiences() []string {
	var ids []string
	for id := range f.audiences {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// SmallTopics returns the destinations whose topics the test must create
// before the run, with their max.message.bytes.
func (f *Fixture) SmallTopics() map[string]int {
	return map[string]int{DestSmall: SmallTopicLimit}
}

// Destinations returns every valid destination id of the fixture, sorted:
// the topics records may be delivered to.
func (f *Fixture) Destinations() []string {
	seen := map[string]bool{}
	for _, cs := range f.usable {
		for _, c := range cs {
			seen[c.DestinationID] = true
		}
	}
	var ids []string
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Lookup is what a connection source must answer for one audience, as the
// failure model says (see Oracle).
type Lookup struct {
	// InvalidKey: the space or audience id can never name a stored
	// connection: the source returns an error wrapping idsync.ErrInvalidKey.
	InvalidKey bool
	// Unusable: the audience's stored connections cannot be used at all
	// (the key holds another Redis type): idsync.ErrUnusableConfig.
	Unusable bool
	// Usable are the connections Process works on, sorted by destination
	// id.
	Usable []idsync.Connection
	// Invalid are the destination ids of connections that cannot be used
	// (each is dead-lettered invalid_config), sorted.
	Invalid []string
}

// Lookup returns what the connection source must give for (space,
// audience). Audiences the fixture does not hold have no connections.
func (f *Fixture) Lookup(space, aud string) Lookup {
	if !idsync.ValidEntityID(space) || !idsync.ValidEntityID(aud) {
		return Lookup{InvalidKey: true}
	}
	if space != Space {
		return Lookup{}
	}
	a := f.audiences[aud]
	if a == nil {
		return Lookup{}
	}
	if a.wrongType {
		return Lookup{Unusable: true}
	}
	return Lookup{Usable: f.usable[aud], Invalid: f.invalid[aud]}
}

// connectionsKey is the Redis key of an audience's connections hash
// (docs/store.md).
func connectionsKey(prefix, space, aud string) string {
	return prefix + "{" + space + "/" + aud + "}:connections"
}

// Install stores the fixture in Redis under prefix (the store's key
// prefix): valid connections through store.Store (so they are exactly what
// the admin API would have written), hostile ones with raw HSET, and the
// WRONGTYPE audience as a string key. Existing keys of the fixture's
// audiences are replaced.
func (f *Fixture) Install(ctx context.Context, rdb redis.UniversalClient, prefix string) error {
	var clock time.Time
	st, err := store.New(rdb, store.Options{Prefix: prefix, Now: func() time.Time { return clock }})
	if err != nil {
		return fmt.Errorf("hostile: %w", err)
	}
	for _, id := range f.Audiences() {
		a := f.audiences[id]
		key := connectionsKey(prefix, Space, id)
		if err := rdb.Del(ctx, key).Err(); err != nil {
			return fmt.Errorf("hostile: clearing %s: %w", id, err)
		}
		if a.wrongType {
			if err := rdb.Set(ctx, key, "not a hash", 0).Err(); err != nil {
				return fmt.Errorf("hostile: storing %s: %w", id, err)
			}
			continue
		}
		for _, c := range a.conns {
			if c.raw != "" {
				if err := rdb.HSet(ctx, key, c.dest, c.raw).Err(); err != nil {
					return fmt.Errorf("hostile: storing %s/%s: %w", id, c.dest, err)
				}
				continue
			}
			k := store.Key{Space: Space, Audience: id, Destination: c.dest}
			for _, e := range c.edits {
				clock = e.at
				if e.cfg == "" {
					_, err = st.Delete(ctx, k, "hostile", 0)
				} else {
					var cfg *idsync.Config
					if cfg, err = idsync.ParseConfig([]byte(e.cfg)); err == nil {
						_, err = st.Put(ctx, k, cfg, "hostile", 0)
					}
				}
				if err != nil {
					return fmt.Errorf("hostile: storing %s/%s: %w", id, c.dest, err)
				}
			}
		}
	}
	return nil
}

// StoreNow is the clock to give the store.Store the pipeline's cache reads
// through: after every edit of the fixture, so that the versions it
// returns (pruned at its now) are exactly the oracle's.
var StoreNow = T0.Add(3 * time.Hour)
