package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCLI runs Main with the given arguments and returns the exit code and
// both streams.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), Env{
		Args:    args,
		Stdin:   strings.NewReader(""),
		Stdout:  &out,
		Stderr:  &errOut,
		Getenv:  func(k string) string { return env[k] },
		Version: "v1.2.3-test",
	})
	return code, out.String(), errOut.String()
}

func TestTopLevel(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{[]string{"version"}, ExitOK, "idsync v1.2.3-test", ""},
		{[]string{"help"}, ExitOK, "Usage:", ""},
		{nil, ExitUsage, "", "Usage:"},
		{[]string{"frobnicate"}, ExitUsage, "", `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, nil, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stdout %q, stderr %q", out, errOut)
			}
		})
	}
}
