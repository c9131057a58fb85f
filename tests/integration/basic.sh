#!/usr/bin/env bash
# basic.sh - mount a folder, drop files into it, see them in the mount and the local path,
# count them in `dfsr status`, unmount cleanly; then the same with mount = path over
# pre-existing files (initial build).
. "$(dirname "$0")/lib.sh"
it_init

# ---- separate mount point ------------------------------------------------------------------
make_member alpha
start_member "$M_CONF"
check "mount point is a FUSE mount" bash -c "findmnt -rn -o FSTYPE -M '$M_MNT' | grep -q '^fuse'"
check "member reaches state normal" wait_normal "$M_CONF" 60

echo hello >"$M_MNT/a.txt"
printf 'second file\n' >"$M_MNT/b.txt"
mkdir "$M_MNT/docs"
head -c 1048576 /dev/urandom >"$WS/big.src"
cp "$WS/big.src" "$M_MNT/docs/big.bin"
ln -s a.txt "$M_MNT/link"

check_eq "ls of the mount" "a.txt b.txt docs link" "$(ls "$M_MNT" | tr '\n' ' ' | sed 's/ $//')"
check_eq "ls -A of the mount hides DfsrPrivate" "a.txt b.txt docs link" \
	"$(ls -A "$M_MNT" | tr '\n' ' ' | sed 's/ $//')"
check_eq "cat through the mount" "hello" "$(cat "$M_MNT/a.txt")"
check_eq "cat through the symlink" "hello" "$(cat "$M_MNT/link")"
check "the data is in the local path" cmp -s "$WS/big.src" "$M_PATH/docs/big.bin"
check "the data reads back through the mount" cmp -s "$WS/big.src" "$M_MNT/docs/big.bin"
check_eq "local path holds the files and DfsrPrivate" "DfsrPrivate a.txt b.txt docs link" \
	"$(ls -A "$M_PATH" | tr '\n' ' ' | sed 's/ $//')"
check "DfsrPrivate is 0700 root in the local path" \
	test "$(stat -c '%a %u' "$M_PATH/DfsrPrivate")" = "700 0"

# status: 3 files + 1 symlink ("files" counts regular files and symlinks), 1 folder.
expect_bytes=$(( $(stat -c %s "$M_PATH/a.txt") + $(stat -c %s "$M_PATH/b.txt") + 1048576 + 5 ))
wait_until 20 field_is "$M_CONF" share files 4
st=$(status_json "$M_CONF")
check_eq "status member" "alpha" "$(printf '%s' "$st" | json 'd["member"]')"
check_eq "status folder name" "share" "$(printf '%s' "$st" | json 'd["folders"][0]["name"]')"
check_eq "status state" "normal" "$(printf '%s' "$st" | json 'd["folders"][0]["state"]')"
check_eq "status files (3 files + 1 symlink)" "4" "$(printf '%s' "$st" | json 'd["folders"][0]["files"]')"
check_eq "status folders" "1" "$(printf '%s' "$st" | json 'd["folders"][0]["folders"]')"
b=$(printf '%s' "$st" | json 'd["folders"][0]["bytes"]')
check "status bytes ($b) counts the file data ($((expect_bytes - 5)) bytes of files + link)" \
	test "$b" -ge $((expect_bytes - 5)) -a "$b" -le "$expect_bytes"
