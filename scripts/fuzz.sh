#!/usr/bin/env bash
# Fuzzes Herald's parsers with cargo-fuzz (libFuzzer), one target after another:
#   ./scripts/fuzz.sh [SECONDS]        (default 60 seconds per target)
#
# Targets (fuzz/fuzz_targets/):
#   client_frame     frames::ClientFrame::parse, the WebSocket client-frame parser
#   rest_body        ingest::validate::message and json_depth, the REST body validation
#   internal_verify  cluster::sign::Verifier, node-to-node request verification
#
# Needs a nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz when it
# is missing. Not part of ./scripts/test.sh: the stable suite runs property tests of the same
# parsers instead. Each target starts from fuzz/seeds/<target>/ (valid inputs) and
# fuzz/dict/<target>.dict (tokens of its format); the corpus grows in fuzz/corpus/<target>/
# (not committed) and is reused by later runs. A crash stops the run (non-zero exit) and
# leaves its input under fuzz/artifacts/<target>/: replay it with
#   cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/crash-…
#
# Knobs (environment):
#   FUZZ_TOOLCHAIN   toolchain to build with (default nightly)
#   FUZZ_JOBS        parallel fuzzing jobs per target (default 1: one in-process run; more
#                    runs libFuzzer's -jobs mode, whose output goes to fuzz/fuzz-N.log)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT/fuzz"

SECONDS_PER_TARGET=${1:-60}
TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
JOBS=${FUZZ_JOBS:-1}
TARGETS=(client_frame rest_body internal_verify)

die() {
	printf 'fuzz.sh: error: %s\n' "$*" >&2
	exit 1
}

[[ $SECONDS_PER_TARGET =~ ^[1-9][0-9]*$ ]] || die "seconds must be a positive integer, got '$SECONDS_PER_TARGET'"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "FUZZ_JOBS must be a positive integer, got '$JOBS'"
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
if ! cargo "+$TOOLCHAIN" --version >/dev/null 2>&1; then
	die "no $TOOLCHAIN toolchain: rustup toolchain install $TOOLCHAIN"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
	printf '==> installing cargo-fuzz\n'
	cargo install cargo-fuzz --locked
fi

printf '==> building the fuzz targets (%s)\n' "$TOOLCHAIN"
cargo "+$TOOLCHAIN" fuzz build

parallel=()
((JOBS == 1)) || parallel=(-jobs="$JOBS" -workers="$JOBS")

for target in "${TARGETS[@]}"; do
	printf '\n==> %s for %ss\n' "$target" "$SECONDS_PER_TARGET"
	# The growing corpus first (new inputs are written there), then the committed seeds.
	mkdir -p "corpus/$target"
	dict=()
	[[ -s dict/$target.dict ]] && dict=(-dict="$PWD/dict/$target.dict")
	cargo "+$TOOLCHAIN" fuzz run "$target" "$PWD/corpus/$target" "$PWD/seeds/$target" -- \
		-max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 "${dict[@]}" "${parallel[@]}"
done
printf '\nfuzz.sh: no crash in %s\n' "${TARGETS[*]}"
