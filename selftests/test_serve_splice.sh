#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Spliced reads (bsteer serve --splice): a client READ over 64 KiB
# that the policy marks as the reply's goes from the page cache into the
# slot's pipe and from there to the socket, with no copy in the server.
# On tmpfs the ring's thread splices the file itself; on ext4 io-wq does
# (IORING_OP_SPLICE). The bytes must be the file's, in simple and
# structured replies, for requests of one part and of several (some parts
# spliced, a short last part sent from its slot), on one leg and on a
# mirror. A read cut short by a file that shrank must be an error, and
# must leave nothing in the pipe for the next read of that slot; a client
# that goes away mid-reply must give its slots back.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdsh nbdcopy
shm_dir
MB=$((1 << 20))
truncate -s 64M "$SHM/a.img" "$T/d.img" "$T/m1.img" "$T/m2.img"

S=$T/nbd.sock
INST=$(instance splice)
counter() { "$BSTEER" stat "$INST" --json >"$T/stat.json" && json "$T/stat.json" "counters.$1"; }
uri() { echo "nbd+unix:///$1?socket=$S"; }

# 256K slots: a 1M request is 4 parts, 300K is 2 (256K spliced, 44K not).
copy_through() {	# copy_through EXPORT...: the bytes in, then out in 1M reads
	local ex n
	for ex in "$@"; do
		nbdcopy "$T/src" "$(uri $ex)" || fail "$ex: nbdcopy in"
		n=$(counter spliced_reads)
		nbdcopy --request-size=$MB "$(uri $ex)" "$T/out" || fail "$ex: nbdcopy out"
		check "$ex: 1M reads give the bytes back" cmp -s "$T/src" "$T/out"
		check "$ex: their parts were spliced" [ "$(counter spliced_reads)" -ge $((n + 256)) ]
	done
}
head -c 64M /dev/urandom >"$T/src"

start_serve "$S" --instance "$INST" --slot-size 256k \
	--export "mir=$T/m1.img,$T/m2.img" || finish
copy_through mir
check "the mirror's legs were both written" cmp -s "$T/m1.img" "$T/m2.img"
stop_serve

start_serve "$S" --instance "$INST" --slot-size 256k \
	--export "shm=$SHM/a.img" --export "disk=$T/d.img" || finish
copy_through shm disk

# Random offsets and sizes, 512 bytes to 1 MiB, structured and simple
# replies: the small ones come from the slot, the rest from the pipe.
for ex in shm disk; do
	for sr in True False; do
		nbdsh -c "
import random
h.set_request_structured_replies($sr)
h.connect_uri('$(uri $ex)')
random.seed(11)
src = open('$T/src', 'rb')
for i in range(300):
    ln = random.choice([512, 4096, 65536, 300 << 10, 1 << 20,
                        random.randrange(1, 2049) * 512])
    off = random.randrange(0, ((64 << 20) - ln) // 512 + 1) * 512
    src.seek(off)
    assert h.pread(ln, off) == src.read(ln), (off, ln)
" || fail "$ex: random reads, structured replies $sr"
	done
done
check "no error reply so far" [ "$(counter client_errors)" = 0 ]
check "no decision refused" [ "$(counter decisions_rejected)" = 0 ]

# A file that shrinks under the server: a read across the new end gets
# 128K into the pipe, then nothing, and must fail; the slot's next read
# (the free stack is LIFO) must not see those 128K.
cut() {
	local ex=$1 img=$2
	truncate -s $((32 * MB + 128 * 1024)) "$img"
	nbdsh -u "$(uri $ex)" -c "
src = open('$T/src', 'rb')
for i in range(20):
    try:
        h.pread(256 << 10, 32 << 20)
    except nbd.Error as e:
        assert e.errno == 'EIO', e.errno
    else:
        raise SystemExit('a read past the end of a shrunk file succeeded')
    off = (i * 3 % 31) << 20
    src.seek(off)
    assert h.pread(256 << 10, off) == src.read(256 << 10), off
" || fail "$ex: a short splice is an error, and the next read of the slot is clean"
	check "$ex: the server is still up" kill -0 "$SERVE"
}
cut shm "$SHM/a.img"
cut disk "$T/d.img"

# A client that leaves with spliced replies unread: its slots come back.
truncate -s 64M "$SHM/a.img"
nbdsh -u "$(uri shm)" -c "
import os
for i in range(16):
    h.aio_pread(nbd.Buffer(1 << 20), i << 20)
h.poll(0)
os._exit(0)
" 2>/dev/null
slots_back() { [ "$(counter slot_leases)" = "$(counter slot_releases)" ]; }
check "a client gone mid-reply gives its slots back" wait_for 10 slots_back
nbdsh -u "$(uri shm)" -c "
assert h.pread(1 << 20, 0) == open('$T/src', 'rb').read(1 << 20)
" || fail "a new client reads after that"
stop_serve

start_serve "$S" --instance "$INST" --slot-size 256k --splice off \
	--export "disk=$T/d.img" || finish
nbdcopy --request-size=$MB "$(uri disk)" "$T/out2" || fail "nbdcopy out, --splice off"
check "--splice off: the same bytes" cmp -s "$T/d.img" "$T/out2"
check "--splice off: nothing spliced" [ "$(counter spliced_reads)" = 0 ]
stop_serve

"$BSTEER" serve --splice always >"$T/bad.log" 2>&1
check "a bad --splice value is refused" [ $? -ne 0 ]
check "... and named" grep -q -- "--splice: .* is not auto or off" "$T/bad.log"
finish
