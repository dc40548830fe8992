package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	envKafkaBrokers     = "IDSYNC_KAFKA_BROKERS"
	defaultKafkaBrokers = "127.0.0.1:9092"
)

const tailUsage = `idsync tail: print a Kafka topic's records as JSON lines

Usage:
  idsync tail TOPIC [--brokers host:port,...] [--from-beginning] [--max N] [--read-committed]

Reads every partition without a consumer group (nothing is committed), from
the end unless --from-beginning, until Ctrl-C or --max records. Each line is
{"topic","partition","offset","key","headers","value"}; value is embedded as
JSON when it is JSON, else as a string.

Flags:
  --brokers LIST     seed brokers (default $IDSYNC_KAFKA_BROKERS, else ` + defaultKafkaBrokers + `)
  --from-beginning   start at the oldest retained record of each partition
  --max N            stop after N records (default 0: no limit)
  --read-committed   skip records of aborted transactions and wait for open ones
`

// tailLine is one record as tail prints it.
type tailLine struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Key       *string           `json:"key"`
	Headers   map[string]string `json:"headers"`
	Value     any               `json:"value"`
}

// runTail runs "idsync tail". It returns ExitOK when ctx is cancelled or
// --max records were printed, ExitUsage for bad usage.
func runTail(ctx context.Context, env Env, args []string) int {
	fs := flag.NewFlagSet("idsync tail", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() { fmt.Fprint(env.Stderr, tailUsage) }
	brokers := env.Getenv(envKafkaBrokers)
	if brokers == "" {
		brokers = defaultKafkaBrokers
	}
	fs.StringVar(&brokers, "brokers", brokers, "seed brokers")
	fromBeginning := fs.Bool("from-beginning", false, "start at the oldest record")
	maxRecords := fs.Int("max", 0, "stop after N records")
	readCommitted := fs.Bool("read-committed", false, "read committed records only")

	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return ExitOK
			}
			return ExitUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if len(pos) != 1 || pos[0] == "" {
		fmt.Fprintf(env.Stderr, "idsync tail: want one TOPIC, got %d arguments\n\n%s", len(pos), tailUsage)
		return ExitUsage
	}
	if *maxRecords < 0 {
		fmt.Fprintf(env.Stderr, "idsync tail: --max %d is negative\n", *maxRecords)
		return ExitUsage
	}
	var seeds []string
	for _, b := range strings.Split(brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			seeds = append(seeds, b)
		}
	}
	if len(seeds) == 0 {
		fmt.Fprintln(env.Stderr, "idsync tail: --brokers is empty")
		return ExitUsage
	}

	start := kgo.NewOffset().AtEnd()
	if *fromBeginning {
		start = kgo.NewOffset().AtStart()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ConsumeTopics(pos[0]),
		kgo.ConsumeResetOffset(start),
	}
	if *readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Fprintf(env.Stderr, "idsync tail: creating the Kafka client: %v\n", err)
		return ExitUsage
	}
	// Close leaves nothing behind: there is no group and no commit.
	defer cl.Close()

	enc := json.NewEncoder(env.Stdout)
	enc.SetEscapeHTML(false)
	printed := 0
	for ctx.Err() == nil {
		limit := -1
		if *maxRecords > 0 {
			limit = *maxRecords - printed
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
			if werr != nil || (*maxRecords > 0 && printed >= *maxRecords) {
				return
			}
			werr = enc.Encode(lineOf(r))
			printed++
		})
		if werr != nil {
			fmt.Fprintf(env.Stderr, "idsync tail: writing: %v\n", werr)
			return ExitUsage
		}
		if *maxRecords > 0 && printed >= *maxRecords {
			break
		}
	}
	return ExitOK
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
