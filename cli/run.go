package cli

import (
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/idsync/idsync/app"
	"github.com/idsync/idsync/config"
)

// clockOffsetEnv skews the processor clock by a duration ("-2s"). It exists
// for the reliability tests (instances with skewed clocks) and is not a
// setting: never set it in production.
const clockOffsetEnv = "IDSYNC_TEST_CLOCK_OFFSET"

// newRunCmd is "idsync run".
func newRunCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [--embedded] [--config idsync.yaml] [flags]",
		Short: "Run the processor",
		Long: `Runs the processor until SIGINT or SIGTERM, then drains, commits and exits.

Settings come from flags, IDSYNC_* environment variables, the configuration
file and defaults, in that order (docs/configuration.md lists them all). The
client commands' variables (IDSYNC_ADMIN_ADDR, IDSYNC_ADMIN_TOKEN,
IDSYNC_ADMIN_TOKEN_FILE) are ignored here. With --embedded, idsync starts an
in-process Kafka and Redis with demo connections and synthetic traffic:
nothing else is needed.

The log goes to stderr: text for a person when stderr is a terminal, JSON
lines otherwise (--log.format auto|json|text); the Kafka client's own
messages from warn up (--log.kafka-level).

Exit codes: 0 clean shutdown; 1 failure while running; 2 invalid settings.`,
		Example: `  idsync run --embedded
  idsync run --config /etc/idsync/idsync.yaml --log.level debug
  IDSYNC_KAFKA_BROKERS=k1:9092,k2:9092 IDSYNC_REDIS_ADDRS=redis:6379 idsync run
  idsync run --embedded --log.format json --log.kafka-level info   # everything, for a collector`,
		Args: argsNamed(),
	}
	config.BindFlags(cmd.Flags())
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		cfg, err := config.Load(config.LoadOptions{Env: env.Environ, Flags: cmd.Flags()})
		if err != nil {
			return &exitError{code: ExitUsage, err: err}
		}
		log := newLogger(env.Stderr, cfg.Log, env.Terminal(env.Stderr))
		now := time.Now
		if off := env.Getenv(clockOffsetEnv); off != "" {
			// For the reliability tests only: instances with skewed clocks.
			d, err := time.ParseDuration(off)
			if err != nil {
				return usageErrorf("%s: %v", clockOffsetEnv, err)
			}
			now = func() time.Time { return time.Now().Add(d) }
			log.Warn("test clock offset in effect: this instance's clock is skewed", "offset", d)
		}
		err = app.Run(cmd.Context(), cfg, app.Options{Version: env.Version, Stdout: env.Stdout, Logger: log, Now: now})
		if se := (*app.SettingsError)(nil); errors.As(err, &se) {
			return &exitError{code: ExitUsage, err: err}
		}
		if err != nil {
			log.Error("idsync stopped", "err", err)
			if ke := (*app.KafkaConnectError)(nil); errors.As(err, &ke) {
				return &exitError{code: ExitUnavailable, err: err}
			}
			return err
		}
		log.Info("idsync stopped cleanly")
		return nil
	})
	return cmd
}

// newLogger returns the process logger on w, as the log settings say:
// text when l.Text(terminal) (with a short wall-clock time, for a person
// reading a terminal), else JSON lines.
func newLogger(w io.Writer, l config.Log, terminal bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.Text(terminal) {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 && a.Value.Kind() == slog.KindTime {
				a.Value = slog.StringValue(a.Value.Time().Format("15:04:05.000"))
			}
			return a
		}
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
