#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Runs every selftest: the C tests in build/selftests/ and the shell tests
# selftests/test_*.sh, once per build in PASSES. Each gets a timeout; after
# each, the kernel log is checked for WARNING/BUG, and what the test left
# of loop devices and mounts of its temp dirs is a failure. Exit 77 is a
# skip, which counts as a failure when CI=true. Ends with one line:
# "N passed, N failed, N skipped".
#
# Usage: selftests/run.sh [NAME_SUBSTRING...]
set -u
cd "$(dirname "$0")/.." || exit 1

TIMEOUT=${TIMEOUT:-300}
pass=0 fail=0 skip=0
failed=()

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null ||
	echo "warning: cannot mount bpffs at /sys/fs/bpf" >&2
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null ||
	echo "warning: cannot mount tracefs at /sys/kernel/tracing" >&2

# PASSES lists the builds to run every test on: "build" (the default), and
# "build-asan" (ASan + UBSan, from make asan; make test runs both). Tests
# that cannot run on a sanitized build are left out of that pass.
PASSES=${PASSES:-${BUILD:-build}}
# The fuzzer is sanitized already; valgrind cannot run an ASan binary.
ASAN_SKIP="test_fuzz_nbd.sh test_valgrind_copy.sh"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

list_tests() {	# list_tests BUILD
	local t
	for t in "$1"/selftests/test_*; do
		[ -x "$t" ] && echo "$t"
	done
	for t in selftests/test_*.sh; do
		[ "$1" != build ] && case " $ASAN_SKIP " in *" ${t##*/} "*) continue ;; esac
		echo "$t"
	done
}

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

# Loop devices and mounts of a test's temp dirs (lib.sh: bsteer-test.*)
# still there after it: a test undoes what it makes. A loop device let go
# with autoclear is detached once closed, a moment after its holder
# exits: so they get 10 s to go.
leftovers() {
	{ losetup -a; grep ' ' /proc/mounts; } 2>/dev/null | grep 'bsteer-test\.'
}
left_behind() {
	for _ in $(seq 50); do
		[ -z "$(leftovers)" ] && return 1
		sleep 0.2
	done
	return 0
}
clear_leftovers() {	# so that the next test starts clean
	local dev mnt
	for dev in $(losetup -a 2>/dev/null | grep 'bsteer-test\.' | cut -d: -f1); do
		losetup -d "$dev"
	done
	for mnt in $(awk '$2 ~ /bsteer-test\./ { print $2 }' /proc/mounts); do
		umount -l "$mnt"
	done
}

for BUILD in $PASSES; do
export BUILD
for t in $(list_tests "$BUILD"); do
	name=$(basename "$t")
	want "$name" "$@" || continue
	[ "$BUILD" != build ] && name="$name [${BUILD#build-}]"
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
	if left_behind; then
		echo "left behind by $name:" >>"$log"
		leftovers >>"$log"
		clear_leftovers
		rc=1
	fi
	if [ $rc -eq 77 ] && [ "${CI:-}" = true ]; then
		echo "(skipped under CI=true: counted as a failure)" >>"$log"
		rc=1
	fi
	case $rc in
	0)	pass=$((pass + 1)); printf 'PASS  %-36s %6.1fs\n' "$name" "$secs" ;;
	77)	skip=$((skip + 1)); printf 'SKIP  %-36s\n' "$name"; sed 's/^/    /' "$log" | tail -5 ;;
	124|137) fail=$((fail + 1)); failed+=("$name"); printf 'FAIL  %-36s timed out after %ss\n' "$name" "$TIMEOUT"
		sed 's/^/    /' "$log" | tail -40 ;;
	*)	fail=$((fail + 1)); failed+=("$name"); printf 'FAIL  %-36s (exit %d)\n' "$name" "$rc"
		sed 's/^/    /' "$log" | tail -40 ;;
	esac
	rm -f "$log"
done
done

[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
