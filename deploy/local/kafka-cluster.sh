#!/usr/bin/env bash
# A three-node Apache Kafka cluster (KRaft; each node is both broker and
# controller, so the controller quorum has three voters) on 127.0.0.1, from
# the same Maven jars as start.sh, for the cluster tests (e2e/cluster_*_test.go)
# and for trying idsync against replication, leader changes and TLS.
#
#   kafka-cluster.sh start [--tls]   start three nodes on empty storage
#   kafka-cluster.sh stop            stop every node and delete the data
#   kafka-cluster.sh kill N          SIGKILL node N (1, 2 or 3)
#   kafka-cluster.sh term N          SIGTERM node N: a controlled shutdown
#   kafka-cluster.sh restart N       start node N again on its storage
#   kafka-cluster.sh status          each node's state, and the client settings
#
# Topics default to replication factor 3 and min.insync.replicas 2, and so do
# the consumer-offsets and transaction-state topics. Every node has a
# plaintext client listener; with --tls (or KAFKA_CLUSTER_TLS=1) it also has a
# TLS listener and a mutual-TLS listener (ssl.client.auth=required), serving
# PEM keystores made by certs.sh. Inter-broker and controller traffic stays
# plaintext. Ports, heap and run dir: the KAFKA_CLUSTER_* settings in
# common.sh. Per-node pid files, logs, server.properties and data are in
# $IDSYNC_RUN_DIR/kafka-cluster/nodeN; cluster.env there holds the exports
# tests and idsync use (printed by start and status).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NODES=(1 2 3)
CERTS_DIR="$IDSYNC_RUN_DIR/certs"
ENV_FILE="$KAFKA_CLUSTER_RUN_DIR/cluster.env"

node_dir() { printf '%s/node%s\n' "$KAFKA_CLUSTER_RUN_DIR" "$1"; }
port_of() { printf '%s\n' "$(($1 + $2 - 1))"; } # port_of BASE N
# addrs BASE: the three nodes' addresses on a listener, comma-separated.
addrs() {
	local out=() n
	for n in "${NODES[@]}"; do
		out+=("127.0.0.1:$(port_of "$1" "$n")")
	done
	(IFS=,; printf '%s\n' "${out[*]}")
}

check_node() {
	[[ "${1:-}" =~ ^[123]$ ]] || die "usage: $0 kill|term|restart N, with N 1, 2 or 3"
}

# write_props N TLS: node N's server.properties.
write_props() {
	local n="$1" tls="$2" dir
	dir="$(node_dir "$n")"
	local p c voters="" m
	p="$(port_of "$KAFKA_CLUSTER_PORT" "$n")"
	c="$(port_of "$KAFKA_CLUSTER_CONTROLLER_PORT" "$n")"
	for m in "${NODES[@]}"; do
		voters+="${voters:+,}$m@127.0.0.1:$(port_of "$KAFKA_CLUSTER_CONTROLLER_PORT" "$m")"
	done
	local listeners="PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c"
	local advertised="PLAINTEXT://127.0.0.1:$p"
	if ((tls)); then
		local t s
		t="$(port_of "$KAFKA_CLUSTER_TLS_PORT" "$n")"
		s="$(port_of "$KAFKA_CLUSTER_MTLS_PORT" "$n")"
		listeners+=",TLS://127.0.0.1:$t,MTLS://127.0.0.1:$s"
		advertised+=",TLS://127.0.0.1:$t,MTLS://127.0.0.1:$s"
	fi
	cat >"$dir/server.properties" <<-EOF
		# Written by deploy/local/kafka-cluster.sh start; kept for restarts.
		# Node $n of three, each both a KRaft controller and a broker.
		process.roles=broker,controller
		node.id=$n
		controller.quorum.voters=$voters
		listeners=$listeners
		advertised.listeners=$advertised
		controller.listener.names=CONTROLLER
		inter.broker.listener.name=PLAINTEXT
		listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,TLS:SSL,MTLS:SSL
		log.dirs=$dir/data

		# Replicated as in production: three copies, two in sync to accept a
		# write with acks=all, for user and internal topics alike.
		default.replication.factor=3
		min.insync.replicas=2
		offsets.topic.replication.factor=3
		offsets.topic.num.partitions=10
		transaction.state.log.replication.factor=3
		transaction.state.log.min.isr=2
		transaction.state.log.num.partitions=10
		share.coordinator.state.topic.replication.factor=3
		share.coordinator.state.topic.min.isr=2

		# Tests: no time-based retention (fixtures date records in the past),
		# no 3 s wait for more group members; topics are created by the tests,
		# auto-creation stays on for hand use.
		log.retention.ms=-1
		group.initial.rebalance.delay.ms=0
		auto.create.topics.enable=true
		num.partitions=1
	EOF
	if ((tls)); then
		cat >>"$dir/server.properties" <<-EOF

			# TLS and mutual-TLS client listeners: PEM key store (unencrypted
			# PKCS#8 key then certificate) and trust store from certs.sh.
			ssl.keystore.type=PEM
			ssl.keystore.location=$CERTS_DIR/server-bundle.pem
			ssl.truststore.type=PEM
			ssl.truststore.location=$CERTS_DIR/ca.pem
			listener.name.tls.ssl.client.auth=none
			listener.name.mtls.ssl.client.auth=required
		EOF
	fi
}

