#!/usr/bin/env bash
# repl_clone.sh - database cloning (core/clone.h, docs/operations.md "Cloning the database"):
# alpha runs with a tree; `dfsr clone export` copies its folder database while it runs
# (event 2402); bravo's local path is filled with `rsync -aAX` from alpha's, one file is
# changed and one removed there; `dfsr clone import --validation basic` adopts the clone
# with a new database id (event 2404, with counts). Bravo's first start is `normal` at once
# (no initial build, no initial sync, no unclean-stop 2212); the changed file ends with
# alpha's content and bravo's version in PreExisting; the removed one comes back; bravo
# receives far less than the data; changes replicate both ways afterwards. Error cases:
# an import over an existing database, an export into a non-empty directory, a bad
# --validation value, an export while the member is stopped.
. "$(dirname "$0")/lib.sh"
it_init

group_setup 3
A=1 B=2 C=3
PA=${G_PATH[A]} PB=${G_PATH[B]} PC=${G_PATH[C]}
CA=${G_CONF[A]} CB=${G_CONF[B]} CC=${G_CONF[C]}

# ---- alpha's data: ~20 MiB in directories, with modes, xattrs, ACLs and a link ------------
for d in 0 1 2 3; do
	mkdir -p "$PA/dir$d/sub"
	for f in 0 1 2 3 4; do
		head -c $(((d * 5 + f) * 23000 + 100)) /dev/urandom >"$PA/dir$d/f$f.dat"
		head -c 1500 /dev/urandom >"$PA/dir$d/sub/s$f.dat"
	done
done
head -c $((12 << 20)) /dev/urandom >"$PA/dir0/large.bin"
chmod 0640 "$PA/dir1/f1.dat"
chmod 0700 "$PA/dir2"
setfattr -n user.tag -v clone "$PA/dir3/f3.dat"
setfacl -m "u:$NOBODY:rw" "$PA/dir3/f4.dat"
ln -s dir0/large.bin "$PA/link"
head -c 20000 /dev/urandom >"$PA/differs.dat"
echo "to be removed on bravo" >"$PA/dir1/gone.txt"
member_start $A
wait_normal "$CA" 60 || die "alpha did not reach normal"
# a delete on alpha before the export: the clone keeps its tombstone
echo "short-lived" >"${G_MNT[A]}/deleted.txt"
rm "${G_MNT[A]}/deleted.txt"
total=$(folder_field "$CA" share bytes)
check "alpha counts the data (${total} bytes)" test "$total" -gt $((15 << 20))

# ---- export while alpha runs ------------------------------------------------------------------
EXP=$WS/export
check "clone export succeeds while alpha runs" dfsr clone export -c "$CA" --folder share "$EXP"
check "the export holds the database" test -f "$EXP/db/CURRENT"
check "and its description" grep -q "<Member>alpha</Member>" "$EXP/DfsrClone.xml"
check "the description names the folder" grep -q "<Folder>share</Folder>" "$EXP/DfsrClone.xml"
check "event 2402 on alpha" event_seen "$CA" 2402
mkdir -p "$WS/full"
echo x >"$WS/full/x"
check_fails "export into a non-empty directory is refused" \
	dfsr clone export -c "$CA" --folder share "$WS/full"
out=$(dfsr clone export -c "$CA" --folder share "$WS/full" 2>&1)
check "and says why ($out)" grep -q "not empty" <<<"$out"
check "the non-empty directory is left as it was" test "$(ls "$WS/full")" = x
out=$(dfsr clone export -c "$CA" --folder share "${G_MNT[A]}/exp" 2>&1)
check "export into the replicated tree is refused ($out)" grep -q "inside folder share" <<<"$out"
check "and nothing was made there" test ! -e "${G_MNT[A]}/exp"
check_fails "clone without export or import is a usage error" dfsr clone -c "$CA" "$WS/x"
mkdir -p "$WS/empty"
check "export into an empty directory works" dfsr clone export -c "$CA" "$WS/empty"
check "it holds a database too" test -f "$WS/empty/db/CURRENT"
check "a relative DIR is the caller's, not the member's" \
	bash -c "cd '$WS' && '$DFSR_BIN' clone export -c '$CA' rel-export/"
