#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bsteer serve against real NBD clients on a unix socket: nbdinfo, nbdcopy
# (256 MiB in and out, through a 2-leg mirror), qemu-img, qemu-io, fio's nbd
# engine with verification over 2 connections, and nbdsh for the error
# cases. Every decision must come from the completion hook.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdinfo nbdcopy nbdsh qemu-img qemu-io fio

S=$T/nbd.sock
INST=$(instance serve)
truncate -s 256M "$T/a.img" "$T/b.img"
truncate -s 64M "$T/ro.img"
printf 'read-only bytes' | dd of="$T/ro.img" conv=notrunc status=none
start_serve "$S" --instance "$INST" --threads 2 --slots 32 \
	--export "m=$T/a.img,$T/b.img" --export "ro=$T/ro.img,ro" || finish
M="nbd+unix:///m?socket=$S"
RO="nbd+unix:///ro?socket=$S"

nbdinfo --json "$M" >"$T/info.json" || fail "nbdinfo"
check "nbdinfo: size" [ "$(json "$T/info.json" exports.0.export-size)" = $((256 << 20)) ]
check "nbdinfo: flush" [ "$(json "$T/info.json" exports.0.can_flush)" = true ]
check "nbdinfo: multi-conn" [ "$(json "$T/info.json" exports.0.can_multi_conn)" = true ]
check "nbdinfo: writable" [ "$(json "$T/info.json" exports.0.is_read_only)" = false ]
check "nbdinfo: minimum block" [ "$(json "$T/info.json" exports.0.block_size_minimum)" = 512 ]
check "nbdinfo: preferred block" [ "$(json "$T/info.json" exports.0.block_size_preferred)" = 4096 ]
# 32 slots of 1 MiB per thread: a request may span 16 of them.
check "nbdinfo: maximum block" [ "$(json "$T/info.json" exports.0.block_size_maximum)" = $((16 << 20)) ]
for f in can_trim can_zero can_fast_zero can_fua can_cache; do
	check "nbdinfo: $f" [ "$(json "$T/info.json" exports.0.$f)" = true ]
done
check "nbdinfo: base:allocation offered" python3 -c "import json,sys
sys.exit('base:allocation' not in json.load(open('$T/info.json'))['exports'][0]['contexts'])"
check "nbdinfo: structured replies" [ "$(json "$T/info.json" structured)" = true ]
nbdinfo --list "nbd+unix:///?socket=$S" >"$T/list" || fail "nbdinfo --list"
check "list names both exports" sh -c "grep -q 'export=\"m\"' '$T/list' && grep -q 'export=\"ro\"' '$T/list'"
nbdinfo --json "$RO" >"$T/ro.json" || fail "nbdinfo ro"
check "read-only export says so" [ "$(json "$T/ro.json" exports.0.is_read_only)" = true ]

# base:allocation follows the file's holes: one 1 MiB extent of data.
nbdsh -u "$M" -c "h.pwrite(b'\x11' * (1 << 20), 8 << 20); h.flush()" || fail "seed data"
nbdinfo --map "$M" >"$T/map" || fail "nbdinfo --map"
check "map: leading hole" grep -qE '^ +0 +8388608 +3 +hole,zero' "$T/map"
check "map: the data" grep -qE '^ +8388608 +1048576 +0 +data' "$T/map"
check "map: trailing hole" grep -qE '^ +9437184 +258998272 +3 +hole,zero' "$T/map"
qemu-img map -f raw --output=json "$M" >"$T/qmap" || fail "qemu-img map"
check "qemu-img map sees the data extent" grep -q '"start": 8388608, "length": 1048576.*"data": true' "$T/qmap"
nbdsh -c "
h.add_meta_context('base:allocation')
h.connect_uri('$M')
assert h.get_structured_replies_negotiated()
assert h.can_meta_context('base:allocation')
seen = []
def cb(ctx, off, entries, err):
    seen.append(entries)
    return 0
h.block_status(1 << 20, (8 << 20) - 4096, cb, nbd.CMD_FLAG_REQ_ONE)
assert seen == [[4096, 3]], seen
seen.clear()
h.block_status(1 << 20, (8 << 20) - 4096, cb)
assert seen == [[4096, 3, (1 << 20) - 4096, 0]], seen
assert h.pread(4096, 8 << 20) == b'\x11' * 4096
" || fail "nbdsh: block status and structured reads"

