#!/usr/bin/env bash
# A Redis primary, one replica and three Sentinels on 127.0.0.1 (quorum 2)
# for the Sentinel tests and for trying idsync behind Sentinel by hand.
#
#   redis-sentinel.sh start [--tls]   start it empty (a running one is stopped first)
#   redis-sentinel.sh stop            stop everything and remove its files
#   redis-sentinel.sh kill-master     SIGKILL whichever node is the master now
#   redis-sentinel.sh kill PORT       SIGKILL the node on PORT
#   redis-sentinel.sh restart PORT    start a killed node again (an old master
#                                     comes back as a replica)
#   redis-sentinel.sh master          the master's address as the Sentinels say
#   redis-sentinel.sh env             the settings that point tests and idsync at it
#
# Ports: the data nodes on REDIS_SENTINEL_DATA_PORT and +1 (default 6380,
# 6381), the Sentinels on REDIS_SENTINEL_PORT .. +2 (default 26379-26381),
# monitoring the master named REDIS_MASTER_NAME (idsync). The Sentinels take
# a master as down after 2 s (down-after-milliseconds) and fail over within a
# few seconds more. Files under $IDSYNC_RUN_DIR/redis-sentinel/<port>/.
#
# --tls: every node and Sentinel TLS only, mutual TLS required, TLS for
# replication and between Sentinels and nodes (certificates of certs.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

root="$REDIS_SENTINEL_RUN_DIR"
primary="$REDIS_SENTINEL_DATA_PORT"
replica="$((REDIS_SENTINEL_DATA_PORT + 1))"
sentinels=("$REDIS_SENTINEL_PORT" "$((REDIS_SENTINEL_PORT + 1))" "$((REDIS_SENTINEL_PORT + 2))")

sentinel_start() {
	redis_nodes_stop "$root"
	redis_require
	mkdir -p "$root"
	# A start that fails half-way leaves no node running (its logs stay).
	trap 'redis_nodes_stop "$root" keep' EXIT
	[[ "$REDIS_TLS" == 1 ]] && touch "$root/tls"
	local started p
	started="$(now_ms)"
	for p in "$primary" "$replica" "${sentinels[@]}"; do
		port_in_use "$p" && die "127.0.0.1:$p is taken by another process: choose other ports with REDIS_SENTINEL_DATA_PORT / REDIS_SENTINEL_PORT"
		mkdir -p "$root/$p"
	done
	for p in "$primary" "$replica"; do
		{
			printf '# Written by deploy/local/redis-sentinel.sh.\n'
			redis_listen_conf "$p"
			cat <<-EOF
				dir $root/$p
				save ""
				appendonly no
			EOF
			# The replica's address as Sentinels and clients must reach it.
			printf 'replica-announce-ip 127.0.0.1\n'
			[[ "$p" == "$replica" ]] && printf 'replicaof 127.0.0.1 %s\n' "$primary"
		} >"$root/$p/node.conf"
		redis_node_start "$root/$p"
	done
	for p in "${sentinels[@]}"; do
		{
			printf '# Written by deploy/local/redis-sentinel.sh; Sentinel rewrites it as it learns.\n'
			redis_listen_conf "$p"
			cat <<-EOF
				dir $root/$p
				sentinel announce-ip 127.0.0.1
				sentinel monitor $REDIS_MASTER_NAME 127.0.0.1 $primary 2
				sentinel down-after-milliseconds $REDIS_MASTER_NAME 2000
				sentinel failover-timeout $REDIS_MASTER_NAME 10000
				sentinel parallel-syncs $REDIS_MASTER_NAME 1
			EOF
		} >"$root/$p/node.conf"
		redis_node_start "$root/$p"
	done
	sentinel_wait_ok 60
	trap - EXIT
	log "Redis Sentinel ready: master $REDIS_MASTER_NAME on 127.0.0.1:$primary, replica :$replica, Sentinels :${sentinels[0]}-${sentinels[2]}$([[ "$REDIS_TLS" == 1 ]] && echo ' (TLS, client certificates required)') in $(elapsed "$started")s (logs $root/<port>/node.log)"
	sentinel_env
}

