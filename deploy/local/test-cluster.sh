#!/usr/bin/env bash
# What `make test-cluster` runs: the cluster tests (e2e/cluster_*_test.go,
# TestCluster*) in their full versions, on the three-node Kafka cluster of
# kafka-cluster.sh with its TLS and mutual-TLS listeners, and a Redis.
#
#   test-cluster.sh                        every cluster test, full versions
#   test-cluster.sh -run TestClusterKafkaTLS   flags go to `go test` (a later
#                                          -run replaces the default one)
#
# The services: when IDSYNC_TEST_KAFKA_CLUSTER (and IDSYNC_TEST_REDIS) are
# set, the tests use those, and kill and restart nodes with kafka-cluster.sh
# under the same IDSYNC_RUN_DIR and KAFKA_CLUSTER_* settings. Otherwise this
# script starts them (kafka-cluster.sh start --tls, start.sh redis), exports
# the settings of kafka-cluster.sh's cluster.env, and stops what it started
# when it exits, whether the tests pass or fail. IDSYNC_TEST_RELIABILITY
# defaults to full (the short versions are what `make test` runs); figures go
# to IDSYNC_TEST_RELIABILITY_REPORT when it names a file. It exits with
# `go test`'s status.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

started=()
stop_started() {
	local s
	for s in "${started[@]}"; do
		case "$s" in
		cluster) bash "$LOCAL_DIR/kafka-cluster.sh" stop || log "stopping the cluster failed" ;;
		redis) bash "$LOCAL_DIR/stop.sh" redis || log "stopping redis failed" ;;
		esac
	done
}
trap stop_started EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z "${IDSYNC_TEST_KAFKA_CLUSTER:-}" || -z "${IDSYNC_TEST_REDIS:-}" ]]; then
	bash "$LOCAL_DIR/install.sh"
fi
if [[ -z "${IDSYNC_TEST_KAFKA_CLUSTER:-}" ]]; then
	# Listed before starting, so that a start that fails half-way is cleaned up too.
	started+=(cluster)
	bash "$LOCAL_DIR/kafka-cluster.sh" start --tls
	# shellcheck source=/dev/null
	source "$KAFKA_CLUSTER_RUN_DIR/cluster.env"
fi
if [[ -z "${IDSYNC_TEST_REDIS:-}" ]]; then
	started+=(redis)
	bash "$LOCAL_DIR/start.sh" redis
	export IDSYNC_TEST_REDIS="127.0.0.1:$REDIS_PORT"
fi
# The e2e package's other tests are not run here (-run), but stacktest reads
# this too: point it at the cluster rather than leave it unset.
export IDSYNC_TEST_KAFKA="${IDSYNC_TEST_KAFKA:-${IDSYNC_TEST_KAFKA_CLUSTER%%,*}}"
export IDSYNC_TEST_RELIABILITY="${IDSYNC_TEST_RELIABILITY:-full}"
log "cluster tests (IDSYNC_TEST_RELIABILITY=$IDSYNC_TEST_RELIABILITY) against IDSYNC_TEST_KAFKA_CLUSTER=$IDSYNC_TEST_KAFKA_CLUSTER IDSYNC_TEST_REDIS=$IDSYNC_TEST_REDIS"

# No -race: the binary under test is built without it (e2e's TestMain), and
# on two cores the race detector would slow the verifier more than it finds.
status=0
go test -count=1 -timeout 90m -v -run '^TestCluster' "$@" ./e2e/ || status=$?
exit "$status"
