package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idsync/idsync/idsync"
)

func TestSecretsFromFiles(t *testing.T) {
	c := mustLoad(t, src{
		files: map[string]string{
			"kafka-pw": "kafka-secret-1\n",
			"redis-pw": "redis-secret-2\r\n",
			"token":    "admin-token-secret-3",
		},
		file: `
kafka:
  sasl: {mechanism: SCRAM-SHA-256, username: idsync, password_file: '{dir}/kafka-pw'}
admin:
  tokens:
    - {name: ci, token_file: '{dir}/token', scope: write}
    - {name: viewer, token: inline-token-0004-xyz, scope: read}
`,
		env: []string{"IDSYNC_REDIS_PASSWORD_FILE={dir}/redis-pw"},
	})
	checks := []struct {
		name      string
		got, want string
	}{
		{"kafka.sasl.password", c.Kafka.SASL.Password, "kafka-secret-1"},
		{"kafka.sasl.password_file", c.Kafka.SASL.PasswordFile, ""},
		{"redis.password", c.Redis.Password, "redis-secret-2"},
		{"redis.password_file", c.Redis.PasswordFile, ""},
		{"admin.tokens[0].token", c.Admin.Tokens[0].Token, "admin-token-secret-3"},
		{"admin.tokens[0].token_file", c.Admin.Tokens[0].TokenFile, ""},
		{"admin.tokens[1].token", c.Admin.Tokens[1].Token, "inline-token-0004-xyz"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.name, ch.got, ch.want)
		}
	}
}

// TestSecretsNeverInErrors loads configurations that are refused while
// holding a secret, and checks the secret is not in the message.
func TestSecretsNeverInErrors(t *testing.T) {
	const secret = "Sup3rSecretValue"
	files := map[string]string{"pw": secret + "\n", "short": "s3cr\n", "placeholder": "REPLACE-" + secret + "\n"}
	tests := []struct {
		name   string
		s      src
		secret string
	}{
		{"password and file both set", src{file: "kafka: {sasl: {mechanism: PLAIN, username: u, password: " + secret + ", password_file: '{dir}/pw'}}\n"}, secret},
		{"redis password and file both set", src{env: []string{"IDSYNC_REDIS_PASSWORD=" + secret, "IDSYNC_REDIS_PASSWORD_FILE={dir}/pw"}}, secret},
		{"password without mechanism", src{env: []string{"IDSYNC_KAFKA_SASL_PASSWORD=" + secret}}, secret},
		{"password from file without mechanism", src{env: []string{"IDSYNC_KAFKA_SASL_PASSWORD_FILE={dir}/pw"}}, secret},
		{"password without username", src{file: "kafka: {sasl: {mechanism: PLAIN, password: " + secret + "}}\n"}, secret},
		{"bad mechanism", src{file: "kafka: {sasl: {mechanism: GSSAPI, username: u, password: " + secret + "}}\n"}, secret},
		{"password of the wrong type", src{file: "redis: {password: [" + secret + "]}\n"}, secret},
		{"numeric password", src{file: "redis: {password: 31415926535}\n"}, "31415926535"},
		{"short token", src{file: "admin: {tokens: [{name: a, token: s3cr, scope: read}]}\n"}, "s3cr"},
		{"short token from file", src{file: "admin: {tokens: [{name: a, token_file: '{dir}/short', scope: read}]}\n"}, "s3cr"},
		{"placeholder token", src{file: "admin: {tokens: [{name: a, token: REPLACE-" + secret + ", scope: read}]}\n"}, secret},
		{"placeholder token from file", src{file: "admin: {tokens: [{name: a, token_file: '{dir}/placeholder', scope: read}]}\n"}, secret},
		{"token with a space", src{file: "admin: {tokens: [{name: a, token: '" + secret + " x', scope: read}]}\n"}, secret},
		{"token with bad scope", src{file: "admin: {tokens: [{name: a, token: " + secret + ", scope: root}]}\n"}, secret},
		{"sentinel password without master", src{env: []string{"IDSYNC_REDIS_SENTINEL_PASSWORD=" + secret}}, secret},
		{"token and token file", src{file: "admin: {tokens: [{name: a, token: " + secret + ", token_file: '{dir}/pw', scope: read}]}\n"}, secret},
		{"password file used as CA", src{env: []string{"IDSYNC_KAFKA_TLS_ENABLED=true", "IDSYNC_KAFKA_TLS_CA_FILE={dir}/pw"}}, secret},
		{"password file used as cert", src{env: []string{"IDSYNC_KAFKA_TLS_ENABLED=true", "IDSYNC_KAFKA_TLS_CERT_FILE={dir}/pw", "IDSYNC_KAFKA_TLS_KEY_FILE={dir}/pw"}}, secret},
		{"oauth token with another mechanism", src{env: []string{"IDSYNC_KAFKA_SASL_OAUTH_TOKEN=" + secret}}, secret},
		{"oauth token and token file", src{file: "kafka: {sasl: {mechanism: OAUTHBEARER, oauth: {token: " + secret + ", token_file: '{dir}/pw'}}}\n"}, secret},
		{"aws secret without access key", src{env: []string{"IDSYNC_KAFKA_SASL_MECHANISM=AWS_MSK_IAM", "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_SESSION_TOKEN=" + secret}}, secret},
		{"aws secret with PLAIN", src{file: "kafka: {sasl: {mechanism: PLAIN, username: u, password: pw, aws: {secret_access_key: " + secret + "}}}\n"}, secret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.s.files = files
			_, err := load(t, tt.s)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if strings.Contains(err.Error(), tt.secret) {
				t.Errorf("error holds the secret: %v", err)
			}
		})
	}
}

