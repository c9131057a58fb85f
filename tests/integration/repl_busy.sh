#!/usr/bin/env bash
# repl_busy.sh - a file open for writing is not replaced under its writer (docs/conflicts.md
# §8): bravo holds f.txt open for writing while alpha changes it; bravo logs 4302 (sharing
# violation) for it, keeps its own content while the file is open, and `dfsr wait` on
# bravo says the update is pending. Once closed, the update lands and the members are in
# sync; alpha, the upstream, logs no 4302 and answered no Get busy. Then the same with
# data written while open: bravo's change, made later, wins by
# §3 everywhere and alpha keeps its own as a conflict.
# A delete of a directory above a file open for writing waits for the close too, and so
# does a delete that arrives after the close but before the close is journaled. No write
# reaches a file that a partner's delete or a conflict moved to ConflictAndDeleted, or that
# a partner's update replaced, through a descriptor that was open before (reopened through
# /proc/self/fd), nor through one of a file inside a directory preserved whole; and what is
# made in a directory that took another record's identity (§4 merge) replicates, and a §4
# merge that removes a directory waits for a file being created in it.
# Also `dfsr wait` is exact: a file written into alpha's mount is on bravo's local path as
# soon as `dfsr wait` returns on alpha, with no polling in between, 30 times in a row.
. "$(dirname "$0")/lib.sh"
it_init

# event_about CONF ID WORD : an event with that id whose message mentions WORD.
event_about() {
	"$DFSR_BIN" events -c "$1" --json | "$PY" -c '
import json, sys
sys.exit(not any(e["id"] == int(sys.argv[1]) and sys.argv[2] in e["message"]
                 for e in json.load(sys.stdin)))' "$2" "$3"
}

group_setup 2
A=1 B=2
MA=${G_MNT[A]} MB=${G_MNT[B]} PB=${G_PATH[B]}

group_start $A $B

# ---- `dfsr wait` returns only once the change is on the partner ------------------------------
late=0
for i in $(seq 1 30); do
	echo "round $i" >"$MA/w$i.txt"
	"$DFSR_BIN" wait -c "${G_CONF[A]}" --timeout 60 >/dev/null 2>&1 || die "wait on alpha failed"
	"$DFSR_BIN" wait -c "${G_CONF[B]}" --timeout 60 >/dev/null 2>&1 || die "wait on bravo failed"
	[ "$(cat "$PB/w$i.txt" 2>/dev/null)" = "round $i" ] || late=$((late + 1))
done
check_eq "after dfsr wait on alpha, then bravo, the file is on bravo (30 rounds)" 0 "$late"

# ---- open for writing on bravo, nothing written: alpha's version lands after the close -----
echo "version 1" >"$MA/f.txt"
members_wait 60 || die "f.txt did not replicate"
check_eq "f.txt replicated" "version 1" "$(cat "$MB/f.txt" 2>&1)"

exec 7>>"$MB/f.txt"
echo "version 2" >"$MA/f.txt"
check "bravo logs 4302 for the file open for writing" \
	wait_until 90 event_about "${G_CONF[B]}" 4302 f.txt
check_eq "bravo's f.txt is unchanged while open" "version 1" "$(cat "$PB/f.txt" 2>&1)"
check_fails "dfsr wait on bravo: the update is pending while the file is open" \
	"$DFSR_BIN" wait -c "${G_CONF[B]}" --timeout 2
n4302=$(count_event "${G_CONF[B]}" 4302)
exec 7>&-
check "dfsr wait: in sync once the file is closed" members_wait 60
check_eq "bravo has alpha's version" "version 2" "$(cat "$MB/f.txt" 2>&1)"
check_eq "in bravo's local path too" "version 2" "$(cat "$PB/f.txt" 2>&1)"
check_eq "4302 was not logged again after the close" "$n4302" "$(count_event "${G_CONF[B]}" 4302)"
check_eq "alpha logged no 4302: the open file was bravo's" 0 "$(count_event "${G_CONF[A]}" 4302)"
check_eq "alpha served every Get of bravo's (busy_serves)" 0 "$(peer_field $A bravo busy_serves)"
check "no conflict: nothing was written while open" conflict_none $A f.txt
check_trees_equal "trees equal after the busy file" $A $B

