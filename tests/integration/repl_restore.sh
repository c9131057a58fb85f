#!/usr/bin/env bash
# repl_restore.sh - `dfsr restore` end to end on two members (docs/operations.md, "Getting
# files back"). Files and a directory deleted on alpha are kept in bravo's
# ConflictAndDeleted; restoring them on bravo copies them back through bravo's mount (so
# the restore replicates to alpha like any local change) and the member then removes the
# preserved object and its manifest entry (control request `unpreserve`, event 1304), and
# `dfsr status` counts the usage again. Also: by preserved name or by original path, a
# directory whole, a parent directory that no longer exists (recreated), `--to DIR --copy`
# (the entry stays), `--all`, a path that is taken (refused, nothing overwritten, the other
# entries go on, exit 1), bad entry names (client) and hostile `unpreserve` requests
# (member), and `--preexisting` for a file that lost the initial sync.
. "$(dirname "$0")/lib.sh"
it_init

group_setup 2
A=1 B=2
MA=${G_MNT[A]} MB=${G_MNT[B]} PB=${G_PATH[B]}
CB=${G_CONF[B]}
CAD=$PB/DfsrPrivate/ConflictAndDeleted

# restore_b ARGS... : `dfsr restore -c bravo.conf ARGS`, stdout+stderr in $WS/restore.out;
# the exit code is returned.
restore_b() {
	"$DFSR_BIN" restore -c "$CB" "$@" >"$WS/restore.out" 2>"$WS/restore.err"
}

# conflict_used I : the ConflictAndDeleted usage `dfsr status` shows for folder share.
conflict_used() {
	status_json "${G_CONF[$1]}" | json "[f for f in d['folders'] if f['name'] == 'share'][0]['conflict']['used']"
}

# ctl I REQUEST : one raw control request to member I; prints the reply.
ctl() {
	"$PY" - "$WS/${G_NAME[$1]}.sock" "$2" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode(errors="replace"))
EOF
}

# manifest_count I [--preexisting] : entries in member I's manifest.
manifest_count() { conflicts_lines "$1" "${@:2}" | wc -l; }

# contains STRING SUBSTRING... : STRING holds every SUBSTRING.
contains() {
	local s=$1
	shift
	for sub in "$@"; do [[ "$s" == *"$sub"* ]] || return 1; done
}

# cad_bytes : bytes of the regular files under bravo's ConflictAndDeleted (what status counts).
cad_bytes() { find "$CAD" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }

# ---- a file that differs on bravo before its first start ends in PreExisting ------------------
echo "alpha's pre" >"${G_PATH[A]}/pre.txt"
echo "bravo's pre" >"$PB/pre.txt"
group_start $A $B
check "bravo's differing pre.txt is in PreExisting" conflict_has $B preexisting pre.txt --preexisting

# ---- content on alpha, replicated, then deleted there: bravo keeps it -----------------------
echo "file one" >"$MA/one.txt"
chmod 0640 "$MA/one.txt"
mkdir -p "$MA/tree/sub" "$MA/gone/parent"
echo "deep" >"$MA/tree/sub/deep.txt"
echo "top" >"$MA/tree/top.txt"
ln -s top.txt "$MA/tree/link"
echo "nested" >"$MA/gone/parent/n.txt"
for f in two three four five taken; do echo "$f" >"$MA/$f.txt"; done
members_wait 60 || die "the files did not replicate"
check_eq "one.txt reached bravo" "file one" "$(cat "$MB/one.txt" 2>&1)"

rm "$MA/one.txt" "$MA/gone/parent/n.txt"
rm -r "$MA/tree"
for f in two three four five taken; do rm "$MA/$f.txt"; done
members_wait 60 || die "the deletes did not replicate"
rm -r "$MA/gone"
members_wait 60 || die "the delete of gone/ did not replicate"
for p in one.txt gone/parent/n.txt two.txt three.txt four.txt five.txt taken.txt \
	tree tree/sub tree/sub/deep.txt tree/top.txt tree/link gone gone/parent; do
	check "bravo keeps $p as deleted" conflict_has $B deleted "$p"
done

# ---- a directory preserved whole: bravo's new directory loses its name to alpha's older file
# (docs/conflicts.md §4) while the two are apart
member_stop $B
echo "alpha's nc" >"$MA/nc"
member_stop $A
member_start $B
mkdir -p "$MB/nc/sub"
echo "a" >"$MB/nc/a.txt"
echo "b" >"$MB/nc/sub/b.txt"
member_start $A
members_wait 90 || die "not in sync after the name conflict"
check_eq "the older file keeps the name nc on bravo" "alpha's nc" "$(cat "$MB/nc" 2>&1)"
check "bravo keeps its directory nc as name-conflict" conflict_has $B name-conflict nc
ncp=$(preserved_path $B name-conflict nc)
check_eq "the directory is kept whole" "b" "$(cat "$ncp/sub/b.txt" 2>&1)"

