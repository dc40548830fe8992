# Shared settings and helpers for the deploy/local scripts. Sourced, never run.
#
# Every setting can be overridden from the environment:
#
#   KAFKA_VERSION          Apache Kafka release to fetch and run (4.4.0)
#   KAFKA_PORT             broker listener on 127.0.0.1 (9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener on 127.0.0.1 (9093)
#   KAFKA_HEAP             JVM heap for the broker (512m)
#   KAFKA_JVM_OPTS         extra JVM options for the broker and storage tool (none)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer metadata (180)
#   REDIS_PORT             redis-server port on 127.0.0.1 (6379)
#   REDIS_CLUSTER_PORT     first of the six Redis Cluster node ports (7000: 7000-7005;
#                          each node's cluster bus is its port + 10000)
#   REDIS_SENTINEL_DATA_PORT  first of the primary and replica ports of the Sentinel
#                          setup (6380: primary 6380, replica 6381)
#   REDIS_SENTINEL_PORT    first of the three Sentinel ports (26379: 26379-26381)
#   REDIS_MASTER_NAME      the name the Sentinels monitor (idsync)
#
# The three-node cluster of kafka-cluster.sh; node N (1, 2, 3) listens on each
# base port + N - 1:
#
#   KAFKA_CLUSTER_PORT             plaintext client listeners (19092: 19092-19094)
#   KAFKA_CLUSTER_CONTROLLER_PORT  KRaft controller listeners (19192: 19192-19194)
#   KAFKA_CLUSTER_TLS_PORT         TLS client listeners, with --tls (19292: 19292-19294)
#   KAFKA_CLUSTER_MTLS_PORT        mutual-TLS client listeners, with --tls (19392: 19392-19394)
#   KAFKA_CLUSTER_HEAP             JVM heap of each node (320m)
#   KAFKA_CLUSTER_TLS              1 = start with --tls (0)
#
#   IDSYNC_RUN_DIR         pid files, logs and data of the running stack (/tmp/idsync-stack)
#   IDSYNC_CACHE_DIR       where fetched jars are kept (${XDG_CACHE_HOME:-$HOME/.cache}/idsync)

# The repository root, whatever directory the caller ran the script from.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL_DIR="$REPO_ROOT/deploy/local"

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
# Alone on 2 cores the broker answers in about 5 s; with a compiler busy beside
# it, a minute and more has been seen. The deadline only matters on failure.
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-180}"
REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_CLUSTER_PORT="${REDIS_CLUSTER_PORT:-7000}"
REDIS_SENTINEL_DATA_PORT="${REDIS_SENTINEL_DATA_PORT:-6380}"
REDIS_SENTINEL_PORT="${REDIS_SENTINEL_PORT:-26379}"
REDIS_MASTER_NAME="${REDIS_MASTER_NAME:-idsync}"

KAFKA_CLUSTER_PORT="${KAFKA_CLUSTER_PORT:-19092}"
KAFKA_CLUSTER_CONTROLLER_PORT="${KAFKA_CLUSTER_CONTROLLER_PORT:-19192}"
KAFKA_CLUSTER_TLS_PORT="${KAFKA_CLUSTER_TLS_PORT:-19292}"
KAFKA_CLUSTER_MTLS_PORT="${KAFKA_CLUSTER_MTLS_PORT:-19392}"
KAFKA_CLUSTER_HEAP="${KAFKA_CLUSTER_HEAP:-320m}"
KAFKA_CLUSTER_TLS="${KAFKA_CLUSTER_TLS:-0}"

IDSYNC_RUN_DIR="${IDSYNC_RUN_DIR:-/tmp/idsync-stack}"
IDSYNC_CACHE_DIR="${IDSYNC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/idsync}"

# The broker's classpath: every jar in this directory. It exists only when a
# fetch completed (fetch_kafka_jars moves it into place last).
KAFKA_LIB_DIR="$IDSYNC_CACHE_DIR/kafka-$KAFKA_VERSION/lib"

