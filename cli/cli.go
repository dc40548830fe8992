// Package cli implements the idsync command line on cobra: the commands,
// their flags, help and examples, shell completion, their output and their
// exit codes. It holds no service logic: "run" hands a loaded configuration
// to the app package, "config" is a client of the admin API and "tail" a
// client of Kafka.
//
// Adding a command: write it in its own file as a func(Env) *cobra.Command
// (a group of subcommands starts from newGroup), and add one line to the
// AddCommand call of newRoot. Kafka clients take their connection flags
// from bindKafkaFlags and connect with kafkaClient; tabular output takes
// -o from bindOutput; every RunE is wrapped in runE, and reports through
// the exit errors of this file.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes of every command. A script can tell a mistake of its own (2)
// from a refusal by the server (3) and from a server it could not reach or
// that failed (4).
const (
	// ExitOK means the command did what was asked.
	ExitOK = 0
	// ExitFailure means the command failed while doing it ("idsync run"
	// stopped on an error, "idsync bench" could not finish).
	ExitFailure = 1
	// ExitUsage means bad usage: an unknown command or flag, a wrong number
	// of arguments, an unreadable file, an invalid setting. Nothing was
	// sent anywhere.
	ExitUsage = 2
	// ExitRefused means the server refused the request with a 4xx status
	// (invalid input, not found, a stale --if-match, a missing or
	// insufficient token); its messages are printed on stderr.
	ExitRefused = 3
	// ExitUnavailable means the server could not be reached, answered with
	// a 5xx status, or answered something that is not the API's JSON; for
	// a Kafka client, that no broker could be reached (TLS and SASL
	// failures included).
	ExitUnavailable = 4
)

// exitCodesHelp is the exit code section of "idsync --help".
const exitCodesHelp = `Exit codes:
  0  done
  1  the command failed (idsync run stopped on an error, idsync bench failed)
  2  bad usage: unknown command or flag, wrong arguments, unreadable file, invalid setting
  3  refused by the server (4xx: invalid input, not found, stale --if-match, token)
  4  server unreachable (admin API or Kafka brokers), or it failed (5xx) or answered something unexpected`

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
	// Terminal reports whether w is a terminal; log.format auto asks it of
	// Stderr. nil means never.
	Terminal func(w io.Writer) bool
}

// IsTerminal reports whether w is an *os.File open on a character device:
// a terminal (or /dev/null, where the log format does not matter). It is
// the Terminal of the real process.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// exitError ends a command with an exit code. err, when not nil, is
// printed on stderr after the command's path.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is a usage error (ExitUsage) with a message.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// exitCode is an exit with code and nothing more to print (the command
// printed why).
func exitCode(code int) error { return &exitError{code: code} }

// runE adapts a command's function to cobra: an error that carries no exit
// code is a failure (ExitFailure). Errors cobra makes itself (unknown
// commands and flags, flag values) carry none either, and Main reports them
// as usage errors: so every RunE goes through runE.
func runE(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := f(cmd, args)
		var ee *exitError
		if err != nil && !errors.As(err, &ee) {
			return &exitError{code: ExitFailure, err: err}
		}
		return err
	}
}

// Main runs the command named by env.Args and returns its exit code. ctx
// is cancelled on SIGINT/SIGTERM.
func Main(ctx context.Context, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Terminal == nil {
		env.Terminal = func(io.Writer) bool { return false }
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	root := newRoot(env)
	root.SetArgs(legacyFlags(root, env.Args, env.Stderr))
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if cmd == nil {
		cmd = root
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n", cmd.CommandPath(), ee.err)
		}
		if ee.code == ExitUsage && ee.err != nil {
			fmt.Fprintf(env.Stderr, "Run \"%s --help\" for usage.\n", cmd.CommandPath())
		}
		return ee.code
	}
	// cobra's own errors: an unknown command or flag, a bad flag value.
	fmt.Fprintf(env.Stderr, "%s: %v\nRun \"%s --help\" for usage.\n", cmd.CommandPath(), strings.TrimRight(err.Error(), "\n"), cmd.CommandPath())
	return ExitUsage
}

