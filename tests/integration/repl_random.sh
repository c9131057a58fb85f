#!/usr/bin/env bash
# repl_random.sh - seeded random operations on three members, then: every member has the
# same tree (`dfsr hash -r`), and nothing was lost: every content ever written that is not
# live at the end either was overwritten on purpose by a later write on the member that
# held it (a modify replaces a version: docs/conflicts.md §8), or is kept in some member's
# DfsrPrivate/ConflictAndDeleted (deleted files, conflict losers). Also: every file live
# or preserved holds a content that was written (nothing partial or mixed).
#
# ROUNDS rounds (default 6) of OPS operations (default 50) spread over the running members'
# mounts: create, modify, rename (files and directories, across directories), delete,
# mkdir, rm -r, rm -r racing a new file in the directory on another member, xattrs and
# permission bits (of files and directories), truncate, hard and symbolic links, and a
# writer that keeps a file open (half written) while the partners change it; names come
# from small pools so that members collide (name conflicts, update conflicts, delete vs update, directories deleted under
# new files). The group converges between rounds; one member is stopped cleanly for two
# rounds (of every six), another is killed (kill -9) for one; meanwhile some edits go
# straight into the stopped member's local path (found by its consistency scan at the
# next start: concurrent versions). In rounds 3, 7, 11..., halfway through the
# operations, a member is killed (kill -9) in the middle of a large file's transfer, as
# its downstream or its upstream, and restarted with the next round.
#
# SEED (default 20261122) fixes every random choice; it is printed, so a failure can be
# replayed with SEED=<n>. The choices read the members' trees (which files there are to
# pick from), so a replay takes the same path only while replication keeps the same pace:
# a run that diverges from it still tests, only something else. DFSR_KEEP=1 keeps the
# workspace (its "written" file lists every content with its round, operation and member,
# next to each member's journal and manifest). To keep "nothing lost" exact, a delete removes only a file that every
# member held at the start of the round, and each path is deleted at most once a round.
. "$(dirname "$0")/lib.sh"
it_init

SEED=${SEED:-20261122}
ROUNDS=${ROUNDS:-6}
OPS=${OPS:-50}
say "SEED=$SEED ROUNDS=$ROUNDS OPS=$OPS (replay with SEED=$SEED)"
RANDOM=$SEED

group_setup 3
group_start 1 2 3

WRITTEN=$WS/written         # "sha round op member path" of every content written
OVERWRITTEN=$WS/overwritten # sha of every content a modify replaced
: >"$WRITTEN"
: >"$OVERWRITTEN"
CONTENT=$WS/content

R=0
rnd() { R=$((RANDOM % $1)); } # R = a number in [0, $1); never call it in a subshell

# pick FILE : sets PICK to a random line of FILE (empty when FILE is empty).
pick() {
	local n
	n=$(wc -l <"$1")
	PICK=""
	[ "$n" -gt 0 ] || return 1
	rnd "$n"
	PICK=$(sed -n "$((R + 1))p" "$1")
}

# new_content ROUND OP MEMBER : a unique content in $CONTENT; sets SHA.
new_content() {
	printf 'seed %s round %s op %s member %s\n' "$SEED" "$1" "$2" "$3" >"$CONTENT"
	rnd 100
	if [ $R -lt 70 ]; then
		rnd 2000
	elif [ $R -lt 95 ]; then
		rnd 60000
	else
		rnd 400000
	fi
	head -c "$R" /dev/urandom >>"$CONTENT"
	SHA=$(sha256sum "$CONTENT" | cut -d' ' -f1)
}

sha_of() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }

# lists of member M's files and directories (relative; directories include ".")
list_files() {
	local held=()
	[ "$1" != "$HOLD_M" ] || held=(! -inum "$HOLD_INO")
	(cd "${G_PATH[$1]}" && find . -path ./DfsrPrivate -prune -o -type f "${held[@]}" -print |
		sed 's|^\./||') >"$WS/files"
}
list_dirs() {
	(cd "${G_PATH[$1]}" && find . -path ./DfsrPrivate -prune -o -type d -print | sed 's|^\./||') |
		awk -F/ 'NF <= 3' >"$WS/dirs"
}

