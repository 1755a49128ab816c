#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bsteer copy of 256 MiB of random data to a 2-leg mirror: both legs equal
# the source, at least 99% of decisions come from the completion hook, and
# nothing leaks. Also one target, --fsync, and a pipe as the source.
. "$(dirname "$0")/lib.sh"
need_root

head -c 256M /dev/urandom >"$T/src"
"$BSTEER" copy "$T/src" --to "$T/a" --to "$T/b" --policy mirror --json \
	>"$T/out.json" || fail "mirror copy exited $?"
check "leg a equals the source" cmp -s "$T/src" "$T/a"
check "leg b equals the source" cmp -s "$T/src" "$T/b"
check "ok" [ "$(json "$T/out.json" ok)" = true ]
check "bytes" [ "$(json "$T/out.json" bytes)" = $((256 << 20)) ]
check ">= 99% hook decisions" python3 -c "import sys; sys.exit(not $(json "$T/out.json" hook_ratio) >= 0.99)"
check "no slot leaked" [ "$(json "$T/out.json" slots_leaked)" = 0 ]
check "no violation" [ "$(json "$T/out.json" violations)" = 0 ]
check "no foreign completion" [ "$(json "$T/out.json" foreign_completions)" = 0 ]
check "no rejected decision" [ "$(json "$T/out.json" decisions_rejected)" = 0 ]
check "leg a bytes counted" [ "$(json "$T/out.json" targets.0.bytes)" = $((256 << 20)) ]
check "leg b bytes counted" [ "$(json "$T/out.json" targets.1.bytes)" = $((256 << 20)) ]
# One slot per chunk is shared by both legs: the kernel saw one read and
# two writes per chunk, all on fixed buffers.
check "one read + two writes per chunk" [ "$(json "$T/out.json" kernel_fixed_ops)" = $((3 * 1024)) ]

head -c 5000000 /dev/urandom >"$T/odd"
"$BSTEER" copy "$T/odd" --to "$T/one" --slot-size 64K --depth 4 --fsync --json \
	>"$T/one.json" || fail "single-target copy exited $?"
check "passthrough copy of an odd size" cmp -s "$T/odd" "$T/one"
check "default policy for one target" [ "$(json "$T/one.json" policy)" = passthrough ]

# O_DIRECT on the source and both legs: the same bytes, none through the
# page cache of the outputs.
"$BSTEER" copy "$T/src" --to "$T/d1" --to "$T/d2" --direct --json >"$T/direct.json" ||
	fail "direct copy exited $?"
check "--direct copy, leg 1" cmp -s "$T/src" "$T/d1"
check "--direct copy, leg 2" cmp -s "$T/src" "$T/d2"
check "--direct is reported" [ "$(json "$T/direct.json" direct)" = true ]

head -c 3000000 "$T/src" | "$BSTEER" copy - --to "$T/p1" --to "$T/p2" --json \
	>"$T/pipe.json" || fail "pipe copy exited $?"
head -c 3000000 "$T/src" >"$T/expect"
check "pipe source, leg 1" cmp -s "$T/expect" "$T/p1"
check "pipe source, leg 2" cmp -s "$T/expect" "$T/p2"
finish
