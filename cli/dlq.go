package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/idsync/idsync/app"
	"github.com/idsync/idsync/dlq"
	"github.com/idsync/idsync/idsync"
)

// dlqFilterFlags are the selection flags of "idsync dlq stats" and
// "idsync dlq replay" (dlq.Filter).
type dlqFilterFlags struct {
	since, until      string
	codes, dests      []string
	partitions        []int32
	offsets           string
	dlqTopic, inTopic string
}

func (f *dlqFilterFlags) bind(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.since, "since", "", "only dead letters whose input is at or after this time: RFC 3339, or a duration back from now (24h)")
	fs.StringVar(&f.until, "until", "", "only dead letters whose input is before this time (RFC 3339 or a duration back from now)")
	fs.StringArrayVar(&f.codes, "code", nil, "only this dead-letter code (repeatable): "+codeList())
	fs.StringArrayVar(&f.dests, "destination", nil, `only this destination id (repeatable; "none" for dead letters of a whole record)`)
	fs.Int32SliceVar(&f.partitions, "source-partition", nil, "only dead letters of this input partition (repeatable)")
	fs.StringVar(&f.offsets, "source-offsets", "", "only input offsets in MIN-MAX (or one offset N), with --source-partition")
	fs.StringVar(&f.dlqTopic, "dlq-topic", "", "the dead-letter topic (default kafka.dlq_topic)")
	fs.StringVar(&f.inTopic, "input-topic", "", "the input topic replays go to (default kafka.input_topic)")
	_ = cmd.RegisterFlagCompletionFunc("code", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return codes(), cobra.ShellCompDirectiveNoFileComp
	})
}

// filter turns the flags into a dlq.Filter (now: for durations).
func (f *dlqFilterFlags) filter(now time.Time) (dlq.Filter, error) {
	var out dlq.Filter
	var err error
	if out.Since, err = timeFlag("since", f.since, now); err != nil {
		return out, err
	}
	if out.Until, err = timeFlag("until", f.until, now); err != nil {
		return out, err
	}
	for _, c := range f.codes {
		if !strings.Contains(" "+strings.Join(codes(), " ")+" ", " "+c+" ") {
			return out, usageErrorf("--code %q: want one of %s", c, codeList())
		}
		out.Codes = append(out.Codes, idsync.Code(c))
	}
	for _, d := range f.dests {
		if d == "none" {
			d = ""
		}
		out.Destinations = append(out.Destinations, d)
	}
	out.SourcePartitions = f.partitions
	if f.offsets != "" && len(f.partitions) == 0 {
		// Offsets mean nothing across partitions.
		return out, usageErrorf("--source-offsets needs --source-partition: offsets are positions in one partition")
	}
	if f.offsets != "" {
		lo, hi, found := strings.Cut(f.offsets, "-")
		if !found {
			hi = lo
		}
		min, err1 := strconv.ParseInt(strings.TrimSpace(lo), 10, 64)
		max, err2 := strconv.ParseInt(strings.TrimSpace(hi), 10, 64)
		if err1 != nil || err2 != nil || min < 0 || min > max {
			return out, usageErrorf("--source-offsets %q: want MIN-MAX (0 ≤ MIN ≤ MAX) or one offset", f.offsets)
		}
		out.SourceOffsets = &dlq.OffsetRange{Min: min, Max: max}
	}
	if !out.Since.IsZero() && !out.Until.IsZero() && !out.Since.Before(out.Until) {
		return out, usageErrorf("--since must be before --until")
	}
	return out, nil
}

// timeFlag reads an RFC 3339 time or a duration back from now.
func timeFlag(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usageErrorf("--%s %q: want an RFC 3339 time (2026-06-01T12:00:00Z) or a duration back from now (24h)", name, v)
}

func codes() []string {
	var out []string
	for _, c := range idsync.Codes {
		out = append(out, string(c))
	}
	return out
}

func codeList() string { return strings.Join(codes(), ", ") }

