#!/usr/bin/env bash
# repl_conflict.sh - the conflict rules of docs/conflicts.md, end to end, on two members
# that change the same things while apart (one stopped while the other changes, then the
# other way round) and then meet again:
#   §3 update conflict: the later change wins everywhere; the loser is kept in the
#      ConflictAndDeleted of the member that held it (manifest type conflict, event 4412);
#   §4 name conflict: the same new name on both: the first created keeps the name; the
#      other is kept as name-conflict;
#   §5 delete vs update: the update wins everywhere (the file comes back);
#   §7 a directory deleted on one while a file was added under it on the other: the
#      directory comes back with the new file.
# Then the same update conflict again with the members' roles swapped, and both sides
# converge by `dfsr hash -r`.
. "$(dirname "$0")/lib.sh"
it_init

group_setup 3
A=1 B=2 C=3 # charlie joins only for the last case
MA=${G_MNT[A]} MB=${G_MNT[B]}

group_start $A $B

echo base >"$MA/f.txt"          # update conflict
echo "g base" >"$MA/g.txt"      # delete (alpha) vs update (bravo)
echo "h base" >"$MA/h.txt"      # update (alpha) vs delete (bravo)
mkdir -p "$MA/D/keep"           # directory deleted (alpha) vs file added (bravo)
echo old >"$MA/D/old.txt"
echo "k base" >"$MA/k.txt"      # the same change on both: not a conflict worth keeping
members_wait 60 || die "the base files did not replicate"
check_trees_equal "trees equal before the partition" $A $B
check_eq "f.txt replicated" base "$(cat "$MB/f.txt" 2>&1)"

# ---- apart: alpha changes first (bravo stopped) ----------------------------------------------
member_stop $B
echo "from alpha" >"$MA/f.txt"
echo "alpha's new" >"$MA/n.txt"
rm "$MA/g.txt"
echo "h updated by alpha" >"$MA/h.txt"
rm -r "$MA/D"
echo "k same" >"$MA/k.txt"
member_stop $A

# ---- apart: then bravo (alpha stopped): its changes are the later ones ----------------------
member_start $B
echo "from bravo" >"$MB/f.txt"
echo "bravo's new" >"$MB/n.txt"
echo "g updated by bravo" >"$MB/g.txt"
rm "$MB/h.txt"
echo "added while D was deleted elsewhere" >"$MB/D/new.txt"
echo "k same" >"$MB/k.txt"

# ---- together again --------------------------------------------------------------------------
member_start $A
check "dfsr wait: in sync after the partition" members_wait 90
check_trees_equal "trees equal after the conflicts" $A $B

# §3: the later change (bravo's) wins everywhere; alpha keeps its loser
check_eq "update conflict: the later change wins on alpha" "from bravo" "$(cat "$MA/f.txt" 2>&1)"
check_eq "update conflict: the later change wins on bravo" "from bravo" "$(cat "$MB/f.txt" 2>&1)"
check "alpha's manifest lists f.txt as conflict" conflict_has $A conflict f.txt
p=$(preserved_path $A conflict f.txt)
check "the loser's name is f.txt-{UID}-v<counter> (${p##*/})" preserved_name_ok "${p##*/}" f.txt
check_eq "alpha's losing content is kept in ConflictAndDeleted" "from alpha" "$(cat "$p" 2>&1)"
check "event 4412 (conflict resolved) on alpha" event_seen "${G_CONF[A]}" 4412
check "bravo never held the loser: nothing preserved for f.txt" conflict_none $B f.txt

# §4: the first created keeps the name (alpha's n.txt was created before bravo's)
check_eq "name conflict: the first created keeps the name (alpha)" "alpha's new" "$(cat "$MA/n.txt" 2>&1)"
check_eq "name conflict: the first created keeps the name (bravo)" "alpha's new" "$(cat "$MB/n.txt" 2>&1)"
check "bravo's manifest lists n.txt as name-conflict" conflict_has $B name-conflict n.txt
p=$(preserved_path $B name-conflict n.txt)
check "the name-conflict loser's name is n.txt-{UID}-v<counter> (${p##*/})" \
	preserved_name_ok "${p##*/}" n.txt
check_eq "bravo's losing n.txt is kept" "bravo's new" "$(cat "$p" 2>&1)"

# §5: an update beats a delete, in both directions
check_eq "delete vs update: bravo's update wins on alpha" "g updated by bravo" "$(cat "$MA/g.txt" 2>&1)"
check_eq "delete vs update: bravo's update stays on bravo" "g updated by bravo" "$(cat "$MB/g.txt" 2>&1)"
check_eq "update vs delete: alpha's update wins on bravo" "h updated by alpha" "$(cat "$MB/h.txt" 2>&1)"
check_eq "update vs delete: alpha's update stays on alpha" "h updated by alpha" "$(cat "$MA/h.txt" 2>&1)"

# §7: D comes back with bravo's new file; what alpha deleted stays deleted
check_eq "the deleted directory comes back on alpha with the new file" \
	"added while D was deleted elsewhere" "$(cat "$MA/D/new.txt" 2>&1)"
check "D is a directory on alpha" test -d "$MA/D"
check "and on bravo" test -f "$MB/D/new.txt"
check "the file alpha deleted under D stays deleted on bravo" test ! -e "$MB/D/old.txt"
check "bravo keeps D/old.txt (deleted by alpha) in ConflictAndDeleted" \
	conflict_has $B deleted D/old.txt

