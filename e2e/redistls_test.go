package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/internal/stacktest"
)

// TestRedisTLS: the real binary on a redis-server that speaks only TLS and
// requires client certificates (tls-auth-clients yes), with the
// certificates of deploy/local/certs.sh: with redis.tls.enabled, ca_file,
// cert_file and key_file it stores connections and processes a stream
// exactly as the domain says; without the client certificate, or without
// the CA, it stops at once with exit code 2 and a message naming the
// setting to fix.
func TestRedisTLS(t *testing.T) {
	s := newStack(t, 3)
	certs := t.TempDir()
	if out, err := exec.Command("bash", "../deploy/local/certs.sh", certs).CombinedOutput(); err != nil {
		t.Fatalf("deploy/local/certs.sh: %v\n%s", err, out)
	}
	addr := startTLSRedis(t, certs)
	tc, err := stacktest.RedisTLSConfig(certs)
	if err != nil {
		t.Fatal(err)
	}
	s.redisAddr = addr
	s.rdb = redis.NewClient(&redis.Options{Addr: addr, TLSConfig: tc})
	t.Cleanup(func() { s.rdb.Close() })

	ca, cert, key := "IDSYNC_REDIS_TLS_CA_FILE="+filepath.Join(certs, "ca.pem"),
		"IDSYNC_REDIS_TLS_CERT_FILE="+filepath.Join(certs, "client.pem"), "IDSYNC_REDIS_TLS_KEY_FILE="+filepath.Join(certs, "client.key")
	in := s.start("tls", "IDSYNC_REDIS_TLS_ENABLED=true", ca, cert, key)
	in.seedDemo()
	inputs := s.produce(events(51, 2000))
	s.waitCommitted(90 * time.Second)
	tl := s.verify(t, inputs, false)
	logTally(t, "redis over TLS", tl)
	if tl.missing+tl.duplicates+tl.unexpected != 0 {
		t.Errorf("over TLS: %d missing, %d duplicated, %d unexpected", tl.missing, tl.duplicates, tl.unexpected)
	}
	if up := in.metric("idsync_redis_up"); up != 1 {
		t.Errorf("idsync_redis_up = %v over TLS, want 1", up)
	}

	for _, tc := range []struct {
		name, id string
		env      []string
		setting  string
	}{
		{"without the client certificate", "nocert", []string{"IDSYNC_REDIS_TLS_ENABLED=true", ca}, "redis.tls.cert_file"},
		{"without the CA", "noca", []string{"IDSYNC_REDIS_TLS_ENABLED=true", cert, key}, "redis.tls.ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := s.runUntilExit(t, tc.id, 60*time.Second, tc.env...)
			if code != 2 || !strings.Contains(out, tc.setting) {
				t.Errorf("exit %d, want 2 with a message naming %s; output:\n%s", code, tc.setting, tail([]byte(out), 20))
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, tc.setting) {
					t.Logf("exit %d: %s", code, line)
				}
			}
		})
	}
}

// runUntilExit runs `idsync run` with the stack's settings and extra ones
// and returns its exit code and output, failing the test if it has not
// exited within d.
func (s *stack) runUntilExit(t *testing.T, id string, d time.Duration, extra ...string) (int, string) {
	t.Helper()
	in := s.launch(id, extra...)
	select {
	case <-in.exited:
	case <-time.After(d):
		t.Fatalf("idsync still running %s after start; output:\n%s", d, tail([]byte(in.log()), 20))
	}
	code := 0
	if ee, ok := in.exitErr.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if in.exitErr != nil {
		code = -1
	}
	return code, in.log()
}

// startTLSRedis runs a redis-server of the test's own that listens with
// TLS only, on a free port, requiring client certificates signed by the CA
// of certs; it is killed when the test ends.
func startTLSRedis(t *testing.T, certs string) string {
	t.Helper()
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	dir := t.TempDir()
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", "0", "--tls-port", port,
		"--tls-cert-file", filepath.Join(certs, "server.pem"), "--tls-key-file", filepath.Join(certs, "server.key"),
		"--tls-ca-cert-file", filepath.Join(certs, "ca.pem"), "--tls-auth-clients", "yes",
		"--dir", dir, "--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server (is it installed, with TLS? deploy/local/install.sh): %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Logf("redis-server log:\n%s", tail(b, 20))
		}
	})
	tc, err := stacktest.RedisTLSConfig(certs)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: tc})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server with TLS on %s did not answer PING within 10s:\n%s", addr, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr
}
