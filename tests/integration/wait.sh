#!/usr/bin/env bash
# wait.sh - `dfsr wait` (CONTRACT.md): exit 0 once every folder is normal and nothing is
# pending, exit 1 on timeout saying what is pending, a clear error when no member runs.
# One member has no partners, so only the folders' states can be pending here.
. "$(dirname "$0")/lib.sh"
it_init

make_member alpha
"$DFSR_BIN" wait -c "$M_CONF" --timeout 5 >"$WS/nr.out" 2>"$WS/nr.err" && rc=0 || rc=$?
check_eq "wait with no member running fails" 1 "$rc"
check "and says so in one line" grep -q "not running" "$WS/nr.err"

start_member "$M_CONF"
check "a primary member is in sync once its initial build is done" \
	"$DFSR_BIN" wait -c "$M_CONF" --timeout 60

# A file written and still open is a change dfsr has not recorded yet: pending.
exec 7>"$M_MNT/open.txt"
echo "not closed yet" >&7
"$DFSR_BIN" wait -c "$M_CONF" --timeout 1 >"$WS/open.out" 2>"$WS/open.err" && rc=0 || rc=$?
check_eq "a file written and still open: wait times out" 1 "$rc"
check "saying a file is written and not closed" grep -q "files written and not closed yet" "$WS/open.err"
exec 7>&-
check "closed: in sync again" "$DFSR_BIN" wait -c "$M_CONF" --timeout 30
check "and the file is in the journal" journal_has "$M_CONF" 0 "create f open.txt"
exec 7<"$M_MNT/open.txt"
check "a file only read does not count" "$DFSR_BIN" wait -c "$M_CONF" --timeout 5
exec 7<&-
stop_member "$M_CONF"

make_member bravo
sed -i "s/^primary = yes/primary = no/" "$M_CONF"
start_member "$M_CONF"
"$DFSR_BIN" wait -c "$M_CONF" --timeout 1 >"$WS/to.out" 2>"$WS/to.err" && rc=0 || rc=$?
check_eq "a non-primary member with no partner times out" 1 "$rc"
check "saying what is pending" grep -q "folder share is initial-sync" "$WS/to.err"
"$DFSR_BIN" wait -c "$M_CONF" --timeout nope 2>/dev/null && rc=0 || rc=$?
check_eq "a bad --timeout is a usage error" 2 "$rc"
stop_member "$M_CONF"
finish
