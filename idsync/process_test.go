package idsync

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ext(typ, id string, created time.Duration) ExternalID {
	return ExternalID{Type: typ, ID: id, CreatedAt: t0.Add(created)}
}

func TestSelectIdentifiers(t *testing.T) {
	ids := []ExternalID{
		ext("email", "late@x.com", 3*time.Hour),
		ext("email", "early@x.com", time.Hour),
		ext("email", "tie-first@x.com", 2*time.Hour),
		ext("email", "tie-second@x.com", 2*time.Hour),
		ext("email", "EARLY@x.com ", 4*time.Hour),
		ext("phone", "not a phone", 0),
		ext("ios.idfa", "IDFA-1", 0),
		ext("shopify_id", "s1", 0),
		ext("shopify_id", "", time.Hour),
	}
	webhook := func(setup Setup, mobile bool, ms ...Mapping) *Config {
		c := &Config{DestinationType: Webhook, Setup: setup, Settings: DefaultSettings(), Identifiers: ms}
		c.Settings.SendMobileIDs = mobile
		return c
	}
	fb := func(ms ...Mapping) *Config {
		return &Config{DestinationType: FacebookCustomAudiences, Setup: SetupCustomized, Settings: DefaultSettings(), Identifiers: ms}
	}
	tests := []struct {
		name        string
		cfg         *Config
		action      Action
		want        map[string][]string
		wantInvalid int
	}{
		{"all: by created_at, ties in event order", webhook(SetupCustomized, false, Mapping{"email", "email", All}), ActionEntered,
			map[string][]string{"email": {"early@x.com", "tie-first@x.com", "tie-second@x.com", "late@x.com", "EARLY@x.com "}}, 0},
		{"first_added", webhook(SetupCustomized, false, Mapping{"email", "email", FirstAdded}), ActionEntered,
			map[string][]string{"email": {"early@x.com"}}, 0},
		{"last_added", webhook(SetupCustomized, false, Mapping{"email", "email", LastAdded}), ActionEntered,
			map[string][]string{"email": {"EARLY@x.com "}}, 0},
		{"last_added after normalization dedupe keeps the first place", fb(Mapping{"email", "EMAIL", LastAdded}), ActionEntered,
			map[string][]string{"EMAIL": {sha("late@x.com")}}, 0},
		{"exit ignores the strategy", fb(Mapping{"email", "EMAIL", FirstAdded}), ActionExited,
			map[string][]string{"EMAIL": {sha("early@x.com"), sha("tie-first@x.com"), sha("tie-second@x.com"), sha("late@x.com")}}, 0},
		{"an invalid value is counted and skipped", fb(Mapping{"phone", "PHONE", All}), ActionEntered, map[string][]string{}, 1},
		{"custom identifier in customized setup, empty value skipped", webhook(SetupCustomized, false, Mapping{"shopify_id", "shopify_id", All}), ActionEntered,
			map[string][]string{"shopify_id": {"s1"}}, 0},
		{"mobile ids gated by send_mobile_ids", webhook(SetupDefault, false), ActionEntered,
			map[string][]string{"email": {"early@x.com", "tie-first@x.com", "tie-second@x.com", "late@x.com", "EARLY@x.com "}}, 0},
		{"mobile ids sent when on", webhook(SetupDefault, true), ActionEntered,
			map[string][]string{"email": {"early@x.com", "tie-first@x.com", "tie-second@x.com", "late@x.com", "EARLY@x.com "}, "ios_idfa": {"IDFA-1"}}, 0},
		{"a mapping without candidates contributes nothing", webhook(SetupCustomized, false, Mapping{"user_id", "userId", All}), ActionEntered,
			map[string][]string{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &Event{Action: tt.action, ExternalIDs: ids}
			var sel selection
			invalid := selectIdentifiers(ev, tt.cfg, "US", &sel)
			got := map[string][]string{}
			for i, k := range sel.keys {
				got[k] = sel.values[i]
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("selected %v, want %v", got, tt.want)
			}
			if invalid != tt.wantInvalid {
				t.Errorf("invalid %d, want %d", invalid, tt.wantInvalid)
			}
		})
	}
}

func sha(email string) string {
	v, err := NormalizerFor(FacebookCustomAudiences, "EMAIL", "US")(email)
	if err != nil {
		panic(err)
	}
	return v
}

// TestDefaultSetupNeverSendsCustomIdentifiers checks the rule on every
// destination type and upload key type, whatever the profile holds.
func TestDefaultSetupNeverSendsCustomIdentifiers(t *testing.T) {
	ev := &Event{Action: ActionEntered, ExternalIDs: []ExternalID{
		ext("shopify_id", "custom-1", 0), ext("loyalty.card", "custom-2", 0),
	}}
	for _, info := range Catalog() {
		ukts := []string{""}
		if info.Type == GoogleAdsRemarketingLists {
			ukts = []string{UploadContactInfo, UploadMobileAdID, UploadCRMID}
		}
		for _, ukt := range ukts {
			cfg := &Config{DestinationType: info.Type, Setup: SetupDefault, Settings: DefaultSettings()}
			cfg.Settings.UploadKeyType = ukt
			cfg.Settings.SendMobileIDs = true
			var sel selection
			if selectIdentifiers(ev, cfg, "US", &sel); !sel.empty() {
				t.Errorf("%s %s sent custom identifiers: %v", info.Type, ukt, sel.values)
			}
		}
	}
}

