#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/nbd.sh: bsteer serve side by side with nbdkit (file plugin) and
# qemu-nbd (--aio=io_uring), on the same image, with the same client (fio's
# nbd engine), over TCP on loopback and over a unix socket. Servers take
# turns within each round (A B C D, then again), so drift cancels; every
# figure in the table is a median over the rounds, with min and max, and a
# ratio against nbdkit from the same run.
#
# Servers: nbdkit file, qemu-nbd --cache=writeback --aio=io_uring, the
# floor (bench/floor.c: rings set up as bsteer's, as many, making its
# choices of inline I/O and splice; header, file op, reply, nothing else;
# built by make bench), bsteer passthrough, bsteer
# mirror (a second leg on the same filesystem). All go through the page
# cache. Each row is also a ratio to the floor's IOPS and CPU per IO.
# Per run: IOPS, MiB/s, p50/p99 completion latency (fio), server CPU per IO
# and per GiB (utime+stime of all threads, /proc/PID/stat), server context
# switches per IO (voluntary+involuntary of the live threads, from
# /proc/PID/task/*/status, sampled from 0.5 s into the run to 0.5 s before
# its end, per IO at fio's rate). Once per
# round: iperf3 over loopback TCP, the ceiling for sequential reads.
#
# Usage: bench/nbd.sh [--quick] [--rounds N] [--runtime SECS] [--size SIZE]
#                     [--fs tmpfs|disk|both] [--threads N] [--out DIR]
#   --quick   1 round, 3 s, 4K randread QD32 and 256K read QD8 (< 3 min)
#   default   3 rounds, 10 s, every workload below, image on tmpfs
#   --fs both   tmpfs, then ext4 (/var/tmp): DIR/tmpfs and DIR/disk
#   --threads   bsteer's worker threads, one ring each (default: the CPUs,
#               as nbdkit's thread pool can use them all)
#   --workloads W1,W2   only these of the workloads below
# Workloads: 4K randread QD1 and QD32, 4K randwrite QD32, 256K read and
# write QD8, 4K randread QD32 with 2 jobs (2 connections); by name:
# randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd32 read-256k-qd8
# write-256k-qd8 randread-4k-qd32-2j
# Writes DIR/results.md, DIR/results.csv and DIR/chart.png (default DIR:
# bench/results/YYYYmmdd-HHMMSS).
set -u
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
ROUNDS=3 RUNTIME=10 SIZE=1G FS=tmpfs QUICK=0 OUT="" THREADS=$(nproc) WL=""
ARGS=("$@")
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1; ROUNDS=1; RUNTIME=3; SIZE=256M; shift ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--fs) FS=$2; shift 2 ;;
	--threads) THREADS=$2; shift 2 ;;
	--workloads) WL=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h|--help) sed -n '3,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/nbd.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
for t in fio nbdkit qemu-nbd nbdinfo iperf3 gnuplot; do
	command -v $t >/dev/null || { echo "bench/nbd.sh: $t not installed (make deps)" >&2; exit 1; }
done
case $THREADS in ''|*[!0-9]*|0) echo "bench/nbd.sh: --threads takes a positive number" >&2; exit 2 ;; esac
[ -x build/bsteer ] || make -s || exit 1
[ -x build/bench/floor ] || make -s bench || exit 1
if [ "$FS" = both ]; then
	OUT=${OUT:-bench/results/$(date +%Y%m%d-%H%M%S)}
	for f in tmpfs disk; do
		"$0" "${ARGS[@]}" --fs $f --out "$OUT/$f" || exit
	done
	exit 0
