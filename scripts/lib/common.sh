# Shared by scripts/test.sh and scripts/cluster.sh (sourced, not run): messages, process
# stops, loopback ports, waiting for a server, and the installs both need (Debian packages,
# SecantusDB's secantusd-rs in a cache directory).
#
# The sourcing script sets ROOT, and may set HERALD_CACHE and SERVER_START_TIMEOUT_S first.

HERALD_CACHE=${HERALD_CACHE:-$HOME/.cache/herald}
SECANTUS_CRATE=secantus-mdb
SECANTUS_VERSION=0.5.3-beta.196
SECANTUS_ROOT=$HERALD_CACHE/secantus
SECANTUSD=$SECANTUS_ROOT/bin/secantusd-rs
# Seconds a server gets to answer after it is started.
SERVER_START_TIMEOUT_S=${SERVER_START_TIMEOUT_S:-30}

header() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
	printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2
	exit 1
}

# stop_pid NAME PID: SIGTERM, wait up to 10 s, then SIGKILL. PID need not be our child.
stop_pid() {
	local name=$1 pid=$2 i
	[[ -n $pid ]] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		info "$name (pid $pid) ignored SIGTERM; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# tcp_open PORT: true when something accepts connections on 127.0.0.1:PORT.
tcp_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port: prints a loopback TCP port nothing listens on, below the kernel's ephemeral
# range so an outgoing connection cannot take it meanwhile. The caller retries on the
# (unlikely) race of another process binding it first.
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 12000))
		if ! tcp_open "$p"; then
			echo "$p"
			return 0
		fi
	done
	die "no free loopback port found"
}

# show_log FILE: the tail of a server log, for a failed start.
show_log() {
	if [[ -s $1 ]]; then
		info "last lines of $1:"
		tail -n 20 "$1" | sed 's/^/      /' >&2
	fi
}

# wait_until_up NAME PID LOG CHECK...: polls CHECK until it succeeds; fails if the process
# exits or the timeout passes.
wait_until_up() {
	local name=$1 pid=$2 log=$3 i
	shift 3
	for ((i = 0; i < SERVER_START_TIMEOUT_S * 10; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			info "$name exited during startup"
			show_log "$log"
			return 1
		fi
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	info "$name did not answer within ${SERVER_START_TIMEOUT_S}s"
	show_log "$log"
	return 1
}

redis_ping() {
	[[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]
}

# install_packages PKG...: installs the Debian packages given (apt-get; sudo when not root).
install_packages() {
	(($# > 0)) || return 0
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null || die "missing packages ($*) and not root; install them with apt-get"
		sudo=(sudo -n)
	fi
	info "installing: $*"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# ensure_secantus: builds SecantusDB's secantusd-rs into the cache once (cmake must be there).
ensure_secantus() {
	if [[ -x $SECANTUSD ]] && "$SECANTUSD" --version 2>/dev/null | grep -qF "$SECANTUS_VERSION"; then
		info "cached: $SECANTUSD"
		return 0
	fi
	info "building secantusd-rs once (about 7 minutes; later runs reuse the cache)"
	cargo install "$SECANTUS_CRATE" --version "$SECANTUS_VERSION" --ignore-rust-version \
		--root "$SECANTUS_ROOT"
	[[ -x $SECANTUSD ]] || die "cargo install did not produce $SECANTUSD"
}

# start_secantus PORT DIR LOG: starts secantusd-rs in the background (its pid in $!), with a
# small cache and WAL file so an empty store stays small and starts fast.
start_secantus() {
	"$SECANTUSD" --host 127.0.0.1 --port "$1" --storage-path "$2" \
		--cache-size 256M --log-file-max 16MB --log-level WARNING \
		>"$3" 2>&1 </dev/null &
}
