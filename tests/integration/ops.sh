#!/usr/bin/env bash
# ops.sh - everyday tools through the mount give exactly what they give natively: cp -a,
# tar with xattrs and ACLs, rsync -aAXH copy a tree with modes, owners, links, xattrs and
# ACLs; `dfsr hash -r` and a full listing of the copy in the mount equal those of the same
# copy made in a plain directory. Then mmap writes, an open-unlinked file, the atime of a
# file journaled at its release, a 64 MiB file.
. "$(dirname "$0")/lib.sh"
it_init

make_member alpha
start_member "$M_CONF"
wait_normal "$M_CONF" 60 || die "member did not reach normal"
NATIVE=$WS/native
mkdir -p "$NATIVE"

# ---- the source tree ------------------------------------------------------------------------
S=$WS/src
mkdir -p "$S/a/b/c" "$S/empty" "$S/sticky" "$S/acl-dir" "$S/with space"
printf '' >"$S/zero"
printf 'x' >"$S/one"
head -c 4097 /dev/urandom >"$S/a/odd"
head -c 300000 /dev/urandom >"$S/a/b/c/random"
echo "script" >"$S/a/run.sh"
chmod 755 "$S/a/run.sh"
echo secret >"$S/a/private"
chmod 600 "$S/a/private"
echo suid >"$S/a/suid"
chmod 4755 "$S/a/suid"
chmod 1777 "$S/sticky"
chmod 2775 "$S/a/b"
echo nobody >"$S/a/nobody"
chown "$NOBODY:$NOBODY" "$S/a/nobody"
chown "0:$NOBODY" "$S/a/b/c"
echo "utf8" >"$S/with space/é ü ✓.txt"
ln -s a/odd "$S/rel-link"
ln -s /etc/hostname "$S/abs-link"
ln -s does/not/exist "$S/dangling"
ln "$S/one" "$S/hard-one"
setfattr -n user.color -v blue "$S/a/odd"
setfattr -n user.empty "$S/one"
setfattr -n user.dir -v yes "$S/a"
setfacl -m "u:$NOBODY:rw" "$S/a/private"
setfacl -d -m "u:$NOBODY:rx" "$S/acl-dir"
echo inherits >"$S/acl-dir/file"
# Every time in the past: rsync does not set a time that is within the same second as the
# copy's own creation, and that would make the two copies differ by when they were made.
find "$S" -exec touch -h -d '2010-05-05 05:05:05.5' {} +
touch -d '2001-02-03 04:05:06.123456789' "$S/a/odd"
touch -h -d '2002-02-03 04:05:06' "$S/rel-link"
touch -d '2003-01-01' "$S/a/b/c" "$S/a"

copy_cp() { cp -a "$1/." "$2/"; }
copy_tar() {
	(cd "$1" && tar --xattrs --xattrs-include='*' --acls -cpf - .) |
		(cd "$2" && tar --xattrs --xattrs-include='*' --acls --same-owner -xpf -)
}
copy_rsync() { rsync -aAXH "$1/" "$2/"; }

for how in cp tar rsync; do
	mkdir "$M_MNT/$how" "$NATIVE/$how"
	check "$how into the mount succeeds" "copy_$how" "$S" "$M_MNT/$how"
	check "$how natively succeeds" "copy_$how" "$S" "$NATIVE/$how"
	check_eq "$how: dfsr hash -r of the mount copy = native copy" \
		"$("$DFSR_BIN" hash -r "$NATIVE/$how")" "$("$DFSR_BIN" hash -r "$M_MNT/$how")"
	check_eq "$how: dfsr hash -r of the local path = native copy" \
		"$("$DFSR_BIN" hash -r "$NATIVE/$how")" "$("$DFSR_BIN" hash -r "$M_PATH/$how")"
	check_eq "$how: listing (type mode owner size mtime) of the mount copy = native copy" \
		"$(tree_listing "$NATIVE/$how")" "$(tree_listing "$M_MNT/$how")"
	check_eq "$how: xattrs and ACLs of the mount copy = native copy" \
		"$(cd "$NATIVE/$how" && getfattr -R -h -d -m - . 2>/dev/null)" \
		"$(cd "$M_MNT/$how" && getfattr -R -h -d -m - . 2>/dev/null)"
	check_eq "$how: hard links kept" "2" "$(stat -c %h "$M_MNT/$how/one")"
	check "$how: diff -r finds nothing" diff -r --no-dereference "$NATIVE/$how" "$M_MNT/$how"
