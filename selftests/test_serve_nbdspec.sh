#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# The NBD spec's SHOULDs on the data path, probed with raw requests
# (selftests/nbd_raw.py), each followed by a request that must still
# work on the same connection:
#   - a WRITE or WRITE_ZEROES past the end gets ENOSPC; a READ or TRIM
#     past it gets EINVAL;
#   - a command flag not documented for the command gets EINVAL (WRITE
#     with REQ_ONE, CACHE with NO_HOLE or REQ_ONE: a MUST for CACHE),
#     while the documented ones (FUA anywhere, DF on READ, NO_HOLE and
#     FAST_ZERO on WRITE_ZEROES) are served;
#   - a client that never learned the block sizes (EXPORT_NAME, or GO
#     without NBD_INFO_BLOCK_SIZE) has the default minimum of 1: unaligned
#     READs and WRITEs, one part or several, are served and land where
#     they should, on a file and on an NBD upstream that declared 512
#     (read-modify-write); one that asked is held to the advertised 512;
#   - READs and WRITEs larger than the slots hold (40 MiB, the reference
#     suite's "integrityhuge" size, where a round is 2 MiB) are served up
#     to --max-request, in rounds: simple replies stay whole, with the
#     next reply after them; structured ones come as one chunk a round
#     (libnbd); DF on one gets EOVERFLOW; past --max-request, EINVAL, a
#     WRITE's payload drained, the connection usable; a READ whose round
#     fails after its reply began: structured, an error chunk after the
#     rounds that worked (the connection goes on); simple, the connection
#     closes after their data;
#   - the same rounds with the data spliced from the page cache (256 KiB
#     slots, a tmpfs export), simple and structured.
. "$(dirname "$0")/lib.sh"
need_root

S=$T/nbd.sock
INST=$(instance nbdspec)
truncate -s 16M "$T/disk.img"
truncate -s 128M "$T/big.img"
truncate -s 64M "$T/short.img" "$T/up.img"
# An NBD upstream that declares a minimum block size: another bsteer (512).
"$BSTEER" serve --listen "unix:$T/up.sock" --instance "$(instance nbdspec-up)" \
	--export "u=$T/up.img" >"$T/up.log" 2>&1 &
PIDS+=($!)
wait_for 60 grep -q "listening on unix:$T/up.sock " "$T/up.log" ||
	{ cat "$T/up.log" >&2; fail "upstream did not start"; finish; }
# 64 KiB slots: a 256 KiB write takes four parts. 64 slots: a round is
# what one client may hold, 32 of them, 2 MiB.
start_serve "$S" --instance "$INST" --slot-size 64K --slots 64 --max-request 48M \
	--export "m=$T/disk.img" --export "big=$T/big.img" \
	--export "short=$T/short.img" --export "up=nbd+unix:///u?socket=$T/up.sock" || finish
# The backing file ends at 10 MiB now: reads past it fail (EIO).
truncate -s 10M "$T/short.img"

PATH=/usr/bin:$PATH /usr/bin/python3 - "$S" "$INST" "$T/disk.img" <<'PY' || fail "spec probes"
import os, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "selftests"))
import nbd_raw as raw

READ, WRITE, DISC, FLUSH, TRIM, CACHE, ZERO = 0, 1, 2, 3, 4, 5, 6
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16
EINVAL, ENOSPC = 22, 28
SIZE = 16 << 20
path, inst, disk = sys.argv[1], sys.argv[2], sys.argv[3]
# GO with no information requests: the block sizes are not learned.
s = raw.connect(path, "m")
cookie = 0

def probe(typ, off, ln, want, what, flags=0, payload=None, sock=None):
    """Send one request; check its error; then a READ must still work."""
    global cookie
    s = sock or globals()["s"]
    cookie += 1
    if typ == WRITE and payload is None:
        payload = b"\x5a" * ln
    raw.request(s, typ, off, ln, cookie=cookie, flags=flags, payload=payload or b"")
    got = raw.reply(s)
    if typ == READ and got[0] == 0:
        raw.recvall(s, ln)
    assert got == (want, cookie), "%s: got %r, want %r" % (what, got, (want, cookie))
    cookie += 1
    raw.request(s, READ, 0, 4096, cookie=cookie)
    assert raw.reply(s) == (0, cookie), what + ": the next request"
    raw.recvall(s, 4096)
    print("ok: %s: %s" % (what, "error %d" % want if want else "served"))

