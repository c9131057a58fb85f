# tests/integration/lib.sh - shared helpers of the integration scripts (sourced, not run).
#
# Every script starts real `dfsr` members with real FUSE mounts in a temporary workspace,
# asserts what a user would see, and cleans up whatever it made, even when it fails:
#
#   . "$(dirname "$0")/lib.sh"
#   make_member alpha                # key, config, local path, mount point
#   start_member "$M_CONF"           # dfsr mount -c; records the daemon's pid and mounts
#   check "file visible" test -f "$M_MNT/a"
#   stop_member "$M_CONF"
#   finish                           # exit 0, or 1 if any check failed
#
# Environment (set by ctest, see CMakeLists.txt): DFSR_BIN (the program), DFSR_POSIX (the
# posix_conformance program), DFSR_SRC (the source tree). Without them the build/ directory
# of the source tree is used. DFSR_KEEP=1 keeps the workspace (made under TMPDIR or /tmp).
#
# Skips (exit 77) only when /dev/fuse or root is missing and CI is not "true".
# Sanitizer reports of every process started here (the detached daemon included) are
# written under the workspace and make the test fail.

set -u -o pipefail

IT_NAME=$(basename "${0%.sh}")
LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DFSR_SRC=${DFSR_SRC:-$(cd "$LIB_DIR/../.." && pwd)}
DFSR_BIN=${DFSR_BIN:-$DFSR_SRC/build/dfsr}
DFSR_POSIX=${DFSR_POSIX:-$DFSR_SRC/build/posix_conformance}
NOBODY=65534
# The system python (a python3 found first on root's PATH may live where uid 65534 cannot go).
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
export PY

FAILS=0
CHECKS=0
IT_PIDS=()    # daemons started by this script (add with it_track_pid)
declare -A IT_PID_START=() # their start times (proc_start), to tell them from a reused pid
IT_MOUNTS=()  # mount points this script may have caused
IT_CONFS=()   # configs of members started here
WS=""

say() { printf '[%s] %s\n' "$IT_NAME" "$*"; }
die() {
	say "FATAL: $*"
	FAILS=$((FAILS + 1))
	exit 1
}

skip_or_fail() {
	if [ "${CI:-}" = "true" ]; then
		say "FAIL (CI must not skip): $*"
		exit 1
	fi
	say "SKIP: $*"
	exit 77
}

# check DESCRIPTION CMD... : run CMD; count and report a failure, never exit.
check() {
	local desc=$1
	shift
	CHECKS=$((CHECKS + 1))
	if "$@" >"${WS:-/tmp}/check.out" 2>&1; then
		return 0
	fi
	FAILS=$((FAILS + 1))
	say "FAIL: $desc"
	say "      command: $*"
	if [ -s "${WS:-/tmp}/check.out" ]; then
		head -c 2000 "${WS:-/tmp}/check.out" | sed 's/^/      | /'
	fi
	return 1
}

# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq() {
	CHECKS=$((CHECKS + 1))
	if [ "$2" == "$3" ]; then
		return 0
	fi
	FAILS=$((FAILS + 1))
	say "FAIL: $1"
	say "      expected: $(printf '%s' "$2" | head -c 2000)"
	say "      actual:   $(printf '%s' "$3" | head -c 2000)"
	return 1
}

# check_fails DESCRIPTION CMD... : CMD must exit non-zero.
check_fails() {
	local desc=$1
	shift
	CHECKS=$((CHECKS + 1))
	if ! "$@" >/dev/null 2>&1; then
		return 0
	fi
	FAILS=$((FAILS + 1))
	say "FAIL: $desc (command succeeded: $*)"
	return 1
}

# wait_until TIMEOUT_SECONDS CMD... : poll CMD every 0.1 s until it succeeds or time is up.
wait_until() {
	local timeout=$1
	shift
	local deadline=$((SECONDS + timeout))

	while :; do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		if [ $SECONDS -ge $deadline ]; then
			return 1
		fi
		sleep 0.1
	done
}

# ---- JSON ---------------------------------------------------------------------------------

# json EXPR : evaluate a Python expression over the JSON document on stdin (bound to d).
# Strings print raw, everything else as JSON.
json() {
	"$PY" -c '
import json, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
print(v if isinstance(v, str) else json.dumps(v))' "$1"
}

dfsr() { "$DFSR_BIN" "$@"; }

status_json() { "$DFSR_BIN" status -c "$1" --json "${@:2}"; }

# status_field CONF EXPR : e.g. status_field "$M_CONF" 'd["folders"][0]["files"]'
status_field() { status_json "$1" | json "$2"; }

# folder_field CONF FOLDER KEY
folder_field() {
	status_json "$1" | json "[f for f in d['folders'] if f['name'] == '$2'][0]['$3']"
}