# ---- written while open: the later change (bravo's, made at the close) wins by §3 ----------
echo "g base" >"$MA/g.txt"
members_wait 60 || die "g.txt did not replicate"
exec 7>>"$MB/g.txt"
echo "g from alpha" >"$MA/g.txt"
check "4302 for g.txt" wait_until 90 event_about "${G_CONF[B]}" 4302 g.txt
echo "appended on bravo" >&7
exec 7>&-
check "dfsr wait: in sync after the close" members_wait 60
check_eq "bravo's later change wins on bravo" "$(printf 'g base\nappended on bravo')" \
	"$(cat "$MB/g.txt" 2>&1)"
check_eq "and on alpha" "$(printf 'g base\nappended on bravo')" "$(cat "$MA/g.txt" 2>&1)"
check "alpha keeps its losing version as a conflict" conflict_has $A conflict g.txt
check_trees_equal "trees equal after the conflict" $A $B

# ---- a delete of the directory above a file open for writing waits too ----------------------
mkdir -p "$MA/d/e"
echo "d base" >"$MA/d/e/h.txt"
members_wait 60 || die "d/e/h.txt did not replicate"
exec 7>>"$MB/d/e/h.txt"
rm -rf "$MA/d"
dir_wait_logged() { event_about "${G_CONF[B]}" 4302 'name="e"' || event_about "${G_CONF[B]}" 4302 'name="d"'; }
check "bravo logs 4302 for the directory's delete" wait_until 90 dir_wait_logged
check "bravo's d/e/h.txt stays while open" test -f "$PB/d/e/h.txt"
echo "written while alpha deleted d" >&7
exec 7>&-
check "dfsr wait: in sync after the close" members_wait 60
check_eq "the writer's change brought d back on alpha" \
	"$(printf 'd base\nwritten while alpha deleted d')" "$(cat "$MA/d/e/h.txt" 2>&1)"
check_trees_equal "trees equal after the directory delete" $A $B