# launch N: starts node N on its server.properties and storage.
launch() {
	local n="$1" dir
	dir="$(node_dir "$n")"
	kafka_java "$KAFKA_CLUSTER_HEAP"
	launch_detached "$dir/kafka.pid" "$dir/kafka.log" "${KAFKA_JAVA[@]}" kafka.Kafka "$dir/server.properties"
}

# wait_ready WHAT PROBE_ARGS...: polls kafkaready until it succeeds, failing
# when a node died or after KAFKA_START_TIMEOUT.
wait_ready() {
	local what="$1" info
	shift
	local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
	until info="$("$KAFKA_PROBE" -timeout 2s "$@" 2>/dev/null)"; do
		local n
		for n in "${NODES[@]}"; do
			if [[ -f "$(node_dir "$n")/kafka.pid" ]] && ! pid_alive "$(node_dir "$n")/kafka.pid"; then
				tail -n 40 "$(node_dir "$n")/kafka.log" >&2
				die "node $n exited while waiting for $what (log: $(node_dir "$n")/kafka.log)"
			fi
		done
		if ((SECONDS >= deadline)); then
			die "$what: not ready within ${KAFKA_START_TIMEOUT}s (logs: $KAFKA_CLUSTER_RUN_DIR/node*/kafka.log)"
		fi
		sleep 0.5
	done
	printf '%s\n' "$info"
}

write_env() {
	local tls="$1"
	{
		echo "# Written by deploy/local/kafka-cluster.sh start: source it to point tests or idsync at the cluster."
		echo "export IDSYNC_TEST_KAFKA_CLUSTER=$(addrs "$KAFKA_CLUSTER_PORT")"
		echo "export KAFKA_CLUSTER_PORT=$KAFKA_CLUSTER_PORT KAFKA_CLUSTER_CONTROLLER_PORT=$KAFKA_CLUSTER_CONTROLLER_PORT"
		echo "export KAFKA_CLUSTER_TLS_PORT=$KAFKA_CLUSTER_TLS_PORT KAFKA_CLUSTER_MTLS_PORT=$KAFKA_CLUSTER_MTLS_PORT"
		echo "export IDSYNC_RUN_DIR=$IDSYNC_RUN_DIR"
		if ((tls)); then
			echo "export IDSYNC_TEST_KAFKA_CLUSTER_TLS=$(addrs "$KAFKA_CLUSTER_TLS_PORT")"
			echo "export IDSYNC_TEST_KAFKA_CLUSTER_MTLS=$(addrs "$KAFKA_CLUSTER_MTLS_PORT")"
			echo "export IDSYNC_TEST_KAFKA_CLUSTER_CERTS=$CERTS_DIR"
		fi
	} >"$ENV_FILE"
}