# field_is CONF FOLDER KEY VALUE : true when the folder's status field equals VALUE.
field_is() { [ "$(folder_field "$1" "$2" "$3" 2>/dev/null)" = "$4" ]; }

# journal_has CONF FROM "OP TYPE PATH" : true when an entry with seq >= FROM matches exactly.
# (Never `producer | grep -q` under pipefail: grep leaves at the first match, and the
# producer's next write dies of SIGPIPE, which fails the pipeline although it matched.)
journal_has() {
	local ops
	ops=$(journal_ops "$1" "$2" "${@:4}" 2>/dev/null) || return 1
	grep -qxF "$3" <<<"$ops"
}

# event_seen CONF ID : true when the event log holds an event with that id.
event_seen() {
	local ids
	ids=$(events_ids "$1") || { echo "dfsr events failed"; return 1; }
	grep -qx "$2" <<<"$ids" && return 0
	echo "event ids seen: $(printf '%s' "$ids" | tr '\n' ' ')"
	return 1
}

# journal_lines CONF [FROM_SEQ] [extra args]: "SEQ OP TYPE PATH" per journal entry.
journal_lines() {
	local conf=$1 from=${2:-0}
	"$DFSR_BIN" journal -c "$conf" --json --from "$from" "${@:3}" | "$PY" -c '
import json, sys
for e in json.load(sys.stdin):
    print(e["seq"], e["op"], e["type"], e["path"])'
}

# journal_ops CONF FROM : "OP TYPE PATH" of the entries with seq >= FROM.
journal_ops() { journal_lines "$@" | cut -d' ' -f2-; }

# journal_next CONF : the seq the next journal entry will get (1 + the largest, or 0).
journal_next() {
	"$DFSR_BIN" journal -c "$1" --json "${@:2}" | "$PY" -c '
import json, sys
e = json.load(sys.stdin)
print(max([x["seq"] for x in e]) + 1 if e else 0)'
}

# events_ids CONF : the ids of every stored event, one per line.
events_ids() {
	"$DFSR_BIN" events -c "$1" --json "${@:2}" | "$PY" -c '
import json, sys
for e in json.load(sys.stdin):
    print(e["id"])'
}

count_event() { events_ids "$1" | grep -cx "$2" || true; }

# ---- workspace and members -----------------------------------------------------------------

mounted() { findmnt -rn -M "$1" >/dev/null 2>&1; }

# mounts_under DIR : mount points below DIR, from /proc/self/mountinfo.
mounts_under() {
	awk -v d="$1" '{ p = $5; gsub(/\\040/, " ", p); if (index(p, d "/") == 1 || p == d) print p }' \
		/proc/self/mountinfo
}

# it_init [--no-fuse] : checks, workspace, sanitizer logs, cleanup trap.
it_init() {
	if [ "${1:-}" != --no-fuse ] && [ ! -c /dev/fuse ]; then
		skip_or_fail "/dev/fuse is missing"
	fi
	if [ "$(id -u)" -ne 0 ]; then
		skip_or_fail "needs root (FUSE allow_other, DfsrPrivate owned by root)"
	fi
	[ -x "$DFSR_BIN" ] || die "DFSR_BIN '$DFSR_BIN' is not an executable"
	WS=$(mktemp -d "${TMPDIR:-/tmp}/dfsr-it-$IT_NAME.XXXXXX") || die "mktemp failed"
	chmod 0755 "$WS"
	mkdir -m 1777 "$WS/san"
	# Sanitizer reports of every process below, detached daemons included, land in files.
	local asan=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
	local ubsan=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
	export ASAN_OPTIONS="$asan:log_path=$WS/san/asan"
	export UBSAN_OPTIONS="$ubsan:log_path=$WS/san/ubsan"
	export LSAN_OPTIONS=${LSAN_OPTIONS:-exitcode=23}
	trap it_cleanup EXIT
	trap 'exit 130' INT TERM
	say "workspace $WS"
}