done
check "the cp -a copy is journaled" wait_until 20 journal_has "$M_CONF" 0 "create f cp/a/b/c/random"
check "the rsync copy (temporary name, then rename) is journaled" wait_until 20 journal_has "$M_CONF" 0 "rename f rsync/a/b/c/random"

# ---- mmap ------------------------------------------------------------------------------------
mm_write() {
	"$PY" - "$1" <<'EOF'
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 1 << 20)
m = mmap.mmap(fd, 1 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
for i in range(0, 1 << 20, 4096):
    m[i:i + 16] = b"page %10d\n" % i
m[100:105] = b"HELLO"
m.flush()
m.close()
os.close(fd)
EOF
}
from=$(journal_next "$M_CONF")
check "mmap write into the mount" mm_write "$M_MNT/mm"
check "mmap write natively" mm_write "$NATIVE/mm"
check "mmap result equals native" cmp "$NATIVE/mm" "$M_MNT/mm"
check "mmap result is in the local path" cmp "$NATIVE/mm" "$M_PATH/mm"
check "the mmap'ed file is journaled" wait_until 20 journal_has "$M_CONF" "$from" "create f mm"
check_eq "the journaled version is the written one (hash)" \
	"$("$DFSR_BIN" hash "$NATIVE/mm" | cut -d' ' -f1)" "$("$DFSR_BIN" hash "$M_MNT/mm" | cut -d' ' -f1)"

# ---- open-unlinked ------------------------------------------------------------------------------
open_unlinked() {
	"$PY" - "$1" <<'EOF'
import os, sys
p = sys.argv[1]
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"before ")
os.unlink(p)
os.write(fd, b"after")
st = os.fstat(fd)
os.lseek(fd, 0, 0)
data = os.read(fd, 100)
print(st.st_nlink, st.st_size, data.decode(), os.path.exists(p))
os.close(fd)
EOF
}
check_eq "open-unlinked file behaves as natively" "$(open_unlinked "$NATIVE/ul")" "$(open_unlinked "$M_MNT/ul")"
check "the unlinked file is gone from the local path" test ! -e "$M_PATH/ul"
check "no hidden leftovers (.fuse_hidden*) in the local path" \
	bash -c "! ls -A '$M_PATH' | grep -q fuse_hidden"

# ---- a deleted file reopened for writing through /proc/self/fd --------------------------------
# A journaled file, deleted through the mount while a reader holds it, is reopened for writing
# and truncated through the reader's /proc/self/fd link: natively both work (the file has no
# name left, only the descriptors reach it). The mount refused the open with ESTALE (an open
# for writing of a tracked file with no link); nothing of it is journaled after its delete.
reopen_deleted() {
	"$PY" - "$1" <<'EOF'
import os, sys
p = sys.argv[1]
fd = os.open(p, os.O_RDONLY)
os.unlink(p)
out = []
try:
    w = os.open("/proc/self/fd/%d" % fd, os.O_WRONLY | os.O_APPEND)
    os.write(w, b" appended")
    os.close(w)
    out.append("reopened")
except OSError as e:
    out.append("reopen: " + os.strerror(e.errno))
out.append(os.pread(fd, 100, 0).decode())
try:
    os.truncate("/proc/self/fd/%d" % fd, 4)
    out.append("truncated")
except OSError as e:
    out.append("truncate: " + os.strerror(e.errno))
out.append(os.pread(fd, 100, 0).decode())
out.append(str(os.fstat(fd).st_nlink))
print("|".join(out))
os.close(fd)
EOF
}
from=$(journal_next "$M_CONF")
echo "kept content" >"$NATIVE/rd"
echo "kept content" >"$M_MNT/rd"
check "rd is journaled before its delete" wait_until 20 journal_has "$M_CONF" "$from" "create f rd"
native=$(reopen_deleted "$NATIVE/rd")
check_eq "a deleted file reopened for writing through /proc/self/fd behaves as natively" \
	"$native" "$(reopen_deleted "$M_MNT/rd")"
