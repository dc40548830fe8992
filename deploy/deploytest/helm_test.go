package deploytest

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/yaml"
)

// HelmChart is the chart's directory, relative to Root.
const HelmChart = "deploy/helm/idsync"

// renderHelm renders the chart as `helm template idsync deploy/helm/idsync
// --namespace idsync` with vals over its values.yaml, through the Helm
// library, and returns the objects by kind, then name.
func renderHelm(t *testing.T, vals map[string]any) map[string]map[string]obj {
	t.Helper()
	objs, err := renderHelmErr(vals)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return objs
}

func renderHelmErr(vals map[string]any) (map[string]map[string]obj, error) {
	ch, err := loader.Load(filepath.Join(Root(), HelmChart))
	if err != nil {
		return nil, err
	}
	v, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "idsync", Namespace: "idsync", Revision: 1, IsInstall: true}, nil)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, v)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]obj{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(files[name], -1) {
			var o map[string]any
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				return nil, &renderError{name, err}
			}
			if o == nil {
				continue
			}
			kind, _ := o["kind"].(string)
			n := obj(o).str("metadata", "name")
			if out[kind] == nil {
				out[kind] = map[string]obj{}
			}
			out[kind][n] = obj(o)
		}
	}
	return out, nil
}

type renderError struct {
	file string
	err  error
}

func (e *renderError) Error() string { return e.file + ": " + e.err.Error() }

// productionValues are the chart's values for what overlays/production
// sets: image, replicas, resources, its idsync.yaml, and the monitoring and
// networkpolicy components.
func productionValues(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Root(), "deploy/kubernetes/overlays/production/idsync.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"image":    map[string]any{"repository": "registry.example.com/idsync", "tag": "1.0.0"},
		"replicas": 3,
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "1", "memory": "512Mi"},
			"limits":   map[string]any{"memory": "1Gi"},
		},
		"config":         cfg,
		"serviceMonitor": map[string]any{"enabled": true},
		"prometheusRule": map[string]any{"enabled": true},
		"networkPolicy":  map[string]any{"enabled": true},
	}
}

// TestHelmRendersKustomize: for the same settings the Helm chart and the
// kustomize manifests render the same objects, field for field (kinds,
// names, replicas, strategies, containers, env, probes, ports, resources,
// security contexts, volumes, Services, the disruption budget, the
// ServiceMonitor, PrometheusRule and NetworkPolicy), but for what only
// one of them adds: Helm's release labels and config checksum, kustomize's
// part-of label and ConfigMap name hash, and the namespace. The cases: the
// base (the chart's defaults), base + components/exactly-once, the
// production overlay and production + exactly-once, without the KEDA
// scaler (not in the chart). Each rendering also passes the checks of the
// kustomize tests.
func TestHelmRendersKustomize(t *testing.T) {
	kdir := filepath.Join(Root(), "deploy/kubernetes")
	eosBase := kustomization(t, "base", "components/exactly-once")
	eos := map[string]any{"enabled": true}
	prodEOS := productionValues(t)
	prodEOS["exactlyOnce"] = eos
	cases := []struct {
		name string
		dir  string
		vals map[string]any
	}{
		{"base", filepath.Join(kdir, "base"), nil},
		{"base+exactly-once", eosBase, map[string]any{"exactlyOnce": eos}},
		{"production", filepath.Join(kdir, "overlays/production"), productionValues(t)},
		{"production+exactly-once", exactlyOnceDir(t), prodEOS},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := objects(t, build(t, c.dir))
			// components/keda's objects: the chart has no scaler.
			delete(k, "ScaledObject")
			delete(k, "TriggerAuthentication")
			delete(k["Secret"], "idsync-kafka-sasl-user")
			h := renderHelm(t, c.vals)

			checkDeployment(t, h)
			checkGOMEMLIMIT(t, h)
			if strings.Contains(c.name, "exactly-once") {
				checkExactlyOnce(t, h)
			}
			if strings.HasPrefix(c.name, "production") {
				checkServiceMonitor(t, h)
				checkNetworkPolicy(t, h)
				checkRuleGroups(t, "Helm PrometheusRule", h["PrometheusRule"]["idsync"].get("spec", "groups"))
			}

			kn, hn := normalize(t, k), normalize(t, h)
			if got, want := slices.Sorted(maps.Keys(hn)), slices.Sorted(maps.Keys(kn)); !slices.Equal(got, want) {
				t.Errorf("Helm renders %v, kustomize %v", got, want)
			}
			for id, ko := range kn {
				ho, ok := hn[id]
				if !ok {
					continue
				}
				for _, d := range diff("", ho, ko) {
					t.Errorf("%s: %s", id, d)
				}
			}
		})
	}
}

