#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/direct.sh: Direct I/O servers side by side, on one image on the
# disk's file system (ext4 on /var/tmp: tmpfs has no direct I/O), with
# the same client (fio's nbd engine over a unix socket). Servers take
# turns within each round, so drift cancels; each figure is a median over
# the rounds, with min and max.
#
# Servers: qemu-nbd --cache=none --aio=io_uring --shared=8 (O_DIRECT),
# nbdkit file cache=none (nbdkit 1.32: not O_DIRECT, but each read or
# write is followed by dropping its pages from the page cache), and
# bsteer serve --export d=IMG,cache=none (O_DIRECT through io_uring;
# requests not aligned to pages would go through the page cache; fio's
# are aligned).
# Per run: IOPS, MiB/s, p50/p99 completion latency (fio), and the
# server's CPU per IO (utime+stime of all its threads, io_uring's
# workers included, from /proc/PID/task/*/stat, before and after fio).
# Ratios: bsteer's IOPS to the best peer's IOPS, bsteer's CPU per IO to
# the lowest peer CPU per IO, both from the same run.
#
# Usage: bench/direct.sh [--quick] [--rounds N] [--runtime SECS]
#                        [--size SIZE] [--threads N] [--dir DIR] [--out DIR]
#   default   3 rounds, 10 s, a 1 GiB image, 4K randread and randwrite
#             QD32, 256K read and write QD8
#   --quick   1 round, 3 s, 4K randread/randwrite QD32 and 256K read/write QD8
#   --threads bsteer's worker threads (default: the CPUs)
#   --dir     where the image goes (default /var/tmp; must take O_DIRECT)
# Writes DIR/results.md and DIR/results.csv (default DIR:
# bench/results/direct-YYYYmmdd-HHMMSS).
# Examples:
#   bench/direct.sh --quick
#   bench/direct.sh --rounds 5 --runtime 20 --out /tmp/direct
set -u
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
ROUNDS=3 RUNTIME=10 SIZE=1G THREADS=$(nproc) DIR=/var/tmp OUT=""
while [ $# -gt 0 ]; do
	case $1 in
	--quick) ROUNDS=1; RUNTIME=3; shift ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--threads) THREADS=$2; shift 2 ;;
	--dir) DIR=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h|--help) sed -n '3,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/direct.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
case "$ROUNDS$RUNTIME$THREADS" in
*[!0-9]*) echo "bench/direct.sh: --rounds, --runtime and --threads take whole numbers" >&2; exit 2 ;;
esac
[ "$RUNTIME" -ge 2 ] || { echo "bench/direct.sh: --runtime takes 2 s or more" >&2; exit 2; }
for t in fio nbdkit qemu-nbd nbdinfo; do
	command -v $t >/dev/null || { echo "bench/direct.sh: $t not installed (make deps)" >&2; exit 1; }
done
[ -x build/bsteer ] || make -s || exit 1
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
OUT=${OUT:-bench/results/direct-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 1
D=$(mktemp -d "$DIR/bsteer-direct.XXXXXX") || exit 1
SERVER="" HELPER=""
cleanup() {
	for p in $SERVER $HELPER; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SERVERS="qemu-nbd nbdkit bsteer"
WORKLOADS="randread-4k-qd32 randwrite-4k-qd32 read-256k-qd8 write-256k-qd8"
FS=$(findmnt -n -o FSTYPE -T "$DIR" 2>/dev/null || stat -f -c %T "$DIR")
echo "bench/direct.sh: image $SIZE on $FS ($DIR), $ROUNDS round(s) of ${RUNTIME}s, bsteer --threads $THREADS, $(nproc) CPUs, $(uname -r)" >&2
# Written, not sparse: a read of a hole costs the file system nothing.
fallocate -l "$SIZE" "$D/img" 2>/dev/null || truncate -s "$SIZE" "$D/img"
dd if=/dev/urandom of="$D/img" bs=1M count=$(($(stat -c %s "$D/img") >> 20)) \
	oflag=direct conv=notrunc status=none || exit 1
URI="nbd+unix:///d?socket=$D/s.sock"

start() {	# start SERVER
	rm -f "$D/s.sock"
	case $1 in
	qemu-nbd)
		qemu-nbd -t -x d -f raw --cache=none --aio=io_uring --shared=8 \
			-k "$D/s.sock" "$D/img" >"$D/server.log" 2>&1 & ;;
	nbdkit)
		nbdkit -f --exit-with-parent -U "$D/s.sock" -e d file "$D/img" cache=none \
			>"$D/server.log" 2>&1 & ;;
	bsteer)
		build/bsteer serve --listen "unix:$D/s.sock" --export "d=$D/img,cache=none" \
			--instance "bench-direct-$$" --threads "$THREADS" >"$D/server.log" 2>&1 & ;;
	esac
	SERVER=$!
	served "$URI" "bench/direct.sh: $1 did not start" "$D/server.log"
}

stop() { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; SERVER=; }

