#!/usr/bin/env bash
# repl_security.sh - partners are known by public key, and nothing else gets in:
#   - alpha's config names bravo with the wrong public key: alpha refuses bravo (event 5002)
#     and no file crosses either way; bravo stays in initial-sync;
#   - mallory, whose key no one has, dials alpha and bravo with their right addresses and
#     keys and offers a file as a primary: both refuse it (5002), and nothing crosses;
#   - once alpha's config has bravo's right key, alpha and bravo replicate (so the
#     refusals above were the keys, not a broken set-up), and mallory still gets nothing.
. "$(dirname "$0")/lib.sh"
it_init

group_setup 3 --primary "1 3"
A=1 B=2 M=3
# member 3 is charlie in the configs; called mallory here
real=${G_PUB[B]}
G_PUB[B]=$("$DFSR_BIN" keygen "$WS/wrong.key") || die "keygen failed"
group_write_conf $A
G_PUB[B]=$real
drop_peer $A charlie
drop_peer $B charlie
check "alpha's config does not name mallory" bash -c "! grep -q 'peer charlie' '${G_CONF[A]}'"
check "alpha's config has a key for bravo that is not bravo's" bash -c \
	"grep -q 'public_key' '${G_CONF[A]}' && ! grep -qF '$real' '${G_CONF[A]}'"

echo "alpha's secret" >"${G_PATH[A]}/secret.txt"
echo "planted by mallory" >"${G_PATH[M]}/planted.txt"

member_start $A
member_start $B
member_start $M
check "alpha refuses bravo's key (5002)" wait_until 60 event_seen "${G_CONF[A]}" 5002
check "bravo refuses mallory's key (5002)" wait_until 60 event_seen "${G_CONF[B]}" 5002
check "the refusals name a peer address or key" bash -c \
	"'$DFSR_BIN' events -c '${G_CONF[A]}' --json | '$PY' -c '
import json, sys
e = [x for x in json.load(sys.stdin) if x[\"id\"] == 5002]
assert e and all(x[\"message\"] for x in e), e'"
stays_absent() { ! wait_until "$1" test -e "$2"; }
check "alpha's file does not reach bravo" stays_absent 5 "${G_MNT[B]}/secret.txt"
check "alpha's file does not reach mallory" test ! -e "${G_PATH[M]}/secret.txt"
check "mallory's file does not reach alpha" test ! -e "${G_PATH[A]}/planted.txt"
check "mallory's file does not reach bravo" test ! -e "${G_PATH[B]}/planted.txt"
check "alpha shows bravo not connected" test "$(peer_field $A bravo connected)" = false
check "bravo shows alpha not connected" test "$(peer_field $B alpha connected)" = false
check "mallory shows no partner connected" bash -c "'$DFSR_BIN' status -c '${G_CONF[M]}' --json | '$PY' -c '
import json, sys
d = json.load(sys.stdin)
assert not any(p[\"connected\"] for p in d[\"folders\"][0][\"peers\"]), d'"
check_eq "bravo, served by no one, stays in initial-sync" initial-sync \
	"$(folder_field "${G_CONF[B]}" share state)"
check_eq "bravo received nothing from alpha" 0 "$(peer_field $B alpha bytes_received)"
check_fails "dfsr wait on bravo times out" "$DFSR_BIN" wait -c "${G_CONF[B]}" --timeout 3

# ---- alpha learns bravo's right key ----------------------------------------------------------
group_write_conf $A
drop_peer $A charlie
member_stop $A
member_start $A
check "dfsr wait: alpha and bravo in sync with the right keys" members_wait 90 $A $B
check_eq "with the right key alpha's file reaches bravo" "alpha's secret" \
	"$(cat "${G_MNT[B]}/secret.txt" 2>&1)"
check "bravo is normal" all_normal "${G_CONF[B]}"
check_trees_equal "alpha and bravo equal" $A $B
n=$(count_event "${G_CONF[A]}" 5002)
more_events() { [ "$(count_event "$1" "$2")" -gt "$3" ]; }
check "alpha keeps refusing mallory (more 5002)" wait_until 60 more_events "${G_CONF[A]}" 5002 "$n"
echo "after the fix" >"${G_MNT[A]}/later.txt"
check "dfsr wait: alpha and bravo in sync" members_wait 60 $A $B
check "bravo gets later changes" test -f "${G_MNT[B]}/later.txt"
check "mallory still has nothing of alpha's" bash -c \
	"[ ! -e '${G_PATH[M]}/secret.txt' ] && [ ! -e '${G_PATH[M]}/later.txt' ]"
check "alpha still has nothing of mallory's" test ! -e "${G_PATH[A]}/planted.txt"
check "bravo still has nothing of mallory's" test ! -e "${G_PATH[B]}/planted.txt"

member_stop $M
member_stop $B
member_stop $A
finish
