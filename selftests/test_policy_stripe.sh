#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# stripe over 3 files, 64 KiB chunks, with two threads: nbdcopy writes 48
# MiB of random data, then dd takes the legs apart chunk by chunk and puts
# the source back together; a read through the server gives it back too.
# A swap to a policy of another layout is refused, with the reason.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdcopy

S=$T/nbd.sock
INST=$(instance stripe)
CHUNK=65536
truncate -s 16M "$T/l0" "$T/l1" "$T/l2"
head -c 48M /dev/urandom >"$T/src"
start_serve "$S" --instance "$INST" --threads 2 --slots 16 \
	--export "s=$T/l0,$T/l1,$T/l2,policy=stripe,chunk=64K" || finish
U="nbd+unix:///s?socket=$S"
nbdinfo --json "$U" >"$T/info.json" || fail "nbdinfo"
check "export size is three legs" [ "$(json "$T/info.json" exports.0.export-size)" = $((48 << 20)) ]
nbdcopy "$T/src" "$U" || fail "nbdcopy to the stripe"

# Chunk c of the export is chunk c/3 of leg c%3.
n=$(((48 << 20) / CHUNK))
for ((c = 0; c < n; c++)); do
	dd if="$T/l$((c % 3))" bs=$CHUNK skip=$((c / 3)) count=1 status=none
done >"$T/joined"
check "legs reassembled chunk by chunk equal the source" cmp "$T/src" "$T/joined"
check "leg 1 starts with chunk 1" cmp -n $CHUNK "$T/l1" <(dd if="$T/src" bs=$CHUNK skip=1 count=1 status=none)

nbdcopy "$U" "$T/back" || fail "nbdcopy from the stripe"
check "read back through the stripe" cmp "$T/src" "$T/back"

# A write across a chunk boundary, not aligned to it.
head -c 200000 /dev/urandom >"$T/w"
nbdsh -u "$U" -c "h.pwrite(open('$T/w','rb').read()[:196608], 3*65536-4096)" || fail "unaligned write"
dd if="$T/w" of="$T/src" bs=4096 seek=$(((3 * CHUNK - 4096) / 4096)) count=48 conv=notrunc status=none
nbdcopy "$U" "$T/back2" || fail "read after unaligned write"
check "unaligned write across chunks lands right" cmp "$T/src" "$T/back2"

"$BSTEER" policy swap "$INST" passthrough >"$T/swap.out" 2>"$T/swap.err"
check "swap to another layout refused" [ $? -ne 0 ]
check "refusal gives the reason" grep -q "layout" "$T/swap.err"
"$BSTEER" policy config "$INST" chunk=128K 2>"$T/cfg.err"
check "chunk cannot change while serving" [ $? -ne 0 ]
"$BSTEER" stat "$INST" --json >"$T/stat.json" || fail "stat"
check "no rejected decision" [ "$(json "$T/stat.json" counters.decisions_rejected)" = 0 ]
check "no direction violation" [ "$(json "$T/stat.json" counters.violations)" = 0 ]
check "stripe made the decisions" [ "$(json "$T/stat.json" decisions_by_policy_id.3)" -gt 0 ]
stop_serve
finish
