package cli

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"
)

// commandPaths returns the arguments that name every command of the tree
// below cmd ("config", "config put", …), cobra's own included.
func commandPaths(cmd *cobra.Command, prefix []string) [][]string {
	var out [][]string
	for _, c := range cmd.Commands() {
		p := append(append([]string(nil), prefix...), c.Name())
		out = append(out, p)
		out = append(out, commandPaths(c, p)...)
	}
	return out
}

// TestHelpEverywhere: -h and --help print the command's help on stdout and
// exit 0 for every command; each of ours has examples.
func TestHelpEverywhere(t *testing.T) {
	root := newRoot(Env{})
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	paths := append([][]string{nil}, commandPaths(root, nil)...)
	if len(paths) < 12 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	for _, p := range paths {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string(nil), p...), h)
			code, out, errOut := runCLI(t, nil, args...)
			if code != ExitOK || !strings.Contains(out, "Usage:") || errOut != "" {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
			}
			ours := len(p) == 0 || (p[0] != "completion" && p[0] != "help")
			if ours && !strings.Contains(out, "Examples:") {
				t.Errorf("%v: no examples in the help:\n%s", args, out)
			}
		}
	}
	// The root's help documents the exit codes.
	_, out, _ := runCLI(t, nil, "--help")
	for _, want := range []string{"Exit codes:", "2  bad usage", "3  refused by the server", "4  server unreachable", "IDSYNC_ADMIN_TOKEN_FILE"} {
		if !strings.Contains(out, want) {
			t.Errorf("idsync --help lacks %q", want)
		}
	}
	// "help COMMAND" and the first CLI's "config help" too.
	for _, args := range [][]string{{"help", "tail"}, {"config", "help"}} {
		if code, out, _ := runCLI(t, nil, args...); code != ExitOK || !strings.Contains(out, "Usage:") {
			t.Errorf("%v: exit %d", args, code)
		}
	}
}

// TestCompletion: the completion scripts of bash, zsh and fish.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "__start_idsync",
		"zsh":  "#compdef idsync",
		"fish": "complete -c idsync",
	} {
		code, out, errOut := runCLI(t, nil, "completion", shell)
		if code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, stderr %q, script without %q", shell, code, errOut, want)
		}
	}
	// The dynamic completion the scripts call: subcommands, and -o's values.
	code, out, _ := runCLI(t, nil, "__complete", "config", "")
	if code != ExitOK || !strings.Contains(out, "put") || !strings.Contains(out, "history") {
		t.Errorf("completing config: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, nil, "__complete", "config", "list", "-o", "")
	if code != ExitOK || !strings.Contains(out, "text\njson\n") {
		t.Errorf("completing -o: exit %d\n%s", code, out)
	}
}

// TestExitCodes: each class of outcome has its code, the same for every
// client command.
func TestExitCodes(t *testing.T) {
	status := func(code int, body string) string {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			w.Write([]byte(body))
		}))
		t.Cleanup(ts.Close)
		return ts.URL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	ok := status(200, `{"destination_types":[]}`)
	tests := []struct {
		name   string
		addr   string
		args   []string
		want   int
		stderr string
	}{
		{"ok", ok, []string{"config", "types"}, ExitOK, ""},
		{"unknown command", ok, []string{"conifg"}, ExitUsage, `unknown command "conifg"`},
		{"unknown subcommand", ok, []string{"config", "lst"}, ExitUsage, `unknown command "lst"`},
		{"no subcommand", ok, []string{"config"}, ExitUsage, "Usage:"},
		{"unknown flag", ok, []string{"config", "types", "--nope"}, ExitUsage, "unknown flag: --nope"},
		{"bad flag value", ok, []string{"config", "put", "s", "a", "d", "-f", "-", "--if-match", "x"}, ExitUsage, "--if-match"},
		{"missing argument", ok, []string{"config", "get", "s", "a"}, ExitUsage, "want 3 argument(s) (SPACE AUDIENCE DESTINATION), got 2"},
		{"bad -o", ok, []string{"config", "types", "-o", "yaml"}, ExitUsage, `-o "yaml": want text or json`},
		{"bad address", "ftp://x", []string{"config", "types"}, ExitUsage, "invalid admin address"},
		{"400", status(400, `{"error":"invalid connection configuration","problems":[{"field":"setup","message":"required"}]}`), []string{"config", "types"}, ExitRefused, "refused (400 Bad Request): invalid connection configuration\n  setup: required"},
		{"401", status(401, `{"error":"missing bearer token"}`), []string{"config", "list", "s", "a"}, ExitRefused, "refused (401"},
		{"404", status(404, `{"error":"no such connection"}`), []string{"config", "get", "s", "a", "d"}, ExitRefused, "refused (404"},
		{"412", status(412, `{"error":"version 9 is not the newest"}`), []string{"config", "delete", "s", "a", "d", "--if-match", "9"}, ExitRefused, "refused (412"},
		{"500", status(500, `{"error":"redis: connection refused"}`), []string{"config", "types"}, ExitUnavailable, "refused (500"},
		{"503 not JSON", status(503, "upstream down"), []string{"config", "history", "s", "a", "d"}, ExitUnavailable, "upstream down"},
		{"200 not JSON", status(200, "<html>"), []string{"config", "types"}, ExitUnavailable, "not the expected JSON"},
		{"unreachable", closed, []string{"config", "types"}, ExitUnavailable, "calling the admin API"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := run(t, map[string]string{"IDSYNC_ADMIN_ADDR": tt.addr}, "{}", tt.args...)
			if code != tt.want || !strings.Contains(errOut, tt.stderr) {
				t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tt.args, code, errOut, tt.want, tt.stderr)
			}
		})
	}
}