// What only one of the two adds: Helm's release labels and config
// checksum, kustomize's part-of label (on selectors too).
var onlyOne = map[string]bool{
	"app.kubernetes.io/instance":   true,
	"app.kubernetes.io/managed-by": true,
	"app.kubernetes.io/part-of":    true,
	"helm.sh/chart":                true,
	"checksum/config":              true,
}

var configMapHash = regexp.MustCompile(`^(idsync-config)-[a-z0-9]{10}$`)

// normalize returns the objects by kind/name as plain JSON values, without
// what only one of Helm and kustomize adds, with idsync.yaml parsed.
func normalize(t *testing.T, objs map[string]map[string]obj) map[string]any {
	t.Helper()
	out := map[string]any{}
	for kind, byName := range objs {
		for _, o := range byName {
			b, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			var v map[string]any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			meta := v["metadata"].(map[string]any)
			delete(meta, "namespace")
			if kind == "ConfigMap" {
				data := v["data"].(map[string]any)
				var cfg any
				if err := yaml.Unmarshal([]byte(data["idsync.yaml"].(string)), &cfg); err != nil {
					t.Fatal(err)
				}
				data["idsync.yaml"] = cfg
			}
			n := strip(v).(map[string]any)
			for _, m := range []string{"labels", "annotations"} {
				if l, ok := meta[m].(map[string]any); ok && len(l) == 0 {
					delete(meta, m)
				}
			}
			out[kind+"/"+n["metadata"].(map[string]any)["name"].(string)] = n
		}
	}
	return out
}

// diff lists the paths where the Helm value h and the kustomize value k
// differ.
func diff(path string, h, k any) []string {
	hm, hok := h.(map[string]any)
	km, kok := k.(map[string]any)
	if hok && kok {
		var out []string
		for _, key := range slices.Sorted(maps.Keys(km)) {
			out = append(out, diff(path+"."+key, hm[key], km[key])...)
		}
		for _, key := range slices.Sorted(maps.Keys(hm)) {
			if _, ok := km[key]; !ok {
				out = append(out, diff(path+"."+key, hm[key], nil)...)
			}
		}
		return out
	}
	hl, hok := h.([]any)
	kl, kok := k.([]any)
	if hok && kok && len(hl) == len(kl) {
		var out []string
		for i := range kl {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), hl[i], kl[i])...)
		}
		return out
	}
	if reflect.DeepEqual(h, k) {
		return nil
	}
	hy, _ := json.Marshal(h)
	ky, _ := json.Marshal(k)
	return []string{fmt.Sprintf("%s: helm %s, kustomize %s", path, hy, ky)}
}

func strip(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if onlyOne[k] {
				delete(x, k)
				continue
			}
			x[k] = strip(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = strip(e)
		}
		return x
	case string:
		return configMapHash.ReplaceAllString(x, "$1")
	}
	return v
}

// TestHelmGOMEMLIMIT: the chart computes GOMEMLIMIT as 90 % of whatever
// memory limit it is given (in Mi or Gi), and refuses one it cannot.
func TestHelmGOMEMLIMIT(t *testing.T) {
	for _, limit := range []string{"256Mi", "512Mi", "1536Mi", "1Gi", "2Gi", "8Gi"} {
		for _, eos := range []bool{false, true} {
			h := renderHelm(t, map[string]any{
				"resources":   map[string]any{"limits": map[string]any{"memory": limit}},
				"exactlyOnce": map[string]any{"enabled": eos},
			})
			checkGOMEMLIMIT(t, h)
		}
	}
	_, err := renderHelmErr(map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "1G"}}})
	if err == nil || !strings.Contains(err.Error(), "resources.limits.memory") {
		t.Errorf("memory limit 1G: err = %v, want a failure naming resources.limits.memory", err)
	}
}

