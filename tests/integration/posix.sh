#!/usr/bin/env bash
# posix.sh - the mount behaves exactly like the filesystem under it: posix_conformance runs
# the same cases in a directory of the mount and in a plain directory on the local path's
# filesystem, as root (with non-owner children) and as an unprivileged user.
. "$(dirname "$0")/lib.sh"
it_init
[ -x "$DFSR_POSIX" ] || die "DFSR_POSIX '$DFSR_POSIX' is not an executable"

make_member alpha
start_member "$M_CONF"
wait_normal "$M_CONF" 60 || die "member did not reach normal"

NATIVE=$WS/native          # same filesystem as the local path, no FUSE
mkdir -p "$NATIVE/sub" "$M_MNT/sub"
chmod 0755 "$NATIVE" "$NATIVE/sub" "$M_MNT/sub"
check "the native directory is on the local path's filesystem" \
	test "$(stat -c %d "$NATIVE")" = "$(stat -c %d "$M_PATH")"

say "posix_conformance as root"
if ! "$DFSR_POSIX" "$M_MNT/sub" "$NATIVE/sub" >"$WS/posix-root.log" 2>&1; then
	check "posix_conformance (root): mount vs native" false
	grep -v '^ok ' "$WS/posix-root.log" | sed 's/^/    /'
else
	check "posix_conformance (root) summary" grep -q ' 0 failed' "$WS/posix-root.log"
fi
tail -n 1 "$WS/posix-root.log"

say "posix_conformance as uid $NOBODY"
if ! "$DFSR_POSIX" "$M_MNT/sub" "$NATIVE/sub" --as-user "$NOBODY:$NOBODY" >"$WS/posix-user.log" 2>&1; then
	check "posix_conformance (uid $NOBODY): mount vs native" false
	grep -v '^ok ' "$WS/posix-user.log" | sed 's/^/    /'
else
	check "posix_conformance (uid $NOBODY) summary" grep -q ' 0 failed' "$WS/posix-user.log"
fi
tail -n 1 "$WS/posix-user.log"

check "the daemon survived the conformance run" pid_alive "$M_PID"
check "still mounted" mounted "$M_MNT"
check "status still answers" status_json "$M_CONF"
check_eq "local path and native dir hold as many entries afterwards" \
	"$(ls -A "$NATIVE/sub" | wc -l)" "$(ls -A "$M_PATH/sub" | wc -l)"
stop_member "$M_CONF"

# the same over a member whose mount point is its local path
make_member bravo --same
start_member "$M_CONF"
wait_normal "$M_CONF" 60 || die "member bravo did not reach normal"
mkdir -p "$M_MNT/sub" "$NATIVE/sub2"
say "posix_conformance as root, mount = local path"
if ! "$DFSR_POSIX" "$M_MNT/sub" "$NATIVE/sub2" >"$WS/posix-same.log" 2>&1; then
	check "posix_conformance (root, mount = path): mount vs native" false
	grep -v '^ok ' "$WS/posix-same.log" | sed 's/^/    /'
fi
tail -n 1 "$WS/posix-same.log"
stop_member "$M_CONF"
finish
