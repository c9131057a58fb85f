#!/usr/bin/env bash
# repl_freshness.sh - tombstones and content freshness (docs/conflicts.md §12), end to end,
# with the members' wall clocks moved forward by libfaketime (tombstone_days = 1).
#
# alpha (primary), bravo and charlie sync; bravo stops. alpha deletes two files and a directory
# (charlie keeps the tombstones) and changes a file. While bravo is stopped its local path gets
# two changes: one to a file the group keeps, one to y.txt, which the group deleted. alpha and
# charlie then run 14 h ahead (they sync: their last completed sync moves on; the tombstones
# are kept; alpha deletes w.txt) and 28 h ahead (the first tombstones are past their 24 h and
# purged, nothing journaled; w.txt's is kept; the members are not stale). bravo starts 28 h
# ahead: its last sync is older than the lifetime, so it logs 4012 and syncs again as a stale
# member. What the group forgot does not come back to alpha or charlie (y.txt, a version they
# never saw, would without §12): on bravo it ends in DfsrPrivate/PreExisting with `preexisting`
# manifest entries (4104 counts them), so nothing is lost. The group's change reaches bravo,
# bravo's change to the kept file reaches the group, w.txt's delete (a tombstone the group
# still has) reaches bravo as any delete does, and every tree ends equal.
# Three members, not two: without charlie alpha's last completed sync would be as old as
# bravo's, and it would turn stale too. That case closes the test: the whole group away longer
# than the lifetime turns every member stale, none is `normal` to sync from, and raising
# tombstone_days (event 1207) is the administrator's way out.
. "$(dirname "$0")/lib.sh"
it_init

# libfaketime, preloaded directly: the `faketime` wrapper waits until every process that
# inherited its pipe exits, and the detached daemon does. The monotonic clock (libuv's
# timers) and file timestamps (stat) are left alone; ASan accepts a library before it.
FT_LIB=""
for f in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
	[ -e "$f" ] && FT_LIB=$f && break
done
[ -n "$FT_LIB" ] || skip_or_fail "libfaketime is missing (Debian package faketime)"

# clock_wrap OFFSET : the G_WRAP prefix that runs a member's daemon OFFSET ahead (+14h).
clock_wrap() {
	echo "env LD_PRELOAD=$FT_LIB FAKETIME=$1 FAKETIME_DONT_FAKE_MONOTONIC=1 NO_FAKE_STAT=1" \
		"ASAN_OPTIONS=$ASAN_OPTIONS:verify_asan_link_order=0"
}

group_setup 3 "tombstone_days = 1"
A=1 B=2 C=3
MA=${G_MNT[A]} MB=${G_MNT[B]} MC=${G_MNT[C]} PB=${G_PATH[B]}

# tombstones I : member I's tombstone count (folder share).
tombstones() { folder_field "${G_CONF[$1]}" share tombstones; }

# event_messages I ID : the messages of member I's events with that id, one per line.
event_messages() {
	"$DFSR_BIN" events -c "${G_CONF[$1]}" --json | "$PY" -c '
import json, sys
for e in json.load(sys.stdin):
    if e["id"] == int(sys.argv[1]):
        print(e["message"])' "$2"
}

# ahead_of_real I : by how many hours (rounded) member I's last start (event 9001) is ahead.
ahead_of_real() {
	"$DFSR_BIN" events -c "${G_CONF[$1]}" --json | "$PY" -c '
import datetime, json, sys, time
t = [e["time"] for e in json.load(sys.stdin) if e["id"] == 9001][-1]
d = datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
print(round((d.timestamp() - time.time()) / 3600))'
}

# start_at OFFSET I... : start members I... with their clocks OFFSET ahead.
start_at() {
	local off=$1 i
	shift
	for i in "$@"; do
		G_WRAP[i]=$(clock_wrap "$off")
		member_start "$i"
	done
}

