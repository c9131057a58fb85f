#!/usr/bin/env bash
# repl_basic.sh - replication as a user sees it: two members (alpha primary, bravo joining
# empty), then a third (charlie). Every kind of change made in one member's mount shows up
# in the others' mounts: create, mkdir, symlink, modify, chmod, xattr, ACL, rename (without
# sending the data again), rmdir, delete (the receivers keep the deleted file in
# DfsrPrivate/ConflictAndDeleted with a manifest entry of type deleted). After every step
# `dfsr hash -r` of every local path and every mount is the same.
. "$(dirname "$0")/lib.sh"
it_init

group_setup 3
A=1 B=2 C=3
MA=${G_MNT[A]} MB=${G_MNT[B]} MC=${G_MNT[C]}

# ---- two members: bravo's initial sync from the primary --------------------------------------
mkdir "${G_PATH[A]}/pre"
echo "before the first start" >"${G_PATH[A]}/pre/old.txt"
member_start $A
member_start $B
st=$(folder_field "${G_CONF[B]}" share state)
check "bravo starts in initial-sync (or is already normal): $st" \
	test "$st" = initial-sync -o "$st" = normal
members_wait 90 || die "alpha and bravo never got in sync"
check "bravo is normal after its initial sync" all_normal "${G_CONF[B]}"
check "alpha sees bravo connected" test "$(peer_field $A bravo connected)" = true
check "bravo sees alpha connected" test "$(peer_field $B alpha connected)" = true
check_eq "the primary's pre-existing file reached bravo's mount" "before the first start" \
	"$(cat "$MB/pre/old.txt" 2>&1)"
check_trees_equal "trees equal after the initial sync" $A $B

# ---- create, mkdir, symlink ------------------------------------------------------------------
echo hello >"$MA/a.txt"
mkdir -p "$MA/docs/sub"
printf 'deep\n' >"$MA/docs/sub/deep.txt"
ln -s a.txt "$MA/link"
ln -s docs/sub "$MA/dirlink"
mkdir "$MA/empty"
check "dfsr wait: in sync after the creates" members_wait 60
check_eq "a new file appears in bravo's mount" "hello" "$(cat "$MB/a.txt" 2>&1)"
check_eq "a file in new directories appears" "deep" "$(cat "$MB/docs/sub/deep.txt" 2>&1)"
check_eq "a symlink arrives as a symlink" "a.txt" "$(readlink "$MB/link" 2>&1)"
check_eq "a symlink to a directory arrives" "docs/sub" "$(readlink "$MB/dirlink" 2>&1)"
check "an empty directory arrives" test -d "$MB/empty"
check "files arrive in the local path too" test -f "${G_PATH[B]}/docs/sub/deep.txt"
check "nothing of the transfer is left in bravo's mount" bash -c \
	"[ \"\$(ls -A '$MB' | tr '\n' ' ')\" = 'a.txt dirlink docs empty link pre ' ]"
check_trees_equal "trees equal after create/mkdir/symlink" $A $B

# ---- modify, chmod, xattr, ACL ---------------------------------------------------------------
echo more >>"$MA/a.txt"
echo mode >"$MA/mode.txt"
chmod 0604 "$MA/mode.txt"
chmod 0750 "$MA/docs"
setfattr -n user.color -v blue "$MA/a.txt"
setfacl -m "u:$NOBODY:r" "$MA/docs/sub/deep.txt"
check "dfsr wait: in sync after the metadata changes" members_wait 60
check_eq "a modification arrives" "$(printf 'hello\nmore')" "$(cat "$MB/a.txt" 2>&1)"
check_eq "chmod of a file arrives" "604" "$(stat -c %a "$MB/mode.txt" 2>&1)"
check_eq "the mode of a file with an ACL arrives" "$(stat -c %a "$MA/docs/sub/deep.txt")" \
	"$(stat -c %a "$MB/docs/sub/deep.txt" 2>&1)"
check_eq "chmod of a directory arrives" "750" "$(stat -c %a "$MB/docs" 2>&1)"
check_eq "an xattr arrives" "blue" "$(getfattr --only-values -n user.color "$MB/a.txt" 2>/dev/null)"
check "an ACL arrives" bash -c "getfacl -pn '$MB/docs/sub/deep.txt' | grep -qx 'user:$NOBODY:r--'"
check_trees_equal "trees equal after modify/chmod/xattr/ACL" $A $B

# changes made on bravo travel the other way
echo "from bravo" >"$MB/docs/b.txt"
setfattr -x user.color "$MB/a.txt"
check "dfsr wait: in sync after bravo's changes" members_wait 60
check_eq "bravo's new file reaches alpha" "from bravo" "$(cat "$MA/docs/b.txt" 2>&1)"
check "bravo's xattr removal reaches alpha" bash -c "! getfattr -n user.color '$MA/a.txt' >/dev/null 2>&1"
check_trees_equal "trees equal after bravo's changes" $A $B

