package admin

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/idsync/idsync/idsync"
)

// The calls the web console makes besides the connection endpoints: who
// am I, the catalog's identifier types, and preview's explanation.

func TestWhoami(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		secret, name string
		scope        Scope
	}{{writeSecret, "ops", ScopeWrite}, {readSecret, "dashboard", ScopeRead}} {
		var got whoamiView
		expect(t, h.do("GET", "/v1/whoami", tc.secret, ""), http.StatusOK, &got)
		if got.Name != tc.name || got.Scope != tc.scope || got.ActivationDelaySeconds != 300 || !got.ServerTime.Equal(h.clock.Now()) {
			t.Errorf("whoami with %s's token: %+v", tc.name, got)
		}
	}
	expectError(t, h.do("GET", "/v1/whoami", "nope", ""), http.StatusUnauthorized)
	expectError(t, h.do("POST", "/v1/whoami", writeSecret, "{}"), http.StatusMethodNotAllowed)
}

func TestCatalogIdentifierTypes(t *testing.T) {
	h := newHarness(t)
	var tv typesView
	expect(t, h.do("GET", "/v1/destination-types", readSecret, ""), http.StatusOK, &tv)
	if !slices.Equal(tv.IdentifierTypes, idsync.DefaultIdentifierTypes) || tv.MaxMappings != idsync.MaxMappings {
		t.Errorf("identifier types %v, max mappings %d", tv.IdentifierTypes, tv.MaxMappings)
	}
	for _, m := range tv.MobileAdIDTypes {
		if !idsync.IsMobileAdID(m) {
			t.Errorf("%s listed as a mobile ad id type", m)
		}
	}
}

func TestPreviewExplains(t *testing.T) {
	h := newHarness(t)
	body := `{"destination_id":"fb","connection":{"destination_type":"facebook_custom_audiences","external_audience_id":"1",
	  "setup":"customized","identifiers":[{"segment":"email","destination":"EMAIL","strategy":"last_added"},
	  {"segment":"phone","destination":"PHONE","strategy":"all"}]},
	 "event":{"message_id":"m1","timestamp":"2026-06-01T11:00:00Z","space_id":"spa_1","audience_id":"aud_1","action":"entered",
	  "profile":{"segment_id":"use_1"},"external_ids":[
	   {"type":"email","id":"new@example.com","created_at":"2025-02-01T00:00:00Z"},
	   {"type":"email","id":"old@example.com","created_at":"2025-01-01T00:00:00Z"},
	   {"type":"phone","id":"not a phone","created_at":"2025-01-01T00:00:00Z"}]}}`
	var pv previewView
	expect(t, h.do("POST", "/v1/preview", readSecret, body), http.StatusOK, &pv)
	if pv.Explain == nil || len(pv.Explain.Mappings) != 2 {
		t.Fatalf("explain: %+v", pv.Explain)
	}
	email := pv.Explain.Mappings[0]
	if email.Status != idsync.MappingUsed || len(email.Candidates) != 2 ||
		email.Candidates[0].Index != 1 || email.Candidates[0].Outcome != idsync.CandidateNotPicked ||
		email.Candidates[1].Index != 0 || email.Candidates[1].Outcome != idsync.CandidatePicked {
		t.Errorf("email mapping: %+v", email)
	}
	phone := pv.Explain.Mappings[1]
	if phone.Status != idsync.MappingNoIdentifiers || len(phone.Candidates) != 1 || phone.Candidates[0].Outcome != idsync.CandidateInvalid {
		t.Errorf("phone mapping: %+v", phone)
	}
	if pv.InvalidIdentifiers != 1 {
		t.Errorf("invalid identifiers %d", pv.InvalidIdentifiers)
	}

	// An event that cannot be decoded has no explanation.
	bad := `{"connection":{"destination_type":"facebook_custom_audiences","external_audience_id":"1"},"event":{"message_id":1}}`
	pv = previewView{}
	expect(t, h.do("POST", "/v1/preview", readSecret, bad), http.StatusOK, &pv)
	if pv.DLQ == nil || pv.Explain != nil {
		t.Errorf("undecodable event: dlq %+v, explain %+v", pv.DLQ, pv.Explain)
	}
}

// TestIfNoneMatch: the console creates a connection with If-None-Match: *,
// so that it never overwrites one someone else created meanwhile.
func TestIfNoneMatch(t *testing.T) {
	h := newHarness(t)
	path := "/v1/spaces/spa_1/audiences/aud_1/connections/hook"
	body := `{"destination_type":"webhook"}`
	expect(t, h.do("PUT", path, writeSecret, body, "If-None-Match", "*"), http.StatusCreated, nil)
	expectError(t, h.do("PUT", path, writeSecret, body, "If-None-Match", "*"), http.StatusPreconditionFailed)
	for _, hdr := range [][]string{{"If-None-Match", `"1"`}, {"If-None-Match", "*", "If-Match", "1"}} {
		e := expectError(t, h.do("PUT", path, writeSecret, body, hdr...), http.StatusBadRequest)
		if !hasField(e.Problems, "If-None-Match") {
			t.Errorf("%v: problems %+v", hdr, e.Problems)
		}
	}
	expect(t, h.do("DELETE", path, writeSecret, "", "If-Match", "1"), http.StatusOK, nil)
	expectError(t, h.do("PUT", path, writeSecret, body, "If-None-Match", "*"), http.StatusPreconditionFailed)
	h.clock.Advance(idsync.DefaultActivation().Delay + time.Second)
	expect(t, h.do("PUT", path, writeSecret, body, "If-None-Match", "*"), http.StatusCreated, nil)
	if n := h.st.editCount(); n != 3 {
		t.Errorf("%d edits stored, want 3 (create, delete, create)", n)
	}
}
