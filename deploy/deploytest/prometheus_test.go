package deploytest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = Root()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPromtoolCheckRules: the alert rules are valid for Prometheus.
func TestPromtoolCheckRules(t *testing.T) {
	out := run(t, promtool(t), "check", "rules", RulesPath)
	t.Log(strings.TrimSpace(out))
}

// TestPromtoolTestRules: each alert fires on the series it is meant for,
// with its labels and annotations, and stays quiet on the others
// (deploy/prometheus/tests/idsync_test.yml).
func TestPromtoolTestRules(t *testing.T) {
	out := run(t, promtool(t), "test", "rules", RuleTestsPath)
	t.Log(strings.TrimSpace(out))
	rules, err := Rules(filepath.Join(Root(), RulesPath))
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(Root(), RuleTestsPath))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		// A firing case names the alert in exp_labels; a quiet case has
		// exp_alerts: [] under the same alertname.
		if !bytes.Contains(tests, []byte("alertname: "+r.Alert+", ")) {
			t.Errorf("%s: no firing case in %s", r.Alert, RuleTestsPath)
		}
		quiet := regexp.MustCompile(`alertname: ` + r.Alert + `\n\s+exp_alerts: \[\]`)
		if !quiet.Match(tests) {
			t.Errorf("%s: no case where it must not fire in %s", r.Alert, RuleTestsPath)
		}
	}
}

// TestPromtoolCheckConfig: the scrape configuration is valid, with the rule
// files it names resolved to the repository's.
func TestPromtoolCheckConfig(t *testing.T) {
	pt := promtool(t)
	b, err := os.ReadFile(filepath.Join(Root(), PromConfig))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("/etc/prometheus/rules/*.yml")) {
		t.Fatalf("%s: rule_files does not load /etc/prometheus/rules/*.yml, where docker-compose.yml mounts deploy/prometheus/rules", PromConfig)
	}
	local := bytes.ReplaceAll(b, []byte("/etc/prometheus/rules/"), []byte(filepath.Join(Root(), "deploy/prometheus/rules")+"/"))
	path := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(path, local, 0o600); err != nil {
		t.Fatal(err)
	}
	out := run(t, pt, "check", "config", path)
	t.Log(strings.TrimSpace(out))
	if !strings.Contains(out, "SUCCESS: 10 rules found") {
		t.Errorf("promtool check config did not load the 10 alert rules:\n%s", out)
	}
}

// TestAlertsDocumented: every alert has a severity, a summary, a
// description and a runbook_url into docs/operations.md whose anchor is a
// heading there.
func TestAlertsDocumented(t *testing.T) {
	rules, err := Rules(filepath.Join(Root(), RulesPath))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(Root(), OperationsDoc))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "#") {
			anchors[slug(strings.TrimLeft(line, "# "))] = true
		}
	}
	want := []string{"IdsyncInstanceDown", "IdsyncRedisDown", "IdsyncConfigStale", "IdsyncConsumerLagGrowing", "IdsyncDLQRateHigh", "IdsyncNoOutput",
		"IdsyncPartitionWaiting", "IdsyncProduceErrors", "IdsyncDestinationTopicsMissing", "IdsyncTargetsAbsent"}
	got := map[string]bool{}
	const prefix = "https://github.com/idsync/idsync/blob/main/docs/operations.md#"
	for _, r := range rules {
		got[r.Alert] = true
		if r.Labels["severity"] != "warning" && r.Labels["severity"] != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", r.Alert, r.Labels["severity"])
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: summary or description missing", r.Alert)
		}
		u := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(u, prefix)
		if !ok {
			t.Errorf("%s: runbook_url %q does not point into %s", r.Alert, u, OperationsDoc)
			continue
		}
		if !anchors[anchor] {
			t.Errorf("%s: runbook anchor #%s is not a heading of %s", r.Alert, anchor, OperationsDoc)
		}
	}
	for _, a := range want {
		if !got[a] {
			t.Errorf("alert %s missing from %s", a, RulesPath)
		}
	}
}

// slug is GitHub's anchor for a Markdown heading.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

