#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/rbd.sh: bsteer serve in front of a Ceph RBD image (the rbd target,
# librbd) side by side with qemu-nbd serving the same image through qemu's
# rbd driver (qemu-block-extra): the setup a Ceph user would pick. Both
# over a unix socket, read by the same client (fio's nbd engine, one job).
# The script starts its own one-node cluster (selftests/ceph/start.sh: one
# mon, one mgr, one OSD, pool size 1) in a temp directory, makes one image
# with `rbd create`, fills it once (rbd bench, sequential 4 MiB writes) so
# that reads read data, and stops the cluster on exit.
#
# Servers: qemu-nbd -f raw -t --cache=writeback "rbd:rbd/IMG:conf=CONF"
# (rbd_cache on) and bsteer serve --export "d=rbd:rbd/IMG:conf=CONF"
# (librbd's defaults: rbd_cache on too). They take turns within each
# round; every figure is a median over the rounds, with min and max, and
# bsteer/qemu-nbd ratios from the same run. Per run: IOPS, MiB/s, p50/p99
# completion latency (fio), server CPU per IO (utime+stime of all its
# threads, /proc/PID/stat), server context switches per IO (voluntary +
# involuntary of its live threads, /proc/PID/task/*/status, sampled from
# 0.5 s into the run to 0.5 s before its end), and the OSD's CPU per IO
# (where the rest of the time goes: client, server and OSD share the CPUs).
#
# Usage: bench/rbd.sh [--quick] [--rounds N] [--runtime SECS] [--size SIZE]
#                     [--store memstore|bluestore] [--threads N]
#                     [--image-features F1,F2] [--out DIR]
#   --quick   1 round, 3 s runs, a 256 MiB image (about a minute)
#   default   3 rounds, 10 s runs, a 1 GiB image (about 5 minutes)
#   --store   the OSD's object store: memstore (in its memory; default) or
#             bluestore (a sparse file under the temp dir, on /var/tmp)
#   --threads bsteer's worker threads (default 1; one connection uses one)
#   --image-features  the image's features (rbd create --image-feature),
#             e.g. layering,exclusive-lock; default: Ceph's (with fast-diff,
#             which qemu-nbd asks of every read: see BENCHMARKS.md)
# Workloads: randread-4k-qd32 randwrite-4k-qd32 read-256k-qd8 write-256k-qd8
# Writes DIR/results.md and DIR/results.csv (default DIR:
# bench/results/rbd-YYYYmmdd-HHMMSS).
set -u
cd "$(dirname "$0")/.." || exit 1
ROUNDS=3 RUNTIME=10 SIZE=1G STORE=memstore THREADS=1 OUT="" FEATURES=""
while [ $# -gt 0 ]; do
	case $1 in
	--quick) ROUNDS=1; RUNTIME=3; SIZE=256M; shift ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--store) STORE=$2; shift 2 ;;
	--threads) THREADS=$2; shift 2 ;;
	--image-features) FEATURES=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h|--help) sed -n '3,37p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/rbd.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
case $ROUNDS$RUNTIME$THREADS in *[!0-9]*|'') echo "bench/rbd.sh: --rounds, --runtime, --threads take numbers" >&2; exit 2 ;; esac
[ "$RUNTIME" -ge 2 ] || { echo "bench/rbd.sh: --runtime 2 s at least" >&2; exit 2; }
case $STORE in memstore|bluestore) ;; *) echo "bench/rbd.sh: --store memstore or bluestore" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "bench/rbd.sh: needs root (the Ceph cluster, BPF)" >&2; exit 1; }
PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH	# the ceph CLI wants Debian's python3
for t in fio qemu-nbd nbdinfo rbd ceph ceph-mon ceph-mgr ceph-osd bc numfmt; do
	command -v $t >/dev/null || { echo "bench/rbd.sh: $t not installed (make deps)" >&2; exit 1; }
done
compgen -G "/usr/lib/*/qemu/block-rbd.so" >/dev/null ||
	{ echo "bench/rbd.sh: qemu's rbd driver (block-rbd.so) not installed: apt-get install qemu-block-extra (make deps)" >&2; exit 1; }
BYTES=$(numfmt --from=iec "$SIZE" 2>/dev/null) || { echo "bench/rbd.sh: --size: e.g. 256M, 1G" >&2; exit 2; }
[ -x build/bsteer ] || make -s || exit 1
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

