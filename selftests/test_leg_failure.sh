#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# A mirror leg whose writes fail (/dev/full: ENOSPC): the policy marks it
# failed after its first error, the executor sends it nothing more, and the
# healthy leg still gets every byte. With the only leg failing, the copy
# fails with the leg's error.
. "$(dirname "$0")/lib.sh"
need_root
[ -c /dev/full ] || skip "no /dev/full"

head -c 8M /dev/urandom >"$T/src"
"$BSTEER" copy "$T/src" --to "$T/a" --to /dev/full --policy mirror --json \
	>"$T/out.json" 2>"$T/err" || fail "copy with one failing leg exited $?"
check "healthy leg equals the source" cmp -s "$T/src" "$T/a"
check "failing leg marked failed" [ "$(json "$T/out.json" targets.1.failed)" = true ]
check "failing leg errors counted" [ "$(json "$T/out.json" targets.1.errors)" -ge 1 ]
# Depth 16: at most the writes already in flight when it failed reach it.
check "failed leg gets no new ops" [ "$(json "$T/out.json" targets.1.ops)" -le 16 ]
check "healthy leg took every chunk" [ "$(json "$T/out.json" targets.0.ops)" = 32 ]
check "no slot leaked" [ "$(json "$T/out.json" slots_leaked)" = 0 ]

if "$BSTEER" copy "$T/src" --to /dev/full --json >"$T/one.json" 2>"$T/err"; then
	fail "copy to a full device succeeded"
fi
check "error names ENOSPC" grep -q "No space left" "$T/err"
check "no slot leaked on failure" [ "$(json "$T/one.json" slots_leaked)" = 0 ]
finish