KAFKA_RUN_DIR="$IDSYNC_RUN_DIR/kafka"
REDIS_RUN_DIR="$IDSYNC_RUN_DIR/redis"
REDIS_CLUSTER_RUN_DIR="$IDSYNC_RUN_DIR/redis-cluster"
REDIS_SENTINEL_RUN_DIR="$IDSYNC_RUN_DIR/redis-sentinel"
# The TLS material of every TLS stack (certs.sh writes it).
CERTS_DIR="$IDSYNC_RUN_DIR/certs"
KAFKA_CLUSTER_RUN_DIR="$IDSYNC_RUN_DIR/kafka-cluster"

log() { printf '[deploy/local] %s\n' "$*" >&2; }
die() { printf '[deploy/local] error: %s\n' "$*" >&2; exit 1; }

# now_ms prints the wall clock in milliseconds; elapsed PREVIOUS_MS prints the
# seconds since then with one decimal, for reporting start-up times.
now_ms() {
	local t="${EPOCHREALTIME/[.,]/}"
	printf '%s\n' "$((t / 1000))"
}
elapsed() {
	local ms=$(($(now_ms) - $1))
	printf '%d.%d\n' "$((ms / 1000))" "$((ms % 1000 / 100))"
}

# port_in_use PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pid_alive FILE: true when FILE names a running process.
pid_alive() {
	local pid
	[[ -s "$1" ]] || return 1
	pid="$(cat "$1")"
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	# A killed process whose parent is gone may stay a zombie when PID 1
	# does not reap: it holds no port and no files, so it counts as dead.
	[[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]
}

# java_major prints the major version of the java on PATH (8 for "1.8.0_x").
java_major() {
	local v
	v="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
	case "$v" in
	1.*) v="${v#1.}" ;;
	esac
	printf '%s\n' "${v%%[.+-]*}"
}