fi
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
case $FS in
tmpfs) BASE=/dev/shm ;;
disk) BASE=/var/tmp ;;
*) echo "bench/nbd.sh: --fs takes tmpfs, disk or both" >&2; exit 2 ;;
esac
OUT=${OUT:-bench/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 1
D=$(mktemp -d "$BASE/bsteer-bench.XXXXXX")
SERVER="" HELPER=""
cleanup() {
	for p in $SERVER $HELPER; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ALL_WORKLOADS="randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd32 read-256k-qd8 write-256k-qd8 randread-4k-qd32-2j"
if [ $QUICK = 1 ]; then
	WORKLOADS="randread-4k-qd32 read-256k-qd8"
else
	WORKLOADS=$ALL_WORKLOADS
fi
if [ -n "$WL" ]; then
	for w in ${WL//,/ }; do
		case " $ALL_WORKLOADS " in
		*" $w "*) ;;
		*) echo "bench/nbd.sh: unknown workload $w (see --help)" >&2; exit 2 ;;
		esac
	done
	WORKLOADS=${WL//,/ }
fi
SERVERS="nbdkit qemu-nbd floor bsteer bsteer-mirror"
TRANSPORTS="unix tcp"
PORT=$((20000 + $$ % 20000))
echo "bench/nbd.sh: image $SIZE on $FS, $ROUNDS round(s) of ${RUNTIME}s, bsteer --threads $THREADS, $(nproc) CPUs, $(uname -r)" >&2
head -c "$SIZE" /dev/urandom >"$D/img" || exit 1
cp "$D/img" "$D/img2"

uri() {	# uri TRANSPORT
	if [ "$1" = unix ]; then echo "nbd+unix:///d?socket=$D/s.sock"; else echo "nbd://127.0.0.1:$PORT/d"; fi
}

start() {	# start SERVER TRANSPORT
	local l
	rm -f "$D/s.sock"
	case $1 in
	nbdkit)
		[ "$2" = unix ] && l="-U $D/s.sock" || l="-i 127.0.0.1 -p $PORT"
		nbdkit -f --exit-with-parent $l -e d file "$D/img" >"$D/server.log" 2>&1 & ;;
	qemu-nbd)
		[ "$2" = unix ] && l="-k $D/s.sock" || l="-b 127.0.0.1 -p $PORT"
		# --shared: qemu-nbd takes one client at a time unless told; the
		# -2j rows would then run their two jobs one after the other.
		qemu-nbd -t -x d -f raw --cache=writeback --aio=io_uring --shared=8 $l "$D/img" \
			>"$D/server.log" 2>&1 & ;;
	floor)
		[ "$2" = unix ] && l="unix:$D/s.sock" || l="tcp:127.0.0.1:$PORT"
		build/bench/floor --listen "$l" --file "$D/img" --threads "$THREADS" >"$D/server.log" 2>&1 & ;;
	bsteer|bsteer-mirror)
		[ "$2" = unix ] && l="unix:$D/s.sock" || l="tcp:127.0.0.1:$PORT"
		local legs="$D/img"
		[ "$1" = bsteer-mirror ] && legs="$D/img,$D/img2"
		build/bsteer serve --listen "$l" --export "d=$legs" --instance "bench-$$" \
			--threads "$THREADS" \
			>"$D/server.log" 2>&1 & ;;
	esac
	SERVER=$!
	served "$(uri "$2")" "bench/nbd.sh: $1 did not start on $2" "$D/server.log"
}

stop() { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; SERVER=; }