check "and lands there" test -f "$WS/rel-export/db/CURRENT"

# ---- preseed bravo, change one file, remove one --------------------------------------------
rsync -aAX --exclude=/DfsrPrivate "$PA/" "$PB/" || die "rsync failed"
head -c 20000 /dev/urandom >"$WS/bravo-differs"
cp "$WS/bravo-differs" "$PB/differs.dat"
rm "$PB/dir1/gone.txt"
echo "only on bravo" >"$PB/bravo-only.txt"

check_fails "a bad --validation value is refused" \
	dfsr clone import -c "$CB" --folder share --validation sometimes "$EXP"
check "and nothing was made" test ! -e "$PB/DfsrPrivate/db"
check_fails "importing alpha's export into alpha (it has a database) is refused" \
	dfsr clone import -c "$CA" --folder share "$EXP"
out=$(dfsr clone import -c "$CB" --folder share --validation basic "$EXP" 2>&1)
rc=$?
import_out=$out
check_eq "clone import --validation basic succeeds ($out)" 0 "$rc"
check "it reports the changed file" grep -q "^mismatched differs.dat" <<<"$out"
check "it reports the removed file" grep -q "^missing dir1/gone.txt" <<<"$out"
check "it reports bravo's own file" grep -q "^extra bravo-only.txt" <<<"$out"
check "bravo's database is in place" test -f "$PB/DfsrPrivate/db/CURRENT"
check "no temporary database is left" bash -c "! ls -d '$PB'/DfsrPrivate/db.import.* 2>/dev/null"
check "the changed file went to PreExisting" \
	grep -q "<Path>differs.dat</Path>" "$PB/DfsrPrivate/PreExistingManifest.xml"
check_fails "a second import over bravo's database is refused" \
	dfsr clone import -c "$CB" --folder share "$EXP"
out=$(dfsr clone import -c "$CB" --folder share "$EXP" 2>&1)
check "and says why ($out)" grep -q "has a database already" <<<"$out"

# ---- bravo's first start: normal at once ---------------------------------------------------
member_start $B
check_eq "bravo is normal at once (no initial build or sync)" normal \
	"$(folder_field "$CB" share state)"
check "event 2404 on bravo" event_seen "$CB" 2404
check "no unclean stop (2212) on bravo" bash -c "'$DFSR_BIN' events -c '$CB' --json |
	'$PY' -c 'import json,sys; sys.exit(any(e[\"id\"] == 2212 for e in json.load(sys.stdin)))'"
check "no initial sync on bravo (4102)" bash -c "'$DFSR_BIN' events -c '$CB' --json |
	'$PY' -c 'import json,sys; sys.exit(any(e[\"id\"] in (1202, 4102) for e in json.load(sys.stdin)))'"
check "alpha's events are not in bravo's log (no 2402)" bash -c "'$DFSR_BIN' events -c '$CB' --json |
	'$PY' -c 'import json,sys; sys.exit(any(e[\"id\"] == 2402 for e in json.load(sys.stdin)))'"
ev2404=$(dfsr events -c "$CB" | grep ' 2404 ')
check "2404 carries the counts ($ev2404; $(grep -E '^(mismatched|missing|extra)' <<<"$import_out" | tr '\n' ' '))" grep -q 'mismatched=1 missing=1 extra=1' <<<"$ev2404"
check "the first scan re-reads nothing (only bravo's own file is new)" bash -c \
	"'$DFSR_BIN' events -c '$CB' | grep ' 1204 ' | head -1 | grep -q 'created=1 changed=0 removed=0'"

check "dfsr wait: bravo in sync" members_wait 120
check "bravo is normal" all_normal "$CB"
got=$(bytes_received $B)
say "bravo received $got bytes for $total bytes of data"
check "bravo received under 2 % of the $total bytes of data ($got bytes)" \
	test "${got:-999999999}" -lt $((total / 50))

check "bravo's changed file is a preexisting entry" \
	conflict_has $B preexisting differs.dat --preexisting
