#!/usr/bin/env bash
# manyfiles.sh - more files than the daemon may hold descriptors: the mount must not keep
# one descriptor per file the kernel remembers (fs/inode.c keeps file handles instead).
# The daemon runs under a hard RLIMIT_NOFILE of 1024 (so its node descriptor budget is
# 512) and makes, walks, reads and removes 3000 files; then the nodes that hold only a
# handle must behave like any other: an open file survives its unlink, symlinks, hard
# links, renames, attributes and xattrs work, and an inode number reused behind the mount
# never shows the old file's node.
. "$(dirname "$0")/lib.sh"
it_init

N=3000
ulimit -n 1024 # soft and hard, inherited by the daemon (which can raise soft to hard only)

make_member alpha
start_member "$M_CONF"
check "member reaches state normal" wait_normal "$M_CONF" 60
check_eq "the daemon's hard open-file limit is 1024" "1024" \
	"$(awk '/Max open files/ { print $5 }' "/proc/$M_PID/limits")"

daemon_fds() { find "/proc/$M_PID/fd" -mindepth 1 | wc -l; }

check "$N files are created through the mount" python3 - "$M_MNT" "$N" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for d in range(10):
    os.mkdir(f"{root}/t{d}")
for i in range(n):
    with open(f"{root}/t{i % 10}/f{i:05d}", "w") as f:
        f.write(str(i))
EOF
fds=$(daemon_fds)
say "daemon descriptors after the create: $fds"
check "the daemon holds fewer descriptors than files ($fds < 1024)" test "$fds" -lt 1024
check_eq "find sees every file" "$N" "$(find "$M_MNT" -type f | wc -l)"
check_eq "ls -lR lists every file" "$N" "$(ls -lR "$M_MNT" | grep -c '^-')"
check "every file reads back its own content" python3 - "$M_MNT" "$N" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    p = f"{root}/t{i % 10}/f{i:05d}"
    assert open(p).read() == str(i), p
    assert os.stat(p).st_size == len(str(i)), p
EOF

check "handle-only nodes: open-unlinked file, symlink, link, rename, attributes, xattrs" \
	python3 - "$M_MNT" <<'EOF'
import os, stat, sys
m = sys.argv[1]
os.mkdir(f"{m}/s")
p = f"{m}/s/openunl"
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b"hello")
os.unlink(p)
st = os.fstat(fd)
assert st.st_size == 5 and st.st_nlink == 0, st
os.fchmod(fd, 0o600)
assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
os.lseek(fd, 0, 0)
assert os.read(fd, 10) == b"hello"
os.close(fd)
os.symlink("target/x", f"{m}/s/ln")
assert os.readlink(f"{m}/s/ln") == "target/x"
os.utime(f"{m}/s/ln", (1000, 2000), follow_symlinks=False)
assert os.lstat(f"{m}/s/ln").st_mtime == 2000
with open(f"{m}/s/a", "w") as f:
    f.write("A")
os.link(f"{m}/s/a", f"{m}/s/a2")
assert os.stat(f"{m}/s/a").st_nlink == 2
assert os.stat(f"{m}/s/a").st_ino == os.stat(f"{m}/s/a2").st_ino
os.rename(f"{m}/s/a2", f"{m}/s/a3")
assert open(f"{m}/s/a3").read() == "A"
os.chmod(f"{m}/s/a", 0o640)
assert stat.S_IMODE(os.stat(f"{m}/s/a").st_mode) == 0o640
os.utime(f"{m}/s/a", (5, 6))
assert os.stat(f"{m}/s/a").st_mtime == 6
os.setxattr(f"{m}/s/a", "user.k", b"v")
assert os.getxattr(f"{m}/s/a", "user.k") == b"v"
os.removexattr(f"{m}/s/a", "user.k")
os.truncate(f"{m}/s/a", 0)
assert os.stat(f"{m}/s/a").st_size == 0
os.mkfifo(f"{m}/s/fifo")
assert stat.S_ISFIFO(os.lstat(f"{m}/s/fifo").st_mode)
EOF

# Inode numbers come back quickly on ext4: delete behind the mount, make a new file, and
# the mount must show the new one (a stale node matched by number alone would not).
check "an inode number reused behind the mount shows the new file" \
	python3 - "$M_MNT" "$M_PATH" <<'EOF'
import os, sys
m, b = sys.argv[1], sys.argv[2]
for i in range(200):
    q = f"s/r{i}"
    with open(f"{m}/{q}", "w") as f:
        f.write("old")
    os.stat(f"{m}/{q}")
    os.unlink(f"{b}/{q}")
    with open(f"{b}/{q}x", "w") as f:
        f.write(f"new{i}")
    assert open(f"{m}/{q}x").read() == f"new{i}", q
    os.unlink(f"{m}/{q}x")
EOF

check "every file is removed through the mount" python3 - "$M_MNT" "$N" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    os.unlink(f"{root}/t{i % 10}/f{i:05d}")
for d in range(10):
    os.rmdir(f"{root}/t{d}")
EOF
check_eq "nothing is left in the local path" "0" "$(find "$M_PATH" -path "$M_PATH/DfsrPrivate" -prune -o -path "$M_PATH/s" -prune -o -type f -print | wc -l)"
stop_member "$M_CONF"
finish
