#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Protocol abuse against a live bsteer serve, while a well-behaved client
# keeps reading and writing and checks its data between the attacks:
#  - 300 connections sending random bytes (some after a valid handshake);
#  - every truncation of a valid handshake;
#  - an unknown option (ERR_UNSUP, the handshake goes on);
#  - offset + length overflowing 64 bits, for a READ and for a WRITE with
#    its payload (EINVAL for the READ, ENOSPC for the WRITE, the payload
#    drained, the connection usable);
#  - 1000 connections opened and dropped, at every stage;
#  - a slow reader: 64 READs of 1 MiB whose replies it never reads, kept
#    open while the good client works (its operations must stay fast);
#  - a deaf client, the same but left alone: dropped after --reply-timeout,
#    its slots back.
# The server must stay up, its RSS must grow by less than 32 MiB, every
# slot must come back, and no decision may be rejected.
. "$(dirname "$0")/lib.sh"
need_root

S=$T/nbd.sock
INST=$(instance abuse)
truncate -s 64M "$T/disk.img"
start_serve "$S" --instance "$INST" --reply-timeout 2 --export "m=$T/disk.img" || finish
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVE/status"; }

PATH=/usr/bin:$PATH /usr/bin/python3 -u - "$S" "$INST" "$SERVE" <<'PY' || fail "abuse script"
import json, os, random, socket, struct, subprocess, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "selftests"))
import nbd, nbd_raw as raw

path, inst, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(1234)
good = nbd.NBD()
good.connect_uri("nbd+unix:///m?socket=" + path)
n = 0

def rss():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

def good_io(what):
    global n
    n += 1
    data = bytes([n % 256]) * 65536
    t = time.time()
    good.pwrite(data, (n % 512) * 65536)
    assert good.pread(65536, (n % 512) * 65536) == data
    took = time.time() - t
    assert took < 2, "the good client waited %.1f s" % took
    print("ok: good client unaffected after %s" % what)

def stat():
    return raw.stat(inst)

def raw_sock():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    return s

def send_quietly(s, b):
    try:
        s.sendall(b)
    except OSError:
        pass            # the server may hang up first: that is its right

good_io("start")
rss0 = rss()

# Random bytes, from the first byte or after a valid handshake.
for i in range(300):
    junk = rng.randbytes(rng.randrange(0, 4096))
    try:
        s = raw.connect(path, "m") if i % 2 else raw_sock()
    except (OSError, EOFError):
        continue
    send_quietly(s, junk)
    s.close()
good_io("300 connections of random bytes")

# Every truncation of a valid handshake.
name = b"m"
go = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
hs = struct.pack(">I", 3) + struct.pack(">QII", raw.IHAVEOPT, raw.OPT_GO, len(go)) + go
for k in range(len(hs)):
    s = raw_sock()
    raw.recvall(s, 18)
    send_quietly(s, hs[:k])
    s.close()
good_io("every truncation of the handshake (%d)" % len(hs))

# An unknown option: ERR_UNSUP, and GO still works after it.
s = raw_sock()
raw.recvall(s, 18)
s.sendall(struct.pack(">I", 3) + struct.pack(">QII", raw.IHAVEOPT, 99, 3) + b"abc")
_, opt, rtype, ln = struct.unpack(">QIII", raw.recvall(s, 20))
raw.recvall(s, ln)
assert opt == 99 and rtype == 0x80000001, (opt, hex(rtype))
s.sendall(struct.pack(">QII", raw.IHAVEOPT, raw.OPT_GO, len(go)) + go)
while True:
    _, opt, rtype, ln = struct.unpack(">QIII", raw.recvall(s, 20))
    raw.recvall(s, ln)
    if rtype == raw.REP_ACK:
        break
raw.request(s, 0, 0, 4096, cookie=5)
assert raw.reply(s) == (0, 5); raw.recvall(s, 4096)
s.close(); print("ok: an unknown option gets ERR_UNSUP and the handshake goes on")
good_io("an unknown option")

# offset + length past 2^64.
s = raw.connect(path, "m")
raw.request(s, 0, (1 << 64) - 512, 1024, cookie=1)
assert raw.reply(s) == (22, 1)
raw.request(s, 1, (1 << 64) - 512, 4096, cookie=2, payload=b"\xee" * 4096)
assert raw.reply(s) == (28, 2)
raw.request(s, 0, 0, 4096, cookie=3)
assert raw.reply(s) == (0, 3); raw.recvall(s, 4096)
s.close(); print("ok: overflowing offset+length: EINVAL for a read, ENOSPC for a write, payload drained")
good_io("overflowing requests")

# 1000 connections opened and dropped at every stage.
for i in range(1000):
    try:
        s = raw_sock()
        if i % 3 >= 1:
            raw.recvall(s, 18)
        if i % 3 == 2:
            send_quietly(s, struct.pack(">I", 3))
        s.close()
    except (OSError, EOFError):
        pass
good_io("1000 connections opened and dropped")

# A slow reader: replies pile up unread while the good client works.
slow = raw.connect(path, "m")
for i in range(64):
    raw.request(slow, 0, i << 20, 1 << 20, cookie=i)
for k in range(20):
    good_io("a slow reader (%d)" % k)
slow.close()
good_io("the slow reader left")

# A deaf client: it keeps its connection but never reads. After
# --reply-timeout (2 s here) the server drops it and gets its slots back.
deaf = raw.connect(path, "m")
for i in range(64):
    raw.request(deaf, 0, i << 20, 1 << 20, cookie=i)
time.sleep(4)
st = stat()
assert st["slots"]["free"] == st["slots"]["total"], st["slots"]
assert st["counters"]["connections_open"] == 1, st["counters"]["connections_open"]
print("ok: a client that does not read its replies is dropped after --reply-timeout")
deaf.close()
good_io("the deaf client")

st = raw.settled(inst, 10)
print("ok: every slot free, only the good client left, no decision rejected")
grow = rss() - rss0
print("RSS grew by %d KiB over %d connections" % (grow, st["counters"]["connections_total"]))
assert grow < 32 * 1024, "RSS grew by %d KiB" % grow
print("ok: RSS bounded")
good.shutdown()
PY
check "the server is still up" kill -0 "$SERVE"
stop_serve
finish
