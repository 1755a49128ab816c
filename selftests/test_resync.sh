#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bsteer resync: rebuild a mirror leg through the engine while a client
# writes.
#  - an upstream leg (nbdkit) killed with SIGKILL is marked failed; a fresh,
#    empty nbdkit takes its place; `bsteer resync` reconnects and rebuilds it
#    while a client writes all over the export; afterwards both legs are
#    identical and hold every write the client had acknowledged;
#  - a file leg on a tmpfs that fills up (ENOSPC) is marked failed; once the
#    tmpfs has room, resync reopens it and the legs end identical;
#  - requests that cannot be served are refused with the reason.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdkit
SMALL=
cleanup_mount() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	[ -n "$SMALL" ] && { umount "$SMALL" 2>/dev/null || umount -l "$SMALL"; }
	cleanup
}
trap cleanup_mount EXIT

uri() { echo "nbd+unix:///$1?socket=$T/s.sock"; }
SIZE=64M
INST=$(instance rs)

start_kit() {
	rm -f "$T/kit.sock"
	nbdkit -f --exit-with-parent -U "$T/kit.sock" memory $SIZE >"$T/kit.log" 2>&1 &
	KIT=$!
	PIDS+=("$KIT")
	wait_for 10 [ -S "$T/kit.sock" ] || fail "nbdkit did not start"
}

# --- an upstream leg lost and replaced ---
truncate -s $SIZE "$T/leg0"
start_kit
start_serve "$T/s.sock" --instance "$INST" \
	--export "m=$T/leg0,nbd+unix:///?socket=$T/kit.sock" || finish
head -c $SIZE /dev/urandom >"$T/src"
nbdcopy "$T/src" "$(uri m)" || fail "nbdcopy into the mirror exited $?"
kill -KILL "$KIT"
wait "$KIT" 2>/dev/null
# The next write finds the leg gone: it is marked failed, the write stands.
nbdsh -u "$(uri m)" -c 'h.pwrite(b"after" * 13107 + b"a", 0); h.flush()' ||
	fail "a write with one leg gone"
"$BSTEER" stat "$INST" --json >"$T/stat.json"
check "the lost leg is marked failed" [ "$(json "$T/stat.json" targets.1.failed)" = true ]
start_kit

# A client writes 64K blocks all over the export while the leg is rebuilt,
# never two at once to one block; it records what it had acknowledged.
WRITER_LOG=$T/acked WRITER_STARTED=$T/writing nbdsh -u "$(uri m)" -c '
import os, random, time
BS, N = 65536, 1024
rng = random.Random(7)
acked, busy, seq = {}, {}, 0
def done(blk, val):
    def cb(err):
        del busy[blk]
        if err.value == 0:
            if not acked:
                open(os.environ["WRITER_STARTED"], "w").close()
            acked[blk] = val
        return 1
    return cb
