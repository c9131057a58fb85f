#!/usr/bin/env bash
# reload.sh - `dfsr reload` and SIGHUP apply changed quotas and filters without unmounting
# (CONTRACT.md, "Commands"); a broken config is refused with one line and the member keeps
# running as before.
. "$(dirname "$0")/lib.sh"
it_init

make_member alpha
start_member "$M_CONF"
wait_normal "$M_CONF" 60 || die "member did not reach normal"
pid=$M_PID
quota_is() { [ "$(status_field "$M_CONF" 'd["folders"][0]["staging"]["quota"]')" = "$1" ]; }

from=$(journal_next "$M_CONF")
: >"$M_MNT/before.log"
check "a *.log file is journaled before the reload" wait_until 20 journal_has "$M_CONF" "$from" "create f before.log"

printf 'file_filter = ~*, *.bak, *.tmp, *.log\nstaging_quota = 100M\n' >>"$M_CONF"
check "dfsr reload succeeds" "$DFSR_BIN" reload -c "$M_CONF"
check "reload applies the staging quota (100M)" wait_until 20 quota_is 104857600
check "event 9003 (reloaded)" wait_until 20 event_seen "$M_CONF" 9003
from=$(journal_next "$M_CONF")
: >"$M_MNT/after.log"
: >"$M_MNT/after.txt"
check "a plain file is still journaled" wait_until 20 journal_has "$M_CONF" "$from" "create f after.txt"
check "the new filter applies: after.log makes no entry" bash -c "! '$DFSR_BIN' journal -c '$M_CONF' --json --from $from | grep -q after.log"
check_eq "the member did not restart" "$pid" "$(member_pid_of "$M_CONF")"
check "still mounted" mounted "$M_MNT"

sed -i 's/^staging_quota = 100M$/staging_quota = 200M/' "$M_CONF"
kill -HUP "$pid"
check "SIGHUP reloads too" wait_until 20 quota_is 209715200

cp "$M_CONF" "$WS/good.conf"
echo "bogus = 1" >>"$M_CONF"
rc=0
"$DFSR_BIN" reload -c "$M_CONF" >"$WS/reload.out" 2>"$WS/reload.err" || rc=$?
check "reload of a broken config fails" test "$rc" -ne 0
check_eq "with exactly one line on stderr" "1" "$(wc -l <"$WS/reload.err")"
check "the member keeps running" pid_alive "$pid"
cp "$WS/good.conf" "$M_CONF"
check "the old settings stay" quota_is 209715200
stop_member "$M_CONF"
finish
