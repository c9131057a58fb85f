#!/usr/bin/env bash
# repl_links.sh - hard links between members (each name is its own record, docs/architecture.md
# "Hard links"): bravo makes links through its mount, alpha holds the names as separate
# files. Then:
#   - alpha changes one name (installed on bravo by rename: the link is broken there), and
#     bravo writes through the other name: only that name takes the change, the group
#     converges (the replaced name's record is not given the other file's data);
#   - alpha changes the mode and an xattr of one name: bravo's other name keeps its own
#     (docs/conflicts.md §8);
#   - alpha deletes one name: bravo preserves it, and a write through the other name
#     afterwards leaves the preserved copy as it was (§9);
#   - the first case again after a restart of bravo, whose node for the object then knows
#     only the name alpha replaces.
. "$(dirname "$0")/lib.sh"
it_init

group_setup 2
A=1 B=2
MA=${G_MNT[A]} MB=${G_MNT[B]} PB=${G_PATH[B]}
group_start $A $B

echo one >"$MB/a"
ln "$MB/a" "$MB/b"
echo v1 >"$MB/c"
ln "$MB/c" "$MB/d"
echo kept >"$MB/e"
ln "$MB/e" "$MB/g"
members_wait 60 || die "the links did not replicate"
check_eq "bravo's a and b are one file" "$(stat -c %i "$PB/a")" "$(stat -c %i "$PB/b")"

# ---- a name replaced by a partner's install, then a write through the other name -------------
echo "alpha's b" >"$MA/b"
members_wait 60 || die "alpha's b did not replicate"
check_eq "bravo installed alpha's b" "alpha's b" "$(cat "$PB/b")"
echo two >"$MB/a"
check "in sync after bravo writes a (the name b left that file)" members_wait 30
check_eq "alpha has bravo's a" two "$(cat "$MA/a" 2>&1)"
check_eq "alpha keeps its b" "alpha's b" "$(cat "$MA/b" 2>&1)"
check_eq "bravo keeps alpha's b" "alpha's b" "$(cat "$MB/b" 2>&1)"

# ---- new metadata for one name ------------------------------------------------------------------
chmod 600 "$MA/c"
setfattr -n user.k -v 1 "$MA/c"
check "in sync after the mode and xattr of c" members_wait 30
check_eq "bravo's c has the new mode" 600 "$(stat -c %a "$PB/c")"
check_eq "bravo's d keeps its mode" 644 "$(stat -c %a "$PB/d")"
check_fails "bravo's d has no user.k" getfattr -n user.k "$PB/d"

# ---- a preserved name, then a write through the other -------------------------------------------
rm "$MA/e"
members_wait 60 || die "the delete of e did not replicate"
echo "written through g" >"$MB/g"
members_wait 60 || die "g did not replicate"
pres=$(preserved_path $B deleted e)
check "bravo preserved e" test -f "$pres"
check_eq "the preserved e holds what was deleted" kept "$(cat "$pres" 2>&1)"

# ---- the same after a restart, with the node known by the replaced name only ----------------
# bravo's node for the object of h and i is made by a lookup of i (a reader holds it open,
# so the kernel keeps it); alpha replaces i; bravo writes through h, a name the node did
# not know and the object's only link by then: h takes the change, i does not.
echo "h one" >"$MB/h"
ln "$MB/h" "$MB/i"
members_wait 60 || die "h and i did not replicate"
member_stop $B
member_start $B
members_wait 60 || die "bravo did not come back in sync"
exec 8<"$MB/i"
echo "alpha's i" >"$MA/i"
members_wait 60 || die "alpha's i did not replicate"
echo "h two" >"$MB/h"
check "in sync after bravo writes h" members_wait 30
exec 8<&-
check_eq "alpha has bravo's h" "h two" "$(cat "$MA/h" 2>&1)"
check_eq "alpha keeps its i" "alpha's i" "$(cat "$MA/i" 2>&1)"

check_trees_equal "trees equal"
for i in 2 1; do
	member_stop $i
done
# the records match the disk: a scan at the next start finds nothing to record
for i in 1 2; do
	member_start $i
	check "${G_NAME[i]}'s scan finds nothing new" sh -c "'$DFSR_BIN' events -c '${G_CONF[i]}' | grep 1204 | tail -1 | grep -q 'created=0 changed=0 removed=0'"
	member_stop $i
done
finish
