package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/admin"
	"github.com/idsync/idsync/store"
)

// family returns the metric family name of reg, or fails.
func family(t *testing.T, reg prometheus.Gatherer, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// idsync_build_info comes from client_golang's version collector, with the
// build's version (main.version, through Options.Version).
func TestBuildInfo(t *testing.T) {
	mf := family(t, newRegistry("v1.2.3-4-gabcdef"), "idsync_build_info")
	if len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Fatalf("idsync_build_info = %v, want one series of value 1", mf)
	}
	l := labels(mf.GetMetric()[0])
	for k, want := range map[string]string{"version": "v1.2.3-4-gabcdef", "goversion": runtime.Version(), "goos": runtime.GOOS, "goarch": runtime.GOARCH} {
		if l[k] != want {
			t.Errorf("label %s = %q, want %q", k, l[k], want)
		}
	}
	for _, k := range []string{"revision", "branch", "tags"} {
		if _, ok := l[k]; !ok {
			t.Errorf("no label %s in %v", k, l)
		}
	}
}

// The Redis pool metrics are the client's PoolStats at the scrape.
func TestRedisPoolMetrics(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{mr.Addr()}})
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(newRedisPoolCollector(rdb))
	ctx := context.Background()
	for range 10 {
		if err := rdb.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	s := rdb.PoolStats()
	if s.Hits+s.Misses < 10 || s.TotalConns == 0 {
		t.Fatalf("pool stats %+v after 10 commands", s)
	}
	value := func(name string) float64 {
		m := family(t, reg, name).GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	for name, want := range map[string]float64{
		"idsync_redis_pool_hits_total":                 float64(s.Hits),
		"idsync_redis_pool_misses_total":               float64(s.Misses),
		"idsync_redis_pool_timeouts_total":             float64(s.Timeouts),
		"idsync_redis_pool_stale_connections_total":    float64(s.StaleConns),
		"idsync_redis_pool_unusable_connections_total": float64(s.Unusable),
		"idsync_redis_pool_waits_total":                float64(s.WaitCount),
		"idsync_redis_pool_connections":                float64(s.TotalConns),
		"idsync_redis_pool_idle_connections":           float64(s.IdleConns),
		"idsync_redis_pool_pending_requests":           float64(s.PendingRequests),
	} {
		if got := value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := family(t, reg, "idsync_redis_pool_hits_total").GetType(); got != dto.MetricType_COUNTER {
		t.Errorf("hits are a %v, want a counter", got)
	}
}

// The admin listener's requests are counted by route pattern (never the
// path, which holds ids), method and status code, and timed, including a
// console mounted beside the API on the same listener.
func TestAdminRequestMetrics(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	st, err := store.New(rdb, store.Options{Prefix: "idsync:"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	const token = "test-token-0123456789"
	api, err := adminHandler(st, nil, cfg, []admin.Token{{Name: "t", Secret: token, Scope: admin.ScopeWrite}}, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// The API alone, and the API at "/" of a mux with a console at "/ui/".
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("GET /ui/", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "console") }))
	const connections = "/v1/spaces/{space}/audiences/{audience}/connections"
	for _, h := range []struct {
		name    string
		handler http.Handler
	}{{"api", api}, {"api and console", mux}} {
		t.Run(h.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			srv := newHTTPMetrics(reg, "admin").instrument(h.handler)
			reqs := []struct {
				method, path string
				auth         bool
				route, code  string
			}{
				{"GET", "/v1/destination-types", true, "/v1/destination-types", "200"},
				{"GET", "/v1/spaces/space_one/audiences/aud_secret_1/connections", true, connections, "200"},
				{"GET", "/v1/spaces/space_two/audiences/aud_secret_2/connections", true, connections, "200"},
				{"GET", "/v1/spaces/space_two/audiences/aud_secret_2/connections", false, connections, "401"},
				{"DELETE", "/v1/destination-types", true, "/v1/destination-types", "405"},
				{"GET", "/v1/nope/aud_secret_3", true, routeUnmatched, "404"},
				{"BREW", "/v1/destination-types", true, "/v1/destination-types", "405"},
			}
			if h.name == "api and console" {
				reqs = append(reqs, struct {
					method, path string
					auth         bool
					route, code  string
				}{"GET", "/ui/app.js", false, "GET /ui/", "200"})
			}
			for _, rq := range reqs {
				r := httptest.NewRequest(rq.method, rq.path, nil)
				if rq.auth {
					r.Header.Set("Authorization", "Bearer "+token)
				}
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, r)
				if got := strconv.Itoa(rec.Code); got != rq.code {
					t.Fatalf("%s %s = %s, want %s", rq.method, rq.path, got, rq.code)
				}
			}
			want := map[string]float64{}
			for _, rq := range reqs {
				want[rq.route+" "+methodLabel(rq.method)+" "+rq.code]++
			}
			got := map[string]float64{}
			for _, m := range family(t, reg, "idsync_admin_requests_total").GetMetric() {
				l := labels(m)
				got[l["route"]+" "+l["method"]+" "+l["code"]] = m.GetCounter().GetValue()
				for _, v := range l {
					if strings.Contains(v, "secret") || strings.Contains(v, "space_") {
						t.Errorf("a label holds a path's id: %v", l)
					}
				}
			}
			if len(got) != len(want) {
				t.Errorf("series %v, want %v", got, want)
			}
			for k, n := range want {
				if got[k] != n {
					t.Errorf("requests{%s} = %v, want %v", k, got[k], n)
				}
			}
			var observed uint64
			for _, m := range family(t, reg, "idsync_admin_request_duration_seconds").GetMetric() {
				observed += m.GetHistogram().GetSampleCount()
			}
			if observed != uint64(len(reqs)) {
				t.Errorf("%d durations observed, want %d", observed, len(reqs))
			}
		})
	}
}
