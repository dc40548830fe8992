package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestTokenSources: the token the API receives, from each source, and the
// flag winning over the environment.
func TestTokenSources(t *testing.T) {
	var mu sync.Mutex
	var got string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Get("Authorization")
		mu.Unlock()
		w.Write([]byte(`{"destination_types":[]}`))
	}))
	defer ts.Close()
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fromFlagFile := file("flag-token", "token-from-flag-file\n")
	fromEnvFile := file("env-token", "  token-from-env-file\r\n")

	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // the Authorization header
	}{
		{"none", nil, nil, ""},
		{"--token", nil, []string{"--token", "token-from-flag"}, "Bearer token-from-flag"},
		{"--token-file", nil, []string{"--token-file", fromFlagFile}, "Bearer token-from-flag-file"},
		{"IDSYNC_ADMIN_TOKEN", map[string]string{"IDSYNC_ADMIN_TOKEN": "token-from-env"}, nil, "Bearer token-from-env"},
		{"IDSYNC_ADMIN_TOKEN_FILE", map[string]string{"IDSYNC_ADMIN_TOKEN_FILE": fromEnvFile}, nil, "Bearer token-from-env-file"},
		{"--token over the environment", map[string]string{"IDSYNC_ADMIN_TOKEN": "token-from-env"}, []string{"--token", "token-from-flag"}, "Bearer token-from-flag"},
		{"--token-file over the environment", map[string]string{"IDSYNC_ADMIN_TOKEN": "token-from-env", "IDSYNC_ADMIN_TOKEN_FILE": "/nonexistent"}, []string{"--token-file", fromFlagFile}, "Bearer token-from-flag-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"IDSYNC_ADMIN_ADDR": ts.URL}
			for k, v := range tt.env {
				env[k] = v
			}
			code, _, errOut := run(t, env, "", append([]string{"config", "types"}, tt.args...)...)
			mu.Lock()
			defer mu.Unlock()
			if code != ExitOK || got != tt.want {
				t.Errorf("exit %d (%s), Authorization %q, want %q", code, errOut, got, tt.want)
			}
		})
	}

	// Conflicts and bad files are usage errors that never show a token.
	empty := file("empty", "\n")
	twoLines := file("two", "secret-one\nsecret-two\n")
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		msg  string
	}{
		{"both flags", nil, []string{"--token", "secret-flag", "--token-file", fromFlagFile}, "--token or --token-file, not both"},
		{"both variables", map[string]string{"IDSYNC_ADMIN_TOKEN": "secret-env", "IDSYNC_ADMIN_TOKEN_FILE": fromEnvFile}, nil, "IDSYNC_ADMIN_TOKEN or IDSYNC_ADMIN_TOKEN_FILE, not both"},
		{"missing file", nil, []string{"--token-file", filepath.Join(dir, "missing")}, "--token-file: reading the token"},
		{"empty file", map[string]string{"IDSYNC_ADMIN_TOKEN_FILE": empty}, nil, "IDSYNC_ADMIN_TOKEN_FILE: " + empty + " is empty"},
		{"two lines", nil, []string{"--token-file", twoLines}, "holds more than one line"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"IDSYNC_ADMIN_ADDR": ts.URL}
			for k, v := range tt.env {
				env[k] = v
			}
			code, out, errOut := run(t, env, "", append([]string{"config", "types"}, tt.args...)...)
			if code != ExitUsage || !strings.Contains(errOut, tt.msg) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, ExitUsage, tt.msg)
			}
			if strings.Contains(out+errOut, "secret") || strings.Contains(out+errOut, "token-from") {
				t.Errorf("a token is printed: %s%s", out, errOut)
			}
		})
	}

	// --help shows where the token comes from, never the token itself.
	_, out, _ := run(t, map[string]string{"IDSYNC_ADMIN_TOKEN": "secret-in-env"}, "", "config", "types", "--help")
	if strings.Contains(out, "secret-in-env") || !strings.Contains(out, "--token-file") {
		t.Errorf("config types --help:\n%s", out)
	}
}