# utime+stime ticks of the process (all threads), and its context switches.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
ctx_switches() {
	cat /proc/"$1"/task/*/status 2>/dev/null |
		awk '/^(voluntary|nonvoluntary)_ctxt_switches/ { n += $2 } END { print n + 0 }'
}

fio_args() {	# fio_args WORKLOAD
	case $1 in
	randread-4k-qd1) echo "--rw=randread --bs=4k --iodepth=1" ;;
	randread-4k-qd32) echo "--rw=randread --bs=4k --iodepth=32" ;;
	randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	read-256k-qd8) echo "--rw=read --bs=256k --iodepth=8" ;;
	write-256k-qd8) echo "--rw=write --bs=256k --iodepth=8" ;;
	randread-4k-qd32-2j) echo "--rw=randread --bs=4k --iodepth=32 --numjobs=2 --group_reporting" ;;
	esac
}

iperf_ceiling() {	# MiB/s over loopback TCP
	iperf3 -s -1 -p $((PORT + 1)) >/dev/null 2>&1 &
	HELPER=$!
	sleep 0.3
	iperf3 -c 127.0.0.1 -p $((PORT + 1)) -t "$RUNTIME" -J 2>/dev/null |
		/usr/bin/python3 -c 'import json,sys; print("%.0f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 8 / 2**20))'
	wait "$HELPER" 2>/dev/null
	HELPER=
}

echo "server,transport,workload,round,iops,mibs,p50_us,p99_us,cpu_us_per_io,cpu_s_per_gib,ctxsw_per_io" >"$OUT/results.csv"
: >"$OUT/iperf3.txt"
total=$((ROUNDS * $(echo $SERVERS | wc -w) * 2 * $(echo $WORKLOADS | wc -w)))
n=0
for r in $(seq "$ROUNDS"); do
	iperf_ceiling >>"$OUT/iperf3.txt"
	for tr in $TRANSPORTS; do
		for srv in $SERVERS; do
			start "$srv" "$tr"
			for w in $WORKLOADS; do
				n=$((n + 1))
				printf '\r[%d/%d] round %d %-5s %-14s %-20s' $n $total "$r" "$tr" "$srv" "$w" >&2
				c0=$(cpu_ticks "$SERVER")
				# shellcheck disable=SC2046 # fio_args prints several options: split on purpose
				fio --name=b --ioengine=nbd --uri="$(uri "$tr")" $(fio_args "$w") \
					--size="$SIZE" --time_based --runtime="$RUNTIME" \
					--output-format=json >"$D/fio.json" 2>/dev/null &
				HELPER=$!
				# Context switches of the live threads, sampled mid-run:
				# a thread-per-connection server's threads end with fio.
				sleep 0.5
				x0=$(ctx_switches "$SERVER") t0=$(date +%s.%N)
				sleep "$(echo "$RUNTIME - 1" | bc)"
				x1=$(ctx_switches "$SERVER") t1=$(date +%s.%N)
				wait "$HELPER"
				HELPER=
				c1=$(cpu_ticks "$SERVER")
				/usr/bin/python3 - "$D/fio.json" "$srv,$tr,$w,$r" "$((c1 - c0))" \
					"$((x1 - x0))" "$(getconf CLK_TCK)" \
					"$(echo "$t1 - $t0" | bc)" >>"$OUT/results.csv" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]
ticks, ctx, hz, dt = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
ios = bytes_ = 0
lat = {}
for d in ("read", "write"):
    ios += j[d]["total_ios"]
    bytes_ += j[d]["io_bytes"]
    if j[d]["total_ios"]:
        lat = j[d]["clat_ns"].get("percentile", {})
# fio's own rates: with --group_reporting, job_runtime adds up the jobs.
iops = j["read"]["iops"] + j["write"]["iops"]
bw = j["read"]["bw_bytes"] + j["write"]["bw_bytes"]
cpu = ticks / hz
print("%s,%.0f,%.1f,%.1f,%.1f,%.2f,%.2f,%.3f" % (
    sys.argv[2], iops, bw / 2**20,
    lat.get("50.000000", 0) / 1000, lat.get("99.000000", 0) / 1000,
    cpu * 1e6 / max(ios, 1), cpu / max(bytes_ / 2**30, 1e-9),
    max(ctx, 0) / max(iops * dt, 1)))
PY
			done
			stop
		done
	done
done
echo >&2

/usr/bin/python3 - "$OUT" "$FS" "$SIZE" "$ROUNDS" "$RUNTIME" "$(nproc)" "$(uname -r)" \
	"$(awk -F: '/model name/ { print $2; exit }' /proc/cpuinfo | sed 's/^ //')" "$THREADS" <<'PY'
import csv, statistics, sys
out, fs, size, rounds, runtime, cpus, kernel, model, threads = sys.argv[1:10]
rows = list(csv.DictReader(open(out + "/results.csv")))
ceil = [float(x) for x in open(out + "/iperf3.txt").read().split()]
servers = ["nbdkit", "qemu-nbd", "floor", "bsteer", "bsteer-mirror"]
keys = []
for r in rows:
    k = (r["transport"], r["workload"])
    if k not in keys:
        keys.append(k)
def med(tr, w, s, f):
    v = [float(r[f]) for r in rows if (r["transport"], r["workload"], r["server"]) == (tr, w, s)]
    return (statistics.median(v), min(v), max(v)) if v else (0, 0, 0)
md = ["# bench/nbd.sh results", "",
      "Image %s on %s, %s round(s) of %s s per run, fio nbd engine; %s CPUs (%s), kernel %s; "
      "bsteer serve --threads %s." % (size, fs, rounds, runtime, cpus, model, kernel, threads),
      "iperf3 loopback TCP ceiling: median %.0f MiB/s (min %.0f, max %.0f)."
      % (statistics.median(ceil), min(ceil), max(ceil)) if ceil else "", "",
      "Medians over the rounds (min-max); `x IOPS` and `x CPU/IO` are ratios to nbdkit in the "
      "same run, `x qemu` the IOPS ratio to qemu-nbd, `x floor` to bench/floor.c (the least an "
      "io_uring NBD server can do: header, file op, reply; no BPF, no policy) in the same run.", "",
      "| transport | workload | server | IOPS | x IOPS | x qemu | x floor | MiB/s | p50 us | p99 us | CPU us/IO | x CPU/IO | x floor CPU | CPU s/GiB | ctxsw/IO |",
      "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
chart = []
behind = []
for tr, w in keys:
    base = med(tr, w, "nbdkit", "iops")[0] or 1
    base_cpu = med(tr, w, "nbdkit", "cpu_us_per_io")[0] or 1
    qemu = med(tr, w, "qemu-nbd", "iops")[0] or 1
    floor = med(tr, w, "floor", "iops")[0] or 1
    floor_cpu = med(tr, w, "floor", "cpu_us_per_io")[0] or 1
    line = ["%s %s" % (tr, w)]
    for s in servers:
        i = med(tr, w, s, "iops")
        c = med(tr, w, s, "cpu_us_per_io")
        md.append("| %s | %s | %s | %.0f (%.0f-%.0f) | %.2f | %.2f | %.2f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.3f |" % (
            tr, w, s, i[0], i[1], i[2], i[0] / base, i[0] / qemu, i[0] / floor,
            med(tr, w, s, "mibs")[0], med(tr, w, s, "p50_us")[0], med(tr, w, s, "p99_us")[0],
            c[0], c[0] / base_cpu, c[0] / floor_cpu, med(tr, w, s, "cpu_s_per_gib")[0],
            med(tr, w, s, "ctxsw_per_io")[0]))
        line.append("%.3f" % (i[0] / base))
        if not s.startswith("bsteer"):
            continue
        why = []
        if i[0] < base:
            why.append("%.2fx nbdkit" % (i[0] / base))
        if i[0] < qemu:
            why.append("%.2fx qemu-nbd" % (i[0] / qemu))
        if i[0] < 0.9 * floor:
            why.append("%.2fx the floor" % (i[0] / floor))
        if s == "bsteer-mirror":
            one = med(tr, w, "bsteer", "iops")[0] or 1
            if i[0] < 0.85 * one:
                why.append("%.2fx passthrough" % (i[0] / one))
        if why:
            behind.append("- %s %s, %s: %s" % (tr, w, s, ", ".join(why)))
    chart.append(" ".join(['"%s"' % line[0]] + line[1:]))
md += ["", "![IOPS relative to nbdkit](chart.png)", "",
       "Rows behind a peer, below 0.9x the floor, or (the mirror) below 0.85x passthrough:", ""]
md += behind or ["- none"]
md += [""]
open(out + "/results.md", "w").write("\n".join(md) + "\n")
open(out + "/chart.dat", "w").write("\n".join(chart) + "\n")
print("\n".join(md))
PY
gnuplot <<EOF 2>/dev/null || echo "bench/nbd.sh: gnuplot could not draw the chart" >&2
set terminal pngcairo size 1200,520 noenhanced
set output "$OUT/chart.png"
set title "IOPS relative to nbdkit (same run, medians)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set rmargin 12
set bmargin 9
set yrange [0:*]
set grid ytics
set key top left
plot "$OUT/chart.dat" using 2:xtic(1) title "nbdkit", '' using 3 title "qemu-nbd", '' using 4 title "floor", '' using 5 title "bsteer", '' using 6 title "bsteer mirror"
EOF
echo "bench/nbd.sh: wrote $OUT/results.md, $OUT/results.csv, $OUT/chart.png" >&2
