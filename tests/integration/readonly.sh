#!/usr/bin/env bash
# readonly.sh - a read_only = yes folder (CONTRACT.md: "Writes to a read-only member's mount
# fail with EROFS"): everything reads, every change fails with EROFS, nothing is journaled
# and nothing changes in the local path.
. "$(dirname "$0")/lib.sh"
it_init

make_member alpha "read_only = yes"
mkdir -p "$M_PATH/d"
echo content >"$M_PATH/d/f"
for op in write truncate unlink rename link chmod chown setxattr utime; do
	echo "$op" >"$M_PATH/d/$op"
done
mkdir "$M_PATH/d/emptydir"
ln -s d/f "$M_PATH/l"
start_member "$M_CONF"
wait_normal "$M_CONF" 60 || die "member did not reach normal"
before=$(tree_listing "$M_PATH" | grep -v '^\./DfsrPrivate')
from=$(journal_next "$M_CONF")

check_eq "reading works" "content" "$(cat "$M_MNT/d/f")"
check_eq "symlinks resolve" "content" "$(cat "$M_MNT/l")"
check "listing works" bash -c "ls '$M_MNT/d' | grep -qx f"
check_errno "create" EROFS create "$M_MNT/new"
check_errno "mkdir" EROFS mkdir "$M_MNT/newdir"
check_errno "write" EROFS write "$M_MNT/d/write"
check_errno "truncate" EROFS truncate "$M_MNT/d/truncate"
check_errno "unlink" EROFS unlink "$M_MNT/d/unlink"
check_errno "rmdir" EROFS rmdir "$M_MNT/d/emptydir"
check_errno "rename" EROFS rename "$M_MNT/d/rename" "$M_MNT/d/renamed"
check_errno "link" EROFS link "$M_MNT/d/link" "$M_MNT/d/linked"
check_errno "symlink" EROFS symlink "$M_MNT/s" target
check_errno "chmod" EROFS chmod "$M_MNT/d/chmod" 0600
check_errno "chown" EROFS chown "$M_MNT/d/chown" 65534
check_errno "setxattr" EROFS setxattr "$M_MNT/d/setxattr"
check_errno "utime" EROFS utime "$M_MNT/d/utime"
check_errno_as_nobody "create as uid $NOBODY" "EROFS|EACCES" create "$M_MNT/d/x"
check_eq "nothing changed in the local path" "$before" "$(tree_listing "$M_PATH" | grep -v '^\./DfsrPrivate')"
check_eq "nothing journaled" "" "$(journal_ops "$M_CONF" "$from")"
stop_member "$M_CONF"
finish
