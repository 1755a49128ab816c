#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/nbd-prof.sh: where an NBD server's CPU goes, per IO, for one fio
# workload, servers in turns: bsteer serve against the floor
# (bench/floor.c) and nbdkit, the same image and client as bench/nbd.sh.
# Per server, three fio runs on one server: IOPS and server CPU per IO
# with nothing attached; per IO the io_uring_enter calls, SQEs, CQEs,
# io-wq hand-offs and context switches (perf stat on tracepoints); and a
# perf record of the server (cpu-clock, call graphs) cut into what it
# spends a request on: receive, send, file read or write, io_uring's own
# work, the BPF hooks, and its userspace, in us per IO (inclusive shares
# of its samples times the first run's CPU per IO; they overlap where one
# calls another). The perf data stays in a temporary directory. See BENCHMARKS.md, "Where the
# floor's lead comes from".
#
# Usage: bench/nbd-prof.sh [--rw RW] [--bs BS] [--qd N] [--transport unix|tcp]
#                          [--dir DIR] [--runtime SECS] [--servers LIST]
#                          [--json] [-- BSTEER-SERVE-OPTIONS...]
#   defaults: randread, 4k, QD32, unix, a 1 GiB image in /dev/shm (tmpfs),
#   3 runs of 8 s per server, --servers floor,bsteer,nbdkit; --dir /var/tmp for ext4;
#   bsteer-mirror, another server, is a 2-leg mirror (a copy beside the image)
# Examples:
#   bench/nbd-prof.sh
#   bench/nbd-prof.sh --rw randwrite --dir /var/tmp --transport tcp
#   bench/nbd-prof.sh --servers floor,bsteer -- --inline-io off
set -u
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
RW=randread BS=4k QD=32 TR=unix DIR=/dev/shm RUNTIME=8 SERVERS=floor,bsteer,nbdkit JSON=0
while [ $# -gt 0 ]; do
	case $1 in
	--rw) RW=$2; shift 2 ;;
	--bs) BS=$2; shift 2 ;;
	--qd) QD=$2; shift 2 ;;
	--transport) TR=$2; shift 2 ;;
	--dir) DIR=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--servers) SERVERS=$2; shift 2 ;;
	--json) JSON=1; shift ;;
	--) shift; break ;;
	-h|--help) sed -n '3,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/nbd-prof.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
case $TR in unix|tcp) ;; *) echo "bench/nbd-prof.sh: --transport unix or tcp" >&2; exit 2 ;; esac
case $RUNTIME in ''|*[!0-9]*) echo "bench/nbd-prof.sh: --runtime takes whole seconds" >&2; exit 2 ;; esac
[ "$RUNTIME" -ge 5 ] || { echo "bench/nbd-prof.sh: --runtime is at least 5 s" >&2; exit 2; }
for s in ${SERVERS//,/ }; do
	case $s in floor|bsteer|bsteer-mirror|nbdkit) ;; *) echo "bench/nbd-prof.sh: unknown server $s (floor, bsteer, bsteer-mirror, nbdkit)" >&2; exit 2 ;; esac
done
for t in fio perf nbdkit nbdinfo; do
	command -v $t >/dev/null || { echo "bench/nbd-prof.sh: $t not installed (make deps)" >&2; exit 1; }
done
[ -x build/bsteer ] || make -s || exit 1
[ -x build/bench/floor ] || make -s bench || exit 1
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
D=$(mktemp -d "$DIR/bsteer-prof.XXXXXX") || exit 1
SERVER=""
cleanup() {
	[ -n "$SERVER" ] && { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; }
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
PORT=$((20000 + $$ % 20000))
head -c 1G /dev/urandom >"$D/img" || exit 1
case ",$SERVERS," in *,bsteer-mirror,*) cp "$D/img" "$D/img2" || exit 1 ;; esac
if [ "$TR" = unix ]; then URI="nbd+unix:///d?socket=$D/s.sock"; else URI="nbd://127.0.0.1:$PORT/d"; fi