func TestProcessFanoutNeverMaterializesHugeProducts(t *testing.T) {
	// 3 keys x 300 values: 27 million combinations. Process must refuse it
	// by counting, without building anything.
	var ids []ExternalID
	for i := range 300 {
		ids = append(ids, ext("email", fmt.Sprintf("e%d@x.com", i), 0), ext("user_id", fmt.Sprint("u", i), 0), ext("phone", fmt.Sprint("p", i), 0))
	}
	ev := &Event{MessageID: "m", Action: ActionEntered, ExternalIDs: ids, Timestamp: t0}
	cfgs := map[string]*Config{
		"wh": {DestinationType: Webhook, Setup: SetupCustomized, Settings: DefaultSettings(), Identifiers: []Mapping{
			{"email", "email", All}, {"user_id", "userId", All}, {"phone", "phone", All}}},
		"fb": {DestinationType: FacebookCustomAudiences, Setup: SetupCustomized, Settings: DefaultSettings(), Identifiers: []Mapping{
			{"email", "EMAIL", All}, {"user_id", "EXTERN_ID", All}, {"phone", "MADID", All}}},
	}
	for name, cfg := range cfgs {
		conns := []Connection{{DestinationID: name, Versions: []Version{{Version: 1, Config: cfg}}}}
		res := Process(ev, conns, t0, DefaultOptions())
		if len(res.Outputs) != 0 || len(res.DeadLetters) != 1 || res.DeadLetters[0].Code != CodeFanoutLimit {
			t.Fatalf("%s: %d outputs, dead letters %+v", name, len(res.Outputs), res.DeadLetters)
		}
		// Facebook counts rows first (max_facebook_rows), event types records.
		want := map[string]string{"wh": "max_combinations 1000", "fb": "max_facebook_rows 100000"}[name]
		if !strings.Contains(res.DeadLetters[0].Message, want) {
			t.Errorf("%s: message %q", name, res.DeadLetters[0].Message)
		}
	}
}

func TestProcessFanoutBoundary(t *testing.T) {
	// Exactly MaxCombinations records pass; one more is refused.
	mk := func(n int) *Event {
		var ids []ExternalID
		for i := range n {
			ids = append(ids, ext("email", fmt.Sprintf("e%d@x.com", i), time.Duration(i)))
		}
		return &Event{MessageID: "m", Action: ActionEntered, ExternalIDs: ids}
	}
	cfg := &Config{DestinationType: Iterable, Setup: SetupCustomized, Settings: DefaultSettings(),
		Identifiers: []Mapping{{"email", "email", All}}}
	conns := []Connection{{DestinationID: "it", Versions: []Version{{Version: 1, Config: cfg}}}}
	opt := DefaultOptions()
	opt.MaxCombinations = 10
	if res := Process(mk(10), conns, t0, opt); len(res.Outputs) != 10 || res.DeadLetters != nil {
		t.Errorf("10 records: %d outputs, %+v", len(res.Outputs), res.DeadLetters)
	}
	res := Process(mk(11), conns, t0, opt)
	if len(res.Outputs) != 0 || len(res.DeadLetters) != 1 {
		t.Errorf("11 records: %d outputs, %+v", len(res.Outputs), res.DeadLetters)
	}
	if !strings.Contains(res.DeadLetters[0].Message, "produce 11 records") {
		t.Errorf("message %q does not give the count", res.DeadLetters[0].Message)
	}
	if strings.Contains(res.DeadLetters[0].Message, "@") {
		t.Errorf("message %q holds an identifier value", res.DeadLetters[0].Message)
	}
}

