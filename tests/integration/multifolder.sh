#!/usr/bin/env bash
# multifolder.sh - one member process serves two [folder] sections: both are mounted, both
# journal into their own database, status and journal tell them apart (--folder), and one
# `dfsr umount` stops both.
. "$(dirname "$0")/lib.sh"
it_init

CONF=$WS/multi.conf
write_member_conf "$CONF" multi
for f in docs media; do
	mkdir -p "$WS/$f/path" "$WS/$f/mnt"
	chmod 0755 "$WS/$f" "$WS/$f/path" "$WS/$f/mnt"
	add_folder "$CONF" "$f" "$WS/$f/path" "$WS/$f/mnt"
done
echo "pre" >"$WS/media/path/pre-existing"
start_member "$CONF"
check "docs is mounted" mounted "$WS/docs/mnt"
check "media is mounted" mounted "$WS/media/mnt"
check "both folders reach normal" wait_normal "$CONF" 60
check_eq "status lists both folders" "docs media" \
	"$(status_json "$CONF" | json '" ".join(sorted(f["name"] for f in d["folders"]))')"
check_eq "one process serves both (one pid)" "$M_PID" "$(status_field "$CONF" 'd["pid"]')"

echo d1 >"$WS/docs/mnt/only-in-docs"
mkdir "$WS/media/mnt/album"
echo m1 >"$WS/media/mnt/album/song"
check "docs journals its file" wait_until 20 journal_has "$CONF" 0 "create f only-in-docs" --folder docs
check "media journals its file" wait_until 20 journal_has "$CONF" 0 "create f album/song" --folder media
check "docs' journal does not hold media's file" \
	bash -c "! '$DFSR_BIN' journal -c '$CONF' --folder docs --json | grep -q album"
check "media's journal does not hold docs' file" \
	bash -c "! '$DFSR_BIN' journal -c '$CONF' --folder media --json | grep -q only-in-docs"
check_eq "docs counts 1 file" "1" "$(folder_field "$CONF" docs files)"
check_eq "media counts 2 files (one pre-existing)" "2" "$(folder_field "$CONF" media files)"
check_eq "status --folder media shows only media" "media" \
	"$(status_json "$CONF" --folder media | json '" ".join(f["name"] for f in d["folders"])')"
check_fails "status --folder of an unknown folder fails" "$DFSR_BIN" status -c "$CONF" --folder nosuch --json
check "events of a folder work" "$DFSR_BIN" events -c "$CONF" --folder media --json

stop_member "$CONF"
check "docs unmounted" not_mounted "$WS/docs/mnt"
check "media unmounted" not_mounted "$WS/media/mnt"
check "each folder has its own DfsrPrivate" test -d "$WS/docs/path/DfsrPrivate/db" -a -d "$WS/media/path/DfsrPrivate/db"
check "journal of a stopped member, per folder" bash -c \
	"'$DFSR_BIN' journal -c '$CONF' --folder media --json | grep -q album/song"
finish
