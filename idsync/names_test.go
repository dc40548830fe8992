package idsync

import (
	"strings"
	"testing"
)

func TestTopicTemplate(t *testing.T) {
	tests := []struct {
		tmpl    string
		dest    string
		want    string
		wantErr string
	}{
		{"idsync.dest.{destination_id}", "fbca_01", "idsync.dest.fbca_01", ""},
		{"{destination_id}", "a", "a", ""},
		{"out-{destination_id}.v1", "web-hook", "out-web-hook.v1", ""},
		{"idsync.dest", "", "", "exactly once"},
		{"{destination_id}.{destination_id}", "", "", "exactly once"},
		{"idsync dest {destination_id}", "", "", "may only hold"},
		{"idsync/{destination_id}", "", "", "may only hold"},
		{strings.Repeat("x", 190) + "{destination_id}", "", "", "longer than 249"},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			tmpl, err := ParseTopicTemplate(tt.tmpl)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tmpl.Topic(tt.dest); got != tt.want {
				t.Errorf("Topic = %q, want %q", got, tt.want)
			}
			if tmpl.String() != tt.tmpl {
				t.Errorf("String = %q", tmpl.String())
			}
		})
	}
}

// FuzzTopicTemplate: every accepted template gives legal topic names for
// every valid destination id.
func FuzzTopicTemplate(f *testing.F) {
	f.Add("idsync.dest.{destination_id}", "fbca_01")
	f.Add("{destination_id}", "a")
	f.Add("a{destination_id}b{destination_id}", "x")
	f.Fuzz(func(t *testing.T, tmpl, dest string) {
		tt, err := ParseTopicTemplate(tmpl)
		if err != nil || !ValidDestinationID(dest) {
			return
		}
		topic := tt.Topic(dest)
		if len(topic) > 249 || topic == "." || topic == ".." || !topicCharsRE.MatchString(topic) {
			t.Fatalf("illegal topic %q", topic)
		}
	})
}

func TestIDs(t *testing.T) {
	for id, want := range map[string]bool{"fbca_01": true, "a": true, "Fb": false, "_x": false, "": false, strings.Repeat("a", 64): true, strings.Repeat("a", 65): false} {
		if ValidDestinationID(id) != want {
			t.Errorf("ValidDestinationID(%q) != %v", id, want)
		}
	}
	for id, want := range map[string]bool{"spa_w5akhv": true, "aud_2Ab3": true, "a:b": false, "{x}": false, "": false} {
		if ValidEntityID(id) != want {
			t.Errorf("ValidEntityID(%q) != %v", id, want)
		}
	}
}