# pid_alive PID : true while the process exists and is not a zombie.
pid_alive() {
	local st
	[ -n "$1" ] || return 1
	st=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

# proc_start PID : the process's start time (field 22 of /proc/PID/stat, clock ticks since
# boot); fails when there is no such process. A pid and its start time name one process:
# pids are reused (within two minutes on a busy machine, pid_max 32768).
proc_start() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	s=${s##*) } # after the command name, which may hold spaces and parentheses
	# shellcheck disable=SC2086 # split into fields on purpose
	set -- $s
	[ -n "${20:-}" ] || return 1
	echo "${20}"
}

# it_track_pid PID : a daemon this script started; it_cleanup stops it if it still runs.
it_track_pid() {
	IT_PIDS+=("$1")
	IT_PID_START[$1]=$(proc_start "$1" || echo gone)
}

# still_ours PID : PID is alive and still the process it_track_pid saw, not another one
# that was given the pid after ours exited (another test's member, say).
still_ours() {
	pid_alive "$1" || return 1
	[ -z "${IT_PID_START[$1]:-}" ] || [ "$(proc_start "$1")" = "${IT_PID_START[$1]}" ]
}

not_ours() { ! still_ours "$1"; }

# it_stop_daemons : SIGTERM (then SIGKILL) to every tracked daemon that still runs.
it_stop_daemons() {
	local p
	for p in "${IT_PIDS[@]}"; do
		if still_ours "$p"; then
			say "cleanup: daemon $p still running; SIGTERM"
			kill -TERM "$p" 2>/dev/null || true
			wait_until 10 pid_gone "$p" || { still_ours "$p" && kill -KILL "$p" 2>/dev/null; } || true
		fi
	done
}

it_cleanup() {
	local rc=$? m p conf

	trap - EXIT
	for conf in "${IT_CONFS[@]}"; do
		if [ -n "$(member_pid_of "$conf")" ]; then
			timeout 30 "$DFSR_BIN" umount -c "$conf" >/dev/null 2>&1 || true
		fi
	done
	for m in "${IT_MOUNTS[@]}"; do
		if mounted "$m"; then
			fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		fi
	done
	it_stop_daemons
	for m in $(mounts_under "$WS" | sort -r); do
		say "cleanup: lazy unmount of leftover $m"
		umount -l "$m" 2>/dev/null || true
	done
	# Sanitizer reports fail the test.
	if [ -n "$WS" ] && compgen -G "$WS/san/*" >/dev/null; then
		for p in "$WS"/san/*; do
			if [ -s "$p" ]; then
				say "FAIL: sanitizer report $p:"
				sed 's/^/    /' "$p" | head -200
				FAILS=$((FAILS + 1))
			fi
		done
	fi
	if [ $FAILS -gt 0 ] && [ $rc -eq 0 ]; then
		rc=1
	fi
	if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -n "$WS" ]; then
		for p in "$WS"/*.log; do
			[ -s "$p" ] || continue
			say "---- $p (last 40 lines)"
			tail -n 40 "$p" | sed 's/^/    /'
		done
	fi
	if [ -n "$WS" ] && [ "${DFSR_KEEP:-0}" != 1 ] && [ -z "$(mounts_under "$WS")" ]; then
		chattr -R -i "$WS" 2>/dev/null || true
		rm -rf --one-file-system "$WS"
	elif [ -n "$WS" ]; then
		say "workspace kept: $WS"
	fi
	exit $rc
}

# finish : report and exit (the EXIT trap cleans up).
finish() {
	if [ $FAILS -gt 0 ]; then
		say "$FAILS of $CHECKS checks FAILED"
		exit 1
	fi
	say "all $CHECKS checks passed"
	exit 0
}

# write_member_conf CONF NAME : the [member] section (control socket in the workspace).
write_member_conf() {
	local conf=$1 name=$2
	[ -e "$WS/$name.key" ] || "$DFSR_BIN" keygen "$WS/$name.key" >/dev/null ||
		die "dfsr keygen $WS/$name.key failed"
	cat >"$conf" <<EOF
[member]
name = $name
key = $WS/$name.key
control = $WS/$name.sock
EOF
}

# add_folder CONF FOLDER PATH MOUNT [EXTRA KEY=VALUE LINES...]
add_folder() {
	local conf=$1 folder=$2 path=$3 mnt=$4 line
	shift 4
	{
		printf '\n[folder %s]\npath = %s\nmount = %s\nprimary = yes\n' "$folder" "$path" "$mnt"
		for line in "$@"; do
			printf '%s\n' "$line"
		done
	} >>"$conf"
	IT_MOUNTS+=("$mnt")
}

# make_member NAME [--same] [EXTRA FOLDER LINES...]
# Sets M_NAME, M_CONF, M_PATH (local path), M_MNT (mount point; = M_PATH with --same).
# The folder is named "share".
make_member() {
	local name=$1 same=0
	shift
	if [ "${1:-}" = "--same" ]; then
		same=1
		shift
	fi
	# shellcheck disable=SC2034 # part of the interface for scripts
	M_NAME=$name
	M_CONF=$WS/$name.conf
	M_PATH=$WS/$name/path
	M_MNT=$WS/$name/mnt
	mkdir -p "$M_PATH"
	chmod 0755 "$WS/$name" "$M_PATH"
	if [ $same = 1 ]; then
		M_MNT=$M_PATH
	else
		mkdir -p "$M_MNT"
		chmod 0755 "$M_MNT"
	fi
	write_member_conf "$M_CONF" "$name"
	add_folder "$M_CONF" share "$M_PATH" "$M_MNT" "$@"
}

# member_pid_of CONF : the running daemon's pid from `dfsr status --json`, or nothing.
member_pid_of() {
	timeout 20 "$DFSR_BIN" status -c "$1" --json 2>/dev/null | json 'd["pid"]' 2>/dev/null || true
}

# start_member CONF [mount args] : `dfsr mount -c CONF`; returns once it is mounted.
# Sets M_PID. Fails the test if the mount command fails.
start_member() {
	local conf=$1 log
	shift
	log=$WS/$(basename "$conf" .conf).mount.log
	IT_CONFS+=("$conf")
	if ! timeout 120 "$DFSR_BIN" mount -c "$conf" "$@" >>"$log" 2>&1; then
		say "dfsr mount -c $conf failed:"
		sed 's/^/    /' "$log"
		die "cannot start the member"
	fi
	M_PID=$(member_pid_of "$conf")
	[ -n "$M_PID" ] || die "dfsr status -c $conf --json gives no pid after mount returned"
	it_track_pid "$M_PID"
}

# stop_member CONF : `dfsr umount -c CONF`; checks the daemon exited and nothing is mounted.
stop_member() {
	local conf=$1 pid
	pid=$(member_pid_of "$conf")
	check "dfsr umount -c $(basename "$conf") succeeds" timeout 150 "$DFSR_BIN" umount -c "$conf"
	if [ -n "$pid" ]; then
		check "daemon $pid has exited when dfsr umount returned" pid_gone "$pid"
		wait_until 30 pid_gone "$pid" || true
	fi
	local m
	for m in $(conf_mounts "$conf"); do
		check "$m is unmounted after dfsr umount" not_mounted "$m"
	done
}

# conf_mounts CONF : the mount = values of a config.
conf_mounts() { sed -n 's/^[[:space:]]*mount[[:space:]]*=[[:space:]]*//p' "$1"; }

# all_normal CONF : true when every folder of the running member is in state normal.
all_normal() {
	status_json "$1" 2>/dev/null | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d["folders"] and all(f["state"] == "normal" for f in d["folders"]) else 1)'
}

# wait_normal CONF [TIMEOUT]
wait_normal() { wait_until "${2:-60}" all_normal "$1"; }

pid_gone() { ! pid_alive "$1"; }

# pids_with_cmdline_suffix TEXT : pids whose command line (arguments joined by spaces) ends
# with TEXT (no pgrep: procps is not on a minimal Debian).
pids_with_cmdline_suffix() {
	local f pid cmd
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/}
		pid=${pid%/cmdline}
		cmd=$(tr '\0' ' ' 2>/dev/null <"$f" | sed 's/ $//') || continue
		case $cmd in
		*"$1") [ "$pid" != $$ ] && [ "$pid" != "$BASHPID" ] && echo "$pid" ;;
		esac
	done
	return 0
}
not_mounted() { ! mounted "$1"; }

