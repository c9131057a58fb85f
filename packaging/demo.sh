#!/usr/bin/env bash
# demo.sh - dfsr in two minutes: a three-member replication group on this machine.
#
# Usage: ./packaging/demo.sh       (as root, on Debian 12, from a clean checkout)
#
#   1. installs the Debian packages the build needs, if any are missing (as tests/run.sh);
#   2. builds dfsr (Release) in ./build-release (tests/run.sh uses ./build);
#   3. starts three members, alpha (primary), bravo and charlie, on 127.0.0.1, .2 and .3,
#      each with its local path and mount under a temporary directory;
#   4. drops files into alpha's mount and shows them arrive in bravo's and charlie's;
#   5. makes a conflict (the same file edited on alpha while bravo is offline, then on bravo
#      while alpha and charlie are) and shows the later edit winning everywhere and the
#      loser kept under DfsrPrivate/ConflictAndDeleted, listed by `dfsr conflicts`;
#   6. stops every member cleanly and removes the temporary directory.
#
# Environment: DFSR_BUILD_DIR (default ./build-release), DFSR_DEMO_KEEP=1 keeps the members
# running and the directory at the end (stop them with the printed commands).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DFSR_BUILD_DIR:-$repo/build-release}
jobs=$(nproc 2>/dev/null || echo 2)
members=(alpha bravo charlie)

bold=""
plain=""
if [ -t 1 ]; then
	bold=$(printf '\033[1m')
	plain=$(printf '\033[0m')
fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
say() { printf '    %s\n' "$*"; }
die() {
	printf 'demo.sh: error: %s\n' "$*" >&2
	exit 1
}
# run 'COMMAND LINE' : show it as typed at a root prompt (in the demo directory), run it.
run() {
	printf '%s# %s%s\n' "$bold" "$1" "$plain"
	bash -c "$1"
}

[ "$(id -u)" -eq 0 ] || die "run me as root (FUSE mounts with allow_other, root-owned DfsrPrivate)"

# ---- 1. packages (the build and run dependencies of tests/run.sh, without the test tools) --
packages=(build-essential cmake pkg-config libfuse3-dev fuse3 librocksdb-dev libsodium-dev
	libuv1-dev libzstd-dev libssl-dev libprotobuf-c-dev protobuf-c-compiler libinih-dev
	libxml2-dev libcmocka-dev attr)
step "checking packages"
if command -v dpkg-query >/dev/null; then
	missing=()
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		say "installing: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q </dev/null
		apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
	else
		say "all present"
	fi
else
	say "not a Debian system: install the equivalents of: ${packages[*]}"
fi
if [ ! -c /dev/fuse ]; then
	modprobe fuse 2>/dev/null || true
	[ -c /dev/fuse ] || die "/dev/fuse is missing (no FUSE in this kernel or container)"
fi

# ---- 2. build ------------------------------------------------------------------------------
step "building dfsr (Release) in $build"
mkdir -p "$build"
say "(output in $build/demo-build.log)"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDFSR_SANITIZE= -DDFSR_WERROR=OFF \
	>"$build/demo-build.log" 2>&1 || { tail -40 "$build/demo-build.log"; die "cmake failed"; }
cmake --build "$build" --target dfsr -j"$jobs" >>"$build/demo-build.log" 2>&1 ||
	{ tail -40 "$build/demo-build.log"; die "build failed"; }
DFSR=$build/dfsr
say "built $DFSR ($("$DFSR" --version 2>/dev/null | head -1))"
export PATH=$build:$PATH # the commands below say `dfsr`

