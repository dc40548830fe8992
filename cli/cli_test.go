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
	return runWith(context.Background(), env, "", args...)
}

// runWith runs Main with ctx, the environment env (as Getenv and Environ)
// and stdin, and returns the exit code and both streams.
func runWith(ctx context.Context, env map[string]string, stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	code := Main(ctx, Env{
		Args:    args,
		Stdin:   strings.NewReader(stdin),
		Stdout:  &out,
		Stderr:  &errOut,
		Getenv:  func(k string) string { return env[k] },
		Environ: environ,
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
