#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# A WRITE's payload is received whole: one receive per slot-sized part,
# which the kernel completes only once all its bytes are in (MSG_WAITALL),
# however the client cuts it up. A raw client sends a 1 MiB WRITE in 64
# pieces with pauses between them, its next request right behind; with
# 64 KiB slots that is 16 parts. (The READ is of the payload's last 4 KiB.) Checked from the server's books:
#  - 16 slot receives seen by the issue hook (kernel_slot_recvs), none short
#    (ops_short), no lease violation, no decision rejected;
#  - the write and the READ queued behind it both answered, the bytes right.
# A client that leaves mid-payload is test_serve_badclient.sh's.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdsh

S=$T/nbd.sock
INST=$(instance payload)
truncate -s 16M "$T/disk.img"
start_serve "$S" --instance "$INST" --slot-size 64K --export "d=$T/disk.img" || finish

PATH=/usr/bin:$PATH /usr/bin/python3 - "$S" "$INST" <<'PY' || fail "payload script"
import os, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "selftests"))
import nbd_raw as raw

path, inst = sys.argv[1], sys.argv[2]
WRITE, READ = 1, 0
LEN, PIECES = 1 << 20, 64
data = os.urandom(LEN)
c0 = raw.stat(inst)["counters"]

s = raw.connect(path, "d")
raw.request(s, WRITE, 4096, LEN, cookie=7)
step = LEN // PIECES
for i in range(PIECES):
    s.sendall(data[i * step:(i + 1) * step])
    # Not a timing assertion: the pauses only make it likely that a
    # receive finds part of its bytes missing, which is the case to see.
    time.sleep(0.005)
# A small READ: a reply's send may come back short too (ops_short).
raw.request(s, READ, LEN, 4096, cookie=8)
err, cookie = raw.reply(s)
assert (err, cookie) == (0, 7), ("write", err, cookie)
err, cookie = raw.reply(s)
assert (err, cookie) == (0, 8), ("read", err, cookie)
back = raw.recvall(s, 4096)
assert back == data[-4096:], "read back differs"
print("ok: the write in 64 pieces, and the read behind it, answered; bytes equal")
s.close()
with open(sys.argv[1].rsplit("/", 1)[0] + "/disk.img", "rb") as f:
    f.seek(4096)
    assert f.read(LEN) == data, "the file differs"
print("ok: the file holds it")

c1 = raw.stat(inst)["counters"]
d = {k: c1[k] - c0[k] for k in ("kernel_slot_recvs", "ops_short", "violations",
                                "decisions_rejected")}
print("deltas:", d)
assert d["kernel_slot_recvs"] == 16, "one receive per 64 KiB part"
print("ok: 16 slot receives, one per part")
assert d["ops_short"] == 0, "a part's receive came back short"
print("ok: none short")
assert d["violations"] == 0 and d["decisions_rejected"] == 0
print("ok: no violation, no rejected decision")
PY
stop_serve
finish
