package idsync

import (
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestParseConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want Config
	}{
		{
			name: "facebook default fills every setting but upload_key_type",
			raw:  `{"destination_type":"facebook_custom_audiences","external_audience_id":"1"}`,
			want: Config{DestinationType: FacebookCustomAudiences, ExternalAudienceID: "1", Setup: SetupDefault,
				Settings: Settings{SendTrack: true, EnterEvent: "Audience Entered", ExitEvent: "Audience Exited"}},
		},
		{
			name: "google keeps CONTACT_INFO as its default upload key type",
			raw:  `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"1","setup":"default"}`,
			want: Config{DestinationType: GoogleAdsRemarketingLists, ExternalAudienceID: "1", Setup: SetupDefault,
				Settings: Settings{SendTrack: true, EnterEvent: "Audience Entered", ExitEvent: "Audience Exited", UploadKeyType: UploadContactInfo}},
		},
		{
			name: "explicit false and empty values override defaults",
			raw: `{"destination_type":"webhook","settings":{"send_track":false,"send_identify":true,"exit_event":"Gone"},
			       "setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"all"}]}`,
			want: Config{DestinationType: Webhook, Setup: SetupCustomized,
				Settings:    Settings{SendTrack: false, SendIdentify: true, EnterEvent: "Audience Entered", ExitEvent: "Gone"},
				Identifiers: []Mapping{{Segment: "user_id", Destination: "userId", Strategy: All}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tt.raw))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got %+v\nwant %+v", *got, tt.want)
			}
			// A parsed configuration survives a JSON round trip (the store keeps it as JSON).
			b, _ := json.Marshal(got)
			var back Config
			if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, *got) {
				t.Errorf("round trip changed the configuration: %+v (%v)", back, err)
			}
			if err := Validate(&back); err != nil {
				t.Errorf("round-tripped configuration no longer validates: %v", err)
			}
		})
	}
}