start() {	# start SERVER [BSTEER-OPTIONS...]
	local s=$1 l
	shift
	rm -f "$D/s.sock"
	case $s in
	nbdkit)
		[ "$TR" = unix ] && l="-U $D/s.sock" || l="-i 127.0.0.1 -p $PORT"
		nbdkit -f --exit-with-parent $l -e d file "$D/img" >"$D/server.log" 2>&1 & ;;
	floor)
		[ "$TR" = unix ] && l="unix:$D/s.sock" || l="tcp:127.0.0.1:$PORT"
		# As many threads as bsteer's default: the CPUs, at most 8.
		build/bench/floor --listen "$l" --file "$D/img" --threads "$(t=$(nproc); echo $((t > 8 ? 8 : t)))" \
			>"$D/server.log" 2>&1 & ;;
	bsteer|bsteer-mirror)
		[ "$TR" = unix ] && l="unix:$D/s.sock" || l="tcp:127.0.0.1:$PORT"
		local legs=$D/img
		[ "$s" = bsteer-mirror ] && legs=$D/img,$D/img2
		build/bsteer serve --listen "$l" --export "d=$legs" --instance "prof-$$" "$@" \
			>"$D/server.log" 2>&1 & ;;
	esac
	SERVER=$!
	served "$URI" "bench/nbd-prof.sh: $s did not start" "$D/server.log"
}

stop() {
	kill "$SERVER" 2>/dev/null
	wait "$SERVER" 2>/dev/null
	SERVER=""
}

cpu_ticks() {	# utime+stime of the server, all its threads (gone ones too), in ticks
	awk '{ print $14 + $15 }' "/proc/$SERVER/stat"
}

# fio_run NAME [COMMAND...]: fio for RUNTIME s; COMMAND runs over its
# middle (from 2 s in, for RUNTIME - 3 s), not near either end.
fio_run() {
	local name=$1
	shift
	fio --name=p --ioengine=nbd --uri="$URI" --rw="$RW" --bs="$BS" --iodepth="$QD" \
		--time_based --runtime="$RUNTIME" --ramp_time=1 --output-format=json \
		>"$D/$name.fio.json" 2>"$D/$name.fio.err" &
	local fio_pid=$!
	sleep 2
	"$@"
	wait "$fio_pid" || { echo "bench/nbd-prof.sh: fio failed ($name):" >&2; cat "$D/$name.fio.err" >&2; exit 1; }
}

ticks_over() {	# ticks_over FILE: the server's CPU ticks over the window
	local t0 t1
	t0=$(cpu_ticks)
	sleep "$WINDOW"
	t1=$(cpu_ticks)
	echo $((t1 - t0)) >"$1"
}

EVENTS=syscalls:sys_enter_io_uring_enter,io_uring:io_uring_submit_req,io_uring:io_uring_complete,io_uring:io_uring_queue_async_work,context-switches
WINDOW=$((RUNTIME - 3))
echo "bench/nbd-prof.sh: $RW $BS QD$QD over $TR, image in $DIR, 3 runs of ${RUNTIME}s per server" >&2
others=$(find /sys/fs/bpf/bsteer -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
[ "$others" -gt 0 ] && echo "bench/nbd-prof.sh: warning: $others other bsteer instance(s) live: their hooks run at every io_uring event here too" >&2
for s in ${SERVERS//,/ }; do
	case $s in bsteer*) start "$s" "$@" ;; *) start "$s" ;; esac
	# Three runs, so that no figure is taken under another's instruments:
	# CPU per IO with nothing attached; counts per IO under perf stat
	# (tracepoints slow a server, but a count per IO stays what it is);
	# the profile's shares under perf record (sampling only).
	fio_run "$s.plain" ticks_over "$D/$s.ticks"
	fio_run "$s.count" perf stat -x, -e "$EVENTS" -p "$SERVER" -o "$D/$s.stat" -- sleep "$WINDOW"
	fio_run "$s.prof" perf record -q -g -e cpu-clock -F 4999 -p "$SERVER" -o "$D/$s.data" \
		-- sleep "$WINDOW"
	perf report -i "$D/$s.data" --children --sort sym --stdio -g none --percent-limit 0.3 \
		2>/dev/null >"$D/$s.children"
	perf report -i "$D/$s.data" --no-children --sort dso --stdio -g none 2>/dev/null >"$D/$s.dso"
	stop
	echo "bench/nbd-prof.sh: $s done" >&2
done

python3 - "$D" "$SERVERS" "$WINDOW" "$JSON" "$RW $BS QD$QD over $TR, image in $DIR" <<'PY'
import json, os, re, sys
d, servers, window, as_json, what = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]