# Past the end: ENOSPC for what writes, EINVAL for the rest.
probe(WRITE, SIZE - 4096, 8192, ENOSPC, "write past the end (payload drained)")
probe(WRITE, SIZE, 65536 * 4, ENOSPC, "four-part write at the end (payload drained)")
probe(WRITE, (1 << 64) - 4096, 8192, ENOSPC, "write whose offset wraps")
probe(ZERO, SIZE - 4096, 8192, ENOSPC, "write zeroes past the end")
probe(ZERO, SIZE + (1 << 30), 4096, ENOSPC, "write zeroes far past the end")
probe(READ, SIZE - 4096, 8192, EINVAL, "read past the end")
probe(TRIM, SIZE - 4096, 8192, EINVAL, "trim past the end")
probe(WRITE, SIZE - 8192, 8192, 0, "write up to the end")

# Flags checked per command.
probe(WRITE, 0, 4096, EINVAL, "write with REQ_ONE (payload drained)", flags=REQ_ONE)
probe(WRITE, 0, 4096, EINVAL, "write with NO_HOLE (payload drained)", flags=NO_HOLE)
probe(CACHE, 0, 4096, EINVAL, "cache with NO_HOLE", flags=NO_HOLE)
probe(CACHE, 0, 4096, EINVAL, "cache with REQ_ONE", flags=REQ_ONE)
probe(READ, 0, 4096, EINVAL, "read with FAST_ZERO", flags=FAST_ZERO)
probe(TRIM, 0, 4096, EINVAL, "trim with NO_HOLE", flags=NO_HOLE)
probe(FLUSH, 0, 0, EINVAL, "flush with DF", flags=DF)
probe(ZERO, 0, 4096, EINVAL, "write zeroes with bit 5", flags=32)
probe(WRITE, 0, 4096, 0, "write with FUA", flags=FUA)
probe(CACHE, 0, 4096, 0, "cache with FUA", flags=FUA)
probe(READ, 0, 4096, 0, "read with DF and FUA", flags=DF | FUA)
probe(ZERO, 0, 4096, 0, "write zeroes with FUA, NO_HOLE, FAST_ZERO",
      flags=FUA | NO_HOLE | FAST_ZERO)
probe(TRIM, 0, 4096, 0, "trim with FUA", flags=FUA)
probe(FLUSH, 0, 0, 0, "flush with FUA", flags=FUA)

def unaligned(sock, off, ln, what, img=None):
    """An unaligned WRITE, then a READ around it, checked against the file."""
    global cookie
    data = os.urandom(ln)
    cookie += 1
    raw.request(sock, WRITE, off, ln, cookie=cookie, payload=data)
    assert raw.reply(sock) == (0, cookie), what + ": write"
    cookie += 1
    raw.request(sock, READ, off - 3, ln + 10, cookie=cookie)
    assert raw.reply(sock) == (0, cookie), what + ": read"
    got = raw.recvall(sock, ln + 10)
    with open(img or disk, "rb") as f:
        f.seek(off - 3)
        want = f.read(ln + 10)
    assert got == want and got[3:3 + ln] == data, what + ": the bytes"
    print("ok: %s: %d bytes at %d written and read back" % (what, ln, off))

# Block sizes not learned: the default minimum block size of 1.
unaligned(s, 3 * 4096 + 7, 1001, "GO without block sizes, one part")
unaligned(s, 5 * 65536 + 333, 200001, "GO without block sizes, four parts")
probe(TRIM, 8 * 65536 + 1, 999, 0, "unaligned trim, GO without block sizes")
probe(ZERO, 8 * 65536 + 3, 777, 0, "unaligned write zeroes, GO without block sizes")
old = raw.connect(path, "m", export_name=True)
unaligned(old, 9 * 65536 + 511, 513, "EXPORT_NAME, one part")
unaligned(old, 10 * 65536 + 1, 65536, "EXPORT_NAME, two parts")
old.close()
# A client that asked for them is held to the 512 it was told.
bs = raw.connect(path, "m", infos=[raw.INFO_BLOCK_SIZE])
probe(WRITE, 4096 + 7, 1001, EINVAL, "unaligned write after asking for block sizes (drained)", sock=bs)
probe(READ, 512, 100, EINVAL, "unaligned read after asking for block sizes", sock=bs)
probe(WRITE, 4096, 1024, 0, "aligned write after asking for block sizes", sock=bs)
bs.close()