head -c 256M /dev/urandom >"$T/src"
nbdcopy "$T/src" "$M" || fail "nbdcopy in"
nbdcopy "$M" "$T/out" || fail "nbdcopy out"
check "nbdcopy round trip" cmp -s "$T/src" "$T/out"
check "mirror leg a equals the source" cmp -s "$T/src" "$T/a.img"
check "mirror leg b equals the source" cmp -s "$T/src" "$T/b.img"
# Two threads, one ring each: slots 0-31 are ring 0's, 32-63 ring 1's. The
# kernel's count of fixed-buffer ops per slot shows both served clients.
bpftool map dump pinned "/sys/fs/bpf/bsteer/$INST/slot_meta" -j >"$T/meta.json" ||
	fail "bpftool dump of slot_meta"
check "both rings carried I/O" python3 -c "import json,sys
k = [e['formatted']['value']['kops'] for e in json.load(open('$T/meta.json'))]
print('kernel fixed-buffer ops per ring:', sum(k[:32]), sum(k[32:]))
sys.exit(not (sum(k[:32]) > 0 and sum(k[32:]) > 0))"

qemu-img convert -f raw -O raw "$RO" "$T/qemu.img" || fail "qemu-img convert"
check "qemu-img convert of the read-only export" cmp -s "$T/ro.img" "$T/qemu.img"
# Requests larger than a slot are split into parts, one slot each; larger
# than the slots hold (a round), into rounds.
nbdsh -u "$M" -c "
import os, errno
d16 = os.urandom(16 << 20)
h.pwrite(d16, 64 << 20)
assert h.pread(16 << 20, 64 << 20) == d16
d = os.urandom((5 << 20) + 4096)
h.pwrite(d, 96 << 20, nbd.CMD_FLAG_FUA)
assert h.pread(len(d), 96 << 20) == d
h.set_strict_mode(0)
# Past the advertised maximum: served in rounds, up to --max-request
# (past it, test_serve_nbdspec.sh: libnbd itself stops at 64 MiB).
assert h.pread((16 << 20) + 512, 64 << 20)[:16 << 20] == d16
" || fail "nbdsh: requests spanning several slots"
qemu-io -f raw "$M" -c "write -P 0xa5 1M 192k" -c "read -P 0xa5 1M 192k" \
	-c "write -P 0x5e 32M 16M" -c "read -P 0x5e 32M 16M" \
	-c "write -P 0x3c 100M 4k" -c "read -P 0x3c 100M 4k" >"$T/qio" 2>&1 ||
	fail "qemu-io: $(cat "$T/qio")"
check "qemu-io pattern checks" sh -c "! grep -q 'Pattern verification failed' '$T/qio'"

fio --name=verify --ioengine=nbd --uri="$M" --rw=randwrite --bs=4k \
	--iodepth=32 --numjobs=2 --size=16M --offset_increment=32M \
	--verify=crc32c --do_verify=1 --verify_state_save=0 --output-format=json >"$T/fio.json" 2>"$T/fio.err" ||
	fail "fio: $(tail -3 "$T/fio.err")"
# fio's nbd engine prints "connected" lines before the JSON.
check "fio verified with no errors" python3 -c "import json,sys
t=open('$T/fio.json').read()
d=json.loads(t[t.index('{'):])
sys.exit(any(j['error'] for j in d['jobs']) or
         sum(j['write']['total_ios'] for j in d['jobs']) != 2 * 4096)"

# bsteer stat while fio reads: the hook decides, nothing is rejected.
# stat is taken once fio's requests are seen to flow (a count, not a sleep).
# fio reads a fixed 512 MiB, not for a time, so a slow machine takes longer
# but still has its reads in flight when stat looks.
requests_done() {
	"$BSTEER" stat "$INST" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["requests_done"])'
}
done0=$(requests_done)
flowing() { [ "$(requests_done)" -gt $((done0 + 1000)) ]; }
fio --name=load --ioengine=nbd --uri="$M" --rw=randread --bs=4k --iodepth=32 \
	--size=64M --io_size=512M >"$T/load-fio.log" 2>&1 &
FIO=$!
PIDS+=("$FIO")
wait_for 60 flowing || fail "fio's requests did not flow: $(cat "$T/load-fio.log")"
"$BSTEER" stat "$INST" --json >"$T/load.json" || fail "stat under load"
wait "$FIO" || fail "fio load run: $(cat "$T/load-fio.log")"
check "under load: >= 99% of decisions by the hook" python3 -c "import json,sys
d = json.load(open('$T/load.json')); c = d['counters']
print('hook ratio under load:', d['hook_ratio'], 'decisions:', c['decisions_hook'])
sys.exit(not (d['hook_ratio'] >= 0.99 and c['decisions_rejected'] == 0))"
nbdsh -u "$M" -c "
import errno
h.set_strict_mode(0)
size = h.get_size()
for off, what in ((size, 'at the end'), (size - 512, 'across the end'),
                  (100, 'at a misaligned offset')):
    try:
        h.pread(1024, off)
        raise SystemExit('read %s succeeded' % what)
    except nbd.Error as e:
        assert e.errnum == errno.EINVAL, (what, e)
