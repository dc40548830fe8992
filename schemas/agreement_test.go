package schemas_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/idsync/idsync/idsync"
)

// agreementNow is the processor's clock of the agreement tests.
var agreementNow = time.Date(2026, 6, 1, 12, 0, 5, 0, time.UTC)

// baseEvent is a valid event; cases edit it.
const baseEvent = `{"message_id":"m1","timestamp":"2026-06-01T12:00:00.000Z","space_id":"spa_1","computation_class":"audience",
"audience_id":"aud_1","audience_key":"buyers","action":"entered","sync":{"id":"run_1","started_at":"2026-06-01T11:59:30Z"},
"profile":{"segment_id":"use_1"},"external_ids":[{"type":"email","id":"jane@example.com","created_at":"2025-01-01T00:00:00Z"}],
"traits":{"name":"Jane"}}`

// editEvent returns baseEvent with top-level member key set to value (raw
// JSON), or removed when value is "".
func editEvent(t *testing.T, key, value string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(baseEvent), &m); err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(value)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// externalIDs returns an external_ids array of n valid entries.
func externalIDs(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf(`{"type":"user_id","id":"u%d","created_at":"2025-01-01T00:00:00Z"}`, i)
	}
	return "[" + strings.Join(ids, ",") + "]"
}

// TestEventSchemaAgreesWithDecode runs a table of events through Decode and
// through event.schema.json: both accept or both refuse, so the schema
// cannot drift from the decoder. The cases where they differ by design
// (what JSON Schema cannot express) are listed with why, and checked to
// differ exactly so, so that the schema's description stays true.
func TestEventSchemaAgreesWithDecode(t *testing.T) {
	s := compile(t)
	type tc struct {
		name  string
		raw   []byte
		valid bool
		// differs says why Decode and the schema disagree on purpose: the
		// schema then decides the opposite of valid.
		differs string
	}
	e := func(key, value string) []byte { return editEvent(t, key, value) }
	cases := []tc{
		{"the base event", []byte(baseEvent), true, ""},
		{"unknown fields", e("context", `{"library":{"name":"x"}}`), true, ""},
		{"no message_id", e("message_id", ""), false, ""},
		{"empty message_id", e("message_id", `""`), false, ""},
		{"null message_id", e("message_id", `null`), false, ""},
		{"numeric message_id", e("message_id", `7`), false, ""},
		{"no timestamp", e("timestamp", ""), false, ""},
		{"empty timestamp", e("timestamp", `""`), false, ""},
		{"timestamp not RFC 3339", e("timestamp", `"last tuesday"`), false, ""},
		{"timestamp without zone", e("timestamp", `"2026-06-01T12:00:00"`), false, ""},
		{"timestamp with offset", e("timestamp", `"2026-06-01T14:00:00+02:00"`), true, ""},
		{"numeric timestamp", e("timestamp", `1780000000`), false, ""},
		{"timestamp in lower case", e("timestamp", `"2026-06-01t12:00:00z"`), false, ""},
		{"timestamp with a leap second", e("timestamp", `"2026-06-01T23:59:60Z"`), false, ""},
		{"timestamp with ten fractional digits", e("timestamp", `"2026-06-01T12:00:00.1234567891Z"`), true, ""},
		{"timestamp with offset -00:00", e("timestamp", `"2026-06-01T12:00:00-00:00"`), true, ""},
		{"timestamp with offset without colon", e("timestamp", `"2026-06-01T12:00:00+0100"`), false, ""},
		{"timestamp without seconds", e("timestamp", `"2026-06-01T12:00Z"`), false, ""},
		{"timestamp on February 30", e("timestamp", `"2026-02-30T12:00:00Z"`), false, ""},
		{"no space_id", e("space_id", ""), false, ""},
		{"journey_step", e("computation_class", `"journey_step"`), true, ""},
		{"empty computation_class", e("computation_class", `""`), true, ""},
		{"null computation_class", e("computation_class", `null`), true, ""},
		{"no computation_class", e("computation_class", ""), true, ""},
		{"unknown computation_class", e("computation_class", `"trait"`), false, ""},
		{"no audience_id", e("audience_id", ""), false, ""},
		{"null audience_key", e("audience_key", `null`), true, ""},
		{"no audience_key", e("audience_key", ""), true, ""},
		{"numeric audience_key", e("audience_key", `5`), false, ""},
		{"exited", e("action", `"exited"`), true, ""},
		{"unknown action", e("action", `"joined"`), false, ""},
		{"no action", e("action", ""), false, ""},
		{"no sync", e("sync", ""), true, ""},
		{"null sync", e("sync", `null`), true, ""},
		{"empty sync", e("sync", `{}`), true, ""},
		{"sync without started_at", e("sync", `{"id":"r"}`), true, ""},
		{"empty started_at", e("sync", `{"started_at":""}`), true, ""},
		{"started_at not RFC 3339", e("sync", `{"started_at":"soon"}`), false, ""},
		{"numeric started_at", e("sync", `{"started_at":5}`), false, ""},
		{"sync not an object", e("sync", `"run_1"`), false, ""},
		{"no profile", e("profile", ""), false, ""},
		{"profile not an object", e("profile", `"use_1"`), false, ""},
		{"empty segment_id", e("profile", `{"segment_id":""}`), false, ""},
		{"no external_ids", e("external_ids", ""), false, ""},
		{"null external_ids", e("external_ids", `null`), false, ""},
		{"empty external_ids", e("external_ids", `[]`), true, ""},
		{"external_ids not an array", e("external_ids", `{}`), false, ""},
		{"null external id", e("external_ids", `[null]`), false, ""},
		{"external id not an object", e("external_ids", `["email"]`), false, ""},
		{"external id without type", e("external_ids", `[{"id":"x","created_at":"2025-01-01T00:00:00Z"}]`), false, ""},
		{"external id with empty id", e("external_ids", `[{"type":"email","id":"","created_at":"2025-01-01T00:00:00Z"}]`), false, ""},
		{"external id with numeric id", e("external_ids", `[{"type":"email","id":5,"created_at":"2025-01-01T00:00:00Z"}]`), false, ""},
		{"external id without created_at", e("external_ids", `[{"type":"email","id":"x"}]`), false, ""},
		{"created_at not RFC 3339", e("external_ids", `[{"type":"email","id":"x","created_at":"2025-01-01"}]`), false, ""},
		{"custom identifier type", e("external_ids", `[{"type":"shopify_id","id":"1","created_at":"2025-01-01T00:00:00Z","extra":1}]`), true, ""},
		{"1000 external ids", e("external_ids", externalIDs(1000)), true, ""},
		{"1001 external ids", e("external_ids", externalIDs(1001)), false, ""},
		{"null traits", e("traits", `null`), true, ""},
		{"traits of any type", e("traits", `{"name":5,"age":41,"tags":["a"]}`), true, ""},
		{"traits not an object", e("traits", `"Jane"`), false, ""},
		{"an array", []byte(`[1]`), false, ""},
		{"null", []byte(`null`), false, ""},
		{"malformed JSON", []byte(`{"message_id":`), false, ""},

		// By design: what JSON Schema cannot say.
		{"key in another case", []byte(strings.Replace(baseEvent, `"message_id"`, `"Message_ID"`, 1)), true,
			"Decode matches keys case-insensitively as encoding/json does; the schema's required message_id is missing"},
		{"timestamp 25 h ahead", e("timestamp", `"2026-06-02T13:00:06Z"`), false,
			"the 24 h future skew depends on the processor's clock, which a schema does not know"},
		{"timestamp with a decimal comma", e("timestamp", `"2026-06-01T12:00:00,123Z"`), true,
			"Go's RFC 3339 parser accepts a comma before fractional seconds, RFC 3339 does not"},
		{"created_at with offset +24:00", e("external_ids", `[{"type":"email","id":"x","created_at":"2025-01-01T00:00:00+24:00"}]`), true,
			"Go's RFC 3339 parser accepts offsets of ±24:00, RFC 3339 does not"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, decErr := idsync.Decode(c.raw, agreementNow, idsync.DefaultLimits())
			if (decErr == nil) != c.valid {
				t.Fatalf("Decode: error %v, want valid=%v", decErr, c.valid)
			}
			schemaErr := validate(s.event, c.raw)
			schemaValid := schemaErr == nil
			if c.differs != "" {
				if schemaValid == c.valid {
					t.Fatalf("the schema now agrees with Decode (valid=%v): remove the difference %q from the table and from the schema's description", c.valid, c.differs)
				}
				return
			}
			if schemaValid != c.valid {
				t.Fatalf("Decode says valid=%v (%v), the schema %v", c.valid, decErr, schemaErr)
			}
		})
	}
}

