#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bsteer trace -p on a running bsteer serve (2 threads: 2 rings) under fio
# load over NBD: the trace finds the instance by itself and cross-checks the
# kernel's use of every slot against bsteer's slot state. It must agree
# with bsteer's own books:
#  - every slot registered in each ring the trace found, found in place
#    (before the trace), and every ring the load used among them;
#  - uses per slot index equal to the growth of that slot's kops (the
#    fixed-buffer ops bsteer's issue hook counted), and in all equal to
#    kernel_fixed_ops in bsteer stat;
#  - nothing in flight once the load stops, no slot leased (bsteer stat);
#  - 0 cross-check errors.
# Then the cross-check must catch a lie: slot_meta overwritten with "free"
# while fio runs gives cross-check errors and exit status 1.
. "$(dirname "$0")/lib.sh"
need_root
need_tools fio python3 bpftool

INST=$(instance trace)
S=$T/s.sock
truncate -s 256M "$T/disk"
start_serve "$S" --instance "$INST" --threads 2 --export "d=$T/disk" || finish
URI="nbd+unix:///d?socket=$S"
D=/sys/fs/bpf/bsteer/$INST

# The counts are compared exactly, so the ring buffer is large enough
# (64 MiB) for the consumer to fall behind on a busy machine.
load() {	# load SECS OUT: 4K random reads and writes, 2 connections
	fio --name=l --ioengine=nbd --uri="$URI" --rw=randrw --bs=4k --iodepth=16 \
		--numjobs=2 --size=64M --runtime="$1" --time_based --group_reporting \
		--output-format=json --output="$2" >/dev/null 2>&1
}

"$BSTEER" trace -p "$SERVE" --json --ringbuf 64 >"$T/trace.json" 2>"$T/trace.err" &
TR=$!
PIDS+=("$TR")
# 60 s: loading and verifying the tracer's programs can take seconds on a
# loaded machine; the bound only catches a tracer that never says ready.
wait_for 60 grep -q ready "$T/trace.err" || fail "the tracer did not start: $(cat "$T/trace.err")"
bpftool -j map dump pinned "$D/slot_meta" >"$T/meta0.json"
"$BSTEER" stat "$INST" --json >"$T/stat0.json"
load 3 "$T/fio.json" || fail "fio failed"
# The last slots are let go just after fio has its last reply: wait until
# bsteer's books show none leased or in flight (a state, not sleep 0.3). If
# that never comes, the check on stat1 below says so.
slots_idle() {
	"$BSTEER" stat "$INST" --json | python3 -c 'import json,sys
s = json.load(sys.stdin)["slots"]; sys.exit(s["leased"] or s["in_flight"])'
}
wait_for 30 slots_idle
bpftool -j map dump pinned "$D/slot_meta" >"$T/meta1.json"
"$BSTEER" stat "$INST" --json >"$T/stat1.json"
kill -INT "$TR"
wait "$TR"
check "the tracer exited 0" [ $? -eq 0 ]

check "the trace agrees with bsteer's books" python3 - "$T" "$INST" <<'PY'
import json, sys, collections
T, inst = sys.argv[1], sys.argv[2]
ev = [json.loads(l) for l in open(f"{T}/trace.json")]
s0, s1 = (json.load(open(f"{T}/stat{i}.json")) for i in (0, 1))
m0, m1 = ({e["formatted"]["key"]: e["formatted"]["value"] for e in json.load(open(f"{T}/meta{i}.json"))} for i in (0, 1))
ok = True
def want(cond, what):
    global ok
    print(("ok: " if cond else "FAIL: ") + what)
    ok &= bool(cond)
summ = ev[-1]
nslots, nrings = s1["slots"]["total"], s1["counters"]["rings"]
regs = [e for e in ev if e["event"] == "register"]
want(nrings == 2, f"the server has 2 rings: {nrings}")
uses = [e for e in ev if e["event"] == "use"]
# A ring's table is read the first time the trace sees a submission on the
# ring, of any kind (a re-armed accept or receive counts), and which worker
# (ring) takes which fio connection is the kernel's choice: a ring may be
# found and then serve no fixed-buffer op, or never be seen at all. Each ring
# found must show every slot, and each ring seen in use must have been found.
seen = sorted(set(e["ring"] for e in uses))
found = sorted(set(e["ring"] for e in regs))
want(1 <= len(seen) <= nrings, f"rings seen in use: {len(seen)} of {nrings}")
want(all(e["before_trace"] for e in regs) and
     all(sum(1 for e in regs if e["ring"] == r) == nslots for r in found) and
     set(seen) <= set(found) and len(found) <= nrings,
     f"{len(regs)} buffers found in place: {nslots} slots x {len(found)} ring(s) found, "
     f"{len(seen)} of them seen in use")