func TestParseConfigProblems(t *testing.T) {
	const fb = `"destination_type":"facebook_custom_audiences","external_audience_id":"1"`
	const gg = `"destination_type":"google_ads_remarketing_lists","external_audience_id":"1"`
	tests := []struct {
		name string
		raw  string
		want []string // "field: message fragment"
	}{
		{"malformed", `{"destination_type":`, []string{": malformed JSON"}},
		{"trailing data", `{"destination_type":"webhook"} {}`, []string{": unexpected data"}},
		{"not an object", `[1]`, []string{": must be an object"}},
		{"unknown field", `{"destination_type":"webhook","identifers":[]}`, []string{"identifers: unknown field"}},
		{"mistyped setting", `{"destination_type":"webhook","settings":{"send_track":"yes"}}`, []string{"settings.send_track: must be a boolean"}},
		{"missing type", `{}`, []string{"destination_type: required"}},
		{"unknown type", `{"destination_type":"myspace"}`, []string{"destination_type: unknown destination type"}},
		{"list type needs external audience id", `{"destination_type":"facebook_custom_audiences"}`, []string{"external_audience_id: required"}},
		{"bad setup", `{` + fb + `,"setup":"custom"}`, []string{"setup: must be default or customized"}},
		{"empty setup", `{` + fb + `,"setup":""}`, []string{"setup: required"}},
		{"default takes no identifiers", `{` + fb + `,"setup":"default","identifiers":[{"segment":"email","destination":"EMAIL","strategy":"all"}]}`,
			[]string{"identifiers: setup default takes no identifiers"}},
		{"customized needs identifiers", `{` + fb + `,"setup":"customized"}`, []string{"identifiers: setup customized needs at least one"}},
		{"every mapping problem at once", `{` + fb + `,"setup":"customized","identifiers":[
			{"segment":"email","destination":"EMAIL","strategy":"all"},
			{"segment":"Email!","destination":"email","strategy":"most"},
			{"segment":"email","destination":"PHONE","strategy":"last_added"},
			{"segment":"","destination":"","strategy":""},
			{"segment":"ios.idfa","destination":"MADID","strategy":"first_added"}]}`,
			[]string{
				"identifiers[1].segment: must be a lower-case identifier type",
				"identifiers[1].destination: must be one of EXTERN_ID, EMAIL, PHONE, MADID",
				"identifiers[1].strategy: must be last_added, first_added or all",
				"identifiers[2].segment: email is already mapped by identifiers[0]",
				"identifiers[3].segment: required",
				"identifiers[3].destination: required",
				"identifiers[3].strategy: required",
				"identifiers[4].segment: ios.idfa needs settings.send_mobile_ids=true",
			}},
		{"at most three all", `{"destination_type":"webhook","setup":"customized","identifiers":[
			{"segment":"email","destination":"email","strategy":"all"},
			{"segment":"user_id","destination":"userId","strategy":"all"},
			{"segment":"phone","destination":"phone","strategy":"all"},
			{"segment":"shopify_id","destination":"shopify_id","strategy":"all"}]}`,
			[]string{"identifiers: at most 3 identifiers may use strategy all (found 4)"}},
		{"free-text key pattern", `{"destination_type":"iterable","setup":"customized","identifiers":[
			{"segment":"email","destination":"9email","strategy":"all"},
			{"segment":"user_id","destination":"user id","strategy":"all"}]}`,
			[]string{"identifiers[0].destination: must match", "identifiers[1].destination: must match"}},
		{"google key must fit upload key type", `{` + gg + `,"settings":{"upload_key_type":"CRM_ID"},"setup":"customized","identifiers":[
			{"segment":"email","destination":"hashed_email","strategy":"all"}]}`,
			[]string{"identifiers[0].destination: must be one of third_party_user_id for upload_key_type CRM_ID"}},
		{"google unknown upload key type", `{` + gg + `,"settings":{"upload_key_type":"EMAIL"}}`,
			[]string{"settings.upload_key_type: must be CONTACT_INFO, MOBILE_ADVERTISING_ID or CRM_ID"}},
		{"google unknown upload key type with mappings", `{` + gg + `,"settings":{"upload_key_type":"EMAIL"},"setup":"customized","identifiers":[
			{"segment":"email","destination":"hashed_email","strategy":"all"}]}`,
			[]string{"settings.upload_key_type: must be CONTACT_INFO"}},
		{"google mobile default needs mobile ids", `{` + gg + `,"settings":{"upload_key_type":"MOBILE_ADVERTISING_ID"}}`,
			[]string{"settings.send_mobile_ids: must be true for upload_key_type MOBILE_ADVERTISING_ID"}},
		{"upload key type on another type", `{"destination_type":"iterable","settings":{"upload_key_type":"CRM_ID"}}`,
			[]string{"settings.upload_key_type: applies to google_ads_remarketing_lists only"}},
		{"event type sends nothing", `{"destination_type":"zendesk","settings":{"send_track":false}}`,
			[]string{"settings.send_track: send_track and send_identify are both false"}},
		{"event names required with track", `{"destination_type":"zendesk","settings":{"enter_event":"","exit_event":""}}`,
			[]string{"settings.enter_event: required", "settings.exit_event: required"}},
		{"long external audience id", `{"destination_type":"facebook_custom_audiences","external_audience_id":"` + strings.Repeat("9", 300) + `"}`,
			[]string{"external_audience_id: longer than 256 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.raw))
			if err == nil {
				t.Fatalf("ParseConfig accepted it: %+v", cfg)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError: %v", err, err)
			}
			var got []string
			for _, p := range ve.Problems {
				got = append(got, p.Field+": "+p.Message)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			sort.Strings(got)
			want := append([]string(nil), tt.want...)
			sort.Strings(want)
			for i := range want {
				if !strings.HasPrefix(got[i], want[i]) {
					t.Errorf("problem %q, want prefix %q", got[i], want[i])
				}
			}
			if !strings.Contains(err.Error(), ve.Problems[0].Field) {
				t.Errorf("Error() %q does not name %q", err, ve.Problems[0].Field)
			}
		})
	}
}

func TestValidateAcceptsEveryCatalogDefault(t *testing.T) {
	for _, info := range Catalog() {
		cfg := &Config{DestinationType: info.Type, ExternalAudienceID: "x", Setup: SetupDefault, Settings: DefaultSettings()}
		if info.Type != GoogleAdsRemarketingLists {
			cfg.Settings.UploadKeyType = ""
		}
		if err := Validate(cfg); err != nil {
			t.Errorf("%s default: %v", info.Type, err)
		}
		// Every proposed key is accepted in a customized setup.
		for seg, key := range info.ProposedKeys {
			c := *cfg
			c.Setup = SetupCustomized
			c.Settings.SendMobileIDs = true
			c.Identifiers = []Mapping{{Segment: seg, Destination: key, Strategy: LastAdded}}
			if info.Type == GoogleAdsRemarketingLists {
				for ukt, keys := range info.UploadKeyTypes {
					if contains(keys, key) {
						c.Settings.UploadKeyType = ukt
					}
				}
			}
			if err := Validate(&c); err != nil {
				t.Errorf("%s: proposed key %s for %s refused: %v", info.Type, key, seg, err)
			}
		}
	}
}
