package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idsync test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a server certificate for 127.0.0.1 with serial into
// certFile and keyFile.
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "idsync admin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// The key first: a reader between the two writes sees a pair that does
	// not match, as a renewal tool might leave for a moment.
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAdminHTTPS: with admin.tls_cert_file and admin.tls_key_file the real
// binary serves the admin API (and the console) over HTTPS only; the CLI
// reaches it with the CA (--ca-file or IDSYNC_ADMIN_CA_FILE) and refuses it
// without; a renewed certificate is served without a restart; a half or
// unusable setting stops start-up as invalid settings.
func TestAdminHTTPS(t *testing.T) {
	s := newStack(t, 1)
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"), filepath.Join(dir, "ca.pem")
	ca := newTestCA(t)
	ca.issue(t, 100, certFile, keyFile)
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	in := s.start("tls", "IDSYNC_ADMIN_TLS_CERT_FILE="+certFile, "IDSYNC_ADMIN_TLS_KEY_FILE="+keyFile)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+in.admin+path, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s over HTTPS: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("/v1/whoami")
	if resp.StatusCode != 200 || !strings.Contains(body, `"name":"e2e"`) || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 100 {
		t.Fatalf("whoami over HTTPS: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get("/ui/"); resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("the console over HTTPS: %d", resp.StatusCode)
	}
	// Plain HTTP is not served.
	if r, err := http.Get("http://" + in.admin + "/v1/whoami"); err == nil {
		r.Body.Close()
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the HTTPS listener: %d", r.StatusCode)
		}
	}

	// The CLI: with the CA, by flag and by environment; without it, the
	// server is unreachable (exit 4) with the cause said.
	env := []string{"IDSYNC_ADMIN_ADDR=https://" + in.admin, "IDSYNC_ADMIN_TOKEN=" + adminToken}
	if code, out, errOut := runBinary(t, env, "", "config", "types", "--ca-file", caFile); code != 0 || !strings.Contains(out, "facebook_custom_audiences") {
		t.Errorf("config types --ca-file: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runBinary(t, append(env, "IDSYNC_ADMIN_CA_FILE="+caFile), "", "config", "list", "spa_1", "aud_1"); code != 0 {
		t.Errorf("config list with IDSYNC_ADMIN_CA_FILE: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := runBinary(t, env, "", "config", "types"); code != 4 || !strings.Contains(errOut, "certificate") {
		t.Errorf("config types without the CA: exit %d, want 4 naming the certificate\n%s", code, errOut)
	}

	// A renewed certificate is served without a restart.
	time.Sleep(20 * time.Millisecond) // a new modification time
	ca.issue(t, 200, certFile, keyFile)
	if resp, _ := get("/v1/whoami"); resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 200 {
		t.Errorf("after renewal the listener serves serial %d, want 200", resp.TLS.PeerCertificates[0].SerialNumber)
	}
	// A broken renewal keeps the last good certificate.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get("/v1/whoami"); resp.StatusCode != 200 || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 200 {
		t.Errorf("after a broken renewal: %d, serial %d", resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber)
	}

	// Invalid settings: one of the two, or a pair that does not match.
	other := filepath.Join(dir, "other")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	ca.issue(t, 300, filepath.Join(other, "a.crt"), filepath.Join(other, "a.key"))
	ca.issue(t, 301, filepath.Join(other, "b.crt"), filepath.Join(other, "b.key"))
	for _, tc := range []struct {
		env  []string
		says string
	}{
		{[]string{"IDSYNC_ADMIN_TLS_CERT_FILE=" + filepath.Join(other, "a.crt")}, "admin.tls_key_file: required"},
		{[]string{"IDSYNC_ADMIN_TLS_CERT_FILE=" + filepath.Join(other, "a.crt"), "IDSYNC_ADMIN_TLS_KEY_FILE=" + filepath.Join(other, "b.key")}, "admin.tls_cert_file: cannot be used"},
	} {
		cfg := filepath.Join(dir, "tokens.yaml")
		if err := os.WriteFile(cfg, []byte("admin:\n  tokens:\n    - {name: e2e, token: "+adminToken+", scope: write}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		run := append([]string{"IDSYNC_CONFIG=" + cfg, "IDSYNC_KAFKA_BROKERS=127.0.0.1:1", "IDSYNC_REDIS_ADDRS=127.0.0.1:1"}, tc.env...)
		if code, _, errOut := runBinary(t, run, "", "run"); code != 2 || !strings.Contains(errOut, tc.says) {
			t.Errorf("%v: exit %d, want 2 saying %q\n%s", tc.env, code, tc.says, errOut)
		}
	}
}
