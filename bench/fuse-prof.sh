#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/fuse-prof.sh: where the FUSE frontend's context switches come from.
# Serves a 1 GiB image in /var/tmp with bsteer serve --fuse --loop, runs fio
# through the FUSE file or the loop device, and counts over 5 s of it, per
# request: each server thread's voluntary and involuntary switches, its run
# time and run-queue wait (schedstat), io_uring_enter calls, the waits in
# them, SQEs, and io-wq hand-offs (perf stat on tracepoints). With --sched,
# also whom the server's threads switch to and whom they wake (perf record
# on sched_switch and sched_wakeup). Perf data stays in a temporary
# directory. See BENCHMARKS.md, "Why the goals are missed".
#
# Usage: bench/fuse-prof.sh [--path file|loop] [--rw RW] [--bs BS] [--qd N]
#                           [--sched] [-- BSTEER-SERVE-OPTIONS...]
#   --path    file (default): the FUSE file; loop: the loop device on it
#   --rw      fio's --rw (default randread); --bs (4k), --qd (32)
#   --sched   also record the scheduler events (3 s)
set -u
cd "$(dirname "$0")/.." || exit 1
P=file RW=randread BS=4k QD=32 SCHED=0
while [ $# -gt 0 ]; do
	case $1 in
	--path) P=$2; shift 2 ;;
	--rw) RW=$2; shift 2 ;;
	--bs) BS=$2; shift 2 ;;
	--qd) QD=$2; shift 2 ;;
	--sched) SCHED=1; shift ;;
	--) shift; break ;;
	-h|--help) sed -n '3,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/fuse-prof.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
case $P in file|loop) ;; *) echo "bench/fuse-prof.sh: --path file or loop" >&2; exit 2 ;; esac
for t in fio perf; do
	command -v $t >/dev/null || { echo "bench/fuse-prof.sh: $t not installed" >&2; exit 1; }
