#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bsteer trace on a program that is not ours: fio's io_uring engine with
# fixed buffers (--fixedbufs --registerfiles --iodepth=16, 4K random reads
# for 3 s). The tracer attaches with -p to the fio process before fio
# starts its job, so the job process fio forks is followed. With --json:
#  - use events within 0.5% of fio's completed IO count, every one a
#    READ_FIXED of 4096 bytes on a buffer index in [0, 16);
#  - one table registration of 16 buffers (and 16 register events);
#  - 16 release events once fio is gone, none before its last use;
#  - no event dropped, no leak reported.
# Then the live table and the histograms of a short run, without --json,
# and a run whose reader stalls: the events lost are counted and named.
. "$(dirname "$0")/lib.sh"
need_root
need_tools fio python3

head -c 64M /dev/urandom >"$T/data"
FIOARGS=(--name=rr --ioengine=io_uring --fixedbufs --registerfiles
	 --iodepth=16 --rw=randread --bs=4k --size=64M --filename="$T/data"
	 --output-format=json)

# The shell waits at the fifo, then becomes fio (same PID): the tracer is
# attached to that PID before fio registers anything. A 64 MiB ring buffer
# (not the 16 MiB default): the counts below must be exact, so the
# consumer may fall behind for a while on a busy machine without a drop.
mkfifo "$T/gate"
sh -c 'read go <"$1"; shift; exec "$@"' gate "$T/gate" \
	fio "${FIOARGS[@]}" --runtime=3 --time_based --output="$T/fio.json" &
FIO=$!
PIDS+=("$FIO")
"$BSTEER" trace -p "$FIO" --json --ringbuf 64 >"$T/trace.json" 2>"$T/trace.err" &
TR=$!
PIDS+=("$TR")
wait_for 10 grep -q ready "$T/trace.err" || fail "the tracer did not start: $(cat "$T/trace.err")"
echo go >"$T/gate"
wait "$FIO" || fail "fio failed"
# It stops by itself once fio and its rings are gone.
wait_for 20 sh -c "! kill -0 $TR 2>/dev/null" || fail "the tracer did not stop after fio exited"
wait "$TR"
check "the tracer exited 0" [ $? -eq 0 ]

check "the trace matches fio" python3 - "$T/trace.json" "$T/fio.json" "$FIO" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
fio = json.load(open(sys.argv[2]))
fio_pid = int(sys.argv[3])
ios = fio["jobs"][0]["read"]["total_ios"]
uses = [e for e in ev if e["event"] == "use"]
tables = [e for e in ev if e["event"] == "table"]
regs = [e for e in ev if e["event"] == "register"]
rels = [e for e in ev if e["event"] == "release"]
summ = ev[-1]
ok = True
def want(cond, what):
    global ok
    print(("ok: " if cond else "FAIL: ") + what)
    ok &= bool(cond)
want(ios > 1000, f"fio completed {ios} IOs")
want(abs(len(uses) - ios) <= 0.005 * ios, f"{len(uses)} use events for {ios} fio IOs (within 0.5%)")
want(all(0 <= e["index"] < 16 for e in uses), "every index in [0, 16)")
want(all(e["opcode"] == "READ_FIXED" and e["res"] == 4096 for e in uses), "every use a 4096-byte READ_FIXED")
want(len(tables) == 1 and tables[0]["entries"] == 16 and tables[0]["filled"] == 16
     and tables[0]["source"] == "register", f"one registration of 16 buffers: {tables}")
want(len(regs) == 16 and sorted(e["index"] for e in regs) == list(range(16)), "16 register events, indices 0..15")
want(sorted(e["index"] for e in rels) == list(range(16)), f"16 release events: {len(rels)}")
last_use = max(e["ts_ns"] for e in uses)
want(all(e["ts_ns"] >= last_use for e in rels), "no release before fio's last use")
want(all(e["pid"] != fio_pid for e in uses), "the job process fio forked was followed")
want(summ["event"] == "summary" and summ["dropped"] == 0 and summ["lost_completions"] == 0,
     "nothing dropped or lost")
want(all(v == 0 for v in summ["leaks"].values()), f"no leaks: {summ['leaks']}")
sys.exit(0 if ok else 1)
PY

# The live table and the histograms, without --json, on a 1 s run.
"$BSTEER" trace --hist -I 0.3 -- fio "${FIOARGS[@]}" --runtime=1 --time_based \
	--output="$T/fio2.json" >"$T/table.txt" 2>"$T/table.err"
check "trace -- COMMAND exited 0" [ $? -eq 0 ]
check "the table has its header" grep -q "USES/s.*MiB/s.*INFLT.*P50(us).*P99(us).*AGE(s)" "$T/table.txt"
check "the table has fio's buffers" grep -qE "^[0-9]+ +fio +0 +[0-9]+ +[0-9.]+" "$T/table.txt"
check "the leak report is printed" grep -q "registered and never used: 0" "$T/table.txt"
check "the latency histogram is printed" grep -q "usecs *: count" "$T/table.txt"
check "the bytes histogram has the 4K uses" grep -qE "4096 -> 8191 +: [1-9]" "$T/table.txt"

# Drops are counted, never hidden: a 1 MiB ring buffer and a reader that
# stalls until fio has finished and written its report (the JSON goes into a
# pipe nobody reads yet): a stall for the whole run, whatever the machine's
# speed, not for a fixed 2 s. 60 s only bounds a hang.
"$BSTEER" trace --json --ringbuf 1 -- fio "${FIOARGS[@]}" --runtime=1 --time_based \
	--output="$T/fio3.json" 2>"$T/drop.err" |
	{ wait_for 60 test -s "$T/fio3.json"; cat >"$T/drop.json"; }
check "the lost events are named on stderr" grep -q "events lost: the ring buffer was full" "$T/drop.err"
check "every use is either an event or a drop" python3 - "$T/drop.json" "$T/fio3.json" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
ios = json.load(open(sys.argv[2]))["jobs"][0]["read"]["total_ios"]
s = ev[-1]
uses = sum(1 for e in ev if e["event"] == "use")
print(f"{uses} use events, {s['dropped']} dropped, {ios} IOs")
# Besides uses, only the 16 registrations, the table, 16 releases and the
# exits could have been dropped.
sys.exit(0 if s["dropped"] > 0 and ios <= uses + s["dropped"] <= ios + 40 else 1)
PY
finish
