#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# libFuzzer (clang-19, ASan + UBSan) over the NBD server's userspace
# parsing, the handshake and the request checks (selftests/fuzz_nbd.c),
# for FUZZ_SECS seconds (default 60) from the seed corpus in
# selftests/fuzz/nbd/. Any crash, sanitizer report or broken invariant
# fails the test; the input that did it is kept in the test's log.
. "$(dirname "$0")/lib.sh"
need_tools clang-19
SECS=${FUZZ_SECS:-60}
make -s fuzz >"$T/build.log" 2>&1 || { cat "$T/build.log" >&2; fail "make fuzz"; finish; }
mkdir "$T/corpus"
cp selftests/fuzz/nbd/* "$T/corpus/"
(cd "$T" && "$OLDPWD/build-fuzz/fuzz_nbd" -max_total_time="$SECS" -max_len=4096 \
	-timeout=10 -rss_limit_mb=1024 -print_final_stats=1 corpus) >"$T/fuzz.log" 2>&1
rc=$?
tail -15 "$T/fuzz.log"
if [ $rc -ne 0 ]; then
	for f in "$T"/crash-* "$T"/leak-* "$T"/timeout-*; do
		[ -f "$f" ] && { echo "input $f:"; od -A d -t x1 "$f" | head -20; }
	done
fi
check "the fuzzer found nothing in $SECS s (exit $rc)" [ $rc -eq 0 ]
check "it ran the seeds and more" grep -q "stat::number_of_executed_units" "$T/fuzz.log"
finish
