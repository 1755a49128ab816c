#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Backend faults injected by nbdkit's error filter on an upstream NBD leg.
#  - EIO at a set rate on reads of a lone leg: the client gets EIO for
#    exactly those requests (counted by bsteer stat), every other read
#    returns the right bytes, and the server keeps serving;
#  - a mirror leg that starts failing its writes mid-run: the leg is marked
#    failed (bsteer stat, one log line), every write is acknowledged, each
#    acknowledged write is on the healthy leg, and reads go on from it.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdkit

uri() { echo "nbd+unix:///$1?socket=$T/s.sock"; }

# --- reads failing at 25% ---
head -c 16M /dev/urandom >"$T/img"
nbdkit -f --exit-with-parent -U "$T/flaky.sock" --filter=error file "$T/img" \
	error=EIO error-pread-rate=25% >"$T/flaky.log" 2>&1 &
PIDS+=($!)
wait_for 10 [ -S "$T/flaky.sock" ] || fail "nbdkit did not start"
start_serve "$T/s.sock" --instance "$(instance eio)" \
	--export "flaky=nbd+unix:///?socket=$T/flaky.sock" || finish
IMG=$T/img COUNTS=$T/counts nbdsh -u "$(uri flaky)" -c '
import errno, os
img = open(os.environ["IMG"], "rb").read()
ok = eio = 0
for i in range(400):
    off = (i * 7919 % 4096) * 4096
    try:
        data = h.pread(4096, off)
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
        eio += 1
        continue
    assert data == img[off:off + 4096], "wrong bytes at %d" % off
    ok += 1
print(ok, eio)
open(os.environ["COUNTS"], "w").write("%d %d\n" % (ok, eio))
' || fail "reads through a flaky leg"
OK=0 EIO=0
[ -f "$T/counts" ] && read -r OK EIO <"$T/counts"
echo "reads: $OK good, $EIO EIO"
check "some reads failed with EIO ($EIO of 400)" [ "$EIO" -ge 40 ] && [ "$EIO" -le 180 ]
"$BSTEER" stat "$(instance eio)" --json >"$T/stat.json"
check "bsteer stat counts each error" [ "$(json "$T/stat.json" targets.0.errors)" = "$EIO" ]
check "the server is still up" kill -0 "$SERVE"
check "it still answers" nbdinfo --size "$(uri flaky)"
stop_serve

# --- a mirror leg that starts failing mid-run ---
truncate -s 32M "$T/leg0"
nbdkit -f --exit-with-parent -U "$T/leg1.sock" --filter=error memory 32M \
	error=EIO error-pwrite-rate=100% error-pwrite-file="$T/inject" \
	>"$T/leg1.log" 2>&1 &
PIDS+=($!)
wait_for 10 [ -S "$T/leg1.sock" ] || fail "nbdkit did not start"
start_serve "$T/s.sock" --instance "$(instance mir)" \
	--export "m=$T/leg0,nbd+unix:///?socket=$T/leg1.sock" || finish
INJECT=$T/inject nbdsh -u "$(uri m)" -c '
import os
BS = 65536
def block(i):
    return (b"%08d" % i) * (BS // 8)
# Sixteen requests in flight at a time; the leg breaks a quarter of the way.
failed = []
def done(i):
    def cb(err):
        if err.value:
            failed.append((i, err.value))
        return 1
    return cb
for i in range(512):
    if i == 128:
        open(os.environ["INJECT"], "w").close()
    h.aio_pwrite(block(i), i * BS, completion=done(i))
    while h.aio_in_flight() >= 16:
        h.poll(-1)
while h.aio_in_flight() > 0:
    h.poll(-1)
assert not failed, "writes failed (block, errno): %s" % failed[:10]
h.flush()
for i in range(512):
    assert h.pread(BS, i * BS) == block(i), "block %d reads back wrong" % i
' || fail "writes through a mirror whose leg breaks"
/usr/bin/python3 -c '
import sys
d = open(sys.argv[1], "rb").read()
BS = 65536
bad = [i for i in range(512) if d[i*BS:(i+1)*BS] != (b"%08d" % i) * (BS // 8)]
sys.exit("blocks missing on the healthy leg: %s" % bad[:10] if bad else 0)' "$T/leg0" ||
	fail "every acknowledged write is on the healthy leg"
"$BSTEER" stat "$(instance mir)" --json >"$T/stat2.json"
check "the broken leg is marked failed" [ "$(json "$T/stat2.json" targets.1.failed)" = true ]
check "the healthy leg is not" [ "$(json "$T/stat2.json" targets.0.failed)" = false ]
check "the broken leg's errors are counted" [ "$(json "$T/stat2.json" targets.1.errors)" -ge 1 ]
check "one log line names the leg" [ "$(grep -c "export 'm': leg 1 .* marked failed" "$T/serve.log")" = 1 ]
check "no rejected decisions" [ "$(json "$T/stat2.json" counters.decisions_rejected)" = 0 ]
stop_serve
finish
