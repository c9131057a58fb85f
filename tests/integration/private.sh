#!/usr/bin/env bash
# private.sh - the DfsrPrivate rules (CONTRACT.md, "What a user sees in the mount"):
# hidden from a listing of the root, reachable by name, read-only through the mount,
# EPERM on renaming or removing it, denied to anyone but root; a DfsrPrivate below the
# root is an ordinary name.
. "$(dirname "$0")/lib.sh"
it_init

make_member alpha
start_member "$M_CONF"
wait_normal "$M_CONF" 60 || die "member did not reach normal"
P=$M_MNT/DfsrPrivate
echo data >"$M_MNT/a"
mkdir "$M_MNT/sub"

# ---- as root --------------------------------------------------------------------------------
check_eq "ls of the mount root hides DfsrPrivate" "a sub" "$(ls -A "$M_MNT" | tr '\n' ' ' | sed 's/ $//')"
check "find does not descend into DfsrPrivate" bash -c "! find '$M_MNT' | grep -q DfsrPrivate"
for e in Staging Installing ConflictAndDeleted PreExisting ConflictAndDeletedManifest.xml \
	PreExistingManifest.xml; do
	check "ls DfsrPrivate shows $e" bash -c "ls '$P' | grep -qx '$e'"
done
check_eq "DfsrPrivate mode and owner through the mount" "700 0 0" "$(stat -c '%a %u %g' "$P")"
check "root reads the manifest" bash -c "grep -q . '$P/ConflictAndDeletedManifest.xml'"
check "the manifest is XML" bash -c "head -c 200 '$P/ConflictAndDeletedManifest.xml' | grep -q '<'"

before=$(tree_listing "$M_PATH/DfsrPrivate" | grep -v '^\./db' | cut -d' ' -f1-6)
seq0=$(journal_next "$M_CONF")

check_errno "create in DfsrPrivate" EROFS create "$P/new"
check_errno "create in DfsrPrivate/Staging" EROFS create "$P/Staging/new"
check_errno "mkdir in DfsrPrivate" EROFS mkdir "$P/newdir"
check_errno "unlink a manifest" EROFS unlink "$P/ConflictAndDeletedManifest.xml"
check_errno "rmdir DfsrPrivate/Staging" "EROFS|ENOTEMPTY" rmdir "$P/Staging"
check_errno "write to a manifest" EROFS write "$P/ConflictAndDeletedManifest.xml"
check_errno "truncate a manifest" EROFS truncate "$P/ConflictAndDeletedManifest.xml"
check_errno "chmod DfsrPrivate/Staging" EROFS chmod "$P/Staging" 0777
check_errno "chown a manifest" EROFS chown "$P/PreExistingManifest.xml" 65534
check_errno "setxattr on a manifest" EROFS setxattr "$P/PreExistingManifest.xml"
check_errno "utime on a manifest" EROFS utime "$P/PreExistingManifest.xml"
check_errno "symlink in DfsrPrivate" EROFS symlink "$P/l" target
check_errno "link a file into DfsrPrivate" "EROFS|EXDEV" link "$M_MNT/a" "$P/a"
check_errno "move a file into DfsrPrivate" "EROFS|EXDEV" rename "$M_MNT/a" "$P/a"
check_errno "move a manifest out of DfsrPrivate" "EROFS|EXDEV" rename "$P/PreExistingManifest.xml" "$M_MNT/m.xml"
check_errno "rename within DfsrPrivate" EROFS rename "$P/Staging" "$P/Staging2"
check_errno "rename DfsrPrivate" EPERM rename "$P" "$M_MNT/Other"
check_errno "rmdir DfsrPrivate" "EPERM|ENOTEMPTY" rmdir "$P"
check_errno "chmod DfsrPrivate" "EPERM|EROFS" chmod "$P" 0777
check_errno "mkdir DfsrPrivate (exists)" "EEXIST|EPERM" mkdir "$P"
check_errno "rename a directory over DfsrPrivate" "EPERM|EROFS|ENOTEMPTY|EEXIST" rename "$M_MNT/sub" "$P"
check_errno "rename a file over DfsrPrivate" "EPERM|EROFS|EISDIR" rename "$M_MNT/a" "$P"
check "rm -rf DfsrPrivate fails" bash -c "! rm -rf '$P' 2>/dev/null"
check "DfsrPrivate still there after rm -rf" test -f "$P/ConflictAndDeletedManifest.xml"
check "the files it guarded are intact" test -f "$M_MNT/a" -a -d "$M_MNT/sub"