// TestDashboard: the dashboard has the panels on-call needs, each with a
// query, on the provisioned data source, and queries every metric the
// operations contract names.
func TestDashboard(t *testing.T) {
	panels, err := Dashboard(filepath.Join(Root(), DashboardPath))
	if err != nil {
		t.Fatal(err)
	}
	titles := map[string]Panel{}
	var exprs []string
	for _, p := range panels {
		titles[p.Title] = p
		if p.Type != "row" && len(p.Exprs) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		exprs = append(exprs, p.Exprs...)
	}
	for _, want := range []string{
		"Input rate", "Output rate per destination type", "DLQ rate by code", "Skipped, unmatched, invalid identifiers",
		"End-to-end latency", "Processing time per record", "Consumer lag per partition", "Cache hit ratio",
		"Cache entries", "Redis up", "Configuration staleness", "Rebalances", "Produce errors and waiting work",
		"Waiting partitions by reason", "Oldest wait", "Memory", "GC and goroutines",
	} {
		if _, ok := titles[want]; !ok {
			t.Errorf("dashboard has no panel %q", want)
		}
	}
	used := map[string]bool{}
	for _, m := range MetricNames(exprs...) {
		used[m] = true
	}
	for _, m := range []string{
		"idsync_input_records_total", "idsync_output_records_total", "idsync_dlq_records_total",
		"idsync_skipped_total", "idsync_unmatched_total", "idsync_invalid_identifiers_total",
		"idsync_process_duration_seconds_bucket", "idsync_end_to_end_latency_seconds_bucket",
		"idsync_consumer_lag_records", "idsync_config_cache_requests_total", "idsync_config_cache_entries",
		"idsync_redis_up", "idsync_config_staleness_seconds", "idsync_build_info",
		"idsync_rebalances_total", "idsync_produce_errors_total", "idsync_destination_topics_missing",
		"idsync_partitions_waiting", "idsync_oldest_wait_seconds",
		"process_resident_memory_bytes", "go_gc_duration_seconds",
	} {
		if !used[m] {
			t.Errorf("dashboard does not query %s", m)
		}
	}
	for _, q := range []string{"histogram_quantile(0.5, sum by (le) (rate(idsync_end_to_end_latency_seconds_bucket", "histogram_quantile(0.99, sum by (le) (rate(idsync_end_to_end_latency_seconds_bucket"} {
		if !strings.Contains(strings.Join(exprs, "\n"), q) {
			t.Errorf("dashboard lacks %s…", q)
		}
	}

	// The data source Grafana is provisioned with is the default one, which
	// the ${datasource} variable starts on.
	var ds struct {
		Datasources []struct {
			UID       string `yaml:"uid"`
			Type      string `yaml:"type"`
			URL       string `yaml:"url"`
			IsDefault bool   `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(Root(), "deploy/grafana/provisioning/datasources/prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || !ds.Datasources[0].IsDefault {
		t.Errorf("provisioned data sources %+v, want one prometheus, the default", ds.Datasources)
	}
	// The dashboard names no data source of its own: every one is the
	// ${datasource} variable (TestDashboardVariables), of the provisioned
	// type, which Grafana sets to its default data source.
	raw, _ := os.ReadFile(filepath.Join(Root(), DashboardPath))
	for _, uid := range regexp.MustCompile(`"uid": "([^"]*)"`).FindAllStringSubmatch(string(raw), -1) {
		if uid[1] != "${datasource}" && uid[1] != "idsync" {
			t.Errorf("dashboard refers to data source uid %q, not the ${datasource} variable", uid[1])
		}
	}

	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(Root(), "deploy/grafana/provisioning/dashboards/idsync.yml"), &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Options.Path != "/var/lib/grafana/dashboards" {
		t.Errorf("dashboard provider %+v, want one reading /var/lib/grafana/dashboards", prov.Providers)
	}
}