# ---- the group in sync at the real time --------------------------------------------------------
echo "kept by everyone" >"${G_PATH[A]}/keep.txt"
echo "deleted while bravo is away" >"${G_PATH[A]}/x.txt"
echo "deleted by the group, changed by bravo offline" >"${G_PATH[A]}/y.txt"
mkdir -p "${G_PATH[A]}/gone" "${G_PATH[A]}/stays"
echo "deleted with its directory" >"${G_PATH[A]}/gone/z.txt"
echo "in a directory that stays" >"${G_PATH[A]}/stays/s.txt"
echo "version 1" >"${G_PATH[A]}/group-edit.txt"
echo "version 1" >"${G_PATH[A]}/bravo-edit.txt"
echo "deleted 14 h later" >"${G_PATH[A]}/w.txt"
group_start $A $B $C
check_trees_equal "trees equal at the start"
ls_b=$(folder_field "${G_CONF[B]}" share last_sync)
check "bravo's status shows its last sync ($ls_b)" \
	grep -Eq '^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' <<<"$ls_b"
check_eq "and that it is not stale" false "$(folder_field "${G_CONF[B]}" share stale)"
cp "$PB/x.txt" "$WS/x.orig"
cp "$PB/gone/z.txt" "$WS/z.orig"
cp "$PB/w.txt" "$WS/w.orig"

# ---- bravo goes away; the group deletes and changes ----------------------------------------------
member_stop $B
rm "$MA/x.txt" "$MA/y.txt"
rm -r "$MA/gone"
echo "version 2 (the group's)" >"$MA/group-edit.txt"
members_wait 60 $A $C || die "alpha and charlie not in sync after the deletes"
check "charlie applied the deletes" test ! -e "$MC/x.txt" -a ! -e "$MC/y.txt" -a ! -e "$MC/gone"
check_eq "alpha keeps the tombstones of x.txt, y.txt, gone/ and gone/z.txt" 4 "$(tombstones $A)"
check_eq "charlie too" 4 "$(tombstones $C)"
# changes behind bravo's mount while it is stopped: the scan at its start records them as
# new versions of bravo's. y.txt's would be news to the group, which forgot y.txt: without
# §12 it would come back to alpha and charlie.
echo "version 2 (bravo's, made offline)" >"$PB/bravo-edit.txt"
echo "changed by bravo offline" >"$PB/y.txt"
cp "$PB/y.txt" "$WS/y.bravo"
# ... and a file made while away: the group never saw it, so it is nothing the group deleted
echo "made by bravo offline" >"$PB/bravo-new.txt"
member_stop $A
member_stop $C

# ---- 14 h later: alpha and charlie sync; the tombstones are younger than the lifetime ---------
start_at +14h $A $C
check_eq "alpha's daemon runs 14 h ahead (libfaketime works)" 14 "$(ahead_of_real $A)"
members_wait 60 $A $C || die "alpha and charlie (+14h) not in sync"
for i in $A $C; do
	check "${G_NAME[i]} (+14h) is normal" all_normal "${G_CONF[i]}"
	check_eq "${G_NAME[i]} (+14h) keeps the tombstones" 4 "$(tombstones "$i")"
	check_eq "${G_NAME[i]} (+14h) is not stale (no 4012)" 0 "$(count_event "${G_CONF[i]}" 4012)"
done
# a delete 14 h ahead: its tombstone is only 14 h old when the others are purged
rm "$MA/w.txt"
members_wait 60 $A $C || die "alpha and charlie (+14h) not in sync after deleting w.txt"
check "charlie applied the delete of w.txt" test ! -e "$MC/w.txt"
check_eq "alpha (+14h) now holds 5 tombstones" 5 "$(tombstones $A)"
seq_a=$(journal_next "${G_CONF[A]}")
member_stop $A
member_stop $C

