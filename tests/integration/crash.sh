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
stop_member "$M_CONF"
finish
