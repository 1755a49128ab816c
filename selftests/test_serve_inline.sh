#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Inline targets (bsteer serve --inline-io): a target on tmpfs, whose I/O
# io_uring would hand to io-wq, is served by the ring's own thread: reads
# of up to 64 KiB are pread(), writes pwrite(), FLUSH and TRIM the plain
# syscalls. The bytes must be the file's at every offset, a write must be
# seen by the next read, a file that shrinks under the server must give the
# client an error (not kill the server), and --inline-io off must go
# through io_uring again. With --inline-io all, small one-leg writes to
# ext4 are pwrite()s as well, checked the same way.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdsh nbdcopy
shm_dir
truncate -s 64M "$SHM/a.img"
truncate -s 64M "$T/disk.img"
# Only a file that io_uring cannot read without blocking is mapped.
python3 - "$SHM/a.img" <<'PY' || skip "tmpfs reads need no worker on this kernel"
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
except OSError as e:
    sys.exit(0 if e.errno == errno.EOPNOTSUPP else 1)
sys.exit(1)
PY

S=$T/nbd.sock
INST=$(instance inline)
counter() { "$BSTEER" stat "$INST" --json >"$T/stat.json" && json "$T/stat.json" "counters.$1"; }

start_serve "$S" --instance "$INST" -v --export "shm=$SHM/a.img" \
	--export "disk=$T/disk.img" || finish
U="nbd+unix:///shm?socket=$S"
check "the tmpfs target is inline" grep -q "target 0: served inline" "$T/serve.log"
check "the ext4 target is not" sh -c "! grep -q 'target 1: served inline' '$T/serve.log'"

head -c 64M /dev/urandom >"$T/src"
nbdcopy "$T/src" "$U" || fail "nbdcopy in"
check "written inline" cmp -s "$T/src" "$SHM/a.img"
check "the writes were inline ops" [ "$(counter inline_ops)" -ge $(((64 << 20) / (1 << 20))) ]
n=$(counter inline_ops)
# Reads over 64 KiB stay with io-wq, where their copy overlaps the sends.
nbdcopy --request-size=262144 "$U" "$T/out" || fail "nbdcopy out"
check "read back equal" cmp -s "$T/src" "$T/out"
check "256K reads were not inline" [ "$(counter inline_ops)" = "$n" ]

