package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/idsync/idsync/idsync"
)

// Space is the space of every benchmark audience.
const Space = "spa_bench"

// Workload is the seeded data of one benchmark: the audiences with their
// connections, and a deterministic stream of events over a pool of
// profiles. Nothing is random beyond the seed.
type Workload struct {
	seed      uint64
	audiences []string
	// Connections per audience, in the order they are stored.
	Connections []StoredConnection
	profiles    int
}

// StoredConnection is one connection the workload stores in Redis.
type StoredConnection struct {
	Audience, Destination string
	Config                *idsync.Config
}

// destinations is the pool of destination instances: several of each type,
// every audience connected to 1–5 of them.
var destinations = []struct {
	id string
	dt idsync.DestinationType
}{
	{"fbca_01", idsync.FacebookCustomAudiences}, {"fbca_02", idsync.FacebookCustomAudiences}, {"fbca_03", idsync.FacebookCustomAudiences},
	{"gads_01", idsync.GoogleAdsRemarketingLists}, {"gads_02", idsync.GoogleAdsRemarketingLists}, {"gads_03", idsync.GoogleAdsRemarketingLists},
	{"iterable_01", idsync.Iterable}, {"iterable_02", idsync.Iterable},
	{"zendesk_01", idsync.Zendesk}, {"zendesk_02", idsync.Zendesk},
	{"webhook_01", idsync.Webhook}, {"webhook_02", idsync.Webhook},
}

// NewWorkload makes the audiences (a pool of audiences, each connected to
// 1–5 destinations of the five types, default or customized setup) and the
// profile pool (profiles distinct profiles, each a member of 1–3
// audiences).
func NewWorkload(seed uint64, audiences, profiles int) (*Workload, error) {
	w := &Workload{seed: seed, profiles: max(1, profiles)}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for a := range max(1, audiences) {
		aud := fmt.Sprintf("aud_bench_%04d", a)
		w.audiences = append(w.audiences, aud)
		perm := r.Perm(len(destinations))
		for _, d := range perm[:1+r.IntN(5)] {
			dest := destinations[d]
			raw := connectionConfig(r, dest.dt, a)
			cfg, err := idsync.ParseConfig([]byte(raw))
			if err != nil {
				return nil, fmt.Errorf("workload connection %s/%s: %w", aud, dest.id, err)
			}
			w.Connections = append(w.Connections, StoredConnection{Audience: aud, Destination: dest.id, Config: cfg})
		}
	}
	return w, nil
}

// connectionConfig returns a configuration of type dt, default or
// customized setup with equal odds.
func connectionConfig(r *rand.Rand, dt idsync.DestinationType, audience int) string {
	customized := r.IntN(2) == 0
	list := fmt.Sprintf("%d", 23850000000000000+audience*100+r.IntN(100))
	switch dt {
	case idsync.FacebookCustomAudiences:
		if customized {
			return `{"destination_type":"facebook_custom_audiences","external_audience_id":"` + list + `","settings":{"send_mobile_ids":true},"setup":"customized","identifiers":[
				{"segment":"user_id","destination":"EXTERN_ID","strategy":"last_added"},
				{"segment":"email","destination":"EMAIL","strategy":"all"},
				{"segment":"phone","destination":"PHONE","strategy":"last_added"},
				{"segment":"ios.idfa","destination":"MADID","strategy":"first_added"}]}`
		}
		return `{"destination_type":"facebook_custom_audiences","external_audience_id":"` + list + `","settings":{"send_mobile_ids":` + fmt.Sprint(r.IntN(2) == 0) + `},"setup":"default"}`
	case idsync.GoogleAdsRemarketingLists:
		if customized {
			return `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_` + list + `","setup":"customized","identifiers":[
				{"segment":"email","destination":"hashed_email","strategy":"all"},
				{"segment":"phone","destination":"hashed_phone_number","strategy":"all"}]}`
		}
		return `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_` + list + `","setup":"default"}`
	case idsync.Iterable:
		if customized {
			return `{"destination_type":"iterable","setup":"customized","identifiers":[
				{"segment":"email","destination":"email","strategy":"last_added"},
				{"segment":"user_id","destination":"userId","strategy":"last_added"}]}`
		}
		return `{"destination_type":"iterable","setup":"default"}`
	case idsync.Zendesk:
		if customized {
			return `{"destination_type":"zendesk","settings":{"send_identify":true},"setup":"customized","identifiers":[
				{"segment":"email","destination":"email","strategy":"last_added"},
				{"segment":"user_id","destination":"external_id","strategy":"last_added"}]}`
		}
		return `{"destination_type":"zendesk","setup":"default"}`
	default:
		if customized {
			return `{"destination_type":"webhook","setup":"customized","identifiers":[
				{"segment":"user_id","destination":"userId","strategy":"last_added"},
				{"segment":"anonymous_id","destination":"anonymousId","strategy":"last_added"},
				{"segment":"shopify_id","destination":"shopify_id","strategy":"all"}]}`
		}
		return `{"destination_type":"webhook","setup":"default"}`
	}
}