declare -A SNAP=()    # path -> sha of every file at the start of the round (group in sync)
declare -A SNAPDIR=() # directories at the start of the round
declare -A GONE=()    # paths deleted this round
declare -A OFFGONE=() # paths deleted this round in the stopped member's local path
snapshot() {
	local line p
	SNAP=()
	SNAPDIR=()
	GONE=()
	OFFGONE=()
	while read -r line; do
		p=${line#*  }
		SNAP[$p]=${line%%  *}
	done < <(cd "${G_PATH[1]}" && find . -path ./DfsrPrivate -prune -o -type f -print0 |
		xargs -0 -r sha256sum | sed 's|  \./|  |')
	while read -r p; do
		SNAPDIR[$p]=1
	done < <(cd "${G_PATH[1]}" && find . -path ./DfsrPrivate -prune -o -type d ! -name . -print |
		sed 's|^\./||')
}

# ---- the operations (on member M's mount) --------------------------------------------------
op_create() { # ROUND OP M
	local m=$3 dir path
	list_dirs "$m"
	pick "$WS/dirs"
	dir=$PICK
	rnd 25
	path="$dir/f$R"
	path=${path#./}
	path=${path#.}
	path=${path#/}
	if [ -e "${G_PATH[m]}/$path" ] || [ -L "${G_PATH[m]}/$path" ]; then
		op_modify "$@"
		return
	fi
	new_content "$1" "$2" "$m"
	cp "$CONTENT" "${G_MNT[m]}/$path" 2>/dev/null || return 0
	echo "$SHA $1 $2 ${G_NAME[m]} create $path" >>"$WRITTEN"
}

op_modify() {
	local m=$3 path old
	list_files "$m"
	pick "$WS/files" || return 0
	path=$PICK
	new_content "$1" "$2" "$m"
	# What this write replaces is read through the same open handle: an install may land
	# between a separate read and the write (then the write replaces the installed
	# version, on purpose), but never while the file is open for writing (§8).
	old=$(replace_content "${G_MNT[m]}/$path" "$CONTENT") || return 0
	[ -n "$old" ] || return 0
	echo "$old" >>"$OVERWRITTEN"
	echo "$SHA $1 $2 ${G_NAME[m]} modify $path" >>"$WRITTEN"
}

# replace_content FILE NEW : open FILE for reading and writing, print the sha256 of what it
# held, and replace that with NEW's bytes through the same handle.
replace_content() {
	"$PY" - "$1" "$2" 2>/dev/null <<'PYEOF'
import hashlib, sys
with open(sys.argv[2], "rb") as n:
    new = n.read()
with open(sys.argv[1], "r+b") as f:
    old = f.read()
    f.seek(0)
    f.truncate()
    f.write(new)
print(hashlib.sha256(old).hexdigest())
PYEOF
}

# pick_dest MEMBER [d] : sets DEST to a name in a random directory of MEMBER's tree,
# "DIR/fN" (N < 25), or with d "DIR/dN" (N < 6): the same draws either way.
pick_dest() {
	list_dirs "$1"
	pick "$WS/dirs"
	rnd 25
	if [ "${2:-f}" = d ]; then DEST="$PICK/d$((R % 6))"; else DEST="$PICK/f$R"; fi
	DEST=${DEST#./}
	DEST=${DEST#.}
	DEST=${DEST#/}
}

op_rename() {
	local m=$3 src dst
	rnd 3
	if [ $R = 0 ]; then
		list_dirs "$m"
		grep -vx '\.' "$WS/dirs" >"$WS/cands" || true
	else
		list_files "$m"
		cp "$WS/files" "$WS/cands"
	fi
	pick "$WS/cands" || return 0
	src=$PICK
	if [ -d "${G_PATH[m]}/$src" ]; then pick_dest "$m" d; else pick_dest "$m"; fi
	dst=$DEST
	case "$dst/" in "$src/"*) return 0 ;; esac # not into itself
	[ ! -e "${G_PATH[m]}/$dst" ] || return 0
	mv -n "${G_MNT[m]}/$src" "${G_MNT[m]}/$dst" 2>/dev/null || true
}

op_delete() {
	local m=$3 path
	printf '%s\n' "${!SNAP[@]}" >"$WS/cands"
	pick "$WS/cands" || return 0
	path=$PICK
	[ -n "$path" ] && [ -z "${GONE[$path]:-}" ] || return 0
	[ "$(sha_of "${G_PATH[m]}/$path")" = "${SNAP[$path]}" ] || return 0
	rm -f "${G_MNT[m]}/$path" && GONE[$path]=1
}

op_mkdir() {
	local m=$3 dir path
	list_dirs "$m"
	awk -F/ 'NF <= 2' "$WS/dirs" >"$WS/cands"
	pick "$WS/cands"
	dir=$PICK
	rnd 6
	path="$dir/d$R"
	path=${path#./}
	path=${path#.}
	path=${path#/}
	mkdir -p "${G_MNT[m]}/$path" 2>/dev/null || true
}

# rm -r of a directory that every member had at the start of the round (or of PATH). Files created
# under it this round (not in the snapshot) may never have left this member: what they
# held counts as overwritten.
op_rmdir() {
	local m=$3 path=${4:-} f s
	if [ -z "$path" ]; then
		printf '%s\n' "${!SNAPDIR[@]}" >"$WS/cands"
		pick "$WS/cands" || return 0
		path=$PICK
	fi
	[ -n "$path" ] && [ -z "${GONE[$path]:-}" ] && [ -d "${G_PATH[m]}/$path" ] || return 0
	# (not a directory holding the file a writer keeps open here: its last write would land
	# in a deleted file)
	if [ "$m" = "$HOLD_M" ] && [ -n "$(find "${G_PATH[m]}/$path" -inum "$HOLD_INO")" ]; then
		return 0
	fi
	while read -r f; do
		s=$(sha_of "$f")
		[ -n "$s" ] || continue
		grep -qx "$s" <<<"$(printf '%s\n' "${SNAP[@]}")" || echo "$s" >>"$OVERWRITTEN"
	done < <(find "${G_PATH[m]}/$path" -type f)
	rm -rf "${G_MNT[m]:?}/$path" && GONE[$path]=1
}

# An edit made in a stopped member's local path, behind its back (a file modified or
# created, deleted or renamed): its consistency scan finds it at the next start, and it
# meets the group's changes of the round as a concurrent version (conflicts, delete vs
# update, name conflicts).
op_offline() {
	local s=$3 dir path old
	list_dirs "$s"
	pick "$WS/dirs"
	dir=$PICK
	rnd 6
	case $R in
	0 | 1 | 2)
		list_files "$s"
		pick "$WS/files" || return 0
		path=$PICK
		;;
	3)
		op_offline_move "$@"
		return
		;;
	*)
		rnd 25
		path="$dir/f$R"
		path=${path#./}
		path=${path#.}
		path=${path#/}
		[ ! -L "${G_PATH[s]}/$path" ] || return 0 # never write through a symbolic link
		;;
	esac
	old=$(sha_of "${G_PATH[s]}/$path")
	new_content "$1" "$2" "$s"
	cat "$CONTENT" >"${G_PATH[s]}/$path" 2>/dev/null || return 0
	[ -z "$old" ] || echo "$old" >>"$OVERWRITTEN"
	echo "$SHA $1 $2 ${G_NAME[s]} offline $path" >>"$WRITTEN"
}

# A delete (with the rule of op_delete) or a rename of a file, behind the stopped member's
# back: its scan sees a name gone and maybe a new one.
op_offline_move() {
	local s=$3 path dst
	rnd 2
	if [ $R = 0 ]; then
		printf '%s\n' "${!SNAP[@]}" >"$WS/cands"
		pick "$WS/cands" || return 0
		path=$PICK
		[ -n "$path" ] && [ -z "${GONE[$path]:-}" ] || return 0
		[ "$(sha_of "${G_PATH[s]}/$path")" = "${SNAP[$path]}" ] || return 0
		rm -f "${G_PATH[s]}/$path" && GONE[$path]=1 && OFFGONE[$path]=1
		return 0
	fi
	list_files "$s"
	pick "$WS/files" || return 0
	path=$PICK
	pick_dest "$s"
	dst=$DEST
	[ ! -e "${G_PATH[s]}/$dst" ] && [ ! -L "${G_PATH[s]}/$dst" ] || return 0
	mv -n "${G_PATH[s]}/$path" "${G_PATH[s]}/$dst" 2>/dev/null || true
}

# Before stopped member S starts again: its scan compares names with records (core/scan.h),
# so a file deleted behind its back whose name holds a file again (written there or
# renamed there later in the round) is a modify of the deleted file's record, not a delete
# and a create: what the delete removed is replaced on the partners like the old content
# of an offline write, not preserved. Counted as overwritten exactly then (seed 6019, 12
# rounds of 150: "7 103 alpha create d4/f9", deleted in charlie's local path in round 8
# and written again there: charlie's scan journaled a modify).
offline_settle() {
	local s=$1 p
	for p in "${!OFFGONE[@]}"; do
		[ -e "${G_PATH[s]}/$p" ] || [ -L "${G_PATH[s]}/$p" ] || continue
		echo "${SNAP[$p]}" >>"$OVERWRITTEN"
	done
	OFFGONE=()
}

# Metadata only (part of the replication hash, not of the data): set or remove a user
# xattr, or change the permission bits.
op_meta() {
	local m=$3 path
	rnd 4
	if [ $R = 0 ]; then
		op_meta_dir "$@"
		return
	fi
	list_files "$m"
	pick "$WS/files" || return 0
	path=$PICK
	rnd 3
	case $R in
	0)
		rnd 4
		setfattr -n "user.r$R" -v "$1.$2" "${G_MNT[m]}/$path" 2>/dev/null || true
		;;
	1)
		rnd 4
		setfattr -x "user.r$R" "${G_MNT[m]}/$path" 2>/dev/null || true
		;;
	2)
		local modes=(600 640 644 660 664 700 755)
		rnd ${#modes[@]}
		chmod "${modes[R]}" "${G_MNT[m]}/$path" 2>/dev/null || true
		;;
	esac
}

# The same for a directory: an xattr, or its permission bits.
op_meta_dir() {
	local m=$3 path modes=(755 750 775 700)
	list_dirs "$m"
	grep -vx '\.' "$WS/dirs" >"$WS/cands" || true
	pick "$WS/cands" || return 0
	path=$PICK
	rnd 2
	if [ $R = 0 ]; then
		rnd 4
		setfattr -n "user.r$R" -v "$1.$2" "${G_MNT[m]}/$path" 2>/dev/null || true
	else
		rnd ${#modes[@]}
		chmod "${modes[R]}" "${G_MNT[m]}/$path" 2>/dev/null || true
	fi
}

# Truncate a file (shorter, or longer with zeros) through one handle: what it held is
# overwritten, what it holds now was written.
op_truncate() {
	local m=$3 path out
	list_files "$m"
	pick "$WS/files" || return 0
	path=$PICK
	rnd 3000
	out=$("$PY" - "${G_MNT[m]}/$path" "$R" 2>/dev/null <<'PYEOF'
import hashlib, os, sys
with open(sys.argv[1], "r+b") as f:
    old = f.read()
    n = int(sys.argv[2]) if len(old) < 64 else len(old) * int(sys.argv[2]) // 2000
    f.truncate(n)
    f.seek(0)
    new = f.read()
print(hashlib.sha256(old).hexdigest(), hashlib.sha256(new).hexdigest())
PYEOF
	) || return 0
	echo "${out% *}" >>"$OVERWRITTEN"
	echo "${out#* } $1 $2 ${G_NAME[m]} truncate $path" >>"$WRITTEN"
}

# A second name for a file (hard link; each name is its own record), or a symbolic link.
op_link() {
	local m=$3 src dst
	list_files "$m"
	pick "$WS/files" || return 0
	src=$PICK
	pick_dest "$m"
	dst=$DEST
	[ ! -e "${G_PATH[m]}/$dst" ] && [ ! -L "${G_PATH[m]}/$dst" ] || return 0
	rnd 3
	if [ $R = 0 ]; then
		ln -s "../$src" "${G_MNT[m]}/$dst" 2>/dev/null || true
	else
		ln "${G_MNT[m]}/$src" "${G_MNT[m]}/$dst" 2>/dev/null || true
	fi
}

# rm -r of a directory on one member and, at once, a new file in it on another: the
# directory comes back with the new file on every member (docs/conflicts.md §7).
op_rmdir_race() {
	local m=$3 n path
	[ ${#running[@]} -ge 2 ] || return 0
	printf '%s\n' "${!SNAPDIR[@]}" >"$WS/cands"
	pick "$WS/cands" || return 0
	path=$PICK
	[ -n "$path" ] && [ -z "${GONE[$path]:-}" ] && [ -d "${G_PATH[m]}/$path" ] || return 0
	rnd ${#running[@]}
	n=${running[R]}
	[ "$n" != "$m" ] || return 0
	[ -d "${G_PATH[n]}/$path" ] || return 0
	op_rmdir "$1" "$2" "$m" "$path"
	rnd 25
	[ ! -e "${G_PATH[n]}/$path/r$R" ] && [ ! -L "${G_PATH[n]}/$path/r$R" ] || return 0
	new_content "$1" "$2" "$n"
	cp "$CONTENT" "${G_MNT[n]}/$path/r$R" 2>/dev/null || return 0
	echo "$SHA $1 $2 ${G_NAME[n]} create-in-deleted $path/r$R" >>"$WRITTEN"
}

# A writer on member M keeps a file open (truncated, half written) while the round goes
# on: partners change or delete that file meanwhile, and their versions must wait for the
# close (docs/conflicts.md §8). hold_release closes it with the whole new content. At
# most one writer a round; the other operations on M leave its file alone (by inode: a
# partner may rename it, or a directory above it, under the writer). The inode is the
# writer's own fstat() of its handle (through the mount: the backing st_ino), not a stat of
# the name once the writer is ready: a partner's rename of a directory above could land
# in between, the stat failed, nothing was spared, and a later rm -r on M deleted the file
# under its writer. That is M's own delete, and the writer's last content goes with the
# file as on any filesystem (docs/conflicts.md §8: a local delete is not preserved on the
# member that made it); the check below counted it as lost (seed 6019, 12 rounds of 150).
HOLD_M=""
HOLD_INO=""
HOLD_PID=""
op_hold() {
	local m=$3 path
	[ -z "$HOLD_M" ] || return 0
	list_files "$m"
	pick "$WS/files" || return 0
	path=$PICK
	new_content "$1" "$2" "$m"
	cp "$CONTENT" "$WS/hold.new"
	rm -f "$WS/hold.ready" "$WS/hold.ino" "$WS/hold.go" "$WS/hold.out"
	"$PY" - "${G_MNT[m]}/$path" "$WS/hold.new" "$WS" >"$WS/hold.out" 2>/dev/null <<'PYEOF' &
import hashlib, os, sys, time
path, newf, ws = sys.argv[1:4]
with open(newf, "rb") as n:
    new = n.read()
def ready(ino):  # hold.ready appears with the inode in it (0: no writer)
    with open(ws + "/hold.ino", "w") as r:
        r.write("%d\n" % ino)
    os.rename(ws + "/hold.ino", ws + "/hold.ready")
try:
    f = open(path, "r+b")
except OSError:
    ready(0)
    sys.exit(1)
with f:
    old = f.read()
    f.seek(0)
    f.truncate()
    f.write(new[: len(new) // 2])
    f.flush()
    os.fsync(f.fileno())
    ready(os.fstat(f.fileno()).st_ino)
    deadline = time.monotonic() + 300
    while not os.path.exists(ws + "/hold.go") and time.monotonic() < deadline:
        time.sleep(0.05)
    f.seek(0)
    f.truncate()
    f.write(new)
print(hashlib.sha256(old).hexdigest())
PYEOF
	HOLD_PID=$!
	wait_until 30 test -e "$WS/hold.ready" || die "the held writer never started"
	HOLD_INO=$(cat "$WS/hold.ready")
	HOLD_M=$m
	HOLD_SHA=$SHA
	HOLD_WHAT="$1 $2 ${G_NAME[m]} hold $path"
}

hold_release() {
	local old
	[ -n "$HOLD_M" ] || return 0
	touch "$WS/hold.go"
	if wait "$HOLD_PID"; then
		old=$(cat "$WS/hold.out")
		[ -z "$old" ] || echo "$old" >>"$OVERWRITTEN"
		echo "$HOLD_SHA $HOLD_WHAT" >>"$WRITTEN"
	fi
	HOLD_M=""
	HOLD_INO=""
	HOLD_PID=""
}

# kill -9 in the middle of a transfer: a large new file on member U, and once member V
# has started to assemble it in Installing (or has it, if that was too quick to see),
# kill -9 of V (the downstream) or of U (the upstream, its Staging half served). Sets
# KILLED.
kill_mid_transfer() {
	local v=$1 u path
	u=$((v % G_N + 1))
	rnd 1000
	path="big$R"
	printf 'seed %s round %s big %s\n' "$SEED" "$round" "$path" >"$CONTENT"
	rnd 2000000
	head -c $((3000000 + R)) /dev/urandom >>"$CONTENT"
	SHA=$(sha_of "$CONTENT")
	cp "$CONTENT" "${G_MNT[u]}/$path" || die "cannot write $path"
	echo "$SHA $round big ${G_NAME[u]} create $path" >>"$WRITTEN"
	wait_until 20 installing "$v" || true
	rnd 2
	KILLED=$v
	[ $R = 0 ] || KILLED=$u
	say "round $round op $op: kill -9 of ${G_NAME[KILLED]} while ${G_NAME[v]} receives $path" \
		"from ${G_NAME[u]} (Installing: $(installing_list "$v"))"
	member_kill "$KILLED"
}
installing_list() { ls -A "${G_PATH[$1]}/DfsrPrivate/Installing" 2>/dev/null | head -3 | tr '\n' ' '; }
installing() { [ -n "$(installing_list "$1")" ] || [ -e "${G_PATH[$1]}/$path" ]; }

# ---- rounds ---------------------------------------------------------------------------------
STOPPED=""
DIVERGED=0
declare -A NOPS=() # operations tried, by kind
t_start=$SECONDS
for ((round = 1; round <= ROUNDS; round++)); do
	for i in $STOPPED; do
		offline_settle "$i"
		member_start "$i"
	done
	STOPPED=""
	if ! check "round $round: in sync at the start (dfsr wait)" members_wait 60; then
		say "round $round: not in sync at the start; no more rounds"
		DIVERGED=1
		break
	fi
	check_trees_equal "round $round: trees equal at the start"
	case $((round % 6)) in
	2 | 5)
		member_stop 3
		STOPPED=3
		;;
	4)
		member_kill 2
		STOPPED=2
		;;
	esac
	snapshot
	running=($(members_running))
	for ((op = 1; op <= OPS; op++)); do
		if [ $op = $((OPS / 2)) ] && [ $((round % 4)) = 3 ] && [ -z "$STOPPED" ]; then
			hold_release
			rnd "$G_N"
			kill_mid_transfer $((R + 1))
			STOPPED=$KILLED
			running=($(members_running))
		fi
		rnd ${#running[@]}
		m=${running[R]}
		rnd 100
		if [ -n "$STOPPED" ] && [ $R -lt 20 ]; then
			op_offline "$round" "$op" "$STOPPED"
			NOPS[offline]=$((${NOPS[offline]:-0} + 1))
			continue
		fi
		rnd 100
		if [ $R -lt 29 ]; then
			op_create "$round" "$op" "$m"
			NOPS[create]=$((${NOPS[create]:-0} + 1))
		elif [ $R -lt 49 ]; then
			op_modify "$round" "$op" "$m"
			NOPS[modify]=$((${NOPS[modify]:-0} + 1))
		elif [ $R -lt 64 ]; then
			op_rename "$round" "$op" "$m"
			NOPS[rename]=$((${NOPS[rename]:-0} + 1))
		elif [ $R -lt 74 ]; then
			op_delete "$round" "$op" "$m"
			NOPS[delete]=$((${NOPS[delete]:-0} + 1))
		elif [ $R -lt 81 ]; then
			op_mkdir "$round" "$op" "$m"
			NOPS[mkdir]=$((${NOPS[mkdir]:-0} + 1))
		elif [ $R -lt 84 ]; then
			op_rmdir "$round" "$op" "$m"
			NOPS[rmdir]=$((${NOPS[rmdir]:-0} + 1))
		elif [ $R -lt 90 ]; then
			op_meta "$round" "$op" "$m"
			NOPS[meta]=$((${NOPS[meta]:-0} + 1))
		elif [ $R -lt 93 ]; then
			op_truncate "$round" "$op" "$m"
			NOPS[truncate]=$((${NOPS[truncate]:-0} + 1))
		elif [ $R -lt 96 ]; then
			op_link "$round" "$op" "$m"
			NOPS[link]=$((${NOPS[link]:-0} + 1))
		elif [ $R -lt 98 ]; then
			op_rmdir_race "$round" "$op" "$m"
			NOPS[rmdir_race]=$((${NOPS[rmdir_race]:-0} + 1))
		else
			op_hold "$round" "$op" "$m"
			NOPS[hold]=$((${NOPS[hold]:-0} + 1))
		fi
	done
	hold_release
	say "round $round done: $(wc -l <"$WRITTEN") contents written so far, $((SECONDS - t_start)) s"
done
for i in $STOPPED; do
	offline_settle "$i"
	member_start "$i"
done
say "operations tried: $(for k in "${!NOPS[@]}"; do printf '%s=%s ' "$k" "${NOPS[$k]}"; done)"
# (a group that already failed to converge gets a short last chance, to keep the run short)
check "dfsr wait: in sync at the end" members_wait $((DIVERGED ? 20 : 90))
check_trees_equal "trees equal at the end"

# ---- nothing lost ---------------------------------------------------------------------------
cut -d' ' -f1 "$WRITTEN" | sort -u >"$WS/W"
content_hashes_live() {
	(cd "${G_PATH[1]}" && find . -path ./DfsrPrivate -prune -o -type f -print0 | xargs -0 -r sha256sum) |
		cut -d' ' -f1 | sort -u
}
content_hashes_live >"$WS/L"
for i in 1 2 3; do
	content_hashes "${G_PATH[i]}/DfsrPrivate/ConflictAndDeleted"
done | sort -u >"$WS/P"
sort -u "$OVERWRITTEN" >"$WS/O"
sort -u "$WS/L" "$WS/O" "$WS/P" >"$WS/kept"
comm -23 "$WS/W" "$WS/kept" >"$WS/lost"
say "written $(wc -l <"$WS/W"), live $(wc -l <"$WS/L"), preserved $(wc -l <"$WS/P"), overwritten $(wc -l <"$WS/O")"
check "every content written is live, preserved, or was overwritten on purpose" test ! -s "$WS/lost"
if [ -s "$WS/lost" ]; then
	say "lost contents (sha round op member op path):"
	grep -F -f "$WS/lost" "$WRITTEN" | head -20 | sed 's/^/    /'
fi
comm -23 "$WS/L" "$WS/W" >"$WS/strange-live"
check "every live file holds a content that was written" test ! -s "$WS/strange-live"
comm -23 "$WS/P" "$WS/W" >"$WS/strange-kept"
check "every preserved file holds a content that was written" test ! -s "$WS/strange-kept"
check "the random operations made some conflicts or deletes" test -s "$WS/P"
for i in 1 2 3; do
	check "${G_NAME[i]}'s manifest reads" "$DFSR_BIN" conflicts -c "${G_CONF[i]}" --json
done
# preserved_sizes I : every preserved regular file of member I has the size its manifest
# entry gives (what was preserved did not change afterwards); prints those that differ.
preserved_sizes() {
	local t p name size have f bad=0
	while read -r t p name size; do
		f="${G_PATH[$1]}/DfsrPrivate/ConflictAndDeleted/$name"
		[ -f "$f" ] && [ ! -L "$f" ] || continue
		have=$(stat -c %s "$f")
		[ "$have" = "$size" ] && continue
		echo "$t $p $name: manifest size $size, file size $have"
		bad=1
	done < <(conflicts_lines "$1")
	return $bad
}
for i in 1 2 3; do
	check "${G_NAME[i]}'s preserved files have their manifest sizes" preserved_sizes "$i"
done
say "conflict entries by type: $(for i in 1 2 3; do conflicts_lines $i; done | cut -d' ' -f1 | sort | uniq -c | tr '\n' ' ')"

for i in 3 2 1; do
	member_stop $i
done
# Every member's records match its disk: started again alone, its consistency scan finds
# nothing to record (a stale record would also be served as a version the file no longer
# holds).
last_scan() {
	"$DFSR_BIN" events -c "$1" --json | "$PY" -c '
import json, sys
m = [e["message"] for e in json.load(sys.stdin) if e["id"] == 1204]
print(m[-1] if m else "no 1204 event")'
}
for i in 1 2 3; do
	member_start $i
	scan=$(last_scan "${G_CONF[i]}")
	check_eq "${G_NAME[i]}'s scan at a restart finds nothing new" "created=0 changed=0 removed=0" \
		"$(printf '%s\n' "$scan" | grep -o 'created=[0-9]* changed=[0-9]* removed=[0-9]*' || echo "$scan")"
	member_stop $i
done
say "took $((SECONDS - t_start)) s"
finish