done
[ -x build/bsteer ] || make -s || exit 1
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
D=$(mktemp -d /var/tmp/bsteer-fuse-prof.XXXXXX)
mkdir -p "$D/mnt"
S="" F=""
cleanup() {
	[ -n "$F" ] && { kill "$F" 2>/dev/null; wait "$F" 2>/dev/null; }
	[ -n "$S" ] && { kill "$S" 2>/dev/null; wait "$S" 2>/dev/null; }
	umount -l "$D/mnt" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
head -c 1G /dev/urandom >"$D/img" || exit 1
build/bsteer serve --fuse "$D/mnt" --loop --export "d=$D/img" --instance "fuse-prof-$$" \
	"$@" >"$D/server.log" 2>&1 &
S=$!
for _ in $(seq 300); do
	grep -q "serving on" "$D/server.log" && break
	kill -0 $S 2>/dev/null || break
	sleep 0.1
done
DEV=$(sed -n 's/.*export d: \(\/dev\/loop[0-9]*\).*/\1/p' "$D/server.log")
[ "$P" = file ] && DEV=$D/mnt/d
[ -n "$DEV" ] && [ -e "$DEV" ] || { echo "bench/fuse-prof.sh: the server did not start:" >&2; cat "$D/server.log" >&2; exit 1; }
fio --name=p --filename="$DEV" --ioengine=io_uring --direct=1 --rw="$RW" --bs="$BS" \
	--iodepth="$QD" --size=1G --time_based --runtime=$((SCHED ? 12 : 9)) \
	--output-format=json >"$D/fio.json" 2>/dev/null &
F=$!
sleep 1
J=$(pgrep -P $F | head -1)	# fio's job process
# comm voluntary involuntary run-ns runqueue-wait-ns, per thread
snap() {
	for t in /proc/$S/task/* /proc/$J/task/*; do
		echo "$(tr ' ' _ <"$t/comm") $(awk '/^voluntary_ctxt/ { v = $2 } /^nonvoluntary_ctxt/ { n = $2 } END { print v, n }' "$t/status") $(cut -d' ' -f1,2 "$t/schedstat")"
	done
}
snap >"$D/s0"; date +%s.%N >"$D/t0"
perf stat --per-thread -p $S -x, -o "$D/stat" -e syscalls:sys_enter_io_uring_enter \
	-e io_uring:io_uring_cqring_wait -e io_uring:io_uring_submit_req \
	-e io_uring:io_uring_queue_async_work -- sleep 5
snap >"$D/s1"; date +%s.%N >"$D/t1"
if [ $SCHED = 1 ]; then
	perf record -q -e sched:sched_switch -e sched:sched_wakeup -p $S -o "$D/sched.data" \
		-- sleep 3 >/dev/null 2>&1
	perf script -i "$D/sched.data" -F comm,event,trace 2>/dev/null >"$D/sched.txt"
fi
wait $F
F=""
/usr/bin/python3 - "$D" "$P" "$RW" "$BS" "$QD" "$*" <<'PY'
import collections, json, re, sys
d, path, rw, bs, qd, args = sys.argv[1:7]
t = open(d + "/fio.json").read()
j = json.loads(t[t.index("{"):])["jobs"][0]
iops = j["read"]["iops"] + j["write"]["iops"]
dt = float(open(d + "/t1").read()) - float(open(d + "/t0").read())
ios = iops * dt
print("%s %s bs=%s qd=%s%s: %.0f IOPS (fio, 9 s; machine load %s)" % (
    path, rw, bs, qd, " serve " + args if args else "", iops, open("/proc/loadavg").read().split()[0]))
def snap(f):
    r = collections.OrderedDict()
    for l in open(f):
        c, v, n, run, wait = l.split()
        c = re.sub(r"-\d+$", "", c)	# iou-wrk-TID
        a = r.setdefault(c, [0, 0, 0, 0])
        for i, x in enumerate((v, n, run, wait)):
            a[i] += int(x)
    return r
a, b = snap(d + "/s0"), snap(d + "/s1")
print("%-10s %9s %9s %7s %8s %8s" % ("thread", "vol/IO", "invol/IO", "us/IO", "run%", "rqwait%"))
for c in b:
    x = [b[c][i] - a.get(c, [0] * 4)[i] for i in range(4)]
    print("%-10s %9.3f %9.3f %7.2f %8.0f %8.0f" % (c, x[0] / ios, x[1] / ios, x[2] / 1e3 / ios,
          x[2] / dt / 1e7, x[3] / dt / 1e7))
ev = collections.Counter()
for l in open(d + "/stat"):
    p = l.strip().split(",")
    if len(p) > 3 and p[1].replace(".", "").isdigit():
        ev[p[3]] += float(p[1])
for e in ("syscalls:sys_enter_io_uring_enter", "io_uring:io_uring_cqring_wait",
          "io_uring:io_uring_submit_req", "io_uring:io_uring_queue_async_work"):
    print("%-36s %8.3f per IO" % (e, ev[e] / ios))
try:
    lines = open(d + "/sched.txt").read().splitlines()
except OSError:
    lines = []
sw, wk = collections.Counter(), collections.Counter()
for l in lines:
    m = re.search(r"sched_switch: prev_comm=(\S+) .*prev_state=(\S+) ==> next_comm=(\S+)", l)
    if m:
        sw["%s %s -> %s" % (m.group(1), m.group(2), re.sub(r"[/:-]\d+.*$", "", m.group(3)))] += 1
    m = re.search(r"sched_wakeup: comm=(\S+)", l)
    if m:
        wk[re.sub(r"[/:-]\d+.*$", "", m.group(1))] += 1
if sw:
    print("server threads switching out (3 s; R+ preempted, S asleep): %d" % sum(sw.values()))
    for k, n in sw.most_common(8):
        print("  %7d  %s" % (n, k))
    print("tasks the server's threads wake (3 s): %d" % sum(wk.values()))
    for k, n in wk.most_common(5):
        print("  %7d  %s" % (n, k))
PY
