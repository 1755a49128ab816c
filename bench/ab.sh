#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/ab.sh: two bsteer binaries (say, main and a change built with
# make OUTPUT=build-exp) serving the same image to the same fio job, in
# turns (A B, A B, ...), so a change is judged against its own baseline
# in one run. Per run: fio IOPS, the server's CPU per IO (utime+stime
# of all its threads over the middle of the run) and its context switches
# per IO (voluntary + involuntary, all threads, io-wq workers included).
#
# Usage: bench/ab.sh A_BIN B_BIN [--rounds N] [--transport unix|tcp]
#                    [--qd N] [--bs SIZE] [--rw randread|randwrite|read|write]
#                    [--runtime SECS] [--a-args ARGS] [--b-args ARGS]
#                    [--dir DIR] [--mirror]
#   defaults: 3 rounds, tcp, QD32, 4k randread, 5 s, a 1 GiB image on tmpfs;
#   --a-args/--b-args: more bsteer serve options for A or B (word-split)
#   --dir: where the image goes (default /dev/shm; /var/tmp for ext4)
#   --mirror: a second leg, a copy of the image beside it (a mirror)
# Examples:
#   make OUTPUT=build-exp && bench/ab.sh build/bsteer build-exp/bsteer --qd 1
#   bench/ab.sh build/bsteer build/bsteer --a-args "--splice off"
set -u
cd "$(dirname "$0")/.." || exit 1
[ $# -ge 2 ] || { sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
A=$1 B=$2
shift 2
ROUNDS=3 TR=tcp QD=32 BS=4k RW=randread RUNTIME=5 A_ARGS="" B_ARGS="" DIR=/dev/shm MIRROR=""
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--transport) TR=$2; shift 2 ;;
	--qd) QD=$2; shift 2 ;;
	--bs) BS=$2; shift 2 ;;
	--rw) RW=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--a-args) A_ARGS=$2; shift 2 ;;
	--b-args) B_ARGS=$2; shift 2 ;;
	--dir) DIR=$2; shift 2 ;;
	--mirror) MIRROR=1; shift ;;
	-h|--help) sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/ab.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
for b in "$A" "$B"; do
	[ -x "$b" ] || { echo "bench/ab.sh: $b is not an executable" >&2; exit 1; }
done
case $TR in unix|tcp) ;; *) echo "bench/ab.sh: --transport unix or tcp" >&2; exit 2 ;; esac
case "$ROUNDS$QD$RUNTIME" in
*[!0-9]*) echo "bench/ab.sh: --rounds, --qd and --runtime take whole numbers" >&2; exit 2 ;;
esac
[ "$RUNTIME" -ge 3 ] || { echo "bench/ab.sh: --runtime must be at least 3" >&2; exit 2; }
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
D=$(mktemp -d "$DIR/bsteer-ab.XXXXXX") || exit 1
SERVER=
cleanup() {
	[ -n "$SERVER" ] && { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; }
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
head -c 1G /dev/urandom >"$D/img" || exit 1
LEGS=$D/img
[ -n "$MIRROR" ] && { cp "$D/img" "$D/img2" || exit 1; LEGS=$D/img,$D/img2; }
PORT=$((22000 + $$ % 20000))
if [ "$TR" = unix ]; then
	L=unix:$D/s.sock U="nbd+unix:///d?socket=$D/s.sock"
else
	L=tcp:127.0.0.1:$PORT U="nbd://127.0.0.1:$PORT/d"
fi
echo "bench/ab.sh: $RW $BS QD$QD over $TR, $ROUNDS round(s) of ${RUNTIME}s; A=$A $A_ARGS B=$B $B_ARGS" >&2

switches() {	# the server's context switches so far, all its threads
	cat /proc/$SERVER/task/*/status 2>/dev/null |
		awk '/^(non)?voluntary_ctxt_switches/ { n += $2 } END { print n + 0 }'
}

run() {	# run LABEL BIN [SERVE_ARGS...]
	local u0 u1 t0 t1 c0 c1 label=$1 bin=$2
	shift 2
	rm -f "$D/s.sock" "$D/serve.log"
	"$bin" serve --listen "$L" --instance "ab-$$" --export "d=$LEGS" "$@" >"$D/serve.log" 2>&1 &
	SERVER=$!
	for _ in $(seq 100); do
		grep -q "listening on" "$D/serve.log" 2>/dev/null && break
		sleep 0.05
	done
	fio --name=ab --ioengine=nbd --uri="$U" --rw="$RW" --bs="$BS" --iodepth="$QD" \
		--size=1G --runtime="$RUNTIME" --time_based --output-format=json \
		--output="$D/fio.json" >/dev/null 2>&1 &
	local fio=$!
	sleep 0.5
	u0=$(awk '{print $14 + $15}' /proc/$SERVER/stat); t0=$(date +%s.%N); c0=$(switches)
	sleep $((RUNTIME - 1))
	u1=$(awk '{print $14 + $15}' /proc/$SERVER/stat); t1=$(date +%s.%N); c1=$(switches)
	wait $fio || { echo "bench/ab.sh: fio failed against $label" >&2; exit 1; }
	kill "$SERVER"; wait "$SERVER" 2>/dev/null; SERVER=
	python3 - "$D/fio.json" "$label" "$u0" "$u1" "$t0" "$t1" "$(getconf CLK_TCK)" \
		"$c0" "$c1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
io = j["read"] if j["read"]["total_ios"] else j["write"]
label, u0, u1, t0, t1, hz, c0, c1 = sys.argv[2], *map(float, sys.argv[3:])
n = io["iops"] * (t1 - t0)
print(f"{label} {io['iops']:.0f} {(u1 - u0) / hz / n * 1e6:.2f} {(c1 - c0) / n:.3f}")
PY
}

for _ in $(seq "$ROUNDS"); do
	# shellcheck disable=SC2086 # the extra options are meant to split
	run A "$A" $A_ARGS
	# shellcheck disable=SC2086
	run B "$B" $B_ARGS
done | tee "$D/runs" |
	awk '{printf "  %s  %9.0f IOPS  %6.2f us CPU per IO  %6.3f switches per IO\n", $1, $2, $3, $4}' >&2
python3 - "$D/runs" <<'PY'
import statistics, sys
v = {"A": [], "B": []}
for line in open(sys.argv[1]):
    k, iops, cpu, cs = line.split()
    v[k].append((float(iops), float(cpu), float(cs)))
med = {k: [statistics.median(r[i] for r in v[k]) for i in range(3)] for k in v}
for k in "AB":
    print(f"{k}: IOPS median {med[k][0]:.0f}, CPU {med[k][1]:.2f} us/IO, {med[k][2]:.3f} switches/IO")
print(f"B/A: IOPS {med['B'][0] / med['A'][0]:.3f}x, CPU per IO {med['B'][1] / med['A'][1]:.3f}x")
PY