# tree_listing DIR : "path type mode uid gid size mtime" of everything below DIR, sorted
# (no size for directories: it depends on the directory's history, not its content).
tree_listing() {
	(cd "$1" && find . \( -type d -printf '%p %y %m %U %G - %T@\n' \) -o \
		-printf '%p %y %m %U %G %s %T@\n' | LC_ALL=C sort)
}

# as_nobody CMD... : run CMD as uid/gid 65534 with no supplementary groups.
as_nobody() { setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups -- "$@"; }

# errno_of OP PATH [ARG] : try one system call; prints OK or the errno name (EROFS, ...).
# OPs: create mkdir unlink rmdir rename link symlink chmod chown setxattr removexattr
#      write truncate read list stat utime
errno_of() {
	"$PY" - "$@" <<'EOF'
import errno, os, sys
op, path = sys.argv[1], sys.argv[2]
arg = sys.argv[3] if len(sys.argv) > 3 else None
try:
    if op == "create":
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    elif op == "mkdir":
        os.mkdir(path, 0o755)
    elif op == "unlink":
        os.unlink(path)
    elif op == "rmdir":
        os.rmdir(path)
    elif op == "rename":
        os.rename(path, arg)
    elif op == "link":
        os.link(path, arg)
    elif op == "symlink":
        os.symlink(arg, path)
    elif op == "chmod":
        os.chmod(path, int(arg, 8))
    elif op == "chown":
        os.chown(path, int(arg), -1)
    elif op == "setxattr":
        os.setxattr(path, "user.test", b"v")
    elif op == "removexattr":
        os.removexattr(path, arg)
    elif op == "write":
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"x")
        os.close(fd)
    elif op == "truncate":
        os.truncate(path, 0)
    elif op == "read":
        with open(path, "rb") as f:
            f.read()
    elif op == "list":
        os.listdir(path)
    elif op == "stat":
        os.stat(path)
    elif op == "utime":
        os.utime(path)
    else:
        print("BADOP")
        sys.exit(2)
    print("OK")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
