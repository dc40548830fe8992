// Package demo makes synthetic but realistic data for idsync's embedded
// mode and benchmarks: one demo connection of each destination type, and a
// seeded stream of audience-membership events (a few of them bad, so the
// dead-letter topic has something to show).
//
// Everything is deterministic for a given seed. The package does no I/O;
// callers produce the events and store the connections.
package demo

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/idsync/idsync/idsync"
)

// Space is the space of every demo audience.
const Space = "spa_demo"

// Connection is one demo connection: where it is stored and its
// configuration as JSON (the body an admin would PUT).
type Connection struct {
	Audience    string
	Destination string
	Config      json.RawMessage
}

// Connections returns one connection of each destination type, spread over
// three audiences; a fourth audience (aud_unconnected) has none, so the
// no_connections skip shows too.
func Connections() []Connection {
	return []Connection{
		{"aud_first_time_shopper", "fbca_demo", json.RawMessage(`{"destination_type":"facebook_custom_audiences","external_audience_id":"23851234567890123",
			"settings":{"send_mobile_ids":true},"setup":"customized","identifiers":[
			{"segment":"email","destination":"EMAIL","strategy":"all"},
			{"segment":"phone","destination":"PHONE","strategy":"last_added"},
			{"segment":"ios.idfa","destination":"MADID","strategy":"first_added"}]}`)},
		{"aud_first_time_shopper", "gads_demo", json.RawMessage(`{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_8812","setup":"default"}`)},
		{"aud_big_spender", "iterable_demo", json.RawMessage(`{"destination_type":"iterable","setup":"default"}`)},
		{"aud_big_spender", "zendesk_demo", json.RawMessage(`{"destination_type":"zendesk","settings":{"send_identify":true},"setup":"default"}`)},
		{"aud_churn_risk", "webhook_demo", json.RawMessage(`{"destination_type":"webhook","setup":"customized","identifiers":[
			{"segment":"user_id","destination":"userId","strategy":"last_added"},
			{"segment":"anonymous_id","destination":"anonymousId","strategy":"last_added"},
			{"segment":"shopify_id","destination":"shopify_id","strategy":"all"}]}`)},
	}
}

// Audiences lists the audiences events are drawn from.
var Audiences = []string{"aud_first_time_shopper", "aud_big_spender", "aud_churn_risk", "aud_unconnected"}

// Event is one generated input record.
type Event struct {
	// Key is "<space_id>:<segment_id>", the input topic's key.
	Key   string
	Value []byte
	// Bad is set for records generated to be dead-lettered.
	Bad bool
}

// Generator makes events. It is not safe for concurrent use.
type Generator struct {
	rng *rand.Rand
	n   int
	// BadEvery makes every BadEvery-th event a bad record (0: none).
	BadEvery int
	// Profiles is the number of distinct profiles (default 10,000).
	Profiles int
}

// NewGenerator returns a generator seeded with seed.
func NewGenerator(seed uint64) *Generator {
	return &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), BadEvery: 50, Profiles: 10000}
}

var firstNames = []string{"Jane", "John", "Ana", "Wei", "Fatima", "Lars", "Priya", "Kofi", "Mia", "Noah"}
var lastNames = []string{"Doe", "Smith", "Garcia", "Chen", "Khan", "Berg", "Patel", "Mensah", "Rossi", "Kim"}
var domains = []string{"gmail.com", "example.com", "work.co", "googlemail.com", "mail.org"}
var phones = []string{"+1 (650) 555-%04d", "+44 20 7946 %04d", "(415) 555-%04d", "+49 30 1234%04d", "+33 1 42 68 %02d %02d"}

// Next returns the next event at time now.
func (g *Generator) Next(now time.Time) Event {
	g.n++
	r := g.rng
	profile := r.IntN(max(1, g.Profiles))
	segmentID := fmt.Sprintf("use_%06d", profile)
	key := Space + ":" + segmentID
	if g.BadEvery > 0 && g.n%g.BadEvery == 0 {
		return Event{Key: key, Value: g.bad(now), Bad: true}
	}
	audience := Audiences[r.IntN(len(Audiences))]
	action := "entered"
	if r.IntN(4) == 0 {
		action = "exited"
	}
	first, last := firstNames[profile%len(firstNames)], lastNames[(profile/7)%len(lastNames)]
	var ids []map[string]string
	add := func(typ, id string, daysAgo int) {
		ids = append(ids, map[string]string{"type": typ, "id": id,
			"created_at": now.Add(-time.Duration(daysAgo) * 24 * time.Hour).UTC().Format(time.RFC3339)})
	}
	add("user_id", fmt.Sprintf("u%07d", profile), 400)
	for i := range 1 + r.IntN(3) {
		add("email", fmt.Sprintf("%s.%s%d@%s", first, last, i, domains[(profile+i)%len(domains)]), 300-i*50)
	}
	for i := range r.IntN(3) {
		p := phones[(profile+i)%len(phones)]
		var phone string
		if p == phones[4] {
			phone = fmt.Sprintf(p, profile%100, i)
		} else {
			phone = fmt.Sprintf(p, (profile*7+i)%10000)
		}
		add("phone", phone, 200-i*30)
	}
	if r.IntN(2) == 0 {
		add("ios.idfa", fmt.Sprintf("AECE52E7-03EE-455A-B3C4-%012X", profile), 100)
	}
	if r.IntN(3) == 0 {
		add("android.idfa", fmt.Sprintf("38400000-8cf0-11bd-b23e-%012x", profile), 90)
	}
	add("anonymous_id", fmt.Sprintf("anon-%08x", r.Uint32()), 10)
	if r.IntN(2) == 0 {
		add("shopify_id", fmt.Sprint(9000000+profile), 60)
	}
	ev := map[string]any{
		"message_id":        fmt.Sprintf("ame_%016x", r.Uint64()),
		"timestamp":         now.UTC().Format("2006-01-02T15:04:05.000Z"),
		"space_id":          Space,
		"computation_class": idsync.ClassAudience,
		"audience_id":       audience,
		"audience_key":      audience[len("aud_"):],
		"action":            action,
		"profile":           map[string]string{"segment_id": segmentID},
		"external_ids":      ids,
		"traits":            map[string]string{"first_name": first, "last_name": last, "plan": "pro"},
	}
	b, _ := json.Marshal(ev)
	return Event{Key: key, Value: b}
}

// bad returns a record of one of the dead-letter kinds, in turn.
func (g *Generator) bad(now time.Time) []byte {
	switch (g.n / max(1, g.BadEvery)) % 4 {
	case 0:
		return []byte(`{"message_id": "ame_truncated", "timestamp": `)
	case 1:
		return []byte(`{"message_id":"ame_noprofile","timestamp":"` + now.UTC().Format(time.RFC3339) + `","space_id":"spa_demo","audience_id":"aud_big_spender","action":"entered","external_ids":[]}`)
	case 2:
		return []byte(`{"message_id":"ame_badtime","timestamp":"last tuesday","space_id":"spa_demo","audience_id":"aud_big_spender","action":"entered","profile":{"segment_id":"use_1"},"external_ids":[]}`)
	default:
		return []byte("{\"message_id\":\"ame_\xff\xfe\"}")
	}
}
