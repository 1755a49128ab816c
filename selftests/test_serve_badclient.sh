#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Hostile clients against bsteer serve: garbage magic (in negotiation and
# in a request), a truncated header, a 1 GiB WRITE length, an unknown
# command. Each bad connection ends cleanly (the unknown command gets
# EINVAL, as the protocol asks, and the connection stays usable), the
# 1 GiB write (past --max-request) writes nothing and gives its slots
# back when its payload stops short, and a second client, connected all
# along, keeps reading and writing correctly between every attack.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdsh

S=$T/nbd.sock
INST=$(instance bad)
truncate -s 64M "$T/disk.img" "$T/ro.img"
truncate -s 16M "$T/short.img"
# 64 KiB slots: a 256 KiB write takes four parts.
start_serve "$S" --instance "$INST" --slot-size 64K --export "m=$T/disk.img" \
	--export "ro=$T/ro.img,ro" --export "short=$T/short.img" || finish
# The backing file shrinks under the export: reads past it must fail,
# not return stale bytes.
truncate -s 8M "$T/short.img"

PATH=/usr/bin:$PATH /usr/bin/python3 - "$S" "$INST" <<'PY' || fail "abuse script"
import errno, json, os, socket, struct, subprocess, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "selftests"))
import nbd, nbd_raw as raw

path, inst = sys.argv[1], sys.argv[2]
good = nbd.NBD()
good.connect_uri("nbd+unix:///m?socket=" + path)
n = 0

def good_io():
    global n
    n += 1
    data = bytes([n]) * 4096
    good.pwrite(data, n * 4096)
    assert good.pread(4096, n * 4096) == data
    print("ok: the good client still works (%d)" % n)

def stat():
    return raw.stat(inst)

good_io()

# Garbage where the option magic should be.
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(path)
raw.recvall(s, 18); s.sendall(struct.pack(">I", 3)); s.sendall(b"\xde\xad" * 16)
assert raw.closed(s); print("ok: bad option magic closes the connection")
good_io()

# Garbage request magic.
s = raw.connect(path, "m")
s.sendall(b"\x01\x02\x03\x04" + b"\x00" * 24)
assert raw.closed(s); print("ok: bad request magic closes the connection")
good_io()

# A truncated header, then the client goes away.
s = raw.connect(path, "m")
s.sendall(struct.pack(">IHH", raw.REQ_MAGIC, 0, 0)); s.close()
good_io()

# A 1 GiB write, past --max-request: refused, its payload only drained
# (into a round of slots at a time), until the client stops sending.
with open(os.path.join(os.path.dirname(path), "disk.img"), "rb") as f:
    before = f.read(1 << 20)
s = raw.connect(path, "m")
raw.request(s, 1, 0, 1 << 30, payload=b"\xcd" * (3 << 20))
s.close()
print("ok: 1 GiB write cut short after 3 MiB")
good_io()
with open(os.path.join(os.path.dirname(path), "disk.img"), "rb") as f:
    assert f.read(1 << 20)[65536:] == before[65536:], "the refused write wrote"
print("ok: nothing of it written")

# A zero-length WRITE has no payload: EINVAL, and the connection goes on.
s = raw.connect(path, "m")
raw.request(s, 1, 0, 0, cookie=11)
assert raw.reply(s) == (22, 11)
raw.request(s, 0, 0, 512, cookie=12)
assert raw.reply(s) == (0, 12); raw.recvall(s, 512)
s.close(); print("ok: zero-length write gets EINVAL")
good_io()

# Replies the client never reads, then it goes away: the server lives.
for _ in range(3):
    s = raw.connect(path, "m")
    for i in range(32):
        raw.request(s, 0, 0, 65536, cookie=i)
    s.close()
good_io()
print("ok: clients leaving with replies pending do not hurt the server")

