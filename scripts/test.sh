#!/usr/bin/env bash
# Herald's whole test suite, in one command: `./scripts/test.sh`.
#
# On a fresh Debian machine with Rust it:
#   1. installs what is missing: Debian's redis-server, cmake (to build the MongoDB
#      wire-protocol test server), haproxy (the local cluster's load balancer, driven by
#      scripts/cluster.sh in the tests), chromium (headless browser checks) and nodejs + npm
#      (to drive chromium with playwright-core);
#   2. installs SecantusDB's `secantusd-rs` (a MongoDB wire-protocol server) into a cache
#      directory that later runs reuse ($HERALD_CACHE, default ~/.cache/herald);
#   3. starts redis-server and secantusd-rs on free loopback ports, in a temporary directory,
#      and exports where they are:
#        HERALD_TEST_REDIS_URL=redis://127.0.0.1:<port>
#        HERALD_TEST_MONGO_URL=mongodb://127.0.0.1:<port>
#        HERALD_TEST_CHROMIUM=/usr/bin/chromium   (as root, pass --no-sandbox)
#        HERALD_TEST_PLAYWRIGHT=<cache>/playwright-<version>/node_modules/playwright-core
#      (playwright-core from the npm registry, pinned, cached like secantusd-rs; it drives
#      the system chromium and downloads no browser);
#        HERALD_TEST_OPENAPI_VALIDATOR=<cache>/openapi-validator-<version>/bin/openapi-spec-validator
#      (PyPI's openapi-spec-validator, pinned, in a Python venv cached the same way);
#   4. runs cargo fmt --check, cargo clippy -D warnings, cargo test (all targets, then doc
#      tests) and the JS client's checks (clients/js/scripts/check.sh: tsc on the types,
#      node tests), every step even when an earlier one failed, and prints a summary.
# It exits non-zero when any step failed. Whatever it started is stopped, and its temporary
# directory removed, on every exit path (success, failure, Ctrl-C, SIGTERM).
#
# Knobs (environment):
#   HERALD_CACHE         cache directory for secantusd-rs (default ~/.cache/herald)
#   HERALD_TEST_THREADS  parallel tests per test binary (default 2: integration tests
#                        start real servers and some are timing-sensitive)
#   HERALD_KEEP_TMP=1    keep the temporary directory (server logs and data) for debugging
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# shellcheck source=scripts/lib/common.sh
source "$ROOT/scripts/lib/common.sh"
PLAYWRIGHT_VERSION=1.65.1
PLAYWRIGHT_DIR=$HERALD_CACHE/playwright-$PLAYWRIGHT_VERSION
PLAYWRIGHT=$PLAYWRIGHT_DIR/node_modules/playwright-core
OPENAPI_VALIDATOR_VERSION=0.9.0
OPENAPI_VALIDATOR_DIR=$HERALD_CACHE/openapi-validator-$OPENAPI_VALIDATOR_VERSION
OPENAPI_VALIDATOR=$OPENAPI_VALIDATOR_DIR/bin/openapi-spec-validator
CHROMIUM=/usr/bin/chromium
TEST_THREADS=${HERALD_TEST_THREADS:-2}

SCRIPT_START=$SECONDS
TMP_DIR=""
REDIS_PID=""
SECANTUS_PID=""
# The running check (cargo and everything it starts), in its own process group.
STEP_PID=""

# ---------------------------------------------------------------------------------------
# Cleanup: stop exactly the processes this script started, remove its temporary directory.
# ---------------------------------------------------------------------------------------

