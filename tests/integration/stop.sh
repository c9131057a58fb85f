#!/usr/bin/env bash
# stop.sh - every documented way to stop a member stops it cleanly (CONTRACT.md: `dfsr
# umount`, SIGTERM, `fusermount3 -u MOUNT`): the daemon exits, nothing stays mounted, the
# log says 9002 (stopped cleanly) and the next start finds no unclean stop (no 2212).
# Also: a busy mount, `dfsr mount -f` in the foreground, and keygen/pubkey.
. "$(dirname "$0")/lib.sh"
it_init

make_member alpha
CONF=$M_CONF MNT=$M_MNT

stopped_cleanly() { # DESCRIPTION PID
	check "$1: daemon exited" wait_until 30 pid_gone "$2"
	check "$1: nothing mounted" wait_until 10 not_mounted "$MNT"
	check_eq "$1: stopped-cleanly events (9002)" "$3" "$(count_event "$CONF" 9002)"
	check_eq "$1: no unclean stop recorded (2212)" "${N2212:-0}" "$(count_event "$CONF" 2212)"
}

# SIGTERM
start_member "$CONF"
echo one >"$MNT/one"
kill -TERM "$M_PID"
stopped_cleanly "SIGTERM" "$M_PID" 1

# SIGTERM right after activity, several times: the stop must never hang
KILLED=0
for i in 1 2 3 4 5 6 7 8 9 10; do
	start_member "$CONF"
	echo "$i" >"$MNT/quick$i"
	kill -TERM "$M_PID"
	if ! wait_until 20 pid_gone "$M_PID"; then
		check "SIGTERM right after a write (round $i): daemon exited within 20 s" false
		say "      kernel stack of the stuck main thread:"
		sed 's/^/      | /' "/proc/$M_PID/stack" 2>/dev/null | head -6
		kill -KILL "$M_PID"
		KILLED=1
		wait_until 10 pid_gone "$M_PID"
		umount -l "$MNT" 2>/dev/null
		break
	fi
	wait_until 10 not_mounted "$MNT" || check "round $i: unmounted after SIGTERM" false
done
n9002=$(count_event "$CONF" 9002)
N2212=$KILLED # a round killed above makes the next start log one 2212; not counted again

# fusermount3 -u
start_member "$CONF"
check_eq "files kept across stops" "one" "$(cat "$MNT/one")"
check "fusermount3 -u succeeds" fusermount3 -u "$MNT"
stopped_cleanly "fusermount3 -u" "$M_PID" $((n9002 + 1))

# dfsr umount while a process sits in the mount
start_member "$CONF"
mkdir -p "$MNT/busy"
(cd "$MNT/busy" && exec sleep 300) &
sleeper=$!
check "dfsr umount returns with a busy mount" timeout 60 "$DFSR_BIN" umount -c "$CONF"
stopped_cleanly "busy mount" "$M_PID" $((n9002 + 2))
kill "$sleeper" 2>/dev/null
wait "$sleeper" 2>/dev/null

# foreground
"$DFSR_BIN" mount -f -c "$CONF" >"$WS/fg.log" 2>&1 &
fg=$!
it_track "$fg"
IT_CONFS+=("$CONF")
check "dfsr mount -f mounts" wait_until 60 mounted "$MNT"
check_eq "status pid is the foreground process" "$fg" "$(member_pid_of "$CONF")"
check_eq "data through the foreground member" "one" "$(cat "$MNT/one")"
kill -INT "$fg"
rc=0
wait "$fg" || rc=$?
check_eq "dfsr mount -f exits 0 on SIGINT" "0" "$rc"
stopped_cleanly "SIGINT to the foreground member" "$fg" $((n9002 + 3))

# a second start after all that: still no unclean stop
start_member "$CONF"
check "member reaches normal" wait_normal "$CONF" 60
check_eq "no 2212 after all those clean stops" "$N2212" "$(count_event "$CONF" 2212)"
stop_member "$CONF"

# dfsr umount while a file is open for writing with new data: the stop closes it and
# journals the data (dfsr(1) umount), as the last close would have; the next start's scan
# has nothing left to find.
start_member "$CONF"
M_PATH=$WS/alpha/path
echo before >"$MNT/held"
from=$(journal_next "$CONF")
n9002=$(count_event "$CONF" 9002)
(exec 8>>"$MNT/held" && echo after >&8 && exec sleep 300) &
holder=$!
check "the open handle's data reached the local path" wait_until 20 grep -qx after "$M_PATH/held"
check "dfsr umount returns with a file open for writing" timeout 60 "$DFSR_BIN" umount -c "$CONF"
stopped_cleanly "file open for writing" "$M_PID" $((n9002 + 1))
check "the stop journaled the open file's data (modify f held)" \
	journal_has "$CONF" "$from" "modify f held"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
start_member "$CONF"
check "member reaches normal" wait_normal "$CONF" 60
check "the next start's scan found nothing changed" bash -c \
	"'$DFSR_BIN' events -c '$CONF' | grep ' 1204 ' | tail -1 | grep -q ' changed=0 '"
stop_member "$CONF"

# keygen / pubkey
pub=$("$DFSR_BIN" keygen "$WS/new.key")
check_eq "keygen writes the key with mode 0600" "600" "$(stat -c %a "$WS/new.key")"
check "keygen prints a base64 public key" bash -c "[[ '$pub' =~ ^[A-Za-z0-9+/]{43}=$ ]]"
check_eq "pubkey prints the same public key" "$pub" "$("$DFSR_BIN" pubkey "$WS/new.key")"
check "two keys differ" test "$pub" != "$("$DFSR_BIN" keygen "$WS/other.key")"
finish
