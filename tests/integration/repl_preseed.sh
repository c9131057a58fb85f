#!/usr/bin/env bash
# repl_preseed.sh - preseeding (docs/conflicts.md §10): bravo's local path is filled with
# `rsync -aAX` from alpha's before bravo's first start. Bravo (not primary) adopts every
# file of the same hash without transfer: it receives under 2 % of the data. One file
# changed on bravo before the start differs from the primary's: it ends in bravo's
# DfsrPrivate/PreExisting with a `dfsr conflicts --preexisting` entry, and bravo takes
# alpha's version. A file only bravo has is kept and replicates to alpha. Then bravo joins
# again as a new member, and a write through a node held across the adoption replicates.
. "$(dirname "$0")/lib.sh"
it_init

group_setup 2
A=1 B=2
PA=${G_PATH[A]} PB=${G_PATH[B]}

# ---- the primary's data: ~24 MiB in 60 files with directories, modes, xattrs, ACLs, links ----
for d in 0 1 2 3 4; do
	mkdir -p "$PA/dir$d/sub"
	for f in 0 1 2 3 4 5; do
		head -c $(((d * 6 + f) * 23000 + 100)) /dev/urandom >"$PA/dir$d/f$f.dat"
		head -c 1500 /dev/urandom >"$PA/dir$d/sub/s$f.dat"
	done
done
head -c $((12 << 20)) /dev/urandom >"$PA/dir0/large.bin"
chmod 0640 "$PA/dir1/f1.dat"
chmod 0700 "$PA/dir2"
setfattr -n user.tag -v preseed "$PA/dir3/f3.dat"
setfacl -m "u:$NOBODY:rw" "$PA/dir4/f4.dat"
ln -s dir0/large.bin "$PA/link"
head -c 20000 /dev/urandom >"$PA/differs.dat"
member_start $A
wait_normal "${G_CONF[A]}" 60 || die "alpha did not reach normal"
total=$(folder_field "${G_CONF[A]}" share bytes)
check "alpha counts the data (${total} bytes)" test "$total" -gt $((20 << 20))

# ---- preseed bravo's local path with rsync -aAX, then change one file there ------------------
rsync -aAX --exclude=/DfsrPrivate "$PA/" "$PB/" || die "rsync failed"
check "the preseeded copy has the same replication hashes" bash -c \
	"diff <('$DFSR_BIN' hash -r '$PA') <('$DFSR_BIN' hash -r '$PB')"
head -c 20000 /dev/urandom >"$WS/bravo-differs"
cp "$WS/bravo-differs" "$PB/differs.dat"
echo "only on bravo" >"$PB/bravo-only.txt"

member_start $B
check "dfsr wait: bravo finishes its initial sync" members_wait 120
check "bravo is normal after the initial sync" all_normal "${G_CONF[B]}"
got=$(bytes_received $B)
say "bravo received $got bytes for $total bytes of preseeded data"
check "bravo received under 2 % of the $total bytes of data ($got bytes)" \
	test "${got:-999999999}" -lt $((total / 50))
check "alpha sent under 2 % of the data ($(peer_field $A bravo bytes_sent) bytes)" \
	test "$(peer_field $A bravo bytes_sent)" -lt $((total / 50))

check "bravo's differing file is listed as preexisting" \
	conflict_has $B preexisting differs.dat --preexisting
p=$(preserved_path $B preexisting differs.dat --preexisting)
check "it is kept under DfsrPrivate/PreExisting as differs.dat-{UID}-v<counter> (${p##*/})" \
	preserved_name_ok "${p##*/}" differs.dat
check "it holds bravo's content" cmp -s "$WS/bravo-differs" "$p"
check "bravo now has alpha's version of it" cmp -s "$PA/differs.dat" "${G_MNT[B]}/differs.dat"
check "PreExistingManifest.xml names it" grep -q "${p##*/}" "$PB/DfsrPrivate/PreExistingManifest.xml"
check "the preseeded files are not preexisting entries" bash -c \
	"[ \"\$('$DFSR_BIN' conflicts -c '${G_CONF[B]}' --preexisting --json | '$PY' -c 'import json,sys; print(len(json.load(sys.stdin)))')\" = 1 ]"
check "nothing went to ConflictAndDeleted" bash -c \
	"[ \"\$('$DFSR_BIN' conflicts -c '${G_CONF[B]}' --json | '$PY' -c 'import json,sys; print(len(json.load(sys.stdin)))')\" = 0 ]"
check "bravo's own file is kept" test -f "${G_MNT[B]}/bravo-only.txt"
check_eq "and replicates to alpha" "only on bravo" "$(cat "${G_MNT[A]}/bravo-only.txt" 2>&1)"
check_trees_equal "trees equal after the preseeded initial sync"

# the adopted files are real replicas: a change on either side still travels
echo "changed on bravo" >>"${G_MNT[B]}/dir1/f1.dat"
rm "${G_MNT[A]}/dir3/f3.dat"
check "dfsr wait: in sync after changes to adopted files" members_wait 60
check "bravo's change to an adopted file reaches alpha" cmp -s "${G_MNT[B]}/dir1/f1.dat" "${G_MNT[A]}/dir1/f1.dat"
check "alpha's delete of an adopted file reaches bravo" test ! -e "${G_MNT[B]}/dir3/f3.dat"
check "bravo keeps it as deleted" conflict_has $B deleted dir3/f3.dat
check_trees_equal "trees equal at the end"

# ---- a node held across initial sync's adoption: a write through it replicates --------------
# bravo starts again as a new member over what it holds (its database removed) while alpha is
# stopped: its initial build records its files under UIDs of its own, and it waits in
# initial-sync. A reader opens dir2/sub/s1.dat there; alpha starts, and bravo adopts the file
# (same hash) as alpha's record, dropping its own. The reader's node kept the dropped UID: a
# write through it (reopened through /proc/self/fd) was journaled on nothing and never
# reached alpha, whose next change of the file would have replaced it unseen.
member_stop $B
member_stop $A
rm -rf "$PB/DfsrPrivate"
member_start $B
check_eq "bravo, new again, waits in initial-sync" initial-sync \
	"$(folder_field "${G_CONF[B]}" share state 2>&1)"
exec 9<"${G_MNT[B]}/dir2/sub/s1.dat"
member_start $A
check "dfsr wait: bravo's second initial sync" members_wait 120
check "nothing of bravo's went to PreExisting this time" bash -c \
	"[ \"\$('$DFSR_BIN' conflicts -c '${G_CONF[B]}' --preexisting --json | '$PY' -c 'import json,sys; print(len(json.load(sys.stdin)))')\" = 0 ]"
sh -c "echo 'appended through the reader after the adoption' >>/proc/self/fd/9" 9<&9
exec 9<&-
check "dfsr wait: in sync after the write" members_wait 60
check "the write through the reader's node reached alpha" \
	cmp -s "${G_MNT[B]}/dir2/sub/s1.dat" "${G_MNT[A]}/dir2/sub/s1.dat"
check_trees_equal "trees equal after the second initial sync"

member_stop $B
member_stop $A
finish
