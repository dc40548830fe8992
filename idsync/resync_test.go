package idsync

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestValidResyncID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"rs_0123abcd", true},
		{"a", true},
		{"with-dash_and_9", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"Upper", false},
		{"sp ace", false},
		{`quo"te`, false},
		{"colon:x", false},
		{"é", false},
	} {
		if got := ValidResyncID(tc.id); got != tc.ok {
			t.Errorf("ValidResyncID(%q) = %v, want %v", tc.id, got, tc.ok)
		}
	}
}

func TestResyncCheck(t *testing.T) {
	good := Resync{ID: "rs_1", SpaceID: "spa", AudienceID: "aud", DestinationID: "wh_1", StartAt: time.Unix(1, 0), Secret: "0123456789abcdef"}
	if err := good.Check(); err != nil {
		t.Fatalf("good resync: %v", err)
	}
	for field, mutate := range map[string]func(*Resync){
		"id":             func(r *Resync) { r.ID = "BAD ID" },
		"space_id":       func(r *Resync) { r.SpaceID = "" },
		"audience_id":    func(r *Resync) { r.AudienceID = strings.Repeat("a", 300) },
		"destination_id": func(r *Resync) { r.DestinationID = "" },
		"start_at":       func(r *Resync) { r.StartAt = time.Time{} },
		"secret":         func(r *Resync) { r.Secret = "short" },
	} {
		r := good
		mutate(&r)
		if err := r.Check(); err == nil || !strings.HasPrefix(err.Error(), field+":") {
			t.Errorf("%s: Check() = %v, want an error naming %s", field, err, field)
		}
	}
}

// TestResyncRecords: an event re-sent by a resync gives, for every
// destination type, the records of its first delivery with the resync named
// in each message id and envelope, and nothing else changed.
func TestResyncRecords(t *testing.T) {
	conns := benchConnections(t)
	for _, raw := range [][]byte{perEventInput} {
		ev, err := Decode(raw, benchNow, DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		first := Process(ev, conns, benchNow, DefaultOptions())
		re := *ev
		re.ResyncID = "rs_test-9"
		again := Process(&re, conns, benchNow, DefaultOptions())
		if len(first.Outputs) == 0 || len(first.Outputs) != len(again.Outputs) {
			t.Fatalf("%d records first, %d re-sent", len(first.Outputs), len(again.Outputs))
		}
		for i, o := range again.Outputs {
			f := first.Outputs[i]
			if !strings.HasPrefix(o.MessageID, ev.MessageID+":resync:rs_test-9:"+o.DestinationID+":") {
				t.Errorf("message id %q does not name the resync", o.MessageID)
			}
			var env map[string]any
			if err := json.Unmarshal(o.Value, &env); err != nil {
				t.Fatal(err)
			}
			ids, _ := env["idsync"].(map[string]any)
			if ids["resync_id"] != "rs_test-9" || env["source_message_id"] != ev.MessageID {
				t.Errorf("%s: envelope idsync %v, source_message_id %v", o.DestinationType, ids, env["source_message_id"])
			}
			// The same record but for the message id and the resync id.
			want := strings.ReplaceAll(string(f.Value), f.MessageID, o.MessageID)
			want = strings.Replace(want, `"setup":"`+string(envSetup(f.Value))+`"}`, `"setup":"`+string(envSetup(f.Value))+`","resync_id":"rs_test-9"}`, 1)
			if string(o.Value) != want {
				t.Errorf("%s: re-sent record\n%s\nwant\n%s", o.DestinationType, o.Value, want)
			}
		}
	}
}

// envSetup returns the setup in a record's envelope.
func envSetup(v []byte) string {
	var env struct {
		Idsync struct {
			Setup string `json:"setup"`
		} `json:"idsync"`
	}
	_ = json.Unmarshal(v, &env)
	return env.Idsync.Setup
}

// TestResyncReferenceTime: a re-sent event's reference time is the
// resync's start, earlier or later than the event's own times (clamped to
// now), so that every record of a resync has the version in effect then.
func TestResyncReferenceTime(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	start := now.Add(-time.Hour)
	for name, ev := range map[string]Event{
		"event after the start":  {Timestamp: now.Add(-time.Minute)},
		"event before the start": {Timestamp: now.Add(-48 * time.Hour)},
		"sync after the start":   {Timestamp: now.Add(-48 * time.Hour), Sync: &Sync{StartedAt: now.Add(-time.Minute)}},
		"replayed after":         {Timestamp: now.Add(-48 * time.Hour), ReplayedAt: now.Add(-time.Second)},
	} {
		ev.ResyncAt = start
		if got := ev.ReferenceTime(now); !got.Equal(start) {
			t.Errorf("%s: reference time %s, want the resync's start %s", name, got, start)
		}
	}
	future := Event{Timestamp: now, ResyncAt: now.Add(time.Hour)}
	if got := future.ReferenceTime(now); !got.Equal(now) {
		t.Errorf("a start after now: reference time %s, want now", got)
	}
}
