// Package cli implements the idsync command line: the subcommands, their
// flags, their output and their exit codes. It holds no service logic: "run"
// hands a loaded configuration to the app package, and the "config" and
// "tail" commands are clients of the admin API and of Kafka.
package cli

import (
	"context"
	"fmt"
	"io"
	"runtime"
)

// Exit codes of every subcommand.
const (
	// ExitOK means the command did what was asked.
	ExitOK = 0
	// ExitRefused means the server refused the request (its messages are printed).
	ExitRefused = 1
	// ExitUsage means bad usage, an invalid setting or an unreachable server.
	ExitUsage = 2
)

// Env is what a command may touch of the process: arguments, standard
// streams, the environment and the build version. Tests pass their own.
type Env struct {
	Args   []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// Environ is the whole environment as "KEY=value" pairs (os.Environ()):
	// configuration loading checks every IDSYNC_ variable against the
	// settings it knows.
	Environ []string
	Version string
}

const usage = `idsync: audience ID Sync stream processor

Usage:
  idsync run [--embedded] [--config idsync.yaml] [flags]   run the processor
  idsync config put|get|list|delete|history|preview|types  manage connections (admin API)
  idsync tail TOPIC [--from-beginning] [--max N]           print a topic's records as JSON lines
  idsync bench [-n N] [--delivery MODE] [--brokers ...]     measure idsync against a bare Kafka loop
  idsync version                                           print the version
  idsync help                                              this text

Run "idsync <command> -h" for a command's flags.
`

// Main runs the subcommand named by env.Args[0] and returns its exit code.
// ctx is cancelled on SIGINT/SIGTERM.
func Main(ctx context.Context, env Env) int {
	if len(env.Args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return ExitUsage
	}
	cmd, args := env.Args[0], env.Args[1:]
	switch cmd {
	case "version", "--version":
		fmt.Fprintf(env.Stdout, "idsync %s (%s, %s/%s)\n", env.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return ExitOK
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return ExitOK
	case "config":
		return runConfig(ctx, env, args)
	case "tail":
		return runTail(ctx, env, args)
	case "run":
		return runRun(ctx, env, args)
	case "bench":
		return runBench(ctx, env, args)
	}
	fmt.Fprintf(env.Stderr, "idsync: unknown command %q\n\n%s", cmd, usage)
	return ExitUsage
}