check_eq "status pid is the daemon" "$M_PID" "$(printf '%s' "$st" | json 'd["pid"]')"
check "status --json has the contract's shape" bash -c "printf '%s' \"\$0\" | '$PY' -c '
import json, sys
d = json.load(sys.stdin)
assert isinstance(d[\"member\"], str)
for f in d[\"folders\"]:
    for k in (\"name\", \"state\", \"files\", \"folders\", \"bytes\", \"journal\", \"tombstones\"):
        assert k in f, k
    assert set(f[\"staging\"]) >= {\"used\", \"quota\"} and set(f[\"conflict\"]) >= {\"used\", \"quota\"}
    assert set(f[\"initial_sync\"]) >= {\"files_done\", \"files_total\", \"bytes_done\", \"bytes_total\"}
    assert isinstance(f[\"peers\"], list)
    assert f[\"conflict\"][\"quota\"] == 692060160, f[\"conflict\"]
'" "$st"
check "status has staging and conflict quota" \
	test "$(printf '%s' "$st" | json 'd["folders"][0]["staging"]["quota"]')" = 4294967296
njournal=$(printf '%s' "$st" | json 'd["folders"][0]["journal"]')
nentries=$("$DFSR_BIN" journal -c "$M_CONF" --json | json 'len(d)')
check_eq "status journal count = dfsr journal entries" "$nentries" "$njournal"
check "journal has entries for the new files" test "$nentries" -ge 5
check "plain dfsr status works" bash -c "'$DFSR_BIN' status -c '$M_CONF' | grep -q share"
check "events show the mount (2002)" event_seen "$M_CONF" 2002
check_eq "events --since a future day is empty" "0" \
	"$("$DFSR_BIN" events -c "$M_CONF" --json --since 2099-01-01 | json 'len(d)')"
check "events --since 10m includes the mount" bash -c \
	"'$DFSR_BIN' events -c '$M_CONF' --json --since 10m | grep -q 2002"
check "events have time, id, folder, message" bash -c "'$DFSR_BIN' events -c '$M_CONF' --json | '$PY' -c '
import json, sys
e = json.load(sys.stdin)
assert e and all(set(x) >= {\"time\", \"id\", \"folder\", \"message\"} for x in e), e
assert all(x[\"folder\"] == \"share\" for x in e)'"

# removing files updates the counts
rm "$M_MNT/b.txt"
check "files count drops to 3 after rm" wait_until 20 field_is "$M_CONF" share files 3
check_eq "tombstones count the removed file" "1" "$(folder_field "$M_CONF" share tombstones)"

stop_member "$M_CONF"
check "files stay in the local path after umount" cmp -s "$WS/big.src" "$M_PATH/docs/big.bin"
check "events work while stopped (2003 unmounted)" event_seen "$M_CONF" 2003
check_fails "status fails when the member is not running" "$DFSR_BIN" status -c "$M_CONF" --json

# ---- mount = path, over files that were there before the first start ------------------------
make_member bravo --same
mkdir -p "$M_PATH/pre/sub"
echo one >"$M_PATH/pre/one"
echo two >"$M_PATH/pre/sub/two"
echo top >"$M_PATH/top"
start_member "$M_CONF"
check "mount over the local path is a FUSE mount" \
	bash -c "findmnt -rn -o FSTYPE -M '$M_PATH' | grep -q '^fuse'"
check "initial build finishes (state normal)" wait_normal "$M_CONF" 60
check_eq "pre-existing files counted by the initial build" "3" "$(folder_field "$M_CONF" share files)"
check_eq "pre-existing folders counted" "2" "$(folder_field "$M_CONF" share folders)"
check_eq "pre-existing content visible through the mount" "two" "$(cat "$M_PATH/pre/sub/two")"
check_eq "ls of the mount over the path hides DfsrPrivate" "pre top" \
	"$(ls -A "$M_PATH" | tr '\n' ' ' | sed 's/ $//')"
check "DfsrPrivate reachable by name" test -d "$M_PATH/DfsrPrivate/ConflictAndDeleted"
seq0=$(journal_next "$M_CONF")
echo new >"$M_PATH/new"
check "a new file through the mount is journaled" wait_until 20 journal_has "$M_CONF" "$seq0" "create f new"
check "events show the initial build done (1203)" event_seen "$M_CONF" 1203
stop_member "$M_CONF"
check_eq "after umount the local path shows DfsrPrivate again" "DfsrPrivate new pre top" \
	"$(ls -A "$M_PATH" | tr '\n' ' ' | sed 's/ $//')"
check_eq "files intact after umount" "new" "$(cat "$M_PATH/new")"

finish
