package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// src is what one Load sees. In file, env and args, "{dir}" stands for a
// temporary directory holding the files of files.
type src struct {
	file  string            // idsync.yaml content, "" for no file
	env   []string          // environment, "K=V"
	args  []string          // command-line flags, nil for no flag set
	files map[string]string // more files in {dir}: name -> content
}

// load runs Load on s in a fresh working directory (so no ./idsync.yaml
// leaks in) and returns the config or error. It never reads the process
// environment.
func load(t *testing.T, s src) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	sub := func(x string) string { return strings.ReplaceAll(x, "{dir}", dir) }
	for name, content := range s.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var opt LoadOptions
	if s.file != "" {
		opt.File = filepath.Join(dir, "conf", "idsync.yaml")
		if err := os.Mkdir(filepath.Dir(opt.File), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(opt.File, []byte(sub(s.file)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, kv := range s.env {
		opt.Env = append(opt.Env, sub(kv))
	}
	if s.args != nil {
		fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
		BindFlags(fs)
		var args []string
		for _, a := range s.args {
			args = append(args, sub(a))
		}
		if err := fs.Parse(args); err != nil {
			t.Fatalf("parsing flags %q: %v", s.args, err)
		}
		opt.Flags = fs
	}
	return Load(opt)
}

func mustLoad(t *testing.T, s src) *Config {
	t.Helper()
	c, err := load(t, s)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if _, err := c.Kafka.TLSConfig(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadWithoutSourcesIsDefault(t *testing.T) {
	for _, s := range []src{{}, {args: []string{}}, {env: []string{"PATH=/bin", "IDSYNC_TEST_KAFKA=127.0.0.1:1", "IDSYNC_TEST_REDIS=x", "IDSYNC_BENCH_N=3", "IDSYNC_RUN_DIR=/tmp/stack", "IDSYNC_CACHE_DIR=/tmp/cache", "idsync_kafka_broker=lower-case is not ours"}}} {
		c := mustLoad(t, s)
		if want := Default(); !reflect.DeepEqual(*c, want) {
			t.Errorf("Load(%+v) =\n%+v\nwant Default()\n%+v", s, *c, want)
		}
	}
}

// TestLoadIgnoresClientEnv: the shell the README prepares for the client
// commands (export IDSYNC_ADMIN_ADDR=… IDSYNC_ADMIN_TOKEN=…) runs the
// service too, and the client's variables change no setting.
func TestLoadIgnoresClientEnv(t *testing.T) {
	env := []string{"IDSYNC_ADMIN_ADDR=http://127.0.0.1:8088", "IDSYNC_ADMIN_TOKEN=demo-token", "IDSYNC_ADMIN_TOKEN_FILE=/nonexistent/token"}
	c := mustLoad(t, src{env: env})
	if want := Default(); !reflect.DeepEqual(*c, want) {
		t.Errorf("Load with the client's variables =\n%+v\nwant Default()\n%+v", *c, want)
	}
	// With a service variable beside them, that one still applies.
	c = mustLoad(t, src{env: append(env, "IDSYNC_ADMIN_LISTEN=127.0.0.1:9999")})
	if c.Admin.Listen != "127.0.0.1:9999" || len(c.Admin.Tokens) != 0 {
		t.Errorf("admin = %+v", c.Admin)
	}
}

// TestKafkaClientFlags: the client commands' Kafka flags set the
// kafka.* settings "idsync run" reads, over the file and the environment.
func TestKafkaClientFlags(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "client.yaml")
	if err := os.WriteFile(file, []byte("kafka: {brokers: [file:1], sasl: {mechanism: PLAIN, username: from-file}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("tail", pflag.ContinueOnError)
	BindKafkaClientFlags(fs)
	err := fs.Parse([]string{"--config", file, "--brokers", "a:1,b:2", "--tls", "--tls-server-name", "kafka.internal",
		"--tls-insecure-skip-verify", "--sasl-mechanism", SASLScramSHA512, "--sasl-password-file", pw})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(LoadOptions{Flags: fs, Env: []string{"IDSYNC_KAFKA_SASL_USERNAME=from-env"}})
	if err != nil {
		t.Fatal(err)
	}
	k := c.Kafka
	if !reflect.DeepEqual(k.Brokers, []string{"a:1", "b:2"}) || !k.TLS.Enabled || k.TLS.ServerName != "kafka.internal" || !k.TLS.InsecureSkipVerify ||
		k.SASL != (SASL{Mechanism: SASLScramSHA512, Username: "from-env", Password: "s3cret"}) {
		t.Errorf("kafka = %+v", k)
	}
	for _, f := range kafkaClientFlagKeys {
		if fs.Lookup(f.flag) == nil {
			t.Errorf("flag --%s is not registered", f.flag)
		}
		leafOf(f.key) // panics for a key that is no setting
	}
}

// TestLoadKafkaOnly: a Kafka client loads the service's file without
// reading or checking its other sections' secrets and settings, but with
// every check of the kafka section and of unknown keys.
func TestLoadKafkaOnly(t *testing.T) {
	const file = `
kafka:
  brokers: [k1:9093]
  sasl: {mechanism: PLAIN, username: ops, password_file: "{dir}/kafka-pw"}
redis: {password_file: /nonexistent/redis-pw}
admin: {tokens: [{name: ui, token_file: /nonexistent/admin-token, scope: write}]}
log: {level: chatty}
`
	files := map[string]string{"kafka-pw": "kafka-s3cret\n"}
	kafkaOnly := func(s src) (*Config, error) {
		t.Helper()
		dir := t.TempDir()
		t.Chdir(dir)
		for name, content := range s.files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, "idsync.yaml")
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(s.file, "{dir}", dir)), 0o600); err != nil {
			t.Fatal(err)
		}
		return Load(LoadOptions{File: path, Env: s.env, KafkaOnly: true})
	}
	c, err := kafkaOnly(src{file: file, files: files})
	if err != nil {
		t.Fatalf("KafkaOnly: %v", err)
	}
	if c.Kafka.SASL.Password != "kafka-s3cret" || c.Kafka.Brokers[0] != "k1:9093" {
		t.Errorf("kafka = %+v", c.Kafka)
	}
	if _, err := load(t, src{file: file, files: files}); err == nil {
		t.Error("the full Load accepted the unreadable admin token and the bad log level")
	}
	for _, tt := range []struct {
		s   src
		key string
	}{
		{src{file: file + "kafka_extra: 1\n", files: files}, "kafka_extra"},
		{src{file: file, files: files, env: []string{"IDSYNC_KAFKA_DELIVERY=twice"}}, "kafka.delivery"},
		{src{file: file, env: nil}, "kafka.sasl.password_file"},
		{src{file: file, files: files, env: []string{"IDSYNC_KAFKA_TLS_ENABLED=true", "IDSYNC_KAFKA_TLS_CA_FILE=/nonexistent/ca.pem"}}, "kafka.tls.ca_file"},
	} {
		_, err := kafkaOnly(tt.s)
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("%+v: %v, want an error naming %s", tt.s.env, err, tt.key)
		}
	}
}

// TestLogText: auto follows the terminal; json and text do not.
func TestLogText(t *testing.T) {
	for _, tt := range []struct {
		format   string
		terminal bool
		want     bool
	}{
		{LogAuto, true, true},
		{LogAuto, false, false},
		{LogJSON, true, false},
		{LogJSON, false, false},
		{LogText, true, true},
		{LogText, false, true},
	} {
		if got := (Log{Format: tt.format}).Text(tt.terminal); got != tt.want {
			t.Errorf("Log{Format: %s}.Text(terminal %v) = %v, want %v", tt.format, tt.terminal, got, tt.want)
		}
	}
	if Default().Log.Format != LogAuto || Default().Log.KafkaSlogLevel().String() != "WARN" {
		t.Errorf("default log = %+v, want format auto and the Kafka client at warn", Default().Log)
	}
}

func TestLoadReadsIdsyncYAMLInWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile(DefaultFile, []byte("kafka:\n  group_id: from-cwd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.GroupID != "from-cwd" {
		t.Errorf("group_id = %q, want from-cwd", c.Kafka.GroupID)
	}
}

func TestLoadConfigFileSelection(t *testing.T) {
	files := map[string]string{
		"env.yaml":  "kafka: {group_id: from-env-file}\n",
		"flag.yaml": "kafka: {group_id: from-flag-file}\n",
	}
	tests := []struct {
		name string
		s    src
		want string
	}{
		{"File", src{file: "kafka: {group_id: from-file}\n", files: files}, "from-file"},
		{"IDSYNC_CONFIG over File", src{file: "kafka: {group_id: from-file}\n", files: files, env: []string{"IDSYNC_CONFIG={dir}/env.yaml"}}, "from-env-file"},
		{"--config over IDSYNC_CONFIG", src{files: files, env: []string{"IDSYNC_CONFIG={dir}/env.yaml"}, args: []string{"--config={dir}/flag.yaml"}}, "from-flag-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustLoad(t, tt.s).Kafka.GroupID; got != tt.want {
				t.Errorf("group_id = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		name string
		s    src
		want []string
	}{
		{"missing named file", src{env: []string{"IDSYNC_CONFIG={dir}/nope.yaml"}}, []string{"reading config file", "nope.yaml"}},
		{"missing --config", src{args: []string{"--config", "{dir}/gone.yaml"}}, []string{"gone.yaml"}},
		{"YAML syntax", src{file: "kafka:\n  brokers: [a\n"}, []string{"parsing config file", "idsync.yaml", "line"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.s)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	s := src{
		file: `
kafka:
  group_id: file
  input_topic: file-topic
  dlq_topic: file-dlq
  client_id: file-client
log:
  level: warn
shutdown_timeout: 7s
`,
		env: []string{
			"IDSYNC_KAFKA_GROUP_ID=env",
			"IDSYNC_KAFKA_INPUT_TOPIC=env-topic",
			"IDSYNC_LOG_LEVEL=error",
			"IDSYNC_REDIS_KEY_PREFIX=env:",
		},
		args: []string{"--kafka.group-id=flag", "--log.level", "debug", "--ops.listen=127.0.0.1:1"},
	}
	c := mustLoad(t, s)
	tests := []struct {
		key       string
		got, want any
	}{
		{"kafka.group_id (file, env, flag)", c.Kafka.GroupID, "flag"},
		{"log.level (file, env, flag)", c.Log.Level, "debug"},
		{"kafka.input_topic (file, env)", c.Kafka.InputTopic, "env-topic"},
		{"redis.key_prefix (env)", c.Redis.KeyPrefix, "env:"},
		{"ops.listen (flag)", c.Ops.Listen, "127.0.0.1:1"},
		{"kafka.dlq_topic (file)", c.Kafka.DLQTopic, "file-dlq"},
		{"kafka.client_id (file)", c.Kafka.ClientID, "file-client"},
		{"shutdown_timeout (file)", c.ShutdownTimeout, 7 * time.Second},
		{"kafka.brokers (default)", c.Kafka.Brokers, []string{"127.0.0.1:9092"}},
		{"admin.listen (flag registered, not set)", c.Admin.Listen, "127.0.0.1:8088"},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.key, tt.got, tt.want)
		}
	}
}

// TestUnsetFlagsDoNotOverride checks that a registered flag the user did not
// set leaves the file's value, even where the flag's default differs.
func TestUnsetFlagsDoNotOverride(t *testing.T) {
	c := mustLoad(t, src{
		file: "log: {level: warn}\nembedded: {demo_rate: 3}\n",
		args: []string{"--embedded"},
	})
	if c.Log.Level != "warn" || c.Embedded.DemoRate != 3 || !c.Embedded.Enabled {
		t.Errorf("got level %q, demo_rate %d, embedded %v; want warn, 3, true", c.Log.Level, c.Embedded.DemoRate, c.Embedded.Enabled)
	}
}

func TestParsing(t *testing.T) {
	tests := []struct {
		name  string
		s     src
		got   func(c *Config) any
		want  any
		files map[string]string
	}{
		{"list from file", src{file: "kafka:\n  brokers: [a:1, ' b:2 ']\n"}, func(c *Config) any { return c.Kafka.Brokers }, []string{"a:1", "b:2"}, nil},
		{"list from file, block style", src{file: "redis:\n  addrs:\n    - r1:6379\n    - r2:6379\n"}, func(c *Config) any { return c.Redis.Addrs }, []string{"r1:6379", "r2:6379"}, nil},
		{"list from env, comma-separated", src{env: []string{"IDSYNC_KAFKA_BROKERS=a:9092,b:9092"}}, func(c *Config) any { return c.Kafka.Brokers }, []string{"a:9092", "b:9092"}, nil},
		{"list from env, spaces and empty items", src{env: []string{"IDSYNC_REDIS_ADDRS= r1:1 , ,r2:2,"}}, func(c *Config) any { return c.Redis.Addrs }, []string{"r1:1", "r2:2"}, nil},
		{"list from flag, comma-separated", src{args: []string{"--kafka.brokers=a:1,b:2"}}, func(c *Config) any { return c.Kafka.Brokers }, []string{"a:1", "b:2"}, nil},
		{"list from flag, repeated", src{args: []string{"--redis.addrs", "a:1", "--redis.addrs", "b:2"}}, func(c *Config) any { return c.Redis.Addrs }, []string{"a:1", "b:2"}, nil},
		{"list from env replaces file", src{file: "kafka: {brokers: [f1:1, f2:2, f3:3]}\n", env: []string{"IDSYNC_KAFKA_BROKERS=e:1"}}, func(c *Config) any { return c.Kafka.Brokers }, []string{"e:1"}, nil},
		{"duration from file", src{file: "kafka: {session_timeout: 1m30s}\n"}, func(c *Config) any { return c.Kafka.SessionTimeout }, 90 * time.Second, nil},
		{"duration from env", src{env: []string{"IDSYNC_CONNECTIONS_ACTIVATION_DELAY=500ms"}}, func(c *Config) any { return c.Connections.ActivationDelay }, 500 * time.Millisecond, nil},
		{"duration from flag", src{args: []string{"--shutdown-timeout=3s"}}, func(c *Config) any { return c.ShutdownTimeout }, 3 * time.Second, nil},
		{"duration 0 as a number", src{file: "kafka: {producer_linger: 0}\n"}, func(c *Config) any { return c.Kafka.ProducerLinger }, time.Duration(0), nil},
		{"duration in hours", src{file: "connections: {retain_superseded: 48h}\n"}, func(c *Config) any { return c.Connections.RetainSuperseded }, 48 * time.Hour, nil},
		{"int from env", src{env: []string{"IDSYNC_KAFKA_TOPIC_PARTITIONS=12"}}, func(c *Config) any { return c.Kafka.TopicPartitions }, 12, nil},
		{"int64 from file", src{file: "processing: {max_inflight_bytes: 134217728}\n"}, func(c *Config) any { return c.Processing.MaxInflightBytes }, int64(128 << 20), nil},
		{"whole float as int", src{file: "kafka: {topic_partitions: 3.0}\n"}, func(c *Config) any { return c.Kafka.TopicPartitions }, 3, nil},
		{"negative int", src{env: []string{"IDSYNC_KAFKA_TOPIC_REPLICATION_FACTOR=-1"}}, func(c *Config) any { return c.Kafka.TopicReplicationFactor }, -1, nil},
		{"bool from env", src{env: []string{"IDSYNC_KAFKA_CREATE_TOPICS=false"}}, func(c *Config) any { return c.Kafka.CreateTopics }, false, nil},
		{"bool from env as 1", src{env: []string{"IDSYNC_EMBEDDED_ENABLED=1"}}, func(c *Config) any { return c.Embedded.Enabled }, true, nil},
		{"bool from file", src{file: "kafka: {create_topics: false}\n"}, func(c *Config) any { return c.Kafka.CreateTopics }, false, nil},
		{"bool flag", src{args: []string{"--embedded"}}, func(c *Config) any { return c.Embedded.Enabled }, true, nil},
		{"int flag", src{args: []string{"--embedded.demo-rate=0"}}, func(c *Config) any { return c.Embedded.DemoRate }, 0, nil},
		{"empty env value is set", src{env: []string{"IDSYNC_ADMIN_LISTEN="}}, func(c *Config) any { return c.Admin.Listen }, "", nil},
		{"empty flag value is set", src{args: []string{"--admin.listen="}}, func(c *Config) any { return c.Admin.Listen }, "", nil},
		{"later duplicate env wins", src{env: []string{"IDSYNC_KAFKA_GROUP_ID=a", "IDSYNC_KAFKA_GROUP_ID=b"}}, func(c *Config) any { return c.Kafka.GroupID }, "b", nil},
		{"keys are case-insensitive", src{file: "Kafka:\n  Group_ID: upper\n"}, func(c *Config) any { return c.Kafka.GroupID }, "upper", nil},
		{"null keeps the default", src{file: "kafka:\n  group_id: ~\nlog:\n"}, func(c *Config) any { return c.Kafka.GroupID }, "idsync", nil},
		{"delivery", src{env: []string{"IDSYNC_KAFKA_DELIVERY=exactly_once"}}, func(c *Config) any { return c.Kafka.Delivery }, ExactlyOnce, nil},
		{"JSON file", src{file: `{"kafka": {"group_id": "json", "brokers": ["j:1"]}}`}, func(c *Config) any { return c.Kafka.GroupID + " " + c.Kafka.Brokers[0] }, "json j:1", nil},
		{"tokens from file", src{file: `
admin:
  tokens:
    - {name: ops, token: read-token-0123456789, scope: read}
    - name: deploy
      token: write-token-0123456789
      scope: write
`}, func(c *Config) any { return c.Admin.Tokens }, []Token{{Name: "ops", Token: "read-token-0123456789", Scope: ScopeRead}, {Name: "deploy", Token: "write-token-0123456789", Scope: ScopeWrite}}, nil},
		{"embedded takes a short token and a placeholder", src{file: "admin: {tokens: [{name: a, token: demo-tok, scope: write}, {name: b, token: changeme, scope: read}]}\n", args: []string{"--embedded"}},
			func(c *Config) any { return len(c.Admin.Tokens) }, 2, nil},
		{"new processing settings", src{file: "processing: {max_output_bytes: 1048576, max_event_output_bytes: 4194304, max_facebook_rows: 5000, lag_interval: 2s}\n"},
			func(c *Config) any {
				p := c.Processing
				return []any{p.MaxOutputBytes, p.MaxEventOutputBytes, p.MaxFacebookRows, p.LagInterval}
			}, []any{1 << 20, 4 << 20, 5000, 2 * time.Second}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, tt.s)
			if got := tt.got(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestInvalidSettings(t *testing.T) {
	files := map[string]string{"empty": "\n", "pw": "pw-from-file\n"}
	tests := []struct {
		name string
		s    src
		key  string // the Problem key expected
		msg  string // a substring of its message
	}{
		{"unknown file key", src{file: "kafka:\n  brokerz: [a:1]\n"}, "kafka.brokerz", "unknown setting (did you mean kafka.brokers?)"},
		{"unknown file section", src{file: "kafak:\n  brokers: [a:1]\n"}, "kafak.brokers", "unknown setting"},
		{"unknown top-level key", src{file: "shutdown: 5s\n"}, "shutdown", "unknown setting"},
		{"section given a value", src{file: "kafka: 5\n"}, "kafka", "must be a section"},
		{"unknown token key", src{file: "admin: {tokens: [{name: a, tokn: abcdefgh, scope: read}]}\n"}, "admin.tokens[0].tokn", "unknown setting (did you mean token?)"},
		{"tokens a map", src{file: "admin: {tokens: {name: a, token: abcdefgh}}\n"}, "admin.tokens", "must be a list of maps"},
		{"tokens a string", src{file: "admin: {tokens: abc}\n"}, "admin.tokens", "must be a list of maps, not a string"},
		{"token not a map", src{file: "admin: {tokens: [abc]}\n"}, "admin.tokens[0]", "must be a map"},
		{"unknown IDSYNC_ env var", src{env: []string{"IDSYNC_KAFKA_BROKER=a:1"}}, "IDSYNC_KAFKA_BROKER", "unknown environment variable (did you mean IDSYNC_KAFKA_BROKERS?)"},
		{"unknown IDSYNC_ env var far from any", src{env: []string{"IDSYNC_WHATEVER=1"}}, "IDSYNC_WHATEVER", "unknown environment variable"},
		{"tokens from env", src{env: []string{"IDSYNC_ADMIN_TOKENS=x"}}, "IDSYNC_ADMIN_TOKENS", "cannot be set from the environment"},
		{"bad delivery", src{args: []string{"--kafka.delivery=twice"}}, "kafka.delivery", `must be at_least_once or exactly_once (got "twice")`},
		{"empty brokers", src{env: []string{"IDSYNC_KAFKA_BROKERS="}}, "kafka.brokers", "at least one address"},
		{"broker without port", src{env: []string{"IDSYNC_KAFKA_BROKERS=a:1,kafka"}}, "kafka.brokers[1]", "host:port"},
		{"broker without host", src{file: "kafka: {brokers: [':9092']}\n"}, "kafka.brokers[0]", "must name a host"},
		{"broker not a string", src{file: "redis: {addrs: [1]}\n"}, "redis.addrs", "item 0 must be a string"},
		{"bad duration", src{env: []string{"IDSYNC_KAFKA_SESSION_TIMEOUT=soon"}}, "kafka.session_timeout", `must be a duration such as 500ms, 45s or 5m (got "soon")`},
		{"duration without unit in env", src{env: []string{"IDSYNC_CONNECTIONS_CACHE_TTL=60"}}, "connections.cache_ttl", "must be a duration"},
		{"duration as a bare number", src{file: "shutdown_timeout: 20\n"}, "shutdown_timeout", "with a unit"},
		{"zero shutdown timeout", src{args: []string{"--shutdown-timeout=0s"}}, "shutdown_timeout", "must be positive"},
		{"negative partitions", src{file: "kafka: {topic_partitions: -1}\n"}, "kafka.topic_partitions", "at least 1"},
		{"replication factor 0", src{env: []string{"IDSYNC_KAFKA_TOPIC_REPLICATION_FACTOR=0"}}, "kafka.topic_replication_factor", "-1"},
		{"int not a number", src{env: []string{"IDSYNC_KAFKA_TOPIC_PARTITIONS=six"}}, "kafka.topic_partitions", `must be an integer: "six" is not a whole number`},
		{"int a fraction", src{file: "connections: {audit_limit: 1.5}\n"}, "connections.audit_limit", "not a whole number"},
		{"bad bool", src{env: []string{"IDSYNC_KAFKA_CREATE_TOPICS=maybe"}}, "kafka.create_topics", "true or false"},
		{"string given a list", src{file: "log: {level: [debug]}\n"}, "log.level", "must be a string"},
		{"fetch size over int32", src{file: "kafka: {fetch_max_bytes: 3000000000}\n"}, "kafka.fetch_max_bytes", "between 1 and"},
		{"bad template", src{env: []string{"IDSYNC_KAFKA_OUTPUT_TOPIC_TEMPLATE=idsync.dest"}}, "kafka.output_topic_template", "{destination_id}"},
		{"bad input topic", src{args: []string{"--kafka.input-topic=a b"}}, "kafka.input_topic", "topic name"},
		{"dlq same as input", src{file: "kafka: {input_topic: t, dlq_topic: t}\n"}, "kafka.dlq_topic", "must differ"},
		{"exactly_once without prefix", src{file: "kafka: {delivery: exactly_once, transactional_id_prefix: ''}\n"}, "kafka.transactional_id_prefix", "required"},
		{"bad phone region", src{file: "processing: {phone_region: XX}\n"}, "processing.phone_region", `(got "XX")`},
		{"sasl mechanism without username", src{file: "kafka: {sasl: {mechanism: PLAIN, password: pw-12345}}\n"}, "kafka.sasl.username", "required with kafka.sasl.mechanism PLAIN"},
		{"sasl mechanism without password", src{file: "kafka: {sasl: {mechanism: SCRAM-SHA-512, username: u}}\n"}, "kafka.sasl.password", "required"},
		{"bad sasl mechanism", src{file: "kafka: {sasl: {mechanism: GSSAPI, username: u, password: pw-12345}}\n"}, "kafka.sasl.mechanism", `(got "GSSAPI")`},
		{"sasl username without mechanism", src{env: []string{"IDSYNC_KAFKA_SASL_USERNAME=u"}}, "kafka.sasl.mechanism", "must be set"},
		{"password and password_file both set", src{files: files, file: "kafka: {sasl: {mechanism: PLAIN, username: u, password: pw-12345, password_file: '{dir}/pw'}}\n"}, "kafka.sasl.password_file", "not both"},
		{"missing password file", src{env: []string{"IDSYNC_REDIS_PASSWORD_FILE={dir}/missing"}}, "redis.password_file", "missing\": no such file or directory"},
		{"empty password file", src{files: files, env: []string{"IDSYNC_REDIS_PASSWORD_FILE={dir}/empty"}}, "redis.password_file", "is empty"},
		{"token and token_file both set", src{files: files, file: "admin: {tokens: [{name: a, token: abcdefgh, token_file: '{dir}/pw', scope: read}]}\n"}, "admin.tokens[0].token_file", "not both"},
		{"missing token file", src{file: "admin: {tokens: [{name: a, token_file: '{dir}/nope', scope: read}]}\n"}, "admin.tokens[0].token_file", "nope"},
		{"cert without key", src{file: "kafka: {tls: {enabled: true, cert_file: c.pem}}\n"}, "kafka.tls.key_file", "required with kafka.tls.cert_file"},
		{"key without cert", src{file: "redis: {tls: {enabled: true, key_file: k.pem}}\n"}, "redis.tls.cert_file", "required with redis.tls.key_file"},
		{"tls file while disabled", src{env: []string{"IDSYNC_REDIS_TLS_CA_FILE=/ca.pem"}}, "redis.tls.ca_file", "redis.tls.enabled is false"},
		{"unreadable CA", src{env: []string{"IDSYNC_KAFKA_TLS_ENABLED=true", "IDSYNC_KAFKA_TLS_CA_FILE={dir}/ca.pem"}}, "kafka.tls.ca_file", "ca.pem"},
		{"CA not PEM", src{files: files, env: []string{"IDSYNC_KAFKA_TLS_ENABLED=true", "IDSYNC_KAFKA_TLS_CA_FILE={dir}/pw"}}, "kafka.tls.ca_file", "no PEM certificate"},
		{"bad scope", src{file: "admin: {tokens: [{name: a, token: abcdefgh, scope: admin}]}\n"}, "admin.tokens[0].scope", `must be read or write (got "admin")`},
		{"missing scope", src{file: "admin: {tokens: [{name: a, token: abcdefgh}]}\n"}, "admin.tokens[0].scope", "must be read or write"},
		{"duplicate token name", src{file: "admin: {tokens: [{name: a, token: abcdefgh, scope: read}, {name: a, token: ijklmnop, scope: write}]}\n"}, "admin.tokens[1].name", "admin.tokens[0]"},
		{"token without name", src{file: "admin: {tokens: [{token: abcdefgh, scope: read}]}\n"}, "admin.tokens[0].name", "required"},
		{"short token", src{file: "admin: {tokens: [{name: a, token: short, scope: read}]}\n"}, "admin.tokens[0].token", "at least 16 characters"},
		{"15-character token", src{file: "admin: {tokens: [{name: a, token: 0123456789abcde, scope: read}]}\n"}, "admin.tokens[0].token", "at least 16 characters"},
		{"short token from file", src{files: map[string]string{"tok": "0123456789\n"}, file: "admin: {tokens: [{name: a, token_file: '{dir}/tok', scope: read}]}\n"}, "admin.tokens[0].token_file", "tok\" must be at least 16 characters"},
		{"short token when embedded", src{file: "admin: {tokens: [{name: a, token: short, scope: read}]}\nembedded: {enabled: true}\n"}, "admin.tokens[0].token", "at least 8 characters"},
		{"kustomize placeholder token", src{file: "admin: {tokens: [{name: a, token: REPLACE-with-a-random-token-of-32-characters, scope: write}]}\n"}, "admin.tokens[0].token", "placeholder"},
		{"placeholder token from file", src{files: map[string]string{"tok": "REPLACE-with-another-random-token-of-32-chars\n"}, file: "admin: {tokens: [{name: a, token: abcdefghijklmnopqrstuvwxyz, scope: read}, {name: b, token_file: '{dir}/tok', scope: read}]}\n"}, "admin.tokens[1].token_file", "tok\" must be a real secret"},
		{"CHANGE-ME token", src{file: "admin: {tokens: [{name: a, token: please-Change-Me-0123456789, scope: read}]}\n"}, "admin.tokens[0].token", "placeholder"},
		{"changeme token", src{file: "admin: {tokens: [{name: a, token: CHANGEME0123456789abcdef, scope: read}]}\n"}, "admin.tokens[0].token", "placeholder"},
		{"token with a space", src{file: "admin: {tokens: [{name: a, token: 'abcd efgh ijkl mnop', scope: read}]}\n"}, "admin.tokens[0].token", "spaces"},
		{"max_inflight_bytes < max_record_bytes", src{file: "processing: {max_record_bytes: 2048, max_inflight_bytes: 1024}\n"}, "processing.max_inflight_bytes", "at least processing.max_record_bytes (2048)"},
		{"max_inflight_bytes < producer_batch_max_bytes", src{file: "processing: {max_inflight_bytes: 2097152}\n"}, "processing.max_inflight_bytes", "at least kafka.producer_batch_max_bytes (4194304)"},
		{"producer_batch_max_bytes raised past max_inflight_bytes", src{env: []string{"IDSYNC_KAFKA_PRODUCER_BATCH_MAX_BYTES=134217728"}}, "processing.max_inflight_bytes", "at least kafka.producer_batch_max_bytes (134217728)"},
		{"producer_batch_max_bytes without room for a record", src{file: "kafka: {producer_batch_max_bytes: 2047}\n"}, "kafka.producer_batch_max_bytes", "between 2048"},
		{"zero max_output_bytes", src{file: "processing: {max_output_bytes: 0}\n"}, "processing.max_output_bytes", "at least 1"},
		{"negative max_event_output_bytes", src{env: []string{"IDSYNC_PROCESSING_MAX_EVENT_OUTPUT_BYTES=-1"}}, "processing.max_event_output_bytes", "at least 1"},
		{"zero max_facebook_rows", src{file: "processing: {max_facebook_rows: 0}\n"}, "processing.max_facebook_rows", "at least 1"},
		{"zero lag_interval", src{file: "processing: {lag_interval: 0s}\n"}, "processing.lag_interval", "must be positive"},
		{"lag_interval without unit", src{env: []string{"IDSYNC_PROCESSING_LAG_INTERVAL=10"}}, "processing.lag_interval", "must be a duration"},
		{"retain < delay", src{env: []string{"IDSYNC_CONNECTIONS_ACTIVATION_DELAY=2h", "IDSYNC_CONNECTIONS_RETAIN_SUPERSEDED=1h"}}, "connections.retain_superseded", "at least connections.activation_delay"},
		{"negative delay", src{file: "connections: {activation_delay: -1s, retain_superseded: -1s}\n"}, "connections.activation_delay", "negative"},
		{"zero cache ttl", src{file: "connections: {cache_ttl: 0s}\n"}, "connections.cache_ttl", "positive"},
		{"bad log level", src{args: []string{"--log.level=verbose"}}, "log.level", `must be debug, info, warn or error (got "verbose")`},
		{"bad log format", src{env: []string{"IDSYNC_LOG_FORMAT=xml"}}, "log.format", `must be auto, json or text (got "xml")`},
		{"bad kafka log level", src{args: []string{"--log.kafka-level=chatty"}}, "log.kafka_level", `must be debug, info, warn or error (got "chatty")`},
		{"typo of a service variable beside the client's", src{env: []string{"IDSYNC_ADMIN_ADDR=http://h:1", "IDSYNC_ADMIN_TOKEN=t", "IDSYNC_ADMIN_LISTNE=:1"}}, "IDSYNC_ADMIN_LISTNE", "unknown environment variable (did you mean IDSYNC_ADMIN_LISTEN?)"},
		{"typo of a client variable", src{env: []string{"IDSYNC_ADMIN_ADR=http://h:1"}}, "IDSYNC_ADMIN_ADR", "unknown environment variable (did you mean IDSYNC_ADMIN_ADDR?)"},
		{"bad listen address", src{args: []string{"--admin.listen=localhost"}}, "admin.listen", "host:port"},
		{"bad listen port", src{args: []string{"--ops.listen=:http"}}, "ops.listen", "numeric port"},
		{"empty ops listen", src{env: []string{"IDSYNC_OPS_LISTEN="}}, "ops.listen", "required"},
		{"cluster with db", src{env: []string{"IDSYNC_REDIS_ADDRS=a:1,b:2", "IDSYNC_REDIS_DB=2"}}, "redis.db", "cluster"},
		{"key prefix with a space", src{file: "redis: {key_prefix: 'id sync:'}\n"}, "redis.key_prefix", "spaces"},
		{"key prefix with a brace", src{args: []string{"--redis.key-prefix={idsync}:"}}, "redis.key_prefix", "braces"},
		{"key prefix with a glob character", src{env: []string{"IDSYNC_REDIS_KEY_PREFIX=idsync*"}}, "redis.key_prefix", "glob characters"},
		{"key prefix too long", src{file: "redis: {key_prefix: '" + strings.Repeat("p", 257) + "'}\n"}, "redis.key_prefix", "at most 256 bytes"},
		{"empty key prefix", src{args: []string{"--redis.key-prefix="}}, "redis.key_prefix", "required"},
		{"sentinel password without master", src{file: "redis: {sentinel_password: s3ntinel}\n"}, "redis.sentinel_password", "redis.master_name"},
		{"port out of range", src{file: "embedded: {kafka_port: 70000}\n"}, "embedded.kafka_port", "between 0 and 65535"},
		{"negative demo rate", src{args: []string{"--embedded.demo-rate=-1"}}, "embedded.demo_rate", "at least 0"},
		{"zero body limit", src{file: "admin: {max_body_bytes: 0}\n"}, "admin.max_body_bytes", "at least 1"},
		{"bad compression", src{env: []string{"IDSYNC_KAFKA_COMPRESSION=brotli"}}, "kafka.compression", `must be none, gzip, snappy, lz4 or zstd (got "brotli")`},
		{"compression in upper case", src{file: "kafka: {compression: ZSTD}\n"}, "kafka.compression", `(got "ZSTD")`},
		{"bad auto_offset_reset", src{file: "kafka: {auto_offset_reset: smallest}\n"}, "kafka.auto_offset_reset", `must be earliest or latest (got "smallest")`},
		{"fetch_max_wait under 10ms", src{env: []string{"IDSYNC_KAFKA_FETCH_MAX_WAIT=5ms"}}, "kafka.fetch_max_wait", "between 10ms and"},
		{"fetch_max_wait over int32 ms", src{file: "kafka: {fetch_max_wait: 600h}\n"}, "kafka.fetch_max_wait", "(got 600h)"},
		{"fetch_max_wait without unit", src{env: []string{"IDSYNC_KAFKA_FETCH_MAX_WAIT=500"}}, "kafka.fetch_max_wait", "must be a duration"},
		{"client_rack too long", src{file: "kafka: {client_rack: " + strings.Repeat("r", 513) + "}\n"}, "kafka.client_rack", "at most 512 bytes"},
		{"bad group_instance_id", src{env: []string{"IDSYNC_KAFKA_GROUP_INSTANCE_ID=pod 1"}}, "kafka.group_instance_id", `(got "pod 1")`},
		{"bad transactional_id_suffix", src{file: "kafka: {transactional_id_suffix: '-x'}\n"}, "kafka.transactional_id_suffix", "must match"},
		{"bad instance_id", src{env: []string{"IDSYNC_KAFKA_INSTANCE_ID=a/b"}}, "kafka.instance_id", "must match"},
		{"instance_id and transactional_id_suffix differ", src{env: []string{"IDSYNC_KAFKA_INSTANCE_ID=pod-1", "IDSYNC_KAFKA_TRANSACTIONAL_ID_SUFFIX=pod-2"}}, "kafka.instance_id", "set only kafka.transactional_id_suffix"},
		{"oauth without token", src{file: "kafka: {sasl: {mechanism: OAUTHBEARER}}\n"}, "kafka.sasl.oauth.token", "required with kafka.sasl.mechanism OAUTHBEARER"},
		{"oauth token and file", src{files: files, file: "kafka: {sasl: {mechanism: OAUTHBEARER, oauth: {token: t0k3n, token_file: '{dir}/pw'}}}\n"}, "kafka.sasl.oauth.token_file", "not both"},
		{"oauth token file missing", src{env: []string{"IDSYNC_KAFKA_SASL_MECHANISM=OAUTHBEARER", "IDSYNC_KAFKA_SASL_OAUTH_TOKEN_FILE={dir}/nope"}}, "kafka.sasl.oauth.token_file", "nope\": no such file or directory"},
		{"oauth token file empty", src{files: files, env: []string{"IDSYNC_KAFKA_SASL_MECHANISM=OAUTHBEARER", "IDSYNC_KAFKA_SASL_OAUTH_TOKEN_FILE={dir}/empty"}}, "kafka.sasl.oauth.token_file", "is empty"},
		{"oauth with a username", src{file: "kafka: {sasl: {mechanism: OAUTHBEARER, username: u, oauth: {token: t0k3n}}}\n"}, "kafka.sasl.username", `is not used with kafka.sasl.mechanism "OAUTHBEARER"`},
		{"oauth token with PLAIN", src{file: "kafka: {sasl: {mechanism: PLAIN, username: u, password: pw-12345, oauth: {token: t0k3n}}}\n"}, "kafka.sasl.oauth.token", `is not used with kafka.sasl.mechanism "PLAIN"`},
		{"oauth token without mechanism", src{env: []string{"IDSYNC_KAFKA_SASL_OAUTH_TOKEN=t0k3n"}}, "kafka.sasl.oauth.token", `is not used with kafka.sasl.mechanism ""`},
		{"aws without credentials", src{env: []string{"IDSYNC_KAFKA_SASL_MECHANISM=AWS_MSK_IAM"}}, "kafka.sasl.aws.access_key_id", "or the AWS_ACCESS_KEY_ID environment variable"},
		{"aws without tls", src{env: []string{"IDSYNC_KAFKA_SASL_MECHANISM=AWS_MSK_IAM", "AWS_ACCESS_KEY_ID=AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY=s3cret"}}, "kafka.tls.enabled", "Amazon MSK serves IAM authentication over TLS only"},
		{"aws without secret", src{env: []string{"IDSYNC_KAFKA_SASL_MECHANISM=AWS_MSK_IAM", "AWS_ACCESS_KEY_ID=AKIAEXAMPLE"}}, "kafka.sasl.aws.secret_access_key", "AWS_SECRET_ACCESS_KEY"},
		{"aws keys with SCRAM", src{file: "kafka: {sasl: {mechanism: SCRAM-SHA-256, username: u, password: pw-12345, aws: {access_key_id: AKIAEXAMPLE}}}\n"}, "kafka.sasl.aws.access_key_id", "is not used"},
		{"aws with a password", src{env: []string{"IDSYNC_KAFKA_SASL_MECHANISM=AWS_MSK_IAM", "AWS_ACCESS_KEY_ID=AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY=s3cret", "IDSYNC_KAFKA_SASL_PASSWORD=pw"}}, "kafka.sasl.password", "is not used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.s.files = mergeFiles(files, tt.s.files)
			_, err := load(t, tt.s)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			for _, p := range ce.Problems {
				if p.Key == tt.key && strings.Contains(p.Message, tt.msg) {
					if !strings.Contains(err.Error(), tt.key+": ") {
						t.Errorf("message %q does not name %s", err, tt.key)
					}
					return
				}
			}
			t.Errorf("no problem %s: …%s…; got %v", tt.key, tt.msg, err)
		})
	}
}

func mergeFiles(a, b map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

// TestValidateReportsEverything checks that Validate lists every problem,
// not only the first.
func TestValidateReportsEverything(t *testing.T) {
	c := Default()
	c.Kafka.Delivery = "twice"
	c.Log.Level = "loud"
	c.Processing.PhoneRegion = "ZZ"
	err := c.Validate()
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 3 {
		t.Fatalf("Validate() = %v, want 3 problems", err)
	}
	want := `invalid configuration: kafka.delivery: must be at_least_once or exactly_once (got "twice"); processing.phone_region: must be a region code such as US or GB (got "ZZ"); log.level: must be debug, info, warn or error (got "loud")`
	if err.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", err, want)
	}
}

// TestValidateCountsFilesAsValues checks that a hand-built Config naming a
// password file is not refused for a missing password.
func TestValidateCountsFilesAsValues(t *testing.T) {
	c := Default()
	c.Kafka.SASL = SASL{Mechanism: SASLPlain, Username: "u", PasswordFile: "/run/secrets/kafka"}
	c.Admin.Tokens = []Token{{Name: "a", TokenFile: "/run/secrets/admin", Scope: ScopeWrite}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
