package deploytest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/idsync/idsync/config"
)

// promtool returns the path of promtool. It is installed (Debian package
// prometheus) by deploy/local/install.sh, which `make test` and CI run;
// without it the test is skipped under -short and fails otherwise, never
// passing by not running.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if testing.Short() {
			t.Skip("promtool not installed (deploy/local/install.sh installs it)")
		}
		t.Fatal("promtool not found on PATH: run deploy/local/install.sh (as root it installs Debian's prometheus package, which provides promtool)")
	}
	return p
}

// loadConfig runs config.Load as idsync would inside a container: env and
// args are the container's environment and command (args[0] is the
// subcommand, "run"), and mounts maps container paths (files or
// directories) to paths on this machine. Every path in the environment,
// the flags and the config file is translated through mounts first, so
// the *_file secrets and the config file are read from the repository (or
// from files the test wrote).
func loadConfig(t *testing.T, env, args []string, mounts map[string]string) (*config.Config, error) {
	t.Helper()
	tr := translator(mounts)
	var flagArgs []string
	if len(args) > 0 {
		if args[0] != "run" {
			t.Fatalf("command %q: want idsync run", args)
		}
		for _, a := range args[1:] {
			flagArgs = append(flagArgs, tr(a))
		}
	}
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	config.BindFlags(fs)
	if err := fs.Parse(flagArgs); err != nil {
		t.Fatalf("flags %q: %v", args, err)
	}
	var tenv []string
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		tenv = append(tenv, k+"="+tr(v))
	}
	// The config file may name secret files by their container paths: give
	// config.Load a translated copy. Which file is read follows Load's
	// precedence: --config, then IDSYNC_CONFIG.
	file := ""
	if f := fs.Lookup("config"); f != nil && f.Changed {
		file = f.Value.String()
	}
	for _, kv := range tenv {
		if v, ok := strings.CutPrefix(kv, "IDSYNC_CONFIG="); ok && file == "" {
			file = v
		}
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("config file: %v", err)
		}
		copyPath := filepath.Join(t.TempDir(), "idsync.yaml")
		if err := os.WriteFile(copyPath, []byte(tr(string(b))), 0o600); err != nil {
			t.Fatal(err)
		}
		if f := fs.Lookup("config"); f != nil && f.Changed {
			if err := fs.Set("config", copyPath); err != nil {
				t.Fatal(err)
			}
		}
		for i, kv := range tenv {
			if strings.HasPrefix(kv, "IDSYNC_CONFIG=") {
				tenv[i] = "IDSYNC_CONFIG=" + copyPath
			}
		}
	}
	return config.Load(config.LoadOptions{Env: tenv, Flags: fs})
}

// translator replaces container paths by their mounts' local paths, longest
// container path first, in any string.
func translator(mounts map[string]string) func(string) string {
	keys := make([]string, 0, len(mounts))
	for k := range mounts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, k, mounts[k])
	}
	r := strings.NewReplacer(pairs...)
	return r.Replace
}

// configError fails t with every problem of a config.Load error.
func configError(t *testing.T, what string, err error) {
	t.Helper()
	var ce *config.Error
	if errors.As(err, &ce) {
		t.Errorf("%s: idsync refuses its configuration:\n%v", what, ce)
		return
	}
	t.Errorf("%s: %v", what, err)
}

func mustExist(t *testing.T, path, what string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := unmarshalYAML(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func unmarshalYAML(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	return dec.Decode(v)
}

func yamlMarshal(v any) ([]byte, error) { return yaml.Marshal(v) }
