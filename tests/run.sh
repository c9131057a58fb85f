#!/usr/bin/env bash
# tests/run.sh - install what is missing, build dfsr with ASan/UBSan, run every test.
#
# Usage: tests/run.sh [CTEST ARGS...]      e.g. tests/run.sh -L unit
#
# On a fresh Debian bookworm machine, as root (or with sudo), from a clean checkout:
#   1. installs the build and test dependencies that are missing (apt-get update runs
#      once, and only when something is missing; never interactive);
#   2. configures a Debug build with -DDFSR_SANITIZE=address,undefined in build/;
#   3. builds with one job per CPU;
#   4. runs `ctest --output-on-failure` with the arguments given;
#   5. with no arguments, also builds the fuzzers with clang in build-fuzz/ and runs each
#      one briefly (ctest -L fuzz), when there are any;
#   6. with no arguments, also compiles a Release build (-O2, everything, tests included)
#      in build-release-check/: the optimiser's warnings (maybe-uninitialized,
#      format-truncation) are errors too, and the demo and the benchmarks build Release.
# Exits non-zero on any failure.
#
# Environment:
#   DFSR_BUILD_DIR   build directory (default: <repo>/build)
#   DFSR_BUILD_TYPE  CMake build type (default: Debug)
#   DFSR_SANITIZE    sanitizers (default: address,undefined; empty for none)
#   DFSR_FUZZ        0 to skip the fuzzer build and run (default: 1)
#   DFSR_RELEASE_CHECK 0 to skip the Release compile (default: 1)
#   DFSR_NO_INSTALL  1 to skip the package check
#   CI               "true" on CI: integration tests may not skip for lack of FUSE
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DFSR_BUILD_DIR:-$repo/build}
build_type=${DFSR_BUILD_TYPE:-Debug}
sanitize=${DFSR_SANITIZE-address,undefined}
jobs=$(nproc 2>/dev/null || echo 2)

say() { printf 'run.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

packages=(build-essential cmake pkg-config libfuse3-dev fuse3 librocksdb-dev libsodium-dev
	  libuv1-dev libzstd-dev libssl-dev libprotobuf-c-dev protobuf-c-compiler libinih-dev
	  libxml2-dev libcmocka-dev acl attr faketime iproute2 rsync util-linux python3
	  libclang-rt-14-dev clang clang-format)

install_missing() {
	local missing=() p sudo=()

	command -v dpkg-query >/dev/null || { say "not a Debian system; skipping package check"; return 0; }
	for p in "${packages[@]}"; do
		if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != *'install ok installed'* ]]; then
			missing+=("$p")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || die "missing packages (${missing[*]}) and not root"
		sudo=(sudo -n)
	fi
	say "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -q </dev/null
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}" </dev/null
}

# Sanitizer behaviour for every test process (integration scripts add log_path so that
# reports from detached daemons are collected and fail the test: see tests/integration/lib.sh).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:abort_on_error=0:exitcode=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-exitcode=23}

if [ "${DFSR_NO_INSTALL:-0}" != 1 ]; then
	install_missing
fi

say "configuring $build ($build_type, sanitize='$sanitize')"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE="$build_type" -DDFSR_SANITIZE="$sanitize"
say "building with $jobs jobs"
cmake --build "$build" -j"$jobs"

say "running ctest $*"
rc=0
(cd "$build" && ctest --output-on-failure --no-tests=error "$@") || rc=$?

if [ $# -eq 0 ] && [ "${DFSR_FUZZ:-1}" = 1 ] && compgen -G "$repo/tests/fuzz/fuzz_*.c" >/dev/null \
	&& command -v clang >/dev/null; then
	fbuild=${build}-fuzz
	targets=()
	for f in "$repo"/tests/fuzz/fuzz_*.c; do
		targets+=(--target "$(basename "$f" .c)")
	done
	say "building fuzzers in $fbuild"
	frc=0
	CC=clang cmake -S "$repo" -B "$fbuild" -DCMAKE_BUILD_TYPE=Debug -DDFSR_SANITIZE=address,undefined,fuzzer-no-link -DDFSR_FUZZ=ON \
		&& cmake --build "$fbuild" -j"$jobs" "${targets[@]}" \
		&& (cd "$fbuild" && ctest --output-on-failure --no-tests=error -L fuzz) || frc=$?
	[ $frc -eq 0 ] || { say "fuzzers failed ($frc)"; rc=1; }
fi

if [ $# -eq 0 ] && [ "${DFSR_RELEASE_CHECK:-1}" = 1 ]; then
	rbuild=${build}-release-check
	say "compiling a Release build in $rbuild"
	{ cmake -S "$repo" -B "$rbuild" -DCMAKE_BUILD_TYPE=Release -DDFSR_SANITIZE= >/dev/null \
		&& cmake --build "$rbuild" -j"$jobs"; } || { say "the Release build failed"; rc=1; }
fi

if [ $rc -ne 0 ]; then
	say "FAILED"
	exit 1
fi
say "all tests passed"
