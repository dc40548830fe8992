package idsync

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseConfig checks that no configuration makes ParseConfig panic,
// that every refusal names its problems, and that an accepted configuration
// validates again after the JSON round trip the store performs.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"destination_type":"facebook_custom_audiences","external_audience_id":"1","settings":{"send_mobile_ids":true},"setup":"customized","identifiers":[{"segment":"email","destination":"EMAIL","strategy":"all"},{"segment":"ios.idfa","destination":"MADID","strategy":"first_added"}]}`))
	f.Add([]byte(`{"destination_type":"google_ads_remarketing_lists","external_audience_id":"1","settings":{"upload_key_type":"CRM_ID"}}`))
	f.Add([]byte(`{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"a","destination":"b","strategy":"all"},{"segment":"a","destination":"b","strategy":"x"}]}`))
	f.Add([]byte(`{"destination_type":"zendesk","settings":{"send_track":false,"send_identify":false}}`))
	f.Add([]byte(`{"settings":{"upload_key_type":1}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, raw []byte) {
		cfg, err := ParseConfig(raw)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			return
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseConfig(b)
		if err != nil {
			t.Fatalf("accepted configuration refused after a round trip: %v\n%s", err, b)
		}
		if err := Validate(again); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzProcess decodes arbitrary events and runs them through a connection
// of every destination type: no panic, every output is valid JSON with the
// event's key and a message id of the documented form.
func FuzzProcess(f *testing.F) {
	f.Add(perEventInput)
	inputs, _ := filepath.Glob("testdata/golden/*.in.json")
	for _, in := range inputs {
		raw, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		var gc struct {
			Event json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(raw, &gc); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(gc.Event))
	}
	conns := benchConnections(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := Decode(raw, benchNow, DefaultLimits())
		if err != nil {
			return
		}
		opt := DefaultOptions()
		opt.MaxCombinations = 50
		res := Process(ev, conns, benchNow, opt)
		for _, o := range res.Outputs {
			if !json.Valid(o.Value) {
				t.Fatalf("invalid JSON output: %s", o.Value)
			}
			if o.Key != ev.SegmentID || !strings.HasPrefix(o.MessageID, ev.MessageID+":"+o.DestinationID+":") {
				t.Fatalf("output key %q id %q", o.Key, o.MessageID)
			}
		}
		for _, d := range res.DeadLetters {
			if d.Code != CodeFanoutLimit {
				t.Fatalf("dead letter %+v", d)
			}
		}
	})
}
