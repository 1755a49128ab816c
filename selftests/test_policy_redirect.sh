#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# redirect: a 32 MiB export whose first half lives on leg 1 at 0 and whose
# second half lives on leg 0 at 32 MiB. Bytes must land at the mapped
# target offsets; a table change with plain bpftool, and one with bsteer
# policy config, must be followed by the next requests; bytes no entry maps
# fail with EIO.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdcopy
need_tools bpftool

S=$T/nbd.sock
INST=$(instance redirect)
D=/sys/fs/bpf/bsteer/$INST
MiB=$((1 << 20))
truncate -s 64M "$T/l0" "$T/l1"
head -c 32M /dev/urandom >"$T/src"
start_serve "$S" --instance "$INST" --slots 16 \
	--export "r=$T/l0,$T/l1,policy=redirect,map=0+16M@1:0,map=16M+16M@0:32M,size=32M" || finish
U="nbd+unix:///r?socket=$S"
nbdcopy "$T/src" "$U" || fail "nbdcopy to the export"
check "first half at leg 1 offset 0" cmp -n $((16 * MiB)) "$T/l1" "$T/src"
check "second half at leg 0 offset 32M" \
	cmp -n $((16 * MiB)) -i $((32 * MiB)):$((16 * MiB)) "$T/l0" "$T/src"
check "nothing at leg 0 offset 0" cmp -n $((16 * MiB)) "$T/l0" /dev/zero
nbdcopy "$U" "$T/back" || fail "nbdcopy from the export"
check "read back through the table" cmp "$T/src" "$T/back"

# Entry 0 now maps the first half onto leg 0 at 8 MiB, with plain bpftool:
# key 0, value start 0, len 16M, toff 8M, leg 0 (little-endian u64s, u32s).
le64() { printf '%016x' "$1" | sed 's/../& /g' | awk '{for (i = 8; i >= 1; i--) printf "%s ", $i}'; }
# shellcheck disable=SC2046 # le64 prints eight bytes: split on purpose
bpftool map update pinned "$D/redirect_table" key 0 0 0 0 \
	value hex $(le64 0) $(le64 $((16 * MiB))) $(le64 $((8 * MiB))) 0 0 0 0 0 0 0 0 ||
	fail "bpftool map update"
head -c 65536 /dev/urandom >"$T/w1"
nbdsh -u "$U" -c "h.pwrite(open('$T/w1','rb').read(), 4096)" || fail "write after bpftool change"
check "bpftool table change followed" cmp -n 65536 -i $((8 * MiB + 4096)):0 "$T/l0" "$T/w1"
check "old mapping left alone" cmp -n 65536 -i 4096:4096 "$T/l1" "$T/src"

# And with bsteer policy config: entry 1 moves to leg 1 at 40 MiB.
"$BSTEER" policy config "$INST" map.1=16M+16M@1:40M || fail "policy config"
"$BSTEER" policy config "$INST" --json >"$T/cfg.json"
check "config shows the new entry" [ "$(json "$T/cfg.json" map.1.offset)" = $((40 * MiB)) ]
nbdsh -u "$U" -c "h.pwrite(open('$T/w1','rb').read(), 16*1024*1024)" || fail "write after config change"
check "config table change followed" cmp -n 65536 -i $((40 * MiB)):0 "$T/l1" "$T/w1"

# Entries that do not fit are refused when they are set, by name: past
# the end of the 64 MiB leg, and a leg the export does not have.
"$BSTEER" policy config "$INST" map.1=16M+16M@1:60M 2>"$T/fit.err"
check "an entry past the leg's end is refused" [ $? -ne 0 ]
check "... saying where it does not fit" grep -q "map.1: 16777216 bytes at 62914560 do not fit in leg 1 of 'r' (67108864 bytes)" "$T/fit.err"
"$BSTEER" policy config "$INST" map.1=16M+16M@2:0 2>"$T/fit.err"
check "an entry on leg 2 of a 2-leg export is refused" grep -q "export 'r' has legs 0..1, not 2" "$T/fit.err"
"$BSTEER" policy config "$INST" --json >"$T/cfg2.json"
check "and neither was written" cmp "$T/cfg.json" "$T/cfg2.json"

# Drop entry 1: its half is unmapped now, and fails with EIO.
"$BSTEER" policy config "$INST" map.1=- || fail "delete entry"
nbdsh -u "$U" -c "
try:
    h.pread(4096, 20*1024*1024)
    print('read of unmapped bytes succeeded')
    raise SystemExit(1)
except nbd.Error as e:
    assert 'EIO' in str(e), e
" >"$T/unmapped.out" 2>&1
rc=$?
check "unmapped read fails with EIO" [ $rc -eq 0 ]
"$BSTEER" stat "$INST" --json >"$T/stat.json" || fail "stat"
check "no rejected decision" [ "$(json "$T/stat.json" counters.decisions_rejected)" = 0 ]
check "redirect made the decisions" [ "$(json "$T/stat.json" decisions_by_policy_id.4)" -gt 0 ]
stop_serve
finish