OUT=${OUT:-bench/results/rbd-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 1
if [ "$STORE" = bluestore ]; then D=$(mktemp -d /var/tmp/bsteer-bench-rbd.XXXXXX); else D=$(mktemp -d /tmp/bsteer-bench-rbd.XXXXXX); fi
SERVER="" HELPER=""
cleanup() {
	for p in $HELPER $SERVER; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	selftests/ceph/stop.sh "$D/ceph"
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WORKLOADS="randread-4k-qd32 randwrite-4k-qd32 read-256k-qd8 write-256k-qd8"
SERVERS="qemu-nbd bsteer"
echo "bench/rbd.sh: image $SIZE on a one-node cluster ($STORE), $ROUNDS round(s) of ${RUNTIME}s, bsteer --threads $THREADS, $(nproc) CPUs, $(uname -r)" >&2

# The cluster: memstore holds the image and Ceph's own bookkeeping in the
# OSD's memory; twice the image and 1 GiB more keeps it far from full.
CONF=$(CEPH_OBJECTSTORE=$STORE CEPH_MEMSTORE_BYTES=$((2 * BYTES + (1 << 30))) \
	selftests/ceph/start.sh "$D/ceph" 2>"$D/ceph.err" | tail -1)
[ -n "$CONF" ] && [ -f "$CONF" ] || { cat "$D/ceph.err" >&2; echo "bench/rbd.sh: the Ceph cluster did not start" >&2; exit 1; }
grep 'cluster up' "$D/ceph.err" >&2
OSD=$(cat "$D/ceph/osd.0.pid")
rbdc() { timeout 120 rbd -c "$CONF" "$@"; }
IMG=bench
feat=()
for f in ${FEATURES//,/ }; do feat+=(--image-feature "$f"); done
rbdc create --size "$BYTES"B "${feat[@]}" "rbd/$IMG" || { echo "bench/rbd.sh: rbd create failed" >&2; exit 1; }
rbdc bench --io-type write --io-pattern seq --io-size 4M --io-threads 4 --io-total "$BYTES"B \
	"rbd/$IMG" >"$D/fill.log" 2>&1 || { cat "$D/fill.log" >&2; echo "bench/rbd.sh: filling the image failed" >&2; exit 1; }
FEATURES=$(rbdc info "rbd/$IMG" | sed -n 's/^[[:space:]]*features: //p')
echo "bench/rbd.sh: rbd/$IMG ($SIZE; $FEATURES) created and filled: $(tail -1 "$D/fill.log")" >&2
SPEC="rbd:rbd/$IMG:conf=$CONF"
URI="nbd+unix:///d?socket=$D/s.sock"

start() {	# start SERVER
	rm -f "$D/s.sock"
	case $1 in
	qemu-nbd)
		qemu-nbd -f raw -t -x d --socket="$D/s.sock" --cache=writeback "$SPEC" \
			>"$D/server.log" 2>&1 & ;;
	bsteer)
		build/bsteer serve --listen "unix:$D/s.sock" --export "d=$SPEC" \
			--instance "bench-rbd-$$" --threads "$THREADS" >"$D/server.log" 2>&1 & ;;
	esac
	SERVER=$!
	for _ in $(seq 150); do
		nbdinfo --size "$URI" >/dev/null 2>&1 && return 0
		kill -0 "$SERVER" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench/rbd.sh: $1 did not start:" >&2
	cat "$D/server.log" >&2
	exit 1
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
	randread-4k-qd32) echo "--rw=randread --bs=4k --iodepth=32" ;;
	randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	read-256k-qd8) echo "--rw=read --bs=256k --iodepth=8" ;;
	write-256k-qd8) echo "--rw=write --bs=256k --iodepth=8" ;;
	esac
}

echo "server,workload,round,iops,mibs,p50_us,p99_us,cpu_us_per_io,ctxsw_per_io,osd_cpu_us_per_io" >"$OUT/results.csv"
total=$((ROUNDS * 2 * 4))
n=0
for r in $(seq "$ROUNDS"); do
	for srv in $SERVERS; do
		start "$srv"
		for w in $WORKLOADS; do
			n=$((n + 1))
			printf '\r[%d/%d] round %d %-9s %-18s' $n $total "$r" "$srv" "$w" >&2
			c0=$(cpu_ticks "$SERVER") o0=$(cpu_ticks "$OSD")
			# shellcheck disable=SC2046 # fio_args prints several options: split on purpose
			fio --name=b --ioengine=nbd --uri="$URI" $(fio_args "$w") \
				--size="$BYTES" --time_based --runtime="$RUNTIME" \
				--output-format=json >"$D/fio.json" 2>"$D/fio.err" &
			HELPER=$!
			sleep 0.5
			x0=$(ctx_switches "$SERVER") t0=$(date +%s.%N)
			sleep "$(echo "$RUNTIME - 1" | bc)"
			x1=$(ctx_switches "$SERVER") t1=$(date +%s.%N)
			wait "$HELPER" || { echo >&2; cat "$D/fio.err" "$D/server.log" >&2; echo "bench/rbd.sh: fio against $srv failed ($w)" >&2; exit 1; }
			HELPER=
			c1=$(cpu_ticks "$SERVER") o1=$(cpu_ticks "$OSD")
			/usr/bin/python3 - "$D/fio.json" "$srv,$w,$r" "$((c1 - c0))" "$((x1 - x0))" \
				"$(getconf CLK_TCK)" "$(echo "$t1 - $t0" | bc)" "$((o1 - o0))" \
				>>"$OUT/results.csv" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]