# Larger than the slots hold: in rounds, up to --max-request (48 MiB).
MiB = 1 << 20
big = raw.connect(path, "big")
data = os.urandom(40 * MiB)
cookie += 1
raw.request(big, WRITE, 3 * MiB + 512, len(data), cookie=cookie, payload=data)
assert raw.reply(big) == (0, cookie), "40 MiB write"
with open(os.path.dirname(disk) + "/big.img", "rb") as f:
    f.seek(3 * MiB + 512)
    assert f.read(len(data)) == data, "40 MiB write: the bytes"
print("ok: a 40 MiB write, in 2 MiB rounds, landed whole")
# A 40 MiB read and a small one right behind it: the big reply's data
# stays in one piece, and the small reply comes after it.
raw.request(big, READ, 3 * MiB + 512, len(data), cookie=1001)
raw.request(big, READ, 0, 4096, cookie=1002)
assert raw.reply(big) == (0, 1001), "40 MiB read"
assert raw.recvall(big, len(data)) == data, "40 MiB read: the bytes"
assert raw.reply(big) == (0, 1002), "the read behind it"
raw.recvall(big, 4096)
print("ok: a 40 MiB read, in rounds, whole, then the read behind it")
# Unaligned and in rounds.
unaligned(big, 77 * MiB + 13, 5 * MiB + 77, "unaligned 5 MiB in three rounds",
          img=os.path.dirname(disk) + "/big.img")
# Past --max-request: EINVAL; the write's 50 MiB of payload are drained.
probe(WRITE, 0, 50 * MiB, EINVAL, "50 MiB write past --max-request (drained)", sock=big)
probe(READ, 0, 50 * MiB, EINVAL, "50 MiB read past --max-request", sock=big)
big.close()

# An export on an NBD upstream that declared 512: a client that never
# asked still has the default of 1 (the NBD target reads, merges and
# writes whole blocks); one that asked is held to the 512.
up_img = os.path.dirname(disk) + "/up.img"
up = raw.connect(path, "up", export_name=True)
unaligned(up, 4096 + 7, 1001, "unaligned write to an upstream with a 512 minimum", img=up_img)
unaligned(up, 3 * 65536 + 5, 200001, "unaligned four-part write to that upstream", img=up_img)
probe(WRITE, 4096, 1024, 0, "aligned write to that upstream", sock=up)
up.close()
up = raw.connect(path, "up", infos=[raw.INFO_BLOCK_SIZE])
probe(WRITE, 4096 + 7, 1001, EINVAL, "unaligned write to that upstream after asking (drained)",
      sock=up)
up.close()

# A READ in rounds whose sixth round fails (the file ends at 10 MiB): a
# simple reply cannot say so after its header, so the connection closes
# right after the data of the five rounds that worked.
sh = raw.connect(path, "short")
# One that fails in its first round is an ordinary error reply.
probe(READ, 12 * MiB, 40 * MiB, 5, "40 MiB read failing in its first round (EIO)", sock=sh)
raw.request(sh, READ, 0, 40 * MiB, cookie=77)
assert raw.reply(sh) == (0, 77), "the failing read's header"
got = 0
try:
    while True:
        chunk = sh.recv(1 << 20)
        if not chunk:
            break
        got += len(chunk)
except ConnectionResetError:
    pass
assert got == 10 * MiB, got
sh.close()
print("ok: a simple read failing in its sixth round: 10 MiB of data, then the connection closes")

raw.request(s, DISC, 0, 0)
assert raw.closed(s)
for _ in range(50):
    st = raw.stat(inst)
    if st["slots"]["free"] == st["slots"]["total"]:
        break
    time.sleep(0.1)
assert st["slots"]["free"] == st["slots"]["total"], st["slots"]
print("ok: every slot free after the probes")
PY