// writePKI writes a CA and a client certificate and key signed by it into
// dir and returns their paths.
func writePKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "idsync test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "idsync"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("client.pem", "CERTIFICATE", leafDER), write("client-key.pem", "PRIVATE KEY", keyDER)
}

func TestTLSConfig(t *testing.T) {
	ca, cert, key := writePKI(t, t.TempDir())
	c := mustLoad(t, src{file: `
kafka:
  tls: {enabled: true, ca_file: ` + ca + `, cert_file: ` + cert + `, key_file: ` + key + `, server_name: kafka.internal}
redis:
  tls: {enabled: true, ca_file: ` + ca + `}
`})
	kt, err := c.Kafka.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if kt == nil || kt.RootCAs == nil || len(kt.Certificates) != 1 || kt.ServerName != "kafka.internal" || kt.InsecureSkipVerify {
		t.Fatalf("kafka TLS config = %+v", kt)
	}
	if len(kt.Certificates[0].Certificate) != 1 || kt.Certificates[0].PrivateKey == nil {
		t.Errorf("client certificate not loaded: %+v", kt.Certificates[0])
	}
	rt, err := c.Redis.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if rt == nil || rt.RootCAs == nil || len(rt.Certificates) != 0 {
		t.Fatalf("redis TLS config = %+v", rt)
	}
	ro, err := c.Redis.UniversalOptions()
	if err != nil {
		t.Fatal(err)
	}
	if ro.TLSConfig == nil || ro.TLSConfig.RootCAs == nil {
		t.Error("UniversalOptions has no TLS config")
	}

	off := Default()
	if tc, err := off.Kafka.TLSConfig(); tc != nil || err != nil {
		t.Errorf("disabled TLS: TLSConfig() = %v, %v; want nil, nil", tc, err)
	}

	// The key of another pair does not match the certificate.
	_, _, otherKey := writePKI(t, t.TempDir())
	_, err = load(t, src{env: []string{"IDSYNC_KAFKA_TLS_ENABLED=true", "IDSYNC_KAFKA_TLS_CERT_FILE=" + cert, "IDSYNC_KAFKA_TLS_KEY_FILE=" + otherKey}})
	if err == nil || !strings.Contains(err.Error(), "kafka.tls.cert_file: ") {
		t.Errorf("mismatched key: err = %v, want one naming kafka.tls.cert_file", err)
	}
}

