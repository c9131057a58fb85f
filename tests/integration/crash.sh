#!/usr/bin/env bash
# crash.sh - kill -9 the daemon after files were written and closed; clean the dead mount;
# the next start detects the unclean stop (2212), recovers (2214), and every closed file is
# intact and journaled. A clean stop and start afterwards logs no new 2212.
. "$(dirname "$0")/lib.sh"
it_init

make_member alpha
start_member "$M_CONF"
wait_normal "$M_CONF" 60 || die "member did not reach normal"

mkdir -p "$WS/orig" "$M_MNT/d"
for i in 1 2 3 4 5; do
	head -c $((i * 70000)) /dev/urandom >"$WS/orig/f$i"
	cp "$WS/orig/f$i" "$M_MNT/d/f$i"
done
echo small >"$WS/orig/small"
cp "$WS/orig/small" "$M_MNT/small"
sync
# the last file may still be on its way to the journal: the scan must catch it if so
pid=$(member_pid_of "$M_CONF")
[ -n "$pid" ] || die "no daemon pid"
c2212=$(count_event "$M_CONF" 2212)
check_eq "no 2212 before the crash" "0" "$c2212"

say "kill -9 $pid"
kill -KILL "$pid"
check "the daemon died" wait_until 20 pid_gone "$pid"
# The mount is dead (ENOTCONN); clean it up as an administrator would.
if mounted "$M_MNT"; then
	fusermount3 -u "$M_MNT" 2>/dev/null || umount "$M_MNT" 2>/dev/null || umount -l "$M_MNT"
fi
check "dead mount cleaned up" wait_until 20 not_mounted "$M_MNT"
for i in 1 2 3 4 5; do
	check "f$i intact in the local path after the crash" cmp -s "$WS/orig/f$i" "$M_PATH/d/f$i"
done
check "events readable while the member is down" "$DFSR_BIN" events -c "$M_CONF" --json

start_member "$M_CONF"
check "member reaches normal after recovery" wait_normal "$M_CONF" 120
check "event 2212 (unclean stop detected)" wait_until 30 event_seen "$M_CONF" 2212
check "event 2214 (recovered)" wait_until 60 event_seen "$M_CONF" 2214
for i in 1 2 3 4 5; do
	check "f$i intact through the mount" cmp -s "$WS/orig/f$i" "$M_MNT/d/f$i"
	check "f$i is journaled" journal_has "$M_CONF" 0 "create f d/f$i"
done
check "small intact through the mount" cmp -s "$WS/orig/small" "$M_MNT/small"
check "small is journaled" journal_has "$M_CONF" 0 "create f small"
check_eq "status counts every file after recovery" "6" "$(folder_field "$M_CONF" share files)"
check "no half-written or temporary files appeared" bash -c \
	"[ \"\$(ls -A '$M_MNT' | tr '\n' ' ')\" = 'd small ' ]"
# the member still works after recovery
from=$(journal_next "$M_CONF")
echo after >"$M_MNT/after"
check "changes after recovery are journaled" wait_until 20 journal_has "$M_CONF" "$from" "create f after"

# a clean stop and start: no new unclean-stop event
n2212=$(count_event "$M_CONF" 2212)
n2214=$(count_event "$M_CONF" 2214)
check_eq "exactly one 2212 for one crash" "1" "$n2212"
stop_member "$M_CONF"
start_member "$M_CONF"
check "member reaches normal after the clean restart" wait_normal "$M_CONF" 60
check_eq "no new 2212 after a clean stop" "$n2212" "$(count_event "$M_CONF" 2212)"
check_eq "no new 2214 after a clean stop" "$n2214" "$(count_event "$M_CONF" 2214)"
check "events include a clean stop (9002)" event_seen "$M_CONF" 9002

# ---- a crash in the middle of activity: after recovery the database agrees with the disk ----
busy_writer() {
	local i
	for ((i = 0; ; i++)); do
		echo "v$i" >"$M_MNT/busy$((i % 17))" 2>/dev/null || return 0
		mkdir -p "$M_MNT/bd$((i % 5))" 2>/dev/null || return 0
		mv -f "$M_MNT/busy$((i % 17))" "$M_MNT/bd$((i % 5))/m$((i % 7))" 2>/dev/null || return 0
		rm -f "$M_MNT/bd$(((i + 2) % 5))/m$((i % 3))" 2>/dev/null || return 0
	done
}
busy_writer &
writer=$!
wait_until 20 journal_has "$M_CONF" 0 "create d bd4" || say "note: the writer was slow to start"
pid=$(member_pid_of "$M_CONF")
kill -KILL "$pid"
check "the daemon died (second crash)" wait_until 20 pid_gone "$pid"
wait "$writer" 2>/dev/null
if mounted "$M_MNT"; then
	fusermount3 -u "$M_MNT" 2>/dev/null || umount "$M_MNT" 2>/dev/null || umount -l "$M_MNT"
fi
check "dead mount cleaned up (second crash)" wait_until 20 not_mounted "$M_MNT"
start_member "$M_CONF"
check "member reaches normal after the second recovery" wait_normal "$M_CONF" 120
disk_files() { (cd "$M_PATH" && find . -path ./DfsrPrivate -prune -o \( -type f -o -type l \) -print | wc -l); }
disk_dirs() { (cd "$M_PATH" && find . -path ./DfsrPrivate -prune -o -type d ! -name . -print | wc -l); }
check "after recovery the file count agrees with the disk" wait_until 30 field_is "$M_CONF" share files "$(disk_files)"
check_eq "files: disk vs status" "$(disk_files)" "$(folder_field "$M_CONF" share files)"
check_eq "folders: disk vs status" "$(disk_dirs)" "$(folder_field "$M_CONF" share folders)"
stop_member "$M_CONF"
from=$(journal_next "$M_CONF")
start_member "$M_CONF"
check "member reaches normal" wait_normal "$M_CONF" 60
mkdir "$M_MNT/barrier"
check "barrier journaled" wait_until 20 journal_has "$M_CONF" "$from" "create d barrier"
check_eq "after recovery a clean restart's scan finds nothing new" "create d barrier" \
	"$(journal_ops "$M_CONF" "$from")"
stop_member "$M_CONF"
finish
