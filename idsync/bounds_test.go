package idsync

import (
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// conn returns a connection whose version 1, effective at t0, holds the
// configuration raw (parsed and validated as the store would).
func conn(t testing.TB, dest, raw string) Connection {
	t.Helper()
	cfg, err := ParseConfig([]byte(raw))
	if err != nil {
		t.Fatalf("%s: %v", dest, err)
	}
	return Connection{DestinationID: dest, Versions: []Version{{Version: 1, EffectiveAt: t0.Add(-time.Hour), Config: cfg}}}
}

// eventJSON returns an input event with the given external ids, as the
// pipeline would read it.
func eventJSON(segmentID string, ids []ExternalID) []byte {
	type wireID struct {
		Type      string `json:"type"`
		ID        string `json:"id"`
		CreatedAt string `json:"created_at"`
	}
	wire := make([]wireID, len(ids))
	for i, x := range ids {
		wire[i] = wireID{x.Type, x.ID, x.CreatedAt.Format(time.RFC3339)}
	}
	raw, err := json.Marshal(map[string]any{
		"message_id": "ame_hostile", "timestamp": "2026-06-01T11:59:00Z", "space_id": "spa_1",
		"audience_id": "aud_1", "audience_key": "big", "action": "entered",
		"profile": map[string]string{"segment_id": segmentID}, "external_ids": wire,
	})
	if err != nil {
		panic(err)
	}
	return raw
}

// allocated returns the bytes f allocates, measured over one run after a
// first one that warms the pools and the phone memo.
func allocated(f func()) uint64 {
	f()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestProcessAmplifyingFacebookEvent is issue 12 case 3: a 52 KB event with
// 645 ids, 215 each of email, phone and ios.idfa, under a Facebook
// configuration sending all three with strategy all, made 9,938,375 rows
// (994 records, 1.74 GB of output, 11.8 GB allocated). It must be refused
// by counting, fanout_limit for that destination, with allocations in the
// low MB, while the audience's other destination is served.
func TestProcessAmplifyingFacebookEvent(t *testing.T) {
	var ids []ExternalID
	for i := range 215 {
		ids = append(ids,
			ext("email", fmt.Sprintf("person.number.%03d@example-mail.com", i), time.Duration(i)*time.Second),
			ext("phone", fmt.Sprintf("+1 650 555 %04d", i), time.Duration(i)*time.Second),
			ext("ios.idfa", fmt.Sprintf("AECE52E7-03EE-455A-B3C4-%012d", i), time.Duration(i)*time.Second))
	}
	raw := eventJSON("use_1", ids)
	if len(raw) < 40<<10 || len(raw) > 64<<10 {
		t.Fatalf("event is %d bytes, want about 52 KB", len(raw))
	}
	ev, err := Decode(raw, t0, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	conns := []Connection{
		conn(t, "fb_big", `{"destination_type":"facebook_custom_audiences","external_audience_id":"1","settings":{"send_mobile_ids":true},"setup":"customized",
			"identifiers":[{"segment":"email","destination":"EMAIL","strategy":"all"},{"segment":"phone","destination":"PHONE","strategy":"all"},{"segment":"ios.idfa","destination":"MADID","strategy":"all"}]}`),
		conn(t, "google_1", `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"ul_1"}`),
	}
	var res Result
	alloc := allocated(func() { res = Process(ev, conns, t0, DefaultOptions()) })
	if len(res.DeadLetters) != 1 || res.DeadLetters[0].Code != CodeFanoutLimit || res.DeadLetters[0].DestinationID != "fb_big" {
		t.Fatalf("dead letters %+v", res.DeadLetters)
	}
	msg := res.DeadLetters[0].Message
	for _, want := range []string{"fb_big", "9938375 Facebook rows", "max_facebook_rows 100000"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "@") || strings.Contains(msg, "AECE") {
		t.Errorf("message %q holds an identifier value", msg)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].DestinationID != "google_1" || res.Bytes != len(res.Outputs[0].Value) {
		t.Fatalf("outputs %d, bytes %d", len(res.Outputs), res.Bytes)
	}
	// Selecting and hashing 645 values, and the Google record, is all
	// that is left: well under a few MB.
	const bound = 2 << 20
	if alloc > bound {
		t.Errorf("one Process call allocated %d bytes, want under %d", alloc, bound)
	}
	t.Logf("one Process call allocated %d bytes", alloc)
}

// facebookRows decodes Facebook records and returns their rows in order,
// checking that each is valid JSON with the schema want and at most limit
// bytes with its key.
func facebookRows(t *testing.T, outs []Output, schema []string, limit int) [][]string {
	t.Helper()
	var rows [][]string
	for n, o := range outs {
		if size := len(o.Key) + len(o.Value); size > limit {
			t.Errorf("record %d is %d bytes with its key, above %d", n, size, limit)
		}
		if want := "ame_hostile:" + o.DestinationID + ":" + strconv.Itoa(n); o.MessageID != want {
			t.Errorf("record %d: message id %q, want %q", n, o.MessageID, want)
		}
		var rec struct {
			MessageID string `json:"message_id"`
			Payload   struct {
				Schema []string   `json:"schema"`
				Data   [][]string `json:"data"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(o.Value, &rec); err != nil {
			t.Fatalf("record %d is not valid JSON: %v", n, err)
		}
		if rec.MessageID != o.MessageID || !slices.Equal(rec.Payload.Schema, schema) {
			t.Errorf("record %d: message_id %q schema %v", n, rec.MessageID, rec.Payload.Schema)
		}
		rows = append(rows, rec.Payload.Data...)
	}
	return rows
}

// TestProcessFacebookSplitByBytes is issue 12 case 2's record: a 17.6 KB
// event under EXTERN_ID (a 400-character user id) × EMAIL all × MADID all
// gave one 5.1 MB record, above the producer's limit. The rows are now cut
// into records of at most MaxRecordBytes (key included), every record is
// valid JSON, and their rows in order are the whole product.
func TestProcessFacebookSplitByBytes(t *testing.T) {
	longID := strings.Repeat("x", 400)
	ids := []ExternalID{ext("user_id", longID, 0)}
	var emails, madids []string
	for i := range 100 {
		e := fmt.Sprintf("e%03d@example.com", i)
		m := fmt.Sprintf("aece52e7-03ee-455a-b3c4-%012d", i)
		ids = append(ids, ext("email", e, time.Duration(i)*time.Second), ext("ios.idfa", strings.ToUpper(m), time.Duration(i)*time.Second))
		emails, madids = append(emails, sha(e)), append(madids, m)
	}
	raw := eventJSON("use_1", ids)
	if len(raw) < 15<<10 || len(raw) > 20<<10 {
		t.Fatalf("event is %d bytes, want about 17.6 KB", len(raw))
	}
	ev, err := Decode(raw, t0, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	c := conn(t, "fb_wide", `{"destination_type":"facebook_custom_audiences","external_audience_id":"1","settings":{"send_mobile_ids":true},"setup":"customized",
		"identifiers":[{"segment":"user_id","destination":"EXTERN_ID","strategy":"last_added"},{"segment":"email","destination":"EMAIL","strategy":"all"},{"segment":"ios.idfa","destination":"MADID","strategy":"all"}]}`)
	var want [][]string
	for _, e := range emails {
		for _, m := range madids {
			want = append(want, []string{longID, e, m})
		}
	}
	for _, limit := range []int{DefaultOptions().MaxRecordBytes, 1 << 20, 64 << 10, 16 << 10} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			opt := DefaultOptions()
			opt.MaxRecordBytes = limit
			res := Process(ev, []Connection{c}, t0, opt)
			if res.DeadLetters != nil || len(res.Outputs) < 2 {
				t.Fatalf("%d outputs, dead letters %+v", len(res.Outputs), res.DeadLetters)
			}
			got := facebookRows(t, res.Outputs, []string{"EXTERN_ID", "EMAIL", "MADID"}, limit)
			if !slices.EqualFunc(got, want, slices.Equal) {
				t.Fatalf("%d rows in %d records differ from the product (%d rows)", len(got), len(res.Outputs), len(want))
			}
			sum := 0
			for _, o := range res.Outputs {
				sum += len(o.Value)
			}
			if res.Bytes != sum {
				t.Errorf("Result.Bytes %d, values sum to %d", res.Bytes, sum)
			}
			// Records are filled: all but the last hold as many rows as fit.
			perRecord := len(got[0][0]) + len(got[0][1]) + len(got[0][2]) + 10
			if first := len(res.Outputs[0].Key) + len(res.Outputs[0].Value); limit-first >= perRecord {
				t.Errorf("the first record (%d bytes) had room for another row under %d", first, limit)
			}
			t.Logf("%d records, %d bytes", len(res.Outputs), res.Bytes)
		})
	}
	// The same event under FacebookMaxRows: the rows limit still applies
	// where it binds first.
	opt := DefaultOptions()
	opt.FacebookMaxRows = 70
	res := Process(ev, []Connection{c}, t0, opt)
	if len(res.Outputs) != (10000+69)/70 {
		t.Fatalf("%d records, want %d", len(res.Outputs), (10000+69)/70)
	}
	if got := facebookRows(t, res.Outputs, []string{"EXTERN_ID", "EMAIL", "MADID"}, opt.MaxRecordBytes); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatal("rows differ from the product")
	}
}

// TestProcessBounds covers each bound on each record shape: which code a
// destination gets, and that the audience's other destinations are served.
func TestProcessBounds(t *testing.T) {
	emails := func(n, size int) []ExternalID {
		var ids []ExternalID
		for i := range n {
			local := fmt.Sprintf("e%d.", i) + strings.Repeat("a", max(0, size-len(fmt.Sprintf("e%d.", i))-12))
			ids = append(ids, ext("email", local+"@example.com", time.Duration(i)*time.Second))
		}
		return ids
	}
	const (
		fbEmail  = `{"destination_type":"facebook_custom_audiences","external_audience_id":"1","setup":"customized","identifiers":[{"segment":"email","destination":"EMAIL","strategy":"all"}]}`
		fbExtern = `{"destination_type":"facebook_custom_audiences","external_audience_id":"1","setup":"customized","identifiers":[{"segment":"user_id","destination":"EXTERN_ID","strategy":"all"}]}`
		google   = `{"destination_type":"google_ads_remarketing_lists","external_audience_id":"1","setup":"customized","identifiers":[{"segment":"user_id","destination":"third_party_user_id","strategy":"all"}],"settings":{"upload_key_type":"CRM_ID"}}`
		webhook  = `{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"user_id","destination":"userId","strategy":"all"}]}`
		iterable = `{"destination_type":"iterable","setup":"default"}`
	)
	userIDs := func(n, size int) []ExternalID {
		var ids []ExternalID
		for i := range n {
			ids = append(ids, ext("user_id", fmt.Sprintf("uid%0*d", size-3, i), time.Duration(i)*time.Second))
		}
		return ids
	}
	opts := func(f func(*Options)) Options {
		o := DefaultOptions()
		f(&o)
		return o
	}
	tests := []struct {
		name    string
		ids     []ExternalID
		segment string // segment_id, the records' key
		configs []string
		opt     Options
		// want is, per connection, the dead-letter code ("" when served).
		want []Code
		// says is what the first dead letter's message must hold.
		says string
	}{
		{"every shape fits", append(userIDs(3, 10), emails(3, 30)...), "use_1",
			[]string{fbEmail, google, webhook, iterable}, DefaultOptions(), []Code{"", "", "", ""}, ""},
		{"google record above the record limit", append(userIDs(50, 100), emails(3, 30)...), "use_1",
			[]string{google, fbEmail}, opts(func(o *Options) { o.MaxRecordBytes = 4096 }),
			[]Code{CodeOutputTooLarge, ""}, "above the record limit 4096"},
		{"a hostile segment_id counts in the record", userIDs(1, 10), strings.Repeat("s", 5000),
			[]string{google, webhook}, opts(func(o *Options) { o.MaxRecordBytes = 4096 }),
			[]Code{CodeOutputTooLarge, CodeOutputTooLarge}, "with its key"},
		{"one segment message above the record limit", userIDs(2, 3600), "use_1",
			[]string{webhook}, opts(func(o *Options) { o.MaxRecordBytes = 4096 }),
			[]Code{CodeOutputTooLarge}, "above the record limit"},
		{"a Facebook row that fits in no record", userIDs(2, 3000), "use_1",
			[]string{fbExtern, google}, opts(func(o *Options) { o.MaxRecordBytes = 2048 }),
			[]Code{CodeOutputTooLarge, CodeOutputTooLarge}, "one Facebook row"},
		{"a destination's bytes above max_output_bytes", userIDs(100, 100), "use_1",
			[]string{webhook, google}, opts(func(o *Options) { o.MaxOutputBytes = 50000 }),
			[]Code{CodeFanoutLimit, ""}, "above max_output_bytes 50000"},
		{"Facebook bytes above max_output_bytes before walking the rows", emails(1000, 40), "use_1",
			[]string{fbEmail}, opts(func(o *Options) { o.MaxOutputBytes = 10000 }),
			[]Code{CodeFanoutLimit}, "at least"},
		{"Facebook rows above max_facebook_rows", emails(11, 20), "use_1",
			[]string{fbEmail, iterable}, opts(func(o *Options) { o.MaxFacebookRows = 10 }),
			[]Code{CodeFanoutLimit, ""}, "11 Facebook rows, above max_facebook_rows 10"},
		{"Facebook records after splitting above max_combinations", emails(200, 40), "use_1",
			[]string{fbEmail}, opts(func(o *Options) { o.MaxRecordBytes = 2048; o.MaxCombinations = 3 }),
			[]Code{CodeFanoutLimit}, "above max_combinations 3"},
		{"the event's bytes: a later smaller destination still fits", userIDs(40, 100), "use_1",
			[]string{webhook, webhook, google}, opts(func(o *Options) { o.MaxEventOutputBytes = 40000 }),
			[]Code{"", CodeFanoutLimit, ""}, "above max_event_output_bytes 40000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conns []Connection
			for i, raw := range tt.configs {
				conns = append(conns, conn(t, fmt.Sprintf("dest_%d", i), raw))
			}
			ev, err := Decode(eventJSON(tt.segment, tt.ids), t0, DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			res := Process(ev, conns, t0, tt.opt)
			checkBounds(t, ev, res, tt.opt)
			got := make([]Code, len(conns))
			for _, d := range res.DeadLetters {
				i, _ := strconv.Atoi(strings.TrimPrefix(d.DestinationID, "dest_"))
				got[i] = d.Code
				if !strings.HasPrefix(d.Message, "destination "+d.DestinationID+": ") {
					t.Errorf("message %q does not start with the destination", d.Message)
				}
				if strings.Contains(d.Message, "@") || strings.Contains(d.Message, "uid") || strings.Contains(d.Message, "sss") {
					t.Errorf("message %q holds an identifier value", d.Message)
				}
			}
			served := map[string]bool{}
			for _, o := range res.Outputs {
				served[o.DestinationID] = true
			}
			for i, code := range got {
				if served[fmt.Sprintf("dest_%d", i)] == (code != "") {
					t.Errorf("connection %d: served %v with dead letter %q", i, served[fmt.Sprintf("dest_%d", i)], code)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("codes %v, want %v (%+v)", got, tt.want, res.DeadLetters)
			}
			if tt.says != "" && !strings.Contains(res.DeadLetters[0].Message, tt.says) {
				t.Errorf("message %q does not say %q", res.DeadLetters[0].Message, tt.says)
			}
		})
	}
}

// checkBounds checks the invariants of every Result: records within the
// record limit, each destination within max_output_bytes, the event
// within max_event_output_bytes, Result.Bytes the sum of the values, every
// value valid JSON, every dead letter with a known code.
func checkBounds(t testing.TB, ev *Event, res Result, opt Options) {
	t.Helper()
	perDest := map[string]int{}
	total := 0
	for _, o := range res.Outputs {
		if size := len(o.Key) + len(o.Value); size > opt.MaxRecordBytes {
			t.Fatalf("%s: record of %d bytes above MaxRecordBytes %d", o.MessageID, size, opt.MaxRecordBytes)
		}
		if !json.Valid(o.Value) {
			t.Fatalf("%s: invalid JSON output: %q", o.MessageID, o.Value)
		}
		base := ev.MessageID
		if ev.ResyncID != "" {
			base += ":resync:" + ev.ResyncID
		}
		if o.Key != ev.SegmentID || !strings.HasPrefix(o.MessageID, base+":"+o.DestinationID+":") {
			t.Fatalf("output key %q id %q", o.Key, o.MessageID)
		}
		perDest[o.DestinationID] += len(o.Value)
		total += len(o.Value)
	}
	for d, n := range perDest {
		if n > opt.MaxOutputBytes {
			t.Fatalf("%s: %d bytes above MaxOutputBytes %d", d, n, opt.MaxOutputBytes)
		}
	}
	if total > opt.MaxEventOutputBytes {
		t.Fatalf("%d bytes above MaxEventOutputBytes %d", total, opt.MaxEventOutputBytes)
	}
	if res.Bytes != total {
		t.Fatalf("Result.Bytes %d, values sum to %d", res.Bytes, total)
	}
	for _, d := range res.DeadLetters {
		if !slices.Contains(Codes, d.Code) || d.Code == CodeDestinationRefused || d.Message == "" {
			t.Fatalf("dead letter %+v", d)
		}
	}
}

// TestProcessUnusableConnections: a stored connection or version that
// cannot be used gets an invalid_config dead letter naming the destination
// and the version, never an identifier value; the audience's other
// connections are served; and the event is not a no_connections skip.
func TestProcessUnusableConnections(t *testing.T) {
	good := func() *Config {
		c, err := ParseConfig([]byte(`{"destination_type":"webhook","setup":"customized","identifiers":[{"segment":"email","destination":"email","strategy":"all"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	edit := func(f func(*Config)) *Config {
		c := good()
		f(c)
		return c
	}
	version := func(cfg *Config) []Version {
		return []Version{{Version: 7, EffectiveAt: t0.Add(-time.Hour), Config: cfg}}
	}
	tests := []struct {
		name string
		conn Connection
		says string
	}{
		{"connection invalid", Connection{Invalid: "record cannot be decoded: unexpected end of JSON input", Versions: version(good())}, "stored connection cannot be used: record cannot be decoded"},
		{"connection invalid without versions", Connection{Invalid: "not a connection record"}, "not a connection record"},
		{"version invalid", Connection{Versions: []Version{{Version: 7, Config: good(), Invalid: "configuration of version 7 cannot be used: unknown destination type"}}},
			"version 7: configuration of version 7 cannot be used: unknown destination type"},
		{"no configuration", Connection{Versions: version(nil)}, "version 7: it holds no configuration"},
		{"unknown destination type", Connection{Versions: version(edit(func(c *Config) { c.DestinationType = "tiktok_audiences" }))}, `version 7: its configuration cannot be used: destination_type: unknown destination type "tiktok_audiences"`},
		{"empty destination type", Connection{Versions: version(edit(func(c *Config) { c.DestinationType = "" }))}, "destination_type"},
		{"unknown setup", Connection{Versions: version(edit(func(c *Config) { c.Setup = "custom" }))}, "setup:"},
		{"unknown strategy", Connection{Versions: version(edit(func(c *Config) { c.Identifiers[0].Strategy = "newest" }))}, "identifiers[0].strategy"},
		{"customized without identifiers", Connection{Versions: version(edit(func(c *Config) { c.Identifiers = nil }))}, "identifiers:"},
		{"event type sending nothing", Connection{Versions: version(edit(func(c *Config) { c.Settings.SendTrack = false }))}, "settings.send_track"},
		{"facebook key outside the list", Connection{Versions: version(edit(func(c *Config) {
			c.DestinationType, c.ExternalAudienceID, c.Identifiers[0].Destination = FacebookCustomAudiences, "1", "e-mail"
		}))}, "identifiers[0].destination"},
		{"google key outside the upload key type", Connection{Versions: version(edit(func(c *Config) {
			c.DestinationType, c.ExternalAudienceID, c.Settings.UploadKeyType, c.Identifiers[0].Destination = GoogleAdsRemarketingLists, "1", UploadCRMID, "hashed_email"
		}))}, "identifiers[0].destination"},
		{"google unknown upload key type", Connection{Versions: version(edit(func(c *Config) {
			c.DestinationType, c.ExternalAudienceID, c.Setup, c.Identifiers, c.Settings.UploadKeyType = GoogleAdsRemarketingLists, "1", SetupDefault, nil, "EMAIL_ONLY"
		}))}, "settings.upload_key_type"},
	}
	ev := &Event{MessageID: "m", SegmentID: "use_1", Action: ActionEntered, Timestamp: t0, TimestampRaw: "t",
		ExternalIDs: []ExternalID{ext("email", "jane@example.com", 0)}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := tt.conn
			bad.DestinationID = "bad_1"
			conns := []Connection{{DestinationID: "before", Versions: version(good())}, bad, {DestinationID: "after", Versions: version(good())}}
			res := Process(ev, conns, t0, DefaultOptions())
			if len(res.DeadLetters) != 1 {
				t.Fatalf("dead letters %+v", res.DeadLetters)
			}
			d := res.DeadLetters[0]
			if d.Code != CodeInvalidConfig || d.DestinationID != "bad_1" || !strings.HasPrefix(d.Message, "destination bad_1: ") {
				t.Errorf("dead letter %+v", d)
			}
			if !strings.Contains(d.Message, tt.says) {
				t.Errorf("message %q does not say %q", d.Message, tt.says)
			}
			if strings.Contains(d.Message, "jane") {
				t.Errorf("message %q holds an identifier value", d.Message)
			}
			if len(res.Outputs) != 2 || res.Outputs[0].DestinationID != "before" || res.Outputs[1].DestinationID != "after" {
				t.Errorf("outputs %d", len(res.Outputs))
			}
			if res.NoConnections || res.Unmatched != nil || res.Invalid != nil {
				t.Errorf("no connections %v, unmatched %v, invalid %v", res.NoConnections, res.Unmatched, res.Invalid)
			}
			// Alone, the unusable connection is still a served connection
			// that failed, not "no connections".
			res = Process(ev, []Connection{bad}, t0, DefaultOptions())
			if res.NoConnections || len(res.DeadLetters) != 1 || res.Outputs != nil {
				t.Errorf("alone: %+v", res)
			}
		})
	}
	// A tombstone stays a deletion even when marked invalid, and a
	// connection without versions is no connection.
	res := Process(ev, []Connection{
		{DestinationID: "gone", Versions: []Version{{Version: 2, Deleted: true, Invalid: "x"}}},
		{DestinationID: "empty"},
	}, t0, DefaultOptions())
	if !res.NoConnections || res.DeadLetters != nil {
		t.Errorf("tombstone: %+v", res)
	}
}

func TestOptionsCheckBounds(t *testing.T) {
	tests := []struct {
		name string
		set  func(*Options)
		says string
	}{
		{"record bytes zero", func(o *Options) { o.MaxRecordBytes = 0 }, "kafka.producer_batch_max_bytes"},
		{"record bytes below an envelope", func(o *Options) { o.MaxRecordBytes = MinRecordBytes - 1 }, "kafka.producer_batch_max_bytes"},
		{"output bytes", func(o *Options) { o.MaxOutputBytes = 0 }, "processing.max_output_bytes"},
		{"event output bytes", func(o *Options) { o.MaxEventOutputBytes = -1 }, "processing.max_event_output_bytes"},
		{"facebook rows", func(o *Options) { o.MaxFacebookRows = 0 }, "processing.max_facebook_rows"},
		{"only the old fields set", func(o *Options) {
			*o = Options{MaxCombinations: 1, FacebookMaxRows: 10000, PhoneRegion: "US"}
		}, "kafka.producer_batch_max_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			tt.set(&o)
			err := o.Check()
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Check() = %v, want an error naming %s", err, tt.says)
			}
		})
	}
	o := DefaultOptions()
	o.MaxRecordBytes = MinRecordBytes
	if err := o.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestSizeHelpers checks the planning arithmetic against what jsonBuf and
// strconv write.
func TestSizeHelpers(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\`, "nl\n\r\t\x01\x1f\x7f", "é日本", "\u2028\u2029", "bad\xff\xfe", "\xe2\x80", "a\xe2\x80\xa8b", strings.Repeat("z", 100)} {
		if got, want := quotedLen(s), len(jsonBuf(nil).str(s)); got != want {
			t.Errorf("quotedLen(%q) = %d, want %d", s, got, want)
		}
	}
	for _, v := range []int64{0, 1, 9, 10, -1, -10, 1234567, math.MaxInt64, math.MinInt64} {
		if got, want := intLen(v), len(strconv.FormatInt(v, 10)); got != want {
			t.Errorf("intLen(%d) = %d, want %d", v, got, want)
		}
	}
	want := 0
	for n := range 20000 {
		if got := digitsSum(n); got != want {
			t.Fatalf("digitsSum(%d) = %d, want %d", n, got, want)
		}
		want += decimalLen(n)
	}
	if digitsSum(math.MaxInt) != tooMany && digitsSum(math.MaxInt) <= 0 {
		t.Error("digitsSum overflows")
	}
	if addSat(tooMany, 1) != tooMany || addSat(sizeBound, 1) != tooMany || mulSat(tooMany, 0) != 0 || mulSat(1<<40, 1<<40) != tooMany {
		t.Error("saturating arithmetic")
	}
}