want(sorted(set(e["index"] for e in regs)) == list(range(nslots)), "indices are the slots")
per = collections.Counter(e["index"] for e in uses)
kops = {i: m1[i]["kops"] - m0[i]["kops"] for i in m1}
bad = {i: (per.get(i, 0), kops[i]) for i in kops if per.get(i, 0) != kops[i]}
want(not bad, f"uses per slot equal its kops growth (differing: {dict(list(bad.items())[:5])})")
kd = s1["counters"]["kernel_fixed_ops"] - s0["counters"]["kernel_fixed_ops"]
want(len(uses) == kd and kd > 1000, f"{len(uses)} uses, kernel_fixed_ops grew by {kd}")
want(all(e["opcode"] in ("READ_FIXED", "WRITE_FIXED") for e in uses), "READ_FIXED and WRITE_FIXED only")
want(s1["slots"]["leased"] == 0 and s1["slots"]["in_flight"] == 0, f"bsteer stat: nothing leased: {s1['slots']}")
want(summ.get("instance") == inst, f"cross-checked against {inst}: {summ.get('instance')}")
want(summ["xcheck_errors"] == 0, f"{summ['xcheck_errors']} cross-check errors")
want(summ["dropped"] == 0 and summ["released"] == 0, "nothing dropped, nothing released while serving")
want(not [l for l in ev if l["event"] == "leak" and l["kind"] != "never_used"], "no leak but unused slots")
sys.exit(0 if ok else 1)
PY

# A lie in bsteer's books: every slot marked free (zeroed) while fio runs.
"$BSTEER" trace -p "$SERVE" --json >"$T/trace2.json" 2>"$T/trace2.err" &
TR=$!
PIDS+=("$TR")
wait_for 60 grep -q ready "$T/trace2.err" || fail "the tracer did not start again"
# 120 s is long enough for any machine; it is stopped once the lie is caught.
# (fio itself in the background: a background job ignores SIGINT, and
# SIGTERM ends fio's run cleanly.)
fio --name=l --ioengine=nbd --uri="$URI" --rw=randrw --bs=4k --iodepth=16 \
	--numjobs=2 --size=64M --runtime=120 --time_based --output="$T/fio2.log" >/dev/null 2>&1 &
LOAD=$!
PIDS+=("$LOAD")
requests_done() {
	"$BSTEER" stat "$INST" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["requests_done"])'
}
flowing() { [ "$(requests_done)" -gt $((done0 + 1000)) ]; }
# Zero the books once the requests flow, and again until the tracer names
# an error (a slot in use that the books call free), while fio still runs.
done0=$(requests_done)
wait_for 60 flowing || fail "fio's requests did not flow"
NSLOTS=$(json "$T/stat1.json" slots.total)
ZERO=$(printf ' 0%.0s' $(seq 32))
for i in $(seq 0 $((NSLOTS - 1))); do
	echo "map update pinned $D/slot_meta key $((i & 255)) $((i >> 8)) 0 0 value$ZERO"
done >"$T/zero.batch"
# The lie fails requests (stale slot generations), and fio may stop on
# the first EIO before the tracer's report of it is read here: so what is
# checked is that a lie went in while fio ran, and that the tracer names
# one, in time.
made=
for _ in $(seq 600); do	# 60 s at most: a bound on a hang, not a timing
	grep -q "cross-check error" "$T/trace2.err" && break
	kill -0 "$LOAD" 2>/dev/null || break
	bpftool batch file "$T/zero.batch" >/dev/null 2>&1 && made=1
	sleep 0.1
done
check "the lie was made while fio ran" [ -n "$made" ]
check "... and the tracer named it" wait_for 30 grep -q "cross-check error" "$T/trace2.err"
kill -TERM "$LOAD" 2>/dev/null
wait "$LOAD"
kill -INT "$TR"
wait "$TR"
check "the tracer exits 1 on cross-check errors" [ $? -eq 1 ]
check "the summary counts them" python3 -c "
import json; s = [json.loads(l) for l in open('$T/trace2.json')][-1]
raise SystemExit(0 if s['event'] == 'summary' and s['xcheck_errors'] > 0 else 1)"
check "each is named on stderr" grep -q "cross-check error: .* slot [0-9]*: " "$T/trace2.err"
check "and as an event" grep -q '"event":"xcheck_error"' "$T/trace2.json"
kill "$SERVE"
wait "$SERVE" 2>/dev/null
finish
