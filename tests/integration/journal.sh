#!/usr/bin/env bash
# journal.sh - every kind of change made through the mount makes exactly the journal entries
# it should (op, type, path), and changes that leave the replication hash and the name as
# they were (touch, chmod to the same mode, filtered names) make none.
#
# Each step runs a shell snippet in the mount, then makes a "barrier" directory and waits
# for its entry: everything the step journals synchronously is before it. Entries that are
# journaled when the last writable handle is released (data writes) may follow it, so the
# comparison is polled until it matches or 10 seconds pass.
. "$(dirname "$0")/lib.sh"
it_init

make_member alpha
start_member "$M_CONF"
wait_normal "$M_CONF" 60 || die "member did not reach normal"

NBAR=0
view() { # MODE FROM : the entries since FROM without barriers, shaped by MODE
	local lines
	lines=$(journal_ops "$M_CONF" "$2" | grep -v ' barrier\.[0-9]*$')
	case $1 in
	exact) printf '%s' "$lines" ;;
	set) printf '%s' "$lines" | LC_ALL=C sort -u ;;
	optype) printf '%s' "$lines" | awk '{ print $1, $2 }' | LC_ALL=C sort -u ;;
	esac
}
view_is() { [ "$(view "$1" "$2")" == "$3" ]; }

# step MODE DESCRIPTION EXPECTED SNIPPET
#   MODE exact: the entries, in order; set: the distinct entries, sorted (for changes that
#   may take more than one operation); optype: only "op type", distinct.
step() {
	local mode=$1 desc=$2 want=$3 snippet=$4 from
	from=$(journal_next "$M_CONF")
	if ! (cd "$M_MNT" && eval "$snippet") >"$WS/step.out" 2>&1; then
		check "step '$desc': the command itself failed: $(head -c 300 "$WS/step.out")" false
		return
	fi
	NBAR=$((NBAR + 1))
	mkdir "$M_MNT/barrier.$NBAR"
	if ! wait_until 20 journal_has "$M_CONF" "$from" "create d barrier.$NBAR"; then
		check "step '$desc': the barrier directory was never journaled" false
		return
	fi
	want=$(printf '%s' "$want" | sed 's/^[[:space:]]*//' | grep -v '^$')
	[ "$mode" = exact ] || want=$(printf '%s' "$want" | LC_ALL=C sort -u)
	wait_until 10 view_is "$mode" "$from" "$want" || true
	check_eq "journal after: $desc" "$want" "$(view "$mode" "$from")"
}

