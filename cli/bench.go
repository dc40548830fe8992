package cli

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"

	"github.com/idsync/idsync/bench"
	"github.com/idsync/idsync/pipeline"
)

// newBenchCmd is "idsync bench".
func newBenchCmd(env Env) *cobra.Command {
	var cfg bench.Config
	var delivery, brokers, cpuProfile, memProfile string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "bench [-n N] [--delivery at_least_once|exactly_once] [--brokers host:port,...] [--redis host:port] [-o text|json]",
		Short: "Measure idsync against a bare Kafka consume-produce loop",
		Long: `Measures idsync against the limit of its broker. A seeded generator writes N
audience-membership events and stores their connections in Redis; then, on
the same broker, the idsync pipeline and a baseline (a bare franz-go
consume→produce loop writing the same number of records, of the same sizes,
to the same topics) each consume them. Reported for both: events/s, output
records/s, MB/s, end-to-end p50/p99 latency (paced phase), CPU seconds per
million events, peak RSS; and the ratio idsync/baseline of events/s.

Without --brokers it runs on an embedded kfake broker, and without --redis
on an embedded miniredis: handy for a smoke test, not for figures.
--stall D runs the stalled-destination test instead (embedded broker only).
Progress goes to stderr, the report to stdout.

Exit codes: 0 done; 1 the benchmark failed; 2 bad usage.`,
		Example: `  idsync bench -n 20000                                   # smoke run, embedded broker
  idsync bench -n 1000000 --rounds 3 --brokers k1:9092 --redis redis:6379 -o json
  idsync bench --stall 30s`,
		Args: argsNamed(),
	}
	fs := cmd.Flags()
	fs.IntVarP(&cfg.Events, "events", "n", 100_000, "number of input events")
	fs.StringVar(&delivery, "delivery", string(pipeline.AtLeastOnce), "delivery mode: at_least_once or exactly_once")
	fs.StringVar(&brokers, "brokers", "", "Kafka seed brokers, comma-separated (default: embedded kfake)")
	fs.StringVar(&cfg.Redis, "redis", "", "Redis address (default: embedded miniredis)")
	output := bindOutput(cmd, false, "report format: text or json")
	fs.IntVar(&cfg.Rounds, "rounds", 1, "baseline + idsync rounds; the report gives medians")
	fs.IntVar(&cfg.WarmupRounds, "warmup", 1, "baseline + idsync rounds run first and not counted (fresh topics warm up the broker)")
	fs.Int32Var(&cfg.Partitions, "partitions", 6, "partitions of the in-process loops' input topic and of the destination topics")
	fs.IntVar(&cfg.Audiences, "audiences", 200, "audience pool")
	fs.IntVar(&cfg.Profiles, "profiles", 0, "profile pool (default events/4)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "workload seed")
	fs.IntVar(&cfg.LatencyEvents, "latency-events", 0, "events of the paced latency phase (default min(n, 20000); the first second's, at most half, warm the loop up and are reported apart as warmup; -1 skips it)")
	fs.Float64Var(&cfg.LatencyRate, "latency-rate", 0, "events/s of the latency phase (default half the slower loop's throughput)")
	fs.IntVar(&cfg.MaxInflightBytes, "max-inflight-bytes", 64<<20, "processing.max_inflight_bytes of both loops")
	fs.BoolVar(&cfg.Membership, "membership", false, "idsync also writes the membership topic, as the service does by default (resync.enabled); the baselines do not")
	var service bool
	fs.BoolVar(&service, "service", false, "also run this binary as idsync run, its own process, on the same broker, Redis and workload, and report its CPU from process start to lag 0 (what the deployed service costs)")
	fs.StringVar(&cfg.Service, "service-binary", "", "the idsync binary of the service phase (default: this one; implies --service)")
	fs.BoolVar(&cfg.ServiceOnly, "service-only", false, "run the service phase only, not the in-process loops (implies --service)")
	fs.Int32Var(&cfg.ServicePartitions, "service-partitions", 12, "input partitions of the service phase")
	fs.StringArrayVar(&cfg.ServiceEnv, "service-env", nil, "KEY=VALUE added to the service's environment (an IDSYNC_* setting, GOMAXPROCS, GOGC); repeatable")
	fs.StringVar(&cfg.ServiceProfileDir, "service-profile-dir", "", "save 2-second CPU profiles of the service's drain here and its log, service.log (sets IDSYNC_OPS_PPROF=true); go tool pprof -top DIR/*.pprof")
	fs.DurationVar(&cfg.Stall, "stall", 0, "run the stalled-destination test for this long instead (embedded broker)")
	fs.DurationVar(&cfg.PhaseTimeout, "phase-timeout", 0, "bound of one phase (default 10m)")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	fs.StringVar(&memProfile, "memprofile", "", "write an allocation profile of the run to this file")
	fs.BoolVarP(&quiet, "quiet", "q", false, "no progress lines")
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		switch {
		case *output != outputText && *output != outputJSON:
			return usageErrorf("--output %q is not text or json", *output)
		case delivery != string(pipeline.AtLeastOnce) && delivery != string(pipeline.ExactlyOnce):
			return usageErrorf("--delivery %q is not at_least_once or exactly_once", delivery)
		case cfg.Events < 1:
			return usageErrorf("-n %d must be at least 1", cfg.Events)
		case cfg.Stall > 0 && brokers != "":
			return usageErrorf("--stall runs on the embedded broker only (no --brokers)")
		}
		if cfg.ServiceOnly || cfg.ServiceProfileDir != "" {
			service = true
		}
		if service && cfg.Service == "" {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("--service: this binary's path: %w", err)
			}
			cfg.Service = exe
		}
		if cfg.ServiceProfileDir != "" {
			cfg.ServiceEnv = append([]string{"IDSYNC_OPS_PPROF=true"}, cfg.ServiceEnv...)
		}
		cfg.Delivery = pipeline.Delivery(delivery)
		if brokers != "" {
			cfg.Brokers = strings.Split(brokers, ",")
		}
		if !quiet {
			cfg.Progress = env.Stderr
		}
		cfg.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

		if cpuProfile != "" {
			f, err := os.Create(cpuProfile)
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			defer pprof.StopCPUProfile()
		}
		rep, err := bench.Run(cmd.Context(), cfg)
		if memProfile != "" {
			if perr := writeHeapProfile(memProfile); perr != nil {
				fmt.Fprintf(env.Stderr, "idsync bench: %v\n", perr)
			}
		}
		if err != nil {
			return err
		}
		if *output == outputJSON {
			b, err := json.Marshal(rep)
			if err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "%s\n", b)
			return nil
		}
		rep.WriteText(env.Stdout)
		return nil
	})
	return cmd
}

// writeHeapProfile writes the allocation profile (every allocation since
// the start, "alloc_space" in pprof).
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}
