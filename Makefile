# idsync Makefile. `make run` runs idsync on its embedded default; `make test`
# starts a real Kafka broker and Redis server (deploy/local), runs every test
# against them and stops them again.

GO          ?= go
BIN         ?= bin/idsync
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)

.PHONY: build run test test-unit bench profile lint stack-up stack-down clean screenshots dist

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/idsync

run: build
	./$(BIN) run --embedded

# dist: static release binaries (CGO_ENABLED=0) for DIST_PLATFORMS into
# DIST_DIR (dist/), named idsync-<version>-<os>-<arch> with the version from
# git describe (also what `idsync version` prints), and SHA256SUMS (check
# with `cd dist && sha256sum -c SHA256SUMS`). deploy/deploytest's TestDist
# runs it.
DIST_PLATFORMS ?= linux/amd64 linux/arm64
DIST_DIR ?= dist
dist:
	rm -rf $(DIST_DIR)
	mkdir -p $(DIST_DIR)
	for p in $(DIST_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS) -s -w' \
			-o $(DIST_DIR)/idsync-$(VERSION)-$$os-$$arch ./cmd/idsync || exit 1; \
	done
	cd $(DIST_DIR) && sha256sum idsync-* > SHA256SUMS
	cat $(DIST_DIR)/SHA256SUMS

# test: real Kafka + Redis from deploy/local (unless IDSYNC_TEST_KAFKA and
# IDSYNC_TEST_REDIS already point at running ones), then vet and race tests.
test:
	bash deploy/local/test.sh

# test-unit: the fast inner loop, no real stack (end-to-end tests skip with -short).
test-unit:
	$(GO) test -short ./...

# bench: the hot-path and cache micro-benchmarks, then a short idsync bench on
# the embedded broker (a smoke run: figures for a real broker come from
# `idsync bench --brokers ... --redis ...`, see docs/performance.md).
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./idsync/ ./store/
	./$(BIN) bench -n 20000 --rounds 1

# profile: CPU and allocation profiles of a bench run (embedded broker unless
# BENCH_FLAGS says otherwise), read with `go tool pprof -top bin/idsync cpu.prof`.
BENCH_FLAGS ?= -n 50000
profile: build
	./$(BIN) bench $(BENCH_FLAGS) --cpuprofile cpu.prof --memprofile mem.prof
	$(GO) tool pprof -top -nodecount 25 $(BIN) cpu.prof

# screenshots: the web console's browser test, saving each screen into
# docs/img (docs/console.md and the README show them).
screenshots:
	IDSYNC_TEST_SCREENSHOTS=$(abspath docs/img) $(GO) test -count=1 -run '^TestConsole$$' ./webui/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

stack-up:
	bash deploy/local/start.sh

stack-down:
	bash deploy/local/stop.sh

clean:
	rm -rf bin dist

# test-redis-cluster: the Redis Cluster, Sentinel and TLS tests (issue 14) on
# live deployments started by deploy/local/redis-cluster.sh and
# redis-sentinel.sh, plain then with mutual TLS (about 5 minutes): the store
# and cache suites, a master SIGKILLed and a reshard under the real binary,
# TestRedisTLS.
# REDIS_PASSES=plain (or tls) runs one pass.
REDIS_PASSES ?= plain tls

.PHONY: test-redis-cluster
test-redis-cluster:
	bash deploy/local/test-redis-cluster.sh $(REDIS_PASSES)

# test-reliability: the full reliability suite on the real stack (long: about
# 20 minutes), then the hostile-input property test with HOSTILE_SEEDS random
# seeds, each in at_least_once and exactly_once, on kfake and on the real
# broker (pipeline/hostile_test.go; a failure names its seed, replayed with
# IDSYNC_TEST_HOSTILE_SEED=<seed>), then FUZZTIME of fuzzing per fuzz target.
# Each test appends its figures to RELIABILITY_REPORT (one JSON line per test
# or seed run); docs/reliability.md is written from them.
RELIABILITY_REPORT ?= reliability-report.jsonl
HOSTILE_SEEDS ?= 50
FUZZTIME ?= 5m
FUZZ_TARGETS ?= FuzzDecode FuzzParseConfig FuzzNormalize FuzzTopicTemplate FuzzProcess FuzzPhoneFast

# test-cluster: the cluster tests (e2e/cluster_*_test.go) in their full
# versions on a three-node Kafka cluster with TLS and mutual TLS
# (deploy/local/kafka-cluster.sh, started and stopped by test-cluster.sh):
# broker bounces under load, TLS from the real binary, scale-out. Figures go
# to CLUSTER_REPORT; docs/reliability.md ("Cluster") is written from them.
CLUSTER_REPORT ?= cluster-report.jsonl
.PHONY: test-cluster
test-cluster:
	rm -f $(CLUSTER_REPORT)
	IDSYNC_TEST_RELIABILITY_REPORT=$(abspath $(CLUSTER_REPORT)) bash deploy/local/test-cluster.sh

# bench-resync: what a resync at the default rate costs the live stream, on
# the real stack (e2e/resync_perf_test.go; figures in docs/performance.md).
.PHONY: bench-resync
bench-resync: build
	IDSYNC_TEST_RESYNC_PERF=1 bash deploy/local/test.sh -run '^TestResyncLiveEffect$$' -v ./e2e/

.PHONY: test-reliability fuzz
test-reliability:
	rm -f $(RELIABILITY_REPORT)
	IDSYNC_TEST_RELIABILITY=full IDSYNC_TEST_RELIABILITY_REPORT=$(abspath $(RELIABILITY_REPORT)) \
		bash deploy/local/test.sh -run 'TestReliability' -timeout 120m -v ./e2e/
	IDSYNC_TEST_HOSTILE_SEEDS=$(HOSTILE_SEEDS) IDSYNC_TEST_RELIABILITY_REPORT=$(abspath $(RELIABILITY_REPORT)) \
		bash deploy/local/test.sh -run '^TestHostileInput$$' -timeout 180m -v ./pipeline/
	$(MAKE) fuzz

fuzz:
	for f in $(FUZZ_TARGETS); do \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./idsync/ || exit 1; \
	done
