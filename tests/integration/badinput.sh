#!/usr/bin/env bash
# badinput.sh - `dfsr mount` on bad input: each case prints exactly one line on stderr,
# exits non-zero, mounts nothing, leaves no daemon behind and changes nothing on disk
# (the local path's listing is the same before and after; DfsrPrivate is not created).
. "$(dirname "$0")/lib.sh"
it_init

N=0
# bad_mount DESCRIPTION CONF DIR [--keep-private]: run `dfsr mount -c CONF` and check the rules.
# DIR is the directory whose listing must not change (usually the local path).
bad_mount() {
	local desc=$1 conf=$2 dir=$3 excl='^$' rc=0 before after mbefore mafter lines left p
	[ "${4:-}" = --keep-private ] && excl='^\./DfsrPrivate'
	N=$((N + 1))
	before=$( [ -e "$dir" ] && tree_listing "$dir" | grep -v "$excl"; stat -c '%n %F' "$dir" 2>&1 )
	mbefore=$(mounts_under "$WS" | LC_ALL=C sort)
	timeout 60 "$DFSR_BIN" mount -c "$conf" >"$WS/bad$N.out" 2>"$WS/bad$N.err" || rc=$?
	lines=$(wc -l <"$WS/bad$N.err")
	say "  [$desc] rc=$rc stderr: $(head -c 300 "$WS/bad$N.err" | tr '\n' '|')"
	check "[$desc] exits non-zero" test "$rc" -ne 0
	check "[$desc] not killed by the timeout or a signal" test "$rc" -lt 124
	check "[$desc] exactly one line on stderr (got $lines)" test "$lines" -eq 1
	check "[$desc] the line is not empty" grep -q '[^[:space:]]' "$WS/bad$N.err"
	check "[$desc] nothing on stdout" test ! -s "$WS/bad$N.out"
	mafter=$(mounts_under "$WS" | LC_ALL=C sort)
	check_eq "[$desc] nothing mounted" "$mbefore" "$mafter"
	after=$( [ -e "$dir" ] && tree_listing "$dir" | grep -v "$excl"; stat -c '%n %F' "$dir" 2>&1 )
	check_eq "[$desc] nothing changed on disk" "$before" "$after"
	left=$(pids_with_cmdline_suffix "mount -c $conf")
	for p in "${IT_PIDS[@]}"; do # members this script started on purpose
		left=$(printf '%s\n' $left | grep -vx "$p" || true)
	done
	check_eq "[$desc] no daemon left behind" "" "$left"
	for p in $left; do kill -TERM "$p" 2>/dev/null || true; done
	if [ "$rc" -eq 0 ]; then
		IT_CONFS+=("$conf")
		timeout 60 "$DFSR_BIN" umount -c "$conf" >/dev/null 2>&1 || true
	fi
}

# set_key CONF KEY VALUE : replace (or add to the folder section) one key.
set_key() {
	if grep -q "^$2 *=" "$1"; then
		sed -i "s|^$2 *=.*|$2 = $3|" "$1"
	else
		printf '%s = %s\n' "$2" "$3" >>"$1"
	fi
}

make_member syntax
printf '[member\nname = broken\n' >"$M_CONF"
bad_mount "bad syntax" "$M_CONF" "$M_PATH"

make_member unknown
echo "colour = blue" >>"$M_CONF"
bad_mount "unknown key" "$M_CONF" "$M_PATH"

make_member badsize
echo "staging_quota = 12Q" >>"$M_CONF"
bad_mount "bad size" "$M_CONF" "$M_PATH"

make_member nomount
sed -i '/^mount *=/d' "$M_CONF"
bad_mount "missing required key (mount)" "$M_CONF" "$M_PATH"

make_member relpath
set_key "$M_CONF" path "relative/dir"
bad_mount "relative local path" "$M_CONF" "$M_PATH"

bad_mount "missing config file" "$WS/none.conf" "$M_PATH"

make_member nokey
set_key "$M_CONF" key "$WS/missing.key"
bad_mount "missing key file" "$M_CONF" "$M_PATH"
check "the missing key was not created" test ! -e "$WS/missing.key"

make_member openkey
chmod 644 "$WS/openkey.key"
bad_mount "world-readable key (0644)" "$M_CONF" "$M_PATH"

make_member nopath
set_key "$M_CONF" path "$WS/nopath/not-there"
bad_mount "nonexistent local path" "$M_CONF" "$WS/nopath"
check "the local path was not created" test ! -e "$WS/nopath/not-there"

make_member filepath
echo file >"$WS/filepath/a-file"
set_key "$M_CONF" path "$WS/filepath/a-file"
bad_mount "local path is a file" "$M_CONF" "$WS/filepath"

