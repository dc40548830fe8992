package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/deploy/deploytest"
)

// exportedNames scrapes the instance's /metrics and returns the sample
// names (histogram _bucket/_sum/_count lines each under their own name).
func (in *instance) exportedNames() map[string]bool {
	in.t.Helper()
	resp, err := http.Get("http://" + in.ops + "/metrics")
	if err != nil {
		in.t.Fatalf("scraping /metrics: %v", err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// TestDashboardAndAlertMetricsExported: every metric the Grafana dashboard
// and the alert rules query is exported by a running idsync that has
// processed traffic, so no panel or alert watches a name that does not
// exist. (up is Prometheus's own.)
func TestDashboardAndAlertMetricsExported(t *testing.T) {
	used, err := deploytest.UsedMetrics(deploytest.Root())
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, 3)
	in := s.start("a")
	in.seedDemo()
	s.produce(events(21, 500))
	s.waitCommitted(60 * time.Second)
	exported := in.exportedNames()
	var missing []string
	for _, m := range used {
		if m == "up" {
			continue
		}
		if !exported[m] {
			missing = append(missing, m)
		}
	}
	t.Logf("%d metric names used by %s and %s; %d exported by idsync", len(used), deploytest.DashboardPath, deploytest.RulesPath, len(exported))
	if len(missing) > 0 {
		t.Fatalf("used by the dashboard or the alert rules but not exported: %s", strings.Join(missing, ", "))
	}
}

// prometheus is a Prometheus server (the Debian package's binary) run by
// a test.
type prometheus struct {
	t    *testing.T
	addr string
	cmd  *exec.Cmd
	log  string
}

// startPrometheus runs /usr/bin/prometheus (or the one on PATH) scraping
// target every second and evaluating the repository's alert rules every
// second. deploy/local/install.sh installs it.
func startPrometheus(t *testing.T, target string) *prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if testing.Short() {
			t.Skip("prometheus not installed (deploy/local/install.sh installs it)")
		}
		t.Fatal("prometheus not found on PATH: run deploy/local/install.sh (as root it installs Debian's prometheus package)")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: idsync
    static_configs:
      - targets: [%q]
`, filepath.Join(deploytest.Root(), deploytest.RulesPath), target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &prometheus{t: t, addr: freeAddr(t), log: filepath.Join(dir, "prometheus.log")}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+p.addr, "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("prometheus log (tail):\n%s", tail(b, 30))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("prometheus exited during start:\n%s", tail(b, 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("prometheus not ready within 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// api GETs a Prometheus HTTP API path and decodes its data into v; it
// returns the API's error, if any.
func (p *prometheus) api(path string, v any) error {
	resp, err := http.Get("http://" + p.addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s", path, r.Error)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(r.Data, v)
}

// query returns the series of an instant query.
func (p *prometheus) query(q string) ([]json.RawMessage, error) {
	var d struct {
		Result []json.RawMessage `json:"result"`
	}
	err := p.api("/api/v1/query?query="+url.QueryEscape(q), &d)
	return d.Result, err
}

type alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    time.Time         `json:"activeAt"`
}

// alert returns the named alert's state ("" when inactive).
func (p *prometheus) alert(name string) (alert, error) {
	var d struct {
		Alerts []alert `json:"alerts"`
	}
	if err := p.api("/api/v1/alerts", &d); err != nil {
		return alert{}, err
	}
	for _, a := range d.Alerts {
		if a.Labels["alertname"] == name {
			return a, nil
		}
	}
	return alert{}, nil
}

// TestPrometheusRedisDownAlert: a real Prometheus scrapes a running idsync
// with the repository's alert rules; every dashboard query is valid PromQL
// there and every rule evaluates; when idsync's Redis stops, IdsyncRedisDown
// goes pending and then fires (its `for` is 1m), with its runbook link, and
// resolves once Redis is back.
func TestPrometheusRedisDownAlert(t *testing.T) {
	s := newStack(t, 3)
	r := startRedis(t)
	s.redisAddr = r.addr
	s.rdb = redis.NewClient(&redis.Options{Addr: r.addr})
	t.Cleanup(func() { s.rdb.Close() })
	in := s.start("a")
	in.seedDemo()
	s.produce(events(22, 500))
	s.waitCommitted(60 * time.Second)

	p := startPrometheus(t, in.ops)
	rulesText, err := os.ReadFile(filepath.Join(deploytest.Root(), deploytest.RulesPath))
	if err != nil {
		t.Fatal(err)
	}
	wantRules := strings.Count(string(rulesText), "- alert:")
	// Scraped, with Redis up and nothing firing.
	deadline := time.Now().Add(60 * time.Second)
	for {
		up, err1 := p.query(`up{job="idsync"} == 1`)
		redisUp, err2 := p.query(`idsync_redis_up == 1`)
		if err1 == nil && err2 == nil && len(up) == 1 && len(redisUp) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus does not see idsync up with Redis up (%v, %v)", err1, err2)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if a, err := p.alert("IdsyncRedisDown"); err != nil || a.State != "" {
		t.Fatalf("IdsyncRedisDown %q before Redis stopped (%v)", a.State, err)
	}

	// Every dashboard query parses and runs on this Prometheus; every rule
	// evaluates without error.
	queries, err := deploytest.DashboardQueries(deploytest.Root(), "1m")
	if err != nil {
		t.Fatal(err)
	}
	withData := 0
	for _, q := range queries {
		res, err := p.query(q)
		if err != nil {
			t.Errorf("dashboard query fails on Prometheus: %s: %v", q, err)
		}
		if len(res) > 0 {
			withData++
		}
	}
	t.Logf("%d dashboard queries valid, %d with data after a few seconds of scraping", len(queries), withData)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		if err := p.api("/api/v1/rules", &rules); err != nil {
			t.Fatal(err)
		}
		var bad, unknown []string
		n := 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				n++
				switch r.Health {
				case "ok":
				case "unknown":
					unknown = append(unknown, r.Name)
				default:
					bad = append(bad, r.Name+": "+r.LastError)
				}
			}
		}
		if len(bad) > 0 {
			t.Fatalf("rules failing: %s", strings.Join(bad, "; "))
		}
		if n == wantRules && len(unknown) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rules loaded, not yet evaluated: %v", n, unknown)
		}
		time.Sleep(500 * time.Millisecond)
	}

	stopped := time.Now()
	r.stop()
	var pendingAfter time.Duration
	deadline = stopped.Add(3 * time.Minute)
	for {
		a, err := p.alert("IdsyncRedisDown")
		if err != nil {
			t.Fatal(err)
		}
		if a.State == "pending" && pendingAfter == 0 {
			pendingAfter = time.Since(stopped)
		}
		if a.State == "firing" {
			firingAfter := time.Since(stopped)
			t.Logf("IdsyncRedisDown: pending %.1fs and firing %.1fs after Redis stopped (for: 1m, scrape and evaluation every 1s)", pendingAfter.Seconds(), firingAfter.Seconds())
			want := map[string]string{"alertname": "IdsyncRedisDown", "job": "idsync", "instance": in.ops, "severity": "warning"}
			for k, v := range want {
				if a.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, a.Labels[k], v)
				}
			}
			if !strings.HasSuffix(a.Annotations["runbook_url"], "docs/operations.md#idsyncredisdown") {
				t.Errorf("runbook_url %q", a.Annotations["runbook_url"])
			}
			if firingAfter < time.Minute {
				t.Errorf("fired %s after Redis stopped, before its for: 1m", firingAfter)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("IdsyncRedisDown not firing 3 minutes after Redis stopped (state %q; idsync_redis_up = %v)", a.State, in.metric("idsync_redis_up"))
		}
		time.Sleep(time.Second)
	}

	// Redis back: the alert resolves (and the stack's cleanup can reach
	// Redis again).
	r.restart()
	restarted := time.Now()
	deadline = restarted.Add(90 * time.Second)
	for {
		a, err := p.alert("IdsyncRedisDown")
		if err != nil {
			t.Fatal(err)
		}
		if a.State == "" {
			t.Logf("IdsyncRedisDown resolved %.1fs after Redis restarted", time.Since(restarted).Seconds())
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("IdsyncRedisDown still %s 90s after Redis restarted (idsync_redis_up = %v)", a.State, in.metric("idsync_redis_up"))
		}
		time.Sleep(time.Second)
	}
}
