#!/usr/bin/env bash
# repl_partition.sh - a network partition, made with a network namespace: bravo runs in
# its own namespace (entered with nsenter --net only, so its FUSE mount stays visible
# here), joined to the host by a veth pair; alpha and charlie run on the host. Cutting the
# link (the namespace side of the veth down) splits the group into {alpha, charlie} and
# {bravo}: each side keeps working and replicating within itself, changes on both sides,
# including a conflicting one; healing the link makes everyone converge.
# Skips (exit 77) only when network namespaces or veth pairs cannot be made.
. "$(dirname "$0")/lib.sh"
it_init

NS=dfsrpt$$
HV=dfh$$
NV=dfn$$
SUB=10.251.$(($$ % 250))

pt_cleanup() {
	local rc=$?
	ip link del "$HV" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	(exit $rc)
	it_cleanup
}
trap pt_cleanup EXIT

command -v ip >/dev/null && command -v nsenter >/dev/null ||
	skip_or_fail "ip (iproute2) or nsenter (util-linux) is missing"
ip netns add "$NS" 2>"$WS/netns.err" || skip_or_fail "ip netns add: $(cat "$WS/netns.err")"
if ! { ip link add "$HV" type veth peer name "$NV" &&
	ip link set "$NV" netns "$NS" &&
	ip addr add "$SUB.1/24" dev "$HV" &&
	ip addr add "$SUB.3/24" dev "$HV" &&
	ip link set "$HV" up &&
	ip netns exec "$NS" ip addr add "$SUB.2/24" dev "$NV" &&
	ip netns exec "$NS" ip link set "$NV" up &&
	ip netns exec "$NS" ip link set lo up; } 2>"$WS/veth.err"; then
	skip_or_fail "cannot set up a veth pair into a network namespace: $(cat "$WS/veth.err")"
fi
cut_link() { ip netns exec "$NS" ip link set "$NV" down; }
heal_link() { ip netns exec "$NS" ip link set "$NV" up; }

group_setup 3
A=1 B=2 C=3
MA=${G_MNT[A]} MB=${G_MNT[B]} MC=${G_MNT[C]}
G_ADDR[A]=$SUB.1
G_ADDR[B]=$SUB.2
G_ADDR[C]=$SUB.3
G_WRAP[B]="nsenter --net=/run/netns/$NS"
for i in $A $B $C; do
	group_write_conf $i
done

member_start $A
member_start $B
member_start $C
check "bravo runs in the namespace" test "$(readlink "/proc/${G_PID[B]}/ns/net")" = \
	"$(nsenter --net=/run/netns/$NS readlink /proc/self/ns/net)"
check "bravo's mount is visible on the host" mounted "$MB"
members_wait 90 || die "the three members never got in sync"

mkdir "$MA/base"
echo "shared base" >"$MA/shared.txt"
echo "to delete" >"$MA/base/doomed.txt"
echo "keep" >"$MA/base/keep.txt"
members_wait 60 || die "the base files did not replicate"
check_trees_equal "trees equal before the partition"

# ---- partition ------------------------------------------------------------------------------
say "cutting the link"
cut_link
echo "alpha side" >"$MA/shared.txt"
echo "made by alpha while cut off" >"$MA/a1.txt"
rm "$MA/base/doomed.txt"
echo "made by charlie while cut off" >"$MC/c1.txt"

# the majority side keeps replicating within itself
check_eq "alpha's change reaches charlie during the partition" "made by alpha while cut off" \
	"$(wait_until 60 test -e "$MC/a1.txt"; cat "$MC/a1.txt" 2>&1)"
check "charlie's change reaches alpha during the partition" wait_until 60 test -e "$MA/c1.txt"
check "alpha's conflicting change reaches charlie" wait_until 60 \
	grep -qx "alpha side" "$MC/shared.txt"

# bravo, cut off, changes the same file later, and other things
echo "bravo side" >"$MB/shared.txt"
mkdir "$MB/bdir"
echo "made by bravo while cut off" >"$MB/bdir/b1.txt"
stays_absent() { ! wait_until "$1" test -e "$2"; }
check "bravo's new file does not cross the cut link" stays_absent 5 "$MA/bdir/b1.txt"
check "alpha's new file does not cross the cut link" test ! -e "$MB/a1.txt"
check_eq "bravo's mount keeps its own version" "bravo side" "$(cat "$MB/shared.txt")"

# ---- heal -----------------------------------------------------------------------------------
say "healing the link"
heal_link
check "dfsr wait: in sync after healing the link" members_wait 180
check_trees_equal "trees equal after the partition healed"
for i in $A $B $C; do
	n=${G_NAME[i]}
	check_eq "$n has alpha's file" "made by alpha while cut off" "$(cat "${G_MNT[i]}/a1.txt" 2>&1)"
	check_eq "$n has charlie's file" "made by charlie while cut off" "$(cat "${G_MNT[i]}/c1.txt" 2>&1)"
	check_eq "$n has bravo's file" "made by bravo while cut off" "$(cat "${G_MNT[i]}/bdir/b1.txt" 2>&1)"
	check_eq "$n has the later change of shared.txt (bravo's)" "bravo side" "$(cat "${G_MNT[i]}/shared.txt" 2>&1)"
	check "$n does not have the file deleted on alpha" test ! -e "${G_MNT[i]}/base/doomed.txt"
done
check "alpha keeps its losing shared.txt" conflict_has $A conflict shared.txt
check "charlie, which held alpha's version, keeps it too" conflict_has $C conflict shared.txt
check "the loser's content is kept on alpha" bash -c \
	"grep -lx 'alpha side' '${G_PATH[A]}'/DfsrPrivate/ConflictAndDeleted/shared.txt-* >/dev/null"
check "bravo keeps the file alpha deleted" conflict_has $B deleted base/doomed.txt
check "event 4412 on alpha" event_seen "${G_CONF[A]}" 4412

# ---- a second cut and heal: still converges -------------------------------------------------
cut_link
echo "second round on bravo" >"$MB/round2-b.txt"
echo "second round on charlie" >"$MC/round2-c.txt"
heal_link
check "dfsr wait: in sync after the second partition" members_wait 180
check_eq "bravo's second-round file reached charlie" "second round on bravo" "$(cat "$MC/round2-b.txt" 2>&1)"
check_eq "charlie's second-round file reached bravo" "second round on charlie" "$(cat "$MB/round2-c.txt" 2>&1)"
check_trees_equal "trees equal after the second partition"

member_stop $C
member_stop $B
member_stop $A
finish