cmd_start() {
	local tls="$KAFKA_CLUSTER_TLS"
	case "${1:-}" in
	--tls) tls=1 ;;
	"") ;;
	*) die "usage: $0 start [--tls]" ;;
	esac
	[[ "$tls" == 1 ]] || tls=0

	cmd_stop
	local base port n
	local bases=("$KAFKA_CLUSTER_PORT" "$KAFKA_CLUSTER_CONTROLLER_PORT")
	((tls)) && bases+=("$KAFKA_CLUSTER_TLS_PORT" "$KAFKA_CLUSTER_MTLS_PORT")
	for base in "${bases[@]}"; do
		for n in "${NODES[@]}"; do
			port="$(port_of "$base" "$n")"
			port_in_use "$port" && die "127.0.0.1:$port is taken by another process: choose other KAFKA_CLUSTER_* ports (common.sh)"
		done
	done

	fetch_kafka_jars
	((tls)) && bash "$LOCAL_DIR/certs.sh" "$CERTS_DIR"
	build_probe

	local started cluster_id
	started="$(now_ms)"
	cluster_id="$(new_cluster_id)"
	kafka_java "$KAFKA_CLUSTER_HEAP"
	# Format the three log dirs in parallel (static voters: no --standalone).
	# The tool runs for a second or two: the C1 compiler alone is plenty.
	local pids=()
	for n in "${NODES[@]}"; do
		mkdir -p "$(node_dir "$n")/data"
		write_props "$n" "$tls"
		"${KAFKA_JAVA[@]}" -XX:TieredStopAtLevel=1 kafka.tools.StorageTool format -t "$cluster_id" \
			-c "$(node_dir "$n")/server.properties" >"$(node_dir "$n")/kafka.log" 2>&1 &
		pids+=($!)
	done
	for n in "${NODES[@]}"; do
		if ! wait "${pids[n - 1]}"; then
			cat "$(node_dir "$n")/kafka.log" >&2
			die "formatting node $n's storage failed"
		fi
	done
	for n in "${NODES[@]}"; do
		launch "$n"
	done
	wait "$PROBE_BUILD_PID" || die "building deploy/local/kafkaready failed"
	local info
	info="$(wait_ready "the cluster" -brokers "$(addrs "$KAFKA_CLUSTER_PORT")" -min-brokers 3)"
	write_env "$tls"
	log "Kafka $KAFKA_VERSION cluster ready in $(elapsed "$started")s: $info"
	log "client settings ($ENV_FILE):"
	grep '^export' "$ENV_FILE"
}

cmd_stop() {
	local n pids=()
	# All at once: one by one, the last node would wait out its grace period
	# for a controller quorum that is gone. The data is deleted anyway.
	for n in "${NODES[@]}"; do
		stop_pid "Kafka node $n" "$(node_dir "$n")/kafka.pid" 15 &
		pids+=($!)
	done
	for n in "${pids[@]}"; do
		wait "$n" || true
	done
	rm -rf "$KAFKA_CLUSTER_RUN_DIR"
}

cmd_kill() {
	check_node "${1:-}"
	stop_pid "Kafka node $1" "$(node_dir "$1")/kafka.pid" 10 KILL
}

cmd_term() {
	check_node "${1:-}"
	# A controlled shutdown moves leadership away first; allow it a minute.
	stop_pid "Kafka node $1" "$(node_dir "$1")/kafka.pid" 60 TERM
}

cmd_restart() {
	check_node "${1:-}"
	local n="$1" dir
	dir="$(node_dir "$n")"
	[[ -f "$dir/server.properties" ]] || die "node $n was never started: run $0 start"
	pid_alive "$dir/kafka.pid" && die "node $n is running (pid $(cat "$dir/kafka.pid")): kill or term it first"
	local started
	started="$(now_ms)"
	[[ -x "$KAFKA_PROBE" ]] || { build_probe && wait "$PROBE_BUILD_PID"; }
	launch "$n"
	local info
	info="$(wait_ready "node $n" -brokers "127.0.0.1:$(port_of "$KAFKA_CLUSTER_PORT" "$n")" -node "$n")"
	log "node $n registered again in $(elapsed "$started")s: $info"
}

cmd_status() {
	local n dir
	for n in "${NODES[@]}"; do
		dir="$(node_dir "$n")"
		if pid_alive "$dir/kafka.pid"; then
			printf 'node %s: up (pid %s), 127.0.0.1:%s\n' "$n" "$(cat "$dir/kafka.pid")" "$(port_of "$KAFKA_CLUSTER_PORT" "$n")"
		else
			printf 'node %s: down\n' "$n"
		fi
	done
	[[ -f "$ENV_FILE" ]] && grep '^export' "$ENV_FILE"
	return 0
}

cmd="${1:-}"
shift || true
case "$cmd" in
start) cmd_start "$@" ;;
stop) cmd_stop ;;
kill) cmd_kill "$@" ;;
term) cmd_term "$@" ;;
restart) cmd_restart "$@" ;;
status) cmd_status ;;
*) die "usage: $0 start [--tls] | stop | kill N | term N | restart N | status" ;;
esac
