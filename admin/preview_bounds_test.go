package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/idsync/idsync/idsync"
)

// previewBody returns a preview request for a Facebook connection sending
// all of EXTERN_ID (from user_id), EMAIL, PHONE and MADID (at most three
// mappings use all; the others take last_added) with an event holding that
// many values of each.
func previewBody(t testing.TB, segmentID string, externIDs []string, emails, phones, madids int) string {
	t.Helper()
	type id struct {
		Type      string `json:"type"`
		ID        string `json:"id"`
		CreatedAt string `json:"created_at"`
	}
	var ids []id
	add := func(typ string, n int, value func(int) string) {
		for i := range n {
			ids = append(ids, id{typ, value(i), fmt.Sprintf("2025-01-01T00:%02d:%02dZ", i/60%60, i%60)})
		}
	}
	add("user_id", len(externIDs), func(i int) string { return externIDs[i] })
	add("email", emails, func(i int) string { return fmt.Sprintf("person.%04d@example.com", i) })
	add("phone", phones, func(i int) string { return fmt.Sprintf("+1 650 555 %04d", i) })
	add("ios.idfa", madids, func(i int) string { return fmt.Sprintf("AECE52E7-03EE-455A-B3C4-%012d", i) })
	strategy := func(n int) string {
		if n > 1 {
			return "all"
		}
		return "last_added"
	}
	cfg := fmt.Sprintf(`{"destination_type":"facebook_custom_audiences","external_audience_id":"23851234567890123","settings":{"send_mobile_ids":true},"setup":"customized",
		"identifiers":[{"segment":"user_id","destination":"EXTERN_ID","strategy":%q},{"segment":"email","destination":"EMAIL","strategy":%q},
		{"segment":"phone","destination":"PHONE","strategy":%q},{"segment":"ios.idfa","destination":"MADID","strategy":%q}]}`,
		strategy(len(externIDs)), strategy(emails), strategy(phones), strategy(madids))
	event, err := json.Marshal(map[string]any{
		"message_id": "m1", "timestamp": "2026-06-01T11:00:00Z", "space_id": "spa_1", "audience_id": "aud_1",
		"action": "entered", "profile": map[string]string{"segment_id": segmentID}, "external_ids": ids,
	})
	if err != nil {
		t.Fatal(err)
	}
	return `{"destination_id":"fb_1","connection":` + cfg + `,"event":` + string(event) + `}`
}

type previewResponse struct {
	Records []struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	} `json:"records"`
	DLQ *previewDLQ `json:"dlq"`
}

// postPreview sends body to POST /v1/preview with a read token and returns
// the response, its size and the bytes the request allocated.
func postPreview(t *testing.T, h *harness, body string) (previewResponse, int, uint64) {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	w, req := h.serve("POST", "/v1/preview", readSecret, body, "Content-Type", "application/json")
	runtime.ReadMemStats(&after)
	checkContract(t, h.srv, req, body, w) // after measuring: validating the response allocates too
	size := w.Body.Len()
	var r previewResponse
	expect(t, w, http.StatusOK, &r)
	return r, size, after.TotalAlloc - before.TotalAlloc
}