# fetch_kafka_jars puts kafka_2.13:$KAFKA_VERSION and its runtime dependencies
# into $KAFKA_LIB_DIR with Maven, using deploy/local/kafka/pom.xml. It does
# nothing when the directory is already there. The jars land in a temporary
# directory first and are moved into place at the end, so an interrupted fetch
# never leaves a half-filled lib directory that a later run would trust.
fetch_kafka_jars() {
	local main_jar="$KAFKA_LIB_DIR/kafka_2.13-$KAFKA_VERSION.jar"
	if [[ -f "$main_jar" ]]; then
		return 0
	fi
	command -v mvn >/dev/null || die "mvn not found: install Maven 3.8+ (apt-get install -y maven)"

	local tmp="$KAFKA_LIB_DIR.tmp.$$"
	rm -rf "$tmp"
	mkdir -p "$(dirname "$KAFKA_LIB_DIR")"
	log "fetching Apache Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIB_DIR"
	local started=$SECONDS
	# Maven's output goes to a file, shown only when it fails: even with -q,
	# Debian's Maven 3.8 prints stray terminal escape codes.
	local mvn_log="$IDSYNC_CACHE_DIR/kafka-$KAFKA_VERSION/maven.log"
	if ! mvn -B --no-transfer-progress -Dstyle.color=never \
		-f "$LOCAL_DIR/kafka/pom.xml" \
		-Dkafka.version="$KAFKA_VERSION" \
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
		>"$mvn_log" 2>&1; then
		tail -n 40 "$mvn_log" >&2
		rm -rf "$tmp"
		die "Maven could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION (full log: $mvn_log)"
	fi
	[[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "Maven finished but kafka_2.13-$KAFKA_VERSION.jar is missing from $tmp"
	rm -rf "$KAFKA_LIB_DIR"
	mv "$tmp" "$KAFKA_LIB_DIR"
	log "fetched $(find "$KAFKA_LIB_DIR" -name '*.jar' | wc -l) jars in $((SECONDS - started))s"
}

# --- Redis nodes (redis-cluster.sh, redis-sentinel.sh) ---------------------
#
# A node is a directory holding node.conf (written once by its script),
# node.pid, node.log and its data. REDIS_TLS=1 (set by the scripts' --tls)
# makes the nodes listen with TLS only, mutual TLS required, and redis_cli
# connect with the client certificate of $CERTS_DIR.

REDIS_TLS="${REDIS_TLS:-0}"

# redis_tls_mode ROOT COMMAND [--tls]: sets REDIS_TLS. start takes it from
# --tls alone (and remembers it in ROOT/tls); the other commands from what
# the start remembered, so that kill, restart and status need no flag.
redis_tls_mode() {
	local root="$1" cmd="$2"
	shift 2
	if [[ "$cmd" == start ]]; then
		[[ "${1:-}" == --tls ]] && REDIS_TLS=1
	elif [[ -f "$root/tls" ]]; then
		REDIS_TLS=1
	fi
	return 0
}

# redis_require: redis-server and redis-cli are installed; with TLS, the
# certificates exist (certs.sh).
redis_require() {
	command -v redis-server >/dev/null || die "redis-server not found: run deploy/local/install.sh"
	command -v redis-cli >/dev/null || die "redis-cli not found: run deploy/local/install.sh"
	if [[ "$REDIS_TLS" == 1 ]]; then
		bash "$LOCAL_DIR/certs.sh" "$CERTS_DIR"
	fi
}

# redis_listen_conf PORT: the listener lines of a node's configuration,
# plain or TLS only (port 0, tls-port, client certificates required, TLS to
# replicas and on the cluster bus).
redis_listen_conf() {
	printf 'bind 127.0.0.1\n'
	if [[ "$REDIS_TLS" == 1 ]]; then
		cat <<-EOF
			port 0
			tls-port $1
			tls-cert-file $CERTS_DIR/server.pem
			tls-key-file $CERTS_DIR/server.key
			tls-ca-cert-file $CERTS_DIR/ca.pem
			tls-auth-clients yes
			tls-replication yes
			tls-cluster yes
		EOF
	else
		printf 'port %s\n' "$1"
	fi
}

# redis_cli PORT ARGS...: redis-cli against 127.0.0.1:PORT, with the client
# certificate when REDIS_TLS=1.
redis_cli() {
	local port="$1"
	shift
	local tls=()
	if [[ "$REDIS_TLS" == 1 ]]; then
		tls=(--tls --cacert "$CERTS_DIR/ca.pem" --cert "$CERTS_DIR/client.pem" --key "$CERTS_DIR/client.key")
	fi
	redis-cli -h 127.0.0.1 -p "$port" "${tls[@]}" "$@"
}

# redis_node_start DIR: starts the node whose configuration is DIR/node.conf,
# daemonized, and waits until it answers PING (15 s).
redis_node_start() {
	local dir="$1" port
	port="$(sed -n 's/^\(tls-\)\{0,1\}port \([1-9][0-9]*\)$/\2/p' "$dir/node.conf" | head -n1)"
	if pid_alive "$dir/node.pid"; then
		return 0
	fi
	port_in_use "$port" && die "127.0.0.1:$port is taken by another process: choose other ports (see common.sh)"
	local mode=()
	grep -q '^sentinel monitor' "$dir/node.conf" && mode=(--sentinel)
	(cd "$dir" && redis-server "$dir/node.conf" "${mode[@]}" --daemonize yes --pidfile "$dir/node.pid" --logfile "$dir/node.log")
	local deadline=$((SECONDS + 15))
	until [[ "$(redis_cli "$port" ping 2>/dev/null)" == PONG ]]; do
		if ((SECONDS >= deadline)); then
			tail -n 20 "$dir/node.log" >&2 || true
			die "the Redis node of $dir did not answer PING on 127.0.0.1:$port within 15s"
		fi
		sleep 0.1
	done
}

# redis_node_kill DIR: SIGKILL, as a crash; the node's files stay for a restart.
redis_node_kill() {
	local dir="$1" pid
	pid_alive "$dir/node.pid" || die "no running node in $dir"
	pid="$(cat "$dir/node.pid")"
	kill -KILL "$pid"
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		[[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && break
		sleep 0.1
	done
	log "killed the Redis node of $dir (pid $pid)"
}

# redis_nodes_stop ROOT [keep]: stops every node under ROOT (TERM, then
# KILL after 10 s) and removes ROOT, unless "keep" (a failed start keeps
# its logs).
redis_nodes_stop() {
	local root="$1" keep="${2:-}" f pid pids=()
	[[ -d "$root" ]] || return 0
	for f in "$root"/*/node.pid; do
		# Read once: redis-server removes its pid file as it exits.
		pid_alive "$f" && pid="$(cat "$f" 2>/dev/null)" && pids+=("$pid")
	done
	((${#pids[@]} == 0)) || kill -TERM "${pids[@]}" 2>/dev/null || true
	local deadline=$((SECONDS + 10))
	for pid in "${pids[@]}"; do
		while kill -0 "$pid" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]; do
			if ((SECONDS >= deadline)); then
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
	done
	[[ "$keep" == keep ]] || rm -rf "$root"
}

# kafka_java HEAP sets the array KAFKA_JAVA to the java command line that runs
# a Kafka class with the fetched jars: G1, a fixed heap, KAFKA_JVM_OPTS, and
# slf4j-simple's timestamps. Append the main class and its arguments.
kafka_java() {
	KAFKA_JAVA=(java -Xms"$1" -Xmx"$1" -XX:+UseG1GC -Djava.awt.headless=true
		-Dorg.slf4j.simpleLogger.showDateTime=true
		-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd\'T\'HH:mm:ss.SSS)
	# Word-split on purpose: a list of options.
	# shellcheck disable=SC2206
	KAFKA_JAVA+=($KAFKA_JVM_OPTS -cp "$KAFKA_LIB_DIR/*")
}

# new_cluster_id prints a random 16-byte ID in Kafka's URL-safe base64 form,
# like `StorageTool random-uuid`, without paying for a JVM start.
new_cluster_id() {
	head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='
}

# build_probe builds deploy/local/kafkaready into $KAFKA_PROBE in the
# background; wait for $PROBE_BUILD_PID before running it.
KAFKA_PROBE="$IDSYNC_RUN_DIR/bin/kafkaready"
build_probe() {
	mkdir -p "$(dirname "$KAFKA_PROBE")"
	(cd "$REPO_ROOT" && go build -o "$KAFKA_PROBE" ./deploy/local/kafkaready) &
	PROBE_BUILD_PID=$!
}

# launch_detached PIDFILE LOGFILE COMMAND...: runs COMMAND in a session of its
# own (it outlives the script, and a Ctrl-C in the terminal reaches only the
# caller, whose trap then stops it in order), output appended to LOGFILE, and
# returns once COMMAND's pid is in PIDFILE.
launch_detached() {
	local pidfile="$1" logfile="$2"
	shift 2
	rm -f "$pidfile"
	# The inner bash writes its pid and execs the command.
	setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" "$@" >>"$logfile" 2>&1 </dev/null &
	local launched=$!
	for _ in $(seq 50); do
		[[ -s "$pidfile" ]] && break
		kill -0 "$launched" 2>/dev/null || break
		sleep 0.1
	done
}

# stop_pid NAME PIDFILE GRACE_SECONDS [SIGNAL]: sends SIGNAL (TERM) to the
# process in PIDFILE, KILL if it has not exited after GRACE_SECONDS, waits
# for it to be gone and removes PIDFILE. Nothing to do when it is not running.
stop_pid() {
	local name="$1" pidfile="$2" grace="$3" sig="${4:-TERM}" pid
	if ! pid_alive "$pidfile"; then
		rm -f "$pidfile"
		return 0
	fi
	pid="$(cat "$pidfile")"
	log "stopping $name (pid $pid, SIG$sig)"
	kill -"$sig" "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + grace))
	while pid_alive "$pidfile"; do
		if ((SECONDS >= deadline)); then
			log "$name did not exit within ${grace}s of SIG$sig: killing it"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.2
	done
	# Wait for KILL to land, briefly, so the ports are free for a restart.
	for _ in $(seq 1 25); do
		pid_alive "$pidfile" || break
		sleep 0.2
	done
	rm -f "$pidfile"
}
