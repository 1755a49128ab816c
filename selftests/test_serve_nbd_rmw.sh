#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Read-modify-write on an NBD upstream that declared a minimum block size
# (nbdkit's blocksize-policy filter: 4 KiB, and EINVAL for anything off
# it, so an unaligned request that reached it would fail):
#  - a client that never learned the block sizes (libnbd with
#    set_request_block_size(False), and no STRICT_ALIGN) writes, zeroes, trims and reads at
#    unaligned offsets and lengths, one part and several, against a model,
#    on a lone NBD leg and on a mirror of a file and an NBD leg; then
#    several writes to different bytes of one block in flight at once, on
#    two connections (two workers); every byte reads back as the model
#    says, and both mirror legs and the lone upstream end equal to it;
#  - the same through an nbds:// leg (TLS with a PSK), if psktool is here;
#  - a mirror's NBD leg killed mid-way: marked failed, the writes go on on
#    the file leg; rebuilt by bsteer resync on a new nbdkit, unaligned
#    writes from both workers reach it, and both legs end equal the model;
#  - a client that asked for the block sizes is told the upstream's
#    minimum (nbdinfo) and held to it (EINVAL);
#  - an upstream whose reads fail: an unaligned read fails with the
#    upstream's error (EPERM), and works once reads do; an aligned write
#    still works, and an unaligned one (it must read first) fails with
#    EPERM, and works once reads do (a lone leg: the passthrough policy).
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdkit nbdsh nbdinfo
nbdkit --filter=blocksize-policy null --dump-plugin >/dev/null 2>&1 ||
	skip "nbdkit has no blocksize-policy filter"

# start_kit NAME ARGS...: nbdkit on $T/NAME.sock, 4 KiB blocks, strict;
# KIT holds its PID.
start_kit() {
	local name=$1
	shift
	nbdkit -f --exit-with-parent -U "$T/$name.sock" --filter=blocksize-policy "$@" \
		blocksize-minimum=4096 blocksize-error-policy=error >"$T/$name.log" 2>&1 &
	KIT=$!
	PIDS+=("$KIT")
	wait_for 10 [ -S "$T/$name.sock" ] || { cat "$T/$name.log" >&2; fail "nbdkit $name did not start"; finish; }
}
kit_uri() { echo "nbd+unix:///?socket=$T/$1.sock"; }

start_kit solo memory 16M
start_kit mir memory 16M
start_kit err --filter=error memory 1M error=EPERM error-pread-rate=100% \
	error-pread-file="$T/fail-reads"
truncate -s 16M "$T/leg0"
# 64 KiB slots: a 200001-byte write is four parts, each unaligned.
start_serve "$T/s.sock" --instance "$(instance rmw)" --threads 2 --slot-size 64K \
	--export "solo=$(kit_uri solo)" --export "m=$T/leg0,$(kit_uri mir)" \
	--export "e=$(kit_uri err)" || finish

# model.py T EXPORT...: the unaligned workload on each export, against a
# model kept in $T/model.EXPORT (zeroes at first).
cat >"$T/model.py" <<'PY'
import os, random, sys
import nbd

T, names = sys.argv[1], sys.argv[2:]
SIZE, B = 16 << 20, 4096
seed = random.randrange(1 << 32)
rng = random.Random(seed)
print("seed", seed)

def conn(name):
    h = nbd.NBD()
    h.set_request_block_size(False)     # never learns the block sizes
    # (What the server tells it unasked, libnbd would enforce itself.)
    h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
    h.connect_uri("nbd+unix:///%s?socket=%s/s.sock" % (name, T))
    return h

def check(h, model, off, ln, what):
    got = h.pread(ln, off)
    if got != bytes(model[off:off + ln]):
        bad = next(i for i in range(ln) if got[i] != model[off + i])
        sys.exit("%s: %d bytes at %d: byte %d differs" % (what, ln, off, off + bad))

LENS = [1, 7, 100, 511, 512, 513, 4095, 4096, 4097, 8191, 12289, 65535, 65537, 200001]

