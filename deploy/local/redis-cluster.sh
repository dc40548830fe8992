#!/usr/bin/env bash
# A six-node Redis Cluster on 127.0.0.1 (three masters, one replica each) for
# the cluster tests and for trying idsync on a cluster by hand.
#
#   redis-cluster.sh start [--tls]   start it empty (a running one is stopped first)
#   redis-cluster.sh stop            stop every node and remove its files
#   redis-cluster.sh kill PORT       SIGKILL the node on PORT (a crash)
#   redis-cluster.sh restart PORT    start a killed node again; it rejoins
#   redis-cluster.sh move-slots FROM TO [N]
#                                    reshard: move N slots (default: all it has)
#                                    from the master on port FROM to the one on TO
#   redis-cluster.sh status          `cluster nodes` as one node sees it
#   redis-cluster.sh env             the settings that point tests and idsync at it
#
# Ports REDIS_CLUSTER_PORT .. +5 (default 7000-7005), cluster bus on port +
# 10000; files under $IDSYNC_RUN_DIR/redis-cluster/<port>/ (see common.sh).
# The nodes time out a peer after 2 s (cluster-node-timeout), so a replica
# takes over a killed master within a few seconds. No persistence: a
# restarted node resynchronises from its master.
#
# --tls: TLS only (port 0, tls-port), mutual TLS required of clients, TLS on
# the cluster bus and for replication, with the certificates of certs.sh in
# $IDSYNC_RUN_DIR/certs. Later commands remember the mode.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

root="$REDIS_CLUSTER_RUN_DIR"
ports=()
for i in 0 1 2 3 4 5; do
	ports+=("$((REDIS_CLUSTER_PORT + i))")
done

cluster_start() {
	redis_nodes_stop "$root"
	redis_require
	mkdir -p "$root"
	# A start that fails half-way leaves no node running (its logs stay).
	trap 'redis_nodes_stop "$root" keep' EXIT
	[[ "$REDIS_TLS" == 1 ]] && touch "$root/tls"
	local started addrs=() p
	started="$(now_ms)"
	for p in "${ports[@]}"; do
		port_in_use "$p" && die "127.0.0.1:$p is taken by another process: choose other ports with REDIS_CLUSTER_PORT"
		port_in_use "$((p + 10000))" && die "127.0.0.1:$((p + 10000)) (cluster bus of $p) is taken: choose other ports with REDIS_CLUSTER_PORT"
		mkdir -p "$root/$p"
		{
			printf '# Written by deploy/local/redis-cluster.sh.\n'
			redis_listen_conf "$p"
			cat <<-EOF
				dir $root/$p
				cluster-enabled yes
				cluster-config-file nodes.conf
				cluster-node-timeout 2000
				# A master emptied by a reshard stays a master (so it can take its
				# slots back) instead of becoming a replica.
				cluster-allow-replica-migration no
				save ""
				appendonly no
			EOF
		} >"$root/$p/node.conf"
		redis_node_start "$root/$p"
		addrs+=("127.0.0.1:$p")
	done
	redis_cli "${ports[0]}" --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$root/create.log" 2>&1 ||
		{
			cat "$root/create.log" >&2
			die "redis-cli --cluster create failed"
		}
	cluster_wait_ok 30
	trap - EXIT
	log "Redis Cluster ready on 127.0.0.1:${ports[0]}-${ports[5]}$([[ "$REDIS_TLS" == 1 ]] && echo ' (TLS, client certificates required)') in $(elapsed "$started")s (logs $root/<port>/node.log)"
	cluster_env
}

# cluster_wait_ok SECONDS: every running node says cluster_state:ok and
# sees no failed node, and three of them are replicas whose link to their
# master is up (a replica that has not synchronised yet cannot take over).
cluster_wait_ok() {
	local deadline=$((SECONDS + $1)) p ok replicas
	while :; do
		ok=1 replicas=0
		for p in "${ports[@]}"; do
			pid_alive "$root/$p/node.pid" || continue
			if ! redis_cli "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' ||
				redis_cli "$p" cluster nodes 2>/dev/null | grep -q 'fail\|handshake\|noaddr'; then
				ok=0
			fi
			if redis_cli "$p" info replication 2>/dev/null | grep -q '^master_link_status:up'; then
				replicas=$((replicas + 1))
			fi
		done
		((ok && replicas >= 3)) && return 0
		((SECONDS >= deadline)) && break
		sleep 0.2
	done
	redis_cli "${ports[0]}" cluster nodes >&2 || true
	die "the cluster did not reach cluster_state:ok with three synchronised replicas within $1s"
}