// TestConfigSchemaAgreesWithParseConfig does for connection configurations
// what TestEventSchemaAgreesWithDecode does for events: ParseConfig and
// connection-config.schema.json accept and refuse the same table, apart
// from the listed differences.
func TestConfigSchemaAgreesWithParseConfig(t *testing.T) {
	s := compile(t)
	long := strings.Repeat("x", 257)
	mappings := func(n int, strategy string) string {
		ms := make([]string, n)
		for i := range ms {
			ms[i] = fmt.Sprintf(`{"segment":"t%d","destination":"k%d","strategy":%q}`, i, i, strategy)
		}
		return "[" + strings.Join(ms, ",") + "]"
	}
	cases := []struct {
		name    string
		raw     string
		valid   bool
		differs string
	}{
		{"facebook customized", `{"destination_type":"facebook_custom_audiences","external_audience_id":"1","settings":{"send_mobile_ids":true},"setup":"customized","identifiers":[{"segment":"email","destination":"EMAIL","strategy":"all"},{"segment":"ios.idfa","destination":"MADID","strategy":"first_added"},{"segment":"android.idfa","destination":"MADID","strategy":"first_added"}]}`, true, ""},
		{"facebook default", `{"destination_type":"facebook_custom_audiences","external_audience_id":"1"}`, true, ""},
		{"facebook without external_audience_id", `{"destination_type":"facebook_custom_audiences"}`, false, ""},
		{"facebook with empty external_audience_id", `{"destination_type":"facebook_custom_audiences","external_audience_id":""}`, false, ""},
		{"facebook with null external_audience_id", `{"destination_type":"facebook_custom_audiences","external_audience_id":null}`, false, ""},
		{"external_audience_id of 257 bytes", `{"destination_type":"iterable","external_audience_id":"` + long + `"}`, false, ""},
		{"facebook key not in its list", `{"destination_type":"facebook_custom_audiences","external_audience_id":"1","setup":"customized","identifiers":[{"segment":"email","destination":"email","strategy":"all"}]}`, false, ""},
		{"no destination_type", `{"setup":"default"}`, false, ""},
		{"null destination_type", `{"destination_type":null}`, false, ""},
		{"unknown destination_type", `{"destination_type":"myspace"}`, false, ""},
		{"unknown field", `{"destination_type":"iterable","colour":"blue"}`, false, ""},
		{"unknown setting", `{"destination_type":"iterable","settings":{"colour":"blue"}}`, false, ""},
		{"unknown mapping field", `{"destination_type":"iterable","setup":"customized","identifiers":[{"segment":"email","destination":"email","strategy":"all","note":1}]}`, false, ""},
		{"null settings and setup", `{"destination_type":"iterable","settings":null,"setup":null}`, true, ""},
		{"null settings members", `{"destination_type":"iterable","settings":{"send_track":null,"enter_event":null,"upload_key_type":null}}`, true, ""},
		{"setting of the wrong type", `{"destination_type":"iterable","settings":{"send_track":"yes"}}`, false, ""},
		{"unknown setup", `{"destination_type":"iterable","setup":"custom"}`, false, ""},
		{"default setup with identifiers", `{"destination_type":"iterable","identifiers":[{"segment":"email","destination":"email","strategy":"all"}]}`, false, ""},
		{"default setup with no identifiers", `{"destination_type":"iterable","setup":"default","identifiers":[]}`, true, ""},
		{"customized without identifiers", `{"destination_type":"iterable","setup":"customized"}`, false, ""},
		{"customized with empty identifiers", `{"destination_type":"iterable","setup":"customized","identifiers":[]}`, false, ""},
		{"unknown strategy", `{"destination_type":"iterable","setup":"customized","identifiers":[{"segment":"email","destination":"email","strategy":"sometimes"}]}`, false, ""},
		{"mapping without strategy", `{"destination_type":"iterable","setup":"customized","identifiers":[{"segment":"email","destination":"email"}]}`, false, ""},
		{"mapping with null segment", `{"destination_type":"iterable","setup":"customized","identifiers":[{"segment":null,"destination":"email","strategy":"all"}]}`, false, ""},
		{"segment type in upper case", `{"destination_type":"iterable","setup":"customized","identifiers":[{"segment":"Email","destination":"email","strategy":"all"}]}`, false, ""},
		{"three mappings with all", `{"destination_type":"webhook","setup":"customized","identifiers":` + mappings(3, "all") + `}`, true, ""},
		{"four mappings with all", `{"destination_type":"webhook","setup":"customized","identifiers":` + mappings(4, "all") + `}`, false, ""},
		{"50 mappings", `{"destination_type":"webhook","setup":"customized","identifiers":` + mappings(50, "last_added") + `}`, true, ""},
		{"51 mappings", `{"destination_type":"webhook","setup":"customized","identifiers":` + mappings(51, "last_added") + `}`, false, ""},
		{"free key not matching the pattern", `{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"email","destination":"1email","strategy":"all"}]}`, false, ""},
		{"idfa without send_mobile_ids", `{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"ios.idfa","destination":"idfa","strategy":"all"}]}`, false, ""},
		{"idfa with send_mobile_ids false", `{"destination_type":"webhook","settings":{"send_mobile_ids":false},"setup":"customized","identifiers":[{"segment":"android.idfa","destination":"idfa","strategy":"all"}]}`, false, ""},
		{"neither track nor identify", `{"destination_type":"zendesk","settings":{"send_track":false}}`, false, ""},
		{"identify only", `{"destination_type":"zendesk","settings":{"send_track":false,"send_identify":true}}`, true, ""},
		{"empty enter_event with tracks", `{"destination_type":"iterable","settings":{"enter_event":""}}`, false, ""},
		{"empty exit_event without tracks", `{"destination_type":"iterable","settings":{"send_track":false,"send_identify":true,"exit_event":""}}`, true, ""},
		{"enter_event of 257 bytes", `{"destination_type":"iterable","settings":{"enter_event":"` + long + `"}}`, false, ""},
		{"list type ignores event settings", `{"destination_type":"facebook_custom_audiences","external_audience_id":"1","settings":{"send_track":false,"enter_event":"` + long + `"}}`, true, ""},
		{"upload_key_type on iterable", `{"destination_type":"iterable","settings":{"upload_key_type":"CONTACT_INFO"}}`, false, ""},
		{"empty upload_key_type on iterable", `{"destination_type":"iterable","settings":{"upload_key_type":""}}`, true, ""},
		{"google default", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1"}`, true, ""},
		{"google contact info keys", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","setup":"customized","identifiers":[{"segment":"email","destination":"hashed_email","strategy":"all"},{"segment":"phone","destination":"hashed_phone_number","strategy":"all"}]}`, true, ""},
		{"google mobile_id under contact info", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","setup":"customized","identifiers":[{"segment":"user_id","destination":"mobile_id","strategy":"all"}]}`, false, ""},
		{"google mobile default without send_mobile_ids", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","settings":{"upload_key_type":"MOBILE_ADVERTISING_ID"}}`, false, ""},
		{"google mobile default", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","settings":{"upload_key_type":"MOBILE_ADVERTISING_ID","send_mobile_ids":true}}`, true, ""},
		{"google mobile customized", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","settings":{"upload_key_type":"MOBILE_ADVERTISING_ID"},"setup":"customized","identifiers":[{"segment":"user_id","destination":"mobile_id","strategy":"last_added"}]}`, true, ""},
		{"google crm", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","settings":{"upload_key_type":"CRM_ID"},"setup":"customized","identifiers":[{"segment":"user_id","destination":"third_party_user_id","strategy":"last_added"}]}`, true, ""},
		{"google crm with hashed_email", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","settings":{"upload_key_type":"CRM_ID"},"setup":"customized","identifiers":[{"segment":"email","destination":"hashed_email","strategy":"last_added"}]}`, false, ""},
		{"google empty upload_key_type", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","settings":{"upload_key_type":""}}`, false, ""},
		{"google unknown upload_key_type", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1","settings":{"upload_key_type":"EMAIL"}}`, false, ""},
		{"an array", `[]`, false, ""},
		{"null", `null`, false, ""},
		{"trailing data", `{"destination_type":"iterable"} {}`, false, ""},

		// By design: what JSON Schema cannot say.
		{"segment type mapped twice", `{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"email","destination":"a","strategy":"all"},{"segment":"email","destination":"b","strategy":"all"}]}`, false,
			"JSON Schema cannot require one member to be unique across array items (uniqueItems compares whole items)"},
		{"key in another case", `{"destination_type":"iterable","Setup":"default"}`, true,
			"ParseConfig matches keys case-insensitively as encoding/json does; to the schema Setup is an unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, parseErr := idsync.ParseConfig([]byte(c.raw))
			if (parseErr == nil) != c.valid {
				t.Fatalf("ParseConfig: error %v, want valid=%v", parseErr, c.valid)
			}
			schemaErr := validate(s.config, []byte(c.raw))
			schemaValid := schemaErr == nil
			if c.differs != "" {
				if schemaValid == c.valid {
					t.Fatalf("the schema now agrees with ParseConfig (valid=%v): remove the difference %q from the table and from the schema's description", c.valid, c.differs)
				}
				return
			}
			if schemaValid != c.valid {
				t.Fatalf("ParseConfig says valid=%v (%v), the schema %v", c.valid, parseErr, schemaErr)
			}
		})
	}
}
