package app

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/idsync/idsync/config"
)

// TestKafkaLogger: the Kafka client's messages below log.kafka_level are
// dropped, and so are those below log.level; what passes carries
// component=kafka.
func TestKafkaLogger(t *testing.T) {
	levels := []kgo.LogLevel{kgo.LogLevelDebug, kgo.LogLevelInfo, kgo.LogLevelWarn, kgo.LogLevelError}
	tests := []struct {
		level, kafkaLevel string
		wantClientLevel   kgo.LogLevel
		want              []string // the messages logged, of "debug", "info", "warn", "error"
	}{
		{"info", "warn", kgo.LogLevelWarn, []string{"warn", "error"}},
		{"info", "info", kgo.LogLevelInfo, []string{"info", "warn", "error"}},
		{"info", "debug", kgo.LogLevelInfo, []string{"info", "warn", "error"}},
		{"debug", "debug", kgo.LogLevelDebug, []string{"debug", "info", "warn", "error"}},
		{"error", "warn", kgo.LogLevelError, []string{"error"}},
		{"debug", "error", kgo.LogLevelError, []string{"error"}},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.kafkaLevel, func(t *testing.T) {
			var buf bytes.Buffer
			l := config.Log{Level: tt.level, KafkaLevel: tt.kafkaLevel}
			base := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: l.SlogLevel()}))
			kl := kslog.New(KafkaLogger(base, l))
			if got := kl.Level(); got != tt.wantClientLevel {
				t.Errorf("client level %v, want %v", got, tt.wantClientLevel)
			}
			for _, lv := range levels {
				kl.Log(lv, strings.ToLower(lv.String()), "broker", "1")
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if line == "" {
					continue
				}
				var rec struct {
					Msg       string `json:"msg"`
					Component string `json:"component"`
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("%v: %s", err, line)
				}
				if rec.Component != "kafka" {
					t.Errorf("line without component=kafka: %s", line)
				}
				got = append(got, rec.Msg)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("logged %v, want %v", got, tt.want)
			}
		})
	}
}
