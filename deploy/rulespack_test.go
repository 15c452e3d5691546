package deploy

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// updateRules rewrites the Kubernetes ConfigMaps of the rule pack from
// deploy/rules: go test ./deploy -run TestKubernetesRulePack -update-rules
var updateRules = flag.Bool("update-rules", false, "rewrite kubernetes/*rules.yaml from deploy/rules")

// rulePackConfigMaps are the ConfigMaps that carry deploy/rules into a
// pod (mounted at /etc/moat/rules), by file and ConfigMap name.
var rulePackConfigMaps = map[string]string{
	"kubernetes/rules.yaml":       "moat-rules",
	"kubernetes/fleet/rules.yaml": "moat-fleet-rules",
}

// rulePackConfigMap renders every file of deploy/rules as one ConfigMap.
func rulePackConfigMap(t *testing.T, name string) string {
	t.Helper()
	ents, err := os.ReadDir("rules")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range ents {
		if !e.IsDir() {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	var b strings.Builder
	b.WriteString("# The shipped rule pack (deploy/rules), mounted at /etc/moat/rules.\n" +
		"# Generated: go test ./deploy -run TestKubernetesRulePack -update-rules\n" +
		"# (the test fails when it differs from deploy/rules). Edit your copy\n" +
		"# freely; keep the list files the rules name (rules.lists).\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n")
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join("rules", f))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("  " + f + ": |\n")
		for _, l := range strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n") {
			if strings.TrimSpace(l) == "" {
				b.WriteString("\n")
				continue
			}
			b.WriteString("    " + strings.TrimSuffix(l, "\n") + "\n")
		}
	}
	return b.String()
}

// TestKubernetesRulePack: the ConfigMaps hold deploy/rules exactly (no
// trimmed copy that drifts), and their data are the files byte for byte.
func TestKubernetesRulePack(t *testing.T) {
	for path, name := range rulePackConfigMaps {
		want := rulePackConfigMap(t, name)
		if *updateRules {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s differs from deploy/rules: go test ./deploy -run TestKubernetesRulePack -update-rules", path)
			continue
		}
		var cm struct {
			Data map[string]string `yaml:"data"`
		}
		if err := yaml.Unmarshal(got, &cm); err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir("rules")
		if len(cm.Data) != len(ents) {
			t.Errorf("%s: %d files, deploy/rules has %d", path, len(cm.Data), len(ents))
		}
		for k, v := range cm.Data {
			orig, err := os.ReadFile(filepath.Join("rules", k))
			if err != nil || string(orig) != v {
				t.Errorf("%s: %s is not deploy/rules/%s byte for byte (%v)", path, k, k, err)
			}
		}
	}
}