# ---- 28 h later: the first tombstones are past 24 h and purged, w.txt's (14 h) is kept; -------
# ---- alpha and charlie synced 14 h ago, so they are not stale ----------------------------------
start_at +28h $A $C
members_wait 60 $A $C || die "alpha and charlie (+28h) not in sync"
for i in $A $C; do
	check "${G_NAME[i]} (+28h) is normal" all_normal "${G_CONF[i]}"
	check_eq "${G_NAME[i]} (+28h) purged the 4 old tombstones, kept w.txt's" 1 "$(tombstones "$i")"
	check_eq "${G_NAME[i]} (+28h) is not stale (no 4012)" 0 "$(count_event "${G_CONF[i]}" 4012)"
done
check_eq "nothing was journaled for the purge" "$seq_a" "$(journal_next "${G_CONF[A]}")"

# ---- bravo comes back 28 h later: stale ----------------------------------------------------------
start_at +28h $B
check "bravo logs 4012 (content too old)" event_seen "${G_CONF[B]}" 4012
msg=$(event_messages $B 4012)
check "4012 names the lifetime: $msg" grep -q 'tombstone_days=1' <<<"$msg"
members_wait 90 || die "bravo's stale initial sync never ended"
check "bravo is normal after its stale initial sync" all_normal "${G_CONF[B]}"
msg=$(event_messages $B 4104 | tail -n 1)
say "bravo: 4104 $msg"
check "bravo's last 4104 says what it moved to PreExisting: $msg" \
	bash -c "[[ '$msg' == *'content was too old'*': 4' ]]"

# what the group forgot stays forgotten
for i in $A $B $C; do
	check "x.txt did not come back on ${G_NAME[i]}" test ! -e "${G_MNT[i]}/x.txt"
	check "y.txt did not come back on ${G_NAME[i]}" test ! -e "${G_MNT[i]}/y.txt"
	check "gone/ did not come back on ${G_NAME[i]}" test ! -e "${G_MNT[i]}/gone"
	check "w.txt did not come back on ${G_NAME[i]}" test ! -e "${G_MNT[i]}/w.txt"
done
for i in $A $C; do
	check_eq "${G_NAME[i]} holds w.txt's tombstone, no other" 1 "$(tombstones "$i")"
	check_eq "${G_NAME[i]} made no preexisting entry" "" "$(conflicts_lines "$i" --preexisting)"
done

# ... and nothing is lost: bravo keeps it in PreExisting
check "bravo lists x.txt as preexisting" conflict_has $B preexisting x.txt --preexisting
check "bravo lists gone/z.txt as preexisting" conflict_has $B preexisting gone/z.txt --preexisting
p=$(preserved_path $B preexisting x.txt --preexisting)
check "x.txt is kept as x.txt-{UID}-v<counter> (${p##*/})" preserved_name_ok "${p##*/}" x.txt
check "with its content" cmp -s "$WS/x.orig" "$p"
p=$(preserved_path $B preexisting y.txt --preexisting)
check "bravo keeps its offline version of y.txt in PreExisting" cmp -s "$WS/y.bravo" "$p"
p=$(preserved_path $B preexisting gone/z.txt --preexisting)
check "gone/z.txt is kept as z.txt-{UID}-v<counter> (${p##*/})" preserved_name_ok "${p##*/}" z.txt
check "with its content" cmp -s "$WS/z.orig" "$p"
check "PreExistingManifest.xml names it" \
	grep -q "${p##*/}" "$PB/DfsrPrivate/PreExistingManifest.xml"
check_eq "nothing else went to PreExisting" 3 "$(conflicts_lines $B --preexisting | wc -l)"
# w.txt's delete is one the group still has: bravo applies it as any delete from a partner
check "bravo keeps w.txt as deleted (ConflictAndDeleted), not preexisting" \
	conflict_has $B deleted w.txt
p=$(preserved_path $B deleted w.txt)
check "with its content" cmp -s "$WS/w.orig" "$p"
check_eq "bravo holds its tombstone too" 1 "$(tombstones $B)"

