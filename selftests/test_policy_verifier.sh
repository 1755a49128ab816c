#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# A policy that the verifier refuses (an unbounded read past the request
# record): `bsteer policy load` and `swap --force` fail with the verifier's
# own reason in one line, not a libbpf dump; the running policy stays, and
# clients are served as before.
. "$(dirname "$0")/lib.sh"
need_root
BAD=$PROGS/bad_verifier.bpf.o
INST=$(instance verifier)
truncate -s 16M "$T/a"
start_serve "$T/s.sock" --instance "$INST" --export "m=$T/a" || finish

if "$BSTEER" policy load "$INST" "$BAD" >"$T/out" 2>&1; then
	fail "a policy the verifier refuses was loaded"
fi
cat "$T/out"
check "the error says the verifier refused it" grep -q "the verifier refused bad_verifier" "$T/out"
check "and gives the verifier's reason" grep -q "unbounded memory access" "$T/out"
check "in one line" [ "$(wc -l <"$T/out")" = 1 ]
if "$BSTEER" policy swap "$INST" "$BAD" --force >"$T/out2" 2>&1; then
	fail "a swap to a policy the verifier refuses succeeded"
fi
check "swap --force gives the same reason" grep -q "the verifier refused" "$T/out2"
"$BSTEER" policy show "$INST" >"$T/show"
check "the running policy stays" grep -q "hook program passthrough_tp" "$T/show"
check "no programs of it were pinned" [ ! -e "/sys/fs/bpf/bsteer/$INST/progs/bad_verifier" ]
check "clients are still served" nbdsh -u "nbd+unix:///m?socket=$T/s.sock" \
	-c 'h.pwrite(b"x" * 4096, 0); assert h.pread(4096, 0) == b"x" * 4096'
stop_serve
finish