// newRoot builds the command tree.
func newRoot(env Env) *cobra.Command {
	root := &cobra.Command{
		Use:   "idsync",
		Short: "audience ID Sync stream processor and its admin CLI",
		Long: `idsync consumes audience membership events from Kafka, looks up the ID Sync
connections of each audience and publishes per-destination records to Kafka.
"idsync run" is the service; "idsync config" manages connections through its
admin API; "idsync tail" prints a topic; "idsync dlq" counts and replays dead
letters.

Environment of the client commands (the service ignores these):
  IDSYNC_ADMIN_ADDR        admin API address (default http://127.0.0.1:8088)
  IDSYNC_ADMIN_TOKEN       bearer token
  IDSYNC_ADMIN_TOKEN_FILE  file holding the bearer token
"idsync tail" and "idsync dlq" read the service's kafka.* settings
(IDSYNC_KAFKA_*, --config).

` + exitCodesHelp,
		Example: `  idsync run --embedded                      # everything in-process, with demo traffic
  idsync config list spa_demo aud_first_time_shopper
  idsync tail idsync.dlq --from-beginning --max 10
  source <(idsync completion bash)          # shell completion`,
		Version:       env.Version,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Without a command: the help, as a usage error. (An unknown
		// command is refused before, by cobra, with suggestions.)
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(env.Stderr)
			_ = cmd.Help()
			return exitCode(ExitUsage)
		},
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetVersionTemplate(versionLine(env.Version) + "\n")
	root.AddCommand(
		newRunCmd(env),
		newConfigCmd(env),
		newTailCmd(env),
		newDLQCmd(env),
		newBenchCmd(env),
		newVersionCmd(env),
	)
	strictBuiltins(root)
	return root
}

// strictBuiltins makes cobra's own "completion" and "help" commands refuse
// what they do not know as usage errors (exit 2), like every other command:
// by default "idsync completion bogus" and "idsync help bogus" print a help
// and exit 0.
func strictBuiltins(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "completion":
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					cmd.SetOut(cmd.ErrOrStderr())
					_ = cmd.Help()
					return exitCode(ExitUsage)
				}
				return usageErrorf("unknown shell %q: want bash, zsh, fish or powershell", args[0])
			}
		case "help":
			show := c.Run
			c.Run = nil
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					if target, rest, err := root.Find(args); err != nil || target == root || len(rest) > 0 {
						return usageErrorf("unknown help topic %q", strings.Join(args, " "))
					}
				}
				show(cmd, args)
				return nil
			}
		}
	}
}

// legacyFlags rewrites the single-dash long flags the first CLI accepted
// (its "config" and "tail" commands parsed flags with the standard flag
// package, which takes -addr as well as --addr) to their double-dash
// spelling, warning on w that the single-dash one is deprecated. Only an
// argument before "--" whose name is a long flag of some command is
// rewritten: every shorthand is one letter, so -o, -f, -n and clusters
// such as -qn never match.
func legacyFlags(root *cobra.Command, args []string, w io.Writer) []string {
	long := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) { long[f.Name] = true })
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	out := make([]string, len(args))
	copy(out, args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if len(name) > 1 && long[name] {
			fmt.Fprintf(w, "idsync: -%s is deprecated, write --%s\n", name, name)
			out[i] = "-" + a
		}
	}
	return out
}

// newGroup returns a command that only holds subcommands: without one it
// prints its help on stderr and is a usage error; "help" prints the help
// (kept from the first CLI, which took "idsync config help").
func newGroup(use, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:                        use,
		Short:                      short,
		Long:                       long,
		Args:                       cobra.ArbitraryArgs,
		SuggestionsMinimumDistance: 2,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				cmd.SetOut(cmd.ErrOrStderr())
				_ = cmd.Help()
				return exitCode(ExitUsage)
			case args[0] == "help":
				return cmd.Help()
			}
			hint := ""
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				hint = "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
			}
			return usageErrorf("unknown command %q%s", args[0], hint)
		},
	}
}

// argsNamed accepts exactly the positional arguments names.
func argsNamed(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == len(names) {
			return nil
		}
		if len(names) == 0 {
			return usageErrorf("unexpected argument %q", args[0])
		}
		return usageErrorf("want %d argument(s) (%s), got %d", len(names), strings.Join(names, " "), len(args))
	}
}

// Output formats of -o.
const (
	outputText = "text"
	outputJSON = "json"
)

// bindOutput registers -o/--output on cmd (persistent: for every
// subcommand of a group) and returns where its value goes; checkOutput
// validates it.
func bindOutput(cmd *cobra.Command, persistent bool, usage string) *string {
	fs := cmd.Flags()
	if persistent {
		fs = cmd.PersistentFlags()
	}
	o := fs.StringP("output", "o", outputText, usage)
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{outputText, outputJSON}, cobra.ShellCompDirectiveNoFileComp))
	return o
}

func checkOutput(o string) error {
	if o != outputText && o != outputJSON {
		return usageErrorf("-o %q: want text or json", o)
	}
	return nil
}

func versionLine(v string) string {
	return fmt.Sprintf("idsync %s (%s, %s/%s)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// newVersionCmd is "idsync version".
func newVersionCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Example: "  idsync version\n  idsync version -o json | jq -r .version",
		Args:    argsNamed(),
	}
	output := bindOutput(cmd, false, "output: text or json")
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(*output); err != nil {
			return err
		}
		if *output == outputJSON {
			b, _ := json.Marshal(map[string]string{"version": env.Version, "go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH})
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
			return nil
		}
		fmt.Fprintln(cmd.OutOrStdout(), versionLine(env.Version))
		return nil
	})
	return cmd
}
