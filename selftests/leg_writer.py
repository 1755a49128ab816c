# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""A client that writes while legs change, and the check of what it wrote.
Used by test_leg.sh and test_rbd_move.sh.

  python3 leg_writer.py write URI SECS SEED LOG STARTED
      64 KiB blocks all over the export, 8 in flight, never two at once to
      one block, for SECS seconds, then a FLUSH; each block's content names
      the write (SEED * 10^7 + its number). Touches STARTED once the first
      write is acknowledged, writes "BLOCK VALUE" per block acknowledged to
      LOG, and exits 1 if any write failed.
  python3 leg_writer.py check IMAGE BASE LOG...
      IMAGE must be BASE with the LOGs' writes laid on it in order, byte for
      byte: exit 0, or 1 naming the first block that differs."""
import os
import random
import sys
import time

BS = 65536


def block(val):
    return (b"%016d" % val) * (BS // 16)


def write(uri, secs, seed, log, started):
    import nbd
    h = nbd.NBD()
    h.connect_uri(uri)
    n = h.get_size() // BS
    rng = random.Random(seed)
    acked, busy, failed = {}, {}, [0]
    seq = seed * 10**7

    def done(blk, val):
        def cb(err):
            del busy[blk]
            if err.value:
                failed[0] += 1
            else:
                if not acked:
                    open(started, "w").close()
                acked[blk] = val
            return 1
        return cb
    end = time.time() + secs
    while time.time() < end:
        blk = rng.randrange(n)
        if blk in busy:
            h.poll(0)
            continue
        seq += 1
        busy[blk] = seq
        h.aio_pwrite(block(seq), blk * BS, completion=done(blk, seq))
        while h.aio_in_flight() >= 8:
            h.poll(-1)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    h.flush()
    h.shutdown()
    with open(log, "w") as f:
        for blk, val in acked.items():
            f.write("%d %d\n" % (blk, val))
    if failed[0]:
        sys.exit("%d writes failed" % failed[0])
    print("%d blocks written, %d writes acknowledged last" % (seq - seed * 10**7, len(acked)))


def check(image, base, logs):
    want = bytearray(open(base, "rb").read())
    for log in logs:
        for line in open(log):
            blk, val = map(int, line.split())
            want[blk * BS:(blk + 1) * BS] = block(val)
    got = open(image, "rb").read()
    if len(got) < len(want):
        sys.exit("%s: %d bytes, want %d" % (image, len(got), len(want)))
    for off in range(0, len(want), BS):
        if got[off:off + BS] != want[off:off + BS]:
            sys.exit("%s: block %d differs from what the client wrote" % (image, off // BS))


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4:])