# sentinel_wait_ok SECONDS: every running Sentinel knows the master, one
# replica and the two other Sentinels, and the replica's link is up.
sentinel_wait_ok() {
	local deadline=$((SECONDS + $1)) p ok info
	while :; do
		ok=1
		for p in "${sentinels[@]}"; do
			pid_alive "$root/$p/node.pid" || continue
			info="$(redis_cli "$p" sentinel master "$REDIS_MASTER_NAME" 2>/dev/null | paste - - || true)"
			grep -qP '^num-slaves\t1$' <<<"$info" && grep -qP '^num-other-sentinels\t2$' <<<"$info" &&
				grep -qP '^flags\tmaster$' <<<"$info" || ok=0
		done
		local m
		m="$(sentinel_master_port)"
		for p in "$primary" "$replica"; do
			[[ "$p" == "$m" ]] && continue
			pid_alive "$root/$p/node.pid" || continue
			redis_cli "$p" info replication 2>/dev/null | grep -q '^master_link_status:up' || ok=0
		done
		((ok)) && return 0
		((SECONDS >= deadline)) && break
		sleep 0.2
	done
	redis_cli "${sentinels[0]}" sentinel master "$REDIS_MASTER_NAME" >&2 || true
	die "the Sentinels did not agree on a master with one synchronised replica within $1s"
}

# sentinel_master_port: the master's port, as the first Sentinel that
# answers says.
sentinel_master_port() {
	local p out
	for p in "${sentinels[@]}"; do
		pid_alive "$root/$p/node.pid" || continue
		if out="$(redis_cli "$p" sentinel get-master-addr-by-name "$REDIS_MASTER_NAME" 2>/dev/null)" && [[ -n "$out" ]]; then
			sed -n 2p <<<"$out"
			return 0
		fi
	done
	return 1
}

sentinel_env() {
	local list
	list="$(printf '127.0.0.1:%s,' "${sentinels[@]}")"
	list="${list%,}"
	printf 'export IDSYNC_TEST_REDIS_SENTINEL=%s IDSYNC_TEST_REDIS_MASTER=%s\n' "$list" "$REDIS_MASTER_NAME"
	printf 'export IDSYNC_REDIS_ADDRS=%s IDSYNC_REDIS_MASTER_NAME=%s\n' "$list" "$REDIS_MASTER_NAME"
	if [[ "$REDIS_TLS" == 1 ]]; then
		printf 'export IDSYNC_TEST_REDIS_TLS_DIR=%s\n' "$CERTS_DIR"
		printf 'export IDSYNC_REDIS_TLS_ENABLED=true IDSYNC_REDIS_TLS_CA_FILE=%s IDSYNC_REDIS_TLS_CERT_FILE=%s IDSYNC_REDIS_TLS_KEY_FILE=%s\n' \
			"$CERTS_DIR/ca.pem" "$CERTS_DIR/client.pem" "$CERTS_DIR/client.key"
	fi
}

node_dir() {
	[[ -n "${1:-}" && -f "$root/$1/node.conf" ]] || die "no node on port ${1:-?} (data nodes $primary $replica, Sentinels ${sentinels[*]})"
	printf '%s\n' "$root/$1"
}

cmd="${1:-}"
shift || true
redis_tls_mode "$root" "$cmd" "$@"
case "$cmd" in
start) sentinel_start ;;
stop) redis_nodes_stop "$root" ;;
kill-master)
	m="$(sentinel_master_port)" || die "no Sentinel answers"
	redis_node_kill "$(node_dir "$m")"
	;;
kill) redis_node_kill "$(node_dir "${1:-}")" ;;
restart)
	redis_node_start "$(node_dir "${1:-}")"
	sentinel_wait_ok 60
	log "node $1 restarted; the Sentinels see a master and a synchronised replica"
	;;
master) printf '127.0.0.1:%s\n' "$(sentinel_master_port)" ;;
env) sentinel_env ;;
*) die "usage: $0 start [--tls] | stop | kill-master | kill PORT | restart PORT | master | env" ;;
esac