# the same change on both sides: nothing to keep
check_eq "identical concurrent changes agree" "k same" "$(cat "$MA/k.txt" 2>&1)"
check "identical concurrent changes preserve nothing on alpha" conflict_none $A k.txt
check "identical concurrent changes preserve nothing on bravo" conflict_none $B k.txt

# ---- the other way round: alpha's change is the later one -------------------------------------
member_stop $A
echo "bravo again" >"$MB/f.txt"
member_stop $B
member_start $A
echo "alpha again" >"$MA/f.txt"
member_start $B
check "dfsr wait: in sync after the second conflict" members_wait 90
check_eq "second conflict: the later change (alpha's) wins on bravo" "alpha again" "$(cat "$MB/f.txt" 2>&1)"
check_eq "second conflict: alpha keeps its change" "alpha again" "$(cat "$MA/f.txt" 2>&1)"
check "bravo keeps its losing f.txt" bash -c \
	"grep -lx 'bravo again' '${G_PATH[B]}'/DfsrPrivate/ConflictAndDeleted/f.txt-* >/dev/null"
check "bravo's manifest lists its f.txt as conflict" conflict_has $B conflict f.txt
check "event 4412 on bravo" event_seen "${G_CONF[B]}" 4412
check_trees_equal "trees equal at the end" $A $B

# ---- §7 + §4: a directory deleted, and its name taken by another (renamed) directory, while
# the other member changed a file in the deleted one. The deleted directory comes back (§7)
# and meets the renamed one at the same name: the first created keeps the name and the
# other is merged into it (§4), so every file of both is there, on both members; a new file
# made under the name of one deleted with the directory stays too.
mkdir -p "$MA/P/old" "$MA/P/other"
echo "in old" >"$MA/P/old/edited.txt"
echo "dropped with old" >"$MA/P/old/dropped.txt"
echo "in other" >"$MA/P/other/moved.txt"
check "dfsr wait: in sync before the directory case" members_wait 60
member_stop $B
rm -r "$MA/P/old"
mv "$MA/P/other" "$MA/P/old"
echo "new in the renamed directory" >"$MA/P/old/new.txt"
echo "a new file under a deleted file's name" >"$MA/P/old/dropped.txt"
member_stop $A
member_start $B
echo "edited on bravo" >"$MB/P/old/edited.txt"
member_start $A
check "dfsr wait: in sync after the directory case" members_wait 90
check_trees_equal "trees equal after the deleted-and-replaced directory" $A $B
for i in $A $B; do
	n=${G_NAME[i]}
	check_eq "$n: the file edited under the deleted directory is back" "edited on bravo" \
		"$(cat "${G_MNT[i]}/P/old/edited.txt" 2>&1)"
	check_eq "$n: the renamed directory's file is under the name" "in other" \
		"$(cat "${G_MNT[i]}/P/old/moved.txt" 2>&1)"
	check_eq "$n: the file made in the renamed directory is there" "new in the renamed directory" \
		"$(cat "${G_MNT[i]}/P/old/new.txt" 2>&1)"
	check "$n: the old name of the renamed directory is gone" test ! -e "${G_MNT[i]}/P/other"
	check_eq "$n: a new file under the name of one deleted with the directory is there" \
		"a new file under a deleted file's name" "$(cat "${G_MNT[i]}/P/old/dropped.txt" 2>&1)"
done
check "bravo keeps the file deleted with the directory" conflict_has $B deleted P/old/dropped.txt
p=$(preserved_path $B deleted P/old/dropped.txt)
check_eq "what bravo kept is the deleted file's content" "dropped with old" "$(cat "$p" 2>&1)"
check "alpha, which made the new file, did not preserve it as deleted" conflict_none $A P/old/dropped.txt

# conflict resolution made no new versions to bounce back: both members agree and stay idle
jb=$(folder_field "${G_CONF[B]}" share journal)
ja=$(folder_field "${G_CONF[A]}" share journal)
members_wait 30 || true
check_eq "alpha's journal does not grow once in sync" "$ja" "$(folder_field "${G_CONF[A]}" share journal)"
check_eq "bravo's journal does not grow once in sync" "$jb" "$(folder_field "${G_CONF[B]}" share journal)"

# ---- §3 with a third member: the loser is kept on every member that held it live ------------
member_start $C
check "dfsr wait: charlie joins" members_wait 90
echo "three base" >"$MA/three.txt"
check "dfsr wait: three.txt replicated" members_wait 60
member_stop $B
echo "three: alpha" >"$MA/three.txt"
check "dfsr wait: alpha and charlie in sync without bravo" members_wait 60 $A $C
check_eq "charlie holds alpha's edit" "three: alpha" "$(cat "${G_MNT[C]}/three.txt" 2>&1)"
member_stop $A
member_stop $C
member_start $B
echo "three: bravo, later" >"$MB/three.txt"
member_start $A
member_start $C
check "dfsr wait: three members in sync after the conflict" members_wait 90
check_trees_equal "trees equal on three members"
for i in $A $B $C; do
	check_eq "${G_NAME[i]} has the later edit" "three: bravo, later" "$(cat "${G_MNT[i]}/three.txt" 2>&1)"
done
check "alpha keeps its losing edit" conflict_has $A conflict three.txt
check "charlie, which held alpha's edit live, keeps it too (§3)" conflict_has $C conflict three.txt
check "charlie's copy is alpha's edit" bash -c \
	"grep -lx 'three: alpha' '${G_PATH[C]}'/DfsrPrivate/ConflictAndDeleted/three.txt-* >/dev/null"

member_stop $C
member_stop $B
member_stop $A
finish