# what both still have stays, and changes travel by the usual rules
for i in $A $B $C; do
	check_eq "keep.txt stays on ${G_NAME[i]}" "kept by everyone" "$(cat "${G_MNT[i]}/keep.txt" 2>&1)"
	check_eq "stays/s.txt stays on ${G_NAME[i]}" "in a directory that stays" \
		"$(cat "${G_MNT[i]}/stays/s.txt" 2>&1)"
	check_eq "the group's change is on ${G_NAME[i]}" "version 2 (the group's)" \
		"$(cat "${G_MNT[i]}/group-edit.txt" 2>&1)"
	check_eq "bravo's offline change is on ${G_NAME[i]}" "version 2 (bravo's, made offline)" \
		"$(cat "${G_MNT[i]}/bravo-edit.txt" 2>&1)"
	check_eq "bravo's file made offline is on ${G_NAME[i]}" "made by bravo offline" \
		"$(cat "${G_MNT[i]}/bravo-new.txt" 2>&1)"
done
check_trees_equal "trees equal at the end"
check_eq "the trees hold exactly the files that stay" \
	"bravo-edit.txt bravo-new.txt group-edit.txt keep.txt stays/ stays/s.txt" \
	"$(tree_hashes "${G_PATH[A]}" | awk '{ print $2 }' | tr '\n' ' ' | sed 's/ $//')"

# a change after the stale sync replicates as usual, both ways
echo "after" >"$MB/after-b.txt"
echo "after" >"$MA/after-a.txt"
check "dfsr wait: in sync after new changes" members_wait 60
check "bravo's new file reaches alpha" test -f "$MA/after-b.txt"
check "alpha's new file reaches bravo" test -f "$MB/after-a.txt"
check_trees_equal "trees equal after new changes"

# ---- the whole group away longer than the lifetime: every member is stale --------------------
# ---- and none is `normal` to sync from; raising the lifetime is the way out ---------------------
member_stop $B
member_stop $C
member_stop $A
start_at +60h $A $B $C
for i in $A $B $C; do
	check "${G_NAME[i]} (+60h, 32 h after the last sync) logs 4012" event_seen "${G_CONF[i]}" 4012
	check_eq "${G_NAME[i]} waits in initial-sync" initial-sync \
		"$(folder_field "${G_CONF[i]}" share state)"
	check_eq "${G_NAME[i]}'s status says it is stale" true \
		"$(folder_field "${G_CONF[i]}" share stale)"
done
check "dfsr status explains it" \
	bash -c "'$DFSR_BIN' status -c '${G_CONF[A]}' | grep -q 'stale: last sync .*tombstone_days = 1'"
out=$("$DFSR_BIN" wait -c "${G_CONF[A]}" --timeout 2 2>&1) && die "dfsr wait returned 0 with no member normal"
check "dfsr wait names the staleness: $out" grep -q 'initial-sync (stale: content too old' <<<"$out"
for i in $A $B $C; do
	member_stop "$i"
	G_FOLDER_EXTRA[i]="tombstone_days = 3"$'\n'
	group_write_conf "$i"
	grep -qx 'tombstone_days = 3' "${G_CONF[i]}" || die "tombstone_days not raised in ${G_CONF[i]}"
done
start_at +60h $A $B $C
for i in $A $B $C; do
	check "${G_NAME[i]} logs 1207 (staleness lifted by the longer lifetime)" \
		event_seen "${G_CONF[i]}" 1207
	check "${G_NAME[i]} is normal again" all_normal "${G_CONF[i]}"
	check_eq "${G_NAME[i]} is no longer stale" false "$(folder_field "${G_CONF[i]}" share stale)"
done
echo "after the lift" >"$MC/after-lift.txt"
members_wait 60 || die "not in sync after the lift"
check_eq "charlie's new file reaches alpha" "after the lift" "$(cat "$MA/after-lift.txt" 2>&1)"
check_eq "and bravo" "after the lift" "$(cat "$MB/after-lift.txt" 2>&1)"
check_eq "nothing went to PreExisting on alpha" "" "$(conflicts_lines $A --preexisting)"
check_trees_equal "trees equal after the lift"

member_stop $B
member_stop $C
member_stop $A
finish
