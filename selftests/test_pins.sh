#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Pins: owner-only, removed on a clean exit and on SIGTERM, a live
# instance's name is refused, and a dead process's pins are replaced.
. "$(dirname "$0")/lib.sh"
need_root

INST=$(instance pins)
D=/sys/fs/bpf/bsteer/$INST
head -c 1M /dev/urandom >"$T/src"

"$BSTEER" copy "$T/src" --to "$T/a" --instance "$INST" >/dev/null ||
	fail "copy exited $?"
check "pins removed after a clean exit" [ ! -e "$D" ]

start_live() {	# a copy that waits on a FIFO until we close it
	rm -f "$T/fifo"
	mkfifo "$T/fifo"
	"$BSTEER" copy "$T/fifo" --to "$T/b" --instance "$INST" >"$T/live.out" 2>&1 &
	LIVE=$!
	PIDS+=("$LIVE")
	exec 3>"$T/fifo"
	wait_for 10 [ -e "$D/info" ] || fail "live instance never pinned"
}

start_live
check "instance directory is owner-only" [ "$(stat -c %a "$D")" = 700 ]
check "pins are owner-only" [ "$(stat -c %a "$D/slot_meta")" = 600 ]
if "$BSTEER" copy "$T/src" --to "$T/c" --instance "$INST" 2>"$T/err" >/dev/null; then
	fail "second copy took a live instance's name"
fi
check "refusal names the owner" grep -q "in use by pid $LIVE" "$T/err"
check "refusal touched no output" [ ! -e "$T/c" ]

kill -TERM "$LIVE"
exec 3>&-
wait "$LIVE"
check "pins removed after SIGTERM" [ ! -e "$D" ]

start_live
kill -KILL "$LIVE"
exec 3>&-
wait "$LIVE" 2>/dev/null
check "SIGKILL leaves the pins behind" [ -e "$D/info" ]
"$BSTEER" copy "$T/src" --to "$T/d" --instance "$INST" >/dev/null 2>"$T/err" ||
	fail "restart over stale pins failed: $(cat "$T/err")"
check "restart copied" cmp -s "$T/src" "$T/d"
check "stale pins replaced, then removed" [ ! -e "$D" ]
finish