// TestPreviewIsNotAnAmplifier is issue 12 case 3's preview: a 24 KB request
// (read scope) made a 175 MB response and 1.78 GB of allocation. Whatever
// the pipeline's options, preview answers every request below with a
// bounded response and bounded work.
func TestPreviewIsNotAnAmplifier(t *testing.T) {
	long := strings.Repeat("x", 400)
	tests := []struct {
		name string
		body string
		// code is the dead letter's ("" when records come back), says
		// what its message must hold.
		code idsync.Code
		says string
	}{
		{"a million rows", previewBody(t, "use_1", []string{"u1"}, 100, 100, 100), idsync.CodeFanoutLimit,
			"1000000 Facebook rows, above max_facebook_rows 10000"},
		{"rows within preview's, bytes above", previewBody(t, "use_1", []string{long}, 100, 0, 90), idsync.CodeFanoutLimit,
			"above max_output_bytes 1048576"},
		{"just within preview's bounds", previewBody(t, "use_1", []string{long}, 40, 0, 45), "", ""},
		{"a hostile segment_id within the bounds", previewBody(t, strings.Repeat("s", 200<<10), []string{"u1"}, 2, 0, 2), "", ""},
		{"a hostile segment_id above the record bound", previewBody(t, strings.Repeat("s", 600<<10), []string{"u1"}, 2, 0, 2), idsync.CodeOutputTooLarge,
			"above the record limit 1048576"},
	}
	h := newHarness(t) // the pipeline's defaults: 4 MiB records, 16 MiB per destination
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, size, alloc := postPreview(t, h, tt.body)
			t.Logf("request %d bytes: response %d bytes, %d records, allocated %d bytes", len(tt.body), size, len(r.Records), alloc)
			const maxResponse = 2<<20 + 64<<10
			if size > maxResponse {
				t.Errorf("response of %d bytes, want at most %d", size, maxResponse)
			}
			// The body, its decoding, the records and the response: a few
			// times the bounds, never the product.
			const maxAlloc = 16 << 20
			if alloc > maxAlloc {
				t.Errorf("the request allocated %d bytes, want at most %d", alloc, maxAlloc)
			}
			if tt.code == "" {
				if r.DLQ != nil || len(r.Records) == 0 {
					t.Fatalf("records %d, dlq %+v", len(r.Records), r.DLQ)
				}
				return
			}
			if len(r.Records) != 0 || r.DLQ == nil || r.DLQ.Code != tt.code {
				t.Fatalf("records %d, dlq %+v, want %s", len(r.Records), r.DLQ, tt.code)
			}
			for _, want := range []string{"fb_1", tt.says, "preview's own bounds"} {
				if !strings.Contains(r.DLQ.Error, want) {
					t.Errorf("error %q does not say %q", r.DLQ.Error, want)
				}
			}
			if strings.Contains(r.DLQ.Error, "@") || strings.Contains(r.DLQ.Error, "xxx") || strings.Contains(r.DLQ.Error, "sss") {
				t.Errorf("error %q holds an identifier value", r.DLQ.Error)
			}
		})
	}
	// Beyond preview's 100 records, below the pipeline's 1000.
	var ids []string
	for i := range 150 {
		ids = append(ids, fmt.Sprintf(`{"type":"email","id":"e%d@example.com","created_at":"2025-01-01T00:00:00Z"}`, i))
	}
	body := `{"connection":` + iterableConfig + `,"event":{"message_id":"m1","timestamp":"2026-06-01T11:00:00Z","space_id":"s","audience_id":"a",
		"action":"entered","profile":{"segment_id":"use_1"},"external_ids":[` + strings.Join(ids, ",") + `]}}`
	r, _, _ := postPreview(t, h, body)
	if r.DLQ == nil || r.DLQ.Code != idsync.CodeFanoutLimit || !strings.Contains(r.DLQ.Error, "150 records, above max_combinations 100") {
		t.Fatalf("150 records: dlq %+v", r.DLQ)
	}
}

func TestPreviewOptions(t *testing.T) {
	def := idsync.DefaultOptions()
	small := idsync.Options{MaxCombinations: 5, FacebookMaxRows: 3, PhoneRegion: "GB", MaxRecordBytes: 2048,
		MaxOutputBytes: 4096, MaxEventOutputBytes: 8192, MaxFacebookRows: 7}
	tests := []struct {
		name     string
		pipeline idsync.Options
		want     idsync.Options
	}{
		{"the pipeline's defaults are lowered", def, idsync.Options{MaxCombinations: PreviewMaxCombinations, FacebookMaxRows: def.FacebookMaxRows,
			PhoneRegion: def.PhoneRegion, MaxRecordBytes: PreviewMaxRecordBytes, MaxOutputBytes: PreviewMaxOutputBytes,
			MaxEventOutputBytes: PreviewMaxOutputBytes, MaxFacebookRows: PreviewMaxFacebookRows}},
		{"lower bounds of the pipeline stay", small, small},
		{"zero bounds take preview's", idsync.Options{MaxCombinations: 1, FacebookMaxRows: 10, PhoneRegion: "US"},
			idsync.Options{MaxCombinations: 1, FacebookMaxRows: 10, PhoneRegion: "US", MaxRecordBytes: PreviewMaxRecordBytes,
				MaxOutputBytes: PreviewMaxOutputBytes, MaxEventOutputBytes: PreviewMaxOutputBytes, MaxFacebookRows: PreviewMaxFacebookRows}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PreviewOptions(tt.pipeline)
			if got != tt.want {
				t.Fatalf("PreviewOptions = %+v, want %+v", got, tt.want)
			}
			if err := got.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