for name in names:
    h, h2 = conn(name), conn(name)
    mf = "%s/model.%s" % (T, name)
    model = bytearray(open(mf, "rb").read() if os.path.exists(mf) else SIZE)
    ops = {"write": 0, "zero": 0, "trim": 0, "read": 0}
    for i in range(400):
        ln = rng.choice(LENS)
        off = rng.randrange(0, SIZE - ln)
        if rng.random() < 0.3:          # at or next to a block's edge
            off = max(0, min(SIZE - ln, off // B * B + rng.choice([0, 1, -1, B - 1])))
        op = rng.random()
        if op < 0.55:
            data = os.urandom(ln)
            h.pwrite(data, off)
            model[off:off + ln] = data
            ops["write"] += 1
        elif op < 0.7:
            h.zero(ln, off)
            model[off:off + ln] = bytes(ln)
            ops["zero"] += 1
        elif op < 0.8:
            h.trim(ln, off)             # reads back as zeroes on both legs
            model[off:off + ln] = bytes(ln)
            ops["trim"] += 1
        else:
            check(h, model, off, ln, "%s: read %d" % (name, i))
            ops["read"] += 1
        # Around what was just done, unaligned too.
        a = max(0, off - rng.randrange(1, 3 * B))
        check(h, model, a, min(SIZE - a, ln + 6 * B + 3), "%s: after op %d" % (name, i))
    print("ok: %s: %r at unaligned places read back as the model" % (name, ops))

    # Different bytes of one block (or two), in flight at once, on two
    # connections: every write must survive the others' read-modify-write.
    for r in range(60):
        blk = rng.randrange(0, SIZE // B - 2) * B
        cuts = sorted(rng.sample(range(1, 2 * B), 16))
        segs = [(cuts[k], cuts[k + 1]) for k in range(0, 16, 2)]
        cmds = []
        for k, (a, b) in enumerate(segs):
            data = bytearray(os.urandom(b - a))
            hh = (h, h2)[k % 2]
            buf = nbd.Buffer.from_bytearray(data)
            cmds.append((hh, hh.aio_pwrite(buf, blk + a), buf))
            model[blk + a:blk + b] = data
        for hh in (h, h2):
            while hh.aio_in_flight() > 0:
                hh.poll(-1)
        for hh, c, _ in cmds:
            assert hh.aio_command_completed(c), "%s: an aio write not done" % name
        check(h2, model, blk, 2 * B, "%s: concurrent writes, round %d" % (name, r))
    print("ok: %s: 60 rounds of 8 concurrent writes into one or two blocks all survived" % name)

    # The whole export, in unaligned pieces.
    off = 0
    while off < SIZE:
        ln = min(SIZE - off, (1 << 20) + 13)
        check(h, model, off, ln, "%s: the whole export" % name)
        off += ln
    h.shutdown()
    h2.shutdown()
    open(mf, "wb").write(model)
    print("ok: %s: the whole export reads back as the model" % name)
PY
PATH=/usr/bin:$PATH /usr/bin/python3 "$T/model.py" "$T" solo m ||
	fail "unaligned I/O against the model"

# Both legs of the mirror, and the lone upstream, hold the model.
nbdcopy "$(kit_uri solo)" "$T/up.solo" || fail "nbdcopy from the lone upstream exited $?"
nbdcopy "$(kit_uri mir)" "$T/up.m" || fail "nbdcopy from the mirror's upstream exited $?"
check "the lone upstream equals the model" cmp -s "$T/model.solo" "$T/up.solo"
check "the mirror's NBD leg equals the model" cmp -s "$T/model.m" "$T/up.m"
check "the mirror's file leg equals the model" cmp -s "$T/model.m" "$T/leg0"

# A client that asked is told the upstream's minimum, and held to it.
nbdinfo --json "nbd+unix:///m?socket=$T/s.sock" >"$T/info.json" ||
	fail "nbdinfo exited $?"
check "nbdinfo shows the upstream's minimum block size" \
	[ "$(json "$T/info.json" exports.0.block_size_minimum)" = 4096 ]
PATH=/usr/bin:$PATH /usr/bin/python3 - "$T/s.sock" <<'PY' || fail "a client that asked"
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "selftests"))
import nbd_raw as raw
s = raw.connect(sys.argv[1], "solo", infos=[raw.INFO_BLOCK_SIZE])
raw.request(s, 1, 4096 + 512, 512, cookie=1, payload=b"\x11" * 512)
assert raw.reply(s) == (22, 1), "an unaligned write after asking: EINVAL"
raw.request(s, 1, 8192, 4096, cookie=2, payload=b"\x22" * 4096)
assert raw.reply(s) == (0, 2), "an aligned write after asking"
print("ok: a client that asked is held to 4096 (EINVAL), aligned writes served")
PY

stop_serve

# The same through an nbds leg (TLS, PSK): the thread's connection too.
if type -P psktool >/dev/null; then
	psktool -u alice -p "$T/keys.psk" >/dev/null 2>&1
	start_kit tls --tls=require "--tls-psk=$T/keys.psk" memory 16M
	start_serve "$T/s.sock" --instance "$(instance rmw-tls)" --threads 2 --slot-size 64K \
		--export "t=nbds+unix://alice@/?socket=$T/tls.sock&tls-psk-file=$T/keys.psk" || finish
	PATH=/usr/bin:$PATH /usr/bin/python3 "$T/model.py" "$T" t ||
		fail "unaligned I/O through an nbds leg"
	stop_serve
	nbdcopy "nbds+unix://alice@/?socket=$T/tls.sock&tls-psk-file=$T/keys.psk" "$T/up.t" ||
		fail "nbdcopy from the TLS upstream exited $?"
	check "the TLS upstream equals the model" cmp -s "$T/model.t" "$T/up.t"
fi

# The mirror's NBD leg dies (its thread's connection breaks on an
# unaligned write), is marked failed, and is rebuilt by bsteer resync on
# a new nbdkit: each worker's thread connects again, to the new one.
truncate -s 16M "$T/k.img" "$T/l.img"
start_kit rk file "$T/k.img"
RK=$KIT
INST=$(instance rmw-back)
start_serve "$T/s.sock" --instance "$INST" --threads 2 --slot-size 64K \
	--export "r=$T/l.img,$(kit_uri rk)" || finish
PATH=/usr/bin:$PATH /usr/bin/python3 "$T/model.py" "$T" r || fail "unaligned I/O before the leg dies"
kill -KILL "$RK"
wait "$RK" 2>/dev/null
PATH=/usr/bin:$PATH /usr/bin/python3 "$T/model.py" "$T" r || fail "unaligned I/O on one leg"
"$BSTEER" stat "$INST" --json >"$T/stat.json"
check "the dead NBD leg is marked failed" [ "$(json "$T/stat.json" targets.1.failed)" = true ]
rm -f "$T/rk.sock"
start_kit rk file "$T/k.img"
check "bsteer resync rebuilds the leg" "$BSTEER" resync "$INST" r 1
PATH=/usr/bin:$PATH /usr/bin/python3 "$T/model.py" "$T" r || fail "unaligned I/O after the rebuild"
"$BSTEER" stat "$INST" --json >"$T/stat.json"
check "the rebuilt leg stays healthy" [ "$(json "$T/stat.json" targets.1.failed)" = false ]
stop_serve
check "the rebuilt leg equals the model" cmp -s "$T/model.r" "$T/k.img"
check "the file leg equals the model" cmp -s "$T/model.r" "$T/l.img"

# The upstream's reads fail: so do the read-modify-writes, with its error.
start_serve "$T/s.sock" --instance "$(instance rmw-err)" --export "e=$(kit_uri err),policy=passthrough" || finish
PATH=/usr/bin:$PATH /usr/bin/python3 - "$T" <<'PY' || fail "read-modify-write errors"
import errno, os, sys
import nbd
T = sys.argv[1]
h = nbd.NBD()
h.set_request_block_size(False)
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
h.connect_uri("nbd+unix:///e?socket=%s/s.sock" % T)
flag = T + "/fail-reads"

def fails(what, call):
    try:
        call()
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, "unaligned %s: %r, not EPERM" % (what, e)
        return
    sys.exit("an unaligned %s succeeded while the upstream's reads fail" % what)

h.pwrite(b"x" * 10, 4096 + 5)
open(flag, "w").close()
fails("read", lambda: h.pread(10, 4096 + 5))
os.unlink(flag)
assert h.pread(10, 4096 + 5) == b"x" * 10
print("ok: an unaligned read fails with the upstream's EPERM, and works once it does")
open(flag, "w").close()
h.pwrite(b"y" * 4096, 8192)
fails("write", lambda: h.pwrite(b"z" * 10, 8192 + 5))
print("ok: an aligned write works while reads fail; an unaligned one fails with EPERM")
os.unlink(flag)
h.pwrite(b"z" * 10, 8192 + 5)
assert h.pread(4096, 8192) == b"y" * 5 + b"z" * 10 + b"y" * (4096 - 15)
print("ok: once reads work again, so does the unaligned write")
PY
stop_serve
finish
