package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idsync/idsync/pipeline"
)

// /readyz names every waiting partition with its offset, reason and age,
// whether or not the instance is ready.
func TestReadyzListsWaits(t *testing.T) {
	since := time.Now().Add(-3 * time.Minute)
	for _, tc := range []struct {
		name   string
		ready  bool
		waits  []pipeline.Wait
		batch  time.Time
		status int
		want   []string
	}{
		{"ready, nothing waits", true, nil, time.Time{}, 200, []string{"ready\n"}},
		{"ready, a partition waits", true,
			[]pipeline.Wait{{Topic: "in", Partition: 3, Offset: 42, Reason: pipeline.WaitConfig, Since: since}}, time.Time{}, 200,
			[]string{"ready\n", "waiting: in/3 at offset 42: config_unavailable for 3m0s (since " + since.UTC().Format(time.RFC3339) + ")"}},
		{"not ready, topic missing and a stuck batch", false,
			[]pipeline.Wait{{Topic: "in", Partition: 0, Offset: 7, Reason: pipeline.WaitTopic, Since: since}}, since, 503,
			[]string{"not ready: no partitions", "waiting: in/0 at offset 7: topic_missing", "waiting: a batch for its acknowledgements"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := opsHandler(prometheus.NewRegistry(), func() (bool, string) { return tc.ready, "no partitions" },
				func() ([]pipeline.Wait, time.Time) { return tc.waits, tc.batch }, false)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d", rec.Code, tc.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("body %q lacks %q", body, w)
				}
			}
			if len(tc.waits) == 0 && strings.Contains(string(body), "waiting") {
				t.Errorf("body %q lists waits when none", body)
			}
		})
	}
}

// ops.pprof serves Go's profiler on the ops listener; off (the default) the
// paths are not found, and the other endpoints are served either way.
func TestOpsPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		h := opsHandler(prometheus.NewRegistry(), func() (bool, string) { return true, "" }, nil, on)
		for _, tc := range []struct {
			path     string
			want     int
			wantBody string
		}{
			{"/debug/pprof/", http.StatusOK, "goroutine"},
			{"/debug/pprof/goroutine?debug=1", http.StatusOK, "goroutine profile:"},
			{"/debug/pprof/heap?debug=1", http.StatusOK, "heap profile:"},
			{"/debug/pprof/cmdline", http.StatusOK, ""},
			{"/healthz", http.StatusOK, "ok"},
		} {
			want := tc.want
			if !on && strings.HasPrefix(tc.path, "/debug/pprof/") {
				want = http.StatusNotFound
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != want {
				t.Errorf("pprof %v: GET %s = %d, want %d", on, tc.path, rec.Code, want)
			}
			if want == http.StatusOK && !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Errorf("pprof %v: GET %s body lacks %q", on, tc.path, tc.wantBody)
			}
		}
	}
}