EOF
}

# check_errno DESCRIPTION EXPECTED(|ALTERNATIVE...) OP PATH [ARG]
check_errno() {
	local desc=$1 want=$2 got
	shift 2
	got=$(errno_of "$@")
	CHECKS=$((CHECKS + 1))
	if [[ "|$want|" == *"|$got|"* ]]; then
		return 0
	fi
	FAILS=$((FAILS + 1))
	say "FAIL: $desc: $* gave $got, expected $want"
	return 1
}

# check_errno_as_nobody: as check_errno, run as uid 65534.
check_errno_as_nobody() {
	local desc=$1 want=$2 got
	shift 2
	got=$(as_nobody "$PY" -c 'import sys' >/dev/null 2>&1 && errno_of_nobody "$@")
	CHECKS=$((CHECKS + 1))
	if [[ "|$want|" == *"|$got|"* ]]; then
		return 0
	fi
	FAILS=$((FAILS + 1))
	say "FAIL: $desc (as uid $NOBODY): $* gave $got, expected $want"
	return 1
}

errno_of_nobody() {
	local f
	f=$(declare -f errno_of)
	as_nobody bash -c "$f; errno_of \"\$@\"" errno_of "$@"
}

# ---- replication groups ------------------------------------------------------------------
#
#   group_setup 3                    # alpha (primary), bravo, charlie on 127.0.0.1-3, one port
#   member_start 1; member_start 2   # (any order)
#   (or: group_start 1 2             # both, then members_wait 90 or die)
#   echo hi >"${G_MNT[1]}/a"
#   members_wait 60 || die "no sync"
#   check_trees_equal "trees equal"  # `dfsr hash -r` of every local path
#
# Member i (1-based) has G_NAME[i], G_CONF[i], G_PATH[i] (local path), G_MNT[i] (mount
# point), G_ADDR[i] (IP address, listening on G_PORT), G_PUB[i] (public key), G_PRIMARY[i]
# (yes/no), G_FOLDER_EXTRA[i] (more lines for its [folder share] section),
# G_PEER_EXTRA["i,j"] (more lines for member i's [peer <j>] section, e.g. a bandwidth) and
# G_WRAP[i] (a command prefix for `dfsr mount`, e.g. "nsenter --net=/run/netns/X").
# Change any of them, then group_write_conf i (and restart or `dfsr reload`).

G_N=0
G_PORT=""
G_NAMES=(- alpha bravo charlie delta echo foxtrot golf hotel)
declare -a G_NAME=() G_CONF=() G_PATH=() G_MNT=() G_ADDR=() G_PUB=() G_PRIMARY=()
declare -a G_FOLDER_EXTRA=() G_RUNNING=() G_WRAP=() G_PID=()
declare -A G_PEER_EXTRA=()

