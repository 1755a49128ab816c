#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bsteer leg with a block device (a loop device) as the leg, two workers:
#  - added to a one-leg mirror with --resync while a client writes: the
#    device holds every acknowledged write, byte for byte, read through the
#    device itself; bsteer stat names it;
#  - the file leg removed while another client writes: the device alone
#    serves, and the export reads back what the device holds;
#  - a device smaller than the export is refused, naming its size (a block
#    device's size is not its st_size, which is 0);
#  - once the server is gone, the backing file holds what the export read.
. "$(dirname "$0")/lib.sh"
need_root
need_tools losetup blockdev nbdcopy python3
SIZE=64M
INST=$(instance legblk)
S=$T/s.sock
U="nbd+unix:///m?socket=$S"

# loop FILE: a loop device over FILE in LOOP, detached when the test ends.
# (Not called as $(loop ...): a subshell's AFTER_KILL would be lost.)
loop() {
	LOOP=$(losetup -f --show "$1") || { fail "losetup $1"; finish; }
	AFTER_KILL+=("losetup -d '$LOOP'")
}

head -c $SIZE /dev/urandom >"$T/src"
cp "$T/src" "$T/a.img"
truncate -s $SIZE "$T/dev.img"
truncate -s 16M "$T/small.img"
loop "$T/dev.img"
DEV=$LOOP
loop "$T/small.img"
SMALL=$LOOP
[ -b "$DEV" ] && [ -b "$SMALL" ] || { fail "no loop devices"; finish; }

start_serve "$S" --instance "$INST" --threads 2 --export "m=$T/a.img,policy=mirror" || finish

# --- a device smaller than the export ---
"$BSTEER" leg add "$INST" m "$SMALL" >"$T/out" 2>&1
check "a smaller device: refused (exit 1)" [ $? -eq 1 ]
check "... naming its size" grep -q "the target has 16777216 bytes" "$T/out"

# --- the device added and rebuilt while a client writes ---
writer 1 4
"$BSTEER" leg add "$INST" m "$DEV" --resync --json >"$T/add.json" 2>"$T/add.err" ||
	{ cat "$T/add.err" >&2; fail "leg add --resync exited $?"; }
wait "$WPID" || { cat "$T/writer1.log" >&2; fail "writer 1: a write failed"; }
check "add: done" [ "$(json "$T/add.json" state)" = "done" ]
check "add: rebuilt, the whole export" [ "$(json "$T/add.json" resync.bytes)" = $((64 << 20)) ]
check "the writer got writes in during the add" [ "$(wc -l <"$T/acked1")" -gt 50 ]
check "stat: leg 1 ok" [ "$(legstate 1)" = ok ]
check "stat --json: leg 1 is the device" [ "$(json "$T/st.json" exports.0.legs.1.spec)" = "$DEV" ]
check "the device holds every acknowledged write" \
	/usr/bin/python3 "$WRITER" check "$DEV" "$T/src" "$T/acked1"

# --- the file leg removed while another client writes ---
writer 2 3
"$BSTEER" leg remove "$INST" m 0 --json >"$T/rm.json" 2>"$T/rm.err" ||
	{ cat "$T/rm.err" >&2; fail "leg remove exited $?"; }
wait "$WPID" || { cat "$T/writer2.log" >&2; fail "writer 2: a write failed during the remove"; }
check "remove: done" [ "$(json "$T/rm.json" state)" = "done" ]
check "stat: leg 0 absent" [ "$(legstate 0)" = absent ]
check "the device alone holds every acknowledged write" \
	/usr/bin/python3 "$WRITER" check "$DEV" "$T/src" "$T/acked1" "$T/acked2"
nbdcopy "$U" "$T/back" || fail "nbdcopy out of the export"
check "... and the export reads back what the device holds" cmp -s "$T/back" "$DEV"

stop_serve
check "the device's backing file has the writes (after a flush of the device)" \
	sh -c "blockdev --flushbufs '$DEV' && cmp -s '$T/back' '$T/dev.img'"
finish