cluster_env() {
	local list
	list="$(printf '127.0.0.1:%s,' "${ports[@]}")"
	list="${list%,}"
	printf 'export IDSYNC_TEST_REDIS_CLUSTER=%s\n' "$list"
	printf 'export IDSYNC_REDIS_ADDRS=%s\n' "$list"
	if [[ "$REDIS_TLS" == 1 ]]; then
		printf 'export IDSYNC_TEST_REDIS_TLS_DIR=%s\n' "$CERTS_DIR"
		printf 'export IDSYNC_REDIS_TLS_ENABLED=true IDSYNC_REDIS_TLS_CA_FILE=%s IDSYNC_REDIS_TLS_CERT_FILE=%s IDSYNC_REDIS_TLS_KEY_FILE=%s\n' \
			"$CERTS_DIR/ca.pem" "$CERTS_DIR/client.pem" "$CERTS_DIR/client.key"
	fi
}

# owned_slots PORT: how many slots the master on PORT owns.
owned_slots() {
	redis_cli "$1" cluster nodes | awk '/myself/ {
		n = 0
		for (i = 9; i <= NF; i++) {
			if ($i ~ /^\[/) continue
			split($i, r, "-")
			n += (r[2] == "" ? 1 : r[2] - r[1] + 1)
		}
		print n
	}'
}

# move_slots FROM TO [N]: redis-cli --cluster reshard, then wait until the
# cluster is ok again.
move_slots() {
	local from="$1" to="$2" count="${3:-}" fid tid started
	node_dir "$from" >/dev/null
	node_dir "$to" >/dev/null
	fid="$(redis_cli "$from" cluster myid)"
	tid="$(redis_cli "$to" cluster myid)"
	[[ -n "$count" ]] || count="$(owned_slots "$from")"
	((count > 0)) || die "the node on port $from owns no slot"
	started="$(now_ms)"
	redis_cli "$from" --cluster reshard "127.0.0.1:$from" --cluster-from "$fid" --cluster-to "$tid" \
		--cluster-slots "$count" --cluster-yes >"$root/reshard.log" 2>&1 ||
		{
			tail -n 20 "$root/reshard.log" >&2
			die "redis-cli --cluster reshard failed (log $root/reshard.log)"
		}
	cluster_wait_ok 60
	log "moved $count slots from $from to $to in $(elapsed "$started")s"
}

# node_dir PORT: the directory of one of the cluster's nodes.
node_dir() {
	[[ -n "${1:-}" && -f "$root/$1/node.conf" ]] || die "no cluster node on port ${1:-?} (nodes: ${ports[*]})"
	printf '%s\n' "$root/$1"
}

cmd="${1:-}"
shift || true
redis_tls_mode "$root" "$cmd" "$@"
case "$cmd" in
start) cluster_start ;;
stop) redis_nodes_stop "$root" ;;
kill) redis_node_kill "$(node_dir "${1:-}")" ;;
restart)
	redis_node_start "$(node_dir "${1:-}")"
	cluster_wait_ok 60
	log "node $1 restarted and the cluster is whole again"
	;;
move-slots) move_slots "${1:-}" "${2:-}" "${3:-}" ;;
status)
	for p in "${ports[@]}"; do
		if pid_alive "$root/$p/node.pid"; then
			redis_cli "$p" cluster nodes
			exit 0
		fi
	done
	die "no cluster node is running"
	;;
env) cluster_env ;;
*) die "usage: $0 start [--tls] | stop | kill PORT | restart PORT | move-slots FROM TO [N] | status | env" ;;
esac