// Connections returns the audience's connections as the store returns
// them (version 1, effective at t0), for computing expected output.
func (w *Workload) connectionsByAudience(t0 time.Time) map[string][]idsync.Connection {
	m := map[string][]idsync.Connection{}
	for _, c := range w.Connections {
		m[c.Audience] = append(m[c.Audience], idsync.Connection{DestinationID: c.Destination,
			Versions: []idsync.Version{{Version: 1, UpdatedAt: t0, EffectiveAt: t0, Config: c.Config}}})
	}
	return m
}

// Event is one generated input record.
type Event struct {
	Key, Value []byte
}

// identifier types a profile draws from, the first two always present.
var idTypes = []string{"user_id", "email", "phone", "anonymous_id", "ios.idfa", "android.idfa", "shopify_id", "ga_client_id"}

var (
	firstNames = []string{"Jane", "John", "Ana", "Wei", "Fatima", "Lars", "Priya", "Kofi", "Mia", "Noah", "Sofia", "Mateo"}
	lastNames  = []string{"Doe", "Smith", "Garcia", "Chen", "Khan", "Berg", "Patel", "Mensah", "Rossi", "Kim", "Novak", "Silva"}
	domains    = []string{"gmail.com", "example.com", "work.co", "googlemail.com", "mail.org", "yahoo.fr"}
	phoneFmts  = []string{"+1 (650) 555-%04d", "+44 20 7946 %04d", "(415) 555-%04d", "+49 30 1234%04d", "+33 1 42 68 %04d", "+1 212-555-%04d"}
)

// valueCount is how many values a profile holds of one type: 1–5, mostly 1.
func valueCount(r *rand.Rand) int {
	switch x := r.IntN(10); {
	case x < 6:
		return 1
	case x < 8:
		return 2
	default:
		return 3 + r.IntN(3)
	}
}

// wireEvent is the generated JSON, fields in the order of DESIGN.md §2.
type wireEvent struct {
	MessageID        string            `json:"message_id"`
	Timestamp        string            `json:"timestamp"`
	SpaceID          string            `json:"space_id"`
	ComputationClass string            `json:"computation_class"`
	AudienceID       string            `json:"audience_id"`
	AudienceKey      string            `json:"audience_key"`
	Action           string            `json:"action"`
	Sync             *wireSync         `json:"sync,omitempty"`
	Profile          map[string]string `json:"profile"`
	ExternalIDs      []wireID          `json:"external_ids"`
	Traits           map[string]any    `json:"traits"`
}

type wireSync struct {
	ID        string `json:"id"`
	StartedAt string `json:"started_at"`
}

type wireID struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	CreatedAt string `json:"created_at"`
}

