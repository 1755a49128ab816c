#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/trace.sh: what bsteer trace costs the program it watches. fio's
# io_uring engine with fixed buffers (--fixedbufs --registerfiles
# --iodepth=16, 4K random reads of a 64 MiB file) runs without the tracer,
# under the tracer's live table (events aggregated, nothing printed per
# event), and under --json (every event written to a file), in turns
# within each round (the order rotates), so drift cancels. Per config: fio
# IOPS (median, min, max over the rounds), the ratio to the run without
# the tracer, the tracer's own CPU per IO (user+system), and events the
# tracer dropped.
#
# Usage: bench/trace.sh [--quick] [--rounds N] [--runtime SECS]
#                       [--fs tmpfs|disk] [--out DIR]
#   --quick   2 rounds of 3 s (about 30 s)
#   default   5 rounds of 5 s, file on tmpfs (IO costs least there, so
#             the tracer's share shows most)
# Writes DIR/results.md and DIR/results.csv (default DIR:
# bench/results/trace-YYYYmmdd-HHMMSS) and prints the table.
set -u
cd "$(dirname "$0")/.." || exit 1
ROUNDS=5 RUNTIME=5 FS=tmpfs OUT=
while [ $# -gt 0 ]; do
	case $1 in
	--quick) ROUNDS=2; RUNTIME=3; shift ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--fs) FS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h|--help) sed -n '3,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/trace.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
case "$ROUNDS$RUNTIME" in
*[!0-9]*) echo "bench/trace.sh: --rounds and --runtime take whole numbers" >&2; exit 2 ;;
esac
for t in fio python3; do
	command -v $t >/dev/null || { echo "bench/trace.sh: $t not installed (make deps)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/trace.sh: must run as root (BPF)" >&2; exit 1; }
[ -x build/bsteer ] || make -s || exit 1
case $FS in
tmpfs) BASE=/dev/shm ;;
disk) BASE=/var/tmp ;;
*) echo "bench/trace.sh: --fs takes tmpfs or disk" >&2; exit 2 ;;
esac
OUT=${OUT:-bench/results/trace-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 1
D=$(mktemp -d "$BASE/bsteer-bench.XXXXXX")
FIO="" TR=""
cleanup() {
	for p in $FIO $TR; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench/trace.sh: $ROUNDS round(s) of ${RUNTIME}s on $FS, $(nproc) CPUs, $(uname -r)" >&2
head -c 64M /dev/urandom >"$D/data" || exit 1
CONFIGS="none table json"
echo "round,config,iops,tracer_cpu_s,events,dropped" >"$OUT/results.csv"

# run CONFIG ROUND: fio gated on a fifo until the tracer is attached.
run() {
	local cfg=$1 round=$2 iops cpu=0 ev=0 drop=0
	rm -f "$D/gate"
	mkfifo "$D/gate"
	sh -c 'read go <"$1"; shift; exec "$@"' gate "$D/gate" \
		fio --name=rr --ioengine=io_uring --fixedbufs --registerfiles \
		--iodepth=16 --rw=randread --bs=4k --size=64M --filename="$D/data" \
		--runtime="$RUNTIME" --time_based --output-format=json \
		--output="$D/fio.json" &
	FIO=$!
	case $cfg in
	none)
		;;
	table|json)
		local args=(-p "$FIO")
		[ "$cfg" = json ] && args+=(--json)
		# times: the tracer's user and system CPU, as the shell's child.
		sh -c '"$@" >"$OUT_FILE" 2>"$ERR_FILE"; times >"$TIMES_FILE"' trace \
			build/bsteer trace "${args[@]}" &
		TR=$!
		# 30 s bounds a hang; without its word the run would not be traced.
		for _ in $(seq 600); do
			grep -qE "ready|tracing" "$D/trace.err" 2>/dev/null && break
			kill -0 "$TR" 2>/dev/null || break
			sleep 0.05
		done
		grep -qE "ready|tracing" "$D/trace.err" 2>/dev/null || {
			echo "bench/trace.sh: the tracer did not start:" >&2
			cat "$D/trace.err" >&2
			exit 1
		}
		;;
	esac
	echo go >"$D/gate"
	wait "$FIO"
	FIO=
	if [ -n "$TR" ]; then
		wait "$TR"
		TR=
		cpu=$(python3 - "$D/times" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().split("\n")
def secs(t):
    m = re.match(r"(\d+)m([\d.]+)s", t)
    return int(m.group(1)) * 60 + float(m.group(2))
print(sum(secs(t) for t in lines[1].split()))
PY
)
		if [ "$cfg" = json ]; then
			read -r ev drop < <(python3 -c "import json,sys
s=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(s['events'], s['dropped'])" "$D/trace.out")
		else
			read -r ev drop < <(sed -n 's/^bsteer trace: .* s, \([0-9]*\) events, \([0-9]*\) dropped$/\1 \2/p' "$D/trace.out")
		fi
	fi
	iops=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['jobs'][0]['read']['iops'])" "$D/fio.json")
	echo "$round,$cfg,$iops,$cpu,${ev:-0},${drop:-0}" >>"$OUT/results.csv"
	printf '  round %d %-6s %10.0f IOPS  tracer %.2f s CPU, %s events, %s dropped\n' \
		"$round" "$cfg" "$iops" "$cpu" "${ev:-0}" "${drop:-0}" >&2
}
export OUT_FILE=$D/trace.out ERR_FILE=$D/trace.err TIMES_FILE=$D/times

set -- $CONFIGS
for r in $(seq "$ROUNDS"); do
	for c in "$@"; do
		rm -f "$D/trace.err"
		run "$c" "$r"
	done
	set -- "${@:2}" "$1"	# rotate the order for the next round
done

python3 - "$OUT/results.csv" "$ROUNDS" "$RUNTIME" "$FS" >"$OUT/results.md" <<'PY'
import csv, statistics, sys, platform, os
rows = list(csv.DictReader(open(sys.argv[1])))
rounds, runtime, fs = sys.argv[2:5]
by = {}
for r in rows:
    by.setdefault(r["config"], []).append(r)
base = statistics.median(float(r["iops"]) for r in by["none"])
names = {"none": "fio alone", "table": "bsteer trace (live table)", "json": "bsteer trace --json > file"}
print(f"fio io_uring --fixedbufs --registerfiles, 4K randread QD16, 64 MiB on {fs}; "
      f"{rounds} rounds of {runtime} s; {os.cpu_count()} CPUs, Linux {platform.release()}\n")
print("| config | IOPS median | min | max | vs fio alone | tracer CPU per IO (us) | events dropped |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for c in ("none", "table", "json"):
    v = by.get(c, [])
    if not v:
        continue
    iops = [float(r["iops"]) for r in v]
    med = statistics.median(iops)
    ios = [float(r["iops"]) * int(runtime) for r in v]
    cpu = statistics.median(float(r["tracer_cpu_s"]) / n * 1e6 for r, n in zip(v, ios)) if c != "none" else 0
    drops = sum(int(r["dropped"]) for r in v)
    print(f"| {names[c]} | {med:.0f} | {min(iops):.0f} | {max(iops):.0f} | {med / base:.3f} | "
          f"{cpu:.2f} | {drops if c != 'none' else '-'} |")
PY
cat "$OUT/results.md"
echo "bench/trace.sh: results in $OUT" >&2
