#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bsteer serve --fuse DIR --loop: a 2-leg mirror as a real block device.
#  - mkfs.ext4 on /dev/loopN, mount, a tree written, fio with verify through
#    the loop device (psync and io_uring engines), unmount, stop; then
#    e2fsck -fn passes on each leg's image and the legs are identical, and
#    the completion hook parsed at least 99% of the FUSE requests;
#  - a policy hot swap (mirror <-> mirror_rr) under fio verify;
#  - NBD and FUSE at once over the same export: written through one, read
#    through the other, and a FLUSH from either is a flush of every leg;
#  - --fuse-transport=dev serves the same bytes over /dev/fuse;
#  - SIGKILL under load: the loop device answers EIO, nothing waits in D
#    state, and a restart with the same instance and DIR needs no cleanup;
#  - the bad starts: DIR missing, not a directory, not empty, busy.
. "$(dirname "$0")/lib.sh"
need_root
need_tools mkfs.ext4 e2fsck fio losetup nbdcopy
INST=$(instance fuse)
M=$T/mnt E=$T/ext4
mkdir -p "$M" "$E"
BEFORE_KILL+=("umount '$E'")
AFTER_KILL+=("umount -l '$M'")

# start_fuse ARGS...: bsteer serve --fuse $M, until it serves (or died).
start_fuse() {
	: >"$T/serve.log"	# before the fork: see start_serve in lib.sh
	"$BSTEER" serve --fuse "$M" --instance "$INST" "$@" >"$T/serve.log" 2>&1 &
	SERVE=$!
	PIDS+=("$SERVE")
	wait_for 60 sh -c "grep -q 'serving on' '$T/serve.log' || ! kill -0 $SERVE" &&
		grep -q 'serving on' "$T/serve.log" ||
		{ cat "$T/serve.log" >&2; fail "the FUSE server did not start"; return 1; }
	LOOP=$(sed -n 's/.*export d: \(\/dev\/loop[0-9]*\).*/\1/p' "$T/serve.log" | tail -1)
}

stat_json() { "$BSTEER" stat "$INST" --json >"$T/stat.json"; }

fio_verify() {	# fio_verify NAME ENGINE FILE [ARGS...]: write and verify, checked
	local name=$1 engine=$2 file=$3
	shift 3
	fio --name="$name" --filename="$file" --ioengine="$engine" --direct=1 \
		--rw=randwrite --bs=4k --iodepth=16 --size=32M --verify=crc32c \
		--verify_fatal=1 --do_verify=1 "$@" >"$T/fio-$name.log" 2>&1
}

truncate -s 256M "$T/a.img" "$T/b.img"
start_fuse --loop --export "d=$T/a.img,$T/b.img,policy=mirror" || finish
check "the file is the export's size" [ "$(stat -c %s "$M/d")" = $((256 << 20)) ]
check "a loop device on it" [ -b "$LOOP" ]
check "the loop does direct I/O" [ "$(cat /sys/block/${LOOP#/dev/}/loop/dio)" = 1 ]
check "4096-byte blocks" [ "$(blockdev --getss "$LOOP")" = 4096 ]
stat_json
check "bsteer stat shows the loop device" \
	[ "$(json "$T/stat.json" exports.0.device)" = "$LOOP" ]

# The file system takes the first 128 MiB; raw fio runs past it.
check "mkfs.ext4 on the loop device" mkfs.ext4 -q -F "$LOOP" 128M
check "mount it" mount "$LOOP" "$E"
cp -r user "$E/tree" && dd if=/dev/urandom of="$E/big" bs=1M count=24 status=none
md5sum "$E/big" >"$T/big.md5"
check "fio verify on the file system (psync)" fio_verify fs psync "$E/fio.dat"
check "umount" umount "$E"
check "fio verify through the loop device (io_uring)" \
	fio_verify loopu io_uring "$LOOP" --offset=128M
check "fio verify through the loop device (psync)" \
	fio_verify loopp psync "$LOOP" --offset=192M --iodepth=1
check "the ext4 tree is still there" sh -c "mount '$LOOP' '$E' && md5sum -c --quiet '$T/big.md5' && cmp -s '$E/tree/core/ring.c' user/core/ring.c; umount '$E'"
stat_json
check "the hook parsed at least 99% of the FUSE requests" python3 - "$T/stat.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["counters"]
hook, twin = c["fuse_headers_parsed_hook"], c["fuse_headers_parsed_twin"]
print("fuse requests parsed by the hook", hook, "by the twin", twin, "requests", c["fuse_requests"])
sys.exit(0 if hook + twin == c["fuse_requests"] and hook >= 0.99 * (hook + twin) and hook > 1000 else 1)
PY
check "no decision rejected" [ "$(json "$T/stat.json" counters.decisions_rejected)" = 0 ]
stop_serve
check "the loop device is gone" sh -c "! losetup '$LOOP' 2>/dev/null | grep -q '$M'"
check "the FUSE file system is unmounted" sh -c "! grep -q ' $M ' /proc/mounts"
check "e2fsck -fn on leg a" e2fsck -fn "$T/a.img"
check "e2fsck -fn on leg b" e2fsck -fn "$T/b.img"
check "the legs are identical" cmp "$T/a.img" "$T/b.img"

# A policy swap under fio: every byte verified across it.
start_fuse --loop --export "d=$T/a.img,$T/b.img,policy=mirror" || finish
fio --name=swap --filename="$LOOP" --ioengine=io_uring --direct=1 --rw=randrw \
	--bs=4k --iodepth=16 --size=64M --verify=crc32c --verify_fatal=1 \
	--do_verify=1 --loops=4 >"$T/fio-swap.log" 2>&1 &
