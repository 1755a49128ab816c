#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Hostile clients against bsteer serve: garbage magic (in negotiation and
# in a request), a truncated header, a 1 GiB WRITE length, an unknown
# command. Each bad connection ends cleanly (the unknown command gets
# EINVAL, as the protocol asks, and the connection stays usable), nothing
# is allocated for the 1 GiB write, and a second client, connected all
# along, keeps reading and writing correctly between every attack.
. "$(dirname "$0")/lib.sh"
need_root
command -v nbdsh >/dev/null || skip "nbdsh not installed"

S=$T/nbd.sock
INST=$(instance bad)
truncate -s 64M "$T/disk.img"
start_serve "$S" --instance "$INST" --export "m=$T/disk.img" || finish

PATH=/usr/bin:$PATH /usr/bin/python3 - "$S" "$INST" <<'PY' || fail "abuse script"
import json, os, socket, struct, subprocess, sys
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
    out = subprocess.run(["build/bsteer", "stat", inst, "--json"],
                         capture_output=True, check=True).stdout
    return json.loads(out)

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

# A 1 GiB write: refused before anything is leased.
leases = stat()["counters"]["slot_leases"]
s = raw.connect(path, "m")
raw.request(s, 1, 0, 1 << 30)
assert raw.closed(s); print("ok: 1 GiB write length closes the connection")
assert stat()["counters"]["slot_leases"] == leases, "a slot was leased"
print("ok: no slot leased for it")
good_io()

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

st = stat()
assert st["slots"]["leased"] == 0 and st["slots"]["releasing"] == 0, st["slots"]
assert st["counters"]["decisions_rejected"] == 0
print("ok: no slot held and no decision rejected afterwards")
good.shutdown()
PY
kill -0 "$SERVE" 2>/dev/null || fail "server died"
stop_serve
finish
