package idsync

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
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

// fuzzEvents returns the seed events of the Process fuzz targets: the
// benchmark event and every golden case's event.
func fuzzEvents(f *testing.F) [][]byte {
	events := [][]byte{perEventInput}
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
		events = append(events, []byte(gc.Event))
	}
	return events
}

// fuzzOptions returns small limits, so that fuzzing reaches every bound:
// records of 1 KiB and more, a few KiB per destination and per event, a few
// Facebook rows per record and a few hundred per event.
func fuzzOptions(record, output, event uint16, rows, perRecord uint8) Options {
	opt := DefaultOptions()
	opt.MaxCombinations = 50
	opt.MaxRecordBytes = MinRecordBytes + int(record)%(16<<10)
	opt.MaxOutputBytes = 1 + int(output)%(64<<10)
	opt.MaxEventOutputBytes = 1 + int(event)%(96<<10)
	opt.MaxFacebookRows = 1 + int(rows)*2
	opt.FacebookMaxRows = 1 + int(perRecord)%16
	return opt
}

// FuzzProcess decodes arbitrary events and runs them through a connection
// of every destination type under small, fuzzed limits: no panic, and
// every result keeps the bounds (checkBounds: records within
// MaxRecordBytes, destinations within MaxOutputBytes, the event within
// MaxEventOutputBytes, Result.Bytes their sum, valid JSON with the event's
// key and message ids of the documented form, dead letters with a known
// code). The package's plan hook checks every plan against the records.
func FuzzProcess(f *testing.F) {
	for i, ev := range fuzzEvents(f) {
		f.Add(ev, uint16(3000), uint16(20000), uint16(60000), uint8(100), uint8(7))
		f.Add(ev, uint16(i*97), uint16(i*1000), uint16(i*1500), uint8(i), uint8(i))
	}
	conns := benchConnections(f)
	f.Fuzz(func(t *testing.T, raw []byte, record, output, event uint16, rows, perRecord uint8) {
		ev, err := Decode(raw, benchNow, DefaultLimits())
		if err != nil {
			return
		}
		opt := fuzzOptions(record, output, event, rows, perRecord)
		if err := opt.Check(); err != nil {
			t.Fatal(err)
		}
		if rows%2 == 1 {
			// A resync's records: longer message ids and envelopes, which
			// the plan (checked by planHook) must count.
			ev.ResyncID = "rs_fuzz-1"
		}
		res := Process(ev, conns, benchNow, opt)
		checkBounds(t, ev, res, opt)
		for _, o := range res.Outputs {
			if hasResync := strings.Contains(o.MessageID, ":resync:rs_fuzz-1:"); hasResync != (ev.ResyncID != "") {
				t.Fatalf("message id %q with resync id %q", o.MessageID, ev.ResyncID)
			}
		}
		for _, d := range res.DeadLetters {
			if d.Code != CodeFanoutLimit && d.Code != CodeOutputTooLarge {
				t.Fatalf("dead letter %+v", d)
			}
		}
	})
}

// fuzzReader hands out the bytes of a fuzz input as choices; past its end
// every choice is 0.
type fuzzReader []byte

func (r *fuzzReader) byte() byte {
	if len(*r) == 0 {
		return 0
	}
	b := (*r)[0]
	*r = (*r)[1:]
	return b
}

// pick returns one of options.
func pick[T any](r *fuzzReader, options ...T) T { return options[int(r.byte())%len(options)] }

// text returns a string of up to n bytes taken from the input as they are.
func (r *fuzzReader) text(n int) string {
	n = min(int(r.byte())%(n+1), len(*r))
	s := string((*r)[:n])
	*r = (*r)[n:]
	return s
}

// fuzzConfig builds a configuration from the input, valid or not: known and
// unknown destination types, setups, strategies and keys, settings that
// send nothing, absurd texts, nil.
func fuzzConfig(r *fuzzReader) *Config {
	if r.byte()%16 == 0 {
		return nil
	}
	c := &Config{
		DestinationType:    pick(r, FacebookCustomAudiences, GoogleAdsRemarketingLists, Iterable, Zendesk, Webhook, "", "tiktok", DestinationType(r.text(8))),
		ExternalAudienceID: pick(r, "", "23851234567890123", "ul_1", strings.Repeat("x", 300), r.text(16)),
		Setup:              pick(r, SetupDefault, SetupCustomized, SetupCustomized, "", "Default"),
		Settings: Settings{
			SendTrack: r.byte()%4 != 0, SendIdentify: r.byte()%2 == 0, SendMobileIDs: r.byte()%2 == 0,
			EnterEvent:    pick(r, "Audience Entered", "", "e\" ", r.text(16)),
			ExitEvent:     pick(r, "Audience Exited", "", r.text(16)),
			UploadKeyType: pick(r, UploadContactInfo, UploadMobileAdID, UploadCRMID, "", "EMAIL"),
		},
	}
	for range int(r.byte()) % 7 {
		c.Identifiers = append(c.Identifiers, Mapping{
			Segment: pick(r, "email", "phone", "user_id", "ios.idfa", "android.idfa", "anonymous_id", "shopify_id", "ga_client_id", "", r.text(8)),
			Destination: pick(r, "EMAIL", "PHONE", "MADID", "EXTERN_ID", "hashed_email", "hashed_phone_number", "mobile_id", "third_party_user_id",
				"email", "userId", "anonymousId", "audience_key", "first_time_shopper", "external_id", "", r.text(8)),
			Strategy: pick(r, All, All, LastAdded, FirstAdded, "", "newest"),
		})
	}
	return c
}

