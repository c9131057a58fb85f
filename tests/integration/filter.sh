#!/usr/bin/env bash
# filter.sh - file_filter and subfolder_filter from the config: filtered names get no
# journal entry, a filtered directory's whole subtree is untracked, and moving a tree in or
# out of a filtered place deletes or creates everything in it.
. "$(dirname "$0")/lib.sh"
it_init

make_member alpha "file_filter = *.o, ~*, Thumbs.db" "subfolder_filter = build, .git"
start_member "$M_CONF"
wait_normal "$M_CONF" 60 || die "member did not reach normal"

mark() { journal_next "$M_CONF"; }
ops_since() { journal_ops "$M_CONF" "$1" | LC_ALL=C sort; }
settle() { # BARRIER FROM : wait for the barrier directory's entry
	mkdir "$M_MNT/$1"
	wait_until 20 journal_has "$M_CONF" "$2" "create d $1" || check "barrier $1 journaled" false
}

from=$(mark)
mkdir -p "$M_MNT/src/build/deep" "$M_MNT/.git/objects" "$M_MNT/BUILD"
echo obj >"$M_MNT/src/main.o"
echo obj >"$M_MNT/src/MAIN.O"
echo thumb >"$M_MNT/src/thumbs.db"
echo x >"$M_MNT/src/build/deep/out"
echo x >"$M_MNT/.git/objects/abc"
echo keep >"$M_MNT/src/main.c"
echo tmp >"$M_MNT/src/notfiltered.tmp"   # *.tmp is not in this folder's file_filter
settle b1 "$from"
check_eq "only unfiltered names are journaled" "create d b1
create d src
create f src/main.c
create f src/notfiltered.tmp" "$(ops_since "$from" | grep -v '^modify ')"

from=$(mark)
mv "$M_MNT/src/build" "$M_MNT/src/built"
settle b2 "$from"
check_eq "moving a tree out of a filtered directory name creates all of it" "create d b2
create d src/built
create d src/built/deep
create f src/built/deep/out" "$(ops_since "$from")"

from=$(mark)
mv "$M_MNT/src" "$M_MNT/.git/src"
settle b3 "$from"
check_eq "moving a tracked tree under a filtered directory deletes all of it" "create d b3
delete d src
delete d src/built
delete d src/built/deep
delete f src/built/deep/out
delete f src/main.c
delete f src/notfiltered.tmp" "$(ops_since "$from")"

from=$(mark)
echo y >"$M_MNT/a.o" && mv "$M_MNT/a.o" "$M_MNT/a.c"
mkdir "$M_MNT/dir" && mv "$M_MNT/dir" "$M_MNT/build"
settle b4 "$from"
check_eq "renames out of and into filtered names" "create d b4
create d dir
create f a.c
delete d dir" "$(ops_since "$from")"
check_eq "status counts only tracked entries" "1" "$(folder_field "$M_CONF" share files)"
stop_member "$M_CONF"
finish