# Structured replies (libnbd): a 40 MiB read is one chunk a round. libnbd
# keeps to the advertised maximum unless told not to, and asks for the
# block sizes unless told not to.
SOCK=$S IMG=$T/big.img nbdsh -c - <<'PY' || fail "structured reads in rounds"
import errno, os
path, img = os.environ["SOCK"], os.environ["IMG"]
h = nbd.NBD()
h.set_request_block_size(False)
h.set_strict_mode(0)
h.connect_uri("nbd+unix:///big?socket=" + path)
assert h.get_structured_replies_negotiated()
with open(img, "rb") as f:
    f.seek(3 << 20)
    want = f.read(40 << 20)
chunks = []
def chunk(buf, off, status, err):
    chunks.append((off, len(buf)))
    return 0
got = h.pread_structured(40 << 20, 3 << 20, chunk)
assert got == want, "40 MiB structured read: the bytes"
assert len(chunks) == 20 and all(l == 2 << 20 for _, l in chunks), chunks
print("ok: a 40 MiB structured read came as 20 chunks of 2 MiB")
try:
    h.pread(40 << 20, 0, nbd.CMD_FLAG_DF)
    raise SystemExit("a 40 MiB DF read succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EOVERFLOW, e
print("ok: DF on a read larger than a round: EOVERFLOW")
assert h.pread(4096, 3 << 20) == want[:4096]
h.shutdown()

# A round that fails after the reply began: an error chunk ends it, after
# the data chunks of the rounds that worked; the connection goes on.
h = nbd.NBD()
h.set_request_block_size(False)
h.set_strict_mode(0)
h.connect_uri("nbd+unix:///short?socket=" + path)
chunks = []
def chunk(buf, off, status, err):
    if status == nbd.READ_DATA:
        chunks.append((off, len(buf)))
    return 0
try:
    h.pread_structured(40 << 20, 0, chunk)
    raise SystemExit("a read past the backing file succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
assert chunks == [(i << 21, 2 << 20) for i in range(5)], chunks
assert h.pread(4096, 0) == bytes(4096)
print("ok: a structured read failing in its sixth round: five data chunks, then EIO; the connection goes on")
h.shutdown()
PY
kill -0 "$SERVE" 2>/dev/null || fail "server died"
stop_serve

# Rounds whose parts are spliced: 256 KiB slots (more than
# BSTEER_SPLICE_ABOVE), 16 of them: a round is 8 parts, 2 MiB.
shm_dir
head -c 48M /dev/urandom >"$SHM/src.img"
INST2=$(instance nbdspec-splice)
start_serve "$S" --instance "$INST2" --slot-size 256K --slots 16 \
	--export "shm=$SHM/src.img" || finish
PATH=/usr/bin:$PATH /usr/bin/python3 - "$S" "$INST2" "$SHM/src.img" <<'PY' || fail "spliced rounds"
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "selftests"))
import nbd_raw as raw
path, inst, img = sys.argv[1:4]
want = open(img, "rb").read()
before = raw.stat(inst)["counters"]["spliced_reads"]
s = raw.connect(path, "shm")
raw.request(s, 0, 4 << 20, 40 << 20, cookie=5)
raw.request(s, 0, 0, 4096, cookie=6)
assert raw.reply(s) == (0, 5)
assert raw.recvall(s, 40 << 20) == want[4 << 20:44 << 20], "spliced 40 MiB read"
assert raw.reply(s) == (0, 6)
assert raw.recvall(s, 4096) == want[:4096]
spliced = raw.stat(inst)["counters"]["spliced_reads"] - before
assert spliced >= 160, spliced
print("ok: a 40 MiB read in rounds of spliced parts (%d spliced), then the read behind it" % spliced)
s.close()
PY
SOCK=$S IMG=$SHM/src.img nbdsh -c - <<'PY' || fail "spliced structured rounds"
import os
path, img = os.environ["SOCK"], os.environ["IMG"]
want = open(img, "rb").read()
h = nbd.NBD()
h.set_request_block_size(False)
h.set_strict_mode(0)
h.connect_uri("nbd+unix:///shm?socket=" + path)
chunks = []
def chunk(buf, off, status, err):
    chunks.append((off, len(buf)))
    return 0
assert h.pread_structured(40 << 20, 1 << 20, chunk) == want[1 << 20:41 << 20]
assert len(chunks) == 20, chunks
print("ok: a structured 40 MiB read of spliced parts: 20 chunks, the file's bytes")
h.shutdown()
PY
kill -0 "$SERVE" 2>/dev/null || fail "server died"
stop_serve
finish
