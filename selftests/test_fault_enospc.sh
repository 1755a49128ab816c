#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# An ENOSPC target: the export's file lives on a 4 MiB tmpfs the test
# mounts, sparse and larger than the tmpfs. Writes past what fits get
# ENOSPC, each for its own request; the server keeps running, the writes
# that fitted read back, and once space is freed writes work again.
. "$(dirname "$0")/lib.sh"
need_root
M=$T/small
mkdir "$M"
mount -t tmpfs -o size=4M tmpfs "$M" || skip "cannot mount a tmpfs"
cleanup_mount() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	umount "$M" 2>/dev/null || umount -l "$M"
	cleanup
}
trap cleanup_mount EXIT
truncate -s 16M "$M/disk"
start_serve "$T/s.sock" --instance "$(instance enospc)" --export "d=$M/disk" || finish
nbdsh -u "nbd+unix:///d?socket=$T/s.sock" -c '
import errno
ok = nospc = 0
for i in range(64):                       # 16 MiB in 256 KiB writes
    try:
        h.pwrite(bytes([i + 1]) * 262144, i * 262144)
        ok += 1
    except nbd.Error as e:
        assert e.errnum == errno.ENOSPC, "write %d: %s" % (i, e)
        nospc += 1
print("writes: %d ok, %d ENOSPC" % (ok, nospc))
assert ok >= 8 and nospc >= 32, (ok, nospc)
assert h.pread(262144, 0) == bytes([1]) * 262144
' || fail "ENOSPC for the writes that do not fit, the others read back"
check "the server keeps running" kill -0 "$SERVE"
"$BSTEER" stat "$(instance enospc)" --json >"$T/stat.json"
check "the errors are counted on the target" [ "$(json "$T/stat.json" targets.0.errors)" -ge 32 ]
# Room again: a TRIM punches the first 2 MiB out; writes fit there again.
check "writes work again once there is room" nbdsh -u "nbd+unix:///d?socket=$T/s.sock" -c '
h.trim(2 << 20, 0)
h.pwrite(b"z" * 262144, 0)
assert h.pread(262144, 0) == b"z" * 262144'
stop_serve
finish
