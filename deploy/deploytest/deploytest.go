// Package deploytest checks the deployment files under deploy/ and the root
// docker-compose.yml without the systems that would run them: promtool for
// the Prometheus rules and configuration, kustomize (as a Go library) for
// the Kubernetes manifests, YAML structure and config.Load for the compose
// file and every idsync configuration they pass.
//
// Its exported helpers read the metric names the Grafana dashboard and the
// alert rules use, so that the end-to-end tests (e2e/ops_test.go) can check
// that a running idsync exports every one of them. It has no other use and
// no runtime role.
package deploytest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Root is the repository root, found from this file's location.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Paths of the files checked, relative to Root.
const (
	DashboardPath = "deploy/grafana/dashboards/idsync.json"
	RulesPath     = "deploy/prometheus/rules/idsync.yml"
	RuleTestsPath = "deploy/prometheus/tests/idsync_test.yml"
	PromConfig    = "deploy/prometheus/prometheus.yml"
	OperationsDoc = "docs/operations.md"
)

// Panel is one Grafana panel with its queries.
type Panel struct {
	Title string
	Type  string
	Exprs []string
	// Datasource is the uid of the panel's data source ("" for none), and
	// TargetDatasources that of each query, in the order of Exprs.
	Datasource        string
	TargetDatasources []string
}

// Variable is one template variable of the dashboard.
type Variable struct {
	Name       string
	Type       string
	Query      string // the query of a query variable, the plugin type of a datasource one
	Datasource string // the uid of a query variable's data source
	AllValue   string
	IncludeAll bool
}

// DashboardVariables reads the template variables of the dashboard JSON at
// path.
func DashboardVariables(path string) ([]Variable, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Templating struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Query      json.RawMessage `json:"query"`
				Datasource *struct {
					UID string `json:"uid"`
				} `json:"datasource"`
				AllValue   string `json:"allValue"`
				IncludeAll bool   `json:"includeAll"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", path, err)
	}
	var out []Variable
	for _, v := range d.Templating.List {
		x := Variable{Name: v.Name, Type: v.Type, AllValue: v.AllValue, IncludeAll: v.IncludeAll}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			_ = json.Unmarshal(v.Query, &x.Query) // a plain string
		} else {
			x.Query = q.Query
		}
		if v.Datasource != nil {
			x.Datasource = v.Datasource.UID
		}
		out = append(out, x)
	}
	return out, nil
}

// Dashboard reads the dashboard JSON at path and returns its panels (rows
// included, without queries).
func Dashboard(path string) ([]Panel, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	type datasource struct {
		UID string `json:"uid"`
	}
	var d struct {
		Panels []struct {
			Title      string      `json:"title"`
			Type       string      `json:"type"`
			Datasource *datasource `json:"datasource"`
			Targets    []struct {
				Expr       string      `json:"expr"`
				Datasource *datasource `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", path, err)
	}
	uid := func(ds *datasource) string {
		if ds == nil {
			return ""
		}
		return ds.UID
	}
	out := make([]Panel, 0, len(d.Panels))
	for _, p := range d.Panels {
		q := Panel{Title: p.Title, Type: p.Type, Datasource: uid(p.Datasource)}
		for _, t := range p.Targets {
			q.Exprs = append(q.Exprs, t.Expr)
			q.TargetDatasources = append(q.TargetDatasources, uid(t.Datasource))
		}
		out = append(out, q)
	}
	return out, nil
}

