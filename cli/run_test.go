package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/idsync/idsync/config"
)

// TestNewLogger: the log format follows log.format, and auto follows the
// terminal check.
func TestNewLogger(t *testing.T) {
	textLine := regexp.MustCompile(`^time=\d\d:\d\d:\d\d\.\d\d\d level=WARN msg=hello n=1\n$`)
	for _, tt := range []struct {
		format   string
		terminal bool
		wantText bool
	}{
		{config.LogAuto, true, true},
		{config.LogAuto, false, false},
		{config.LogJSON, true, false},
		{config.LogText, false, true},
	} {
		var buf bytes.Buffer
		log := newLogger(&buf, config.Log{Level: "info", Format: tt.format}, tt.terminal)
		log.Warn("hello", "n", 1)
		line := buf.String()
		if tt.wantText {
			if !textLine.MatchString(line) {
				t.Errorf("format %s, terminal %v: %q, want a text line with a short time", tt.format, tt.terminal, line)
			}
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] != "hello" || rec["level"] != "WARN" {
			t.Errorf("format %s, terminal %v: %q, want a JSON line (%v)", tt.format, tt.terminal, line, err)
		}
	}
	var buf bytes.Buffer
	newLogger(&buf, config.Log{Level: "warn", Format: config.LogJSON}, false).Info("below the level")
	if buf.Len() != 0 {
		t.Errorf("log.level warn logged an info line: %s", buf.String())
	}
}

// TestRunWithClientEnv runs "idsync run" in a shell prepared for the
// client commands (the README's export): the settings load, and the run
// gets as far as its listeners (here the ops port is taken, so it stops
// with exit 1, a failure while running, not 2, invalid settings). Its log
// is text when stderr is a terminal and JSON otherwise. A typo of a service
// variable beside the client's still stops it with exit 2.
func TestRunWithClientEnv(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded Kafka and Redis")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := []string{
		"IDSYNC_ADMIN_ADDR=http://127.0.0.1:8088", "IDSYNC_ADMIN_TOKEN=demo-token", "IDSYNC_ADMIN_TOKEN_FILE=/nonexistent/token",
		"IDSYNC_EMBEDDED_KAFKA_PORT=0", "IDSYNC_ADMIN_LISTEN=", "IDSYNC_OPS_LISTEN=" + ln.Addr().String(),
	}
	args := []string{"run", "--embedded", "--embedded.demo-rate", "0"}
	for _, terminal := range []bool{false, true} {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), Env{
			Args: args, Stdout: &out, Stderr: &errOut, Environ: env,
			Terminal: func(w io.Writer) bool { return terminal && w == &errOut },
		})
		if code != ExitFailure || !strings.Contains(errOut.String(), ln.Addr().String()) || strings.Contains(errOut.String(), "unknown environment variable") {
			t.Fatalf("terminal %v: exit %d, stderr:\n%s", terminal, code, errOut.String())
		}
		first, _, _ := strings.Cut(errOut.String(), "\n")
		if terminal != strings.HasPrefix(first, "time=") || !terminal != strings.HasPrefix(first, "{") {
			t.Errorf("terminal %v: log line %q", terminal, first)
		}
	}

	var errOut bytes.Buffer
	code := Main(context.Background(), Env{Args: args, Stdout: io.Discard, Stderr: &errOut, Environ: append(env, "IDSYNC_ADMIN_LISTNE=:1")})
	if code != ExitUsage || !strings.Contains(errOut.String(), "IDSYNC_ADMIN_LISTNE: unknown environment variable (did you mean IDSYNC_ADMIN_LISTEN?)") {
		t.Errorf("typo: exit %d, stderr:\n%s", code, errOut.String())
	}
}

// TestRunAdminWithoutTokens: the admin API on without a token is invalid
// settings (exit 2), said before anything is dialled.
func TestRunAdminWithoutTokens(t *testing.T) {
	var errOut bytes.Buffer
	code := Main(context.Background(), Env{
		Args:   []string{"run", "--kafka.brokers", "127.0.0.1:1", "--redis.addrs", "127.0.0.1:1"},
		Stdout: io.Discard, Stderr: &errOut, Environ: []string{"IDSYNC_ADMIN_LISTEN=127.0.0.1:0"},
	})
	if code != ExitUsage || !strings.Contains(errOut.String(), "admin.tokens: the admin API is enabled") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut.String())
	}
}
