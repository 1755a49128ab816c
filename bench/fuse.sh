#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/fuse.sh: block devices served through FUSE, side by side on the
# same image, every server through the page cache:
#   bsteer    bsteer serve --fuse --loop (FUSE over io_uring), passthrough
#   qsd       qemu-storage-daemon's FUSE export (aio=io_uring, cache.direct
#             =off), over /dev/fuse
#   loop      the limit the goals name: a loop device with direct I/O on
#             the image itself (no server; it reads the disk, not the cache)
#   loop-cache  the same without direct I/O: the page cache's own ceiling
# through a loop device on the exported file ("loop" rows; bsteer's with
# direct I/O; qsd's without, as qemu 7.2's export loses data under a
# direct-I/O loop, see BENCHMARKS.md) and through the exported file itself
# with O_DIRECT ("file" rows). Servers take turns within each round.
# Per run: IOPS (fio, io_uring engine), server CPU per IO (utime+stime of
# all its threads), server context switches per IO (all its threads, from
# 0.5 s into the run to 0.5 s before its end).
#
# Usage: bench/fuse.sh [--quick] [--rounds N] [--runtime SECS] [--size SIZE]
#                      [--workloads "W ..."] [--bsteer-args "ARGS"] [--out DIR]
#   --quick   1 round of 3 s, 4K randread QD32 and 256K read (about 2 min)
#   default   3 rounds of 10 s, 4K randread and randwrite at QD1 and QD32,
#             256K sequential read and write QD8, on a 1 GiB image in /var/tmp
#   --workloads  only these (randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd1
#             randwrite-4k-qd32 read-256k-qd8 write-256k-qd8)
#   --bsteer-args  more options for bsteer serve (say "--inline-io all")
# Writes DIR/results.md, DIR/results.csv and DIR/chart.png (default DIR:
# bench/results/fuse-YYYYmmdd-HHMMSS).
set -u
cd "$(dirname "$0")/.." || exit 1
ROUNDS=3 RUNTIME=10 SIZE=1G QUICK=0 OUT='' WORKLOADS='' BARGS=''
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1; ROUNDS=1; RUNTIME=3; SIZE=256M; shift ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--workloads) WORKLOADS=$2; shift 2 ;;
	--bsteer-args) BARGS=$2; shift 2 ;;
	-h|--help) sed -n '3,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/fuse.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
if [ -n "$WORKLOADS" ]; then
	for w in $WORKLOADS; do
		case $w in
		randread-4k-qd1|randread-4k-qd32|randwrite-4k-qd1|randwrite-4k-qd32|read-256k-qd8|write-256k-qd8) ;;
		*) echo "bench/fuse.sh: unknown workload $w (see --help)" >&2; exit 2 ;;
		esac
	done
elif [ $QUICK = 1 ]; then
	WORKLOADS="randread-4k-qd32 read-256k-qd8"
else
	WORKLOADS="randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd1 randwrite-4k-qd32 read-256k-qd8 write-256k-qd8"
fi
for t in fio qemu-storage-daemon losetup gnuplot; do
	command -v $t >/dev/null || { echo "bench/fuse.sh: $t not installed (make deps)" >&2; exit 1; }
