package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// remoteAlert is the error crypto/tls returns for an alert the peer sent.
func remoteAlert(msg string) error { return &net.OpError{Op: "remote error", Err: errors.New(msg)} }

func TestTLSProblem(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		clientCert bool
		says       string // "" = not a TLS problem: retried
	}{
		{"unknown CA", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, false, "kafka.tls.ca_file"},
		{"wrong host", x509.HostnameError{Host: "kafka"}, false, "kafka.tls.server_name"},
		{"plaintext listener", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, false, "does not speak TLS"},
		{"certificate required", remoteAlert("tls: certificate required"), false, "kafka.tls.cert_file and kafka.tls.key_file"},
		{"bad certificate, none given", remoteAlert("tls: bad certificate"), false, "requires a client certificate"},
		{"bad certificate, one given", remoteAlert("tls: unknown certificate authority"), true, "does not trust the client certificate"},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, false, ""},
		{"reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, false, ""},
		{"EOF", io.EOF, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tlsProblem(tc.err, tc.clientCert)
			if tc.says == "" && got != "" || tc.says != "" && !strings.Contains(got, tc.says) {
				t.Errorf("tlsProblem(%v) = %q, want %q", tc.err, got, tc.says)
			}
		})
	}
}

// TestConnWatch: the first unfixable TLS failure before any connection
// succeeded is reported once, naming the broker; after a success, TLS
// failures are left to the client's retries. Connections closed at once are
// a misconfiguration only when they repeat.
func TestConnWatch(t *testing.T) {
	meta := kgo.BrokerMetadata{Host: "127.0.0.1", Port: 19292}
	bad := remoteAlert("tls: certificate required")
	var got []error
	w := &connWatch{tlsEnabled: true, fail: func(err error) { got = append(got, err) }}
	w.OnBrokerConnect(meta, 0, nil, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED})
	if len(got) != 0 {
		t.Fatalf("a refused connection was reported: %v", got)
	}
	w.OnBrokerConnect(meta, 0, nil, bad)
	w.OnBrokerConnect(meta, 0, nil, bad)
	var ke *KafkaConnectError
	if len(got) != 1 || !errors.As(got[0], &ke) || ke.Broker != "127.0.0.1:19292" || !errors.Is(got[0], bad) ||
		!strings.Contains(got[0].Error(), "kafka.tls.cert_file") {
		t.Fatalf("reported %v, want one KafkaConnectError for 127.0.0.1:19292 naming kafka.tls.cert_file", got)
	}

	later := &connWatch{tlsEnabled: true, fail: func(err error) { t.Errorf("reported after a successful connection: %v", err) }}
	later.OnBrokerConnect(meta, 0, nil, nil)
	later.OnBrokerConnect(meta, 0, nil, bad)
}

func TestConnWatchEOF(t *testing.T) {
	meta := kgo.BrokerMetadata{Host: "127.0.0.1", Port: 19092}
	for _, tlsEnabled := range []bool{false, true} {
		var got []error
		w := &connWatch{tlsEnabled: tlsEnabled, fail: func(err error) { got = append(got, err) }}
		for i := 1; i <= eofsFatal; i++ {
			if len(got) != 0 {
				t.Fatalf("tls %v: reported after %d closed connections: %v", tlsEnabled, i-1, got)
			}
			w.OnBrokerConnect(meta, 0, nil, &kgo.ErrFirstReadEOF{})
		}
		want := "kafka.tls.enabled"
		if len(got) != 1 || !strings.Contains(got[0].Error(), want) {
			t.Errorf("tls %v: reported %v, want one error naming %s", tlsEnabled, got, want)
		}
	}
}

// TestConnWatchPlaintextToTLS: franz-go's error for a TLS alert read as a
// plaintext response stops idsync at once, pointing at kafka.tls.enabled.
func TestConnWatchPlaintextToTLS(t *testing.T) {
	var got []error
	w := &connWatch{fail: func(err error) { got = append(got, err) }}
	w.OnBrokerConnect(kgo.BrokerMetadata{Host: "127.0.0.1", Port: 19292}, 0, nil,
		errors.New("invalid large response size 352518912 > limit 104857600; the first three bytes received appear to be a tls alert record for TLS v1.2; is this a plaintext connection speaking to a tls endpoint?"))
	if len(got) != 1 || !strings.Contains(got[0].Error(), "set kafka.tls.enabled") {
		t.Errorf("reported %v, want one error naming kafka.tls.enabled", got)
	}
}
