#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/copy.sh: bsteer copy against cp and dd, to one target and to two
# (bsteer's mirror writes both from one read; cp and dd copy twice), on
# the same source, in turns within each round (the order rotates), so
# drift cancels. Two cases:
#   cache   source and targets through the page cache, on tmpfs (source
#           read once before, so every run starts from a cached source)
#   direct  O_DIRECT on the source and the targets, on disk (/var/tmp):
#           bsteer copy --direct, dd iflag=direct oflag=direct (cp has no
#           O_DIRECT, so it sits this case out)
# Per tool: wall time (median, min, max over the rounds), MiB/s, and the
# ratio to dd in the same case and target count. Every copy is compared
# with the source afterwards (cmp); a mismatch stops the benchmark.
#
# Usage: bench/copy.sh [--quick] [--rounds N] [--size SIZE] [--out DIR]
#   --quick   2 rounds, 256 MiB (about a minute)
#   default   3 rounds, 1 GiB
# Writes DIR/results.md and DIR/results.csv (default DIR:
# bench/results/copy-YYYYmmdd-HHMMSS) and prints the table.
set -u
cd "$(dirname "$0")/.." || exit 1
ROUNDS=3 SIZE=1G OUT=
while [ $# -gt 0 ]; do
	case $1 in
	--quick) ROUNDS=2; SIZE=256M; shift ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h|--help) sed -n '3,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/copy.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
case "$ROUNDS" in
''|*[!0-9]*) echo "bench/copy.sh: --rounds takes a whole number" >&2; exit 2 ;;
esac
case "$SIZE" in
*[0-9]M|*[0-9]G) ;;
*) echo "bench/copy.sh: --size takes a number of MiB or GiB (256M, 1G)" >&2; exit 2 ;;
esac
for t in python3 dd cp cmp; do
	command -v $t >/dev/null || { echo "bench/copy.sh: $t not installed" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/copy.sh: must run as root (BPF)" >&2; exit 1; }
[ -x build/bsteer ] || make -s || exit 1
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
OUT=${OUT:-bench/results/copy-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 1
MEM=$(mktemp -d /dev/shm/bsteer-copy.XXXXXX)
DISK=$(mktemp -d /var/tmp/bsteer-copy.XXXXXX)
cleanup() { rm -rf "$MEM" "$DISK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

MIB=${SIZE%[MG]}
[ "${SIZE: -1}" = G ] && MIB=$((MIB * 1024))
echo "bench/copy.sh: $SIZE, $ROUNDS round(s), $(nproc) CPUs, $(uname -r)" >&2
head -c "${MIB}M" /dev/urandom >"$MEM/src" || exit 1
cp "$MEM/src" "$DISK/src"
sync
echo "round,case,targets,tool,seconds,copy_phase_seconds" >"$OUT/results.csv"

now() { date +%s.%N; }

# run CASE NTARGETS TOOL: one timed copy; the targets are removed after.
run() {
	local case=$1 n=$2 tool=$3 dir src t0 t1 i
	[ "$case" = cache ] && dir=$MEM || dir=$DISK
	src=$dir/src
	rm -f "$dir"/t1 "$dir"/t2
	[ "$case" = direct ] && sync
	t0=$(now)
	case $tool in
	bsteer)
		local to=(--to "$dir/t1")
		[ "$n" = 2 ] && to+=(--to "$dir/t2")
		local extra=()
		[ "$case" = direct ] && extra=(--direct)
		build/bsteer copy "$src" "${to[@]}" "${extra[@]}" --slot-size 1M \
			--depth 16 --json >"$dir/copy.json" || exit 1
		;;
	cp)
		for i in $(seq "$n"); do cp "$src" "$dir/t$i" || exit 1; done
		;;
	dd)
		local flags=()
		[ "$case" = direct ] && flags=(iflag=direct oflag=direct)
		for i in $(seq "$n"); do
			dd if="$src" of="$dir/t$i" bs=1M "${flags[@]}" status=none || exit 1
		done
		;;
	esac
	t1=$(now)
	for i in $(seq "$n"); do
		cmp -s "$src" "$dir/t$i" || { echo "bench/copy.sh: $tool ($case) made a bad copy" >&2; exit 1; }
	done
	rm -f "$dir"/t1 "$dir"/t2
	# bsteer's own figure for the copy phase, without loading and
	# verifying its BPF programs (the wall time has both).
	if [ "$tool" = bsteer ]; then
		python3 -c "import json,sys; print(f'{$t1 - $t0:.4f}', f\"{json.load(open(sys.argv[1]))['seconds']:.4f}\")" "$dir/copy.json"
	else
		python3 -c "print(f'{$t1 - $t0:.4f}', '')"
	fi
}

cat "$MEM/src" >/dev/null
for r in $(seq "$ROUNDS"); do
	for case in cache direct; do
		for n in 1 2; do
			if [ "$case" = cache ]; then tools=(bsteer cp dd); else tools=(bsteer dd); fi
			# rotate by round
			k=$(( (r - 1) % ${#tools[@]} ))
			tools=("${tools[@]:k}" "${tools[@]:0:k}")
			for tool in "${tools[@]}"; do
				read -r s phase < <(run "$case" "$n" "$tool") || exit 1
				[ -n "$s" ] || exit 1
				echo "$r,$case,$n,$tool,$s,${phase:-}" >>"$OUT/results.csv"
				printf '  round %d %-6s %d target(s) %-6s %7.3f s %s\n' "$r" "$case" \
					"$n" "$tool" "$s" "${phase:+(copy phase $phase s)}" >&2
			done
		done
	done
done

python3 - "$OUT/results.csv" "$MIB" "$ROUNDS" >"$OUT/results.md" <<'PY'
import csv, statistics, sys, os, platform
rows = list(csv.DictReader(open(sys.argv[1])))
mib, rounds = int(sys.argv[2]), sys.argv[3]
print(f"{mib} MiB, {rounds} rounds; page cache on tmpfs, O_DIRECT on /var/tmp (ext4); "
      f"{os.cpu_count()} CPUs, Linux {platform.release()}. bsteer copy --slot-size 1M --depth 16; "
      "dd bs=1M; two targets: bsteer mirrors from one read, cp and dd copy twice.\n")
print("Wall time is what a user waits for. \"bsteer, copy phase\" is bsteer's own "
      "figure for the copy alone, without start-up (loading and verifying its BPF programs, "
      "about 0.03 s for passthrough and 0.3 s for mirror here).\n")
print("| case | targets | tool | seconds median | min | max | MiB/s (source) | vs dd |")
print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
for case in ("cache", "direct"):
    for n in ("1", "2"):
        sel = [r for r in rows if r["case"] == case and r["targets"] == n]
        med = {}
        for tool in ("bsteer", "cp", "dd"):
            v = [float(r["seconds"]) for r in sel if r["tool"] == tool]
            if v:
                med[tool] = (statistics.median(v), min(v), max(v))
        v = [float(r["copy_phase_seconds"]) for r in sel if r["tool"] == "bsteer" and r["copy_phase_seconds"]]
        if v:
            med["bsteer, copy phase"] = (statistics.median(v), min(v), max(v))
        for tool, (m, lo, hi) in med.items():
            print(f"| {'page cache' if case == 'cache' else 'O_DIRECT'} | {n} | {tool} | {m:.3f} | {lo:.3f} | {hi:.3f} | "
                  f"{mib / m:.0f} | {med['dd'][0] / m:.2f}x |")
PY
cat "$OUT/results.md"
echo "bench/copy.sh: results in $OUT" >&2