# ---- closed, but not journaled yet: a delete from a partner still waits ----------------------
# Journaling a large file's close hashes it first; a delete arriving meanwhile must not take
# the file (its record still names the old version): bravo's change wins by §5.
echo "k base" >"$MA/k.bin"
members_wait 60 || die "k.bin did not replicate"
head -c 60000000 /dev/urandom >"$WS/k.big"
cat "$WS/k.big" >"$MB/k.bin"
rm "$MA/k.bin"
check "dfsr wait: in sync after the write and the delete" members_wait 90
check "bravo's write wins over the delete, on alpha" cmp "$WS/k.big" "$MA/k.bin"
check "and on bravo" cmp "$WS/k.big" "$MB/k.bin"
# The same with an update from alpha instead of a delete: installed in that window, it
# replaced bravo's new data, which was then nowhere at all. The two versions are concurrent
# and the later change wins (§3); which one is later depends on how long bravo takes to
# hash 60 MB after the close, so either may win. Whichever it is, each member keeps what it
# held: its own write is its k.bin or one of its preserved files (a loser that arrives
# from a partner is not downloaded, so only the member that held it keeps it).
head -c 60000000 /dev/urandom >"$WS/k.big"
echo "k from alpha" >"$WS/k.small"
cat "$WS/k.big" >"$MB/k.bin"
echo "k from alpha" >"$MA/k.bin"
check "dfsr wait: in sync after the two writes" members_wait 90
# kept_on I FILE : FILE's content is member I's k.bin or one of its preserved files.
kept_on() {
	local p
	cmp -s "$2" "${G_PATH[$1]}/k.bin" && return 0
	for p in "${G_PATH[$1]}"/DfsrPrivate/ConflictAndDeleted/*; do
		cmp -s "$2" "$p" && return 0
	done
	return 1
}
check "bravo's write is kept on bravo" kept_on $B "$WS/k.big"
check "alpha's write is kept on alpha" kept_on $A "$WS/k.small"
if cmp -s "$WS/k.big" "$MA/k.bin"; then won=bravo; else won=alpha; fi
say "the later change of k.bin was ${won}'s (trees equal is checked at the end)"
rm -f "$WS/k.big" "$WS/k.small"

# ---- a reader's descriptor of a file a partner deleted: no write through it -----------------
# bravo moves m.txt to ConflictAndDeleted (the reader does not hold a delete); reopened for
# writing through /proc/self/fd (as through a dentry the kernel still held), the write
# would change the preserved version and never replicate: the open is refused (ESTALE).
echo "m as deleted" >"$MA/m.txt"
members_wait 60 || die "m.txt did not replicate"
exec 9<"$MB/m.txt"
rm "$MA/m.txt"
members_wait 60 || die "the delete of m.txt did not replicate"
pres=$(preserved_path $B deleted m.txt)
check "bravo preserved m.txt" test -f "$pres"
check_fails "bravo: no write through the reader's descriptor" \
	sh -c "echo 'written after the delete' >>/proc/self/fd/9" 9<&9
exec 9<&-
check_eq "the preserved m.txt holds what was deleted" "m as deleted" "$(cat "$pres" 2>&1)"

# ---- a reader's descriptor of a file a partner's update replaced: no write through it --------
# The update is renamed over r.txt: the old file has no name left, and a write through a
# dentry the kernel still held for it (or this descriptor) went where nothing replicates or
# keeps it. The open is refused (ESTALE; for a path, the kernel then finds the update).
echo "r v1" >"$MA/r.txt"
members_wait 60 || die "r.txt did not replicate"
exec 9<"$MB/r.txt"
echo "r v2" >"$MA/r.txt"
members_wait 60 || die "r.txt's update did not replicate"
check_eq "bravo has the update" "r v2" "$(cat "$MB/r.txt" 2>&1)"
check_fails "bravo: no write through the replaced file's descriptor" \
	sh -c "echo 'written into the replaced file' >>/proc/self/fd/9" 9<&9
exec 9<&-
echo "r v3 from bravo" >>"$MB/r.txt"
check "dfsr wait: in sync after a write by name" members_wait 60
check_eq "the write by name reached alpha" "$(printf 'r v2\nr v3 from bravo')" "$(cat "$MA/r.txt" 2>&1)"

# ---- the same for a conflict loser's old node -------------------------------------------------
# bravo changes c.txt while alpha is stopped, and alpha's change, made in its local path
# meanwhile, is later (its scan journals it at the start): bravo's version loses (§3) and is
# moved to ConflictAndDeleted, while c.txt's record stays live (alpha's). A write through a
# reader's descriptor of the loser changed the preserved file, and its close journaled the
# loser's data as a new version of c.txt: bravo served a version its c.txt did not hold,
# and alpha never got in sync. The open is refused (ESTALE).
echo "c base" >"$MA/c.txt"
members_wait 60 || die "c.txt did not replicate"
member_stop $A
echo "c from bravo" >"$MB/c.txt"
exec 9<"$MB/c.txt"
echo "c from alpha" >"${G_PATH[A]}/c.txt"
member_start $A
check "dfsr wait: in sync after the conflict" members_wait 60
pres=$(preserved_path $B conflict c.txt)
check_eq "bravo's version lost and is preserved" "c from bravo" "$(cat "$pres" 2>&1)"
check_fails "bravo: no write through the loser's descriptor" \
	sh -c "echo 'written into the loser' >>/proc/self/fd/9" 9<&9
check_fails "nor a truncate by name" "$PY" -c "import os; os.truncate('/proc/self/fd/9', 0)"
exec 9<&-
check_eq "the preserved c.txt holds bravo's version" "c from bravo" "$(cat "$pres" 2>&1)"
check "dfsr wait: still in sync" members_wait 60
check_eq "c.txt is alpha's on alpha" "c from alpha" "$(cat "$MA/c.txt" 2>&1)"
check_eq "and on bravo" "c from alpha" "$(cat "$MB/c.txt" 2>&1)"

# ---- a file inside a directory preserved whole: no write, no truncate through its old node --
# bravo's directory z loses its name to alpha's file z, made first (§4), and goes to
# ConflictAndDeleted whole, z/q.txt with it. q.txt's record is buried (a write is refused
# for that), but its node was not marked preserved, so a truncate by name through it
# (here /proc/self/fd) emptied the preserved copy.
member_stop $B
echo "z, alpha's file" >"$MA/z"
member_stop $A
member_start $B
mkdir "$MB/z"
echo "q in bravo's directory" >"$MB/z/q.txt"
exec 9<"$MB/z/q.txt"
member_start $A
check "dfsr wait: in sync after the name conflict" members_wait 60
check_eq "alpha's file z won on bravo" "z, alpha's file" "$(cat "$MB/z" 2>&1)"
pres=$(preserved_path $B name-conflict z)
check "bravo preserved its directory z whole" test -f "$pres/q.txt"
check_fails "bravo: no write into z/q.txt through the reader's descriptor" \
	sh -c "echo 'written into the preserved directory' >>/proc/self/fd/9" 9<&9
check_fails "nor a truncate by name" "$PY" -c "import os; os.truncate('/proc/self/fd/9', 0)"
exec 9<&-
check_eq "the preserved z/q.txt is whole" "q in bravo's directory" "$(cat "$pres/q.txt" 2>&1)"

# ---- a directory that took another record's identity: what is made in it replicates --------
# alpha's directory y, made first, and bravo's y meet (§4): bravo's stays on disk and becomes
# alpha's (adopted, its own record buried). The node the kernel held for it (here through a
# descriptor) kept the buried UID, so a file made in y through bravo's mount was never
# journaled: it stayed on bravo alone.
member_stop $B
mkdir "$MA/y"
echo "y/a from alpha" >"$MA/y/a.txt"
member_stop $A
member_start $B
mkdir "$MB/y"
echo "y/b from bravo" >"$MB/y/b.txt"
exec 8<"$MB/y"
member_start $A
check "dfsr wait: in sync after the directories met" members_wait 60
check_eq "bravo's y holds alpha's file" "y/a from alpha" "$(cat "$MB/y/a.txt" 2>&1)"
check_eq "alpha's y holds bravo's file" "y/b from bravo" "$(cat "$MA/y/b.txt" 2>&1)"
echo "y/c made on bravo after the merge" >"$MB/y/c.txt"
echo "y/b changed on bravo after the merge" >/proc/self/fd/8/b.txt
exec 8<&-
check "dfsr wait: in sync after the new file" members_wait 60
check_eq "the file made in bravo's y reached alpha" "y/c made on bravo after the merge" \
	"$(cat "$MA/y/c.txt" 2>&1)"
check_eq "and the change through the held directory" "y/b changed on bravo after the merge" \
	"$(cat "$MA/y/b.txt" 2>&1)"

# ---- a file being created in a directory that a partner's rename merges away (§4, §8) ---------
# alpha renames X onto the name Y while bravo makes its own Y, later: alpha's X wins the name
# and bravo's Y takes X's identity (merged), X's entries move into it and bravo's X goes. A
# file being created in bravo's X (its creating handle still open, no record yet) had no
# record to move: it stayed behind in X, which no record names any more, and its close
# journaled it under X's record, i.e. in Y, where bravo had no such file. The trees never
# converged (dfsr wait said in sync). The merge waits for the close like a delete (4302).
mkdir "$MA/X"
echo "X/keep" >"$MA/X/keep"
members_wait 60 || die "X did not replicate"
member_stop $B
mv "$MA/X" "$MA/Y"
member_stop $A
member_start $B
mkdir "$MB/Y"
echo "Y/own from bravo" >"$MB/Y/own"
exec 6>"$MB/X/p.txt"
echo "p part 1" >&6
member_start $A
check "bravo logs 4302 for the merge" wait_until 90 event_about "${G_CONF[B]}" 4302 'name="X"'
echo "p part 2" >&6
exec 6>&-
check "dfsr wait: in sync after the close" members_wait 60
for i in $A $B; do
	check_eq "${G_NAME[i]}: the file made while the merge waited is in Y" \
		"$(printf 'p part 1\np part 2')" "$(cat "${G_MNT[i]}/Y/p.txt" 2>&1)"
	check_eq "${G_NAME[i]}: bravo's own Y/own is there" "Y/own from bravo" \
		"$(cat "${G_MNT[i]}/Y/own" 2>&1)"
	check "${G_NAME[i]}: X is gone" test ! -e "${G_MNT[i]}/X"
done
check_trees_equal "trees equal at the end" $A $B
finish