# A write refused up front (read-only) still has its four-part payload
# drained; the client gets EPERM and the connection goes on.
s = raw.connect(path, "ro")
raw.request(s, 1, 0, 262144, cookie=21, payload=b"\xab" * 262144)
assert raw.reply(s) == (1, 21)
raw.request(s, 0, 0, 4096, cookie=22)
assert raw.reply(s) == (0, 22); raw.recvall(s, 4096)
s.close(); print("ok: refused multi-part write drained, EPERM")
good_io()

# Payloads cut short, over and over: no slot may stay behind.
for i in range(20):
    s = raw.connect(path, "m")
    raw.request(s, 1, 0, 262144 if i % 2 else 65536, cookie=i)
    s.sendall(b"\x00" * (1000 + i))
    s.close()
good_io()

# Writes whose payloads trickle in, in pieces that end and begin anywhere,
# each next header glued to the payload before it: the receive of the
# header after a payload must start exactly where the payload ends. The
# 256 KiB writes take four parts; reads of a part never written go between.
import random, threading
rnd = random.Random(7)
s = raw.connect(path, "m")
stream, want, expect = b"", {}, {}
for i in range(24):
    ln = (4096, 65536, 262144, 12288)[i % 4]
    off = (32 << 20) + i * 262144
    data = bytes(rnd.getrandbits(8) for _ in range(16)) * (ln // 16)
    stream += struct.pack(">IHHQQI", raw.REQ_MAGIC, 0, 1, 100 + i, off, ln) + data
    want[off] = data
    expect[100 + i] = 0
    if i % 3 == 2:
        stream += struct.pack(">IHHQQI", raw.REQ_MAGIC, 0, 0, 200 + i, 48 << 20, 8192)
        expect[200 + i] = 8192

def trickle():
    pos = 0
    while pos < len(stream):
        n = rnd.choice((1, 7, 28, 100, 4095, 4096, 70000))
        s.sendall(stream[pos:pos + n])
        pos += n
        if rnd.random() < 0.2:
            time.sleep(0.002)

t = threading.Thread(target=trickle)
t.start()
while expect:
    err, cookie = raw.reply(s)
    assert err == 0 and cookie in expect, (err, cookie)
    if expect.pop(cookie):
        assert raw.recvall(s, 8192) == bytes(8192), "a read between payloads"
t.join()
s.close()
for off, data in want.items():
    assert good.pread(len(data), off) == data, "trickled write at %d" % off
print("ok: trickled payloads with glued headers: 24 writes, 8 reads, all intact")
good_io()

# A flood of cheap requests without reading replies: the server stops
# reading at its per-connection cap instead of queueing without bound.
s = raw.connect(path, "m")
s.setblocking(False)
sent = 0
try:
    while sent < 200000:
        s.send(struct.pack(">IHHQQI", raw.REQ_MAGIC, 0, 5, sent, 0, 4096))
        sent += 1
except BlockingIOError:
    pass
assert sent < 200000, "the server read 200000 requests without replying"
s.close(); print("ok: a reply flood stops at the cap (%d requests sent)" % sent)
good_io()

# Reads of the part of the export whose backing file is gone: EIO.
sh = nbd.NBD()
sh.connect_uri("nbd+unix:///short?socket=" + path)
try:
    sh.pread(65536, 12 << 20)
    raise SystemExit("read past the backing file succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
sh.shutdown(); print("ok: a short backing file gives EIO, not stale bytes")

# An unknown command: EINVAL, and the connection goes on.
s = raw.connect(path, "m")
raw.request(s, 99, 0, 0, cookie=7)
err, cookie = raw.reply(s)
assert (err, cookie) == (22, 7), (err, cookie)
raw.request(s, 0, 0, 512, cookie=8)
err, cookie = raw.reply(s)
assert (err, cookie) == (0, 8), (err, cookie)
raw.recvall(s, 512)
print("ok: unknown command gets EINVAL; the connection stays usable")
raw.request(s, 2, 0, 0)          # DISC
assert raw.closed(s); print("ok: DISC closes the connection")
good_io()

st = raw.settled(inst, 5)
print("ok: every slot free, only the good client connected, no decision rejected")
good.shutdown()
PY
kill -0 "$SERVE" 2>/dev/null || fail "server died"
stop_serve
finish