# stop_group PGID: the same for a whole process group (a step: cargo, test binaries, and
# whatever the tests started).
stop_group() {
	local pgid=$1 i
	kill -TERM -- "-$pgid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 -- "-$pgid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$pgid" 2>/dev/null || true
	wait "$pgid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	# A second Ctrl-C or SIGTERM must not cut the cleanup short.
	trap - EXIT
	trap "" INT TERM
	set +e
	if [[ -n $STEP_PID ]]; then
		header "Interrupted: stopping the running step"
		stop_group "$STEP_PID"
	fi
	if [[ -n $REDIS_PID || -n $SECANTUS_PID ]]; then
		header "Stopping test servers"
	fi
	stop_pid redis-server "$REDIS_PID"
	stop_pid secantusd-rs "$SECANTUS_PID"
	if [[ -n $TMP_DIR && -d $TMP_DIR ]]; then
		if [[ ${HERALD_KEEP_TMP:-0} == 1 ]]; then
			info "kept $TMP_DIR (HERALD_KEEP_TMP=1)"
		else
			rm -rf -- "$TMP_DIR"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# 1. System packages
# ---------------------------------------------------------------------------------------

header "Checking system packages (redis-server, cmake, haproxy, chromium, nodejs, npm)"
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v cmake >/dev/null || missing+=(cmake)
command -v haproxy >/dev/null || missing+=(haproxy)
[[ -x $CHROMIUM ]] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]} > 0)); then
	install_packages "${missing[@]}"
else
	info "all present"
fi
[[ -x $CHROMIUM ]] || die "$CHROMIUM not found after installing chromium"

# rustfmt and clippy ship with the official Rust images; add them when a rustup toolchain
# lacks them.
for component in rustfmt clippy; do
	sub=fmt
	[[ $component == clippy ]] && sub=clippy
	if ! cargo "$sub" --version >/dev/null 2>&1; then
		command -v rustup >/dev/null || die "cargo $sub is missing and rustup is not available"
		info "adding Rust component $component"
		rustup component add "$component"
	fi
done

# ---------------------------------------------------------------------------------------
# 2. SecantusDB (MongoDB wire protocol), cached across runs
# ---------------------------------------------------------------------------------------

header "Checking secantusd-rs $SECANTUS_VERSION (cache: $SECANTUS_ROOT)"
ensure_secantus

header "Checking playwright-core $PLAYWRIGHT_VERSION (cache: $PLAYWRIGHT_DIR)"
if [[ -f $PLAYWRIGHT/package.json ]] && grep -qF "\"version\": \"$PLAYWRIGHT_VERSION\"" "$PLAYWRIGHT/package.json"; then
	info "cached: $PLAYWRIGHT"
else
	npm install --prefix "$PLAYWRIGHT_DIR" --no-audit --no-fund --loglevel=error \
		"playwright-core@$PLAYWRIGHT_VERSION"
	[[ -f $PLAYWRIGHT/package.json ]] || die "npm did not install playwright-core"
fi

header "Checking openapi-spec-validator $OPENAPI_VALIDATOR_VERSION (cache: $OPENAPI_VALIDATOR_DIR)"
openapi_validator_version() {
	"$OPENAPI_VALIDATOR_DIR/bin/python" -c \
		'import importlib.metadata as m; print(m.version("openapi-spec-validator"))' 2>/dev/null
}
if [[ -x $OPENAPI_VALIDATOR ]] && [[ $(openapi_validator_version) == "$OPENAPI_VALIDATOR_VERSION" ]]; then
	info "cached: $OPENAPI_VALIDATOR"
else
	rm -rf -- "$OPENAPI_VALIDATOR_DIR"
	python3 -m venv "$OPENAPI_VALIDATOR_DIR"
	"$OPENAPI_VALIDATOR_DIR/bin/python" -m pip install --quiet --disable-pip-version-check \
		"openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION"
	[[ -x $OPENAPI_VALIDATOR ]] || die "pip did not install openapi-spec-validator"
fi

# ---------------------------------------------------------------------------------------
# 3. Test servers
# ---------------------------------------------------------------------------------------

TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/herald-test.XXXXXX")

