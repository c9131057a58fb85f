#!/usr/bin/env bash
# repl_cli.sh - the replication commands as an administrator types them (CONTRACT.md,
# "Commands", "Events"; dfsr(1) EXIT STATUS):
#   - `dfsr reload` of a lower staging_quota cleans the staging area at once, and the
#     staging events (4202, 4204) are in the folder's event log, not only in syslog;
#   - `dfsr backlog --list` prints GVSNs as journal and conflicts do (DBHEX-vN);
#   - options may follow the operands (`dfsr restore ENTRY -c CONFIG`);
#   - a missing required option or operand is a bad command line: exit 2, one line;
#   - `dfsr restore` of a stopped member names the member;
#   - on a terminal, `dfsr status` of a member in initial sync shows a progress bar with
#     rate and time left (CONTRACT.md), as it does for the initial build;
#   - a detached member keeps none of its caller's descriptors (here a file open for
#     writing in alpha's mount, which alpha would wait on for ever).
. "$(dirname "$0")/lib.sh"
it_init

group_setup 3
A=1 B=2 C=3
CA=${G_CONF[A]} CB=${G_CONF[B]} CC=${G_CONF[C]}
# charlie's initial sync takes a few seconds: both its partners send at 1 MB/s
G_PEER_EXTRA["$A,$C"]="bandwidth = 1M"
G_PEER_EXTRA["$B,$C"]="bandwidth = 1M"
group_write_conf $A
group_write_conf $B
MA=${G_MNT[A]}
member_start $A
echo first >"$MA/held.txt"
exec 9>>"$MA/held.txt" # bravo is started while this shell holds a file of alpha's open
member_start $B
exec 9>&-
bfds=$(ls -l "/proc/${G_PID[B]}/fd" 2>&1)
check "bravo's daemon did not inherit the caller's descriptor into alpha's mount" \
	bash -c "! grep -q held.txt <<<\"\$1\"" _ "$bfds"
members_wait 90 || die "alpha and bravo never got in sync"
echo second >"$MA/held.txt"
check "a file written in alpha's mount after that is not held open: dfsr wait" \
	members_wait 30
check_eq "it arrives at bravo" second "$(cat "${G_MNT[B]}/held.txt" 2>&1)"

# ---- staging quota through dfsr reload --------------------------------------------------------
for i in 1 2 3; do
	head -c 3000000 /dev/urandom >"$MA/big$i"
done
members_wait 120 || die "the large files did not replicate"
staging_used() { status_field "$CA" 'd["folders"][0]["staging"]["used"]'; }
staging_under() { [ "$(staging_used)" -lt "$1" ]; }
staging_over() { [ "$(staging_used)" -gt "$1" ]; }
# (status counts DfsrPrivate usage again at most every few seconds)
check "alpha staged the files it served to bravo" wait_until 20 staging_over 4000000
check "no staging cleanup yet under the default quota" bash -c "! '$DFSR_BIN' events -c '$CA' --json | grep -q '\"id\": 4202'"
sed -i '/^primary = /a staging_quota = 1M' "$CA"
check "dfsr reload with staging_quota = 1M" "$DFSR_BIN" reload -c "$CA"
check "the reload logged 9003 with the quota applied" wait_until 20 bash -c \
	"'$DFSR_BIN' events -c '$CA' | grep -q ' 9003 share: .*applied=quota'"
check "the staging area is cleaned at once: usage under 1 MiB" wait_until 20 staging_under 1048576
check "event 4202 (high watermark) is in alpha's event log" wait_until 20 event_seen "$CA" 4202
check "event 4204 (cleanup done) is in alpha's event log" wait_until 20 event_seen "$CA" 4204
check "the events carry the folder name" bash -c \
	"'$DFSR_BIN' events -c '$CA' | grep -q ' 4204 share: staging cleanup done'"

