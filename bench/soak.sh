#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/soak.sh: a long run of mixed, verified IO against one bsteer serve
# (a 2-leg mirror on tmpfs, 2 worker threads), with policy swaps and client
# churn, to find what only time finds: lost writes, leaked slots, growing
# memory.
#
#  - fio writes and reads with crc32c verification, in runs of 20 s, so
#    its connections come and go (random 4K QD16 and sequential 256K QD4,
#    two jobs each);
#  - the policy is swapped between mirror, mirror_rr and mirror_lif every
#    second;
#  - every 2 s a client connects, reads a block and leaves, and another
#    opens a connection and drops it mid-handshake.
#
# At the end it reports errors (fio verify errors, failed fio runs, rejected
# or missing decisions, direction violations: all must be 0), the server's
# RSS at the start and every minute, and slots still leased once idle.
# Exit 0 only if all of it holds.
#
# Usage: bench/soak.sh [--minutes N] [--json]   (default 10 minutes)
set -u
cd "$(dirname "$0")/.." || exit 1
MINUTES=10 JSON=0
while [ $# -gt 0 ]; do
	case $1 in
	--minutes) MINUTES=$2; shift 2 ;;
	--json) JSON=1; shift ;;
	-h|--help) sed -n '3,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/soak.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
case $MINUTES in ''|*[!0-9]*) echo "bench/soak.sh: --minutes takes a whole number" >&2; exit 2 ;; esac
for t in fio nbdsh; do
	command -v $t >/dev/null || { echo "bench/soak.sh: $t not installed (make deps)" >&2; exit 1; }
done
[ -x build/bsteer ] || make -s || exit 1
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

D=$(mktemp -d /dev/shm/bsteer-soak.XXXXXX)
INST=soak-$$
SERVER="" PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}" $SERVER; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}" $SERVER; do wait "$p" 2>/dev/null; done
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

truncate -s 256M "$D/a" "$D/b"
build/bsteer serve --listen "unix:$D/s.sock" --instance "$INST" --threads 2 \
	--export "m=$D/a,$D/b,policy=mirror" >"$D/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do [ -S "$D/s.sock" ] && break; sleep 0.1; done
[ -S "$D/s.sock" ] || { cat "$D/serve.log" >&2; exit 1; }
U="nbd+unix:///m?socket=$D/s.sock"
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVER/status"; }
RSS=("$(rss)")

# fio in runs; each run's JSON kept for its error counts.
(
	F=
	trap 'kill $F 2>/dev/null; wait $F 2>/dev/null; exit 0' TERM
	i=0
	while :; do
		i=$((i + 1))
		fio --name=rand --ioengine=nbd --uri="$U" --rw=randrw --bs=4k \
			--iodepth=16 --numjobs=2 --size=48M --offset_increment=64M \
			--time_based --runtime=20 --verify=crc32c --verify_backlog=512 \
			--verify_state_save=0 --output-format=json \
			--name=seq --ioengine=nbd --uri="$U" \
			--rw=write --bs=256k --iodepth=4 --numjobs=2 --size=48M \
			--offset=128M --offset_increment=64M --verify=crc32c \
			--verify_state_save=0 --time_based --runtime=20 \
			>"$D/fio.$i.json" 2>"$D/fio.$i.err" &
		F=$!
		wait $F
		echo $? >"$D/fio.$i.rc"
	done
) &
PIDS+=($!)
# Policy swaps.
(
	p=(mirror_rr mirror_lif mirror)
	i=0
	while :; do
		build/bsteer policy swap "$INST" "${p[$((i % 3))]}" >/dev/null 2>>"$D/swap.err" ||
			echo "swap failed" >>"$D/swap.fail"
		i=$((i + 1))
		sleep 1
	done
) &
PIDS+=($!)
# Client churn.
(
	while :; do
		PATH=/usr/bin:$PATH nbdsh -u "$U" -c 'h.pread(4096, 0)' >/dev/null 2>>"$D/churn.err" ||
			echo "churn read failed" >>"$D/churn.fail"
		/usr/bin/python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.recv(8); s.close()' \
			"$D/s.sock" 2>>"$D/churn.err"
		sleep 2
	done
) &
PIDS+=($!)

start=$(date +%s) end=$(($(date +%s) + MINUTES * 60))
while [ "$(date +%s)" -lt "$end" ]; do
	sleep 5
	kill -0 "$SERVER" 2>/dev/null || { echo "bench/soak.sh: the server died" >&2; break; }
	el=$(($(date +%s) - start))
	if [ $((el / 60)) -ge ${#RSS[@]} ]; then
		RSS+=("$(rss)")
	fi
	[ -t 2 ] && printf '\rsoak: %d of %d s, RSS %s KiB' "$el" $((MINUTES * 60)) "$(rss)" >&2
done
[ -t 2 ] && echo >&2
# Stop the load, let the server settle, and read its books.
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
PIDS=()
sleep 2
alive=1
kill -0 "$SERVER" 2>/dev/null || alive=0
RSS+=("$( [ $alive = 1 ] && rss || echo 0)")
[ $alive = 1 ] && build/bsteer stat "$INST" --json >"$D/stat.json"

/usr/bin/python3 - "$D" "$JSON" "$alive" "${RSS[@]}" <<'EOF'
import glob, json, os, sys
d, want_json, alive = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
rss = [int(x) for x in sys.argv[4:] if x]
runs = verify_errors = failed_runs = ios = 0
for rc in glob.glob(d + "/fio.*.rc"):
    n = rc[:-3]
    runs += 1
    if open(rc).read().strip() != "0":
        failed_runs += 1
    try:
        t = open(n + ".json").read()
        j = json.loads(t[t.index("{"):])
        for job in j["jobs"]:
            verify_errors += job["error"] != 0
            ios += job["read"]["total_ios"] + job["write"]["total_ios"]
    except (ValueError, KeyError):
        pass
def lines(f):
    return sum(1 for _ in open(f)) if os.path.exists(f) else 0
st = json.load(open(d + "/stat.json")) if alive else {"counters": {}, "slots": {}}
c = st["counters"]
r = {
    "server_alive": alive,
    "fio_runs": runs, "fio_failed_runs": failed_runs,
    "fio_jobs_with_errors": verify_errors, "fio_ios": ios,
    "swap_failures": lines(d + "/swap.fail"),
    "churn_failures": lines(d + "/churn.fail"),
    "decisions_rejected": c.get("decisions_rejected", -1),
    "decisions_missing": c.get("decisions_missing", -1),
    "violations": c.get("violations", -1),
    "connections_total": c.get("connections_total", 0),
    "slots_leased_idle": st["slots"].get("leased", -1) + st["slots"].get("releasing", 0)
                         if alive else -1,
    "rss_kib": rss,
}
bad = [k for k in ("fio_failed_runs", "fio_jobs_with_errors", "swap_failures",
                   "churn_failures", "decisions_rejected", "decisions_missing",
                   "violations", "slots_leaked") if r.get(k, 0) != 0]
if r["slots_leased_idle"] != 0:
    bad.append("slots_leased_idle")
if not alive:
    bad.append("server_alive")
r["ok"] = not bad
if want_json:
    print(json.dumps(r))
else:
    for k, v in r.items():
        print("%-22s %s" % (k, v))
    print("result: %s" % ("PASS" if not bad else "FAIL (" + ", ".join(bad) + ")"))
sys.exit(0 if not bad else 1)
EOF
