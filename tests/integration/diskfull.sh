#!/usr/bin/env bash
# diskfull.sh - a full disk loses nothing and stops nothing for good. Bravo's local path
# (and so its DfsrPrivate, database included) is a small tmpfs. Alpha sends more than fits:
# bravo logs why it cannot install, keeps running, installs no partial file, stops its own
# writes at the database's reserve, a write through its mount fails as it would on the
# full disk itself, and changes that need no data are still journaled. Once the disk has room again
# (the tmpfs is grown, as an administrator would free space) bravo catches up by itself,
# without a restart: every file arrives whole, and a file written through bravo's mount
# while the disk was full reaches alpha.
. "$(dirname "$0")/lib.sh"
it_init

group_setup 2
A=1 B=2
MA=${G_MNT[A]} MB=${G_MNT[B]}

mount -t tmpfs -o size=64m,mode=0755 dfsr-it-full "${G_PATH[B]}" ||
	skip_or_fail "cannot mount a tmpfs"
mkdir -p "$WS/src"
for i in 1 2 3 4 5; do
	head -c $((8 << 20)) /dev/urandom >"$WS/src/big$i.bin"
done

member_start $A
member_start $B
# small.txt is on bravo before its disk fills: the chmod below needs a file bravo holds (a
# file sent with the large ones may still be waiting for room when the disk is full)
echo small >"$MA/small.txt"
members_wait 90 || die "alpha and bravo never got in sync"
check_eq "small.txt is on bravo before its disk fills" small "$(cat "$MB/small.txt" 2>&1)"

# ---- more than fits ----------------------------------------------------------------------------
for i in 1 2 3 4 5; do
	cp "$WS/src/big$i.bin" "$MA/big$i.bin"
done

# bravo's disk fills: it says so and keeps going
full_logged() {
	local ev
	ev=$("$DFSR_BIN" events -c "${G_CONF[B]}") && grep -q ' 3103 .*step=download.*No space left' <<<"$ev"
}
check "bravo logs that a download cannot be written (3103, no space)" wait_until 90 full_logged
[ -z "${DEBUG_FULL:-}" ] || { "$DFSR_BIN" events -c "${G_CONF[B]}" | tail -20; ls -la "${G_PATH[B]}" "$MB"; df -k "${G_PATH[B]}"; "$DFSR_BIN" status -c "${G_CONF[B]}"; }
check_eq "chunks crossing bravo's Cancel are no protocol error (3101)" 0 \
	"$(count_event "${G_CONF[B]}" 3101)"
# dfsr's own writes leave the database its reserve (core/space.h: 32 MiB on this disk)
avail_kib() { df --output=avail -k "${G_PATH[B]}" | tail -1; }
check "bravo's downloads stop at the database's reserve: $(avail_kib) KiB free" \
	bash -c "a=\$(df --output=avail -k '${G_PATH[B]}' | tail -1); [ \$a -ge 28672 ] && [ \$a -lt 40960 ]"
check "bravo keeps running" pid_alive "${G_PID[B]}"
check_fails "dfsr wait says bravo is not in sync" "$DFSR_BIN" wait -c "${G_CONF[B]}" --timeout 2
for i in 1 2 3 4 5; do
	if [ -e "${G_PATH[B]}/big$i.bin" ]; then
		check "big$i.bin, installed while the disk filled, is whole" \
			cmp -s "$WS/src/big$i.bin" "${G_PATH[B]}/big$i.bin"
	fi
done

# a write through bravo's mount fails as on the full disk, and leaves the daemon up
check_fails "a 16 MiB write through bravo's full mount fails" \
	dd if=/dev/zero of="$MB/local.bin" bs=1M count=16 conv=fsync status=none
check "bravo logs 1103 (writes refused to keep the database's reserve)" \
	test "$(count_event "${G_CONF[B]}" 1103)" -ge 1
check "the reserve is still free after the write through the mount" \
	bash -c "[ \$(df --output=avail -k '${G_PATH[B]}' | tail -1) -ge 28672 ]"
check "bravo keeps running after the failed write" pid_alive "${G_PID[B]}"
rm -f "$MB/local.bin"
# so does copy_file_range(2) through the mount (what cp uses), from a file bravo has
first=$(cd "$MB" && ls big*.bin 2>/dev/null | head -1)
if [ -n "$first" ]; then
	check "copy_file_range of $first through bravo's full mount fails with ENOSPC" "$PY" -c "
import errno, os, sys
i = os.open('$MB/$first', os.O_RDONLY); o = os.open('$MB/copy.bin', os.O_WRONLY | os.O_CREAT, 0o644)
try:
    n = 0
    while n < (8 << 20):
        r = os.copy_file_range(i, o, (8 << 20) - n)
        if r == 0: break
        n += r
    os.fsync(o)
except OSError as e:
    sys.exit(0 if e.errno == errno.ENOSPC else 1)
sys.exit(1)"
	rm -f "$MB/copy.bin"
fi
# changes that need no data block are made and journaled: the reserve is the database's
check "an empty file can be made through bravo's full mount" touch "$MB/made-while-full.txt"
check "a chmod through bravo's full mount works" chmod 0640 "$MB/small.txt"
check "no change was left unrecorded (no 1201)" test "$(count_event "${G_CONF[B]}" 1201)" = 0
[ -z "${DEBUG_FULL:-}" ] || { "$DFSR_BIN" events -c "${G_CONF[B]}" | tail -8; df -k "${G_PATH[B]}"; }

# ---- room again ----------------------------------------------------------------------------------
mount -o remount,size=256m "${G_PATH[B]}" || die "cannot grow the tmpfs"
echo "written after the disk filled" >"$MB/after.txt"
check "dfsr wait: bravo catches up once there is room, without a restart" members_wait 120
for i in 1 2 3 4 5; do
	check "big$i.bin arrives whole" cmp -s "$WS/src/big$i.bin" "$MB/big$i.bin"
done
check_eq "the small file arrives" small "$(cat "$MB/small.txt" 2>&1)"
check_eq "bravo's chmod made on the full disk reaches alpha" 640 "$(stat -c %a "$MA/small.txt")"
check "bravo's empty file made while the disk was full reaches alpha" test -f "$MA/made-while-full.txt"
check_eq "bravo's file written after the disk filled reaches alpha" \
	"written after the disk filled" "$(cat "$MA/after.txt" 2>&1)"
check_trees_equal "trees equal after the disk had room again" $A $B
check "bravo's Installing is empty" \
	bash -c "[ -z \"\$(ls -A '${G_PATH[B]}/DfsrPrivate/Installing')\" ]"
check "bravo ran throughout" pid_alive "${G_PID[B]}"
check_eq "no protocol error on either side" 0 \
	"$(($(count_event "${G_CONF[A]}" 3101) + $(count_event "${G_CONF[B]}" 3101)))"

member_stop $B
member_stop $A
finish