make_member nomnt
set_key "$M_CONF" mount "$WS/nomnt/not-there"
bad_mount "nonexistent mount point" "$M_CONF" "$M_PATH"
check "the mount point was not created" test ! -e "$WS/nomnt/not-there"

make_member notempty
echo here >"$M_MNT/occupied"
bad_mount "mount point not empty" "$M_CONF" "$M_PATH"
check "the file in the mount point is still there" test -f "$M_MNT/occupied"

make_member busy
mount -t tmpfs -o size=1m dfsr-test "$M_MNT" || die "cannot mount a tmpfs for the busy case"
bad_mount "mount point busy (already a mount)" "$M_CONF" "$M_PATH"
check_eq "the other mount is still the tmpfs" "tmpfs" "$(findmnt -rn -o FSTYPE -M "$M_MNT")"
umount "$M_MNT"

make_member privfile
echo "not a directory" >"$M_PATH/DfsrPrivate"
bad_mount "DfsrPrivate is a file" "$M_CONF" "$M_PATH"
check_eq "DfsrPrivate file untouched" "not a directory" "$(cat "$M_PATH/DfsrPrivate")"

make_member rolocal
mount --bind "$M_PATH" "$M_PATH" && mount -o remount,bind,ro "$M_PATH" || die "cannot make a read-only bind mount"
IT_MOUNTS+=("$M_PATH")
bad_mount "local path on a read-only mount" "$M_CONF" "$M_PATH"
check "DfsrPrivate not created (read-only)" test ! -e "$M_PATH/DfsrPrivate"
umount "$M_PATH"

make_member immutable
if chattr +i "$M_PATH" 2>/dev/null; then
	bad_mount "local path immutable (chattr +i)" "$M_CONF" "$M_PATH"
	check "DfsrPrivate not created (immutable)" test ! -e "$M_PATH/DfsrPrivate"
	chattr -i "$M_PATH"
else
	say "chattr +i not supported here; case skipped"
fi

# ---- a folder already served by a running member -----------------------------------------------
make_member first
FIRST_CONF=$M_CONF FIRST_PATH=$M_PATH FIRST_MNT=$M_MNT
echo keep >"$FIRST_PATH/keep"
start_member "$FIRST_CONF"
wait_normal "$FIRST_CONF" 60 || die "first member did not reach normal"
bad_mount "the same config started twice" "$FIRST_CONF" "$FIRST_PATH" --keep-private

make_member second
SECOND_CONF=$M_CONF
set_key "$SECOND_CONF" path "$FIRST_PATH"
bad_mount "second daemon on the same folder" "$SECOND_CONF" "$FIRST_PATH" --keep-private
check "the first member still runs" pid_alive "$M_PID"
check_eq "the first mount still serves files" "keep" "$(cat "$FIRST_MNT/keep")"
check "the first member still answers status" status_json "$FIRST_CONF"
stop_member "$FIRST_CONF"

# ---- other commands on bad input ---------------------------------------------------------------
one_line_error() { # DESCRIPTION CMD...
	local desc=$1 rc=0
	shift
	"$@" >"$WS/cmd.out" 2>"$WS/cmd.err" || rc=$?
	check "[$desc] exits non-zero" test "$rc" -ne 0
	check "[$desc] exactly one line on stderr (got $(wc -l <"$WS/cmd.err"))" \
		test "$(wc -l <"$WS/cmd.err")" -eq 1
}
echo secret >"$WS/exists.key"
one_line_error "keygen never overwrites" "$DFSR_BIN" keygen "$WS/exists.key"
check_eq "keygen left the existing file alone" "secret" "$(cat "$WS/exists.key")"
one_line_error "status of a stopped member" "$DFSR_BIN" status -c "$FIRST_CONF"
one_line_error "hash of a missing path" "$DFSR_BIN" hash "$WS/nothing-here"
one_line_error "unknown command" "$DFSR_BIN" frobnicate
one_line_error "unknown option" "$DFSR_BIN" status -c "$FIRST_CONF" --frob
one_line_error "journal --from not a number" "$DFSR_BIN" journal -c "$FIRST_CONF" --from abc
one_line_error "events --since garbage" "$DFSR_BIN" events -c "$FIRST_CONF" --since yesterdayish
one_line_error "hash without a path" "$DFSR_BIN" hash
one_line_error "keygen into a missing directory" "$DFSR_BIN" keygen "$WS/no/such/dir/k"
one_line_error "a directory as the config" "$DFSR_BIN" mount -c "$WS"
one_line_error "journal --folder of an unknown folder" "$DFSR_BIN" journal -c "$FIRST_CONF" --folder nosuch

finish