# ---- rename: the data does not travel again --------------------------------------------------
head -c $((4 << 20)) /dev/urandom >"$WS/big.src"
cp "$WS/big.src" "$MA/big.bin"
check "dfsr wait: in sync after the 4 MiB file" members_wait 90
check "the 4 MiB file arrives intact" cmp -s "$WS/big.src" "$MB/big.bin"
r0=$(bytes_received $B)
check "bravo counts the bytes it received (>= 4 MiB so far)" test "${r0:-0}" -ge $((4 << 20))
mv "$MA/big.bin" "$MA/docs/renamed.bin"
check "dfsr wait: in sync after the rename" members_wait 60
r1=$(bytes_received $B)
say "the rename of a 4 MiB file cost bravo $((r1 - r0)) bytes received"
check "the renamed file is at its new name on bravo" cmp -s "$WS/big.src" "$MB/docs/renamed.bin"
check "and not at its old name" test ! -e "$MB/big.bin"
check "a rename of a 4 MiB file moves under 256 KiB ($((r1 - r0)) bytes)" \
	test $((r1 - r0)) -lt $((256 << 10))
check "a rename is not a delete: nothing preserved for it" conflict_none $B big.bin
mv "$MA/docs/sub" "$MA/moved"
check "dfsr wait: in sync after the directory rename" members_wait 60
check "a renamed directory arrives with its content" test -f "$MB/moved/deep.txt"
check "the old directory name is gone" test ! -e "$MB/docs/sub"
check_trees_equal "trees equal after the renames" $A $B

# ---- delete: the receiver keeps the file in ConflictAndDeleted -------------------------------
printf 'precious content\n' >"$MA/gone.txt"
check "dfsr wait: in sync before the delete" members_wait 60
check "gone.txt reached bravo" test -f "$MB/gone.txt"
rm "$MA/gone.txt"
rmdir "$MA/empty"
check "dfsr wait: in sync after the delete" members_wait 60
check "a deleted file disappears from bravo's mount" test ! -e "$MB/gone.txt"
check "a removed directory disappears from bravo's mount" test ! -e "$MB/empty"
check "bravo's manifest lists gone.txt as deleted" conflict_has $B deleted gone.txt
p=$(preserved_path $B deleted gone.txt)
check "the preserved name is gone.txt-{UID}-v<counter> (${p##*/})" \
	preserved_name_ok "${p##*/}" gone.txt
check_eq "bravo keeps the deleted content under DfsrPrivate/ConflictAndDeleted" \
	"precious content" "$(cat "$p" 2>&1)"
check "the preserved file is listed through bravo's mount" \
	test -f "$MB/DfsrPrivate/ConflictAndDeleted/${p##*/}"
check "bravo's ConflictAndDeletedManifest.xml names it" \
	grep -q "${p##*/}" "${G_PATH[B]}/DfsrPrivate/ConflictAndDeletedManifest.xml"
check "the deleting member preserves nothing (a local delete is simply gone)" \
	conflict_none $A gone.txt
conflict_used() { folder_field "${G_CONF[$1]}" share conflict | json 'd["used"]'; }
conflict_used_positive() { [ "$(conflict_used "$1")" -gt 0 ]; }
check "status counts bravo's conflict area ($(conflict_used $B) bytes used)" \
	wait_until 20 conflict_used_positive $B
check_trees_equal "trees equal after the delete" $A $B

# ---- a third member joins, then changes flow among three -------------------------------------
member_start $C
check "dfsr wait: charlie gets in sync" members_wait 90
check "charlie is normal" all_normal "${G_CONF[C]}"
check "charlie got the renamed 4 MiB file" cmp -s "$WS/big.src" "$MC/docs/renamed.bin"
check_eq "charlie got bravo's file" "from bravo" "$(cat "$MC/docs/b.txt" 2>&1)"
check "charlie does not get what was deleted before it joined" test ! -e "$MC/gone.txt"
check_trees_equal "trees equal on three members"

echo "from charlie" >"$MC/c.txt"
mkdir "$MC/cdir"
ln -s ../c.txt "$MC/cdir/clink"
echo "changed by bravo" >"$MB/pre/old.txt"
rm "$MA/link"
check "dfsr wait: three members in sync" members_wait 60
check_eq "charlie's file reaches alpha" "from charlie" "$(cat "$MA/c.txt" 2>&1)"
check_eq "charlie's file reaches bravo" "from charlie" "$(cat "$MB/c.txt" 2>&1)"
check_eq "charlie's symlink reaches bravo" "../c.txt" "$(readlink "$MB/cdir/clink" 2>&1)"
check_eq "bravo's modification reaches charlie" "changed by bravo" "$(cat "$MC/pre/old.txt" 2>&1)"
check "alpha's delete of a symlink reaches charlie" test ! -L "$MC/link"
check "charlie keeps the deleted symlink" conflict_has $C deleted link
check_trees_equal "trees equal on three members after changes on each"

# a stopped member catches up when it comes back
member_stop $C
echo "while charlie was away" >"$MA/away.txt"
rm "$MB/c.txt"
check "dfsr wait: alpha and bravo in sync while charlie is away" members_wait 60
member_start $C
check "dfsr wait: charlie catches up" members_wait 90
check_eq "charlie catches up with a change made while it was stopped" \
	"while charlie was away" "$(cat "$MC/away.txt" 2>&1)"
check "charlie applies a delete made while it was stopped" test ! -e "$MC/c.txt"
check "and keeps its copy in ConflictAndDeleted" conflict_has $C deleted c.txt
check_trees_equal "trees equal after charlie's restart"

for i in $C $B $A; do
	member_stop $i
done
check "local paths still equal after every member stopped" trees_equal
finish
