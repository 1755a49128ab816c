# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Shared helpers for the shell selftests. Source it first.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
BSTEER=${BSTEER:-$PWD/$BUILD/bsteer}
export BSTEER
# shellcheck disable=SC2034 # for the tests that source this
PROGS=$PWD/$BUILD/selftests/progs
T=$(mktemp -d /tmp/bsteer-test.XXXXXX)
PIDS=()
FAILS=0

# Everything a test started is stopped by PID, and its files removed, on
# any exit.
# BEFORE_KILL and AFTER_KILL: commands (strings) a test adds to undo what
# it made, run before its processes are stopped (an ext4 mount on a
# device a server serves) and after (a mount a killed server left).
BEFORE_KILL=()
AFTER_KILL=()
cleanup() {
	local p c
	for c in "${BEFORE_KILL[@]}"; do
		eval "$c" >/dev/null 2>&1
	done
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	for c in "${AFTER_KILL[@]}"; do
		eval "$c" >/dev/null 2>&1
	done
	rm -rf "$T" ${SHM:+"$SHM"}
}
trap cleanup EXIT

skip() {
	echo "SKIP: $*" >&2
	[ "${CI:-}" = true ] && exit 1
	exit 77
}

need_root() {
	[ "$(id -u)" = 0 ] || skip "needs root for BPF"
}

need_tools() {	# need_tools TOOL...: skip unless every one is installed
	local t
	for t in "$@"; do	# a program, not a function of ours (nbdsh below)
		type -P "$t" >/dev/null || [ -x "/usr/bin/$t" ] || skip "$t not installed (make deps)"
	done
}

# A scratch folder on tmpfs, $SHM, removed on exit with $T.
shm_dir() {
	SHM=$(mktemp -d /dev/shm/bsteer-test.XXXXXX) || skip "no /dev/shm"
}

fail() {
	echo "FAIL: $*" >&2
	FAILS=$((FAILS + 1))
}

check() {	# check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@"; then
		echo "ok: $what"
	else
		fail "$what"
	fi
}

# json FILE KEY: a top-level scalar from a JSON object.
json() {
	python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(str(v).lower() if isinstance(v, bool) else v)' "$1" "$2"
}

# wait_for SECS COMMAND...: poll until the command succeeds.
wait_for() {
	local end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -ge "$end" ] && return 1
		sleep 0.05
	done
}

instance() { echo "t-$1-$$"; }

finish() {
	[ $FAILS -eq 0 ] && exit 0
	# The server's own account of what went wrong, if there was one.
	[ -s "$T/serve.log" ] && { echo "--- serve.log (last 30 lines)" >&2; tail -30 "$T/serve.log" >&2; }
	echo "$FAILS check(s) failed" >&2
	exit 1
}

# start_serve SOCKET ARGS...: bsteer serve on a unix socket, in the
# background; SERVE holds its PID. Waits until it listens: its log says so
# (a socket file alone may be a dead server's, which a restart replaces
# only once it is ready to listen).
start_serve() {
	local sock=$1
	shift
	# Emptied here, not by the redirection below: that happens in the
	# child, and the wait may read the last server's "listening" first.
	: >"$T/serve.log"
	"$BSTEER" serve --listen "unix:$sock" "$@" >"$T/serve.log" 2>&1 &
	SERVE=$!
	PIDS+=("$SERVE")
	# Until it says so, or is gone; 60 s only bounds a hang (it takes
	# well under a second here).
	wait_for 60 sh -c "grep -q 'listening on unix:$sock ' '$T/serve.log' || ! kill -0 $SERVE" 2>/dev/null
	grep -q "listening on unix:$sock " "$T/serve.log" ||
		{ cat "$T/serve.log" >&2; fail "server did not start"; return 1; }
}

# start_nbdkit SOCKET IMAGE: nbdkit's file plugin on a unix socket, in the
# background; KIT holds its PID. nbdkit leaves its socket file behind when
# it exits and will not bind over it: a restart removes it first.
start_nbdkit() {
	rm -f "$1"
	nbdkit -f -U "$1" file "$2" 2>"$T/kit.log" &
	KIT=$!
	PIDS+=("$KIT")
	wait_for 30 sh -c "[ -S '$1' ] || ! kill -0 $KIT" && [ -S "$1" ] ||
		fail "nbdkit did not start"
}

# stop_serve: SIGTERM, and wait for a clean exit (status 0).
stop_serve() {
	kill -TERM "$SERVE"
	wait "$SERVE"
	local rc=$?
	[ $rc -eq 0 ] || { cat "$T/serve.log" >&2; fail "server exited $rc"; }
}

# The client that writes while legs change (test_leg*.sh, test_rbd_move.sh).
WRITER=$PWD/selftests/leg_writer.py
# writer N SECS: it writes to $U for SECS s in the background, logging
# what was acknowledged to $T/ackedN; its PID in WPID, once it has one.
writer() {
	rm -f "$T/started$1"
	/usr/bin/python3 "$WRITER" write "$U" "$2" "$1" "$T/acked$1" "$T/started$1" \
		>"$T/writer$1.log" 2>&1 &
	WPID=$!
	PIDS+=("$WPID")
	wait_for 60 sh -c "[ -e '$T/started$1' ] || ! kill -0 $WPID" || fail "writer $1 did not start"
	[ -e "$T/started$1" ] || { cat "$T/writer$1.log" >&2; fail "writer $1 exited before its first write"; }
}
legstate() {	# legstate LEG: its state in bsteer stat $INST --json (of export 0)
	"$BSTEER" stat "$INST" --json >"$T/st.json" && json "$T/st.json" "exports.0.legs.$1.state"
}

# Debian's python3 has the libnbd bindings; a python3 earlier in PATH may not.
nbdsh() { PATH=/usr/bin:$PATH command nbdsh "$@"; }