// TestDashboardVariables: the dashboard takes its data source, job and
// namespace as variables, so that it works on any Prometheus and scrape
// configuration, and every panel and query uses them: the ${datasource}
// data source, and each series selector restricted to $job, $namespace and
// $instance.
func TestDashboardVariables(t *testing.T) {
	path := filepath.Join(Root(), DashboardPath)
	vars, err := DashboardVariables(path)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Variable{}
	for _, v := range vars {
		byName[v.Name] = v
	}
	if ds, ok := byName["datasource"]; !ok || ds.Type != "datasource" || ds.Query != "prometheus" {
		t.Errorf("variable datasource = %+v, want a datasource variable of type prometheus", ds)
	}
	for _, name := range []string{"job", "namespace", "instance"} {
		v, ok := byName[name]
		switch {
		case !ok:
			t.Errorf("no variable %s", name)
			continue
		case v.Type != "query" || v.Datasource != "${datasource}":
			t.Errorf("variable %s = %+v, want a query on ${datasource}", name, v)
		case !strings.Contains(v.Query, "label_values(idsync_build_info") || !strings.HasSuffix(v.Query, ", "+name+")"):
			t.Errorf("variable %s query %q, want label_values(idsync_build_info…, %s)", name, v.Query, name)
		}
	}
	// Namespaces and instances may be all of them (and a Prometheus
	// without a namespace label, such as compose's, matches ".*").
	for _, name := range []string{"namespace", "instance"} {
		if v := byName[name]; !v.IncludeAll || v.AllValue != ".*" {
			t.Errorf("variable %s: includeAll %v, allValue %q; want All as .*", name, v.IncludeAll, v.AllValue)
		}
	}
	// Each variable narrows the next: instances of the job and namespace.
	if q := byName["namespace"].Query; !strings.Contains(q, `job=~"$job"`) {
		t.Errorf("namespace query %q ignores $job", q)
	}
	if q := byName["instance"].Query; !strings.Contains(q, `job=~"$job"`) || !strings.Contains(q, `namespace=~"$namespace"`) {
		t.Errorf("instance query %q ignores $job or $namespace", q)
	}

	panels, err := Dashboard(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource != "${datasource}" {
			t.Errorf("panel %q data source %q, want ${datasource}", p.Title, p.Datasource)
		}
		for i, e := range p.Exprs {
			if p.TargetDatasources[i] != "${datasource}" {
				t.Errorf("panel %q query %d data source %q, want ${datasource}", p.Title, i, p.TargetDatasources[i])
			}
			sels := Selectors(e)
			if len(sels) == 0 {
				t.Errorf("panel %q: no series selector in %s", p.Title, e)
			}
			for _, sel := range sels {
				for _, m := range []string{`job=~"$job"`, `namespace=~"$namespace"`, `instance=~"$instance"`} {
					if !strings.Contains(sel.Matchers, m) {
						t.Errorf("panel %q: %s{%s} lacks %s", p.Title, sel.Metric, sel.Matchers, m)
					}
				}
			}
		}
	}
}

// TestSelectors: the parsing TestDashboardVariables relies on.
func TestSelectors(t *testing.T) {
	got := Selectors(`sum(rate(idsync_a_total{job=~"$job",x="}{ idsync_q"}[5m])) / up + histogram_quantile(0.5, sum by (le) (rate(go_c_bucket{instance=~"$instance"}[$__rate_interval])))`)
	want := []Selector{{"idsync_a_total", `job=~"$job",x="}{ idsync_q"`}, {"up", ""}, {"go_c_bucket", `instance=~"$instance"`}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Selectors = %v, want %v", got, want)
	}
}

// TestMetricNames: the extraction the end-to-end test relies on.
func TestMetricNames(t *testing.T) {
	got := MetricNames(
		`histogram_quantile(0.99, sum by (le) (rate(idsync_end_to_end_latency_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`,
		`up{job="idsync"} == 0`,
		`sum(rate(idsync_config_cache_requests_total{result="hit",job="go_x"}[5m])) / go_goroutines`,
	)
	want := "go_goroutines idsync_config_cache_requests_total idsync_end_to_end_latency_seconds_bucket up"
	if strings.Join(got, " ") != want {
		t.Errorf("MetricNames = %v, want %s", got, want)
	}
}

// TestTargetsAbsentWatchesTheScrapeJob: the absent() alert names the job
// prometheus.yml scrapes idsync under, or it would fire (or stay blind)
// for the wrong job.
func TestTargetsAbsentWatchesTheScrapeJob(t *testing.T) {
	var cfg struct {
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(Root(), PromConfig), &cfg)
	rules, err := Rules(filepath.Join(Root(), RulesPath))
	if err != nil {
		t.Fatal(err)
	}
	var expr string
	for _, r := range rules {
		if r.Alert == "IdsyncTargetsAbsent" {
			expr = r.Expr
		}
	}
	if len(cfg.ScrapeConfigs) != 1 {
		t.Fatalf("%s has %d scrape jobs, want the idsync one", PromConfig, len(cfg.ScrapeConfigs))
	}
	if want := `absent(up{job="` + cfg.ScrapeConfigs[0].JobName + `"})`; expr != want {
		t.Errorf("IdsyncTargetsAbsent expr %q, want %q", expr, want)
	}
}