# Inclusive shares: a sample counts in every group whose function is on
# its stack, so groups overlap where one calls another (a receive run
# from io_uring's submission is in both): read them one by one.
GROUPS = [
    ("receive (header, payload)", r"^(unix_stream_recvmsg|tcp_recvmsg)$"),
    ("send (reply)", r"^(unix_stream_sendmsg|tcp_sendmsg)$"),
    ("file read", r"^(filemap_read|shmem_file_read_iter)$"),
    ("file write", r"^(generic_perform_write|shmem_file_write_iter|ext4_buffered_write_iter)$"),
    ("splice", r"^(do_splice|filemap_splice_read|splice_to_socket)$"),
    ("io_uring_enter, all of it", r"^__do_sys_io_uring_enter$"),
    ("io_uring submission", r"^io_submit_sqes$"),
    ("io_uring completion posting", r"^__io_submit_flush_completions$"),
    # The hooks run at tracepoints: bpf_trace_run* is the program and its
    # way in (every bsteer instance on the machine runs at every event).
    ("BPF at io_uring_submit_req", r"^bpf_trace_run1$"),
    ("BPF at io_uring_complete", r"^bpf_trace_run3$"),
    ("the scheduler (__schedule)", r"^__schedule$"),
]

def fio_iops(s):
    text = open("%s/%s.fio.json" % (d, s)).read()   # fio may say something first
    job = json.loads(text[text.index("{"):])["jobs"][0]
    return job["read"]["iops"] + job["write"]["iops"]

def stat(s):
    out = {}
    for line in open("%s/%s.stat" % (d, s)):
        f = line.strip().split(",")
        if len(f) > 3 and f[0] and f[0][0].isdigit():
            out[f[2]] = float(f[0])
    return out

def children(s):
    out = []
    for line in open("%s/%s.children" % (d, s)):
        m = re.match(r"\s+([\d.]+)%\s+([\d.]+)%\s+\[[^\]]*\]\s+(\S+)", line)
        if m:
            out.append((float(m.group(1)), m.group(3)))
    return out

def user_share(s):
    share = 0.0
    for line in open("%s/%s.dso" % (d, s)):
        m = re.match(r"\s+([\d.]+)%\s+(\S+)", line)
        if m and not m.group(2).startswith("["):
            share += float(m.group(1))
    return share

res = {}
hz = os.sysconf("SC_CLK_TCK")
for s in servers:
    st = stat(s)
    iops = fio_iops(s + ".plain")
    ticks = float(open("%s/%s.ticks" % (d, s)).read())
    cpu = ticks / hz * 1e6 / (iops * window) if iops else 0
    ios = fio_iops(s + ".count") * window   # the counted run's IOs
    ch = children(s)
    groups = {}
    for name, rx in GROUPS:
        share = max([p for p, sym in ch if re.search(rx, sym)] or [0.0])
        groups[name] = share * cpu / 100
    groups["userspace (server, libc)"] = user_share(s) * cpu / 100
    per_io = {k: st.get(e, 0) / ios if ios else 0 for k, e in (
        ("io_uring_enter", "syscalls:sys_enter_io_uring_enter"),
        ("sqes", "io_uring:io_uring_submit_req"),
        ("cqes", "io_uring:io_uring_complete"),
        ("io_wq", "io_uring:io_uring_queue_async_work"),
        ("ctxsw", "context-switches"))}
    res[s] = {"iops": iops, "cpu_us_per_io": cpu, "per_io": per_io, "us_per_io": groups}

if as_json:
    print(json.dumps({"workload": what, "servers": res}, indent=1))
    sys.exit(0)
print("# %s" % what)
print()
print("| | " + " | ".join(servers) + " |")
print("| --- |" + " ---: |" * len(servers))
def row(label, f):
    print("| %s | %s |" % (label, " | ".join(f(res[s]) for s in servers)))
row("IOPS", lambda r: "%.0f" % r["iops"])
row("CPU us/IO", lambda r: "%.2f" % r["cpu_us_per_io"])
for k in ("io_uring_enter", "sqes", "cqes", "io_wq", "ctxsw"):
    row("%s per IO" % k, lambda r, k=k: "%.2f" % r["per_io"][k])
for name in list(res[servers[0]]["us_per_io"]):
    row("us/IO in %s" % name, lambda r, n=name: "%.2f" % r["us_per_io"][n])
PY
