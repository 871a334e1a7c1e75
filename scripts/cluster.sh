#!/usr/bin/env bash
# A local Herald cluster without Docker: the topology of docker/docker-compose.yml, run
# natively on one machine.
#
#   scripts/cluster.sh up              start what is not running (idempotent); print how to use it
#   scripts/cluster.sh down            stop exactly what `up` started
#   scripts/cluster.sh status          what runs, and whether haproxy sees each node up
#   scripts/cluster.sh restart NODE    SIGTERM one node (node1..node3), wait for its drain, start it again
#   scripts/cluster.sh token USER      print a connection token for USER (1 hour)
#   scripts/cluster.sh post USER TEXT  post a message to USER through the load balancer
#   scripts/cluster.sh configs         only write the config files (printing where)
#
# What runs (all on 127.0.0.1):
#   redis-server             the user -> node route table
#   secantusd-rs             the MongoDB message store (SecantusDB, MongoDB wire protocol;
#                            built once into $HERALD_CACHE), or a real `mongod` if installed
#   herald node1..node3      each with its public listener and its internal listener
#   haproxy (Debian)         the load balancer on ONE public port: WebSocket upgrades and the
#                            REST API, health checks on /readyz, and nothing else; the nodes'
#                            internal listeners are never behind it. A second loopback port
#                            (ops) serves the dashboard, /metrics and haproxy's own stats page.
#
# Knobs (environment):
#   HERALD_CLUSTER_DIR       state: configs, logs, pids, data (default target/cluster)
#   HERALD_CLUSTER_PORT      the public port (default 8080)
#   HERALD_CLUSTER_OPS_PORT  the operators' port (default 8090)
#   HERALD_BIN               the herald binary (default: built with cargo build --release)
#   HERALD_CACHE             where secantusd-rs is cached (default ~/.cache/herald)
# Ports, secrets and data are kept in the state directory, so `down` then `up` brings back
# the same cluster with its stored messages; remove the directory for a fresh one.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$ROOT/scripts/lib/common.sh"

DIR=${HERALD_CLUSTER_DIR:-$ROOT/target/cluster}
NODES=(node1 node2 node3)
ETC=$DIR/etc
LOGS=$DIR/logs
PIDS=$DIR/pids
DATA=$DIR/data
STATE=$DIR/state.env

