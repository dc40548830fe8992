#!/usr/bin/env bash
# What `make test-redis-cluster` runs: the Redis Cluster, Sentinel and TLS
# tests of issue 14 on live deployments, in two passes:
#
#   1. plain: a six-node Redis Cluster (redis-cluster.sh) and a Sentinel
#      setup (redis-sentinel.sh); the store and cache suites on both, the
#      failover tests of the real binary (a master SIGKILLed under a stream
#      and admin edits) on both, the reshard test on the cluster, and
#      TestRedisTLS (mutual TLS, standalone);
#   2. TLS: both deployments again with --tls (mutual TLS everywhere); the
#      suites, the failover and the reshard tests over TLS.
#
#   test-redis-cluster.sh              both passes
#   test-redis-cluster.sh plain|tls    one pass
#
# Kafka and the shared Redis of the end-to-end tests: IDSYNC_TEST_KAFKA and
# IDSYNC_TEST_REDIS when set, else started here with start.sh. Everything
# this script started is stopped when it exits, whether the tests pass or
# fail. Ports are common.sh's (REDIS_CLUSTER_PORT, REDIS_SENTINEL_DATA_PORT,
# REDIS_SENTINEL_PORT, ...). The failover tests print their figures (and
# append them to IDSYNC_TEST_RELIABILITY_REPORT when set). It exits with the
# first failing pass's status.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

passes=("${@:-plain tls}")
# shellcheck disable=SC2206 # one word per pass
passes=(${passes[*]})

started=()
stop_started() {
	bash "$LOCAL_DIR/redis-cluster.sh" stop || log "stopping the Redis Cluster failed"
	bash "$LOCAL_DIR/redis-sentinel.sh" stop || log "stopping the Sentinel setup failed"
	local s
	for s in "${started[@]}"; do
		bash "$LOCAL_DIR/stop.sh" "$s" || log "stopping $s failed"
	done
}
trap stop_started EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$LOCAL_DIR/install.sh"
for s in kafka redis; do
	var="IDSYNC_TEST_${s^^}"
	if [[ -z "${!var:-}" ]]; then
		started+=("$s")
		bash "$LOCAL_DIR/start.sh" "$s"
	fi
done
export IDSYNC_TEST_KAFKA="${IDSYNC_TEST_KAFKA:-127.0.0.1:$KAFKA_PORT}"
export IDSYNC_TEST_REDIS="${IDSYNC_TEST_REDIS:-127.0.0.1:$REDIS_PORT}"

status=0
for pass in "${passes[@]}"; do
	case "$pass" in
	plain) flag=() e2e='^(TestRedisClusterFailover|TestRedisClusterReshard|TestRedisSentinelFailover|TestRedisTLS)$' ;;
	tls) flag=(--tls) e2e='^(TestRedisClusterFailover|TestRedisClusterReshard|TestRedisSentinelFailover)$' ;;
	*) die "unknown pass $pass (plain or tls)" ;;
	esac
	log "pass $pass: starting the Redis Cluster and the Sentinel setup"
	# The scripts print the variables that point the tests at them; only
	# the tests' own are taken (IDSYNC_REDIS_* would reach the binary).
	unset IDSYNC_TEST_REDIS_TLS_DIR
	eval "$(bash "$LOCAL_DIR/redis-cluster.sh" start "${flag[@]}" | grep '^export IDSYNC_TEST_')"
	eval "$(bash "$LOCAL_DIR/redis-sentinel.sh" start "${flag[@]}" | grep '^export IDSYNC_TEST_')"
	log "pass $pass: store and cache suites"
	go test -race -count=1 -timeout 10m -run '^Test(Store|Cache)' ./store/ || { status=$?; break; }
	logf="$IDSYNC_RUN_DIR/test-redis-cluster-$pass.log"
	log "pass $pass: the real binary ($e2e); full log in $logf"
	rc=0
	go test -count=1 -timeout 20m -v -run "$e2e" ./e2e/ >"$logf" 2>&1 || rc=$?
	grep -E '^(--- |\s+--- |ok|FAIL)|figures:|failover:|whole again:|exit 2:|_test.go:[0-9]+: ' "$logf" | grep -v '^=== ' || true
	((rc == 0)) || { status=$rc; break; }
done
exit "$status"
