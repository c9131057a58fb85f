#!/usr/bin/env bash
# hash.sh - `dfsr hash` (no running member needed): the replication hash covers data,
# symlink targets, permission bits, owner, group and xattrs (ACLs included), not names or
# times. -r output is relative, sorted, directories end in '/', DfsrPrivate is skipped.
. "$(dirname "$0")/lib.sh"
it_init --no-fuse

T=$WS/t
mkdir -p "$T/d/e" "$T/empty" "$T/DfsrPrivate/Staging"
echo alpha >"$T/a"
echo beta >"$T/d/b"
head -c 200000 /dev/urandom >"$T/d/e/big"
ln -s a "$T/link"
setfattr -n user.x -v 1 "$T/d/b"
echo hidden >"$T/DfsrPrivate/Staging/x"
H() { "$DFSR_BIN" hash -r "$1"; }
hex_of() { "$DFSR_BIN" hash "$1" | cut -d' ' -f1; }

out=$(H "$T")
printf '%s\n' "$out" | sed 's/^/    /'
check "every line is 'HEX  PATH' with a 64-digit SHA-256" \
	bash -c "printf '%s\n' \"\$0\" | grep -qvE '^[0-9a-f]{64}  .+\$' && exit 1 || exit 0" "$out"
check_eq "paths are relative, sorted, directories with '/', DfsrPrivate skipped" \
	"a d/ d/b d/e/ d/e/big empty/ link" \
	"$(printf '%s\n' "$out" | sed 's/^[0-9a-f]*  //' | tr '\n' ' ' | sed 's/ $//')"
check "the listing is sorted (C locale)" bash -c "printf '%s\n' \"\$0\" | cut -c67- | LC_ALL=C sort -c" "$out"
check_eq "hash without -r prints 'HEX  PATH' as given" "$T/a" "$("$DFSR_BIN" hash "$T/a" | cut -c67-)"
check_eq "the same file hashes the same with and without -r" \
	"$(hex_of "$T/a")" "$(printf '%s\n' "$out" | awk '$2 == "a" { print $1 }')"
check_eq "several paths give one line each" "2" "$("$DFSR_BIN" hash "$T/a" "$T/d/b" | wc -l)"

cp -a "$T" "$WS/u"
U=$WS/u
check_eq "cp -a gives an equal hash -r" "$out" "$(H "$U")"

differs() { # DESCRIPTION CMD... : after CMD in U, hash -r must differ; the caller reverts
	local desc=$1
	shift
	"$@"
	check "hash -r differs after $desc" test "$(H "$U")" != "$out"
}
same() {
	local desc=$1
	shift
	"$@"
	check_eq "hash -r unchanged after $desc" "$out" "$(H "$U")"
}

differs "chmod" chmod 600 "$U/a"
same "chmod back" chmod 644 "$U/a"
differs "chown" chown "$NOBODY" "$U/a"
same "chown back" chown 0 "$U/a"
differs "chgrp" chgrp "$NOBODY" "$U/d/b"
same "chgrp back" chgrp 0 "$U/d/b"
differs "setfattr" setfattr -n user.new -v 2 "$U/a"
same "removing the xattr" setfattr -x user.new "$U/a"
differs "changing an xattr value" setfattr -n user.x -v 2 "$U/d/b"
same "restoring the xattr value" setfattr -n user.x -v 1 "$U/d/b"
differs "setfacl" setfacl -m "u:$NOBODY:r" "$U/a"
same "removing the ACL" setfacl -b "$U/a"
chmod 644 "$U/a"
differs "a data change (same size)" bash -c "echo ALPHA >'$U/a'"
same "restoring the data (new mtime)" bash -c "echo alpha >'$U/a'"
differs "a change deep in a big file" bash -c "printf Z | dd of='$U/d/e/big' bs=1 seek=150000 conv=notrunc status=none"
cp -p "$T/d/e/big" "$U/d/e/big"
same "restoring the big file" true
differs "a new symlink target" bash -c "ln -sfn d/b '$U/link'"
same "the old symlink target" bash -c "ln -sfn a '$U/link'"
differs "chmod of a directory" chmod 700 "$U/d"
same "chmod of the directory back" chmod 755 "$U/d"
same "touch" touch "$U/a" "$U/d/b" "$U/d"
same "touch -d into the past" touch -d '2001-01-01' "$U/a"
same "a change under DfsrPrivate" bash -c "echo changed >'$U/DfsrPrivate/Staging/x'"

before=$(hex_of "$U/d/b")
mv "$U/d/b" "$U/d/b2"
check_eq "a file keeps its hash when renamed" "$before" "$(hex_of "$U/d/b2")"
check_eq "hash -r after mv differs only in the name" \
	"$(printf '%s\n' "$out" | cut -d' ' -f1 | sort)" "$(H "$U" | cut -d' ' -f1 | sort)"
mv "$U/d/b2" "$U/d/b"
check_eq "hash -r equal after moving back" "$out" "$(H "$U")"
mv "$U/d" "$U/d2" && mv "$U/d2" "$U/d"
check_eq "hash -r equal after moving a directory away and back" "$out" "$(H "$U")"

check_fails "hash of a missing path fails" "$DFSR_BIN" hash "$WS/missing"
check "hash needs no running member (no config given)" "$DFSR_BIN" hash -r "$T"
: >"$WS/zero"
check "an empty file hashes" "$DFSR_BIN" hash "$WS/zero"
check "hash of an empty file differs from one with data" test "$(hex_of "$WS/zero")" != "$(hex_of "$T/a")"

# One line per file whatever its name: a newline, a carriage return or a backslash in a
# path is escaped as sha256sum(1) escapes it (the line then starts with a backslash).
N=$WS/names
mkdir -p "$N"
echo a >"$N/plain"
echo b >"$N/new"$'\n'"line"
echo c >"$N/back\\slash"
lines=$("$DFSR_BIN" hash -r "$N" | wc -l)
check_eq "hash -r: one line per file (3 files)" 3 "$lines"
check "a name with a newline is escaped as new\\nline on a line starting with a backslash" bash -c \
	"'$DFSR_BIN' hash -r '$N' | grep -qxE '\\\\[0-9a-f]{64}  new\\\\nline'"
check "a backslash is doubled" bash -c \
	"'$DFSR_BIN' hash -r '$N' | grep -qxE '\\\\[0-9a-f]{64}  back\\\\\\\\slash'"
check "a plain name is unchanged" bash -c "'$DFSR_BIN' hash -r '$N' | grep -qxE '[0-9a-f]{64}  plain'"
check "hash of one such path escapes it too" bash -c \
	"'$DFSR_BIN' hash '$N/new'$'\\n''line' | grep -qE '^\\\\[0-9a-f]{64}  .*new\\\\nline\$'"
finish