try:
    h.pwrite(b'x' * 100, 4 << 20)
    raise SystemExit('a misaligned write succeeded')
except nbd.Error as e:
    assert e.errnum == errno.EINVAL, e
h.pwrite(b'\x5a' * 65536, 4 << 20)
h.flush()
assert h.pread(65536, 4 << 20) == b'\x5a' * 65536
" || fail "nbdsh: EINVAL past the end, write/flush/read"
# TRIM and WRITE_ZEROES read back as zeros on both legs; FUA adds one
# data sync per leg (seen in the targets' op counts).
nbdsh -u "$M" -c "
import json, subprocess
def ops():
    out = subprocess.run(['$BSTEER', 'stat', '$INST', '--json'],
                         capture_output=True, check=True).stdout
    return [t['ops'] for t in json.loads(out)['targets'][:2]]
h.pwrite(b'\xff' * (1 << 20), 8 << 20)
before = ops()
h.pwrite(b'\xee' * 4096, 8 << 20)
plain = [a - b for a, b in zip(ops(), before)]
before = ops()
h.pwrite(b'\xdd' * 4096, 8 << 20, nbd.CMD_FLAG_FUA)
fua = [a - b for a, b in zip(ops(), before)]
assert plain == [1, 1] and fua == [2, 2], (plain, fua)
h.trim(65536, (8 << 20) + 4096)
assert h.pread(65536, (8 << 20) + 4096) == bytes(65536)
h.zero(65536, (8 << 20) + 131072, nbd.CMD_FLAG_NO_HOLE)
assert h.pread(65536, (8 << 20) + 131072) == bytes(65536)
h.zero(65536, (8 << 20) + 262144, nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(65536, (8 << 20) + 262144) == bytes(65536)
assert h.pread(4096, 8 << 20) == b'\xdd' * 4096
h.cache(1 << 20, 0)
h.flush()
" || fail "nbdsh: TRIM, WRITE_ZEROES, FUA, CACHE"
check "legs equal after trim and zero" cmp -s "$T/a.img" "$T/b.img"
nbdsh -u "$RO" -c "
import errno
h.set_strict_mode(0)
for what, op in (('write', lambda: h.pwrite(b'x' * 512, 0)),
                 ('trim', lambda: h.trim(512, 0)),
                 ('zero', lambda: h.zero(512, 0))):
    try:
        op()
        raise SystemExit(what + ' on a read-only export succeeded')
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, (what, e)
assert h.pread(512, 0)[:15] == b'read-only bytes'
" || fail "nbdsh: EPERM on a read-only export"
check "read-only image untouched" sh -c "head -c 15 '$T/ro.img' | grep -q 'read-only bytes'"

"$BSTEER" stat "$INST" --json >"$T/stat.json" || fail "stat"
check "every decision by the completion hook" [ "$(json "$T/stat.json" counters.decisions_fallback)" = 0 ]
check "hook decisions counted" [ "$(json "$T/stat.json" counters.decisions_hook)" -gt 1000 ]
check "no rejected decision" [ "$(json "$T/stat.json" counters.decisions_rejected)" = 0 ]
check "no direction violation" [ "$(json "$T/stat.json" counters.violations)" = 0 ]
check "no foreign-context completion" [ "$(json "$T/stat.json" counters.foreign_completions)" = 0 ]
check "headers parsed by BPF in the completion hook" [ "$(json "$T/stat.json" counters.headers_parsed_hook)" -gt 2000 ]
check "no header left to the fallback parser" [ "$(json "$T/stat.json" counters.headers_parsed_fallback)" = 0 ]
check "stat: connections counted" [ "$(json "$T/stat.json" counters.connections_total)" -ge 10 ]
check "stat: 256 MiB written by clients" [ "$(json "$T/stat.json" counters.client_bytes_written)" -ge $((256 << 20)) ]
check "stat: 256 MiB read by clients" [ "$(json "$T/stat.json" counters.client_bytes_read)" -ge $((256 << 20)) ]
check "stat: writes and reads by type" sh -c "[ $(json "$T/stat.json" counters.client_writes) -gt 1000 ] && [ $(json "$T/stat.json" counters.client_reads) -gt 1000 ]"
check "stat: error replies counted" [ "$(json "$T/stat.json" counters.client_errors)" -ge 5 ]
# A function, so that wait_for asks again each time (not one expansion).
no_open_conns() {
	[ "$("$BSTEER" stat "$INST" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["connections_open"])')" = 0 ]
}
check "stat: no connection left open" wait_for 5 no_open_conns

stop_serve
check "pins removed" [ ! -e "/sys/fs/bpf/bsteer/$INST" ]
check "socket removed" [ ! -e "$S" ]
finish
