package deploytest

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/idsync/idsync/config"
)

// inputPartitions is the partition count of the input topic the example
// deployment assumes (overlays/production): the cap of every scaler.
const inputPartitions = 12

// build runs `kustomize build dir` through the kustomize library.
func build(t *testing.T, dir string) resmap.ResMap {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return m
}

// obj is a generic Kubernetes object with path lookups.
type obj map[string]any

func (o obj) get(path ...any) any {
	var cur any = map[string]any(o)
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = m[k]
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			cur = l[k]
		}
	}
	return cur
}

func (o obj) str(path ...any) string {
	v := o.get(path...)
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func (o obj) num(path ...any) int {
	n, _ := strconv.Atoi(o.str(path...))
	return n
}

func (o obj) list(path ...any) []obj {
	l, _ := o.get(path...).([]any)
	out := make([]obj, 0, len(l))
	for _, x := range l {
		if m, ok := x.(map[string]any); ok {
			out = append(out, obj(m))
		}
	}
	return out
}

func (o obj) strMap(path ...any) map[string]string {
	m, _ := o.get(path...).(map[string]any)
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// objects returns the built resources by kind, then name.
func objects(t *testing.T, m resmap.ResMap) map[string]map[string]obj {
	t.Helper()
	out := map[string]map[string]obj{}
	for _, r := range m.Resources() {
		o, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		if out[r.GetKind()] == nil {
			out[r.GetKind()] = map[string]obj{}
		}
		out[r.GetKind()][r.GetName()] = obj(o)
	}
	return out
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestKustomize: the base, the production overlay (KEDA, monitoring,
// network policy), the base with the HPA component, and both with
// components/exactly-once build, and what they build is a deployment
// idsync can run: probes on its ops port, a grace period beyond its
// shutdown timeout, non-root and read-only, spread over nodes, a
// disruption budget and services that select its pods, the transactional
// id's suffix from the pod name, GOMEMLIMIT at 90 % of the memory limit,
// scalers capped at the input's partitions, and a configuration (with its
// secret files) that config.Load accepts; the production overlay's
// ServiceMonitor and NetworkPolicy fit that configuration, and the
// exactly_once variants are StatefulSets with stable ids.
func TestKustomize(t *testing.T) {
	kdir := filepath.Join(Root(), "deploy/kubernetes")
	// The HPA alternative: the base with components/hpa instead of keda.
	hpaDir := t.TempDir()
	// kustomize takes relative paths only.
	rel := func(p string) string {
		r, err := filepath.Rel(hpaDir, filepath.Join(kdir, p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	kz := fmt.Sprintf("resources:\n  - %s\ncomponents:\n  - %s\n", rel("base"), rel("components/hpa"))
	if err := os.WriteFile(filepath.Join(hpaDir, "kustomization.yaml"), []byte(kz), 0o600); err != nil {
		t.Fatal(err)
	}
	// The exactly_once variant: the production overlay with
	// components/exactly-once after its scaler.
	eosDir := exactlyOnceDir(t)
	mustExist(t, filepath.Join(kdir, "components/hpa/prometheus-adapter-values.yaml"), "prometheus-adapter rule for the HPA")

	for name, dir := range map[string]string{
		"base":                    filepath.Join(kdir, "base"),
		"production":              filepath.Join(kdir, "overlays/production"),
		"base+hpa":                hpaDir,
		"production+exactly-once": eosDir,
		"base+hpa+exactly-once":   kustomization(t, "base", "components/hpa", "components/exactly-once"),
	} {
		t.Run(name, func(t *testing.T) {
			objs := objects(t, build(t, dir))
			checkDeployment(t, objs)
			checkGOMEMLIMIT(t, objs)
			switch name {
			case "base+hpa+exactly-once":
				checkExactlyOnce(t, objs)
				if objs["HorizontalPodAutoscaler"]["idsync"] == nil {
					t.Error("no HorizontalPodAutoscaler")
				}
			case "production+exactly-once":
				checkExactlyOnce(t, objs)
				checkServiceMonitor(t, objs)
				checkNetworkPolicy(t, objs)
			case "production":
				checkServiceMonitor(t, objs)
				checkNetworkPolicy(t, objs)
				so := objs["ScaledObject"]["idsync"]
				if so == nil {
					t.Fatal("no KEDA ScaledObject")
				}
				if so.str("spec", "scaleTargetRef", "name") != "idsync" {
					t.Errorf("ScaledObject scales %q", so.str("spec", "scaleTargetRef", "name"))
				}
				if max := so.num("spec", "maxReplicaCount"); max < 1 || max > inputPartitions {
					t.Errorf("ScaledObject maxReplicaCount %d, want 1..%d (the input partitions)", max, inputPartitions)
				}
				trig := so.list("spec", "triggers")
				if len(trig) != 1 || trig[0].str("type") != "kafka" || trig[0].str("metadata", "allowIdleConsumers") != "false" {
					t.Errorf("ScaledObject triggers %v, want one kafka trigger with allowIdleConsumers false", trig)
				}
				cfg := loadK8sConfig(t, objs)
				if trig[0].str("metadata", "consumerGroup") != cfg.Kafka.GroupID || trig[0].str("metadata", "topic") != cfg.Kafka.InputTopic {
					t.Errorf("KEDA watches group %q topic %q; idsync uses %q %q", trig[0].str("metadata", "consumerGroup"), trig[0].str("metadata", "topic"), cfg.Kafka.GroupID, cfg.Kafka.InputTopic)
				}
				if objs["TriggerAuthentication"][trig[0].str("authenticationRef", "name")] == nil {
					t.Errorf("ScaledObject's TriggerAuthentication missing")
				}
				if d := objs["Deployment"]["idsync"]; d.str("metadata", "namespace") != "idsync" || d.str("spec", "template", "spec", "containers", 0, "image") != "registry.example.com/idsync:1.0.0" {
					t.Errorf("production overlay: namespace %q image %q", d.str("metadata", "namespace"), d.str("spec", "template", "spec", "containers", 0, "image"))
				}
			case "base+hpa":
				h := objs["HorizontalPodAutoscaler"]["idsync"]
				if h == nil {
					t.Fatal("no HorizontalPodAutoscaler")
				}
				if h.str("spec", "scaleTargetRef", "kind") != "Deployment" || h.str("spec", "scaleTargetRef", "name") != "idsync" {
					t.Errorf("HPA scales %v", h.get("spec", "scaleTargetRef"))
				}
				if max := h.num("spec", "maxReplicas"); max < 1 || max > inputPartitions {
					t.Errorf("HPA maxReplicas %d, want 1..%d (the input partitions)", max, inputPartitions)
				}
				if h.str("spec", "metrics", 0, "external", "metric", "name") != "idsync_consumer_lag_records" {
					t.Errorf("HPA metric %v, want external idsync_consumer_lag_records", h.get("spec", "metrics"))
				}
			}
		})
	}
}

func checkDeployment(t *testing.T, objs map[string]map[string]obj) {
	t.Helper()
	d, kind := idsyncWorkload(objs)
	if d == nil {
		t.Fatal("no Deployment or StatefulSet idsync")
	}
	pod := obj(d.get("spec", "template").(map[string]any))
	podLabels := pod.strMap("metadata", "labels")
	if !subset(d.strMap("spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("Deployment selector does not match its pod labels")
	}
	c := obj(pod.get("spec", "containers", 0).(map[string]any))
	cfg := loadK8sConfig(t, objs)

	// Probes on the ops listener's port.
	_, opsPort, _ := net.SplitHostPort(cfg.Ops.Listen)
	_, defaultPort, _ := net.SplitHostPort(config.Default().Ops.Listen)
	if opsPort != defaultPort {
		t.Errorf("ops.listen port %s, want the default %s", opsPort, defaultPort)
	}
	ports := map[string]string{}
	for _, p := range c.list("ports") {
		ports[p.str("name")] = p.str("containerPort")
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := c.str(probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %q, want %s", probe, got, path)
		}
		port := c.str(probe, "httpGet", "port")
		if named, ok := ports[port]; ok {
			port = named
		}
		if port != opsPort {
			t.Errorf("%s port %s, want the ops port %s", probe, port, opsPort)
		}
	}
	// SIGTERM drains within shutdown_timeout: the grace period must exceed it.
	grace := time.Duration(pod.num("spec", "terminationGracePeriodSeconds")) * time.Second
	if grace < cfg.ShutdownTimeout+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %s, want at least shutdown_timeout %s + 5s", grace, cfg.ShutdownTimeout)
	}
	// Non-root, read-only, nothing extra.
	if pod.str("spec", "securityContext", "runAsNonRoot") != "true" || pod.num("spec", "securityContext", "runAsUser") == 0 {
		t.Errorf("pod may run as root: %v", pod.get("spec", "securityContext"))
	}
	if c.str("securityContext", "readOnlyRootFilesystem") != "true" || c.str("securityContext", "allowPrivilegeEscalation") != "false" {
		t.Errorf("container security context %v", c.get("securityContext"))
	}
	if c.str("resources", "requests", "cpu") == "" || c.str("resources", "limits", "memory") == "" {
		t.Errorf("container resources %v: want a CPU request and a memory limit", c.get("resources"))
	}
	spread := false
	for _, s := range pod.list("spec", "topologySpreadConstraints") {
		if s.str("topologyKey") == "kubernetes.io/hostname" && subset(s.strMap("labelSelector", "matchLabels"), podLabels) {
			spread = true
		}
	}
	if !spread {
		t.Errorf("pods are not spread across nodes (topologySpreadConstraints on kubernetes.io/hostname)")
	}
	txnSuffix := false
	for _, e := range c.list("env") {
		switch e.str("name") {
		case "IDSYNC_KAFKA_TRANSACTIONAL_ID_SUFFIX":
			txnSuffix = e.str("valueFrom", "fieldRef", "fieldPath") == "metadata.name"
		case "IDSYNC_KAFKA_INSTANCE_ID":
			t.Errorf("the Deployment sets the deprecated IDSYNC_KAFKA_INSTANCE_ID (idsync would log a warning at every start)")
		case "IDSYNC_KAFKA_GROUP_INSTANCE_ID":
			if kind == "StatefulSet" {
				continue // stable pod names: checkExactlyOnce
			}
			t.Errorf("the Deployment sets IDSYNC_KAFKA_GROUP_INSTANCE_ID: its pod names change at every rollout, so static membership only delays the hand-over of partitions")
		}
	}
	if !txnSuffix {
		t.Errorf("IDSYNC_KAFKA_TRANSACTIONAL_ID_SUFFIX does not come from the pod name")
	}
	// What selects the pods.
	pdb := objs["PodDisruptionBudget"]["idsync"]
	if pdb == nil || !subset(pdb.strMap("spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("no PodDisruptionBudget selecting the pods")
	} else if pdb.str("spec", "maxUnavailable") != "1" {
		t.Errorf("PodDisruptionBudget maxUnavailable %q, want 1", pdb.str("spec", "maxUnavailable"))
	}
	svc := objs["Service"]["idsync-metrics"]
	if svc == nil || !subset(svc.strMap("spec", "selector"), podLabels) {
		t.Fatalf("no metrics Service selecting the pods")
	}
	if p := svc.list("spec", "ports"); len(p) != 1 || p[0].str("port") != opsPort {
		t.Errorf("metrics Service ports %v, want %s", svc.get("spec", "ports"), opsPort)
	}
	if svc.str("spec", "publishNotReadyAddresses") != "true" {
		t.Errorf("metrics Service hides pods that are not ready, so their metrics and alerts")
	}
}

// loadK8sConfig loads the ConfigMap's idsync.yaml the way the pod does: the
// container's args and env, the ConfigMap and the Secret written where the
// Deployment mounts them, the Secret's placeholders replaced by real
// values first, as the operator must.
func loadK8sConfig(t *testing.T, objs map[string]map[string]obj) *config.Config {
	t.Helper()
	cfg, err := loadK8s(t, objs, true)
	if err != nil {
		configError(t, "ConfigMap idsync.yaml", err)
		t.FailNow()
	}
	if cfg.Kafka.TransactionalIDSuffix != "idsync-7d9f8c6b5-x2x4q" {
		t.Errorf("kafka.transactional_id_suffix = %q, want the pod name", cfg.Kafka.TransactionalIDSuffix)
	}
	if d := cfg.Deprecated(); len(d) != 0 {
		t.Errorf("the manifests use deprecated settings: %v", d)
	}
	return cfg
}

// secretPlaceholder is how the template Secret marks the values to replace.
const secretPlaceholder = "REPLACE-"

// loadK8s is loadK8sConfig returning Load's error; fill replaces the
// Secret's placeholder values by generated ones.
func loadK8s(t *testing.T, objs map[string]map[string]obj, fill bool) (*config.Config, error) {
	t.Helper()
	d, _ := idsyncWorkload(objs)
	pod := obj(d.get("spec", "template", "spec").(map[string]any))
	c := obj(pod.get("containers", 0).(map[string]any))
	volumes := map[string]obj{}
	for _, v := range pod.list("volumes") {
		volumes[v.str("name")] = v
	}
	mounts := map[string]string{}
	for _, vm := range c.list("volumeMounts") {
		v := volumes[vm.str("name")]
		dir := t.TempDir()
		var files map[string]string
		switch {
		case v.get("configMap") != nil:
			cm := findByPrefix(objs["ConfigMap"], v.str("configMap", "name"))
			if cm == nil {
				t.Fatalf("ConfigMap %s not built", v.str("configMap", "name"))
			}
			files = cm.strMap("data")
		case v.get("secret") != nil:
			s := objs["Secret"][v.str("secret", "secretName")]
			if s == nil {
				t.Fatalf("Secret %s not built", v.str("secret", "secretName"))
			}
			files = s.strMap("stringData")
			for k, b64 := range s.strMap("data") {
				b, err := base64.StdEncoding.DecodeString(b64)
				if err != nil {
					t.Fatal(err)
				}
				files[k] = string(b)
			}
			for k, content := range files {
				if fill && strings.HasPrefix(content, secretPlaceholder) {
					files[k] = "generated-" + k + "-0123456789abcdef0123456789abcdef"
				}
			}
		default:
			t.Fatalf("volume %s: neither a ConfigMap nor a Secret", vm.str("name"))
		}
		for k, content := range files {
			if err := os.WriteFile(filepath.Join(dir, k), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		mounts[vm.str("mountPath")] = dir
	}
	var env []string
	for _, e := range c.list("env") {
		v := e.str("value")
		if e.get("valueFrom") != nil {
			v = "idsync-7d9f8c6b5-x2x4q" // what the downward API gives: a pod name
		}
		env = append(env, e.str("name")+"="+v)
	}
	var args []string
	for _, a := range c.get("args").([]any) {
		args = append(args, fmt.Sprint(a))
	}
	return loadConfig(t, env, args, mounts)
}

// TestKustomizeSecretPlaceholdersRefused: applied unchanged, the template
// Secret's admin tokens are refused by idsync at start, naming the
// settings, so that no overlay exposes a write-scope admin API with a
// token published in this repository.
func TestKustomizeSecretPlaceholdersRefused(t *testing.T) {
	for name, dir := range map[string]string{
		"base":       filepath.Join(Root(), "deploy/kubernetes/base"),
		"production": filepath.Join(Root(), "deploy/kubernetes/overlays/production"),
	} {
		t.Run(name, func(t *testing.T) {
			objs := objects(t, build(t, dir))
			sec := objs["Secret"]["idsync-secrets"]
			if sec == nil {
				t.Fatal("no Secret idsync-secrets")
			}
			for k, v := range sec.strMap("stringData") {
				if !strings.HasPrefix(v, secretPlaceholder) {
					t.Errorf("Secret key %s is not a %s… placeholder: a real value must not be committed", k, secretPlaceholder)
				}
			}
			_, err := loadK8s(t, objs, false)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("config.Load with the template Secret: err = %v, want a *config.Error", err)
			}
			refused := map[string]bool{}
			for _, p := range ce.Problems {
				if strings.Contains(p.Message, "placeholder") {
					refused[p.Key] = true
				}
				for _, v := range sec.strMap("stringData") {
					if strings.Contains(p.Message, v) {
						t.Errorf("%s: the message quotes the token: %s", p.Key, p.Message)
					}
				}
			}
			for _, key := range []string{"admin.tokens[0].token_file", "admin.tokens[1].token_file"} {
				if !refused[key] {
					t.Errorf("%s: placeholder not refused; got %v", key, err)
				}
			}
		})
	}
}

// findByPrefix finds a generated object by its name before the content hash.
func findByPrefix(m map[string]obj, name string) obj {
	if o, ok := m[name]; ok {
		return o
	}
	return nil
}
