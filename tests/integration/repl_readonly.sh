#!/usr/bin/env bash
# repl_readonly.sh - a read-only member in a group (docs/conflicts.md §11): alpha (primary,
# writable) and bravo (read_only = yes). What alpha writes reaches bravo; writes in bravo's
# mount fail with EROFS; changes made in bravo's local path behind dfsr (while it is stopped:
# a file modified, a file and a directory added, a file and a directory tree deleted, a
# symlink replaced, the mode of a directory and of a file changed) are reverted to the
# group's version at its next start, the changed and added objects kept in its
# DfsrPrivate/ConflictAndDeleted with manifest entries (a change of mode alone is applied
# again in place); alpha never receives anything from bravo.
. "$(dirname "$0")/lib.sh"
it_init

group_setup 2
A=1 B=2
G_FOLDER_EXTRA[B]="read_only = yes"$'\n'
group_write_conf $B
MA=${G_MNT[A]} MB=${G_MNT[B]} PA=${G_PATH[A]} PB=${G_PATH[B]}

mkdir "$PA/docs"
echo "before the first start" >"$PA/docs/old.txt"
group_start $A $B
check "bravo (read-only) is normal after its initial sync" all_normal "${G_CONF[B]}"

# ---- what alpha writes reaches bravo ---------------------------------------------------------
echo "group version" >"$MA/docs/mod.txt"
echo "to be deleted behind dfsr" >"$MA/del.txt"
mkdir -p "$MA/tree/sub"
echo deep >"$MA/tree/sub/deep.txt"
ln -s docs/old.txt "$MA/link"
chmod 0755 "$MA/docs"
check "dfsr wait: in sync after alpha's writes" members_wait 60
check_eq "alpha's new file reaches bravo's mount" "group version" "$(cat "$MB/docs/mod.txt" 2>&1)"
check_eq "alpha's symlink reaches bravo" "docs/old.txt" "$(readlink "$MB/link" 2>&1)"
check_trees_equal "trees equal after alpha's writes" $A $B

# ---- bravo's mount refuses writes --------------------------------------------------------------
check_errno "create in bravo's mount" EROFS create "$MB/new.txt"
check_errno "write in bravo's mount" EROFS write "$MB/docs/mod.txt"
check_errno "unlink in bravo's mount" EROFS unlink "$MB/del.txt"
check_errno "mkdir in bravo's mount" EROFS mkdir "$MB/newdir"
check_errno "chmod in bravo's mount" EROFS chmod "$MB/docs" 0700
check_eq "bravo's backlog_out to alpha is 0" 0 "$(peer_field $B alpha backlog_out)"
check_trees_equal "the refused writes changed nothing" $A $B

# ---- changes behind bravo's back, while it is stopped ------------------------------------------
a_tree=$(tree_hashes "$PA")
a_from=$(journal_next "${G_CONF[A]}")
member_stop $B
echo "local edit" >"$PB/docs/mod.txt"
echo "added behind dfsr" >"$PB/docs/new.txt"
mkdir "$PB/newdir"
echo "inside a new directory" >"$PB/newdir/x.txt"
rm "$PB/del.txt"
rm -r "$PB/tree"
rm "$PB/link"
ln -s elsewhere "$PB/link"
chmod 0700 "$PB/docs"
chmod 0600 "$PB/docs/old.txt"
member_start $B
check "dfsr wait: in sync after bravo's restart" members_wait 90
check_trees_equal "bravo holds the group's version again (dfsr hash -r)" $A $B
check_eq "the modified file has alpha's content" "group version" "$(cat "$PB/docs/mod.txt" 2>&1)"
check_eq "the deleted file is back" "to be deleted behind dfsr" "$(cat "$PB/del.txt" 2>&1)"
check_eq "the deleted tree is back" "deep" "$(cat "$PB/tree/sub/deep.txt" 2>&1)"
check_eq "the replaced symlink points where alpha's does" "docs/old.txt" "$(readlink "$PB/link" 2>&1)"
check_eq "the directory has alpha's mode again" "755" "$(stat -c %a "$PB/docs" 2>&1)"
check_eq "the file whose mode alone changed has alpha's mode again" \
	"$(stat -c %a "$PA/docs/old.txt")" "$(stat -c %a "$PB/docs/old.txt" 2>&1)"
check "a change of mode alone is not preserved" conflict_none $B docs/old.txt
check "the added file is gone from the local path" test ! -e "$PB/docs/new.txt"
check "the added directory is gone from the local path" test ! -e "$PB/newdir"
check "the added file is not in the mount" test ! -e "$MB/docs/new.txt"

check "bravo's manifest lists the modified file as conflict" conflict_has $B conflict docs/mod.txt
check "bravo's manifest lists the replaced symlink as conflict" conflict_has $B conflict link
check "bravo's manifest lists the added file as deleted" conflict_has $B deleted docs/new.txt
check "bravo's manifest lists the added directory as deleted" conflict_has $B deleted newdir
p=$(preserved_path $B conflict docs/mod.txt)
check_eq "the local edit is preserved" "local edit" "$(cat "$p" 2>&1)"
check "its preserved name is mod.txt-{UID}-v<counter>" preserved_name_ok "$(basename "$p")" mod.txt
p=$(preserved_path $B deleted docs/new.txt)
check_eq "the added file is preserved" "added behind dfsr" "$(cat "$p" 2>&1)"
p=$(preserved_path $B deleted newdir)
check_eq "the added directory is preserved whole" "inside a new directory" "$(cat "$p/x.txt" 2>&1)"
check_eq "the replaced symlink is preserved" "elsewhere" \
	"$(readlink "$(preserved_path $B conflict link)" 2>&1)"
check "bravo logged the reverts (1206)" event_seen "${G_CONF[B]}" 1206
check_fails "a restore into bravo's mount fails (read-only)" \
	"$DFSR_BIN" restore -c "${G_CONF[B]}" docs/mod.txt
check "the local edit can be copied out of bravo" \
	"$DFSR_BIN" restore -c "${G_CONF[B]}" --to "$WS/recovered" --copy docs/mod.txt
check_eq "the copied-out edit" "local edit" "$(cat "$WS/recovered/docs/mod.txt" 2>&1)"
check "the failed restore and the copy kept the entry" conflict_has $B conflict docs/mod.txt

# ---- alpha never received anything from bravo ---------------------------------------------------
check_eq "alpha's tree did not change" "$a_tree" "$(tree_hashes "$PA")"
check_eq "alpha journaled nothing (no install from bravo)" "" "$(journal_ops "${G_CONF[A]}" "$a_from")"
check "alpha's manifest has no entry for the modified file" conflict_none $A docs/mod.txt
check "alpha's manifest has no entry for the added file" conflict_none $A docs/new.txt
check "alpha never saw the added file" test ! -e "$MA/docs/new.txt"
check_eq "bravo's backlog_out to alpha is 0" 0 "$(peer_field $B alpha backlog_out)"
check_eq "alpha's backlog_in from bravo is 0" 0 "$(peer_field $A bravo backlog_in)"

# ---- the group's later changes still arrive -------------------------------------------------------
echo "a later version" >"$MA/docs/mod.txt"
check "dfsr wait: in sync after alpha's later change" members_wait 60
check_eq "alpha's later change reaches bravo" "a later version" "$(cat "$MB/docs/mod.txt" 2>&1)"
check_trees_equal "trees equal at the end" $A $B

member_stop $B
member_stop $A
finish