// Event returns event i of the stream at time now: a profile drawn from the
// pool (its identifiers are the same in every event about it, as in real
// traffic), one of the profile's 1–3 audiences, entered or exited.
func (w *Workload) Event(i int, now time.Time) Event {
	r := rand.New(rand.NewPCG(w.seed^0xe7e7, uint64(i)))
	profile := r.IntN(w.profiles)
	pr := rand.New(rand.NewPCG(w.seed^0x9f0f11e, uint64(profile)))
	segmentID := fmt.Sprintf("use_%08d", profile)
	// The profile's audiences and identifiers.
	auds := make([]string, 1+pr.IntN(3))
	for k := range auds {
		auds[k] = w.audiences[pr.IntN(len(w.audiences))]
	}
	first, last := firstNames[pr.IntN(len(firstNames))], lastNames[pr.IntN(len(lastNames))]
	total := 3 + pr.IntN(10)
	var ids []wireID
	created := func(days int) string {
		return now.Add(-time.Duration(days) * 24 * time.Hour).UTC().Format(time.RFC3339)
	}
	types := append([]string{"user_id", "email"}, idTypes[2:]...)
	rest := types[2:]
	pr.Shuffle(len(rest), func(a, b int) { rest[a], rest[b] = rest[b], rest[a] })
	for _, typ := range types {
		if len(ids) >= total {
			break
		}
		n := min(valueCount(pr), total-len(ids))
		if typ == "user_id" {
			n = 1
		}
		for v := range n {
			var id string
			switch typ {
			case "user_id":
				id = fmt.Sprintf("u%09d", profile)
			case "email":
				id = fmt.Sprintf("%s.%s%d@%s", first, last, v, domains[pr.IntN(len(domains))])
				if v == 0 && pr.IntN(4) == 0 {
					id = " " + first + "@Work.com"
				}
			case "phone":
				id = fmt.Sprintf(phoneFmts[pr.IntN(len(phoneFmts))], pr.IntN(10000))
			case "anonymous_id":
				id = fmt.Sprintf("anon-%08x-%04x", pr.Uint32(), pr.IntN(1<<16))
			case "ios.idfa":
				id = fmt.Sprintf("AECE52E7-03EE-455A-B3C4-%012X", pr.Uint64()>>16)
			case "android.idfa":
				id = fmt.Sprintf("38400000-8cf0-11bd-b23e-%012x", pr.Uint64()>>16)
			case "shopify_id":
				id = fmt.Sprint(9000000 + pr.IntN(1000000))
			default:
				id = fmt.Sprintf("GA1.2.%d.%d", pr.Uint32(), pr.Uint32())
			}
			ids = append(ids, wireID{Type: typ, ID: id, CreatedAt: created(10 + pr.IntN(700))})
		}
	}
	aud := auds[r.IntN(len(auds))]
	action := "entered"
	if r.IntN(5) == 0 {
		action = "exited"
	}
	ts := now.UTC().Format("2006-01-02T15:04:05.000Z")
	ev := wireEvent{
		MessageID:        fmt.Sprintf("ame_%016x", r.Uint64()),
		Timestamp:        ts,
		SpaceID:          Space,
		ComputationClass: idsync.ClassAudience,
		AudienceID:       aud,
		AudienceKey:      "bench_" + aud[len("aud_bench_"):],
		Action:           action,
		Sync:             &wireSync{ID: fmt.Sprintf("run_%06d", r.IntN(1000000)), StartedAt: now.Add(-30 * time.Second).UTC().Format(time.RFC3339)},
		Profile:          map[string]string{"segment_id": segmentID},
		ExternalIDs:      ids,
		Traits: map[string]any{"first_name": first, "last_name": last, "name": first + " " + last,
			"plan": []string{"free", "pro", "enterprise"}[pr.IntN(3)], "lifetime_value": pr.IntN(100000), "city": "Lisbon"},
	}
	b, _ := json.Marshal(&ev)
	return Event{Key: []byte(Space + ":" + segmentID), Value: b}
}
