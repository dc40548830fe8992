package deploytest

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestPrometheusRuleInSync: the PrometheusRule of components/monitoring and
// the Helm chart's copy of the rules are what `go generate
// ./deploy/deploytest` writes from deploy/prometheus/rules/idsync.yml, and
// the PrometheusRule kustomize builds carries the same groups, rules,
// expressions, durations, labels and annotations as that file, parsed.
func TestPrometheusRuleInSync(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(Root(), RulesPath))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]byte{
		PrometheusRulePath: PrometheusRule(rules),
		HelmRulesPath:      rules,
	} {
		got, err := os.ReadFile(filepath.Join(Root(), path))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not generated from %s: run `go generate ./deploy/deploytest`", path, RulesPath)
		}
	}
	objs := objects(t, build(t, filepath.Join(Root(), "deploy/kubernetes/overlays/production")))
	pr := objs["PrometheusRule"]["idsync"]
	if pr == nil {
		t.Fatal("production overlay: no PrometheusRule idsync")
	}
	checkRuleGroups(t, "kustomize PrometheusRule", pr.get("spec", "groups"))
}

// checkRuleGroups compares groups (a PrometheusRule's spec.groups, parsed)
// with the groups of deploy/prometheus/rules/idsync.yml.
func checkRuleGroups(t *testing.T, what string, groups any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Root(), RulesPath))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Groups []any `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	// Both through YAML again, so that numbers and strings compare alike.
	norm := func(v any) any {
		out, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var back any
		if err := yaml.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		return back
	}
	got, exp := norm(groups), norm(want.Groups)
	if l, _ := exp.([]any); len(l) == 0 {
		t.Fatalf("%s: no groups", RulesPath)
	}
	if !reflect.DeepEqual(got, exp) {
		g, _ := yaml.Marshal(got)
		e, _ := yaml.Marshal(exp)
		t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", what, RulesPath, g, e)
	}
}

// checkServiceMonitor: the ServiceMonitor selects the metrics Service (and
// only it), scrapes its ops port's /metrics, and names the job idsync, the
// job the alert rules and the dashboard select.
func checkServiceMonitor(t *testing.T, objs map[string]map[string]obj) {
	t.Helper()
	sm := objs["ServiceMonitor"]["idsync"]
	if sm == nil {
		t.Fatal("no ServiceMonitor idsync")
	}
	sel := sm.strMap("spec", "selector", "matchLabels")
	var selected []string
	for name, svc := range objs["Service"] {
		if subset(sel, svc.strMap("metadata", "labels")) {
			selected = append(selected, name)
		}
	}
	if len(selected) != 1 || selected[0] != "idsync-metrics" {
		t.Fatalf("ServiceMonitor selects Services %v, want idsync-metrics alone", selected)
	}
	svc := objs["Service"]["idsync-metrics"]
	ports := map[string]bool{}
	for _, p := range svc.list("spec", "ports") {
		ports[p.str("name")] = true
	}
	eps := sm.list("spec", "endpoints")
	if len(eps) != 1 || !ports[eps[0].str("port")] || eps[0].str("path") != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %v, want /metrics on a port of idsync-metrics %v", sm.get("spec", "endpoints"), ports)
	}
	job := svc.str("metadata", "labels", sm.str("spec", "jobLabel"))
	if sm.str("spec", "jobLabel") == "" {
		job = "idsync-metrics"
	}
	rules, err := Rules(filepath.Join(Root(), RulesPath))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if strings.Contains(r.Expr, `job=`) && !strings.Contains(r.Expr, `job="`+job+`"`) {
			t.Errorf("%s selects a job other than %q, the ServiceMonitor's: %s", r.Alert, job, r.Expr)
		}
	}
	if job != "idsync" {
		t.Errorf("ServiceMonitor's job is %q, want idsync (the rules' and the dashboard's)", job)
	}
}

// checkNetworkPolicy: the NetworkPolicy selects idsync's pods, lets in
// only the ops port (from Prometheus in the monitoring namespace) and the
// admin port (from labelled clients), and lets out DNS and every port the
// configuration's Kafka brokers and Redis addresses use.
func checkNetworkPolicy(t *testing.T, objs map[string]map[string]obj) {
	t.Helper()
	np := objs["NetworkPolicy"]["idsync"]
	if np == nil {
		t.Fatal("no NetworkPolicy idsync")
	}
	w, _ := idsyncWorkload(objs)
	if !subset(np.strMap("spec", "podSelector", "matchLabels"), w.strMap("spec", "template", "metadata", "labels")) {
		t.Errorf("NetworkPolicy podSelector %v does not select the pods", np.get("spec", "podSelector"))
	}
	if types := np.str("spec", "policyTypes"); types != "[Ingress Egress]" {
		t.Errorf("NetworkPolicy policyTypes %s, want [Ingress Egress]", types)
	}
	cfg := loadK8sConfig(t, objs)
	_, opsPort, _ := net.SplitHostPort(cfg.Ops.Listen)
	_, adminPort, _ := net.SplitHostPort(cfg.Admin.Listen)
	for _, in := range np.list("spec", "ingress") {
		var ports []string
		for _, p := range in.list("ports") {
			ports = append(ports, p.str("port"))
		}
		from := in.list("from")
		switch {
		case len(from) == 0:
			t.Errorf("ingress %v: from anywhere", in)
		case reflect.DeepEqual(ports, []string{opsPort}):
			if len(from) != 1 || from[0].str("namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") != "monitoring" || from[0].get("podSelector") == nil {
				t.Errorf("ops port %s open to %v, want Prometheus pods of the monitoring namespace", opsPort, from)
			}
			opsPort = "" // seen
		case reflect.DeepEqual(ports, []string{adminPort}):
			adminPort = ""
		default:
			t.Errorf("ingress to ports %v: only the ops and admin ports should be open", ports)
		}
	}
	if opsPort != "" || adminPort != "" {
		t.Errorf("NetworkPolicy lets in neither the ops port nor the admin port (left: %q %q)", opsPort, adminPort)
	}
	egress := map[string]bool{}
	for _, e := range np.list("spec", "egress") {
		for _, p := range e.list("ports") {
			egress[p.str("protocol")+"/"+p.str("port")] = true
		}
	}
	need := []string{"UDP/53", "TCP/53"}
	for _, a := range append(append([]string{}, cfg.Kafka.Brokers...), cfg.Redis.Addrs...) {
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		need = append(need, "TCP/"+port)
	}
	for _, n := range need {
		if !egress[n] {
			t.Errorf("NetworkPolicy egress does not allow %s (egress: %v)", n, egress)
		}
	}
}