// dlqClient connects as the service does (kafkaClient checks that a broker
// answers) and returns the dlq client for the topics of the settings or
// flags.
func dlqClient(cmd *cobra.Command, env Env, f *dlqFilterFlags, marker string) (*dlq.Client, error) {
	cl, k, err := kafkaClient(cmd, env)
	if err != nil {
		return nil, err
	}
	cl.Close() // dlq makes its own clients, call by call
	conn, err := app.KafkaConnOpts(*k)
	if err != nil {
		return nil, &exitError{code: ExitUsage, err: err}
	}
	cfg := dlq.Config{Brokers: k.Brokers, DLQTopic: k.DLQTopic, InputTopic: k.InputTopic, MarkerTopic: marker, ClientOpts: conn}
	if f.dlqTopic != "" {
		cfg.DLQTopic = f.dlqTopic
	}
	if f.inTopic != "" {
		cfg.InputTopic = f.inTopic
	}
	c, err := dlq.New(cfg)
	if err != nil {
		return nil, &exitError{code: ExitUsage, err: err}
	}
	return c, nil
}

// newDLQCmd is "idsync dlq": stats and replay of the dead-letter topic.
func newDLQCmd(env Env) *cobra.Command {
	g := newGroup("dlq", "Count and replay dead letters",
		`Reads the dead-letter topic (kafka.dlq_topic). "stats" counts dead letters by
code and destination; "replay" produces selected ones back into the input
topic, once each, after the cause is fixed (docs/operations.md, "Replaying
dead letters").

`+kafkaFlagsHelp)
	g.Example = `  idsync dlq stats --since 24h
  idsync dlq replay --code invalid_config --destination fbca_01 --dry-run
  idsync dlq replay --code invalid_config --destination fbca_01`
	bindKafkaFlags(g, true)
	g.AddCommand(newDLQStatsCmd(env), newDLQReplayCmd(env))
	return g
}

func newDLQStatsCmd(env Env) *cobra.Command {
	var f dlqFilterFlags
	cmd := &cobra.Command{
		Use:   "stats [--since 24h] [--code CODE] [--destination ID] [-o text|json]",
		Short: "Count dead letters by code and destination",
		Long: `Reads the dead-letter topic from the first dead letter of --since (the start
without it) to its end when the command starts, and counts the selected dead
letters by code, destination and source partition.

Exit codes: 0 done; 1 the read failed; 2 bad usage or invalid settings;
4 no broker could be reached.`,
		Example: `  idsync dlq stats
  idsync dlq stats --since 2026-06-01T00:00:00Z --until 2026-06-02T00:00:00Z -o json
  idsync dlq stats --since 1h --code destination_refused`,
		Args: argsNamed(),
	}
	f.bind(cmd)
	out := bindOutput(cmd, false, "output: text or json")
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		filter, err := f.filter(time.Now())
		if err != nil {
			return err
		}
		c, err := dlqClient(cmd, env, &f, "")
		if err != nil {
			return err
		}
		st, err := c.Stats(cmd.Context(), filter)
		if err != nil {
			return refusedIfDenied(err)
		}
		warnUnread(env.Stderr, st.Unread)
		if *out == outputJSON {
			return writeJSONTo(env.Stdout, map[string]any{
				"scanned": st.Scanned, "matched": st.Matched, "counts": countsJSON(st.Counts),
				"by_code": st.ByCode(), "by_destination": destinationsJSON(st.ByDestination()), "unread_partitions": nonNil(st.Unread),
			})
		}
		fmt.Fprintf(env.Stdout, "%d dead letters read, %d selected\n", st.Scanned, st.Matched)
		if st.Matched == 0 {
			return nil
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CODE\tDESTINATION\tSOURCE PARTITION\tDEAD LETTERS")
		for _, c := range st.Counts {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", c.Code, destName(c.Destination), c.SourcePartition, c.DeadLetters)
		}
		_ = tw.Flush()
		fmt.Fprintln(env.Stdout)
		printTotals(env.Stdout, "by code", mapOf(st.ByCode()))
		byDest := map[string]int{}
		for d, n := range st.ByDestination() {
			byDest[destName(d)] = n
		}
		printTotals(env.Stdout, "by destination", byDest)
		return nil
	})
	return cmd
}

