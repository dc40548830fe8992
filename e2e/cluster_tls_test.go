package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tlsListeners returns the cluster's TLS and mutual-TLS bootstrap addresses
// and certs.sh's directory, or skips the test when the cluster was started
// without --tls.
func tlsListeners(t *testing.T) (tlsAddrs, mtlsAddrs, certs string) {
	t.Helper()
	tlsAddrs, mtlsAddrs, certs = os.Getenv(clusterTLSEnv), os.Getenv(clusterMTLSEnv), os.Getenv(clusterCertsEnv)
	if tlsAddrs == "" || mtlsAddrs == "" || certs == "" {
		t.Skipf("%s, %s and %s are not all set: start the cluster with `kafka-cluster.sh start --tls` (make test-cluster does)",
			clusterTLSEnv, clusterMTLSEnv, clusterCertsEnv)
	}
	return tlsAddrs, mtlsAddrs, certs
}

// TestClusterKafkaTLS: the real binary reaches the brokers over TLS
// (kafka.tls.enabled with ca_file) and over mutual TLS (with cert_file and
// key_file too) and processes events end to end in exactly_once, read back
// read_committed; a TLS setting that cannot work (no client certificate on
// the mutual-TLS listener, a CA that did not sign the brokers' certificate,
// TLS to a plaintext listener and the other way round) stops the instance at
// start, exit 4, with an error naming the settings to check.
func TestClusterKafkaTLS(t *testing.T) {
	c := needCluster(t)
	tlsAddrs, mtlsAddrs, certs := tlsListeners(t)
	ca, cert, key := filepath.Join(certs, "ca.pem"), filepath.Join(certs, "client.pem"), filepath.Join(certs, "client.key")
	s := newStackOn(t, c.brokers, 3, nil)
	viaTLS := append(clusterExtra("exactly_once"), "IDSYNC_KAFKA_BROKERS="+tlsAddrs,
		"IDSYNC_KAFKA_TLS_ENABLED=true", "IDSYNC_KAFKA_TLS_CA_FILE="+ca)
	mt := s.view("mtls")
	viaMTLS := append(clusterExtra("exactly_once"), "IDSYNC_KAFKA_BROKERS="+mtlsAddrs,
		"IDSYNC_KAFKA_TLS_ENABLED=true", "IDSYNC_KAFKA_TLS_CA_FILE="+ca,
		"IDSYNC_KAFKA_TLS_CERT_FILE="+cert, "IDSYNC_KAFKA_TLS_KEY_FILE="+key)
	in := s.start("tls", viaTLS...)
	mt.start("mtls", viaMTLS...)
	in.seedDemo()
	inputs := s.produce(events(23, pick(2000, 10000)))
	s.waitCommitted(2 * time.Minute)
	mt.waitCommitted(2 * time.Minute)
	tlT := s.verify(t, inputs, true)
	tlM := mt.verify(t, inputs, true)
	logTally(t, "TLS", tlT)
	logTally(t, "mutual TLS", tlM)

	// The settings that cannot work: the process must end, non-zero, saying why.
	wrongCA := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(wrongCA, newTestCA(t).pem, 0o644); err != nil {
		t.Fatal(err)
	}
	failures := map[string]string{}
	for _, tc := range []struct {
		name string
		env  []string
		says string // in the log
	}{
		{"mutual TLS without a client certificate", []string{"IDSYNC_KAFKA_BROKERS=" + mtlsAddrs,
			"IDSYNC_KAFKA_TLS_ENABLED=true", "IDSYNC_KAFKA_TLS_CA_FILE=" + ca}, "set kafka.tls.cert_file and kafka.tls.key_file"},
		{"TLS with a CA that did not sign the brokers", []string{"IDSYNC_KAFKA_BROKERS=" + tlsAddrs,
			"IDSYNC_KAFKA_TLS_ENABLED=true", "IDSYNC_KAFKA_TLS_CA_FILE=" + wrongCA}, "set kafka.tls.ca_file"},
		{"TLS to a plaintext listener", []string{"IDSYNC_KAFKA_BROKERS=" + strings.Join(c.brokers, ","),
			"IDSYNC_KAFKA_TLS_ENABLED=true", "IDSYNC_KAFKA_TLS_CA_FILE=" + ca}, "is kafka.brokers its TLS listener"},
		{"plaintext to a TLS listener", []string{"IDSYNC_KAFKA_BROKERS=" + tlsAddrs}, "the broker speaks TLS on this port: set kafka.tls.enabled"},
	} {
		v := s.view(strings.ReplaceAll(tc.name, " ", "-"))
		bad := v.launch("bad", append(clusterExtra("at_least_once"), tc.env...)...)
		select {
		case <-bad.exited:
		case <-time.After(60 * time.Second):
			bad.kill()
			t.Errorf("%s: still running after 60 s; log:\n%s", tc.name, tail([]byte(bad.log()), 15))
			continue
		}
		code, _ := bad.terminate(time.Second)
		log := bad.log()
		failures[tc.name] = fmt.Sprintf("exit %d: %s", code, lastLine(log))
		if code != 4 || !strings.Contains(log, tc.says) {
			t.Errorf("%s: exit %d, want 4 (Kafka unreachable) with a log saying %q; log:\n%s", tc.name, code, tc.says, tail([]byte(log), 15))
		}
	}
	report(t, map[string]any{"events": len(inputs), "tls_expected": tlT.expected, "tls_missing": tlT.missing,
		"tls_duplicates": tlT.duplicates, "tls_unexpected": tlT.unexpected, "mtls_expected": tlM.expected,
		"mtls_missing": tlM.missing, "mtls_duplicates": tlM.duplicates, "mtls_unexpected": tlM.unexpected, "failures": failures})
	for name, tl := range map[string]tally{"TLS": tlT, "mutual TLS": tlM} {
		if tl.missing+tl.duplicates+tl.unexpected != 0 {
			t.Errorf("%s: %d missing, %d duplicated, %d unexpected", name, tl.missing, tl.duplicates, tl.unexpected)
		}
	}
}

// lastLine returns the last non-empty line of a log.
func lastLine(log string) string {
	ls := strings.Split(strings.TrimSpace(log), "\n")
	return ls[len(ls)-1]
}