# ---- initial sync progress on a terminal -------------------------------------------------------
# charlie joins while alpha and bravo hold 9 MB, each sending at 1 MB/s: `dfsr status` on a
# terminal (script(1))
bar_seen() {
	script -qec "'$DFSR_BIN' status -c '$CC'" /dev/null >"$WS/tty.out" 2>&1
	grep -qE '^  initial-sync: \[[#.]{40}\] +[0-9]+%  [0-9]+/[0-9]+ files  .*/s  .* left' "$WS/tty.out"
}
member_start $C
if check "charlie's status on a terminal shows an initial-sync progress bar" wait_until 30 bar_seen; then
	say "  $(grep 'initial-sync:' "$WS/tty.out" | tr -d '\r' | head -1)"
fi
check "not on a terminal: a plain line" bash -c "'$DFSR_BIN' status -c '$CC' | grep -v '\[' >/dev/null"
members_wait 120 || die "charlie's initial sync did not finish"

# ---- backlog: counts and the listing's GVSN format -------------------------------------------
member_stop $B
echo one >"$MA/one.txt"
echo two >"$MA/two.txt"
check "alpha is in sync with its connected partners (bravo is down)" \
	"$DFSR_BIN" wait -c "$CA" --timeout 30
"$DFSR_BIN" backlog -c "$CA" --peer bravo --list 5 >"$WS/backlog.txt" 2>&1
check "backlog counts the two updates" grep -qx 'share: 2 updates not yet installed by bravo' \
	"$WS/backlog.txt"
check "backlog lists one.txt with a GVSN like the journal's (DBHEX-vN)" \
	grep -qE '^  one\.txt  [0-9a-f]{32}-v[0-9]+$' "$WS/backlog.txt"
gv=$("$DFSR_BIN" backlog -c "$CA" --peer bravo --list 5 --json |
	json '[u["gvsn"] for u in d["folders"][0]["updates"] if u["path"] == "one.txt"][0]')
jgv=$("$DFSR_BIN" journal -c "$CA" --json |
	json '[e["gvsn"] for e in d if e["path"] == "one.txt"][-1]')
check_eq "backlog --json gives one.txt the GVSN the journal gives it" "$jgv" "$gv"

# ---- command lines ---------------------------------------------------------------------------
usage_error() { # DESCRIPTION CMD... : exit 2 and one line naming the usage
	local desc=$1 rc=0
	shift
	"$@" >"$WS/cmd.out" 2>"$WS/cmd.err" || rc=$?
	check_eq "[$desc] exits 2 (bad command line)" 2 "$rc"
	check "[$desc] one line on stderr with the usage" bash -c \
		"[ \$(wc -l <'$WS/cmd.err') = 1 ] && grep -q '(usage: dfsr ' '$WS/cmd.err'"
}
usage_error "backlog without --peer" "$DFSR_BIN" backlog -c "$CA"
usage_error "restore without entries or --all" "$DFSR_BIN" restore -c "$CA"
usage_error "restore --all with an entry" "$DFSR_BIN" restore -c "$CA" --all one.txt

# An option after an operand is an option, not an entry (nor the default config silently).
rc=0
"$DFSR_BIN" restore nosuch.txt -c "$CA" >"$WS/cmd.out" 2>"$WS/cmd.err" || rc=$?
check_eq "restore ENTRY -c CONFIG exits 1 (no such entry)" 1 "$rc"
check "it read CONFIG: the error names the entry in the manifest" \
	grep -qx "dfsr: restore: no entry 'nosuch.txt' in the ConflictAndDeleted manifest" \
	"$WS/cmd.err"
rc=0
"$DFSR_BIN" backlog --peer bravo -c "$CA" --json >"$WS/cmd.out" 2>"$WS/cmd.err" || rc=$?
check_eq "options in any order work" 0 "$rc"

member_stop $A
rc=0
"$DFSR_BIN" restore -c "$CA" --all >"$WS/cmd.out" 2>"$WS/cmd.err" || rc=$?
check_eq "restore into the mount of a stopped member exits 1" 1 "$rc"
check "and names the member" grep -q '^dfsr: restore: member alpha is not running' "$WS/cmd.err"
check "without a (null)" bash -c "! grep -q '(null)' '$WS/cmd.err'"

finish
