#!/usr/bin/env bash
# stress.sh - concurrent writers in the mount (create, write, save-by-rename through *.tmp,
# rename, delete, mkdir, rmdir, chmod, links) must leave the database agreeing with the disk:
# the status counts equal what is on disk, and a restart's consistency scan finds nothing to
# add (no journal entries but ours).
. "$(dirname "$0")/lib.sh"
it_init

make_member alpha
start_member "$M_CONF"
wait_normal "$M_CONF" 60 || die "member did not reach normal"
mkdir "$M_MNT/shared"

worker() { # N : 250 pseudo-random operations in its own directory and in shared/
	local n=$1 i r d f
	RANDOM=$((n * 7919))
	d=$M_MNT/w$n
	mkdir -p "$d/sub"
	for ((i = 0; i < 250; i++)); do
		r=$((RANDOM % 12))
		f=f$((RANDOM % 20))
		case $r in
		0 | 1) echo "w$n $i" >"$d/$f" ;;
		2) echo "more $i" >>"$d/$f" 2>/dev/null ;;
		3) [ -f "$d/$f" ] && mv -f "$d/$f" "$d/sub/$f" ;;
		4) rm -f "$d/$f" "$d/sub/$f" ;;
		5) echo "saved $i" >"$d/$f.tmp" && mv -f "$d/$f.tmp" "$d/$f" ;;
		6) mkdir -p "$d/dir$((RANDOM % 5))/x" ;;
		7) rm -rf "$d/dir$((RANDOM % 5))" ;;
		8) chmod $((RANDOM % 2 ? 600 : 644)) "$d/$f" 2>/dev/null ;;
		9) ln -sf "$f" "$d/l$((RANDOM % 5))" ;;
		10) echo "shared $n $i" >"$M_MNT/shared/s$((RANDOM % 10))" ;;
		11) mv -f "$M_MNT/shared/s$((RANDOM % 10))" "$M_MNT/shared/s$((RANDOM % 10))" 2>/dev/null ;;
		esac
	done
	return 0
}

pids=()
for n in 1 2 3 4; do
	worker "$n" &
	pids+=($!)
done
for p in "${pids[@]}"; do
	wait "$p"
done

# on disk (through the local path), excluding DfsrPrivate and filtered names:
# "files folders bytes" where bytes counts regular files, or regular files and symlinks
disk_counts() {
	(cd "$M_PATH" && find . -path ./DfsrPrivate -prune -o ! -name . \( -name '*.tmp' -o -name '~*' -o -name '*.bak' \) -prune -o ! -name . -printf '%y %s\n') |
		awk '$1 == "d" { d++ } $1 == "f" { f++; b += $2; a += $2 } $1 == "l" { f++; a += $2 }
			END { printf "%d %d %d|%d %d %d\n", f, d, b, f, d, a }'
}
db_counts() {
	status_json "$M_CONF" | json '"%d %d %d" % (d["folders"][0]["files"], d["folders"][0]["folders"], d["folders"][0]["bytes"])'
}
counts_agree() { local db; db=$(db_counts) && [[ "|$(disk_counts)|" == *"|$db|"* ]]; }

check "status counts (files folders bytes) agree with the disk" wait_until 30 counts_agree
check "files folders bytes: disk ($(disk_counts)) vs status ($(db_counts))" counts_agree
check "the daemon survived" pid_alive "$M_PID"

stop_member "$M_CONF"
from=$(journal_next "$M_CONF")
start_member "$M_CONF"
check "member reaches normal after restart" wait_normal "$M_CONF" 60
mkdir "$M_MNT/barrier"
check "barrier journaled" wait_until 20 journal_has "$M_CONF" "$from" "create d barrier"
extra=$(journal_ops "$M_CONF" "$from" | grep -vx "create d barrier" | head -20)
check_eq "the consistency scan after a clean stop finds nothing the journal missed" "" "$extra"
check "counts still agree after restart: disk ($(disk_counts)) vs status ($(db_counts))" counts_agree
stop_member "$M_CONF"
finish