step exact "create an empty file" "create f f1" ': > f1'
step exact "append data and close" "modify f f1" 'printf data >> f1'
step exact "chmod" "meta f f1" 'chmod 600 f1'
step exact "chmod to the same mode" "" 'chmod 600 f1'
step set "chown" "meta f f1" "chown $NOBODY:$NOBODY f1"
step exact "setxattr" "meta f f1" 'setfattr -n user.k -v v f1'
step exact "setxattr to the same value" "" 'setfattr -n user.k -v v f1'
step set "setfacl" "meta f f1" "setfacl -m u:$NOBODY:r f1"
step exact "removexattr" "meta f f1" 'setfattr -x user.k f1'
step exact "touch (times only)" "" 'touch f1'
step exact "touch -d (mtime into the past)" "" "touch -d '2001-02-03 04:05:06' f1"
step exact "touch -a" "" 'touch -a f1'
step exact "rename" "rename f f2" 'mv f1 f2'
step optype "rename into a filtered name (*.tmp)" "delete f" 'mv f2 x.tmp'
step exact "rename out of a filtered name" "create f f3" 'mv x.tmp f3'
step exact "truncate down" "modify f f3" 'truncate -s 0 f3'
step exact "truncate up" "modify f f3" 'truncate -s 100 f3'
step exact "truncate to the same size" "" 'truncate -s 100 f3'
step exact "mkdir" "create d d1" 'mkdir d1'
step exact "create in a subdirectory" "create f d1/inner" ': > d1/inner'
step exact "rename a non-empty directory" "rename d d2" 'mv d1 d2'
step exact "setxattr on a directory" "meta d d2" 'setfattr -n user.d -v 1 d2'
step exact "chmod a directory" "meta d d2" 'chmod 700 d2'
step exact "unlink" "delete f d2/inner" 'rm d2/inner'
step exact "rmdir" "delete d d2" 'rmdir d2'
step exact "symlink" "create l s1" 'ln -s f3 s1'
step exact "hard link" "create f h1" 'ln f3 h1'
step exact "unlink one name of a hard link" "delete f h1" 'rm h1'
# two names of one inode are two records: a change through either name changes both
step set "a file with two names" "create f hl1
create f hl2" ': > hl1 && ln hl1 hl2'
step set "data written through the second name changes both records" "modify f hl1
modify f hl2" 'echo more >> hl2'
step set "chmod through the first name changes both records" "meta f hl1
meta f hl2" 'chmod 640 hl1'
step set "remove both names" "delete f hl1
delete f hl2" 'rm hl1 hl2'
step exact "remove a symlink" "delete l s1" 'rm s1'
step exact "mkdir -p" "create d deep
create d deep/x
create d deep/x/y" 'mkdir -p deep/x/y'
step set "two new files" "create f f4
create f f5" ': > f4; : > f5'
step set "rename a file over another (target tombstoned)" "delete f f5
rename f f5" 'mv -f f4 f5'
step exact "unlink the survivor" "delete f f5" 'rm f5' 
step exact "unlink" "delete f f3" 'rm f3'
exchange() { # renameat2(A, B, RENAME_EXCHANGE)
	"$PY" -c '
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), 2) != 0:
    sys.exit("renameat2: " + os.strerror(ctypes.get_errno()))' "$1" "$2"
}
step set "a file and a directory" "create d xb
create f xa" ': > xa && mkdir xb'
step set "RENAME_EXCHANGE swaps the two records" "rename d xa
rename f xb" 'exchange xa xb'
check "after the exchange xa is the directory" test -d "$M_MNT/xa" -a -f "$M_MNT/xb"
step set "remove them" "delete d xa
delete f xb" 'rmdir xa && rm xb'

# data written through a handle still open is journaled when the handle is closed
step exact "create held" "create f held" ': > held'
from=$(journal_next "$M_CONF")
exec 3>>"$M_MNT/held"
printf 'data while open' >&3
NBAR=$((NBAR + 1))
mkdir "$M_MNT/barrier.$NBAR"
wait_until 20 journal_has "$M_CONF" "$from" "create d barrier.$NBAR" || check "held: barrier journaled" false
check_eq "no entry while the file is still open for writing" "" "$(view exact "$from")"
exec 3>&-
check "modify journaled once the last writer closed" wait_until 20 journal_has "$M_CONF" "$from" "modify f held"
step exact "filtered names make no entry" "" \
	": > '~lock'; echo x > a.bak; echo y >> a.bak; mv a.bak b.tmp; chmod 600 b.tmp; rm b.tmp '~lock'"
step exact "filtered names are case-insensitive" "" ': > A.TMP; echo x >> A.TMP; rm A.TMP'
step exact "rename between filtered names" "" ': > c.tmp; mv c.tmp d.bak; rm d.bak'

# Hard links after the kernel forgot the inode. The mount keeps, per backing inode, the
# UIDs of the names it has seen; once the kernel forgets the inode (memory pressure, here
# drop_caches with nothing holding it) a name looked up again starts a node that knows only
# that name, and the journal's map of hard-linked objects must supply the others.
#
# drop_caches only queues the FORGET; the daemon handles it on one of its worker threads,
# maybe after the LOOKUP of the next step, which then finds the old node (knowing both
# names) and the step passes without the map. So each drop waits until the node is gone:
# a node of a file keeps an O_PATH descriptor of its backing inode for its whole life
# while the daemon holds few (fs/internal.h, "Descriptors"), and closes it only after it
# left the inode table (fs__inode_unref()). That a node of the pair (looked up again, in
# case a drop_caches of someone else's took it already) holds one before the drop is
# checked, so that a node without a descriptor cannot pass for a forgotten one.
#
# inode_held PID FILE : "yes" if process PID has a descriptor open on FILE's inode, else "no"
inode_held() {
	"$PY" -c '
import os, sys
want = os.stat(sys.argv[2], follow_symlinks=False)
fds = "/proc/%s/fd" % sys.argv[1]
held = False
for fd in os.listdir(fds):
    try:
        st = os.stat(os.path.join(fds, fd))
    except OSError:
        continue
    held |= (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino)
print("yes" if held else "no")' "$1" "$2"
}
pair_node_held() { stat "$M_MNT/fa" >/dev/null && [ "$(inode_held "$M_PID" "$M_PATH/fa")" = yes ]; }
pair_node_freed() { [ "$(inode_held "$M_PID" "$M_PATH/fa")" = no ]; }
drop_inodes() { sync && echo 2 >/proc/sys/vm/drop_caches; }
forget_pair() { # DESCRIPTION : drop the kernel's inodes and wait until the pair's node is freed
	check "$1: the daemon's node of fa and fb holds a descriptor" wait_until 5 pair_node_held
	check "$1: drop the kernel's inodes" drop_inodes
	check "$1: the daemon freed the node of fa and fb" wait_until 10 pair_node_freed
}
step set "a hard link pair" "create f fa
create f fb" 'echo one > fa && ln fa fb'
forget_pair "first forget"
step set "chmod through one name after a forget changes both records" "meta f fa
meta f fb" 'chmod 604 fb'
forget_pair "second forget"
step set "data written through one name after a forget changes both records" "modify f fa
modify f fb" 'echo two >> fa'

