#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Runs every selftest: the C tests in build/selftests/ and the shell tests
# selftests/test_*.sh. Each gets a timeout; the kernel log is checked for
# WARNING/BUG after each. Exit 77 is a skip, which counts as a failure when
# CI=true. Ends with one line: "N passed, N failed, N skipped".
#
# Usage: selftests/run.sh [NAME_SUBSTRING...]
set -u
cd "$(dirname "$0")/.."

TIMEOUT=${TIMEOUT:-300}
pass=0 fail=0 skip=0
failed=()

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null ||
	echo "warning: cannot mount bpffs at /sys/fs/bpf" >&2
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null ||
	echo "warning: cannot mount tracefs at /sys/kernel/tracing" >&2

tests=()
for t in build/selftests/test_*; do
	[ -x "$t" ] && tests+=("$t")
done
for t in selftests/test_*.sh; do
	tests+=("$t")
done

want() {
	[ $# -eq 1 ] && return 0
	local name=$1 pat
	shift
	for pat in "$@"; do
		case "$name" in *"$pat"*) return 0 ;; esac
	done
	return 1
}

dmesg_lines() { dmesg 2>/dev/null | wc -l; }

for t in "${tests[@]}"; do
	name=$(basename "$t")
	want "$name" "$@" || continue
	before=$(dmesg_lines)
	start=$(date +%s.%N)
	log=$(mktemp)
	timeout --kill-after=10 "$TIMEOUT" "$t" >"$log" 2>&1
	rc=$?
	secs=$(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo "?")
	if dmesg 2>/dev/null | tail -n +"$((before + 1))" | grep -qE 'WARNING:|BUG:|Oops'; then
		echo "kernel log after $name:" >>"$log"
		dmesg | tail -n +"$((before + 1))" | grep -E -A5 'WARNING:|BUG:|Oops' >>"$log"
		rc=1
	fi
	if [ $rc -eq 77 ] && [ "${CI:-}" = true ]; then
		echo "(skipped under CI=true: counted as a failure)" >>"$log"
		rc=1
	fi
	case $rc in
	0)	pass=$((pass + 1)); printf 'PASS  %-28s %6.1fs\n' "$name" "$secs" ;;
	77)	skip=$((skip + 1)); printf 'SKIP  %-28s\n' "$name"; sed 's/^/    /' "$log" | tail -5 ;;
	124|137) fail=$((fail + 1)); failed+=("$name"); printf 'FAIL  %-28s timed out after %ss\n' "$name" "$TIMEOUT"
		sed 's/^/    /' "$log" | tail -40 ;;
	*)	fail=$((fail + 1)); failed+=("$name"); printf 'FAIL  %-28s (exit %d)\n' "$name" "$rc"
		sed 's/^/    /' "$log" | tail -40 ;;
	esac
	rm -f "$log"
done

[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