// fuzzConnections builds up to four connections from the input: invalid
// connections and versions, tombstones, versions without configuration,
// any version number and activation time, duplicate and odd destination
// ids.
func fuzzConnections(r *fuzzReader) []Connection {
	var conns []Connection
	for i := range 1 + int(r.byte())%4 {
		c := Connection{DestinationID: fmt.Sprintf("d%d%s", i, r.text(6))}
		if r.byte()%8 == 0 {
			c.Invalid = pick(r, "record cannot be decoded", strings.Repeat("long reason ", 100), r.text(32))
		}
		for range int(r.byte()) % 4 {
			v := Version{
				Version:     pick(r, int64(1), int64(7), int64(-1), int64(math.MaxInt64), int64(math.MinInt64)),
				EffectiveAt: benchNow.Add(time.Duration(int8(r.byte())) * time.Minute),
			}
			switch r.byte() % 8 {
			case 0:
				v.Deleted = true
			case 1:
				v.Invalid = pick(r, "unknown destination type", r.text(32))
				v.Config = fuzzConfig(r)
			default:
				v.Config = fuzzConfig(r)
			}
			c.Versions = append(c.Versions, v)
		}
		conns = append(conns, c)
	}
	return conns
}

// FuzzProcessConnections runs decoded events through arbitrary connections,
// as a hostile or corrupted store could hand them over, under small fuzzed
// limits: Process never panics, every result keeps the bounds, and every
// effective connection ends in exactly one outcome — records, a dead
// letter (fan-out, size or invalid_config), or unmatched.
func FuzzProcessConnections(f *testing.F) {
	events := fuzzEvents(f)
	for i, ev := range events {
		f.Add(ev, []byte{byte(i), 1, 0, 2, 3, 1, 2, 5, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, uint16(3000), uint16(20000), uint16(60000), uint8(100), uint8(7))
	}
	f.Add(events[0], []byte("\x03\x00\x05\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"), uint16(0), uint16(0), uint16(0), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, raw, spec []byte, record, output, event uint16, rows, perRecord uint8) {
		ev, err := Decode(raw, benchNow, DefaultLimits())
		if err != nil {
			return
		}
		r := fuzzReader(spec)
		conns := fuzzConnections(&r)
		opt := fuzzOptions(record, output, event, rows, perRecord)
		res := Process(ev, conns, benchNow, opt)
		checkBounds(t, ev, res, opt)
		served := map[string]bool{}
		for _, o := range res.Outputs {
			served[o.DestinationID] = true
			if !slices.Contains(DestinationTypes, o.DestinationType) {
				t.Fatalf("output of unknown type %q", o.DestinationType)
			}
		}
		for _, u := range res.Unmatched {
			if !slices.Contains(DestinationTypes, u) {
				t.Fatalf("unmatched of unknown type %q", u)
			}
		}
		for typ := range res.Invalid {
			if !slices.Contains(DestinationTypes, typ) {
				t.Fatalf("invalid identifiers of unknown type %q", typ)
			}
		}
		effective := 0
		for _, c := range conns {
			if v := VersionAt(c.Versions, ev.ReferenceTime(benchNow)); c.Invalid != "" || (v != nil && !v.Deleted) {
				effective++
			}
		}
		if outcomes := len(served) + len(res.DeadLetters) + len(res.Unmatched); outcomes != effective {
			t.Fatalf("%d effective connections, %d outcomes (%d served, dead letters %+v, unmatched %v)",
				effective, outcomes, len(served), res.DeadLetters, res.Unmatched)
		}
		if res.NoConnections != (effective == 0) {
			t.Fatalf("NoConnections %v with %d effective connections", res.NoConnections, effective)
		}
		for _, d := range res.DeadLetters {
			if served[d.DestinationID] || len(d.Message) > 512 {
				t.Fatalf("dead letter %+v", d)
			}
		}
	})
}