# the journal count in status matches the entries
n=$("$DFSR_BIN" journal -c "$M_CONF" --json | json 'len(d)')
check_eq "status journal = number of journal entries" "$n" "$(folder_field "$M_CONF" share journal)"
# every entry has the fields of the contract
check "journal entries have seq, op, type, path, uid, gvsn, time" bash -c \
	"'$DFSR_BIN' journal -c '$M_CONF' --json | '$PY' -c '
import json, sys
e = json.load(sys.stdin)
assert e, \"empty journal\"
for x in e:
    for k in (\"seq\", \"op\", \"type\", \"path\", \"uid\", \"gvsn\", \"time\"):
        assert k in x, (k, x)
    assert x[\"op\"] in (\"create\", \"modify\", \"meta\", \"rename\", \"delete\"), x
    assert x[\"type\"] in (\"f\", \"d\", \"l\"), x
seqs = [x[\"seq\"] for x in e]
assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), \"seq not increasing\"
'"
check_eq "journal --list 3 gives 3 entries" "3" "$("$DFSR_BIN" journal -c "$M_CONF" --json --list 3 | json 'len(d)')"
check_eq "journal --from N starts at N" "5" "$("$DFSR_BIN" journal -c "$M_CONF" --json --from 5 --list 1 | json 'd[0]["seq"]')"
check "plain journal output names the paths" bash -c "'$DFSR_BIN' journal -c '$M_CONF' | grep -q barrier.1"
stop_member "$M_CONF"
check "dfsr journal works while the member is stopped" bash -c \
	"'$DFSR_BIN' journal -c '$M_CONF' --json | grep -q barrier.1"

# Hard links after a restart: the new daemon's nodes know only the names looked up since;
# the consistency scan at start registers both names of the pair made above.
start_member "$M_CONF"
wait_normal "$M_CONF" 60 || die "member did not reach normal after the restart"
step set "chmod through one name after a restart changes both records" "meta f fa
meta f fb" 'chmod 640 fa'
step set "data written through one name after a restart changes both records" "modify f fa
modify f fb" 'echo three >> fb'
step set "remove the pair" "delete f fa
delete f fb" 'rm fa fb'

# A name holding a newline is one line of `dfsr journal` (escaped), never two: a user who
# can write to the share cannot forge journal lines, nor event-log lines.
from=$(journal_next "$M_CONF")
echo x >"$M_MNT/evil"$'\n'"1 create f forged"
check "the text journal shows it as one escaped line" wait_until 20 bash -c \
	"'$DFSR_BIN' journal -c '$M_CONF' --from $from | grep -qx '[0-9]* create f evil\\\\n1 create f forged'"
check "and no forged line" bash -c \
	"! '$DFSR_BIN' journal -c '$M_CONF' --from $from | grep -qx '1 create f forged'"
check_eq "--json keeps the real name" "evil"$'\n'"1 create f forged" \
	"$("$DFSR_BIN" journal -c "$M_CONF" --json --from "$from" | json 'd[0]["path"]')"
stop_member "$M_CONF"
finish
