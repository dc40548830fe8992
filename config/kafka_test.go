package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKafkaClientSettings loads the Kafka client settings users look for
// from each layer and checks their values and defaults.
func TestKafkaClientSettings(t *testing.T) {
	d := mustLoad(t, src{})
	if d.Kafka.Compression != "snappy" || d.Kafka.AutoOffsetReset != "earliest" || d.Kafka.FetchMaxWait != 500*time.Millisecond ||
		d.Kafka.ClientRack != "" || d.Kafka.GroupInstanceID != "" || d.Kafka.TransactionalIDSuffix != "" {
		t.Errorf("defaults: %+v", d.Kafka)
	}
	c := mustLoad(t, src{
		file: "kafka: {compression: zstd, auto_offset_reset: latest, client_rack: use1-az1}\n",
		env:  []string{"IDSYNC_KAFKA_FETCH_MAX_WAIT=250ms", "IDSYNC_KAFKA_GROUP_INSTANCE_ID=idsync-0", "IDSYNC_KAFKA_TRANSACTIONAL_ID_SUFFIX=idsync-0"},
	})
	for _, ch := range []struct{ key, got, want string }{
		{"kafka.compression", c.Kafka.Compression, "zstd"},
		{"kafka.auto_offset_reset", c.Kafka.AutoOffsetReset, "latest"},
		{"kafka.fetch_max_wait", c.Kafka.FetchMaxWait.String(), "250ms"},
		{"kafka.client_rack", c.Kafka.ClientRack, "use1-az1"},
		{"kafka.group_instance_id", c.Kafka.GroupInstanceID, "idsync-0"},
		{"kafka.transactional_id_suffix", c.Kafka.TransactionalIDSuffix, "idsync-0"},
	} {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.key, ch.got, ch.want)
		}
	}
	if len(c.Deprecated()) != 0 {
		t.Errorf("Deprecated() = %v without a deprecated setting", c.Deprecated())
	}
}

// TestDeprecatedInstanceID: kafka.instance_id keeps working as the
// transactional id's suffix, is reported as deprecated with its
// replacement, and never sets the group instance id.
func TestDeprecatedInstanceID(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    src
	}{
		{"environment", src{env: []string{"IDSYNC_KAFKA_INSTANCE_ID=idsync-7d9f8c6b5-x2x4q"}}},
		{"file", src{file: "kafka: {instance_id: idsync-7d9f8c6b5-x2x4q}\n"}},
		{"both names, same value", src{env: []string{"IDSYNC_KAFKA_INSTANCE_ID=idsync-7d9f8c6b5-x2x4q", "IDSYNC_KAFKA_TRANSACTIONAL_ID_SUFFIX=idsync-7d9f8c6b5-x2x4q"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.s)
			if c.Kafka.TransactionalIDSuffix != "idsync-7d9f8c6b5-x2x4q" {
				t.Errorf("kafka.transactional_id_suffix = %q, want the instance id", c.Kafka.TransactionalIDSuffix)
			}
			if c.Kafka.GroupInstanceID != "" {
				t.Errorf("kafka.group_instance_id = %q: instance_id must not make the member static", c.Kafka.GroupInstanceID)
			}
			dep := c.Deprecated()
			if len(dep) != 1 || dep[0].Key != "kafka.instance_id" {
				t.Fatalf("Deprecated() = %v, want kafka.instance_id", dep)
			}
			for _, w := range []string{"IDSYNC_KAFKA_INSTANCE_ID", "kafka.transactional_id_suffix", "IDSYNC_KAFKA_TRANSACTIONAL_ID_SUFFIX", "kafka.group_instance_id"} {
				if !strings.Contains(dep[0].Message, w) {
					t.Errorf("deprecation %q does not name %s", dep[0].Message, w)
				}
			}
		})
	}
}

