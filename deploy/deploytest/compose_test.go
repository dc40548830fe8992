package deploytest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/idsync/idsync/config"
)

// composeFile is the part of the Compose specification the test reads.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

type composeService struct {
	Image    string   `yaml:"image"`
	Profiles []string `yaml:"profiles"`
	Build    *struct {
		Context    string            `yaml:"context"`
		Dockerfile string            `yaml:"dockerfile"`
		Args       map[string]string `yaml:"args"`
	} `yaml:"build"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Secrets     []string          `yaml:"secrets"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	var c struct {
		composeFile `yaml:",inline"`
	}
	// depends_on is a list for prometheus (short form) and a map elsewhere:
	// normalise with a first pass over a generic tree.
	var raw map[string]any
	readYAML(t, filepath.Join(Root(), "docker-compose.yml"), &raw)
	for _, s := range raw["services"].(map[string]any) {
		svc := s.(map[string]any)
		if l, ok := svc["depends_on"].([]any); ok {
			m := map[string]any{}
			for _, n := range l {
				m[n.(string)] = map[string]any{"condition": "service_started"}
			}
			svc["depends_on"] = m
		}
	}
	b, err := yamlMarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := unmarshalYAML(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.composeFile
}

// TestCompose: docker-compose.yml runs Kafka (official image, KRaft),
// Redis, idsync from the Dockerfile, an optional demo, Prometheus and
// Grafana, with health checks, the files it mounts present, and an idsync
// configuration idsync accepts.
func TestCompose(t *testing.T) {
	c := readCompose(t)
	for _, name := range []string{"kafka", "kafka-init", "redis", "idsync", "idsync-demo", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("service %s missing", name)
		}
	}

	kafka := c.Services["kafka"]
	if !strings.HasPrefix(kafka.Image, "apache/kafka:4.") {
		t.Errorf("kafka image %q, want the official apache/kafka:4.x", kafka.Image)
	}
	if roles := kafka.Environment["KAFKA_PROCESS_ROLES"]; roles != "broker,controller" {
		t.Errorf("kafka KAFKA_PROCESS_ROLES=%q, want a single KRaft node (broker,controller)", roles)
	}
	if !strings.Contains(kafka.Environment["KAFKA_ADVERTISED_LISTENERS"], "PLAINTEXT://kafka:9092") {
		t.Errorf("kafka does not advertise kafka:9092 to the other containers")
	}
	if !strings.HasPrefix(c.Services["redis"].Image, "redis:7") {
		t.Errorf("redis image %q, want redis:7", c.Services["redis"].Image)
	}
	for _, name := range []string{"kafka", "redis", "prometheus", "grafana"} {
		if hc := c.Services[name].Healthcheck; hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" {
			t.Errorf("%s: no exec-form health check", name)
		}
	}

	// Every file or directory bind-mounted, and every secret file, is in the
	// repository.
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				mustExist(t, filepath.Join(Root(), src), name+" mounts "+src)
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s mounts %q: neither a repository path nor a named volume", name, src)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				t.Errorf("%s uses undeclared secret %s", name, sec)
			}
		}
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
			}
		}
		if s.Build != nil {
			mustExist(t, filepath.Join(Root(), s.Build.Context, "Dockerfile"), name+" builds from the Dockerfile")
		}
	}
	for name, sec := range c.Secrets {
		mustExist(t, filepath.Join(Root(), sec.File), "secret "+name)
	}

	id := c.Services["idsync"]
	if id.Build == nil || id.Build.Context != "." {
		t.Errorf("idsync is not built from the repository's Dockerfile")
	}
	for _, dep := range []string{"kafka", "redis"} {
		if id.DependsOn[dep].Condition != "service_healthy" {
			t.Errorf("idsync does not wait for %s to be healthy", dep)
		}
	}
	if id.DependsOn["kafka-init"].Condition != "service_completed_successfully" {
		t.Errorf("idsync does not wait for the input topic (kafka-init)")
	}
	if !slices.Contains(c.Services["idsync-demo"].Profiles, "demo") {
		t.Errorf("idsync-demo is not behind the demo profile")
	}
	prom := c.Services["prometheus"]
	for _, m := range []string{"./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml", "./deploy/prometheus/rules:/etc/prometheus/rules"} {
		if !slices.ContainsFunc(prom.Volumes, func(v string) bool { return strings.HasPrefix(v, m) }) {
			t.Errorf("prometheus does not mount %s", m)
		}
	}
	graf := c.Services["grafana"]
	for _, m := range []string{
		"./deploy/grafana/provisioning/datasources:/etc/grafana/provisioning/datasources",
		"./deploy/grafana/provisioning/dashboards:/etc/grafana/provisioning/dashboards",
		"./deploy/grafana/dashboards:/var/lib/grafana/dashboards",
	} {
		if !slices.ContainsFunc(graf.Volumes, func(v string) bool { return strings.HasPrefix(v, m) }) {
			t.Errorf("grafana does not mount %s", m)
		}
	}
	for svc, port := range map[string]string{"prometheus": "9090", "grafana": "3000", "kafka": "9094"} {
		if !slices.Contains(c.Services[svc].Ports, "127.0.0.1:"+port+":"+port) {
			t.Errorf("%s does not publish port %s on 127.0.0.1", svc, port)
		}
	}
	// Every published port is bound to the loopback interface: the stack
	// has a committed admin token, Grafana's admin/admin and an open Kafka.
	for name, s := range c.Services {
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") || strings.Count(p, ":") != 2 {
				t.Errorf("%s publishes %q: want 127.0.0.1:<host port>:<container port>", name, p)
			}
		}
	}

	// Each idsync service: the configuration it gets is accepted by
	// config.Load, it listens on every interface inside the container, and
	// its ops and admin ports are published.
	for _, name := range []string{"idsync", "idsync-demo"} {
		s := c.Services[name]
		mounts := map[string]string{}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && strings.HasPrefix(parts[0], "./") {
				mounts[parts[1]] = filepath.Join(Root(), parts[0])
			}
		}
		for _, sec := range s.Secrets {
			mounts["/run/secrets/"+sec] = filepath.Join(Root(), c.Secrets[sec].File)
		}
		var env []string
		for k, v := range s.Environment {
			env = append(env, k+"="+v)
		}
		cfg, err := loadConfig(t, env, s.Command, mounts)
		if err != nil {
			configError(t, name, err)
			continue
		}
		for what, addr := range map[string]string{"ops.listen": cfg.Ops.Listen, "admin.listen": cfg.Admin.Listen} {
			host, port, err := net.SplitHostPort(addr)
			if err != nil || host != "0.0.0.0" {
				t.Errorf("%s: %s = %q, want 0.0.0.0:<port> (reachable from outside the container)", name, what, addr)
				continue
			}
			if !slices.ContainsFunc(s.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port) }) {
				t.Errorf("%s: %s port %s is not published (ports %v)", name, what, port, s.Ports)
			}
		}
		if name == "idsync" {
			if fmt.Sprint(cfg.Kafka.Brokers) != "[kafka:9092]" || fmt.Sprint(cfg.Redis.Addrs) != "[redis:6379]" {
				t.Errorf("idsync: brokers %v, redis %v; want the compose services", cfg.Kafka.Brokers, cfg.Redis.Addrs)
			}
			if len(cfg.Admin.Tokens) == 0 {
				t.Errorf("idsync: no admin token configured")
			}
			for i, tok := range cfg.Admin.Tokens {
				if len(tok.Token) < config.MinTokenLen {
					t.Errorf("idsync: admin.tokens[%d] is %d characters, want at least %d", i, len(tok.Token), config.MinTokenLen)
				}
			}
			if !strings.Contains(strings.Join(c.Services["kafka-init"].Command, " "), "--topic "+cfg.Kafka.InputTopic) {
				t.Errorf("kafka-init does not create the input topic %s", cfg.Kafka.InputTopic)
			}
		}
		if name == "idsync-demo" && !cfg.Embedded.Enabled {
			t.Errorf("idsync-demo does not run embedded")
		}
	}
}

