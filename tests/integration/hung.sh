#!/usr/bin/env bash
# hung.sh - the commands that talk to a member over its control socket tell "not running"
# from "does not answer" (dfsr(1), EXIT STATUS): no socket file, or a socket file nothing
# listens on, is "not running"; a member that holds its socket but does not answer (here:
# stopped with SIGSTOP) is "does not answer", with what to do, never "not running"; both
# exit 1, in one line. Every command gives up in its time even when more clients than the
# socket's listen backlog wait on the hung member, `dfsr mount` does not start a second
# member over it, and once it runs again it answers and stops cleanly.
. "$(dirname "$0")/lib.sh"
it_init

STOPPED=""
hung_cleanup() {
	local rc=$?
	# a stopped daemon would not act on the cleanup's umount or SIGTERM
	[ -z "$STOPPED" ] || ! still_ours "$STOPPED" || kill -CONT "$STOPPED" 2>/dev/null || true
	(exit $rc)
	it_cleanup
}
trap hung_cleanup EXIT

make_member alpha
CONF=$M_CONF
SOCK=$WS/alpha.sock

# run_cmd NAME CMD... : CMD's exit status in $WS/NAME.rc, stderr in $WS/NAME.err.
run_cmd() {
	local name=$1 rc
	shift
	"$@" >"$WS/$name.out" 2>"$WS/$name.err" && rc=0 || rc=$?
	echo "$rc" >"$WS/$name.rc"
}

# said NAME WHAT : exit 1 and exactly one line on stderr that holds WHAT.
said() {
	[ "$(cat "$WS/$1.rc")" = 1 ] && [ "$(wc -l <"$WS/$1.err")" = 1 ] && grep -q "$2" "$WS/$1.err"
}

# ---- not running ---------------------------------------------------------------------------
for cmd in umount status wait reload; do
	run_cmd "nr-$cmd" "$DFSR_BIN" "$cmd" -c "$CONF"
	check "no socket file: $cmd says the member is not running (exit 1, one line)" \
		said "nr-$cmd" "member alpha is not running"
done
# a socket file left behind, nothing listening on it (connection refused)
"$PY" -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$SOCK"
check "a socket file is left behind" test -S "$SOCK"
for cmd in umount status; do
	run_cmd "refused-$cmd" "$DFSR_BIN" "$cmd" -c "$CONF"
	check "a socket nothing listens on: $cmd says not running" \
		said "refused-$cmd" "member alpha is not running"
done

# ---- does not answer -----------------------------------------------------------------------
start_member "$CONF"
PID=$M_PID
check "the member answers" "$DFSR_BIN" wait -c "$CONF" --timeout 60
STOPPED=$PID
kill -STOP "$PID"

# More clients than the listen backlog (16): a blocking connect would wait for ever once
# it is full; each must give up in its own time (--timeout 2, at least 1 s per request).
pids=()
for i in $(seq 1 24); do
	run_cmd "many-$i" timeout 60 "$DFSR_BIN" wait -c "$CONF" --timeout 2 &
	pids+=($!)
done
wait "${pids[@]}"
n_answer=0 n_killed=0
for i in $(seq 1 24); do
	said "many-$i" "member alpha does not answer" && n_answer=$((n_answer + 1))
	[ "$(cat "$WS/many-$i.rc")" = 124 ] && n_killed=$((n_killed + 1))
done
check_eq "24 waits on a hung member: none outlives its timeout" 0 "$n_killed"
check_eq "24 waits on a hung member: each says it does not answer" 24 "$n_answer"

# The other commands, together (status, events and reload wait 30 s for an answer).
pids=()
for cmd in umount status events reload; do
	run_cmd "hung-$cmd" timeout 120 "$DFSR_BIN" "$cmd" -c "$CONF" &
	pids+=($!)
done
run_cmd hung-mount timeout 120 "$DFSR_BIN" mount -c "$CONF" &
pids+=($!)
wait "${pids[@]}"
for cmd in umount status events reload mount; do
	check "$cmd on a member that does not answer says so (exit 1, one line)" \
		said "hung-$cmd" "member alpha does not answer"
	check "$cmd names what to look at and how to stop it by hand" \
		grep -q "journalctl -u dfsr.*fusermount3 -u" "$WS/hung-$cmd.err"
	check_fails "$cmd does not call it not running" grep -q "not running" "$WS/hung-$cmd.err"
done
check "the hung member still runs" still_ours "$PID"
check "its socket is still there (mount did not take it over)" test -S "$SOCK"

# ---- it runs again -------------------------------------------------------------------------
kill -CONT "$PID"
STOPPED=""
check "once resumed it answers" "$DFSR_BIN" wait -c "$CONF" --timeout 60
check_eq "and it is the same member" "$PID" "$(member_pid_of "$CONF")"
stop_member "$CONF"
finish
