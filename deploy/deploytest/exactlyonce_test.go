package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// idsyncWorkload returns the workload named idsync, a Deployment or a
// StatefulSet (components/exactly-once), and its kind.
func idsyncWorkload(objs map[string]map[string]obj) (obj, string) {
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		if o := objs[kind]["idsync"]; o != nil {
			return o, kind
		}
	}
	return nil, ""
}

// exactlyOnceDir writes a kustomization of the production overlay with
// components/exactly-once (after its KEDA scaler) and returns its directory.
func exactlyOnceDir(t *testing.T) string {
	t.Helper()
	return kustomization(t, "overlays/production", "components/exactly-once")
}

// kustomization writes a kustomization of the resource res with the
// components comps (paths under deploy/kubernetes) and returns its
// directory.
func kustomization(t *testing.T, res string, comps ...string) string {
	t.Helper()
	kdir := filepath.Join(Root(), "deploy/kubernetes")
	dir := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(kdir, p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	kz := fmt.Sprintf("resources:\n  - %s\ncomponents:\n", rel(res))
	for _, c := range comps {
		kz += fmt.Sprintf("  - %s\n", rel(c))
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kz), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkExactlyOnce: the exactly_once variant is a StatefulSet (stable pod
// names) and no Deployment; idsync runs exactly_once with its transactional
// id's suffix and its static group membership id both from the pod name,
// with a session timeout that covers a restart; rolling updates go one pod
// at a time; the scaler scales the StatefulSet.
func checkExactlyOnce(t *testing.T, objs map[string]map[string]obj) {
	t.Helper()
	if len(objs["Deployment"]) != 0 {
		t.Errorf("exactly_once builds Deployments %v: pod names would change at every restart", objs["Deployment"])
	}
	s := objs["StatefulSet"]["idsync"]
	if s == nil {
		t.Fatal("no StatefulSet idsync")
	}
	if svc := objs["Service"][s.str("spec", "serviceName")]; svc == nil || svc.str("spec", "clusterIP") != "None" {
		t.Errorf("StatefulSet serviceName %q: want a headless Service", s.str("spec", "serviceName"))
	}
	if s.str("spec", "updateStrategy", "type") != "RollingUpdate" || s.str("spec", "updateStrategy", "rollingUpdate", "maxUnavailable") != "1" {
		t.Errorf("StatefulSet updateStrategy %v, want RollingUpdate, one pod at a time", s.get("spec", "updateStrategy"))
	}
	if s.get("spec", "strategy") != nil {
		t.Errorf("StatefulSet keeps the Deployment's strategy")
	}
	env := map[string]obj{}
	for _, e := range s.list("spec", "template", "spec", "containers", 0, "env") {
		env[e.str("name")] = e
	}
	for _, name := range []string{"IDSYNC_KAFKA_TRANSACTIONAL_ID_SUFFIX", "IDSYNC_KAFKA_GROUP_INSTANCE_ID"} {
		if env[name].str("valueFrom", "fieldRef", "fieldPath") != "metadata.name" {
			t.Errorf("%s = %v, want the pod name (metadata.name)", name, env[name])
		}
	}
	cfg := loadK8sConfig(t, objs)
	if cfg.Kafka.Delivery != "exactly_once" {
		t.Errorf("kafka.delivery = %q, want exactly_once", cfg.Kafka.Delivery)
	}
	if cfg.Kafka.GroupInstanceID != "idsync-7d9f8c6b5-x2x4q" {
		t.Errorf("kafka.group_instance_id = %q, want the pod name", cfg.Kafka.GroupInstanceID)
	}
	if cfg.Kafka.SessionTimeout < time.Minute {
		t.Errorf("kafka.session_timeout = %s: a static member's restart takes longer; want at least 1m", cfg.Kafka.SessionTimeout)
	}
	if so := objs["ScaledObject"]["idsync"]; so != nil && (so.str("spec", "scaleTargetRef", "kind") != "StatefulSet" || so.str("spec", "scaleTargetRef", "name") != "idsync") {
		t.Errorf("ScaledObject scales %v, want the StatefulSet", so.get("spec", "scaleTargetRef"))
	}
	if h := objs["HorizontalPodAutoscaler"]["idsync"]; h != nil && h.str("spec", "scaleTargetRef", "kind") != "StatefulSet" {
		t.Errorf("HPA scales %v, want the StatefulSet", h.get("spec", "scaleTargetRef"))
	}
}
