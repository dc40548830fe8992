#!/usr/bin/env bash
# What `make test` runs: go vet, then every test with the race detector
# against a real Kafka and Redis.
#
#   test.sh                          vet and test ./...
#   test.sh ./internal/...           vet and test only these packages
#   test.sh -run TestHarness -v      flags go to `go test`; packages default to ./...
#   test.sh -run Foo ./pipeline/...  both
#
# Arguments are passed to `go test` as given. Those that start with ./ or ../
# or with the module path are the packages; when there are none, ./... is
# added. `go vet` checks the same packages.
#
# The services: when IDSYNC_TEST_KAFKA and IDSYNC_TEST_REDIS are set, the tests
# use those. Otherwise this script installs what is missing (install.sh),
# starts the missing service(s) with start.sh, points the variables at them,
# and stops them with stop.sh when it exits, whether the tests pass or fail.
# With IDSYNC_TEST_CLUSTER=1 it also starts the three-node Kafka cluster of
# kafka-cluster.sh for the short cluster tests (see the block below). It
# exits with `go test`'s status.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

module="$(go list -m)"
args=("$@")
pkgs=()
for a in "${args[@]}"; do
	case "$a" in
	./* | ../* | . | "$module" | "$module"/*) pkgs+=("$a") ;;
	esac
done
if ((${#pkgs[@]} == 0)); then
	pkgs=(./...)
	args+=(./...)
fi

# Vet first: it needs no services and fails fast.
log "go vet ${pkgs[*]}"
go vet "${pkgs[@]}"

# Start what the environment does not already provide.
services=()
[[ -n "${IDSYNC_TEST_KAFKA:-}" ]] || services+=(kafka)
[[ -n "${IDSYNC_TEST_REDIS:-}" ]] || services+=(redis)

# --- Kafka cluster (kafka-cluster.sh) -----------------------------------------
# The cluster tests (e2e/cluster_*_test.go) run in their short versions when
# IDSYNC_TEST_CLUSTER=1, the packages include ./e2e and no -run leaves them
# out: this block starts the three-node cluster (with TLS) for them, unless
# IDSYNC_TEST_KAFKA_CLUSTER names one, and stop_started stops it. Without a
# cluster they skip. Off by default: on the 2-core CI machine three more JVMs
# beside every other package's tests made the run take over 30 minutes;
# `make test-cluster` runs them (docs/testing.md).
cluster_started=0
want_cluster=0
if [[ -z "${IDSYNC_TEST_KAFKA_CLUSTER:-}" && "${IDSYNC_TEST_CLUSTER:-0}" == 1 ]]; then
	for p in "${pkgs[@]}"; do
		case "$p" in
		./... | ./e2e | ./e2e/ | ./e2e/... | "$module"/e2e | "$module"/...) want_cluster=1 ;;
		esac
	done
	# A -run that names no cluster test (make test-reliability) needs none.
	prev=""
	for a in "${args[@]}"; do
		run=""
		[[ "$prev" == -run ]] && run="$a"
		[[ "$a" == -run=* ]] && run="${a#-run=}"
		[[ -n "$run" && "$run" != *Cluster* ]] && want_cluster=0
		prev="$a"
	done
fi
stop_cluster() {
	((cluster_started == 0)) || bash "$LOCAL_DIR/kafka-cluster.sh" stop || log "stopping the Kafka cluster failed"
}
# --- end Kafka cluster --------------------------------------------------------

stop_started() {
	local s
	for s in "${services[@]}"; do
		bash "$LOCAL_DIR/stop.sh" "$s" || log "stopping $s failed"
	done
	stop_cluster
}

if ((${#services[@]} > 0 || want_cluster)); then
	bash "$LOCAL_DIR/install.sh"
	# Set before starting, so that a start that fails half-way is cleaned up too.
	trap stop_started EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	for s in "${services[@]}"; do
		bash "$LOCAL_DIR/start.sh" "$s"
	done
	[[ -n "${IDSYNC_TEST_KAFKA:-}" ]] || export IDSYNC_TEST_KAFKA="127.0.0.1:$KAFKA_PORT"
	[[ -n "${IDSYNC_TEST_REDIS:-}" ]] || export IDSYNC_TEST_REDIS="127.0.0.1:$REDIS_PORT"
fi
# --- Kafka cluster: start ------------------------------------------------------
if ((want_cluster)); then
	cluster_started=1
	bash "$LOCAL_DIR/kafka-cluster.sh" start --tls
	# shellcheck source=/dev/null
	source "$KAFKA_CLUSTER_RUN_DIR/cluster.env"
fi
# --- end Kafka cluster: start --------------------------------------------------
log "testing against IDSYNC_TEST_KAFKA=$IDSYNC_TEST_KAFKA IDSYNC_TEST_REDIS=$IDSYNC_TEST_REDIS"

status=0
go test -race -count=1 -timeout 30m "${args[@]}" || status=$?

# --- Redis Cluster and Sentinel (issue 14), short -------------------------
# The store and cache suites once more, on a live six-node Redis Cluster and
# a Sentinel setup started here (about 30 s; ports in common.sh). The
# failover tests of the real binary and the TLS pass are
# `make test-redis-cluster`'s. Runs when ./... or ./store is tested and the
# environment names no cluster or Sentinel of its own (then the run above
# used them); IDSYNC_TEST_REDIS_HA=0 skips it.
redis_ha=0
for p in "${pkgs[@]}"; do
	case "$p" in ./... | ./store | ./store/ | ./store/...) redis_ha=1 ;; esac
done
if [[ "${IDSYNC_TEST_REDIS_HA:-1}" == 0 || -n "${IDSYNC_TEST_REDIS_CLUSTER:-}${IDSYNC_TEST_REDIS_SENTINEL:-}" ]]; then
	redis_ha=0
fi
if ((redis_ha)); then
	stop_redis_ha() {
		bash "$LOCAL_DIR/redis-cluster.sh" stop || log "stopping the Redis Cluster failed"
		bash "$LOCAL_DIR/redis-sentinel.sh" stop || log "stopping the Sentinel setup failed"
		stop_started
	}
	trap stop_redis_ha EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	log "Redis Cluster and Sentinel: the store and cache suites"
	(
		unset IDSYNC_TEST_REDIS_TLS_DIR
		eval "$(bash "$LOCAL_DIR/redis-cluster.sh" start | grep '^export IDSYNC_TEST_')"
		eval "$(bash "$LOCAL_DIR/redis-sentinel.sh" start | grep '^export IDSYNC_TEST_')"
		go test -race -count=1 -timeout 10m -run '^Test(Store|Cache)' ./store/
	) || status=$?
fi
# --- end of Redis Cluster and Sentinel ------------------------------------

exit "$status"