# port_in_use PORT : true when some TCP socket (v4 or v6) has that local port.
port_in_use() {
	local hex
	hex=$(printf '%04X' "$1")
	awk -v p=":$hex" 'NR > 1 && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# free_port [TAKEN...] : a random TCP port in 20000-59999 that no socket uses now (several
# test runs on one machine must not share the 5722 of the examples) and that is none of
# TAKEN (ports this script picked and nothing listens on yet).
free_port() {
	local p i
	for i in $(seq 1 100); do
		p=$((20000 + (RANDOM * 32768 + RANDOM + $$ + i) % 40000))
		[[ " $* " != *" $p "* ]] || continue
		port_in_use "$p" || { echo "$p"; return 0; }
	done
	return 1
}

# group_setup N [--primary "I J..."] [EXTRA FOLDER LINES...] : N members that are each
# other's partners. Member 1 is the primary unless --primary says otherwise.
group_setup() {
	local n=$1 primaries="1" i line
	shift
	if [ "${1:-}" = --primary ]; then
		primaries=$2
		shift 2
	fi
	[ "$n" -ge 1 ] && [ "$n" -lt ${#G_NAMES[@]} ] || die "group_setup: bad member count $n"
	G_N=$n
	G_PORT=$(free_port) || die "no free TCP port"
	for ((i = 1; i <= n; i++)); do
		G_NAME[i]=${G_NAMES[i]}
		G_CONF[i]=$WS/${G_NAME[i]}.conf
		G_PATH[i]=$WS/${G_NAME[i]}/path
		G_MNT[i]=$WS/${G_NAME[i]}/mnt
		G_ADDR[i]=127.0.0.$i
		G_RUNNING[i]=0
		G_WRAP[i]=""
		G_PID[i]=""
		G_FOLDER_EXTRA[i]=""
		for line in "$@"; do
			G_FOLDER_EXTRA[i]+="$line"$'\n'
		done
		G_PRIMARY[i]=no
		[[ " $primaries " == *" $i "* ]] && G_PRIMARY[i]=yes
		mkdir -p "${G_PATH[i]}" "${G_MNT[i]}"
		chmod 0755 "$WS/${G_NAME[i]}" "${G_PATH[i]}" "${G_MNT[i]}"
		G_PUB[i]=$("$DFSR_BIN" keygen "$WS/${G_NAME[i]}.key") || die "dfsr keygen failed"
		[ -n "${G_PUB[i]}" ] || die "dfsr keygen printed no public key"
		IT_MOUNTS+=("${G_MNT[i]}")
	done
	for ((i = 1; i <= n; i++)); do
		group_write_conf "$i"
	done
	say "group of $n on port $G_PORT: ${G_NAME[*]:1}"
}

# group_write_conf I : (re)writes member I's config from the G_ variables.
group_write_conf() {
	local i=$1 j
	{
		printf '[member]\nname = %s\nlisten = %s:%s\nkey = %s\ncontrol = %s\n' \
			"${G_NAME[i]}" "${G_ADDR[i]}" "$G_PORT" "$WS/${G_NAME[i]}.key" "$WS/${G_NAME[i]}.sock"
		printf '\n[folder share]\npath = %s\nmount = %s\nprimary = %s\n' \
			"${G_PATH[i]}" "${G_MNT[i]}" "${G_PRIMARY[i]}"
		printf '%s' "${G_FOLDER_EXTRA[i]}"
		for ((j = 1; j <= G_N; j++)); do
			[ "$j" -ne "$i" ] || continue
			printf '\n[peer %s]\naddress = %s:%s\npublic_key = %s\n' \
				"${G_NAME[j]}" "${G_ADDR[j]}" "$G_PORT" "${G_PUB[j]}"
			[ -z "${G_PEER_EXTRA["$i,$j"]:-}" ] || printf '%s\n' "${G_PEER_EXTRA["$i,$j"]}"
		done
	} >"${G_CONF[i]}"
}

# member_start I [mount args] : `dfsr mount -c` (behind G_WRAP[I]); returns once mounted.
member_start() {
	local i=$1 conf log pid
	shift
	conf=${G_CONF[i]}
	log=$WS/${G_NAME[i]}.mount.log
	[[ " ${IT_CONFS[*]} " == *" $conf "* ]] || IT_CONFS+=("$conf")
	# shellcheck disable=SC2086 # G_WRAP is a command prefix split on spaces on purpose
	if ! timeout 120 ${G_WRAP[i]} "$DFSR_BIN" mount -c "$conf" "$@" >>"$log" 2>&1; then
		say "dfsr mount -c $conf failed:"
		sed 's/^/    /' "$log"
		die "cannot start member ${G_NAME[i]}"
	fi
	pid=$(member_pid_of "$conf")
	[ -n "$pid" ] || die "dfsr status -c $conf --json gives no pid after mount returned"
	it_track_pid "$pid"
	G_PID[i]=$pid
	G_RUNNING[i]=1
}

# group_start I... : the usual start of a test's group: member_start each of I... in order,
# then `dfsr wait` on every running member (members_wait 90); the test dies if they never
# get in sync.
group_start() {
	local i names=""
	[ $# -gt 0 ] || die "group_start: no member"
	for i in "$@"; do
		member_start "$i"
		names+="${names:+, }${G_NAME[i]}"
	done
	members_wait 90 || die "$names never got in sync"
}

# member_stop I : `dfsr umount -c` with the checks of stop_member.
member_stop() {
	stop_member "${G_CONF[$1]}"
	G_RUNNING[$1]=0
	G_PID[$1]=""
}

# member_kill I : kill -9 of the daemon, then the dead mount is unmounted as an
# administrator would.
member_kill() {
	local i=$1 pid
	pid=$(member_pid_of "${G_CONF[i]}")
	[ -n "$pid" ] || pid=${G_PID[i]}
	[ -n "$pid" ] || die "member_kill: no pid for ${G_NAME[i]}"
	# G_PID's daemon may be dead already and its pid another process's
	if still_ours "$pid"; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait_until 20 not_ours "$pid" || die "member ${G_NAME[i]} ($pid) survived kill -9"
	if mounted "${G_MNT[i]}"; then
		fusermount3 -u "${G_MNT[i]}" 2>/dev/null || umount "${G_MNT[i]}" 2>/dev/null ||
			umount -l "${G_MNT[i]}" 2>/dev/null || true
	fi
	wait_until 20 not_mounted "${G_MNT[i]}" || die "dead mount ${G_MNT[i]} stays mounted"
	G_RUNNING[i]=0
	G_PID[i]=""
}

# members_running : the indexes of the running members, one line.
members_running() {
	local i out=""
	for ((i = 1; i <= G_N; i++)); do
		[ "${G_RUNNING[i]:-0}" = 1 ] && out+="$i "
	done
	echo "${out% }"
}

# peer_field I PEER_NAME KEY : a field of member I's entry for PEER_NAME in folder share.
peer_field() {
	status_json "${G_CONF[$1]}" | json "[p for p in [f for f in d['folders'] if f['name'] == 'share'][0]['peers'] if p['name'] == '$2'][0]['$3']"
}

# bytes_received I : the sum of bytes_received over member I's partners (folder share).
bytes_received() {
	status_json "${G_CONF[$1]}" | json "sum(p['bytes_received'] for p in [f for f in d['folders'] if f['name'] == 'share'][0]['peers'])"
}

# peers_connected I [J...] : true when member I reports every other running member (or
# every J) connected.
peers_connected() {
	local i=$1 j
	shift
	[ $# -gt 0 ] || set -- $(members_running)
	for j in "$@"; do
		[ "$j" != "$i" ] || continue
		[ "$(peer_field "$i" "${G_NAME[j]}" connected 2>/dev/null)" = true ] || return 1
	done
}

# group_connected [I...] : every running member (or every I) connected to every other.
group_connected() {
	local i
	[ $# -gt 0 ] || set -- $(members_running)
	for i in "$@"; do
		peers_connected "$i" "$@" || return 1
	done
}

# members_wait [TIMEOUT [I...]] : every running member (or every I) connected to every
# other one, then `dfsr wait` on each, in passes until one pass finds every member in sync
# at once (a member that had to wait may have passed changes on to one already asked).
# Says what is pending and returns 1 on timeout.
members_wait() {
	local timeout=${1:-60} deadline i rem pend t0 slow
	shift || true
	[ $# -gt 0 ] || set -- $(members_running)
	deadline=$((SECONDS + timeout))
	if ! wait_until "$timeout" group_connected "$@"; then
		say "members_wait: partners not all connected after ${timeout}s"
		for i in "$@"; do
			say "  ${G_NAME[i]}: $(status_json "${G_CONF[i]}" 2>&1 |
				json "[(p['name'], p['connected']) for p in d['folders'][0]['peers']]" 2>&1)"
		done
		return 1
	fi
	while :; do
		slow=0
		for i in "$@"; do
			rem=$((deadline - SECONDS))
			[ $rem -ge 1 ] || rem=1
			t0=$(date +%s%N)
			if ! pend=$("$DFSR_BIN" wait -c "${G_CONF[i]}" --timeout "$rem" 2>&1); then
				say "members_wait: ${G_NAME[i]} not in sync after ${timeout}s: $pend"
				group_diagnose "$@"
				return 1
			fi
			[ $(($(date +%s%N) - t0)) -lt 1500000000 ] || slow=1
		done
		[ $slow = 1 ] || return 0
	done
}

# group_diagnose [I...] : what each member holds for its partners (backlog lists).
group_diagnose() {
	local i j
	[ $# -gt 0 ] || set -- $(members_running)
	for i in "$@"; do
		say "  ${G_NAME[i]}: $(status_json "${G_CONF[i]}" 2>&1 | json "[(f['state'], [(p['name'], 'conn' if p['connected'] else 'down', 'in', p['backlog_in'], 'out', p['backlog_out']) for p in f['peers']]) for f in d['folders']]" 2>&1)"
		for j in "$@"; do
			[ "$i" != "$j" ] || continue
			say "  ${G_NAME[i]} -> ${G_NAME[j]}: $("$DFSR_BIN" backlog -c "${G_CONF[i]}" \
				--peer "${G_NAME[j]}" --list 5 2>&1 | tr '\n' ' ' | head -c 600)"
		done
	done
}

# tree_hashes DIR : `dfsr hash -r DIR` (the listing that must be equal on every member).
tree_hashes() { "$DFSR_BIN" hash -r "$1"; }

# trees_equal [I...] : `dfsr hash -r` of the members' local paths (default: all) are equal;
# prints the difference otherwise.
trees_equal() {
	local first="" i
	[ $# -gt 0 ] || set -- $(seq 1 "$G_N")
	for i in "$@"; do
		tree_hashes "${G_PATH[i]}" >"$WS/tree.$i" 2>&1 || { cat "$WS/tree.$i"; return 1; }
		if [ -z "$first" ]; then
			first=$i
		elif ! cmp -s "$WS/tree.$first" "$WS/tree.$i"; then
			echo "${G_NAME[first]} and ${G_NAME[i]} differ:"
			diff "$WS/tree.$first" "$WS/tree.$i" | head -40
			return 1
		fi
	done
}

# mounts_equal [I...] : the same over the mounts of running members (default: all running);
# the mounts must also show what the local paths hold.
mounts_equal() {
	local i
	[ $# -gt 0 ] || set -- $(members_running)
	for i in "$@"; do
		tree_hashes "${G_MNT[i]}" >"$WS/mtree.$i" 2>&1 || { cat "$WS/mtree.$i"; return 1; }
		tree_hashes "${G_PATH[i]}" >"$WS/ptree.$i" 2>&1 || { cat "$WS/ptree.$i"; return 1; }
		if ! cmp -s "$WS/mtree.$i" "$WS/ptree.$i"; then
			echo "${G_NAME[i]}: the mount and the local path differ:"
			diff "$WS/ptree.$i" "$WS/mtree.$i" | head -40
			return 1
		fi
		if ! cmp -s "$WS/mtree.$1" "$WS/mtree.$i"; then
			echo "the mounts of ${G_NAME[$1]} and ${G_NAME[i]} differ:"
			diff "$WS/mtree.$1" "$WS/mtree.$i" | head -40
			return 1
		fi
	done
}

# check_trees_equal DESCRIPTION [I...] : a check that the local paths of every member (or
# every I) and the mounts of those running agree (allowing 15 s for the last installs
# after `dfsr wait`).
check_trees_equal() {
	local desc=$1
	shift
	if ! wait_until 15 trees_equal "$@"; then
		check "$desc (local paths)" trees_equal "$@"
	else
		CHECKS=$((CHECKS + 1))
	fi
	local run=() i
	for i in ${*:-$(members_running)}; do
		[ "${G_RUNNING[i]:-0}" = 1 ] && run+=("$i")
	done
	if ! wait_until 15 mounts_equal "${run[@]}"; then
		check "$desc (mounts)" mounts_equal "${run[@]}"
	else
		CHECKS=$((CHECKS + 1))
	fi
}

# conflicts_lines I [--preexisting] : "TYPE PATH PRESERVED SIZE" per manifest entry.
conflicts_lines() {
	"$DFSR_BIN" conflicts -c "${G_CONF[$1]}" --json "${@:2}" | "$PY" -c '
import json, sys
for e in json.load(sys.stdin):
    print(e["type"], e["path"], e["preserved"], e["size"])'
}

# conflict_has I TYPE PATH [--preexisting] : the manifest of member I has such an entry.
conflict_has() {
	local out
	out=$(conflicts_lines "$1" "${@:4}") || { echo "dfsr conflicts failed: $out"; return 1; }
	printf '%s\n' "$out" | awk -v t="$2" -v p="$3" '$1 == t && $2 == p { f = 1 } END { exit !f }' &&
		return 0
	echo "${G_NAME[$1]}'s manifest${4:+ ($4)}: ${out:-empty}"
	return 1
}

# preserved_path I TYPE PATH [--preexisting] : the file preserved for the last such entry,
# under DfsrPrivate/ConflictAndDeleted (or PreExisting) of member I's local path.
preserved_path() {
	local dir=ConflictAndDeleted name
	[ "${4:-}" != --preexisting ] || dir=PreExisting
	name=$(conflicts_lines "$1" "${@:4}" | awk -v t="$2" -v p="$3" '$1 == t && $2 == p { n = $3 } END { print n }')
	[ -n "$name" ] || return 1
	echo "${G_PATH[$1]}/DfsrPrivate/$dir/$name"
}

# preserved_name_ok NAME BASENAME : NAME is BASENAME-{UID}-v<counter> (docs/conflicts.md §9).
preserved_name_ok() {
	[[ "$1" =~ ^.+-\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}-v[0-9]+$ ]] &&
		[ "${1%-\{*}" = "$2" ]
}

# content_hashes DIR : sha256 of every regular file below DIR (data only), one per line.
content_hashes() {
	[ -d "$1" ] || return 0
	find "$1" -type f -print0 | xargs -0 -r sha256sum | cut -d' ' -f1
}

# conflict_none I PATH [--preexisting] : the manifest of member I has no entry for PATH.
conflict_none() {
	local out
	out=$(conflicts_lines "$1" "${@:3}") || { echo "dfsr conflicts failed: $out"; return 1; }
	printf '%s\n' "$out" | awk -v p="$2" '$2 == p { f = 1 } END { exit f }' && return 0
	echo "${G_NAME[$1]}'s manifest: $out"
	return 1
}

# drop_peer I NAME : removes the [peer NAME] section from member I's config.
drop_peer() {
	awk -v h="[peer $2]" '
		/^\[/ { skip = ($0 == h) }
		!skip' "${G_CONF[$1]}" >"${G_CONF[$1]}.new" && mv "${G_CONF[$1]}.new" "${G_CONF[$1]}"
}