func newDLQReplayCmd(env Env) *cobra.Command {
	var f dlqFilterFlags
	var dryRun, again bool
	var batch, limit int
	var marker string
	cmd := &cobra.Command{
		Use:   "replay [--code CODE] [--destination ID] [--since T] [--dry-run] [--again]",
		Short: "Produce selected dead letters back into the input topic, once each",
		Long: `Selects dead letters and produces each back into the input topic as it was on
input (key, value, headers, timestamp) with the header idsync-replay-of naming
it; the running idsync processes it like any event. --dry-run lists what would
be replayed and changes nothing.

Each dead letter is replayed once: the compacted marker topic (<dlq>.replayed)
records it in the same Kafka transaction as its replay, so running the same
command twice, or again after a crash or Ctrl-C, replays nothing twice;
--again replays letters replayed before too. Dead letters that cannot be
replayed as their input was (a truncated value, key or header set, or written
by an older idsync) are skipped and counted by reason.

Exit codes: 0 done (also when nothing matched); 1 the replay failed or was
interrupted (what was committed is in the summary); 2 bad usage or invalid
settings; 4 no broker could be reached.`,
		Example: `  idsync dlq replay --code invalid_config --destination fbca_01 --dry-run
  idsync dlq replay --code invalid_config --destination fbca_01 --since 24h
  idsync dlq replay --source-partition 3 --source-offsets 1200-1300 -o json`,
		Args: argsNamed(),
	}
	f.bind(cmd)
	fs := cmd.Flags()
	fs.BoolVar(&dryRun, "dry-run", false, "list what would be replayed; produce nothing")
	fs.BoolVar(&again, "again", false, "replay dead letters replayed before too")
	fs.IntVar(&batch, "batch-size", 100, "dead letters per transaction")
	fs.IntVar(&limit, "limit", 1000, "list at most this many dead letters (-1: none)")
	fs.StringVar(&marker, "marker-topic", "", "the topic recording what was replayed (default <dlq topic>.replayed)")
	out := bindOutput(cmd, false, "output: text or json")
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		if batch < 1 {
			return usageErrorf("--batch-size %d: want at least 1", batch)
		}
		if limit < -1 {
			return usageErrorf("--limit %d: want -1 or more", limit)
		}
		filter, err := f.filter(time.Now())
		if err != nil {
			return err
		}
		c, err := dlqClient(cmd, env, &f, marker)
		if err != nil {
			return err
		}
		listLimit := limit
		if listLimit == 0 {
			listLimit = -1 // dlq: 0 is its default, -1 none
		}
		opt := dlq.ReplayOptions{DryRun: dryRun, Again: again, BatchSize: batch, ListLimit: listLimit}
		bar := env.Terminal(env.Stderr) && !dryRun
		if bar {
			opt.Progress = func(done, total int) { progressBar(env.Stderr, "replaying", done, total) }
		}
		sum, rerr := c.Replay(cmd.Context(), filter, opt)
		if bar && sum.Replayed > 0 {
			fmt.Fprintln(env.Stderr)
		}
		warnUnread(env.Stderr, sum.Unread)
		if *out == outputJSON {
			if err := writeJSONTo(env.Stdout, replayJSON(sum)); err != nil {
				return err
			}
		} else {
			printReplay(env.Stdout, sum)
		}
		if rerr != nil {
			if errors.Is(rerr, cmd.Context().Err()) && cmd.Context().Err() != nil {
				return fmt.Errorf("interrupted: %d dead letters replayed and committed; run the same command again to replay the rest", sum.Replayed)
			}
			return refusedIfDenied(rerr)
		}
		return nil
	})
	return cmd
}

