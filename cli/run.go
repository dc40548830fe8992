package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/idsync/idsync/app"
	"github.com/idsync/idsync/config"
)

const runUsage = `Usage: idsync run [--embedded] [--config idsync.yaml] [flags]

Runs the processor until SIGINT or SIGTERM, then drains, commits and exits.
Settings come from flags, IDSYNC_* environment variables, the configuration
file and defaults, in that order (docs/configuration.md lists them all).
With --embedded, idsync starts an in-process Kafka and Redis with demo
connections and synthetic traffic: nothing else is needed.

Exit codes: 0 clean shutdown; 1 failure while running; 2 invalid settings.

Flags:
`

// clockOffsetEnv skews the processor clock by a duration ("-2s"). It exists
// for the reliability tests (instances with skewed clocks) and is not a
// setting: never set it in production.
const clockOffsetEnv = "IDSYNC_TEST_CLOCK_OFFSET"

// runRun is "idsync run".
func runRun(ctx context.Context, env Env, args []string) int {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	config.BindFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, runUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "idsync run: unexpected argument %q\n", fs.Arg(0))
		return ExitUsage
	}
	cfg, err := config.Load(config.LoadOptions{Env: env.Environ, Flags: fs})
	if err != nil {
		fmt.Fprintf(env.Stderr, "idsync run: %v\n", err)
		return ExitUsage
	}
	log := newLogger(env, cfg.Log)
	now := time.Now
	if off := env.Getenv(clockOffsetEnv); off != "" {
		// For the reliability tests only: instances with skewed clocks.
		d, err := time.ParseDuration(off)
		if err != nil {
			fmt.Fprintf(env.Stderr, "idsync run: %s: %v\n", clockOffsetEnv, err)
			return ExitUsage
		}
		now = func() time.Time { return time.Now().Add(d) }
		log.Warn("test clock offset in effect: this instance's clock is skewed", "offset", d)
	}
	err = app.Run(ctx, cfg, app.Options{Version: env.Version, Stdout: env.Stdout, Logger: log, Now: now})
	if err != nil {
		log.Error("idsync stopped", "err", err)
		fmt.Fprintf(env.Stderr, "idsync run: %v\n", err)
		return ExitRefused
	}
	log.Info("idsync stopped cleanly")
	return ExitOK
}

// newLogger returns the process logger on stderr, as the log settings say.
func newLogger(env Env, l config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.Format == "text" {
		return slog.New(slog.NewTextHandler(env.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(env.Stderr, opts))
}