after=$(tree_listing "$M_PATH/DfsrPrivate" | grep -v '^\./db' | cut -d' ' -f1-6)
check_eq "nothing changed in DfsrPrivate on disk" "$before" "$after"

# ---- as an unprivileged user ----------------------------------------------------------------
check_eq "uid $NOBODY lists the root without DfsrPrivate" "a sub" \
	"$(as_nobody ls -A "$M_MNT" | tr '\n' ' ' | sed 's/ $//')"
check_errno_as_nobody "list DfsrPrivate" EACCES list "$P"
check_errno_as_nobody "read a manifest" EACCES read "$P/ConflictAndDeletedManifest.xml"
check_errno_as_nobody "create in DfsrPrivate" "EACCES|EROFS" create "$P/x"
check_errno_as_nobody "rename DfsrPrivate" "EACCES|EPERM" rename "$P" "$M_MNT/x"
check_errno_as_nobody "rmdir DfsrPrivate" "EACCES|EPERM" rmdir "$P"
check "uid $NOBODY cannot rm -rf DfsrPrivate" bash -c "! setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups rm -rf '$P' 2>/dev/null"
after=$(tree_listing "$M_PATH/DfsrPrivate" | grep -v '^\./db' | cut -d' ' -f1-6)
check_eq "nothing changed in DfsrPrivate after the user's attempts" "$before" "$after"

# ---- the journal never names DfsrPrivate; a deeper DfsrPrivate is ordinary --------------------
mkdir "$M_MNT/sub/DfsrPrivate"
echo ok >"$M_MNT/sub/DfsrPrivate/file"
check "sub/DfsrPrivate is listed" bash -c "ls '$M_MNT/sub' | grep -qx DfsrPrivate"
check "sub/DfsrPrivate is journaled" wait_until 20 journal_has "$M_CONF" "$seq0" "create d sub/DfsrPrivate"
check "sub/DfsrPrivate/file is journaled" wait_until 20 journal_has "$M_CONF" "$seq0" "create f sub/DfsrPrivate/file"
check "sub/DfsrPrivate can be removed" rm -r "$M_MNT/sub/DfsrPrivate"
nobad=$(journal_ops "$M_CONF" 0 | awk '$3 ~ /^DfsrPrivate(\/|$)/' | head -5)
check_eq "no journal entry under the root DfsrPrivate" "" "$nobad"

stop_member "$M_CONF"

# ---- repaired at start: a loosened mode, missing subfolders and manifests ------------------------
chmod 0755 "$M_PATH/DfsrPrivate"
rmdir "$M_PATH/DfsrPrivate/Installing" 2>/dev/null || rm -rf "$M_PATH/DfsrPrivate/Installing"
rm -f "$M_PATH/DfsrPrivate/PreExistingManifest.xml"
start_member "$M_CONF"
check_eq "DfsrPrivate mode fixed back to 0700" "700" "$(stat -c %a "$M_PATH/DfsrPrivate")"
check "a missing Installing is recreated" test -d "$M_PATH/DfsrPrivate/Installing"
check "a missing manifest is recreated" test -s "$M_PATH/DfsrPrivate/PreExistingManifest.xml"
check_errno_as_nobody "DfsrPrivate denied again after the repair" EACCES list "$M_MNT/DfsrPrivate"
stop_member "$M_CONF"
finish