// refusedIfDenied gives an authorization refusal by the brokers (a
// missing ACL on a topic, the group or the transactional id) the exit code
// of a refusal by the server; other errors stay failures.
func refusedIfDenied(err error) error {
	for _, denied := range []error{kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed,
		kerr.TransactionalIDAuthorizationFailed, kerr.ClusterAuthorizationFailed} {
		if errors.Is(err, denied) {
			return &exitError{code: ExitRefused, err: err}
		}
	}
	return err
}

func printReplay(w io.Writer, s dlq.Summary) {
	verb := "replayed"
	if s.DryRun {
		verb = "would replay"
	}
	fmt.Fprintf(w, "%d dead letters read, %d selected: %s %d, already replayed %d", s.Scanned, s.Matched, verb, s.Replayed, s.AlreadyReplayed)
	var skipped []string
	for r, n := range s.Skipped {
		skipped = append(skipped, fmt.Sprintf("%s %d", r, n))
	}
	sort.Strings(skipped)
	if len(skipped) > 0 {
		fmt.Fprintf(w, ", skipped %s", strings.Join(skipped, ", "))
	}
	fmt.Fprintln(w)
	if len(s.Letters) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ PARTITION/OFFSET\tINPUT TIME\tCODE\tDESTINATION\tOUTCOME\tERROR")
	for _, l := range s.Letters {
		msg := l.Error
		if len(msg) > 80 {
			msg = msg[:77] + "..."
		}
		fmt.Fprintf(tw, "%d/%d\t%s\t%s\t%s\t%s\t%s\n", l.Partition, l.Offset, l.Timestamp.UTC().Format(time.RFC3339), l.Code, destName(l.Destination), l.Outcome, msg)
	}
	_ = tw.Flush()
	if len(s.Letters) < s.Matched {
		fmt.Fprintf(w, "(%d more not listed; --limit)\n", s.Matched-len(s.Letters))
	}
}

// progressBar redraws one line on a terminal: what, done of total and a bar.
func progressBar(w io.Writer, what string, done, total int) {
	const width = 30
	filled := width
	if total > 0 {
		filled = min(max(done*width/total, 0), width)
	}
	fmt.Fprintf(w, "\r%s [%s%s] %d/%d", what, strings.Repeat("#", filled), strings.Repeat(" ", width-filled), done, total)
}

func warnUnread(w io.Writer, parts []int32) {
	if len(parts) > 0 {
		fmt.Fprintf(w, "idsync: warning: dead-letter partitions %v delivered nothing for a while and were not read to their end; run again to cover them\n", parts)
	}
}

func destName(d string) string {
	if d == "" {
		return "(none)"
	}
	return d
}

func mapOf(m map[idsync.Code]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[string(k)] = v
	}
	return out
}

func printTotals(w io.Writer, title string, m map[string]int) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	fmt.Fprintf(w, "%s: %s\n", title, strings.Join(parts, ", "))
}

func countsJSON(cs []dlq.Count) []map[string]any {
	out := []map[string]any{}
	for _, c := range cs {
		out = append(out, map[string]any{"code": c.Code, "destination": c.Destination, "source_partition": c.SourcePartition, "dead_letters": c.DeadLetters})
	}
	return out
}

func destinationsJSON(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[destName(k)] = v
	}
	return out
}

func replayJSON(s dlq.Summary) map[string]any {
	letters := []map[string]any{}
	for _, l := range s.Letters {
		letters = append(letters, map[string]any{
			"partition": l.Partition, "offset": l.Offset, "timestamp": l.Timestamp.UTC(), "code": l.Code,
			"destination": l.Destination, "source_partition": l.SourcePartition, "source_offset": l.SourceOffset,
			"error": l.Error, "outcome": l.Outcome,
		})
	}
	skipped := map[string]int{}
	for r, n := range s.Skipped {
		skipped[string(r)] = n
	}
	return map[string]any{"dry_run": s.DryRun, "scanned": s.Scanned, "matched": s.Matched, "replayed": s.Replayed,
		"already_replayed": s.AlreadyReplayed, "skipped": skipped, "letters": letters, "unread_partitions": nonNil(s.Unread)}
}

func nonNil(p []int32) []int32 {
	if p == nil {
		return []int32{}
	}
	return p
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
