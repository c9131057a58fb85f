#!/usr/bin/env bash
# repl_relay.sh - a member that relays changes between partners that are not partners of
# each other (alpha - bravo - charlie in a line, as branch offices behind a hub) reports
# them in sync once they are: each change made on charlie reaches alpha through bravo,
# and `dfsr wait` on every member returns without waiting for a later change
# (CONTRACT.md: wait exits 0 when nothing is pending to or from any connected partner).
# Bravo sends alpha the relayed update with a Done of its knowledge before it merged
# charlie's Done; that merge must send alpha a new Done, or alpha's Ack never covers the
# update and bravo counts it as alpha's backlog until its next change.
. "$(dirname "$0")/lib.sh"
it_init

group_setup 3
A=1 B=2 C=3
drop_peer $A charlie
drop_peer $C alpha
member_start $A
member_start $B
member_start $C
line_wait() { # TIMEOUT : dfsr wait on every member (each has only its own partners)
	local i
	for i in $C $B $A; do
		"$DFSR_BIN" wait -c "${G_CONF[i]}" --timeout "$1" 2>"$WS/wait.err" || {
			say "  ${G_NAME[i]}: $(cat "$WS/wait.err")"
			return 1
		}
	done
}
connected() { [ "$(peer_field "$1" "$2" connected)" = true ]; }
check "bravo connects to alpha" wait_until 60 connected $B alpha
check "bravo connects to charlie" wait_until 60 connected $B charlie
check "the line is in sync after the initial sync" line_wait 90

for i in 1 2 3 4 5 6 7 8; do
	echo "change $i" >"${G_MNT[C]}/f$i"
	check "round $i: every member in sync within 15 s, with no later change" line_wait 15
	check_eq "round $i: f$i reached alpha through bravo" "change $i" \
		"$(cat "${G_MNT[A]}/f$i" 2>&1)"
done
check_eq "bravo holds nothing for alpha" 0 "$(peer_field $B alpha backlog_out)"
check_trees_equal "alpha's and bravo's trees are equal" $A $B
check_trees_equal "alpha's and charlie's trees are equal" $A $C
finish