done
case "$ROUNDS$RUNTIME" in
*[!0-9]*) echo "bench/fuse.sh: --rounds and --runtime take whole numbers" >&2; exit 2 ;;
esac
[ "$RUNTIME" -ge 2 ] || { echo "bench/fuse.sh: --runtime must be at least 2" >&2; exit 2; }
[ -x build/bsteer ] || make -s || exit 1
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
OUT=${OUT:-bench/results/fuse-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 1
D=$(mktemp -d /var/tmp/bsteer-fuse.XXXXXX)
mkdir -p "$D/mnt"
touch "$D/qsd"
SERVER="" DEV="" LOOPDEV=""
stop() {
	[ -n "$LOOPDEV" ] && losetup -d "$LOOPDEV" 2>/dev/null
	LOOPDEV=
	[ -n "$SERVER" ] && { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; }
	SERVER=
}
cleanup() {
	stop
	umount -l "$D/mnt" "$D/qsd" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench/fuse.sh: image $SIZE in /var/tmp (ext4, page cache), $ROUNDS round(s) of ${RUNTIME}s, $(nproc) CPUs, $(uname -r)${BARGS:+, bsteer serve $BARGS}" >&2
head -c "$SIZE" /dev/urandom >"$D/img" || exit 1

# start SERVER PATH: serve the image; DEV gets what fio runs on.
start() {
	case $1 in
	bsteer)
		# shellcheck disable=SC2086 # --bsteer-args holds several options
		build/bsteer serve --fuse "$D/mnt" --loop --export "d=$D/img" \
			--instance "bench-fuse-$$" $BARGS >"$D/server.log" 2>&1 &
		SERVER=$!
		for _ in $(seq 300); do
			grep -q "serving on" "$D/server.log" && break
			kill -0 $SERVER 2>/dev/null || break
			sleep 0.1
		done
		DEV=$(sed -n 's/.*export d: \(\/dev\/loop[0-9]*\).*/\1/p' "$D/server.log")
		[ "$2" = file ] && DEV=$D/mnt/d ;;
	qsd)
		qemu-storage-daemon \
			--blockdev driver=file,node-name=f,filename="$D/img",aio=io_uring,cache.direct=off \
			--blockdev driver=raw,node-name=r,file=f \
			--export type=fuse,id=e,node-name=r,mountpoint="$D/qsd",writable=on \
			>"$D/server.log" 2>&1 &
		SERVER=$!
		for _ in $(seq 300); do
			grep -q " $D/qsd " /proc/mounts && break
			kill -0 $SERVER 2>/dev/null || break
			sleep 0.1
		done
		# Not mounted: $D/qsd is only the empty file it would cover.
		DEV=""
		if grep -q " $D/qsd " /proc/mounts; then
			DEV=$D/qsd
			if [ "$2" = loop ]; then
				LOOPDEV=$(losetup -f --show --sector-size 4096 "$D/qsd") || LOOPDEV=""
				DEV=$LOOPDEV
			fi
		fi ;;
	loop)
		LOOPDEV=$(losetup -f --show --direct-io=on --sector-size 4096 "$D/img")
		DEV=$LOOPDEV ;;
	loop-cache)
		LOOPDEV=$(losetup -f --show --sector-size 4096 "$D/img")
		DEV=$LOOPDEV ;;
	esac
	if [ -z "$DEV" ] || [ ! -e "$DEV" ]; then
		echo "bench/fuse.sh: $1 did not start:" >&2
		cat "$D/server.log" >&2
		exit 1
	fi
}