end = time.time() + 3
while time.time() < end:
    blk = rng.randrange(N)
    if blk in busy:
        h.poll(0)
        continue
    seq += 1
    busy[blk] = seq
    h.aio_pwrite((b"%08d" % seq) * (BS // 8), blk * BS, completion=done(blk, seq))
    while h.aio_in_flight() >= 8:
        h.poll(-1)
while h.aio_in_flight() > 0:
    h.poll(-1)
h.flush()
with open(os.environ["WRITER_LOG"], "w") as f:
    for blk, val in acked.items():
        f.write("%d %d\n" % (blk, val))
' &
WRITER=$!
PIDS+=("$WRITER")
# The rebuild starts once the writer has a write acknowledged (a file it
# makes), not after a sleep: on a loaded machine nbdsh may take longer to
# start than the rebuild does to run. 60 s only bounds a hang.
wait_for 60 sh -c "[ -e '$T/writing' ] || ! kill -0 $WRITER" || fail "the writer did not start"
[ -e "$T/writing" ] || fail "the writer exited before its first write"
"$BSTEER" resync "$INST" m 1 --json >"$T/resync.json" 2>"$T/resync.err" ||
	{ cat "$T/resync.err" >&2; fail "bsteer resync exited $?"; }
wait "$WRITER" || fail "the writer exited $?"
check "resync reports done" [ "$(json "$T/resync.json" state)" = "done" ]
check "resync copied the whole export" [ "$(json "$T/resync.json" bytes)" = $((64 << 20)) ]
echo "ranges copied again after client writes: $(json "$T/resync.json" recopied)"
check "the writer got writes in" [ "$(wc -l <"$T/acked")" -gt 100 ]
nbdcopy "nbd+unix:///?socket=$T/kit.sock" "$T/leg1" || fail "nbdcopy from nbdkit exited $?"
check "the legs are identical" cmp -s "$T/leg0" "$T/leg1"
check "every acknowledged write is on both legs" /usr/bin/python3 -c '
import sys
BS = 65536
legs = [open(p, "rb").read() for p in sys.argv[2:]]
for line in open(sys.argv[1]):
    blk, val = map(int, line.split())
    want = (b"%08d" % val) * (BS // 8)
    for d in legs:
        if d[blk * BS:(blk + 1) * BS] != want:
            sys.exit("block %d lacks write %d" % (blk, val))' "$T/acked" "$T/leg0" "$T/leg1"
"$BSTEER" stat "$INST" --json >"$T/stat2.json"
check "the rebuilt leg is back in service" [ "$(json "$T/stat2.json" targets.1.failed)" = false ]
check "and no longer resyncing" [ "$(json "$T/stat2.json" targets.1.resyncing)" = false ]
check "the rebuild was logged" grep -q "leg 1 rebuilt" "$T/serve.log"

# --- refusals ---
refused() {	# refused WHAT PATTERN ARGS...
	local what=$1 pat=$2
	shift 2
	if "$BSTEER" resync "$INST" "$@" >"$T/out" 2>&1; then
		fail "$what: resync succeeded"
	fi
	check "$what: says '$pat'" grep -q -- "$pat" "$T/out"
	# Nothing but the error: no progress line of a rebuild that never ran.
	check "$what: one line" [ "$(wc -l <"$T/out")" -eq 1 ]
}
refused "unknown export" "no such export" nope 1
refused "leg out of range" "no such leg" m 5
refused "bad leg" "LEG: .x. is not a whole number" m x
if "$BSTEER" resync no-such-instance-$$ m 1 >"$T/out" 2>&1; then
	fail "resync of a missing instance succeeded"
fi
check "a missing instance is named" grep -q "no-such-instance" "$T/out"
kill -KILL "$KIT"
wait "$KIT" 2>/dev/null
nbdsh -u "$(uri m)" -c 'h.pwrite(bytes(4096), 0)'
refused "no source left" "no other leg" m 0
stop_serve

# --- a file leg on a full tmpfs ---
SMALL=$T/small
mkdir "$SMALL"
mount -t tmpfs -o size=8M tmpfs "$SMALL" || skip "cannot mount a tmpfs"
truncate -s 32M "$T/f0" "$SMALL/f1"
start_serve "$T/s.sock" --instance "$(instance rsf)" \
	--export "f=$T/f0,$SMALL/f1" || finish
head -c 32M /dev/urandom >"$T/src2"
nbdcopy "$T/src2" "$(uri f)" || fail "nbdcopy into a mirror with a full leg exited $?"
check "the copy is on the healthy leg" cmp -s "$T/src2" "$T/f0"
"$BSTEER" stat "$(instance rsf)" --json >"$T/stat3.json"
check "the full leg is marked failed" [ "$(json "$T/stat3.json" targets.1.failed)" = true ]
mount -o remount,size=64M "$SMALL"
"$BSTEER" resync "$(instance rsf)" f 1 >"$T/out2" 2>&1 || { cat "$T/out2" >&2; fail "resync of the file leg exited $?"; }
check "the file legs are identical" cmp -s "$T/f0" "$SMALL/f1"
stop_serve
finish