p=$(preserved_path $B preexisting differs.dat --preexisting)
check "it holds bravo's content" cmp -s "$WS/bravo-differs" "$p"
check "bravo now has alpha's version of it" cmp -s "$PA/differs.dat" "${G_MNT[B]}/differs.dat"
check "the removed file is back on bravo" cmp -s "$PA/dir1/gone.txt" "${G_MNT[B]}/dir1/gone.txt"
check "alpha still has it" test -f "${G_MNT[A]}/dir1/gone.txt"
check_eq "bravo's own file replicates to alpha" "only on bravo" \
	"$(cat "${G_MNT[A]}/bravo-only.txt" 2>&1)"
check "the deleted file stays deleted" test ! -e "${G_MNT[B]}/deleted.txt"
check_trees_equal "trees equal after the import" $A $B
check "the trees are equal by dfsr hash -r" bash -c \
	"diff <('$DFSR_BIN' hash -r '$PA') <('$DFSR_BIN' hash -r '$PB')"

# ---- charlie: --validation full catches an edit that keeps size and mtime ----------------------
rsync -aAX --exclude=/DfsrPrivate "$PA/" "$PC/" || die "rsync to charlie failed"
head -c 60 /dev/urandom | dd of="$PC/dir2/f2.dat" bs=1 seek=100 conv=notrunc status=none
touch -r "$PA/dir2/f2.dat" "$PC/dir2/f2.dat"
check "charlie imports with --validation basic" dfsr clone import -c "$CC" --folder share --validation basic "$WS/empty"
check_fails "an import into a path that has a database fails the second time" \
	dfsr clone import -c "$CC" --folder share --validation full "$WS/empty"
member_start $C
check "charlie (basic) kept the same-size edit: basic cannot see it" \
	bash -c "! cmp -s '$PA/dir2/f2.dat' '$PC/dir2/f2.dat'"
member_stop $C
rm -rf "$PC" && mkdir -p "$PC"
rsync -aAX --exclude=/DfsrPrivate "$PA/" "$PC/" || die "rsync to charlie failed"
head -c 60 /dev/urandom | dd of="$PC/dir2/f2.dat" bs=1 seek=100 conv=notrunc status=none
touch -r "$PA/dir2/f2.dat" "$PC/dir2/f2.dat"
out=$(dfsr clone import -c "$CC" --folder share --validation full "$WS/empty" 2>&1)
rc=$?
check_eq "clone import --validation full succeeds ($out)" 0 "$rc"
check "full reports the same-size edit" grep -q "^mismatched dir2/f2.dat" <<<"$out"
member_start $C
check_eq "charlie is normal at once" normal "$(folder_field "$CC" share state)"
check "dfsr wait: charlie in sync" members_wait 120
check "charlie has alpha's version of the edited file" cmp -s "$PA/dir2/f2.dat" "${G_MNT[C]}/dir2/f2.dat"
check "charlie's edit is in PreExisting" conflict_has $C preexisting dir2/f2.dat --preexisting

# ---- the clones are real members: changes travel every way -----------------------------------
echo "changed on bravo" >>"${G_MNT[B]}/dir1/f1.dat"
echo "new on alpha" >"${G_MNT[A]}/dir2/new.txt"
rm "${G_MNT[A]}/dir3/f3.dat"
check "dfsr wait: in sync after changes" members_wait 60
check "bravo's change reaches alpha" cmp -s "${G_MNT[B]}/dir1/f1.dat" "${G_MNT[A]}/dir1/f1.dat"
check_eq "alpha's new file reaches bravo" "new on alpha" "$(cat "${G_MNT[B]}/dir2/new.txt" 2>&1)"
check "alpha's delete reaches bravo" test ! -e "${G_MNT[B]}/dir3/f3.dat"
check "bravo's change reaches charlie" cmp -s "${G_MNT[B]}/dir1/f1.dat" "${G_MNT[C]}/dir1/f1.dat"
check_trees_equal "trees equal at the end"

member_stop $C
member_stop $B
check_fails "clone import while... bravo has a database: refused after a run too" \
	dfsr clone import -c "$CB" --folder share "$EXP"
member_stop $A
out=$(dfsr clone export -c "$CA" --folder share "$WS/later" 2>&1)
check "export with alpha stopped says it is not running ($out)" grep -q "not running" <<<"$out"
finish