cpu_ticks() { [ -n "$SERVER" ] && awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$SERVER/stat" || echo 0; }
ctx_switches() {
	[ -n "$SERVER" ] || { echo 0; return; }
	cat /proc/"$SERVER"/task/*/status 2>/dev/null |
		awk '/^(voluntary|nonvoluntary)_ctxt_switches/ { n += $2 } END { print n + 0 }'
}

fio_args() {
	case $1 in
	randread-4k-qd1) echo "--rw=randread --bs=4k --iodepth=1" ;;
	randread-4k-qd32) echo "--rw=randread --bs=4k --iodepth=32" ;;
	randwrite-4k-qd1) echo "--rw=randwrite --bs=4k --iodepth=1" ;;
	randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	read-256k-qd8) echo "--rw=read --bs=256k --iodepth=8" ;;
	write-256k-qd8) echo "--rw=write --bs=256k --iodepth=8" ;;
	esac
}

runs() {	# the (server, path) pairs: the limit only through a loop device
	echo "bsteer loop"; echo "qsd loop"; echo "loop loop"; echo "loop-cache loop"
	echo "bsteer file"; echo "qsd file"
}

echo "server,path,workload,round,iops,mibs,cpu_us_per_io,ctxsw_per_io" >"$OUT/results.csv"
total=$((ROUNDS * 6 * $(echo $WORKLOADS | wc -w)))
n=0
for r in $(seq "$ROUNDS"); do
	while read -r srv path; do
		start "$srv" "$path"
		for w in $WORKLOADS; do
			n=$((n + 1))
			printf '\r[%d/%d] round %d %-6s %-4s %-18s' $n $total "$r" "$srv" "$path" "$w" >&2
			c0=$(cpu_ticks)
			# shellcheck disable=SC2046 # fio_args prints several options: split on purpose
			fio --name=b --filename="$DEV" --ioengine=io_uring --direct=1 $(fio_args "$w") \
				--size="$SIZE" --time_based --runtime="$RUNTIME" \
				--output-format=json >"$D/fio.json" 2>/dev/null &
			F=$!
			sleep 0.5
			x0=$(ctx_switches) t0=$(date +%s.%N)
			sleep "$(echo "$RUNTIME - 1" | bc)"
			x1=$(ctx_switches) t1=$(date +%s.%N)
			wait $F
			c1=$(cpu_ticks)
			/usr/bin/python3 - "$D/fio.json" "$srv,$path,$w,$r" "$((c1 - c0))" \
				"$((x1 - x0))" "$(getconf CLK_TCK)" "$(echo "$t1 - $t0" | bc)" \
				"$srv" >>"$OUT/results.csv" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]
ticks, ctx, hz, dt = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
ios = j["read"]["total_ios"] + j["write"]["total_ios"]
iops = j["read"]["iops"] + j["write"]["iops"]
bw = j["read"]["bw_bytes"] + j["write"]["bw_bytes"]
server = not sys.argv[7].startswith("loop")	# the limits have no server
print("%s,%.0f,%.1f,%s,%s" % (sys.argv[2], iops, bw / 2**20,
      "%.2f" % (ticks / hz * 1e6 / max(ios, 1)) if server else "",
      "%.3f" % (max(ctx, 0) / max(iops * dt, 1)) if server else ""))
PY
		done
		stop
	done < <(runs)
done
echo >&2

/usr/bin/python3 - "$OUT" "$SIZE" "$ROUNDS" "$RUNTIME" "$(nproc)" "$(uname -r)" "$BARGS" <<'PY'
import csv, statistics, sys
out, size, rounds, runtime, cpus, kernel, bargs = sys.argv[1:8]
rows = list(csv.DictReader(open(out + "/results.csv")))
def med(path, w, s, f):
    v = [float(r[f]) for r in rows if (r["path"], r["workload"], r["server"]) == (path, w, s) and r[f] != ""]
    return statistics.median(v) if v else None
keys = []
for r in rows:
    if (r["path"], r["workload"]) not in keys:
        keys.append((r["path"], r["workload"]))
md = ["# bench/fuse.sh results", "",
      "Image %s in /var/tmp (ext4, page cache), %s round(s) of %s s, fio io_uring --direct=1; "
      "%s CPUs, kernel %s. Medians over the rounds; `x qsd` and `x loop` are IOPS ratios "
      "to qemu-storage-daemon and to the loop device with direct I/O on the image "
      "(`loop`; `loop-cache` is the same through the page cache) in the same run.%s"
      % (size, rounds, runtime, cpus, kernel,
         " bsteer: `bsteer serve ... %s`." % bargs if bargs else ""), "",
      "| path | workload | server | IOPS | x qsd | x loop | MiB/s | CPU us/IO | ctxsw/IO |",
      "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
chart = []
for path, w in keys:
    q = med(path, w, "qsd", "iops") or 1
    l = med(path, w, "loop", "iops")
    line = ['"%s %s"' % (path, w)]
    for s in ("bsteer", "qsd", "loop", "loop-cache"):
        i = med(path, w, s, "iops")
        if i is None:
            line.append("0")
            continue
        c, x = med(path, w, s, "cpu_us_per_io"), med(path, w, s, "ctxsw_per_io")
        md.append("| %s | %s | %s | %.0f | %.2f | %s | %.0f | %s | %s |" % (
            path, w, s, i, i / q, "%.2f" % (i / l) if l else "-", med(path, w, s, "mibs"),
            "%.1f" % c if c is not None else "-", "%.3f" % x if x is not None else "-"))
        line.append("%.3f" % (i / q))
    chart.append(" ".join(line))
md += ["", "![IOPS relative to qemu-storage-daemon](chart.png)", ""]
open(out + "/results.md", "w").write("\n".join(md) + "\n")
open(out + "/chart.dat", "w").write("\n".join(chart) + "\n")
print("\n".join(md))
PY
gnuplot <<EOF 2>/dev/null || echo "bench/fuse.sh: gnuplot could not draw the chart" >&2
set terminal pngcairo size 1200,520 noenhanced
set output "$OUT/chart.png"
set title "IOPS relative to qemu-storage-daemon (same run, medians)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set bmargin 9
set yrange [0:*]
set grid ytics
set key top left
plot "$OUT/chart.dat" using 2:xtic(1) title "bsteer", '' using 3 title "qemu-storage-daemon", '' using 4 title "loop on the image (direct I/O)", '' using 5 title "loop on the image (page cache)"
EOF
echo "bench/fuse.sh: wrote $OUT/results.md, $OUT/results.csv, $OUT/chart.png" >&2
