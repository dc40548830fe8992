package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cli runs the real binary as an admin client of in.
func (in *instance) cli(stdin string, args ...string) (code int, stdout, stderr string) {
	in.t.Helper()
	return runBinary(in.t, []string{"IDSYNC_ADMIN_ADDR=http://" + in.admin, "IDSYNC_ADMIN_TOKEN=" + adminToken}, stdin, args...)
}

// runBinary runs the real binary with args, the test's environment without
// its IDSYNC_ settings plus env, and stdin; it returns the exit code and
// what the command printed.
func runBinary(t *testing.T, env []string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// TestCLIAgainstServer: the real binary as a CLI against a real API server
// (itself a running idsync): put from YAML, get, list, history, preview,
// a validation error printed with exit code 3 (refused) and an unreachable
// server with exit code 4.
func TestCLIAgainstServer(t *testing.T) {
	s := newStack(t, 1)
	in := s.start("a")
	yamlPath := filepath.Join(t.TempDir(), "conn.yaml")
	if err := os.WriteFile(yamlPath, []byte(`destination_type: facebook_custom_audiences
external_audience_id: "23851234567890123"
settings:
  send_mobile_ids: true
setup: customized
identifiers:
  - {segment: email, destination: EMAIL, strategy: all}
  - {segment: ios.idfa, destination: MADID, strategy: first_added}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := in.cli("", "config", "put", "spa_1", "aud_1", "fbca_01", "-f", yamlPath)
	if code != 0 {
		t.Fatalf("put: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "spa_1/aud_1/fbca_01: version 1") || !strings.Contains(out, "active") {
		t.Errorf("put output does not give version 1, active: %q", out)
	}
	// Put again from stdin (JSON): version 2, pending.
	code, out, errOut = in.cli(`{"destination_type":"facebook_custom_audiences","external_audience_id":"2385","setup":"default"}`,
		"config", "put", "spa_1", "aud_1", "fbca_01", "-f", "-")
	if code != 0 || !strings.Contains(out, "version 2") || !strings.Contains(out, "pending") {
		t.Fatalf("second put: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = in.cli("", "config", "get", "spa_1", "aud_1", "fbca_01", "-o", "json")
	if code != 0 {
		t.Fatalf("get: exit %d %s", code, errOut)
	}
	var got struct {
		Active  struct{ Version int64 } `json:"active"`
		Pending struct{ Version int64 } `json:"pending"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Active.Version != 1 || got.Pending.Version != 2 {
		t.Fatalf("get -o json: %v %+v\n%s", err, got, out)
	}
	code, out, _ = in.cli("", "config", "list", "spa_1", "aud_1")
	if code != 0 || !strings.Contains(out, "fbca_01") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	code, out, _ = in.cli("", "config", "history", "spa_1", "aud_1", "fbca_01")
	if code != 0 || strings.Count(out, "e2e") < 2 {
		t.Fatalf("history: exit %d (want both edits by token e2e)\n%s", code, out)
	}
	// A validation error: exit 3, every problem printed with its field.
	code, out, errOut = in.cli(`{"destination_type":"facebook_custom_audiences","setup":"customized","identifiers":[{"segment":"email","destination":"MAIL","strategy":"most"}]}`,
		"config", "put", "spa_1", "aud_1", "fbca_02", "-f", "-")
	if code != 3 {
		t.Fatalf("invalid put: exit %d, want 3\n%s%s", code, out, errOut)
	}
	for _, field := range []string{"external_audience_id", "identifiers[0].destination", "identifiers[0].strategy"} {
		if !strings.Contains(errOut, field) {
			t.Errorf("error output does not name %s:\n%s", field, errOut)
		}
	}
	// Unreachable server: exit 4.
	cmd := exec.Command(binary, "config", "list", "spa_1", "aud_1")
	cmd.Env = append(cleanEnv(), "IDSYNC_ADMIN_ADDR=http://127.0.0.1:1", "IDSYNC_ADMIN_TOKEN="+adminToken)
	if err := cmd.Run(); err == nil || err.(*exec.ExitError).ExitCode() != 4 {
		t.Errorf("unreachable server: %v, want exit 4", err)
	}
}