// Rule is one alerting rule of a Prometheus rules file.
type Rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// Rules reads the alerting rules of the rules file at path.
func Rules(path string) ([]Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Groups []struct {
			Rules []Rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("rules %s: %w", path, err)
	}
	var out []Rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

var (
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// Metric names idsync's files query: its own, the franz-go client's (the
	// same idsync_ namespace), Go runtime and process collectors, and
	// Prometheus's up.
	metricName = regexp.MustCompile(`\b(?:idsync|go|process)_[a-zA-Z0-9_:]+\b|\bup\b`)
)

// MetricNames returns the sorted metric names the PromQL expressions refer
// to, as exported in the text exposition format (a histogram's _bucket,
// _sum and _count stay as written). String literals (label values) and
// Grafana variables are not names.
func MetricNames(exprs ...string) []string {
	set := map[string]bool{}
	for _, e := range exprs {
		e = quoted.ReplaceAllString(e, `""`)
		e = strings.ReplaceAll(e, "$__rate_interval", "")
		for _, m := range metricName.FindAllString(e, -1) {
			set[m] = true
		}
	}
	out := make([]string, 0, len(set))
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Selector is one series selector of a PromQL expression: a metric name
// and the text between its braces ("" when it has none).
type Selector struct {
	Metric   string
	Matchers string
}

// Selectors returns the series selectors of expr, in order, for metric
// names as MetricNames finds them.
func Selectors(expr string) []Selector {
	// Mask quoted strings, keeping offsets, so braces and names inside
	// them are not taken for syntax.
	masked := quoted.ReplaceAllStringFunc(expr, func(q string) string {
		return `"` + strings.Repeat(" ", len(q)-2) + `"`
	})
	var out []Selector
	for _, loc := range metricName.FindAllStringIndex(masked, -1) {
		sel := Selector{Metric: expr[loc[0]:loc[1]]}
		if end := loc[1]; end < len(masked) && masked[end] == '{' {
			if close := strings.IndexByte(masked[end:], '}'); close > 0 {
				sel.Matchers = expr[end+1 : end+close]
			}
		}
		out = append(out, sel)
	}
	return out
}

// UsedMetrics returns every metric name the dashboard and the alert rules
// under root use.
func UsedMetrics(root string) ([]string, error) {
	panels, err := Dashboard(filepath.Join(root, DashboardPath))
	if err != nil {
		return nil, err
	}
	rules, err := Rules(filepath.Join(root, RulesPath))
	if err != nil {
		return nil, err
	}
	var exprs []string
	for _, p := range panels {
		exprs = append(exprs, p.Exprs...)
	}
	for _, r := range rules {
		exprs = append(exprs, r.Expr)
	}
	return MetricNames(exprs...), nil
}

// DashboardQueries returns the dashboard's expressions with its variables
// replaced by values a plain Prometheus query accepts: every job,
// namespace and instance, and rate windows of window.
func DashboardQueries(root, window string) ([]string, error) {
	panels, err := Dashboard(filepath.Join(root, DashboardPath))
	if err != nil {
		return nil, err
	}
	r := strings.NewReplacer("$__rate_interval", window, "$instance", ".*", "$job", ".*", "$namespace", ".*")
	var out []string
	for _, p := range panels {
		for _, e := range p.Exprs {
			out = append(out, r.Replace(e))
		}
	}
	return out, nil
}

// Files generated from RulesPath by `go generate ./deploy/deploytest`
// (genrules), relative to Root: the Prometheus Operator's PrometheusRule of
// the kustomize component, and the copy the Helm chart's PrometheusRule
// template embeds (a chart reads no file outside its directory).
const (
	PrometheusRulePath = "deploy/kubernetes/components/monitoring/prometheusrule.yaml"
	HelmRulesPath      = "deploy/helm/idsync/files/prometheus-rules.yml"
)

//go:generate go run ./genrules

// PrometheusRule returns the PrometheusRule manifest carrying the rule file
// rules: its groups, comments included, become the object's spec.
func PrometheusRule(rules []byte) []byte {
	var b strings.Builder
	b.WriteString("# Generated by `go generate ./deploy/deploytest` from " + RulesPath + ":\n")
	b.WriteString("# edit the rules there. TestPrometheusRuleInSync checks this file.\n")
	b.WriteString("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: idsync\nspec:\n")
	lines := strings.Split(strings.TrimRight(string(rules), "\n"), "\n")
	// The file's leading comment describes the file, not the object.
	for len(lines) > 0 && (strings.HasPrefix(lines[0], "#") || lines[0] == "") {
		lines = lines[1:]
	}
	for _, l := range lines {
		if l != "" {
			b.WriteString("  " + l)
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}
