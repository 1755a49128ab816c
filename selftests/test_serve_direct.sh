#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Direct I/O targets (--export NAME=TARGET,cache=none): every file leg is
# open with O_DIRECT (its fd's flags in /proc say so; a cache=writeback
# export's do not), bsteer stat and -v say so, and the page cache holds
# none of what aligned writes wrote. The bytes stay right for aligned and
# unaligned requests (a client that never asked for block sizes may send
# any; those go through a buffered fd of the same file), on one file, a
# mirror (both legs) and a stripe (whose parts start inside a slot).
# FLUSH and FUA are answered, no read is spliced, and the kernel never
# says that a direct write collided with the page cache. tmpfs is refused (its files live in the page
# cache: nothing to bypass), and so is a cache= value other than none or
# writeback, by name, with exit status 2.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdinfo
# O_DIRECT wants a disk file system: /var/tmp (tmpfs is tested below).
D=$(mktemp -d /var/tmp/bsteer-direct.XXXXXX) || skip "no /var/tmp"
AFTER_KILL+=("rm -rf '$D'")
python3 - "$D" <<'PY' || skip "/var/tmp takes no O_DIRECT"
import os, sys
os.close(os.open(sys.argv[1] + "/probe", os.O_RDWR | os.O_CREAT | os.O_DIRECT))
PY
SIZE=$((32 << 20))
collisions() { dmesg 2>/dev/null | grep -c "Page cache invalidation failure"; }
C=$(collisions)
truncate -s $SIZE "$D/a.img" "$D/m1.img" "$D/m2.img" "$D/m3.img" "$D/w.img" \
	"$D/s0.img" "$D/s1.img" "$D/s2.img"

S=$T/nbd.sock
INST=$(instance direct)

# odirect PID FILE: does PID hold FILE open with O_DIRECT (040000)?
odirect() {
	local f flags
	for f in /proc/"$1"/fd/*; do
		[ "$(readlink "$f")" = "$2" ] || continue
		flags=$(awk '/^flags:/ { print $2 }' "/proc/$1/fdinfo/${f##*/}")
		(((8#$flags) & 8#40000)) && return 0
	done
	return 1
}

# probe EXPORT: random aligned and unaligned WRITEs and READs, checked
# against a model; FLUSH and FUA; then the files (given after) must hold
# the model. The client never asks for block sizes, so its minimum is 1.
probe() {
	PATH=/usr/bin:$PATH /usr/bin/python3 - "$S" "$@" <<'PY'
import os, random, sys
sys.path.insert(0, os.path.join(os.getcwd(), "selftests"))
import nbd_raw as raw

READ, WRITE, FLUSH, FUA = 0, 1, 3, 1
path, export, files = sys.argv[1], sys.argv[2], sys.argv[3:]

def stripe(legs):	# 64 KiB chunks, round robin
    out = bytearray()
    for c in range(len(legs[0]) * len(legs) >> 16):
        k = c // len(legs) << 16
        out += legs[c % len(legs)][k:k + (1 << 16)]
    return out

legs = [open(f, "rb").read() for f in files]
model = stripe(legs) if export == "s" else bytearray(legs[0])
size = len(model)
s = raw.connect(path, export)
rnd = random.Random(export)
cookie = 0

def req(typ, off, ln, payload=b"", flags=0):
    global cookie
    cookie += 1
    raw.request(s, typ, off, ln, cookie, payload, flags)
    err, c = raw.reply(s)
    assert (err, c) == (0, cookie), (typ, off, ln, err, c, cookie)
    return raw.recvall(s, ln) if typ == READ else None

for i in range(400):
    kind = rnd.choice(("page", "sector", "odd", "big"))
    if kind == "page":
        off, ln = rnd.randrange(size >> 12) << 12, rnd.randrange(1, 33) << 12
    elif kind == "sector":
        off, ln = rnd.randrange(size >> 9) << 9, rnd.randrange(1, 65) << 9
    elif kind == "odd":
        off, ln = rnd.randrange(size), rnd.randrange(1, 70000)
    else:	# several slots' worth, parts that start anywhere
        off, ln = rnd.randrange(size), rnd.randrange(1 << 20, 3 << 20)
    ln = min(ln, size - off) or 1
    off = min(off, size - ln)
    if rnd.random() < 0.5:
        data = os.urandom(ln)
        req(WRITE, off, ln, data, FUA if rnd.random() < 0.1 else 0)
        model[off:off + ln] = data
    else:
        got = req(READ, off, ln)
        assert got == model[off:off + ln], ("read", kind, off, ln)
req(FLUSH, 0, 0)
# The whole export reads back as the model, in 1 MiB reads.
for off in range(0, size, 1 << 20):
    assert req(READ, off, 1 << 20) == model[off:off + (1 << 20)], ("full read", off)
s.close()
if export == "s":
    assert stripe([open(f, "rb").read() for f in files]) == model, "the stripe's legs"
else:
    for f in files:
        assert open(f, "rb").read() == model, "%s does not hold the model" % f
PY
}

counter_json() { "$BSTEER" stat "$INST" --json >"$T/stat.json" && json "$T/stat.json" "$1"; }
counter() { counter_json "counters.$1"; }

start_serve "$S" --instance "$INST" -v --export "d=$D/a.img,cache=none" \
	--export "m=$D/m1.img,$D/m2.img,cache=none" \
	--export "w=$D/w.img,cache=writeback" || finish
for f in a m1 m2; do
	check "$f.img is open with O_DIRECT" odirect "$SERVE" "$D/$f.img"
done
not() { ! "$@"; }
check "w.img (cache=writeback) is not" not odirect "$SERVE" "$D/w.img"
check "-v says so" grep -q "target 0: O_DIRECT (cache=none), aligned to [0-9]* bytes" "$T/serve.log"
check "-v says so for the 3 legs of cache=none, not the writeback one" \
	[ "$(grep -c ': O_DIRECT (cache=none)' "$T/serve.log")" = 3 ]
check "bsteer stat says so" sh -c "'$BSTEER' stat '$INST' | grep -q '^export d: .*, O_DIRECT (cache=none)'"
check "bsteer stat --json says so" [ "$(counter_json exports.0.cache)" = none ]
check "and cache=writeback for w" [ "$(counter_json exports.2.cache)" = writeback ]
nbdinfo --json "nbd+unix:///d?socket=$S" >"$T/info.json" || fail "nbdinfo"
check "minimum block size still 512" [ "$(json "$T/info.json" exports.0.block_size_minimum)" = 512 ]
check "preferred block size at least 4096" \
	[ "$(json "$T/info.json" exports.0.block_size_preferred)" -ge 4096 ]

# Aligned writes go past the page cache: none of a.img's pages stay in it.
if type -P fincore >/dev/null; then
	nbd_w() {
		PATH=/usr/bin:$PATH /usr/bin/python3 - "$S" "$1" <<'PY'
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "selftests"))
import nbd_raw as raw
s = raw.connect(sys.argv[1], sys.argv[2])
for i in range(64):
    raw.request(s, 1, i << 18, 1 << 18, i + 1, os.urandom(1 << 18))
    assert raw.reply(s) == (0, i + 1)
PY
	}
	nbd_w d || fail "aligned writes to d"
	nbd_w w || fail "aligned writes to w"
	res() { fincore -b -n -o RES "$1" | tr -d ' '; }
	check "cache=none: 16 MiB written, none of it cached ($(res "$D/a.img") bytes)" \
		[ "$(res "$D/a.img")" -lt $((1 << 20)) ]
	check "cache=writeback: cached as ever ($(res "$D/w.img") bytes)" \
		[ "$(res "$D/w.img")" -ge $((8 << 20)) ]