say "natively: $native"
check "its delete is journaled" wait_until 20 journal_has "$M_CONF" "$from" "delete f rd"
check "dfsr wait: the reopened handle's release is settled" \
	"$DFSR_BIN" wait -c "$M_CONF" --timeout 20
check_eq "and nothing else of it" "create f rd
delete f rd" "$(journal_ops "$M_CONF" "$from" | grep ' rd$')"

# ---- the hash at release moves no atime -----------------------------------------------------
# Closing a written handle journals the file, hashing it through that handle's descriptor;
# like every hash, that read must leave the atime alone (relatime would move an atime that
# is older than the mtime).
write_old_atime() { # $1: open (creating) and append, set an old atime, then close; $2: rw
	"$PY" - "$1" "${2:-w}" <<'EOF'
import os, subprocess, sys
acc = os.O_RDWR if sys.argv[2] == "rw" else os.O_WRONLY
fd = os.open(sys.argv[1], acc | os.O_CREAT | os.O_APPEND, 0o644)
os.write(fd, b"data\n")
subprocess.run(["touch", "-a", "-d", "@1000000000", sys.argv[1]], check=True)
os.close(fd)
EOF
}
from=$(journal_next "$M_CONF")
check "create, write, set an old atime, close" write_old_atime "$M_MNT/at"
check "the new file is journaled" wait_until 20 journal_has "$M_CONF" "$from" "create f at"
check_eq "journaling the new file left its atime" 1000000000 "$(stat -c %X "$M_PATH/at")"
from=$(journal_next "$M_CONF")
check "reopen, append, set an old atime, close" write_old_atime "$M_MNT/at"
check "the change is journaled" wait_until 20 journal_has "$M_CONF" "$from" "modify f at"
check_eq "journaling the change left its atime" 1000000000 "$(stat -c %X "$M_PATH/at")"
# a write-only open is made O_RDWR|O_NOATIME for the writeback cache; a read-write one is
# given O_NOATIME only at its release, for the hash
from=$(journal_next "$M_CONF")
check "reopen read-write, append, set an old atime, close" write_old_atime "$M_MNT/at" rw
check "that change is journaled" wait_until 20 journal_has "$M_CONF" "$from" "modify f at"
check_eq "journaling that change left its atime" 1000000000 "$(stat -c %X "$M_PATH/at")"

# ---- a 64 MiB file ------------------------------------------------------------------------------
head -c $((64 << 20)) /dev/urandom >"$WS/big"
from=$(journal_next "$M_CONF")
check "copy 64 MiB into the mount" cp "$WS/big" "$M_MNT/big"
check "64 MiB reads back equal through the mount" cmp "$WS/big" "$M_MNT/big"
check "64 MiB equal in the local path" cmp "$WS/big" "$M_PATH/big"
cp "$WS/big" "$NATIVE/big"
check "the big file is journaled" wait_until 30 journal_has "$M_CONF" "$from" "create f big"
from=$(journal_next "$M_CONF")
head -c 100000 /dev/urandom >"$WS/patch"
dd if="$WS/patch" of="$M_MNT/big" bs=4096 seek=3000 conv=notrunc status=none
dd if="$WS/patch" of="$NATIVE/big" bs=4096 seek=3000 conv=notrunc status=none
check "partial overwrite in the middle equals native" cmp "$NATIVE/big" "$M_MNT/big"
check "its overwrite is journaled" wait_until 30 journal_has "$M_CONF" "$from" "modify f big"
b=$(folder_field "$M_CONF" share bytes)
check "status bytes ($b) include the 64 MiB file" test "$b" -ge $((64 << 20))

stop_member "$M_CONF"
finish
