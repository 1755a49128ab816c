#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Crash durability: the server is killed with SIGKILL while a client writes
# and flushes; a restart under the same instance name needs no cleanup
# (the dead process's pins and socket are replaced), and every write that
# was acknowledged before an acknowledged FLUSH is on every leg. The client
# writes each 64 KiB block once, with its sequence number in every byte
# group, so "present" means the whole block as written; it logs the blocks
# covered by each FLUSH as soon as the FLUSH is acknowledged.
# Twice: once with FLUSH every 8 writes, once with FUA writes.
. "$(dirname "$0")/lib.sh"
need_root

INST=$(instance crash)
uri() { echo "nbd+unix:///m?socket=$T/s.sock"; }

crash_round() {	# crash_round MODE (flush|fua)
	local mode=$1
	rm -f "$T/a" "$T/b" "$T/durable"
	truncate -s 128M "$T/a" "$T/b"
	start_serve "$T/s.sock" --instance "$INST" --export "m=$T/a,$T/b" || return
	MODE=$mode DURABLE=$T/durable nbdsh -u "$(uri)" -c '
import os
BS, N = 65536, 2048
mode = os.environ["MODE"]
log = open(os.environ["DURABLE"], "a", buffering=1)
acked = []
def wrote(blk):
    def cb(err):
        if err.value == 0:
            acked.append(blk)
            if mode == "fua":        # stable once acknowledged
                log.write("%d\n" % blk)
        return 1
    return cb
def flushed(blks):
    def cb(err):
        if err.value == 0:
            for b in blks:
                log.write("%d\n" % b)
        return 1
    return cb
try:
    for blk in range(N):
        flags = nbd.CMD_FLAG_FUA if mode == "fua" else 0
        h.aio_pwrite((b"%08d" % blk) * (BS // 8), blk * BS,
                     completion=wrote(blk), flags=flags)
        while h.aio_in_flight() >= 16:
            h.poll(-1)
        if mode == "flush" and blk % 8 == 7:
            # Covers every write acknowledged before it was sent.
            h.aio_flush(completion=flushed(list(acked)))
            acked.clear()
    while h.aio_in_flight() > 0:
        h.poll(-1)
except nbd.Error:
    pass        # the server is gone: expected
' 2>"$T/writer-$mode.err" &
	local writer=$!
	PIDS+=("$writer")
	# Kill it once a few hundred blocks are durable, or the writer is gone
	# (then its stderr says why). FUA writes are fdatasyncs of both legs
	# on a real disk: 300 of them take ~1 s here; 120 s is for a slow disk
	# under load, and nothing is asserted on the time.
	wait_for 120 sh -c "{ [ -f '$T/durable' ] && [ \$(wc -l <'$T/durable') -ge 300 ]; } || ! kill -0 $writer" 
	if ! [ -f "$T/durable" ] || [ "$(wc -l <"$T/durable")" -lt 300 ]; then
		fail "$mode: the writer made no progress ($(wc -l <"$T/durable" 2>/dev/null || echo no) durable blocks; writer alive: $(kill -0 $writer 2>/dev/null && echo yes || echo no))"
		echo "--- the writer's stderr:" >&2
		cat "$T/writer-$mode.err" >&2
	fi
	kill -KILL "$SERVE"
	wait "$SERVE" 2>/dev/null
	wait "$writer"
	local n
	n=$(sort -u "$T/durable" | wc -l)
	echo "$mode: $n blocks durable when the server was killed"
	check "$mode: some writes were still to come" [ "$n" -lt 2048 ]

	# Restart under the same name: stale pins and socket replaced.
	start_serve "$T/s.sock" --instance "$INST" --export "m=$T/a,$T/b" ||
		{ fail "$mode: restart after SIGKILL"; return; }
	check "$mode: every durable write is on every leg" /usr/bin/python3 -c '
import sys
BS = 65536
legs = [open(p, "rb").read() for p in sys.argv[2:]]
for blk in sorted({int(l) for l in open(sys.argv[1])}):
    want = (b"%08d" % blk) * (BS // 8)
    for i, d in enumerate(legs):
        if d[blk * BS:(blk + 1) * BS] != want:
            sys.exit("block %d missing on leg %d" % (blk, i))' "$T/durable" "$T/a" "$T/b"
	export DURABLE=$T/durable
	check "$mode: a client reads them back after the restart" nbdsh -u "$(uri)" -c '
import os
blks = sorted({int(l) for l in open(os.environ["DURABLE"])})
for blk in blks[:64] + blks[-64:]:
    assert h.pread(65536, blk * 65536) == (b"%08d" % blk) * 8192, blk'
	stop_serve
}

crash_round flush
crash_round fua
finish
