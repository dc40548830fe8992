package deploytest

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
)

// workloads returns the built Deployments and StatefulSets, by kind/name.
func workloads(objs map[string]map[string]obj) map[string]obj {
	out := map[string]obj{}
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		for name, o := range objs[kind] {
			out[kind+"/"+name] = o
		}
	}
	return out
}

// quantity parses a Kubernetes memory quantity ("512Mi", "1Gi", "500M",
// "1073741824") into bytes.
func quantity(s string) (float64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			return f * u.mult, err
		}
	}
	return strconv.ParseFloat(s, 64)
}

// goMemLimit parses GOMEMLIMIT as the Go runtime does: a number of bytes
// with an optional B, KiB, MiB, GiB or TiB suffix.
func goMemLimit(s string) (float64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1},
	}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			i, err := strconv.ParseUint(n, 10, 64)
			return float64(i) * u.mult, err
		}
	}
	i, err := strconv.ParseUint(s, 10, 64)
	return float64(i), err
}

// checkGOMEMLIMIT: every container of every workload sets GOMEMLIMIT to
// 90 % of its memory limit (within 1 MiB), so that the Go GC works harder
// before the OOM kill and leaves 10 % for what it does not count.
func checkGOMEMLIMIT(t *testing.T, objs map[string]map[string]obj) {
	t.Helper()
	ws := workloads(objs)
	if len(ws) == 0 {
		t.Fatal("no Deployment or StatefulSet built")
	}
	for name, w := range ws {
		for _, c := range w.list("spec", "template", "spec", "containers") {
			where := fmt.Sprintf("%s container %s", name, c.str("name"))
			limit, err := quantity(c.str("resources", "limits", "memory"))
			if err != nil || limit == 0 {
				t.Errorf("%s: memory limit %q: %v", where, c.str("resources", "limits", "memory"), err)
				continue
			}
			var env obj
			for _, e := range c.list("env") {
				if e.str("name") == "GOMEMLIMIT" {
					env = e
				}
			}
			if env == nil {
				t.Errorf("%s: no GOMEMLIMIT", where)
				continue
			}
			if env.get("valueFrom") != nil {
				t.Errorf("%s: GOMEMLIMIT from %v: that is 100 %% of the limit, want 90 %%", where, env.get("valueFrom"))
				continue
			}
			got, err := goMemLimit(env.str("value"))
			if err != nil {
				t.Errorf("%s: GOMEMLIMIT %q is not a value the Go runtime reads: %v", where, env.str("value"), err)
				continue
			}
			if math.Abs(got-0.9*limit) > 1<<20 {
				t.Errorf("%s: GOMEMLIMIT %s = %.0f bytes, want 90 %% of the memory limit %s = %.0f", where, env.str("value"), got, c.str("resources", "limits", "memory"), 0.9*limit)
			}
		}
	}
}