fi

n=$(counter ops_errors)
probe d "$D/a.img" || fail "d: aligned and unaligned requests, checked against a model"
probe m "$D/m1.img" "$D/m2.img" || fail "m (mirror): the same, on both legs"
check "no op failed" [ "$(counter ops_errors)" = "$n" ]
check "no read was spliced (that reads the page cache)" [ "$(counter spliced_reads)" = 0 ]
check "flushes were counted" [ "$(counter client_flushes)" -ge 2 ]
check "no error reply" [ "$(counter client_errors)" = 0 ]
# A leg added on a running server is opened the same way.
"$BSTEER" leg add "$INST" m "$D/m3.img" --resync >"$T/add.log" 2>&1 || fail "leg add: $(cat "$T/add.log")"
check "the added leg is open with O_DIRECT" odirect "$SERVE" "$D/m3.img"
check "the added leg holds the mirror's bytes" cmp -s "$D/m1.img" "$D/m3.img"
stop_serve

# A stripe: its parts start inside the slot (64 KiB chunks, any offset).
start_serve "$S" --instance "$INST" --export "s=$D/s0.img,$D/s1.img,$D/s2.img,policy=stripe,chunk=64K,cache=none" || finish
check "the stripe's legs are open with O_DIRECT" odirect "$SERVE" "$D/s1.img"
probe s "$D/s0.img" "$D/s1.img" "$D/s2.img" || fail "s (stripe): checked against a model"
stop_serve

check "no direct write collided with buffered I/O (dmesg)" [ "$(collisions)" = "$C" ]

# tmpfs: refused, saying why.
shm_dir
truncate -s 1M "$SHM/t.img"
"$BSTEER" serve --listen "unix:$T/x.sock" --instance "$INST-t" \
	--export "t=$SHM/t.img,cache=none" >"$T/bad.log" 2>&1
check "tmpfs with cache=none: refused" [ $? = 1 ]
check "tmpfs: says why" grep -q "cache=none: tmpfs keeps its files in the page cache" "$T/bad.log"

"$BSTEER" serve --listen "unix:$T/x.sock" --instance "$INST-b" \
	--export "b=$D/a.img,cache=direct" >"$T/bad.log" 2>&1
check "cache=direct: a usage error" [ $? = 2 ]
check "cache=direct: refused by name" grep -q "cache=direct: want none or writeback" "$T/bad.log"
finish
