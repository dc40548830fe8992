package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idsync/idsync/app"
	"github.com/idsync/idsync/config"
)

// kafkaFlagsHelp is the part of a Kafka client command's help that says
// where its connection settings come from.
const kafkaFlagsHelp = `The brokers, TLS and SASL come from the service's own settings (kafka.brokers,
kafka.tls.*, kafka.sasl.*): the --config file (else $IDSYNC_CONFIG, else
./idsync.yaml when present), the IDSYNC_KAFKA_* environment, then the flags
below, so the command reaches the brokers exactly as "idsync run" does. The
SASL password comes from --sasl-password-file, $IDSYNC_KAFKA_SASL_PASSWORD(_FILE)
or the file; it has no flag, which would show in ps.`

// bindKafkaFlags registers on cmd the flags of a Kafka client command
// (config.BindKafkaClientFlags: --config, --brokers, --tls*, --sasl-*);
// persistent registers them for every subcommand of a group.
func bindKafkaFlags(cmd *cobra.Command, persistent bool) {
	if persistent {
		config.BindKafkaClientFlags(cmd.PersistentFlags())
		return
	}
	config.BindKafkaClientFlags(cmd.Flags())
}

// kafkaClient loads the settings as "idsync run" would, with cmd's flags
// from bindKafkaFlags (config.LoadOptions.KafkaOnly: only the kafka
// section is read for secrets and validated), and returns a franz-go
// client connected as the service connects (app.KafkaConnOpts: TLS, SASL,
// dial timeout), with opts added, and the kafka settings (for topic
// names). Invalid settings are a usage error (ExitUsage). Before
// returning, it asks the brokers for metadata (kgo.Client.Ping, each seed
// broker tried once, each bounded by kafka.dial_timeout): when none
// answers — unreachable, a TLS handshake that fails, SASL refused — the
// error is ExitUnavailable and names the cause, rather than a command that
// waits in silence. The caller closes the client.
func kafkaClient(cmd *cobra.Command, env Env, opts ...kgo.Opt) (*kgo.Client, *config.Kafka, error) {
	cfg, err := config.Load(config.LoadOptions{Env: env.Environ, Flags: cmd.Flags(), KafkaOnly: true})
	if err != nil {
		return nil, nil, &exitError{code: ExitUsage, err: err}
	}
	conn, err := app.KafkaConnOpts(cfg.Kafka)
	if err != nil {
		return nil, nil, &exitError{code: ExitUsage, err: err}
	}
	all := append([]kgo.Opt{kgo.SeedBrokers(cfg.Kafka.Brokers...), kgo.ClientID(cfg.Kafka.ClientID)}, conn...)
	cl, err := kgo.NewClient(append(all, opts...)...)
	if err != nil {
		return nil, nil, &exitError{code: ExitUsage, err: fmt.Errorf("creating the Kafka client: %w", err)}
	}
	if err := cl.Ping(cmd.Context()); err != nil {
		cl.Close()
		if cmd.Context().Err() != nil {
			// Ctrl-C while connecting: stopping is what was asked.
			return nil, nil, exitCode(ExitOK)
		}
		return nil, nil, &exitError{code: ExitUnavailable, err: fmt.Errorf("reaching the Kafka brokers %s: %w", strings.Join(cfg.Kafka.Brokers, ","), err)}
	}
	return cl, &cfg.Kafka, nil
}

// tailLine is one record as tail prints it.
type tailLine struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Key       *string           `json:"key"`
	Headers   map[string]string `json:"headers"`
	Value     any               `json:"value"`
}

