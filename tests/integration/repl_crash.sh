#!/usr/bin/env bash
# repl_crash.sh - kill -9 of a member in the middle of a transfer. Alpha sends a large file
# to bravo through a bandwidth limit (so the transfer takes seconds); bravo is killed when
# part of it has arrived, then restarted: the group converges, the download resumes from
# what had arrived, and at no moment does a partial file show at the target path (a
# watcher polls bravo's local path and mount the whole time: the file is either absent or
# complete). Then the same with the sender killed.
. "$(dirname "$0")/lib.sh"
it_init

BIG_MIB=${BIG_MIB:-96}
SIZE=$((BIG_MIB << 20))
group_setup 2
A=1 B=2
G_PEER_EXTRA["1,2"]="bandwidth = 8M"
G_PEER_EXTRA["2,1"]="bandwidth = 8M"
group_write_conf $A
group_write_conf $B

group_start $A $B

# watch_target FILE SRC TAG : until $WS/stop-watch exists, FILE must be absent or equal
# SRC. Violations go to $WS/violations; a first complete sighting to $WS/complete.TAG.
watch_target() {
	local f=$1 src=$2 tag=$3 want sz rc
	want=$(stat -c %s "$src")
	while [ -d "$WS" ] && [ ! -e "$WS/stop-watch" ]; do
		if sz=$(stat -c %s "$f" 2>/dev/null); then
			if [ "$sz" != "$want" ]; then
				echo "$tag: $f has $sz bytes of $want" >>"$WS/violations"
			elif [ ! -e "$WS/complete.$tag" ]; then
				cmp -s "$src" "$f" && rc=0 || rc=$?
				if [ $rc = 0 ]; then
					date +%s.%N >"$WS/complete.$tag"
				elif [ $rc = 1 ]; then
					echo "$tag: $f has the full size but other content" >>"$WS/violations"
				fi # rc 2: the mount went away under cmp (the kill): not a violation
			fi
		fi
		sleep 0.05
	done
}
WATCHERS=()
start_watch() {
	watch_target "$@" &
	WATCHERS+=($!)
}
crash_cleanup() {
	local rc=$? p
	touch "$WS/stop-watch" 2>/dev/null
	for p in "${WATCHERS[@]}"; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	(exit $rc)
	it_cleanup
}
trap crash_cleanup EXIT
stop_watch() {
	local p
	touch "$WS/stop-watch"
	for p in "${WATCHERS[@]}"; do
		wait "$p" 2>/dev/null
	done
	WATCHERS=()
	rm -f "$WS/stop-watch"
}

# ---- the receiver is killed mid-transfer -----------------------------------------------------
head -c $SIZE /dev/urandom >"$WS/big.src"
start_watch "${G_PATH[B]}/big.bin" "$WS/big.src" bravo-path
start_watch "${G_MNT[B]}/big.bin" "$WS/big.src" bravo-mount
r0=$(bytes_received $B)
cp "$WS/big.src" "${G_MNT[A]}/big.bin"
say "waiting until 30 % of $BIG_MIB MiB has reached bravo"
received_at_least() { [ "$(bytes_received $B 2>/dev/null || echo 0)" -ge "$1" ]; }
check "a third of the file reaches bravo" wait_until 120 received_at_least $((r0 + SIZE * 3 / 10))
got=$(($(bytes_received $B) - r0))
check "the transfer is still going (bravo has $got of $SIZE bytes)" test $got -lt $((SIZE * 9 / 10))
check "the file is not at its target path on bravo yet" test ! -e "${G_PATH[B]}/big.bin"
say "kill -9 bravo after $got bytes"
member_kill $B
check "after the kill the target is absent (not a partial file)" test ! -e "${G_PATH[B]}/big.bin"
say "Installing on bravo after the kill: $(find "${G_PATH[B]}/DfsrPrivate/Installing" -type f -printf '%s ' 2>/dev/null)"

member_start $B
check "dfsr wait: in sync after bravo's restart" members_wait 150
check "bravo has the complete file after the restart" cmp -s "$WS/big.src" "${G_MNT[B]}/big.bin"
again=$(bytes_received $B)
check "the download resumed: bravo received $again bytes after the restart, under 90 % of $SIZE" \
	test "$again" -lt $((SIZE * 9 / 10))
check "bravo logged the unclean stop (2212)" event_seen "${G_CONF[B]}" 2212
check "nothing is left in bravo's Installing" bash -c \
	"[ -z \"\$(find '${G_PATH[B]}/DfsrPrivate/Installing' -type f)\" ]"
check "the watcher saw the complete file" wait_until 10 test -e "$WS/complete.bravo-path"
stop_watch
check "no partial file was ever visible on bravo" test ! -s "$WS/violations"
[ ! -s "$WS/violations" ] || head -5 "$WS/violations"
check_trees_equal "trees equal after the receiver's crash"

# ---- the sender is killed mid-transfer -------------------------------------------------------
SIZE2=$((SIZE / 2))
head -c $SIZE2 /dev/urandom >"$WS/big2.src"
start_watch "${G_PATH[B]}/big2.bin" "$WS/big2.src" bravo2-path
start_watch "${G_MNT[B]}/big2.bin" "$WS/big2.src" bravo2-mount
r0=$(bytes_received $B)
cp "$WS/big2.src" "${G_MNT[A]}/big2.bin"
check "a third of the second file reaches bravo" wait_until 120 received_at_least $((r0 + SIZE2 * 3 / 10))
say "kill -9 alpha after $(($(bytes_received $B) - r0)) bytes"
member_kill $A
check "the sender's crash leaves no partial file on bravo" test ! -e "${G_PATH[B]}/big2.bin"
check "bravo keeps working while alpha is down" bash -c "echo alive >'${G_MNT[B]}/alive.txt'"
member_start $A
check "dfsr wait: in sync after alpha's restart" members_wait 150
check "alpha still has the file it was sending" cmp -s "$WS/big2.src" "${G_MNT[A]}/big2.bin"
check "bravo has the complete second file" cmp -s "$WS/big2.src" "${G_MNT[B]}/big2.bin"
check_eq "bravo's change made while alpha was down reached alpha" alive "$(cat "${G_MNT[A]}/alive.txt" 2>&1)"
stop_watch
check "no partial second file was ever visible on bravo" test ! -s "$WS/violations"
[ ! -s "$WS/violations" ] || head -5 "$WS/violations"
check_trees_equal "trees equal after the sender's crash"

member_stop $B
member_stop $A
finish
