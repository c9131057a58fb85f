#!/usr/bin/env bash
# build-deb.sh - build a Release dfsr and package it as build-release/dfsr_<ver>_<arch>.deb.
#
# Usage: packaging/build-deb.sh            (from anywhere; uses this checkout)
# Then:  apt install ./build-release/dfsr_*.deb
#
# Only the program is built (no tests): CMAKE_SKIP_INSTALL_ALL_DEPENDENCY keeps cpack from
# building every target. -Werror is off, as for any distribution build (STYLE rule 25).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build-release
jobs=${JOBS:-2}

for tool in cmake cpack dpkg-deb; do
	command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool is missing (apt install cmake dpkg)" >&2; exit 1; }
done

cmake -S "$src" -B "$build" \
	-DCMAKE_BUILD_TYPE=Release \
	-DCMAKE_INSTALL_PREFIX=/usr \
	-DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON \
	-DDFSR_WERROR=OFF \
	-DDFSR_SANITIZE=
cmake --build "$build" --target dfsr -j"$jobs"
rm -f "$build"/dfsr_*.deb
(cd "$build" && cpack -G DEB)

deb=$(ls "$build"/dfsr_*.deb)
echo "build-deb.sh: $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,/Description:/p'
