#!/usr/bin/env bash
# wait_reconnect.sh - `dfsr wait` right after a link comes back (docs/protocol.md RM.4):
# bravo changed a file while the link to alpha was down. Once alpha is connected again,
# `dfsr wait` on alpha must not say "in sync" before bravo has told it what it holds on the
# new connection (its first Done or Backlog), even though the figures of the last
# connection say nothing is pending.
# The link is a relay (holdproxy.py) that alpha dials and bravo cannot: it is cut, then
# comes back holding what bravo sends after its handshake, so the window in which alpha is
# connected and has heard nothing from bravo lasts as long as the test needs; then it lets
# everything through and `dfsr wait` must return 0 with bravo's change on alpha.
. "$(dirname "$0")/lib.sh"
it_init

CTL=$WS/proxy
mkdir -p "$CTL"
PROXY=""
wr_cleanup() {
	local rc=$?
	[ -z "$PROXY" ] || kill "$PROXY" 2>/dev/null || true
	(exit $rc)
	it_cleanup
}
trap wr_cleanup EXIT

group_setup 2
A=1 B=2
# three different ports: the members' (not listened on yet), the relay's, and one where
# nothing listens
PPORT=$(free_port "$G_PORT") || die "no free TCP port"
DEAD=$(free_port "$G_PORT" "$PPORT") || die "no free TCP port"
# alpha reaches bravo through the relay only; bravo cannot reach alpha (nothing listens on
# DEAD): the pair's one connection is alpha's, through the relay
sed -i "/^\[peer bravo\]/,/^address/ s|^address = .*|address = 127.0.0.1:$PPORT|" "${G_CONF[A]}"
sed -i "/^\[peer alpha\]/,/^address/ s|^address = .*|address = 127.0.0.1:$DEAD|" "${G_CONF[B]}"
check "alpha's partner bravo is the relay" grep -qx "address = 127.0.0.1:$PPORT" "${G_CONF[A]}"

# What the relay lets through from bravo when it holds: the handshake REPLY (68 bytes) and,
# when bravo is the pair's keeper (the larger public key, net/peer.c), its selection frame
# (20 bytes), without which alpha's connection never goes up.
key_hex() { printf '%s' "$1" | base64 -d | od -An -tx1 | tr -d ' \n'; }
HOLD_AFTER=68
[[ "$(key_hex "${G_PUB[B]}")" < "$(key_hex "${G_PUB[A]}")" ]] || HOLD_AFTER=88
say "bravo is the keeper: $([ $HOLD_AFTER = 88 ] && echo yes || echo no)"
"$PY" "$LIB_DIR/holdproxy.py" "127.0.0.1:$PPORT" "${G_ADDR[B]}:$G_PORT" "$CTL" "$HOLD_AFTER" \
	>"$WS/proxy.out" 2>&1 &
PROXY=$!
wait_until 10 grep -qx ready "$WS/proxy.out" || die "the relay did not start: $(cat "$WS/proxy.out")"

# partner_connected CONF true|false : the member's status shows its one partner so.
partner_connected() {
	[ "$(status_field "$1" '[p["connected"] for p in d["folders"][0]["peers"]][0]' 2>/dev/null)" = "$2" ]
}

member_start $A
member_start $B
check "alpha connects to bravo through the relay" wait_until 60 partner_connected "${G_CONF[A]}" true
echo "base" >"${G_MNT[A]}/base.txt"
members_wait 60 || die "the base file did not replicate"
check_eq "bravo has alpha's file" "base" "$(cat "${G_MNT[B]}/base.txt" 2>&1)"

say "cutting the link"
touch "$CTL/cut"
check "alpha sees bravo disconnected" wait_until 60 partner_connected "${G_CONF[A]}" false
echo "made while apart" >"${G_MNT[B]}/apart.txt"
check "bravo journaled its change" "$DFSR_BIN" wait -c "${G_CONF[B]}" --timeout 30
check "alpha does not have it yet" test ! -e "${G_MNT[A]}/apart.txt"
check "and says it is in sync (bravo is not connected: not waited for)" \
	"$DFSR_BIN" wait -c "${G_CONF[A]}" --timeout 30

say "the link comes back, holding what bravo sends after its handshake"
touch "$CTL/hold"
rm "$CTL/cut"
check "alpha sees bravo connected again" wait_until 60 partner_connected "${G_CONF[A]}" true
"$DFSR_BIN" wait -c "${G_CONF[A]}" --timeout 3 >"$WS/early.out" 2>"$WS/early.err" && rc=0 || rc=$?
check "bravo's change has not reached alpha (the relay holds it)" test ! -e "${G_MNT[A]}/apart.txt"
check_eq "dfsr wait on alpha does not say in sync before bravo was heard on the new connection" \
	1 "$rc"
check "it says what it waits for" grep -q "peer bravo: .*changes being counted" "$WS/early.err"

say "releasing the relay"
rm "$CTL/hold"
check "then dfsr wait on alpha returns 0" "$DFSR_BIN" wait -c "${G_CONF[A]}" --timeout 60
check_eq "and alpha has bravo's change when it does" "made while apart" \
	"$(cat "${G_MNT[A]}/apart.txt" 2>&1)"

member_stop $B
member_stop $A
finish