# ---- by original path: back in bravo's mount, replicated, the preserved copy gone ----------
p1=$(preserved_path $B deleted one.txt)
n1=${p1##*/}
left=$(($(cad_bytes) - 9))
check "dfsr restore one.txt" restore_b one.txt
check "it says what it restored" grep -q "restored share/one.txt from $n1" "$WS/restore.out"
check_eq "one.txt is back in bravo's mount" "file one" "$(cat "$MB/one.txt" 2>&1)"
check_eq "with its mode" "640" "$(stat -c %a "$MB/one.txt" 2>&1)"
check "the preserved copy is gone" test ! -e "$p1"
check "its manifest entry is gone" conflict_none $B one.txt
check "dfsr conflicts no longer lists it" bash -c "! '$DFSR_BIN' conflicts -c '$CB' | grep -qF '$n1'"
check_eq "dfsr status counts what is left in ConflictAndDeleted" "$left" "$(conflict_used $B)"
check "event 1304 on bravo" event_seen "$CB" 1304
check "dfsr wait: the restore replicates" members_wait 60
check_eq "one.txt is back on alpha" "file one" "$(cat "$MA/one.txt" 2>&1)"
check "alpha preserved nothing for it" conflict_none $A one.txt

# ---- a parent directory that is gone is made again ------------------------------------------
check "dfsr restore gone/parent/n.txt (gone/ no longer exists)" restore_b gone/parent/n.txt
check_eq "n.txt is back under a new gone/parent" "nested" "$(cat "$MB/gone/parent/n.txt" 2>&1)"
check "dfsr wait: replicated" members_wait 60
check_eq "and on alpha" "nested" "$(cat "$MA/gone/parent/n.txt" 2>&1)"
check "its entry is gone" conflict_none $B gone/parent/n.txt

# ---- --to DIR --copy: a copy elsewhere, the entry and the preserved object stay --------------
p2=$(preserved_path $B deleted two.txt)
check "dfsr restore --to DIR --copy two.txt" restore_b --to "$WS/out" --copy two.txt
check_eq "two.txt is in DIR" "two" "$(cat "$WS/out/two.txt" 2>&1)"
check "not in the mount" test ! -e "$MB/two.txt"
check "the entry stays" conflict_has $B deleted two.txt
check "the preserved object stays" test -f "$p2"

# ---- a taken path: refused, nothing overwritten, the other entries go on, exit 1 -------------
echo "new taken" >"$MB/taken.txt"
members_wait 60 || die "taken.txt did not replicate"
restore_b taken.txt three.txt
check_eq "restore onto a taken path exits 1" 1 "$?"
check "it says the path exists and was not overwritten" \
	grep -q "share/taken.txt exists; not overwritten" "$WS/restore.err"
check_eq "the error is one line" 1 "$(wc -l <"$WS/restore.err")"
check_eq "taken.txt is not overwritten" "new taken" "$(cat "$MB/taken.txt" 2>&1)"
check "taken.txt's entry stays" conflict_has $B deleted taken.txt
check_eq "the other entry was restored" "three" "$(cat "$MB/three.txt" 2>&1)"
check "and its entry is gone" conflict_none $B three.txt

# ---- the directory kept whole: refused while the file holds the name, then restored ----------
check_fails "restore of nc while the file nc holds the name" restore_b "${ncp##*/}"
check_eq "the file nc is untouched" "alpha's nc" "$(cat "$MB/nc" 2>&1)"
mv "$MB/nc" "$MB/nc.file"
check "dfsr restore of the directory by its preserved name" restore_b "${ncp##*/}"
check_eq "nc/a.txt is back" "a" "$(cat "$MB/nc/a.txt" 2>&1)"
check_eq "nc/sub/b.txt is back" "b" "$(cat "$MB/nc/sub/b.txt" 2>&1)"
check "the preserved directory is gone" test ! -e "$ncp"
check "its entry is gone" conflict_none $B nc
check "dfsr wait: the directory replicates" members_wait 60
check_eq "nc/sub/b.txt on alpha" "b" "$(cat "$MA/nc/sub/b.txt" 2>&1)"

# ---- bad entry names: a clear one-line error, exit 1, nothing changes -------------------------
n=$(manifest_count $B)
for bad in nosuch.txt ../../etc/passwd /etc/passwd ''; do
	restore_b "$bad"
	check_eq "restore '$bad' exits 1" 1 "$?"
	check "restore '$bad' says why in one line" bash -c \
		"[ \$(wc -l <'$WS/restore.err') = 1 ] && grep -q '^dfsr: restore: ' '$WS/restore.err'"
done
restore_b nosuch.txt
check "restore nosuch.txt names it" grep -q "no entry 'nosuch.txt' in the ConflictAndDeleted manifest" \
	"$WS/restore.err"
check_fails "--all with entries" restore_b --all four.txt
# the member refuses hostile unpreserve requests itself
p5=$(preserved_path $B deleted five.txt)
n5=${p5##*/}
for req in "name=..%2F..%2Fetc" "name=%2Fetc%2Fpasswd" "name=.." "name=." "name=" "name=%2F" \
	"name=$n5%2F.." "name=..%2F$n5"; do
	r=$(ctl $B "unpreserve folder=share kind=conflict $req")
	check "unpreserve $req is refused as not a preserved name: $r" \
		contains "$r" "error '" "is not a preserved name"
done
r=$(ctl $B "unpreserve folder=share kind=conflict name=nosuch.txt")
check "a name not in the manifest is refused as such: $r" \
	contains "$r" "error no 'nosuch.txt' in the ConflictAndDeleted manifest of folder share"
r=$(ctl $B "unpreserve folder=share kind=preexisting name=$n5")
check "a ConflictAndDeleted name is not in PreExisting: $r" contains "$r" "error no '"
for req in "folder=share kind=other name=$n5" "folder=nosuch kind=conflict name=$n5" \
	"kind=conflict name=$n5" "folder=share name=$n5" "folder=share kind=conflict" \
	"folder=share kind=conflict name=%zz"; do
	r=$(ctl $B "unpreserve $req")
	check "unpreserve $req is refused: $r" contains "$r" "error "
done
check_eq "the manifest did not change" "$n" "$(manifest_count $B)"
check "five.txt is still kept" test -f "$p5"

# ---- --all: newest first, so directories come back before the files deleted from them; the
# entries whose paths are taken (taken.txt; gone and gone/parent, made again above) are refused
restore_b --all
check_eq "restore --all with taken paths exits 1" 1 "$?"
check_eq "three refusals" 3 "$(grep -c 'exists; not overwritten' "$WS/restore.err")"
check_eq "tree/sub/deep.txt is back" "deep" "$(cat "$MB/tree/sub/deep.txt" 2>&1)"
check_eq "tree/top.txt is back" "top" "$(cat "$MB/tree/top.txt" 2>&1)"
check_eq "tree/link is back" "top.txt" "$(readlink "$MB/tree/link" 2>&1)"
for f in two four five; do
	check_eq "$f.txt is back" "$f" "$(cat "$MB/$f.txt" 2>&1)"
done
check_eq "taken.txt is still not overwritten" "new taken" "$(cat "$MB/taken.txt" 2>&1)"
check_eq "what is left: the refused entries" "gone gone/parent taken.txt" \
	"$(conflicts_lines $B | awk '{print $2}' | sort | tr '\n' ' ' | sed 's/ $//')"
# make room and try again: everything goes back, nothing is left
rm "$MB/taken.txt"
rm -r "$MB/gone"
members_wait 60 || die "the removals on bravo did not replicate"
check "restore --all once the paths are free" restore_b --all
check_eq "the manifest is empty" 0 "$(manifest_count $B)"
check_eq "ConflictAndDeleted is empty" "" "$(ls -A "$CAD" 2>&1)"
check_eq "dfsr status counts 0 bytes in ConflictAndDeleted" 0 "$(conflict_used $B)"
check "restore --all of an empty manifest says so" restore_b --all
check "... in words" grep -q "nothing to restore" "$WS/restore.out"

# ---- PreExisting ------------------------------------------------------------------------------
restore_b --preexisting pre.txt
check_eq "restore --preexisting onto the primary's pre.txt exits 1" 1 "$?"
check_eq "the primary's pre.txt is not overwritten" "alpha's pre" "$(cat "$MB/pre.txt" 2>&1)"
rm "$MB/pre.txt"
members_wait 60 || die "the removal of pre.txt did not replicate"
check "dfsr restore --preexisting pre.txt" restore_b --preexisting pre.txt
check_eq "bravo's pre.txt is back" "bravo's pre" "$(cat "$MB/pre.txt" 2>&1)"
check_eq "the PreExisting manifest is empty" 0 "$(manifest_count $B --preexisting)"
check_eq "PreExisting is empty" "" "$(ls -A "$PB/DfsrPrivate/PreExisting" 2>&1)"
check "dfsr wait: replicated" members_wait 60
check_eq "bravo's pre.txt reached alpha" "bravo's pre" "$(cat "$MA/pre.txt" 2>&1)"

check_trees_equal "trees equal at the end" $A $B
member_stop $B
member_stop $A
finish