nbdsh -u "$U" -c "
import random
random.seed(7)
img = open('$SHM/a.img', 'rb')
for i in range(200):
    off = random.randrange(0, (64 << 20) // 512) * 512
    ln = random.randrange(1, 129) * 512
    ln = min(ln, (64 << 20) - off)
    img.seek(off)
    assert h.pread(ln, off) == img.read(ln), (off, ln)
# A write is what the next read sees: one page cache for both paths.
for i in range(50):
    off = random.randrange(0, (64 << 20) // 4096) * 4096
    data = bytes([i]) * 8192 if off + 8192 <= (64 << 20) else bytes([i]) * 4096
    h.pwrite(data, off)
    assert h.pread(len(data), off) == data, off
h.flush()
h.trim(1 << 20, 8 << 20)
assert h.pread(1 << 20, 8 << 20) == bytes(1 << 20)
" || fail "random reads equal the file; writes seen by the next read; trim"
check "those were inline" [ "$(counter inline_ops)" -ge $((n + 302)) ]
check "no error reply" [ "$(counter client_errors)" = 0 ]
check "the trim punched the file" python3 -c "import os,sys
fd = os.open('$SHM/a.img', os.O_RDONLY)
sys.exit(os.lseek(fd, 8 << 20, os.SEEK_DATA) < 9 << 20)"

# The file shrinks under the server: past the new end a read is an error,
# the same one as through io_uring (below).
shrink() {
	truncate -s 32M "$SHM/a.img"
	nbdsh -u "$U" -c "
try:
    h.pread(4096, 48 << 20)
except nbd.Error as e:
    assert e.errno == 'EIO', e.errno
else:
    raise SystemExit('a read past the end of a shrunk file succeeded')
assert h.pread(4096, 0) == open('$SHM/a.img', 'rb').read(4096)
" || fail "$1: a read past a shrunk file's end fails with EIO, the rest still reads"
	check "$1: the server is still up" kill -0 "$SERVE"
}
shrink inline
stop_serve

truncate -s 64M "$SHM/a.img"
start_serve "$S" --instance "$INST" --inline-io off --export "shm=$SHM/a.img" || finish
nbdcopy "$U" "$T/out2" || fail "nbdcopy out, through io_uring"
check "same bytes through io_uring" cmp -s "$SHM/a.img" "$T/out2"
check "--inline-io off: no inline op" [ "$(counter inline_ops)" = 0 ]
shrink io_uring
stop_serve

# --inline-io all: one-leg writes of up to 64 KiB to ext4 (which io_uring
# punts) are pwrite()s too; larger ones, and a mirror's legs, are not.
truncate -s 64M "$T/m1.img" "$T/m2.img"
start_serve "$S" --instance "$INST" -v --inline-io all --export "disk=$T/disk.img" \
	--export "m=$T/m1.img,$T/m2.img" || finish
U="nbd+unix:///disk?socket=$S"
check "all: the ext4 target's small writes are inline" \
	grep -q "target 0: its small one-leg writes are done by the ring" "$T/serve.log"
check "all: its reads are not" sh -c "! grep -q 'target 0: served inline' '$T/serve.log'"
nbdsh -u "$U" -c "
import random
random.seed(11)
want = {}
for i in range(100):
    off = random.randrange(0, (64 << 20) // 4096) * 4096
    ln = min(random.choice((4096, 16384, 65536)), (64 << 20) - off)
    data = bytes([i + 1]) * ln
    h.pwrite(data, off)
    for o in range(off, off + ln, 4096):
        want[o] = data[:4096]
h.flush()
for o, d in want.items():
    assert h.pread(4096, o) == d, o
" || fail "all: small writes to ext4 read back"
n=$(counter inline_ops)
check "all: those writes were inline" [ "$n" -ge 100 ]
nbdcopy --request-size=262144 "$T/src" "$U" || fail "all: 256K writes"
nbdcopy "$U" "$T/out3" || fail "all: nbdcopy out"
check "all: 256K writes land" cmp -s "$T/src" "$T/out3"
check "all: 256K writes were not inline" [ "$(counter inline_ops)" = "$n" ]
nbdcopy --request-size=4096 "$T/src" "nbd+unix:///m?socket=$S" || fail "all: mirror writes"
check "all: both legs written" sh -c "cmp -s '$T/src' '$T/m1.img' && cmp -s '$T/src' '$T/m2.img'"
check "all: a mirror's legs were not inline" [ "$(counter inline_ops)" = "$n" ]
stop_serve

# --inline-io auto (the default) on ext4: small one-leg writes are inline
# too, each timed; one that takes --inline-budget or longer sends the
# target's writes to io-wq for a back-off (100 ms, doubling while slow).
# Counted: inline_writes, inline_slow_writes (each began a back-off) and
# inline_backoff_writes (sent to io-wq by one). No timing is asserted: the
# first write is always tried inline, and every write the rule takes is
# one of the two kinds.
# writes SEED N: N writes of 4K/16K/64K to the disk export, each read back,
# then the image itself compared with what was written.
writes() {
	nbdsh -u "nbd+unix:///disk?socket=$S" -c "
import random
random.seed($1)
want = {}
for i in range($2):
    off = random.randrange(0, (64 << 20) // 4096) * 4096
    ln = min(random.choice((4096, 16384, 65536)), (64 << 20) - off)
    data = random.randbytes(ln)
    h.pwrite(data, off)
    for o in range(off, off + ln, 4096):
        want[o] = data[o - off:o - off + 4096]
for o, d in want.items():
    assert h.pread(4096, o) == d, o
img = open('$T/disk.img', 'rb')
for o, d in want.items():
    img.seek(o)
    assert img.read(4096) == d, ('file', o)
"
}
# punts CMD...: io-wq hand-offs (io_uring_queue_async_work) by the server
# while CMD runs, in $T/punts; "" if perf cannot count them here.
punts() {
	local perf rc
	rm -f "$T/punts" "$T/perf"
	perf stat -x, -e io_uring:io_uring_queue_async_work -p "$SERVE" -o "$T/perf" &
	perf=$!
	sleep 0.5	# perf attached
	"$@"
	rc=$?
	kill -INT "$perf"
	wait "$perf"
	awk -F, '/io_uring_queue_async_work/ { print $1 }' "$T/perf" >"$T/punts"
	return $rc
}
perf_ok=$(perf stat -e io_uring:io_uring_queue_async_work -- true >/dev/null 2>&1 && echo 1)
sum() { echo $(($(counter inline_writes) + $(counter inline_backoff_writes))); }

start_serve "$S" --instance "$INST" -v --export "disk=$T/disk.img" || finish
check "auto: the ext4 target's small writes are inline while fast" \
	grep -q "target 0: its small one-leg writes are done by the ring's thread while they are fast" "$T/serve.log"
if [ -n "$perf_ok" ]; then
	punts writes 21 200 || fail "auto: small writes to ext4 read back"
else
	writes 21 200 || fail "auto: small writes to ext4 read back"
fi
check "auto: every write inline or sent by a back-off" [ "$(sum)" = 200 ]
check "auto: the first at least was inline" [ "$(counter inline_writes)" -ge 1 ]
check "auto: inline_ops counts them" [ "$(counter inline_ops)" = "$(counter inline_writes)" ]
# With the default budget (1 ms, some 100 times a page-cache write) a slow
# write may still happen on a loaded machine; without one, none goes to io-wq.
slow=$(counter inline_slow_writes)
echo "auto: $(counter inline_writes) inline, $slow slow, $(counter inline_backoff_writes) by a back-off"
[ "$slow" = 0 ] && check "auto: no slow write, no back-off write" [ "$(counter inline_backoff_writes)" = 0 ]
if [ -n "$perf_ok" ] && [ -s "$T/punts" ]; then
	echo "auto: $(cat "$T/punts") io-wq hand-offs during the writes"
	check "auto: io-wq took at most the back-off's writes" \
		[ "$(cat "$T/punts")" -le "$(counter inline_backoff_writes)" ]
fi
stop_serve

# --inline-budget 0: every inline write is slow. The first is done inline
# and begins a back-off; later ones go to io-wq (the next inline try only
# after 100 ms, then 200, 400 ...).
start_serve "$S" --instance "$INST" --inline-budget 0 --export "disk=$T/disk.img" || finish
if [ -n "$perf_ok" ]; then
	punts writes 22 200 || fail "budget 0: small writes to ext4 read back"
else
	writes 22 200 || fail "budget 0: small writes to ext4 read back"
fi
echo "budget 0: $(counter inline_writes) inline, $(counter inline_slow_writes) slow, $(counter inline_backoff_writes) by a back-off"
check "budget 0: every write inline or sent by a back-off" [ "$(sum)" = 200 ]
check "budget 0: the first was inline" [ "$(counter inline_writes)" -ge 1 ]
check "budget 0: every inline write was slow" \
	[ "$(counter inline_slow_writes)" = "$(counter inline_writes)" ]
check "budget 0: later writes went to io-wq" [ "$(counter inline_backoff_writes)" -gt 0 ]
if [ -n "$perf_ok" ] && [ -s "$T/punts" ]; then
	echo "budget 0: $(cat "$T/punts") io-wq hand-offs during the writes"
	check "budget 0: io-wq did take writes" [ "$(cat "$T/punts")" -gt 0 ]
fi
stop_serve

# A budget of 10 s (the most): a write that slow would be a hung disk, a
# margin of some 10^6 over a page-cache write, so none falls back.
start_serve "$S" --instance "$INST" --inline-budget 10000000 --export "disk=$T/disk.img" || finish
writes 23 200 || fail "budget 10 s: small writes to ext4 read back"
check "budget 10 s: all 200 writes inline" [ "$(counter inline_writes)" = 200 ]
check "budget 10 s: no slow write" [ "$(counter inline_slow_writes)" = 0 ]
check "budget 10 s: no back-off write" [ "$(counter inline_backoff_writes)" = 0 ]
stop_serve

# --inline-io off: no inline write, no back-off.
start_serve "$S" --instance "$INST" --inline-io off --export "disk=$T/disk.img" || finish
writes 24 50 || fail "off: small writes to ext4 read back"
check "off: no inline write" [ "$(counter inline_writes)" = 0 ]
check "off: no back-off write" [ "$(counter inline_backoff_writes)" = 0 ]
stop_serve

"$BSTEER" serve --inline-io sometimes >"$T/bad.log" 2>&1
check "a bad --inline-io value is refused" [ $? -ne 0 ]
check "... and named" grep -q -- "--inline-io: .* is not auto, all or off" "$T/bad.log"
finish