func TestUniversalOptions(t *testing.T) {
	tests := []struct {
		name     string
		env      []string
		mode     string
		client   string // the client type redis.NewUniversalClient builds
		addrs    []string
		sentinel string
	}{
		{"standalone", []string{"IDSYNC_REDIS_ADDRS=r:6379", "IDSYNC_REDIS_DB=3"}, RedisStandalone, "*redis.Client", []string{"r:6379"}, ""},
		{"cluster", []string{"IDSYNC_REDIS_ADDRS=n1:7000,n2:7000,n3:7000"}, RedisCluster, "*redis.ClusterClient", []string{"n1:7000", "n2:7000", "n3:7000"}, ""},
		{"sentinel", []string{"IDSYNC_REDIS_ADDRS=s1:26379,s2:26379", "IDSYNC_REDIS_MASTER_NAME=mymaster", "IDSYNC_REDIS_SENTINEL_PASSWORD=sentinel-pw", "IDSYNC_REDIS_DB=1"}, RedisSentinel, "*redis.Client", []string{"s1:26379", "s2:26379"}, "sentinel-pw"},
		{"one sentinel", []string{"IDSYNC_REDIS_ADDRS=s1:26379", "IDSYNC_REDIS_MASTER_NAME=mymaster"}, RedisSentinel, "*redis.Client", []string{"s1:26379"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append([]string{"IDSYNC_REDIS_USERNAME=idsync", "IDSYNC_REDIS_PASSWORD=redis-pw", "IDSYNC_REDIS_READ_TIMEOUT=2s"}, tt.env...)
			c := mustLoad(t, src{env: env})
			if got := c.Redis.Mode(); got != tt.mode {
				t.Errorf("Mode() = %s, want %s", got, tt.mode)
			}
			o, err := c.Redis.UniversalOptions()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(o.Addrs, tt.addrs) || o.Username != "idsync" || o.Password != "redis-pw" ||
				o.DB != c.Redis.DB || o.SentinelPassword != tt.sentinel || o.ReadTimeout != 2*time.Second ||
				o.WriteTimeout != 3*time.Second || o.DialTimeout != 5*time.Second || o.TLSConfig != nil {
				t.Errorf("UniversalOptions() = %+v", o)
			}
			if (o.MasterName != "") != (tt.mode == RedisSentinel) {
				t.Errorf("MasterName = %q in mode %s", o.MasterName, tt.mode)
			}
			client := redis.NewUniversalClient(o) // does not dial
			defer client.Close()
			if got := reflect.TypeOf(client).String(); got != tt.client {
				t.Errorf("NewUniversalClient built a %s, want %s", got, tt.client)
			}
		})
	}
}

func TestDomainHelpers(t *testing.T) {
	c := Default()
	if got, want := c.Processing.Limits(), idsync.DefaultLimits(); got != want {
		t.Errorf("Limits() = %+v, want %+v", got, want)
	}
	if got, want := c.Processing.Options(), idsync.DefaultOptions(); got != want {
		t.Errorf("Options() = %+v, want %+v", got, want)
	}
	if got, want := c.ProcessOptions(), idsync.DefaultOptions(); got != want {
		t.Errorf("ProcessOptions() = %+v, want %+v (the defaults agree)", got, want)
	}
	if got, want := c.Connections.Activation(), idsync.DefaultActivation(); got != want {
		t.Errorf("Activation() = %+v, want %+v", got, want)
	}
	tt, err := c.Kafka.TopicTemplate()
	if err != nil {
		t.Fatal(err)
	}
	if got := tt.Topic("dest-1"); got != "idsync.dest.dest-1" {
		t.Errorf("topic = %q", got)
	}

	c = *mustLoad(t, src{file: `
processing: {max_record_bytes: 2048, max_external_ids: 7, max_future_skew: 1h, max_combinations: 9, phone_region: gb}
connections: {activation_delay: 1m, retain_superseded: 2h}
`})
	if got, want := c.Processing.Limits(), (idsync.Limits{MaxRecordBytes: 2048, MaxExternalIDs: 7, MaxFutureSkew: time.Hour}); got != want {
		t.Errorf("Limits() = %+v, want %+v", got, want)
	}
	o := c.Processing.Options()
	if o.MaxCombinations != 9 || o.PhoneRegion != "gb" || o.FacebookMaxRows != idsync.DefaultOptions().FacebookMaxRows {
		t.Errorf("Options() = %+v", o)
	}
	if err := o.Check(); err != nil {
		t.Error(err)
	}
	if got := c.Connections.Activation(); got.Delay != time.Minute || got.RetainSuperseded != 2*time.Hour {
		t.Errorf("Activation() = %+v", got)
	}

	c = *mustLoad(t, src{file: `
kafka: {producer_batch_max_bytes: 1048576}
processing: {max_output_bytes: 2097152, max_event_output_bytes: 8388608, max_facebook_rows: 777}
`})
	o = c.ProcessOptions()
	if o.MaxRecordBytes != 1048576-RecordOverheadBytes || o.MaxOutputBytes != 2<<20 || o.MaxEventOutputBytes != 8<<20 || o.MaxFacebookRows != 777 {
		t.Errorf("ProcessOptions() = %+v", o)
	}
}

func TestSlogLevel(t *testing.T) {
	for level, want := range map[string]string{"debug": "DEBUG", "info": "INFO", "warn": "WARN", "error": "ERROR"} {
		if got := (Log{Level: level}).SlogLevel().String(); got != want {
			t.Errorf("SlogLevel(%s) = %s, want %s", level, got, want)
		}
	}
}
