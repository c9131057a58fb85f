#!/usr/bin/env bash
# scan.sh - changes made to the local path behind the mount's back (while unmounted) are
# found by the consistency scan at the next start and journaled with the right op; a
# touch-only change and filtered names make no entry.
. "$(dirname "$0")/lib.sh"
it_init

make_member alpha
start_member "$M_CONF"
wait_normal "$M_CONF" 60 || die "member did not reach normal"
mkdir "$M_MNT/dir"
for f in modify chmod chown xattr delete rename touch same; do
	echo "content of $f" >"$M_MNT/$f"
done
echo inner >"$M_MNT/dir/inner"
mkdir "$M_MNT/gone-dir"
echo x >"$M_MNT/gone-dir/x"
wait_until 20 journal_has "$M_CONF" 0 "create f gone-dir/x" || die "setup not journaled"
files_before=$(folder_field "$M_CONF" share files)
stop_member "$M_CONF"
from=$(journal_next "$M_CONF")

# ---- behind the back ----------------------------------------------------------------------
P=$M_PATH
echo "more" >>"$P/modify"
chmod 600 "$P/chmod"
chown "$NOBODY" "$P/chown"
setfattr -n user.new -v 1 "$P/xattr"
rm "$P/delete"
mv "$P/rename" "$P/renamed"
touch -d '2001-01-01' "$P/touch"
cp -p "$P/same" "$P/same.copy" && mv "$P/same.copy" "$P/same"   # same content, new inode
echo new >"$P/added"
mkdir -p "$P/newdir/sub"
echo deep >"$P/newdir/sub/deep"
rm -r "$P/gone-dir"
echo tmp >"$P/ignored.tmp"
echo bak >"$P/~ignored"

start_member "$M_CONF"
check "member reaches normal after the scan" wait_normal "$M_CONF" 60
check "scan: the modified file" wait_until 30 journal_has "$M_CONF" "$from" "modify f modify"
ops=$(journal_ops "$M_CONF" "$from")
printf '%s\n' "$ops" | sed 's/^/    journal: /'
has() { grep -qxF "$1" <<<"$ops"; }
hasnt() { ! grep -q " $1\$" <<<"$ops"; }
check "scan: modify f modify" has "modify f modify"
check "scan: meta f chmod" has "meta f chmod"
check "scan: meta f chown" has "meta f chown"
check "scan: meta f xattr" has "meta f xattr"
check "scan: delete f delete" has "delete f delete"
check "scan: create f added" has "create f added"
check "scan: create d newdir" has "create d newdir"
check "scan: create d newdir/sub" has "create d newdir/sub"
check "scan: create f newdir/sub/deep" has "create f newdir/sub/deep"
check "scan: delete d gone-dir (removed with its file)" has "delete d gone-dir"
if has "rename f renamed"; then
	say "note: the scan recognised the rename (same inode)"
else
	check "scan: a renamed file is a rename, or a delete plus a create" \
		bash -c "printf '%s\n' \"\$0\" | grep -qxF 'delete f rename' && printf '%s\n' \"\$0\" | grep -qxF 'create f renamed'" "$ops"
fi
check "scan: touch-only makes no entry" hasnt "touch"
grep -q ' same$' <<<"$ops" && say "note: same content under a new inode made: $(printf '%s\n' "$ops" | grep ' same$' | tr '\n' ';')"
check "scan: filtered *.tmp makes no entry" hasnt "ignored.tmp"
check "scan: filtered ~* makes no entry" hasnt "~ignored"
check "scan: inner file untouched makes no entry" hasnt "dir/inner"
check "scan: DfsrPrivate makes no entry" bash -c "! printf '%s\n' \"\$0\" | grep -q ' DfsrPrivate'" "$ops"
# counts: +added +deep -delete -gone-dir/x  (renamed counted once)
check_eq "status files after the scan" "$((files_before + 2 - 2))" "$(folder_field "$M_CONF" share files)"
check_eq "the edited content is what the mount shows" "$(cat "$P/modify")" "$(cat "$M_MNT/modify")"

# a second start with no changes finds nothing, also after the save-by-rename pattern of
# editors and office programs (write a filtered temporary name, rename it over the file)
echo "saved by an editor" >"$M_MNT/doc.tmp" && mv -f "$M_MNT/doc.tmp" "$M_MNT/modify"
echo "saved again, longer than before" >"$M_MNT/~doc" && mv -f "$M_MNT/~doc" "$M_MNT/modify"
check "the saved file is journaled" wait_until 20 journal_has "$M_CONF" 0 "modify f modify"
stop_member "$M_CONF"
from=$(journal_next "$M_CONF")
start_member "$M_CONF"
check "member reaches normal again" wait_normal "$M_CONF" 60
mkdir "$M_MNT/barrier"
check "barrier journaled" wait_until 20 journal_has "$M_CONF" "$from" "create d barrier"
check_eq "a restart without changes journals nothing (the scan agrees with the journal)" \
	"create d barrier" "$(journal_ops "$M_CONF" "$from")"
stop_member "$M_CONF"
finish
