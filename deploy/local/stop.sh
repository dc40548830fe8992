#!/usr/bin/env bash
# Stops what start.sh started, by the pid files in $IDSYNC_RUN_DIR, and removes
# its data: TERM first, KILL if it has not exited after a grace period.
#
#   stop.sh          both
#   stop.sh kafka    only Kafka
#   stop.sh redis    only Redis
#
# Safe to run when nothing is running. Processes that start.sh did not start
# (say a system redis-server) are never touched.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stop_kafka() {
	# A broker shuts down cleanly in a few seconds; a stuck one is not worth more.
	stop_pid Kafka "$KAFKA_RUN_DIR/kafka.pid" 30
	rm -rf "$KAFKA_RUN_DIR/data"
}

stop_redis() {
	stop_pid Redis "$REDIS_RUN_DIR/redis.pid" 10
	rm -f "$REDIS_RUN_DIR"/*.rdb "$REDIS_RUN_DIR"/*.aof
}

case "${1:-all}" in
all)
	stop_kafka
	stop_redis
	;;
kafka) stop_kafka ;;
redis) stop_redis ;;
*) die "usage: $0 [kafka|redis]" ;;
esac