// TestComposeRefusesPlaceholderToken: the compose idsync service, given a
// placeholder or a short token in its secret file instead of the committed
// one, does not start: config.Load names the token_file setting and never
// prints the token. The demo (embedded) keeps its demo token.
func TestComposeRefusesPlaceholderToken(t *testing.T) {
	c := readCompose(t)
	s := c.Services["idsync"]
	if len(s.Secrets) != 1 {
		t.Fatalf("idsync secrets %v, want the admin token only", s.Secrets)
	}
	for _, tc := range []struct{ name, token, want string }{
		{"placeholder", "REPLACE-with-a-random-token-of-32-characters", "placeholder"},
		{"changeme", "changeme-changeme-changeme", "placeholder"},
		{"short", "s3cr3t-tok", "at least 16 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokenFile := filepath.Join(t.TempDir(), "admin-token")
			if err := os.WriteFile(tokenFile, []byte(tc.token+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			mounts := map[string]string{"/run/secrets/" + s.Secrets[0]: tokenFile}
			for _, v := range s.Volumes {
				parts := strings.Split(v, ":")
				if len(parts) >= 2 && strings.HasPrefix(parts[0], "./") {
					mounts[parts[1]] = filepath.Join(Root(), parts[0])
				}
			}
			var env []string
			for k, v := range s.Environment {
				env = append(env, k+"="+v)
			}
			_, err := loadConfig(t, env, s.Command, mounts)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("config.Load with a %s token: err = %v, want a *config.Error", tc.name, err)
			}
			if strings.Contains(err.Error(), tc.token) {
				t.Errorf("the error quotes the token: %v", err)
			}
			for _, p := range ce.Problems {
				if p.Key == "admin.tokens[0].token_file" && strings.Contains(p.Message, tc.want) {
					return
				}
			}
			t.Errorf("no problem admin.tokens[0].token_file: …%s…; got %v", tc.want, err)
		})
	}
}