// TestAWSCredentialsFromEnvironment: with AWS_MSK_IAM the standard AWS
// variables fill the credentials the settings leave empty; the settings
// win; other mechanisms ignore the variables.
func TestAWSCredentialsFromEnvironment(t *testing.T) {
	awsEnv := []string{"AWS_ACCESS_KEY_ID=AKIAENV", "AWS_SECRET_ACCESS_KEY=env-secret", "AWS_SESSION_TOKEN=env-session"}
	for _, tc := range []struct {
		name string
		s    src
		want AWS
	}{
		{"all from the environment", src{env: append([]string{"IDSYNC_KAFKA_SASL_MECHANISM=AWS_MSK_IAM", "IDSYNC_KAFKA_TLS_ENABLED=true"}, awsEnv...)},
			AWS{AccessKeyID: "AKIAENV", SecretAccessKey: "env-secret", SessionToken: "env-session"}},
		{"settings win", src{file: "kafka: {tls: {enabled: true}, sasl: {mechanism: AWS_MSK_IAM, aws: {access_key_id: AKIAFILE, secret_access_key: file-secret}}}\n", env: awsEnv},
			AWS{AccessKeyID: "AKIAFILE", SecretAccessKey: "file-secret", SessionToken: "env-session"}},
		{"without a session token", src{env: []string{"IDSYNC_KAFKA_SASL_MECHANISM=AWS_MSK_IAM", "IDSYNC_KAFKA_TLS_ENABLED=true", "AWS_ACCESS_KEY_ID=AKIAENV", "AWS_SECRET_ACCESS_KEY=env-secret"}},
			AWS{AccessKeyID: "AKIAENV", SecretAccessKey: "env-secret"}},
		{"other mechanism", src{env: append([]string{"IDSYNC_KAFKA_SASL_MECHANISM=PLAIN", "IDSYNC_KAFKA_SASL_USERNAME=u", "IDSYNC_KAFKA_SASL_PASSWORD=p"}, awsEnv...)},
			AWS{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.s)
			if c.Kafka.SASL.AWS != tc.want {
				t.Errorf("kafka.sasl.aws = %+v, want %+v", c.Kafka.SASL.AWS, tc.want)
			}
		})
	}
}

// TestSASLMechanism checks the mechanism each kafka.sasl.mechanism builds,
// by its name and the first message it sends: the OAUTHBEARER token (from
// a file, read again at every authentication) and the AWS access key.
func TestSASLMechanism(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	write := func(tok string) {
		if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("first-token")
	k := Default().Kafka
	if m := k.SASLMechanism(); m != nil {
		t.Errorf("no mechanism gives %s", m.Name())
	}

	first := func(t *testing.T, s SASL, host string) (string, string, error) {
		t.Helper()
		k.SASL = s
		m := k.SASLMechanism()
		if m == nil {
			t.Fatalf("%s gives no mechanism", s.Mechanism)
		}
		_, msg, err := m.Authenticate(context.Background(), host)
		return m.Name(), string(msg), err
	}
	for _, tc := range []struct {
		name string
		s    SASL
		want string // in the first message
	}{
		{"PLAIN", SASL{Mechanism: SASLPlain, Username: "idsync", Password: "pw"}, "\x00idsync\x00pw"},
		{"SCRAM-SHA-256", SASL{Mechanism: SASLScramSHA256, Username: "idsync", Password: "pw"}, "n=idsync,"},
		{"SCRAM-SHA-512", SASL{Mechanism: SASLScramSHA512, Username: "idsync", Password: "pw"}, "n=idsync,"},
		{"OAUTHBEARER", SASL{Mechanism: SASLOAuthBearer, OAuth: OAuth{Token: "static-token"}}, "auth=Bearer static-token\x01"},
		{"OAUTHBEARER", SASL{Mechanism: SASLOAuthBearer, OAuth: OAuth{TokenFile: tokenFile}}, "auth=Bearer first-token\x01"},
		{"AWS_MSK_IAM", SASL{Mechanism: SASLAWSMSKIAM, AWS: AWS{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s3cret", SessionToken: "sess"}}, `"x-amz-credential":"AKIAEXAMPLE/`},
	} {
		name, msg, err := first(t, tc.s, "b-1.idsync.abc123.c2.kafka.eu-west-1.amazonaws.com:9098")
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if name != tc.name || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: mechanism %s sent %q, want it to hold %q", tc.name, name, msg, tc.want)
		}
	}

	// The token file renewed in place: the next authentication sends the
	// new token.
	s := SASL{Mechanism: SASLOAuthBearer, OAuth: OAuth{TokenFile: tokenFile}}
	write("renewed-token")
	if _, msg, err := first(t, s, "broker:9092"); err != nil || !strings.Contains(msg, "auth=Bearer renewed-token\x01") {
		t.Errorf("after renewal: %q, %v; want the renewed token", msg, err)
	}
	// Gone: the authentication fails naming the setting and the path.
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	if _, _, err := first(t, s, "broker:9092"); err == nil || !strings.Contains(err.Error(), "kafka.sasl.oauth.token_file") || !strings.Contains(err.Error(), tokenFile) {
		t.Errorf("missing token file: %v, want an error naming the setting and path", err)
	}
}