// newTailCmd is "idsync tail".
func newTailCmd(env Env) *cobra.Command {
	var fromBeginning, readCommitted bool
	var maxRecords int
	cmd := &cobra.Command{
		Use:   "tail TOPIC [--from-beginning] [--max N] [--read-committed] [--brokers host:port,...]",
		Short: "Print a Kafka topic's records as JSON lines",
		Long: `Reads every partition of TOPIC without a consumer group (nothing is
committed), from the end unless --from-beginning, until Ctrl-C or --max
records. Each line is {"topic","partition","offset","key","headers","value"};
value is embedded as JSON when it is JSON, else as a string.

` + kafkaFlagsHelp + `

Exit codes: 0 stopped by Ctrl-C or after --max records; 2 bad usage or
invalid settings; 4 no broker could be reached (refused, TLS or SASL failed).`,
		Example: `  idsync tail idsync.dest.fbca_demo --brokers 127.0.0.1:9092
  idsync tail idsync.dlq --from-beginning --max 10 | jq .headers
  idsync tail idsync.dest.fbca_01 --config /etc/idsync/idsync.yaml --read-committed
  idsync tail idsync.dlq --brokers kafka:9093 --tls --tls-ca-file ca.pem \
      --sasl-mechanism SCRAM-SHA-512 --sasl-username ops --sasl-password-file ~/.kafka-pw`,
		Args: argsNamed("TOPIC"),
	}
	bindKafkaFlags(cmd, false)
	cmd.Flags().BoolVar(&fromBeginning, "from-beginning", false, "start at the oldest retained record of each partition")
	cmd.Flags().IntVar(&maxRecords, "max", 0, "stop after N records (0: no limit)")
	cmd.Flags().BoolVar(&readCommitted, "read-committed", false, "skip records of aborted transactions and wait for open ones")
	cmd.RunE = runE(func(cmd *cobra.Command, pos []string) error {
		topic := pos[0]
		if topic == "" {
			return usageErrorf("TOPIC is empty")
		}
		if maxRecords < 0 {
			return usageErrorf("--max %d is negative", maxRecords)
		}
		start := kgo.NewOffset().AtEnd()
		if fromBeginning {
			start = kgo.NewOffset().AtStart()
		}
		opts := []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(start)}
		if readCommitted {
			opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		}
		cl, _, err := kafkaClient(cmd, env, opts...)
		if err != nil {
			return err
		}
		// Close leaves nothing behind: there is no group and no commit.
		defer cl.Close()
		return tail(cmd.Context(), env, cl, maxRecords)
	})
	return cmd
}

// tail prints the records cl consumes until ctx ends or max records
// (0: no limit) were printed.
func tail(ctx context.Context, env Env, cl *kgo.Client, max int) error {
	enc := json.NewEncoder(env.Stdout)
	enc.SetEscapeHTML(false)
	printed := 0
	for ctx.Err() == nil {
		limit := -1
		if max > 0 {
			limit = max - printed
		}
		fetches := cl.PollRecords(ctx, limit)
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, context.DeadlineExceeded) {
				continue
			}
			fmt.Fprintf(env.Stderr, "idsync tail: fetching %s partition %d: %v\n", fe.Topic, fe.Partition, fe.Err)
		}
		var werr error
		fetches.EachRecord(func(r *kgo.Record) {
			if werr != nil || (max > 0 && printed >= max) {
				return
			}
			werr = enc.Encode(lineOf(r))
			printed++
		})
		if werr != nil {
			return fmt.Errorf("writing: %w", werr)
		}
		if max > 0 && printed >= max {
			break
		}
	}
	return nil
}

// lineOf renders a record: the value as JSON when it is JSON (compacted to
// stay on one line), else as a string; a null value stays null.
func lineOf(r *kgo.Record) tailLine {
	l := tailLine{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Headers: map[string]string{}}
	if r.Key != nil {
		k := string(r.Key)
		l.Key = &k
	}
	for _, h := range r.Headers {
		l.Headers[h.Key] = string(h.Value)
	}
	switch {
	case r.Value == nil:
		l.Value = nil
	case json.Valid(r.Value):
		var b bytes.Buffer
		_ = json.Compact(&b, r.Value)
		l.Value = json.RawMessage(b.Bytes())
	default:
		l.Value = string(r.Value)
	}
	return l
}
