package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	scramsha "github.com/twmb/franz-go/pkg/sasl/scram"
)

func TestTail(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "idsync.dest.fbca_01"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := strings.Join(cluster.ListenAddrs(), ",")

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("idsync.dest.fbca_01"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	records := []*kgo.Record{
		{Key: []byte("use_1"), Value: []byte(`{"message_id": "m:fbca_01:0", "payload": {"a": [1, 2]}}`),
			Headers: []kgo.RecordHeader{{Key: "idsync-source", Value: []byte("in/0/7")}, {Key: "idsync-config-version", Value: []byte("3")}}},
		{Key: []byte("use_2"), Value: []byte("not json <&>")},
		{Value: nil},
	}
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runWith(ctx, map[string]string{"IDSYNC_KAFKA_BROKERS": brokers}, "", "tail", "idsync.dest.fbca_01", "--from-beginning", "--max", "3")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	type line struct {
		Topic     string            `json:"topic"`
		Partition *int32            `json:"partition"`
		Offset    *int64            `json:"offset"`
		Key       *string           `json:"key"`
		Headers   map[string]string `json:"headers"`
		Value     json.RawMessage   `json:"value"`
	}
	byValue := map[string]line{}
	for _, l := range lines {
		var got line
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("line %s: %v", l, err)
		}
		if got.Topic != "idsync.dest.fbca_01" || got.Partition == nil || got.Offset == nil || got.Headers == nil {
			t.Errorf("line %s", l)
		}
		byValue[string(got.Value)] = got
	}
	j, ok := byValue[`{"message_id":"m:fbca_01:0","payload":{"a":[1,2]}}`]
	if !ok || j.Key == nil || *j.Key != "use_1" || j.Headers["idsync-source"] != "in/0/7" || j.Headers["idsync-config-version"] != "3" {
		t.Errorf("JSON record not embedded as JSON: %v", byValue)
	}
	if s, ok := byValue[`"not json <&>"`]; !ok || *s.Key != "use_2" {
		t.Errorf("non-JSON record not a string: %v", byValue)
	}
	if n, ok := byValue["null"]; !ok || n.Key != nil {
		t.Errorf("null record: %v", byValue)
	}
}