usage() {
	sed -n '5,11p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# ---------------------------------------------------------------------------------------
# State: ports and secrets, chosen once and kept.
# ---------------------------------------------------------------------------------------

secret() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

load_state() {
	mkdir -p "$ETC" "$LOGS" "$PIDS" "$DATA"
	if [[ ! -f $STATE ]]; then
		local public=${HERALD_CLUSTER_PORT:-8080} ops=${HERALD_CLUSTER_OPS_PORT:-8090} n
		{
			echo "PUBLIC_PORT=$public"
			echo "OPS_PORT=$ops"
			echo "REDIS_PORT=$(free_port)"
			echo "MONGO_PORT=$(free_port)"
			for n in "${NODES[@]}"; do
				echo "PORT_$n=$(free_port)"
				echo "INTERNAL_$n=$(free_port)"
			done
			echo "JWT_SECRET=$(secret)"
			echo "API_KEY=$(secret)"
			echo "ADMIN_KEY=$(secret)"
			echo "CLUSTER_SECRET=$(secret)"
		} >"$STATE.tmp"
		mv "$STATE.tmp" "$STATE"
	fi
	# shellcheck disable=SC1090
	source "$STATE"
}

port_of() { local v="PORT_$1"; echo "${!v}"; }
internal_of() { local v="INTERNAL_$1"; echo "${!v}"; }

# Config files (write_node_config, write_haproxy_config, write_configs)
# shellcheck source=scripts/lib/cluster_configs.sh
source "$ROOT/scripts/lib/cluster_configs.sh"

# ---------------------------------------------------------------------------------------
# Processes: one pid file each; a pid counts only while it is still that program.
# ---------------------------------------------------------------------------------------

# running NAME PROGRAM: true when the pid in NAME's pid file is alive and runs PROGRAM.
running() {
	local pidfile=$PIDS/$1.pid pid
	[[ -f $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$2"
}

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

# launch NAME CMD...: starts CMD detached (own session, so a terminal's Ctrl-C does not
# reach it), with the open-file limit raised for many sockets; logs to logs/NAME.log.
launch() {
	local name=$1
	shift
	(
		ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
		exec setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null
	) &
	echo $! >"$PIDS/$name.pid"
}

# stop NAME PROGRAM: stops it if `up` started it and it is still running.
stop() {
	if running "$1" "$2"; then
		info "stopping $1 (pid $(pid_of "$1"))"
		stop_pid "$1" "$(pid_of "$1")"
	fi
	rm -f "$PIDS/$1.pid"
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

herald_bin() {
	if [[ -n ${HERALD_BIN:-} ]]; then
		[[ -x $HERALD_BIN ]] || die "HERALD_BIN=$HERALD_BIN is not an executable"
		echo "$HERALD_BIN"
		return
	fi
	local bin=$ROOT/target/release/herald
	if [[ ! -x $bin || -n $(find "$ROOT/src" "$ROOT/Cargo.toml" -newer "$bin" -print -quit) ]]; then
		info "building herald (cargo build --release; the first time takes a while)" >&2
		(cd "$ROOT" && cargo build --release --bin herald >&2)
	fi
	echo "$bin"
}

mongo_kind() { command -v mongod >/dev/null && echo mongod || echo secantusd-rs; }

start_redis() {
	running redis redis-server && return 0
	mkdir -p "$DATA/redis"
	launch redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$DATA/redis"
	wait_until_up redis-server "$(pid_of redis)" "$LOGS/redis.log" redis_ping "$REDIS_PORT" ||
		die "redis-server did not start"
	info "redis-server    pid $(pid_of redis)  127.0.0.1:$REDIS_PORT"
}

start_mongo() {
	local kind
	kind=$(mongo_kind)
	running mongo "$kind" && return 0
	mkdir -p "$DATA/mongo"
	if [[ $kind == mongod ]]; then
		launch mongo mongod --bind_ip 127.0.0.1 --port "$MONGO_PORT" --dbpath "$DATA/mongo"
	else
		launch mongo "$SECANTUSD" --host 127.0.0.1 --port "$MONGO_PORT" \
			--storage-path "$DATA/mongo" --cache-size 256M --log-file-max 16MB --log-level WARNING
	fi
	wait_until_up "$kind" "$(pid_of mongo)" "$LOGS/mongo.log" tcp_open "$MONGO_PORT" ||
		die "$kind did not start"
	info "$kind $(printf '%*s' $((15 - ${#kind})) '')pid $(pid_of mongo)  127.0.0.1:$MONGO_PORT"
}

start_node() {
	local n=$1 bin=$2
	running "$n" "$bin" && return 0
	launch "$n" "$bin" serve --config "$ETC/$n.toml"
	wait_until_up "$n" "$(pid_of "$n")" "$LOGS/$n.log" http_ok "http://127.0.0.1:$(port_of "$n")/readyz" ||
		die "$n did not become ready"
	info "$n           pid $(pid_of "$n")  public 127.0.0.1:$(port_of "$n"), internal 127.0.0.1:$(internal_of "$n")"
}

start_haproxy() {
	running haproxy haproxy && return 0
	haproxy -c -q -f "$ETC/haproxy.cfg" || die "haproxy refused $ETC/haproxy.cfg"
	launch haproxy haproxy -db -f "$ETC/haproxy.cfg"
	wait_until_up haproxy "$(pid_of haproxy)" "$LOGS/haproxy.log" tcp_open "$PUBLIC_PORT" ||
		die "haproxy did not start (is port $PUBLIC_PORT taken? set HERALD_CLUSTER_PORT)"
	info "haproxy         pid $(pid_of haproxy)  public 127.0.0.1:$PUBLIC_PORT, ops 127.0.0.1:$OPS_PORT"
}

# wait_balanced: until haproxy reports every node UP (its checks run every 500 ms).
wait_balanced() {
	local i
	for ((i = 0; i < 100; i++)); do
		if [[ $(backend_states | grep -c ' UP$' || true) -eq ${#NODES[@]} ]]; then
			return 0
		fi
		sleep 0.2
	done
	info "haproxy does not see every node up yet:"
	backend_states | sed 's/^/      /'
}

# backend_states: "node STATUS" per node, as haproxy's health checks see it.
backend_states() {
	curl -fsS --max-time 2 "http://127.0.0.1:$OPS_PORT/haproxy;csv" 2>/dev/null |
		awk -F, '$1 == "herald_ws" && $2 != "BACKEND" { print $2, $18 }'
}

token() {
	"$(herald_bin)" token "$1" --ttl 1h --config "$ETC/node1.toml"
}

# ---------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------

cmd_up() {
	header "Checking what the cluster needs"
	local missing=()
	command -v redis-server >/dev/null || missing+=(redis-server)
	command -v redis-cli >/dev/null || missing+=(redis-tools)
	command -v haproxy >/dev/null || missing+=(haproxy)
	command -v curl >/dev/null || missing+=(curl)
	if [[ $(mongo_kind) == secantusd-rs && ! -x $SECANTUSD ]]; then
		command -v cmake >/dev/null || missing+=(cmake)
	fi
	install_packages "${missing[@]}"
	[[ $(mongo_kind) == secantusd-rs ]] && ensure_secantus
	local bin
	bin=$(herald_bin)
	load_state
	write_configs
	header "Starting the cluster (state in $DIR)"
	start_redis
	start_mongo
	local n
	for n in "${NODES[@]}"; do
		start_node "$n" "$bin"
	done
	start_haproxy
	wait_balanced
	local tok
	tok=$(token alice)
	header "Herald cluster is up"
	cat <<EOF
    Public (load balancer):  http://127.0.0.1:$PUBLIC_PORT   (/ws, /api/, /demo)
    Demo page as alice:      http://127.0.0.1:$PUBLIC_PORT/demo#token=$tok&device=browser
    Post to alice:           $0 post alice "hello"
    Producer API key:        $API_KEY
    Dashboard (ops port):    http://127.0.0.1:$OPS_PORT/dashboard   (any user name, password: the admin key)
    Admin key:               $ADMIN_KEY
    haproxy stats:           http://127.0.0.1:$OPS_PORT/haproxy
    Restart a node:          $0 restart node2
    Logs:                    $LOGS/
    Stop everything:         $0 down
EOF
}

cmd_down() {
	[[ -f $STATE ]] || {
		info "no cluster state in $DIR: nothing to stop"
		return 0
	}
	load_state
	header "Stopping the cluster in $DIR"
	stop haproxy haproxy
	local n
	for n in "${NODES[@]}"; do
		stop "$n" herald
	done
	stop mongo "$(mongo_kind)"
	stop redis redis-server
	info "stopped (data and logs kept in $DIR)"
}

cmd_status() {
	[[ -f $STATE ]] || {
		echo "no cluster in $DIR"
		return 1
	}
	load_state
	local name prog all=0 states
	states=$(backend_states || true)
	for name in redis mongo "${NODES[@]}" haproxy; do
		case $name in
		redis) prog=redis-server ;;
		mongo) prog=$(mongo_kind) ;;
		haproxy) prog=haproxy ;;
		*) prog=herald ;;
		esac
		if running "$name" "$prog"; then
			local lb=""
			[[ $name == node* ]] && lb=" (haproxy: $(awk -v n="$name" '$1 == n { print $2 }' <<<"$states"))"
			printf '%-8s running  pid %s%s\n' "$name" "$(pid_of "$name")" "$lb"
		else
			printf '%-8s stopped\n' "$name"
			all=1
		fi
	done
	echo "public: http://127.0.0.1:$PUBLIC_PORT   ops: http://127.0.0.1:$OPS_PORT"
	return "$all"
}

cmd_restart() {
	local n=${1:-}
	[[ " ${NODES[*]} " == *" $n "* ]] || die "restart which node? one of: ${NODES[*]}"
	load_state
	local bin start=$SECONDS
	bin=$(herald_bin)
	if running "$n" "$bin"; then
		info "SIGTERM $n (pid $(pid_of "$n")): it drains, then exits"
		local pid
		pid=$(pid_of "$n")
		kill -TERM "$pid"
		while kill -0 "$pid" 2>/dev/null; do
			((SECONDS - start < 60)) || die "$n did not exit within 60 s of SIGTERM"
			sleep 0.1
		done
		info "$n exited after $((SECONDS - start)) s"
	fi
	write_node_config "$n"
	start_node "$n" "$bin"
	wait_balanced
}

cmd_post() {
	(($# == 2)) || die "usage: $0 post USER TEXT"
	load_state
	local body text=${2//\\/\\\\}
	text=${text//\"/\\\"}
	body=$(printf '{"to":"%s","topic":"demo","payload":{"text":"%s"}}' "$1" "$text")
	curl -sS "http://127.0.0.1:$PUBLIC_PORT/api/v1/messages" \
		-H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' -d "$body"
	echo
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
restart) cmd_restart "${2:-}" ;;
token)
	[[ -n ${2:-} ]] || die "usage: $0 token USER"
	load_state
	token "$2"
	;;
post)
	shift
	cmd_post "$@"
	;;
configs)
	load_state
	write_configs
	echo "$ETC"
	;;
*) usage ;;
esac