// TestHelmValues: the values the equality test leaves at their defaults do
// what the chart's README says.
func TestHelmValues(t *testing.T) {
	h := renderHelm(t, map[string]any{
		"fullnameOverride": "ids",
		"secrets":          map[string]any{"create": false, "name": "from-vault"},
		"goMemLimit":       "400MiB",
		"extraEnv":         []any{map[string]any{"name": "IDSYNC_LOG_LEVEL", "value": "debug"}},
		"serviceMonitor":   map[string]any{"enabled": true, "labels": map[string]any{"release": "kps"}},
		"prometheusRule":   map[string]any{"enabled": true, "labels": map[string]any{"release": "kps"}},
		"networkPolicy":    map[string]any{"enabled": true, "extraEgressPorts": []any{26379}},
		"config": map[string]any{
			"ops":   map[string]any{"listen": "0.0.0.0:9100"},
			"redis": map[string]any{"addrs": []any{"redis-a:7000", "redis-b:7001"}},
		},
	})
	if len(h["Secret"]) != 0 {
		t.Errorf("secrets.create false: Secrets %v rendered", slices.Collect(maps.Keys(h["Secret"])))
	}
	d := h["Deployment"]["ids"]
	if d == nil {
		t.Fatalf("fullnameOverride ids: Deployments %v", slices.Collect(maps.Keys(h["Deployment"])))
	}
	for _, want := range []string{"ConfigMap/ids-config", "Service/ids-metrics", "Service/ids-admin", "PodDisruptionBudget/ids", "NetworkPolicy/ids"} {
		kind, name, _ := strings.Cut(want, "/")
		if h[kind][name] == nil {
			t.Errorf("fullnameOverride ids: no %s", want)
		}
	}
	pod := obj(d.get("spec", "template", "spec").(map[string]any))
	if pod.str("volumes", 1, "secret", "secretName") != "from-vault" {
		t.Errorf("secrets.name: the pod mounts %v", pod.get("volumes", 1))
	}
	env := map[string]string{}
	for _, e := range pod.list("containers", 0, "env") {
		env[e.str("name")] = e.str("value")
	}
	if env["GOMEMLIMIT"] != "400MiB" || env["IDSYNC_LOG_LEVEL"] != "debug" {
		t.Errorf("goMemLimit, extraEnv: env %v", env)
	}
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule"} {
		if h[kind]["ids"].str("metadata", "labels", "release") != "kps" {
			t.Errorf("%s labels %v, want release: kps", kind, h[kind]["ids"].get("metadata", "labels"))
		}
	}
	// The ops port follows config.ops.listen everywhere; the policy lets
	// out the Redis ports of config.redis.addrs and the extra one.
	if pod.str("containers", 0, "ports", 0, "containerPort") != "9100" || h["Service"]["ids-metrics"].str("spec", "ports", 0, "port") != "9100" {
		t.Errorf("ops.listen :9100: container ports %v, Service ports %v", pod.get("containers", 0, "ports"), h["Service"]["ids-metrics"].get("spec", "ports"))
	}
	checkNetworkPolicy(t, map[string]map[string]obj{
		"NetworkPolicy": {"idsync": h["NetworkPolicy"]["ids"]},
		"Deployment":    {"idsync": d},
		"ConfigMap":     {"ids-config": h["ConfigMap"]["ids-config"]},
		// The Secret the operator provides, with the chart's keys.
		"Secret": {"from-vault": obj{"stringData": map[string]any{
			"kafka-password": "REPLACE-", "redis-password": "REPLACE-", "admin-write-token": "REPLACE-", "admin-read-token": "REPLACE-",
		}}},
	})
	var egress []string
	for _, e := range h["NetworkPolicy"]["ids"].list("spec", "egress") {
		egress = append(egress, e.str("ports", 0, "port"))
	}
	if !slices.Contains(egress, "26379") || !slices.Contains(egress, "7001") {
		t.Errorf("networkPolicy egress ports %v, want 7000, 7001 and 26379 among them", egress)
	}
}
