#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# With the completion hook detached, every decision comes from the policy's
# SEC("syscall") twin through BPF_PROG_RUN, and the copy is still correct.
. "$(dirname "$0")/lib.sh"
need_root

head -c 32M /dev/urandom >"$T/src"
"$BSTEER" copy "$T/src" --to "$T/a" --to "$T/b" --no-hook --json >"$T/out.json" ||
	fail "copy exited $?"
check "leg a equals the source" cmp -s "$T/src" "$T/a"
check "leg b equals the source" cmp -s "$T/src" "$T/b"
check "no hook decisions" [ "$(json "$T/out.json" decisions_hook)" = 0 ]
# 128 chunks: one arrival and two leg completions each.
check "every decision by the fallback" [ "$(json "$T/out.json" decisions_fallback)" = 384 ]
check "batched runs" [ "$(json "$T/out.json" fallback_runs)" -gt 0 ]
check "fewer runs than decisions" [ "$(json "$T/out.json" fallback_runs)" -lt 384 ]
check "no slot leaked" [ "$(json "$T/out.json" slots_leaked)" = 0 ]
check "no missing decision" [ "$(json "$T/out.json" decisions_missing)" = 0 ]
finish