# utime+stime ticks of every thread the server has now (io-wq workers too).
cpu_ticks() {
	cat /proc/"$1"/task/*/stat 2>/dev/null |
		awk '{ sub(/.*\) /, ""); n += $12 + $13 } END { print n + 0 }'
}

fio_args() {	# fio_args WORKLOAD
	case $1 in
	randread-4k-qd32) echo "--rw=randread --bs=4k --iodepth=32" ;;
	randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	read-256k-qd8) echo "--rw=read --bs=256k --iodepth=8" ;;
	write-256k-qd8) echo "--rw=write --bs=256k --iodepth=8" ;;
	esac
}

echo "server,workload,round,iops,mibs,p50_us,p99_us,cpu_us_per_io" >"$OUT/results.csv"
total=$((ROUNDS * $(echo $SERVERS | wc -w) * $(echo $WORKLOADS | wc -w)))
n=0
for r in $(seq "$ROUNDS"); do
	for srv in $SERVERS; do
		start "$srv"
		for w in $WORKLOADS; do
			n=$((n + 1))
			printf '\r[%d/%d] round %d %-9s %-18s' $n $total "$r" "$srv" "$w" >&2
			# Threads that end with fio's connection would take their
			# ticks with them: sample the whole process (dead threads'
			# ticks stay in /proc/PID/stat) and the live ones, and keep
			# the larger difference.
			c0=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$SERVER/stat")
			t0=$(cpu_ticks "$SERVER")
			# shellcheck disable=SC2046 # fio_args prints several options: split on purpose
			fio --name=b --ioengine=nbd --uri="$URI" $(fio_args "$w") \
				--size="$SIZE" --time_based --runtime="$RUNTIME" \
				--output-format=json >"$D/fio.json" 2>/dev/null &
			HELPER=$!
			sleep "$(echo "$RUNTIME - 0.5" | bc)"
			t1=$(cpu_ticks "$SERVER")
			wait "$HELPER"
			HELPER=
			c1=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$SERVER/stat")
			d=$((c1 - c0))
			[ $((t1 - t0)) -gt $d ] && d=$((t1 - t0))
			/usr/bin/python3 - "$D/fio.json" "$srv,$w,$r" "$d" "$(getconf CLK_TCK)" \
				>>"$OUT/results.csv" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]
ticks, hz = int(sys.argv[3]), int(sys.argv[4])
ios, lat = 0, {}
for d in ("read", "write"):
    ios += j[d]["total_ios"]
    if j[d]["total_ios"]:
        lat = j[d]["clat_ns"].get("percentile", {})
iops = j["read"]["iops"] + j["write"]["iops"]
bw = j["read"]["bw_bytes"] + j["write"]["bw_bytes"]
print("%s,%.0f,%.1f,%.1f,%.1f,%.2f" % (
    sys.argv[2], iops, bw / 2**20, lat.get("50.000000", 0) / 1000,
    lat.get("99.000000", 0) / 1000, ticks / hz * 1e6 / max(ios, 1)))
PY
		done
		stop
	done
done
echo >&2

/usr/bin/python3 - "$OUT" "$FS" "$SIZE" "$ROUNDS" "$RUNTIME" "$(nproc)" "$(uname -r)" \
	"$(awk -F: '/model name/ { print $2; exit }' /proc/cpuinfo | sed 's/^ //')" "$THREADS" \
	"$(qemu-nbd --version | head -1)" "$(nbdkit --version)" <<'PY'
import csv, statistics, sys
out, fs, size, rounds, runtime, cpus, kernel, model, threads, qv, kv = sys.argv[1:12]
rows = list(csv.DictReader(open(out + "/results.csv")))
peers, servers = ["qemu-nbd", "nbdkit"], ["qemu-nbd", "nbdkit", "bsteer"]
workloads = []
for r in rows:
    if r["workload"] not in workloads:
        workloads.append(r["workload"])
def med(w, s, f):
    v = [float(r[f]) for r in rows if (r["workload"], r["server"]) == (w, s)]
    return (statistics.median(v), min(v), max(v)) if v else (0, 0, 0)
md = ["# bench/direct.sh results", "",
      "Image %s on %s, %s round(s) of %s s per run, fio nbd engine over a unix socket; "
      "%s CPUs (%s), kernel %s; bsteer serve --threads %s; %s; %s." % (
          size, fs, rounds, runtime, cpus, model, kernel, threads, qv, kv), "",
      "qemu-nbd --cache=none and bsteer cache=none open the image with O_DIRECT; nbdkit's "
      "file plugin cache=none does not (it drops the pages it read or wrote from the page "
      "cache). Medians over the rounds (min-max). `x best peer`: bsteer's IOPS over the "
      "best peer's IOPS, and bsteer's CPU per IO over the lowest peer CPU per IO, same run.", "",
      "| workload | server | IOPS | MiB/s | p50 us | p99 us | CPU us/IO |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
ratios = ["", "| workload | best peer (IOPS) | bsteer x IOPS | best peer (CPU/IO) | bsteer x CPU/IO |",
          "| --- | --- | ---: | --- | ---: |"]
for w in workloads:
    for s in servers:
        i, c = med(w, s, "iops"), med(w, s, "cpu_us_per_io")
        md.append("| %s | %s | %.0f (%.0f-%.0f) | %.0f | %.0f | %.0f | %.1f (%.1f-%.1f) |" % (
            w, s, i[0], i[1], i[2], med(w, s, "mibs")[0], med(w, s, "p50_us")[0],
            med(w, s, "p99_us")[0], c[0], c[1], c[2]))
    bi = max(peers, key=lambda s: med(w, s, "iops")[0])
    bc = min(peers, key=lambda s: med(w, s, "cpu_us_per_io")[0] or float("inf"))
    ratios.append("| %s | %s | %.2f | %s | %.2f |" % (
        w, bi, med(w, "bsteer", "iops")[0] / (med(w, bi, "iops")[0] or 1),
        bc, med(w, "bsteer", "cpu_us_per_io")[0] / (med(w, bc, "cpu_us_per_io")[0] or 1)))
md += ratios
open(out + "/results.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
echo "bench/direct.sh: wrote $OUT/results.md, $OUT/results.csv" >&2