# ---- 3. three members ----------------------------------------------------------------------
port_in_use() {
	local hex
	hex=$(printf '%04X' "$1")
	awk -v p=":$hex" 'NR > 1 && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}
port=5722
while port_in_use $port; do
	port=$((port + 1))
done

D=$(mktemp -d /tmp/dfsr-demo.XXXXXX)
chmod 0755 "$D"
STARTED=()
cleanup() {
	local rc=$? m
	trap - EXIT INT TERM
	if [ "${DFSR_DEMO_KEEP:-0}" = 1 ] && [ $rc -eq 0 ]; then
		return
	fi
	for m in "${STARTED[@]}"; do
		"$DFSR" umount -c "$D/$m.conf" >/dev/null 2>&1 || true
	done
	for m in "${members[@]}"; do
		if findmnt -rn -M "$D/$m/mnt" >/dev/null 2>&1; then
			fusermount3 -u "$D/$m/mnt" 2>/dev/null || umount -l "$D/$m/mnt" 2>/dev/null || true
		fi
	done
	if [ -z "$(awk -v d="$D/" 'index($5, d) == 1' /proc/self/mountinfo)" ]; then
		rm -rf --one-file-system "$D"
	else
		printf 'demo.sh: something is still mounted under %s; left in place\n' "$D" >&2
	fi
	[ $rc -eq 0 ] || printf 'demo.sh: FAILED (exit %s)\n' "$rc" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "a group of three members in $D (port $port)"
declare -A pub
i=0
for m in "${members[@]}"; do
	i=$((i + 1))
	mkdir -p "$D/$m/path" "$D/$m/mnt"
	pub[$m]=$("$DFSR" keygen "$D/$m.key")
	say "$m: 127.0.0.$i:$port, key $D/$m.key, public key ${pub[$m]}"
done
i=0
for m in "${members[@]}"; do
	i=$((i + 1))
	primary=no
	[ "$m" != alpha ] || primary=yes
	{
		printf '[member]\nname = %s\nlisten = 127.0.0.%s:%s\nkey = %s\ncontrol = %s\n' \
			"$m" "$i" "$port" "$D/$m.key" "$D/$m.sock"
		printf '\n[folder share]\npath = %s\nmount = %s\nprimary = %s\n' \
			"$D/$m/path" "$D/$m/mnt" "$primary"
		j=0
		for p in "${members[@]}"; do
			j=$((j + 1))
			[ "$p" != "$m" ] || continue
			printf '\n[peer %s]\naddress = 127.0.0.%s:%s\npublic_key = %s\n' "$p" "$j" "$port" "${pub[$p]}"
		done
	} >"$D/$m.conf"
done
say "alpha's configuration:"
sed 's/^/      /' "$D/alpha.conf"
cd "$D"
say "the commands below run in $D"

echo "the quarterly report, first draft" >alpha/path/report.txt
say "alpha (the primary) already holds a file: report.txt"
for m in "${members[@]}"; do
	run "dfsr mount -c $m.conf"
	STARTED+=("$m")
done

# in_sync [MEMBER...] : the members (default: all) normal with nothing pending, and their
# trees equal.
in_sync() {
	local m
	[ $# -gt 0 ] || set -- "${members[@]}"
	for m in "$@"; do
		"$DFSR" wait -c "$D/$m.conf" --timeout 60 >/dev/null 2>"$D/wait.err" || return 1
	done
	for m in "$@"; do
		cmp -s <("$DFSR" hash -r "$D/$1/mnt") <("$DFSR" hash -r "$D/$m/mnt") || return 1
	done
}
sync_all() {
	local deadline=$((SECONDS + 120))
	until in_sync "$@"; do
		[ $SECONDS -lt $deadline ] ||
			die "the members did not get in sync within 2 minutes: $(cat "$D/wait.err")"
		sleep 0.5
	done
}
sync_all
say "bravo and charlie finished their initial sync from alpha:"
run "dfsr status -c bravo.conf"
run "ls -l charlie/mnt"

# ---- 4. files dropped into one mount arrive in the others ----------------------------------
step "dropping files into alpha's mount"
run "mkdir alpha/mnt/docs"
run "cp /etc/os-release alpha/mnt/docs/"
run "echo 'hello from alpha' > alpha/mnt/hello.txt"
run "head -c 5M /dev/urandom > alpha/mnt/docs/data.bin"
run "ln -s docs/os-release alpha/mnt/release-link"
sync_all
step "they arrive in bravo's and charlie's mounts"
run "ls -lR bravo/mnt"
run "cat charlie/mnt/hello.txt"
run "dfsr hash -r charlie/mnt"
run "diff <(dfsr hash -r alpha/mnt) <(dfsr hash -r bravo/mnt) && echo same on alpha and bravo"

step "a change on charlie travels back"
run "mv charlie/mnt/hello.txt charlie/mnt/docs/hello.txt"
run "echo 'appended on charlie' >> charlie/mnt/docs/hello.txt"
sync_all
run "cat alpha/mnt/docs/hello.txt"

# ---- 5. a conflict --------------------------------------------------------------------------
step "a conflict: the link between the sites goes down, and both edit report.txt"
say "bravo's site goes offline; alpha edits the report (charlie gets the edit):"
run "dfsr umount -c bravo.conf"
run "echo 'report: alpha edit' > alpha/mnt/report.txt"
sync_all alpha charlie
run "cat charlie/mnt/report.txt"
say "now alpha's site is offline and bravo's is back; bravo edits the same report, later:"
run "dfsr umount -c alpha.conf"
run "dfsr umount -c charlie.conf"
run "dfsr mount -c bravo.conf"
run "echo 'report: bravo edit (later)' > bravo/mnt/report.txt"
say "the link is back:"
run "dfsr mount -c alpha.conf"
run "dfsr mount -c charlie.conf"
sync_all
say "the later edit wins on every member:"
run "head alpha/mnt/report.txt bravo/mnt/report.txt charlie/mnt/report.txt"
say "alpha's edit lost, and is kept, not thrown away:"
run "ls alpha/mnt/DfsrPrivate/ConflictAndDeleted"
run "cat alpha/mnt/DfsrPrivate/ConflictAndDeleted/report.txt-*"
run "dfsr conflicts -c alpha.conf"
run "dfsr events -c alpha.conf | grep ' 4412 '"
say "(dfsr restore -c alpha.conf ENTRY puts it back, and the restore replicates)"

# ---- 6. stop --------------------------------------------------------------------------------
if [ "${DFSR_DEMO_KEEP:-0}" = 1 ]; then
	step "leaving the members running (DFSR_DEMO_KEEP=1); stop them with:"
	for m in "${members[@]}"; do
		say "$DFSR umount -c $D/$m.conf"
	done
	exit 0
fi
step "stopping"
for m in "${members[@]}"; do
	run "dfsr umount -c $m.conf"
done
STARTED=()
cd /
say "done. Next: ./tests/run.sh builds with sanitizers and runs every test."
