// Command genrules writes the Prometheus Operator's PrometheusRule of
// deploy/kubernetes/components/monitoring and the Helm chart's copy of the
// alert rules from deploy/prometheus/rules/idsync.yml, the one source of
// the rules. Run it with `go generate ./deploy/deploytest`.
package main

import (
	"log"
	"os"
	"path/filepath"

	"github.com/idsync/idsync/deploy/deploytest"
)

func main() {
	root := deploytest.Root()
	rules, err := os.ReadFile(filepath.Join(root, deploytest.RulesPath))
	if err != nil {
		log.Fatal(err)
	}
	for path, content := range map[string][]byte{
		deploytest.PrometheusRulePath: deploytest.PrometheusRule(rules),
		deploytest.HelmRulesPath:      rules,
	} {
		if err := os.WriteFile(filepath.Join(root, path), content, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
