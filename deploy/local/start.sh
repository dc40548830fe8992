#!/usr/bin/env bash
# Starts a single-node Apache Kafka (KRaft, broker and controller in one JVM)
# and a redis-server, both on 127.0.0.1, for the end-to-end tests.
#
#   start.sh          both
#   start.sh kafka    only Kafka
#   start.sh redis    only Redis
#
# Settings (ports, heap, run dir, version) are environment variables, listed in
# common.sh. Pid files, logs and data live in $IDSYNC_RUN_DIR. A service that an
# earlier start.sh with the same run dir left running is stopped and started
# afresh, so every run begins with empty storage. stop.sh undoes this script.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

start_kafka() {
	local pidfile="$KAFKA_RUN_DIR/kafka.pid"
	# KAFKA_KEEP_DATA=1 restarts a broker that was killed on its existing
	# storage (the reliability tests' broker restarts); otherwise every start
	# begins empty.
	local keep=0
	if [[ "${KAFKA_KEEP_DATA:-0}" == 1 && -f "$KAFKA_RUN_DIR/data/meta.properties" ]]; then
		keep=1
		pid_alive "$pidfile" && die "KAFKA_KEEP_DATA=1 but Kafka is still running (pid $(cat "$pidfile"))"
	else
		if pid_alive "$pidfile"; then
			log "Kafka from an earlier run is still up (pid $(cat "$pidfile")): restarting it with empty storage"
		fi
		bash "$LOCAL_DIR/stop.sh" kafka
	fi

	for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
		if port_in_use "$port"; then
			die "127.0.0.1:$port is taken by another process: stop it, or choose other ports with KAFKA_PORT / KAFKA_CONTROLLER_PORT"
		fi
	done

	fetch_kafka_jars
	mkdir -p "$KAFKA_RUN_DIR/data"

	# Build the readiness probe while the JVM starts.
	build_probe
	local probe="$KAFKA_PROBE"

	local props="$KAFKA_RUN_DIR/server.properties"
	cat >"$props" <<-EOF
		# Written by deploy/local/start.sh; rewritten on every start.
		# One node that is both the KRaft controller and the broker.
		process.roles=broker,controller
		node.id=1
		controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
		listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
		advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
		controller.listener.names=CONTROLLER
		inter.broker.listener.name=PLAINTEXT
		listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
		log.dirs=$KAFKA_RUN_DIR/data

		# A single node can only hold one replica of the internal topics.
		offsets.topic.replication.factor=1
		offsets.topic.num.partitions=10
		transaction.state.log.replication.factor=1
		transaction.state.log.min.isr=1
		transaction.state.log.num.partitions=10
		share.coordinator.state.topic.replication.factor=1
		share.coordinator.state.topic.min.isr=1

		# Tests: no time-based retention. Records keep their producers'
		# timestamps, and fixtures date events in the past (outputs and dead
		# letters carry their input's timestamp): a retention check would
		# delete them mid-test. The data is deleted by stop.sh anyway.
		log.retention.ms=-1

		# Tests: join groups without the 3 s wait for more members; tests create
		# their topics explicitly, auto-creation stays on for hand use.
		group.initial.rebalance.delay.ms=0
		auto.create.topics.enable=true
		num.partitions=1
		default.replication.factor=1
		min.insync.replicas=1
	EOF

	kafka_java "$KAFKA_HEAP"
	local java_cmd=("${KAFKA_JAVA[@]}")

	# Format the log dir as a new single-voter cluster.
	local cluster_id
	cluster_id="$(new_cluster_id)"
	local logfile="$KAFKA_RUN_DIR/kafka.log"
	local started
	started="$(now_ms)"
	# The tool runs for a second or two: the C1 compiler alone is plenty.
	if ((keep)); then
		log "restarting Kafka on its existing storage"
	elif ! "${java_cmd[@]}" -XX:TieredStopAtLevel=1 kafka.tools.StorageTool format -t "$cluster_id" -c "$props" --standalone >"$logfile" 2>&1; then
		cat "$logfile" >&2
		die "formatting Kafka storage failed"
	fi

	# Detached: the broker outlives this script (for `make stack-up`).
	launch_detached "$pidfile" "$logfile" "${java_cmd[@]}" kafka.Kafka "$props"

	if ! wait "$PROBE_BUILD_PID"; then
		die "building deploy/local/kafkaready failed"
	fi

	# Ready means: the broker answers a metadata request listing itself.
	local deadline=$((SECONDS + KAFKA_START_TIMEOUT)) info
	until info="$("$probe" -brokers "127.0.0.1:$KAFKA_PORT" -timeout 2s 2>/dev/null)"; do
		if ! pid_alive "$pidfile"; then
			tail -n 40 "$logfile" >&2
			die "Kafka exited during startup (log: $logfile)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 40 "$logfile" >&2
			die "Kafka did not answer metadata on 127.0.0.1:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s (log: $logfile)"
		fi
		sleep 0.5
	done
	log "Kafka $KAFKA_VERSION ready on 127.0.0.1:$KAFKA_PORT in $(elapsed "$started")s (storage format + broker start) (pid $(cat "$pidfile"), log $logfile): $info"
}

start_redis() {
	local pidfile="$REDIS_RUN_DIR/redis.pid"
	if pid_alive "$pidfile"; then
		log "Redis from an earlier run is still up (pid $(cat "$pidfile")): restarting it empty"
	fi
	bash "$LOCAL_DIR/stop.sh" redis

	command -v redis-server >/dev/null || die "redis-server not found: run deploy/local/install.sh"
	if port_in_use "$REDIS_PORT"; then
		die "127.0.0.1:$REDIS_PORT is taken by another process (a system redis-server?): stop it, or choose another port with REDIS_PORT"
	fi
	mkdir -p "$REDIS_RUN_DIR"

	# In memory only: no RDB snapshots, no AOF.
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
		--save '' --appendonly no \
		--dir "$REDIS_RUN_DIR" \
		--daemonize yes --pidfile "$pidfile" --logfile "$REDIS_RUN_DIR/redis.log"

	local deadline=$((SECONDS + 15))
	until [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; do
		if ((SECONDS >= deadline)); then
			tail -n 20 "$REDIS_RUN_DIR/redis.log" >&2 || true
			die "Redis did not answer PING on 127.0.0.1:$REDIS_PORT within 15s"
		fi
		sleep 0.2
	done
	log "Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') ready on 127.0.0.1:$REDIS_PORT (pid $(cat "$pidfile"), log $REDIS_RUN_DIR/redis.log)"
}

what="${1:-all}"
case "$what" in
all)
	start_redis
	start_kafka
	;;
kafka) start_kafka ;;
redis) start_redis ;;
*) die "usage: $0 [kafka|redis]" ;;
esac

if [[ "$what" == all ]]; then
	log "stack up; point tests at it with:"
	printf 'export IDSYNC_TEST_KAFKA=127.0.0.1:%s IDSYNC_TEST_REDIS=127.0.0.1:%s\n' "$KAFKA_PORT" "$REDIS_PORT"
fi