func TestOptionsCheck(t *testing.T) {
	if err := DefaultOptions().Check(); err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{
		{MaxCombinations: 0, FacebookMaxRows: 1, PhoneRegion: "US"},
		{MaxCombinations: 1, FacebookMaxRows: 0, PhoneRegion: "US"},
		{MaxCombinations: 1, FacebookMaxRows: 1, PhoneRegion: "XX"},
	} {
		if err := o.Check(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestCatalog(t *testing.T) {
	cat := Catalog()
	if len(cat) != len(DestinationTypes) {
		t.Fatalf("%d entries", len(cat))
	}
	for i, info := range cat {
		if info.Type != DestinationTypes[i] || info.Kind != KindOf(info.Type) {
			t.Errorf("entry %d: %s %s", i, info.Type, info.Kind)
		}
		if (info.Kind == KindList) != info.RequiresExternalAudienceID {
			t.Errorf("%s: requires external audience id = %v", info.Type, info.RequiresExternalAudienceID)
		}
		if _, err := json.Marshal(info); err != nil {
			t.Error(err)
		}
	}
	if _, ok := Describe("nope"); ok || KindOf("nope") != "" || ProposedKey("nope", "email") != "" {
		t.Error("unknown type described")
	}
	for seg, want := range map[string]string{"user_id": "userId", "anonymous_id": "anonymousId", "ios.idfa": "ios_idfa", "email": "email", "shopify_id": "shopify_id"} {
		if got := ProposedKey(Webhook, seg); got != want {
			t.Errorf("webhook proposed key for %s = %q, want %q", seg, got, want)
		}
	}
	if got := ProposedKey(Zendesk, "user_id"); got != "external_id" {
		t.Errorf("zendesk user_id -> %q", got)
	}
	if !IsDefaultIdentifierType("cross_domain_id") || IsDefaultIdentifierType("shopify_id") {
		t.Error("IsDefaultIdentifierType")
	}
}

func TestJSONStringEscaping(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " backslash \`, "nl\n cr\r tab\t ctl\x01\x1f", "<html>&", "é ünïcode 日本", "line\u2028sep\u2029", "bad\xffutf8", "del\x7f"} {
		got := string(jsonBuf(nil).str(s))
		var back string
		if err := json.Unmarshal([]byte(got), &back); err != nil {
			t.Errorf("%q: encoded %s is not valid JSON: %v", s, got, err)
			continue
		}
		want, _ := json.Marshal(s) // valid UTF-8 strings round-trip exactly
		if strings.ToValidUTF8(s, "\ufffd") != back {
			t.Errorf("%q: decodes to %q", s, back)
		}
		if !strings.Contains(s, "<") && !strings.Contains(s, "&") && got != string(want) {
			t.Errorf("%q: encoded %s, encoding/json gives %s", s, got, want)
		}
	}
}

// TestReferenceTimeOfAReplay: a replayed event is resolved at its replay
// time, when that is later than its own; never after the clock.
func TestReferenceTimeOfAReplay(t *testing.T) {
	now := t0.Add(10 * time.Hour)
	for _, tc := range []struct {
		name             string
		ts, started, rep time.Duration
		want             time.Duration
	}{
		{"plain", 1 * time.Hour, 0, 0, 1 * time.Hour},
		{"replayed later", 1 * time.Hour, 0, 5 * time.Hour, 5 * time.Hour},
		{"sync, replayed later", 1 * time.Hour, 2 * time.Hour, 5 * time.Hour, 5 * time.Hour},
		{"replay time before the event's", 6 * time.Hour, 0, 5 * time.Hour, 6 * time.Hour},
		{"replay time after the clock", 1 * time.Hour, 0, 20 * time.Hour, 10 * time.Hour},
	} {
		ev := &Event{Timestamp: t0.Add(tc.ts)}
		if tc.started != 0 {
			ev.Sync = &Sync{StartedAt: t0.Add(tc.started)}
		}
		if tc.rep != 0 {
			ev.ReplayedAt = t0.Add(tc.rep)
		}
		if got := ev.ReferenceTime(now); !got.Equal(t0.Add(tc.want)) {
			t.Errorf("%s: reference time %s, want %s", tc.name, got.Sub(t0), tc.want)
		}
	}
}

// TestProcessOutputsOwnTheirMemory checks that a result shares nothing with
// the pooled scratch of Process: the records and message ids of one call are
// unchanged by later calls, which reuse that scratch for other events, and
// those calls write their own event's values.
func TestProcessOutputsOwnTheirMemory(t *testing.T) {
	conns := benchConnections(t)
	ev, err := Decode(perEventInput, benchNow, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	first := Process(ev, conns, benchNow, DefaultOptions())
	type kept struct{ id, value string }
	want := make([]kept, len(first.Outputs))
	for i, o := range first.Outputs {
		want[i] = kept{strings.Clone(o.MessageID), string(o.Value)}
		if !strings.HasPrefix(o.MessageID, ev.MessageID+":"+o.DestinationID+":") {
			t.Fatalf("message id %q", o.MessageID)
		}
	}
	other := *ev
	other.MessageID = strings.Repeat("x", len(ev.MessageID))
	other.ResyncID = "rs_other"
	other.SpaceID, other.AudienceKey = "spa_other", "other_key"
	for range 8 {
		// The text a call keeps for its destinations (eventText) is the
		// call's own event's.
		for _, o := range Process(&other, conns, benchNow, DefaultOptions()).Outputs {
			v := string(o.Value)
			if !strings.Contains(v, `"source_message_id":"`+other.MessageID+`"`) || !strings.Contains(v, `"space_id":"spa_other"`) ||
				!strings.Contains(v, `"audience_key":"other_key"`) || !strings.HasPrefix(o.MessageID, other.MessageID+":resync:rs_other:") {
				t.Fatalf("%s: %s %s", o.DestinationType, o.MessageID, v)
			}
			if KindOf(o.DestinationType) == KindEvent && !strings.Contains(v, `"computation_key":"other_key"`) {
				t.Fatalf("%s: %s", o.DestinationType, v)
			}
		}
	}
	for i, o := range first.Outputs {
		if o.MessageID != want[i].id || string(o.Value) != want[i].value {
			t.Fatalf("output %d changed after later calls: %q %s", i, o.MessageID, o.Value)
		}
	}
}
