#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# valgrind memcheck over bsteer copy: a 2-leg mirror with the completion
# hook, then with every decision through the fallback (--no-hook), and a
# copy that fails (a missing source). 0 errors, no definite leaks, and the
# copies right. The one suppression (selftests/valgrind.supp) is for
# libbpf's own partly initialised bpf() attrs.
. "$(dirname "$0")/lib.sh"
need_root
need_tools valgrind
head -c 8M /dev/urandom >"$T/src"
vg() {
	valgrind -q --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite --suppressions=selftests/valgrind.supp \
		"$@" 2> >(grep -v "unhandled eBPF command" >&2)
}
vg "$BSTEER" copy "$T/src" --to "$T/a" --to "$T/b" --policy mirror >"$T/out" 2>"$T/vg1"
rc=$?
cat "$T/vg1"
check "memcheck: 0 errors on a mirror copy (exit $rc)" [ $rc -eq 0 ]
check "both legs equal the source" sh -c "cmp -s '$T/src' '$T/a' && cmp -s '$T/src' '$T/b'"
vg "$BSTEER" copy "$T/src" --to "$T/c" --no-hook >"$T/out2" 2>"$T/vg2"
rc=$?
cat "$T/vg2"
check "memcheck: 0 errors through the fallback (exit $rc)" [ $rc -eq 0 ]
check "the fallback copy equals the source" cmp -s "$T/src" "$T/c"
vg "$BSTEER" copy "$T/nope" --to "$T/d" >"$T/out3" 2>"$T/vg3"
rc=$?
check "memcheck: a failing copy fails cleanly (exit $rc, not 99)" [ $rc -ne 0 ] && [ $rc -ne 99 ]
finish