FIO=$!
PIDS+=("$FIO")
for p in mirror_rr mirror mirror_rr mirror; do
	"$BSTEER" policy swap "$INST" "$p" >/dev/null || fail "swap to $p"
	sleep 0.3
done
wait "$FIO"
check "fio verify across 4 policy swaps" [ $? -eq 0 ]
stat_json
check "swaps: no decision rejected or missing" sh -c \
	"[ $(json "$T/stat.json" counters.decisions_rejected) = 0 ] && [ $(json "$T/stat.json" counters.decisions_missing) = 0 ]"
stop_serve

# NBD and FUSE at once, over the same export.
S=$T/nbd.sock
: >"$T/serve.log"
"$BSTEER" serve --fuse "$M" --listen "unix:$S" --instance "$INST" \
	--export "d=$T/a.img,$T/b.img,policy=mirror" >"$T/serve.log" 2>&1 &
SERVE=$!
PIDS+=("$SERVE")
wait_for 60 sh -c "grep -q 'serving on' '$T/serve.log' && grep -q 'listening on unix:$S ' '$T/serve.log' || ! kill -0 $SERVE"
head -c 16M /dev/urandom >"$T/src"
check "both: nbdcopy writes through NBD" nbdcopy "$T/src" "nbd+unix:///d?socket=$S"
check "both: the FUSE file reads it back" cmp -n $((16 << 20)) "$T/src" "$M/d"
dd if=/dev/urandom of="$T/src2" bs=1M count=4 status=none
dd if="$T/src2" of="$M/d" bs=1M seek=32 conv=notrunc,fsync status=none
check "both: NBD reads what went through FUSE" sh -c \
	"nbdcopy 'nbd+unix:///d?socket=$S' - | cmp -i $((32 << 20)):0 -n $((4 << 20)) - '$T/src2'"
# A flush through FUSE (fsync of its file) is an fsync of every leg, as
# an NBD FLUSH is: both legs' op counts grow by the write and the fsync.
# (The places a mirror keeps for legs added later are absent: not legs.)
legops() { "$BSTEER" stat "$INST" --json | python3 -c 'import json,sys; print(" ".join(str(t["ops"]) for t in json.load(sys.stdin)["targets"] if not t["absent"]))'; }
before=$(legops)
dd if=/dev/zero of="$M/d" bs=4k count=1 seek=10000 conv=notrunc,fsync status=none
after=$(legops)
check "both: a FUSE fsync reaches every leg ($before -> $after)" python3 -c '
import sys
b, a = [list(map(int, x.split())) for x in sys.argv[1:3]]
sys.exit(0 if all(y - x >= 2 for x, y in zip(b, a)) else 1)' "$before" "$after"
stop_serve
check "both: the legs are identical" cmp "$T/a.img" "$T/b.img"

# The /dev/fuse transport: the same bytes, one copy more.
start_fuse --fuse-transport dev --export "d=$T/a.img,$T/b.img,policy=mirror" || finish
check "dev: it says which transport" grep -q "FUSE over /dev/fuse" "$T/serve.log"
check "dev: fio verify through the file" fio_verify dev psync "$M/d" --offset=64M
check "dev: reads what NBD wrote" cmp -n $((16 << 20)) "$T/src" "$M/d"
stop_serve

# SIGKILL under load: EIO at once, nothing stuck, and a restart just works
# (last: the writes the kill cut off may have reached one leg only).
start_fuse --loop --export "d=$T/a.img,$T/b.img,policy=mirror" || finish
fio --name=kill --filename="$LOOP" --ioengine=io_uring --direct=1 --rw=randrw \
	--bs=4k --iodepth=16 --size=64M --time_based --runtime=60 >"$T/fio-kill.log" 2>&1 &
FIO=$!
PIDS+=("$FIO")
wait_for 30 sh -c "[ \$(\"$BSTEER\" stat '$INST' --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"counters\"][\"fuse_requests\"])') -gt 20000 ]"
kill -KILL "$SERVE"
wait "$SERVE" 2>/dev/null
wait "$FIO"
check "fio ended with an error once the server was killed" [ $? -ne 0 ]
check "... an I/O error" grep -q "Input/output error" "$T/fio-kill.log" || { cat "$T/fio-kill.log" >&2; false; }
check "no process in D state" sh -c "! ps -eo stat,comm | grep -q '^D.*fio'"
check "the mount answers ENOTCONN" sh -c "! ls '$M' 2>&1 | grep -qv 'not connected'"
start_fuse --loop --export "d=$T/a.img,$T/b.img,policy=mirror" || finish
check "the restart removed the stale mount" grep -q "removed a stale mount" "$T/serve.log"
check "the restart serves reads" dd if="$LOOP" of=/dev/null bs=1M count=8 iflag=direct status=none
stop_serve

# Bad starts: a clear error, nothing mounted, no pins.
bad() {	# bad WHAT PATTERN DIR
	"$BSTEER" serve --fuse "$3" --instance "$INST-bad" --export "d=$T/a.img" \
		>"$T/bad.log" 2>&1
	check "$1: refused" [ $? -ne 0 ]
	check "$1: says why" grep -q "$2" "$T/bad.log"
	check "$1: no pins left" [ ! -e "/sys/fs/bpf/bsteer/$INST-bad" ]
}
bad "a missing DIR" "No such file" "$T/nowhere"
touch "$T/afile"
bad "DIR a file" "not a directory" "$T/afile"
mkdir -p "$T/full" && touch "$T/full/x"
bad "DIR not empty" "not empty" "$T/full"
mkdir -p "$T/busy" && mount -t tmpfs tmpfs "$T/busy"
AFTER_KILL+=("umount '$T/busy'")
bad "DIR busy" "busy" "$T/busy"
umount "$T/busy"
finish
