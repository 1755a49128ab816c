#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/all.sh: the full benchmark run behind BENCHMARKS.md, one bench
# after the other on a quiet machine (about an hour on 2 CPUs):
#   nbd.sh --fs both    NBD serving, image on tmpfs and on ext4
#   direct.sh           cache=none (O_DIRECT) on ext4 against qemu-nbd, nbdkit
#   hooks.sh            decision cost per request, and on other rings
#   copy.sh             bsteer copy against cp and dd
#   trace.sh            the tracer's overhead on fio
# Usage: bench/all.sh [--out DIR]
# Writes DIR/nbd/{tmpfs,disk}/, DIR/direct/, DIR/hooks.txt, DIR/copy/, DIR/trace/ and
# DIR/README.md listing them (default DIR: bench/results/all-YYYYmmdd-HHMMSS).
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=
while [ $# -gt 0 ]; do
	case $1 in
	--out) OUT=$2; shift 2 ;;
	-h|--help) sed -n '4,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
OUT=${OUT:-bench/results/all-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 1
make -s || exit 1
started=$(date +%s)
step() {	# step N NAME COMMAND...
	local n=$1 name=$2
	shift 2
	echo "bench/all.sh: [$n/5] $name ($(( ($(date +%s) - started) / 60 )) min in)" >&2
	"$@" || { echo "bench/all.sh: $name failed" >&2; exit 1; }
}
step 1 "bench/nbd.sh --fs both" bench/nbd.sh --fs both --out "$OUT/nbd" >/dev/null
step 2 "bench/direct.sh" bench/direct.sh --out "$OUT/direct" >/dev/null
step 3 "bench/hooks.sh --rounds 5 --iters 200000" \
	bash -c 'bench/hooks.sh --rounds 5 --iters 200000 >"$1"' _ "$OUT/hooks.txt"
step 4 "bench/copy.sh" bench/copy.sh --out "$OUT/copy" >/dev/null
step 5 "bench/trace.sh" bench/trace.sh --out "$OUT/trace" >/dev/null
{
	echo "# bench/all.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
	echo
	echo "git $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'), $(( ($(date +%s) - started) / 60 )) minutes"
	echo
	for f in nbd/tmpfs/results.md nbd/disk/results.md direct/results.md hooks.txt copy/results.md trace/results.md; do
		echo "- [$f]($f)"
	done
} >"$OUT/README.md"
echo "bench/all.sh: wrote $OUT/README.md" >&2