// TestTailStopsOnCancel: without --max, tail returns 0 when ctx ends.
func TestTailStopsOnCancel(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	code, out, errOut := runWith(ctx, nil, "", "tail", "t", "--brokers", strings.Join(cluster.ListenAddrs(), ","))
	if code != ExitOK || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestTailUsage(t *testing.T) {
	for _, args := range [][]string{
		{"tail"},
		{"tail", "a", "b"},
		{"tail", "t", "--max", "-1"},
		{"tail", "t", "--max", "x"},
		{"tail", "t", "--brokers", " , "},
		{"tail", "t", "--nope"},
	} {
		code, _, errOut := runCLI(t, nil, args...)
		if code != ExitUsage || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// writeServerPKI writes a CA to dir and returns its path and the TLS
// configuration of a server on 127.0.0.1 with a certificate it signed.
func writeServerPKI(t *testing.T, dir string) (string, *tls.Config) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idsync tail test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kafka"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"kafka.test"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// TestTailTLSAndSASL: tail reaches a broker that requires TLS, SASL or
// both, configured by flags, by the environment or by the service's config
// file, as "idsync run" would be.
func TestTailTLSAndSASL(t *testing.T) {
	const user, pass = "ops", "tail-s3cret"
	dir := t.TempDir()
	ca, serverTLS := writeServerPKI(t, dir)
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cluster := func(t *testing.T, opts ...kfake.Opt) []string {
		kc, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, "secure")}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(kc.Close)
		return kc.ListenAddrs()
	}
	produce := func(t *testing.T, addrs []string, opts ...kgo.Opt) {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic("secure")}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte(`{"over":"tls"}`)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	clientTLS := func() *tls.Config {
		pool := x509.NewCertPool()
		raw, _ := os.ReadFile(ca)
		pool.AppendCertsFromPEM(raw)
		return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	scram := func() kgo.Opt { return kgo.SASL(scramsha.Auth{User: user, Pass: pass}.AsSha512Mechanism()) }

	tests := []struct {
		name    string
		cluster []kfake.Opt
		client  []kgo.Opt
		env     func(addrs []string) map[string]string
		args    func(addrs []string) []string
	}{
		{"TLS by flags", []kfake.Opt{kfake.TLS(serverTLS)}, []kgo.Opt{kgo.DialTLSConfig(clientTLS())},
			func([]string) map[string]string { return nil },
			func(addrs []string) []string { return []string{"--brokers", addrs[0], "--tls", "--tls-ca-file", ca} }},
		{"TLS by server name", []kfake.Opt{kfake.TLS(serverTLS)}, []kgo.Opt{kgo.DialTLSConfig(clientTLS())},
			func([]string) map[string]string { return nil },
			func(addrs []string) []string {
				return []string{"--brokers", addrs[0], "--tls", "--tls-ca-file", ca, "--tls-server-name", "kafka.test"}
			}},
		{"SASL by flags", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", user, pass)}, []kgo.Opt{scram()},
			func([]string) map[string]string { return nil },
			func(addrs []string) []string {
				return []string{"--brokers", addrs[0], "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", user, "--sasl-password-file", pwFile}
			}},
		{"SASL over TLS by the environment", []kfake.Opt{kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", user, pass)},
			[]kgo.Opt{kgo.DialTLSConfig(clientTLS()), scram()},
			func(addrs []string) map[string]string {
				return map[string]string{"IDSYNC_KAFKA_BROKERS": addrs[0], "IDSYNC_KAFKA_TLS_ENABLED": "true", "IDSYNC_KAFKA_TLS_CA_FILE": ca,
					"IDSYNC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "IDSYNC_KAFKA_SASL_USERNAME": user, "IDSYNC_KAFKA_SASL_PASSWORD": pass,
					"IDSYNC_ADMIN_TOKEN": "the client's variables are no setting"}
			},
			func([]string) []string { return nil }},
		{"SASL over TLS by the service's config file", []kfake.Opt{kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.Superuser("PLAIN", user, pass)},
			[]kgo.Opt{kgo.DialTLSConfig(clientTLS()), kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism())},
			func([]string) map[string]string { return nil },
			func(addrs []string) []string {
				file := filepath.Join(dir, "idsync.yaml")
				// The service's other secrets are the service's: tail need not read them.
				yaml := "kafka:\n  brokers: [" + addrs[0] + "]\n  tls: {enabled: true, ca_file: " + ca + "}\n" +
					"  sasl: {mechanism: PLAIN, username: " + user + ", password_file: " + pwFile + "}\n" +
					"redis: {password_file: /nonexistent/redis-password}\n" +
					"admin: {tokens: [{name: ui, token_file: /nonexistent/admin-token, scope: write}]}\n"
				if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				return []string{"--config", file}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addrs := cluster(t, tt.cluster...)
			produce(t, addrs, tt.client...)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := append([]string{"tail", "secure", "--from-beginning", "--max", "1"}, tt.args(addrs)...)
			code, out, errOut := runWith(ctx, tt.env(addrs), "", args...)
			if code != ExitOK || !strings.Contains(out, `"value":{"over":"tls"}`) {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
		})
	}
}

// TestTailSettingsErrors: settings tail cannot use are usage errors naming
// the setting, before any connection.
func TestTailSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		env  map[string]string
		args []string
		msg  string
	}{
		{nil, []string{"--tls", "--tls-ca-file", notPEM}, "kafka.tls.ca_file"},
		{nil, []string{"--tls-ca-file", notPEM}, "kafka.tls"},
		{nil, []string{"--sasl-mechanism", "GSSAPI"}, "kafka.sasl.mechanism"},
		{nil, []string{"--sasl-mechanism", "PLAIN"}, "kafka.sasl.username"},
		{nil, []string{"--config", filepath.Join(dir, "missing.yaml")}, "reading config file"},
		{map[string]string{"IDSYNC_KAFKA_BROKER": "a:1"}, nil, "did you mean IDSYNC_KAFKA_BROKERS?"},
	} {
		code, _, errOut := runCLI(t, tt.env, append([]string{"tail", "t"}, tt.args...)...)
		if code != ExitUsage || !strings.Contains(errOut, tt.msg) {
			t.Errorf("%v %v: exit %d, stderr %q; want %d and %q", tt.env, tt.args, code, errOut, ExitUsage, tt.msg)
		}
	}
}

// TestTailUnreachable: when no broker answers — nothing listens, TLS is
// off or verifies against the wrong CA, SASL is refused — tail says why
// and exits 4 instead of waiting in silence.
func TestTailUnreachable(t *testing.T) {
	dir := t.TempDir()
	_, serverTLS := writeServerPKI(t, dir) // TestTailTLSAndSASL reaches such a broker with its own CA
	otherCA, _ := writeServerPKI(t, t.TempDir())
	wrongPW := filepath.Join(dir, "wrong-pw")
	if err := os.WriteFile(wrongPW, []byte("not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(opts ...kfake.Opt) string {
		kc, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, "t")}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(kc.Close)
		return kc.ListenAddrs()[0]
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	tlsBroker := start(kfake.TLS(serverTLS))
	saslBroker := start(kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "ops", "right-password"))

	for _, tt := range []struct {
		name string
		args []string
	}{
		{"nothing listens", []string{"--brokers", closed}},
		{"plaintext to a TLS broker", []string{"--brokers", tlsBroker}},
		{"TLS with another CA", []string{"--brokers", tlsBroker, "--tls", "--tls-ca-file", otherCA}},
		{"SASL with a wrong password", []string{"--brokers", saslBroker, "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "ops", "--sasl-password-file", wrongPW}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			code, out, errOut := runWith(ctx, nil, "", append([]string{"tail", "t", "--max", "1"}, tt.args...)...)
			if ctx.Err() != nil {
				t.Fatal("tail waited for the context instead of giving up")
			}
			if code != ExitUnavailable || out != "" || !strings.Contains(errOut, "reaching the Kafka brokers") {
				t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
		})
	}
}