ticks, ctx, hz, dt, oticks = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
ios = 0
lat = {}
for d in ("read", "write"):
    ios += j[d]["total_ios"]
    if j[d]["total_ios"]:
        lat = j[d]["clat_ns"].get("percentile", {})
iops = j["read"]["iops"] + j["write"]["iops"]
bw = j["read"]["bw_bytes"] + j["write"]["bw_bytes"]
print("%s,%.0f,%.1f,%.0f,%.0f,%.2f,%.3f,%.2f" % (
    sys.argv[2], iops, bw / 2**20,
    lat.get("50.000000", 0) / 1000, lat.get("99.000000", 0) / 1000,
    ticks / hz * 1e6 / max(ios, 1), max(ctx, 0) / max(iops * dt, 1),
    oticks / hz * 1e6 / max(ios, 1)))
PY
		done
		stop
	done
done
echo >&2

/usr/bin/python3 - "$OUT" "$STORE" "$SIZE" "$ROUNDS" "$RUNTIME" "$(nproc)" "$(uname -r)" \
	"$(awk -F: '/model name/ { print $2; exit }' /proc/cpuinfo | sed 's/^ //')" "$THREADS" \
	"$(ceph --version | awk '{ print $3 }')" "$(qemu-nbd --version | awk 'NR == 1 { print $2 }')" "$FEATURES" <<'PY'
import csv, statistics, sys
out, store, size, rounds, runtime, cpus, kernel, model, threads, cephv, qemuv, feat = sys.argv[1:13]
rows = list(csv.DictReader(open(out + "/results.csv")))
servers = ["qemu-nbd", "bsteer"]
workloads = []
for r in rows:
    if r["workload"] not in workloads:
        workloads.append(r["workload"])
def med(w, s, f):
    v = [float(r[f]) for r in rows if (r["workload"], r["server"]) == (w, s)]
    return (statistics.median(v), min(v), max(v)) if v else (0, 0, 0)
md = ["# bench/rbd.sh results", "",
      "RBD image of %s (features: %s) on a one-node Ceph %s cluster (%s OSD, pool size 1), %s round(s) of %s s "
      "per run, fio nbd engine over a unix socket, one job; %s CPUs (%s), kernel %s; "
      "qemu-nbd %s --cache=writeback; bsteer serve --threads %s." % (
          size, feat, cephv, store, rounds, runtime, cpus, model, kernel, qemuv, threads), "",
      "Medians over the rounds (min-max); `x` columns are bsteer/qemu-nbd in the same run "
      "(IOPS: higher is better; CPU/IO and ctxsw/IO: lower is better). OSD CPU/IO: the OSD "
      "process's CPU per IO in the same run.", "",
      "| workload | server | IOPS | x IOPS | MiB/s | p50 us | p99 us | CPU us/IO | x CPU/IO | ctxsw/IO | x ctxsw/IO | OSD CPU us/IO |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for w in workloads:
    qi = med(w, "qemu-nbd", "iops")[0] or 1
    qc = med(w, "qemu-nbd", "cpu_us_per_io")[0] or 1
    qx = med(w, "qemu-nbd", "ctxsw_per_io")[0] or 1
    for s in servers:
        i = med(w, s, "iops")
        c = med(w, s, "cpu_us_per_io")[0]
        x = med(w, s, "ctxsw_per_io")[0]
        b = s == "bsteer"
        md.append("| %s | %s | %.0f (%.0f-%.0f) | %s | %.1f | %.0f | %.0f | %.2f | %s | %.3f | %s | %.2f |" % (
            w, s, i[0], i[1], i[2], "%.2f" % (i[0] / qi) if b else "", med(w, s, "mibs")[0],
            med(w, s, "p50_us")[0], med(w, s, "p99_us")[0], c, "%.2f" % (c / qc) if b else "",
            x, "%.2f" % (x / qx) if b else "", med(w, s, "osd_cpu_us_per_io")[0]))
md.append("")
open(out + "/results.md", "w").write("\n".join(md))
print("\n".join(md))
PY
echo "bench/rbd.sh: wrote $OUT/results.md, $OUT/results.csv" >&2
