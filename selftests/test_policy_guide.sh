#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The worked example of docs/policies.md, taken from the guide as it is:
# its code and its build command are extracted, built, served, and checked
# byte for byte, then swapped in again with bsteer policy swap.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdcopy
need_tools clang-19

DOC=docs/policies.md
# The fenced block after a marker line.
block() {
	awk -v m="$1" '$0 ~ m {f=1; next} f && /^```/ {if (in_) exit; in_=1; next} in_ {print}' "$DOC"
}
block '<!-- example: tier.bpf.c -->' >"$T/tier.bpf.c"
block '<!-- build -->' | sed "s|tier.bpf.c|$T/tier.bpf.c|; s|-o tier.bpf.o|-o $T/tier.bpf.o|" >"$T/build.sh"
check "guide has the example" grep -q "BSTEER_POLICY(tier" "$T/tier.bpf.c"
check "guide's build command builds it" sh -e "$T/build.sh"
[ -f "$T/tier.bpf.o" ] || finish

S=$T/nbd.sock
INST=$(instance guide)
MiB=$((1 << 20))
truncate -s 8M "$T/hot"
truncate -s 56M "$T/cold"
head -c 64M /dev/urandom >"$T/src"
start_serve "$S" --instance "$INST" \
	--export "t=$T/hot,$T/cold,policy=$T/tier.bpf.o,word.0=8M,size=64M" || finish
U="nbd+unix:///t?socket=$S"
nbdcopy "$T/src" "$U" || fail "nbdcopy to the example"
check "first 8 MiB on the hot leg" cmp -n $((8 * MiB)) "$T/hot" "$T/src"
check "the rest on the cold leg" cmp -n $((56 * MiB)) -i 0:$((8 * MiB)) "$T/cold" "$T/src"
nbdcopy "$U" "$T/back" || fail "nbdcopy from the example"
check "read back through the example" cmp "$T/src" "$T/back"
"$BSTEER" policy swap "$INST" "$T/tier.bpf.o" >/dev/null || fail "swap to the example again"
"$BSTEER" policy swap "$INST" mirror >/dev/null 2>&1
check "swap from tier to mirror refused" [ $? -ne 0 ]
nbdsh -u "$U" -c "h.pwrite(b'x' * 8192, 8*1024*1024 - 4096)" || fail "write across the boundary"
head -c 4096 /dev/zero | tr '\0' x >"$T/x4k"
check "write across the boundary: end of the hot leg" \
	cmp -n 4096 -i $((8 * MiB - 4096)):0 "$T/hot" "$T/x4k"
check "write across the boundary: start of the cold leg" cmp -n 4096 "$T/cold" "$T/x4k"
"$BSTEER" policy show "$INST" --json >"$T/show.json"
check "the example's id counts decisions" [ "$(json "$T/show.json" decisions_by_policy_id.8)" -gt 0 ]
"$BSTEER" stat "$INST" --json >"$T/stat.json"
check "no rejected decision" [ "$(json "$T/stat.json" counters.decisions_rejected)" = 0 ]
stop_serve
finish
