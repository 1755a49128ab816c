#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/nbd.sh: fio's nbd engine against bsteer serve and nbdkit's file
# plugin, on the same image, over TCP on loopback, interleaved A B A B over
# rounds. Prints IOPS and server CPU seconds (utime+stime of the server
# process, from /proc/PID/stat) per round, and the medians with the ratio.
# A first cut for issue 6, which adds workloads, qemu-nbd and charts.
#
# Usage: bench/nbd.sh [--rounds N] [--runtime SECS] [--size SIZE]
# (BSTEER_ARGS adds options to bsteer serve, e.g. "--threads 2")
set -u
cd "$(dirname "$0")/.."
ROUNDS=3 RUNTIME=10 SIZE=1G
BSTEER_ARGS=${BSTEER_ARGS:-}
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	-h|--help) sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/nbd.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
for t in fio nbdkit; do
	command -v $t >/dev/null || { echo "bench/nbd.sh: $t not installed (make deps)" >&2; exit 1; }
done
[ -x build/bsteer ] || make -s || exit 1
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

D=$(mktemp -d /tmp/bsteer-bench.XXXXXX)
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
head -c "$SIZE" /dev/urandom >"$D/img" 2>/dev/null || { echo "cannot create the image" >&2; exit 1; }
PORT=10899

cpu_secs() {	# utime+stime of PID and its threads, in seconds
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}

start() {
	case $1 in
	bsteer) build/bsteer serve --listen "tcp:127.0.0.1:$PORT" --export "d=$D/img" $BSTEER_ARGS \
			--instance "bench-$$" >"$D/server.log" 2>&1 & ;;
	nbdkit) nbdkit --foreground --exit-with-parent -i 127.0.0.1 -p "$PORT" \
			file "$D/img" >"$D/server.log" 2>&1 & ;;
	esac
	SERVER=$!
	for _ in $(seq 100); do nbdinfo --size "nbd://127.0.0.1:$PORT/d" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "server $1 did not start:" >&2; cat "$D/server.log" >&2; exit 1
}

stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null; SERVER=; }

run_fio() {	# prints IOPS
	fio --name=rr --ioengine=nbd --uri="nbd://127.0.0.1:$PORT/d" --rw=randread \
		--bs=4k --iodepth=32 --numjobs=1 --time_based --runtime="$RUNTIME" \
		--size="$SIZE" --output-format=json 2>/dev/null |
		python3 -c 'import json,sys; t=sys.stdin.read(); d=json.loads(t[t.index("{"):]); print(int(d["jobs"][0]["read"]["iops"]))'
}

echo "fio nbd, 4K randread QD32, ${RUNTIME}s per run, image $SIZE on $(df --output=fstype "$D" | tail -1), $(nproc) CPUs, $(uname -r)"
printf '%-6s %-8s %10s %12s %14s\n' ROUND SERVER IOPS "CPU(s)" "CPU(us)/IO"
for r in $(seq "$ROUNDS"); do
	for srv in bsteer nbdkit; do
		start $srv
		c0=$(cpu_secs "$SERVER")
		iops=$(run_fio)
		c1=$(cpu_secs "$SERVER")
		stop
		cpu=$(echo "$c1 - $c0" | bc -l)
		per=$(echo "$cpu * 1000000 / ($iops * $RUNTIME)" | bc -l)
		printf '%-6s %-8s %10d %12.2f %14.2f\n' "$r" $srv "$iops" "$cpu" "$per"
		echo "$srv $iops $cpu $per" >>"$D/results"
	done
done
python3 - "$D/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for srv in ("bsteer", "nbdkit"):
    iops = [float(r[1]) for r in rows if r[0] == srv]
    per = [float(r[3]) for r in rows if r[0] == srv]
    med[srv] = (statistics.median(iops), statistics.median(per))
    print("median %-7s %10.0f IOPS (min %.0f, max %.0f), %.2f us CPU per IO"
          % (srv, med[srv][0], min(iops), max(iops), med[srv][1]))
print("bsteer/nbdkit: IOPS x%.2f, CPU per IO x%.2f"
      % (med["bsteer"][0] / med["nbdkit"][0], med["bsteer"][1] / med["nbdkit"][1]))
PY