header "Starting redis-server"
mkdir -p "$TMP_DIR/redis"
for attempt in 1 2 3; do
	REDIS_PORT=$(free_port)
	# No persistence: a test Redis starts empty and leaves nothing behind.
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize no \
		--save '' --appendonly no --dir "$TMP_DIR/redis" \
		--logfile "$TMP_DIR/redis.log" </dev/null &
	REDIS_PID=$!
	if wait_until_up redis-server "$REDIS_PID" "$TMP_DIR/redis.log" redis_ping "$REDIS_PORT"; then
		break
	fi
	stop_pid redis-server "$REDIS_PID"
	REDIS_PID=""
	((attempt < 3)) || die "redis-server did not start"
done
export HERALD_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
info "pid $REDIS_PID, HERALD_TEST_REDIS_URL=$HERALD_TEST_REDIS_URL"

header "Starting secantusd-rs (MongoDB wire protocol)"
for attempt in 1 2 3; do
	MONGO_PORT=$(free_port)
	rm -rf "$TMP_DIR/secantus"
	start_secantus "$MONGO_PORT" "$TMP_DIR/secantus" "$TMP_DIR/secantus.log"
	SECANTUS_PID=$!
	if wait_until_up secantusd-rs "$SECANTUS_PID" "$TMP_DIR/secantus.log" tcp_open "$MONGO_PORT"; then
		break
	fi
	stop_pid secantusd-rs "$SECANTUS_PID"
	SECANTUS_PID=""
	((attempt < 3)) || die "secantusd-rs did not start"
done
export HERALD_TEST_MONGO_URL="mongodb://127.0.0.1:$MONGO_PORT"
info "pid $SECANTUS_PID, HERALD_TEST_MONGO_URL=$HERALD_TEST_MONGO_URL"

export HERALD_TEST_CHROMIUM=$CHROMIUM
info "HERALD_TEST_CHROMIUM=$HERALD_TEST_CHROMIUM"
export HERALD_TEST_PLAYWRIGHT=$PLAYWRIGHT
info "HERALD_TEST_PLAYWRIGHT=$HERALD_TEST_PLAYWRIGHT"
export HERALD_TEST_OPENAPI_VALIDATOR=$OPENAPI_VALIDATOR
info "HERALD_TEST_OPENAPI_VALIDATOR=$HERALD_TEST_OPENAPI_VALIDATOR"
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

# ---------------------------------------------------------------------------------------
# 4. The checks: every step runs; the summary says which failed.
# ---------------------------------------------------------------------------------------

step_names=()
step_results=()

# run_step NAME CMD...: runs CMD with a header, records pass/fail and duration. CMD runs in
# its own process group, waited for in the background, so that a signal to this script is
# handled at once and the cleanup can stop the step with everything it started.
run_step() {
	local name=$1 start=$SECONDS rc=0
	shift
	header "$name: $*"
	setsid --wait "$@" &
	STEP_PID=$!
	wait "$STEP_PID" || rc=$?
	STEP_PID=""
	local took=$((SECONDS - start))
	step_names+=("$name")
	if ((rc == 0)); then
		step_results+=("ok      ${took}s")
	else
		step_results+=("FAILED  ${took}s (exit $rc)")
	fi
}

run_step "format" cargo fmt --all -- --check
run_step "clippy" cargo clippy --workspace --all-targets -- -D warnings
run_step "tests" cargo test --workspace --all-targets -- --test-threads="$TEST_THREADS"
run_step "doc tests" cargo test --workspace --doc -- --test-threads="$TEST_THREADS"
run_step "js client" clients/js/scripts/check.sh

header "Summary"
failed=0
for i in "${!step_names[@]}"; do
	printf '    %-10s %s\n' "${step_names[$i]}" "${step_results[$i]}"
	[[ ${step_results[$i]} == ok* ]] || failed=1
done
info "total $((SECONDS - SCRIPT_START))s"
if ((failed)); then
	printf '\ntest.sh: FAILED\n'
	exit 1
fi
printf '\ntest.sh: all steps passed\n'