// TestLegacySingleDashFlags: the first CLI's single-dash long flags
// (-addr, -token, -max …) still work, with a deprecation note; shorthands
// and values are left alone.
func TestLegacySingleDashFlags(t *testing.T) {
	var mu sync.Mutex
	var auth string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = r.Header.Get("Authorization")
		mu.Unlock()
		w.Write([]byte(`{"destination_types":[{"type":"webhook","kind":"event"}]}`))
	}))
	defer ts.Close()
	code, out, errOut := run(t, nil, "", "config", "types", "-addr", ts.URL, "-token=legacy-token", "-o", "json")
	mu.Lock()
	got := auth
	mu.Unlock()
	if code != ExitOK || got != "Bearer legacy-token" || !strings.Contains(out, `"webhook"`) ||
		!strings.Contains(errOut, "-addr is deprecated, write --addr") || !strings.Contains(errOut, "-token is deprecated, write --token") {
		t.Errorf("exit %d, Authorization %q, stdout %q, stderr %q", code, got, out, errOut)
	}

	root := newRoot(Env{})
	for _, tt := range []struct{ in, want []string }{
		{[]string{"tail", "t", "-max", "2", "-from-beginning"}, []string{"tail", "t", "--max", "2", "--from-beginning"}},
		{[]string{"bench", "-qn", "5", "-o", "json", "--latency-events", "-1"}, []string{"bench", "-qn", "5", "-o", "json", "--latency-events", "-1"}},
		{[]string{"config", "put", "s", "a", "d", "-f", "-", "--", "-addr"}, []string{"config", "put", "s", "a", "d", "-f", "-", "--", "-addr"}},
	} {
		var warn strings.Builder
		if got := legacyFlags(root, tt.in, &warn); strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("legacyFlags(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestBuiltinsRefuseUnknown: cobra's completion and help commands refuse
// what they do not know with the usage exit code, like every command.
func TestBuiltinsRefuseUnknown(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"completion"}, ExitUsage},
		{[]string{"completion", "tcsh"}, ExitUsage},
		{[]string{"help", "bogus"}, ExitUsage},
		{[]string{"help", "config", "nope"}, ExitUsage},
		{[]string{"help", "config", "put"}, ExitOK},
		{[]string{"completion", "bash"}, ExitOK},
		{[]string{"help"}, ExitOK},
	} {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), Env{Args: tc.args, Stdout: &out, Stderr: &errOut}); code != tc.code {
			t.Errorf("idsync %v: exit %d, want %d\n%s", tc.args, code, tc.code, errOut.String())
		}
	}
}
