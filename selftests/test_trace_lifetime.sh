#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Buffer lifetimes as bsteer trace --json tells them, for a plain liburing
# program (selftests/trace_prog.c):
#  inflight: buffers 0 and 1 unregistered while a READ_FIXED on buffer 0
#    waits 200 ms on a pipe: buffer 1 is released at the unregister and
#    named "never used" by the leak report; buffer 0 is released only after
#    the read completes, and reported as having outlived its unregister;
#  table: a sparse table of 8, an update installing index 3, a second
#    update replacing it (the first buffer released, never used), a
#    WRITE_FIXED on the second, a clone into a second ring; every buffer
#    released at the rings' teardown;
#  kill: a READ_FIXED in flight when the process is SIGKILLed is reported
#    as held at exit;
#  -c NAME: only the program of that name is traced.
. "$(dirname "$0")/lib.sh"
need_root
need_tools python3
PROG=$PWD/$BUILD/selftests/trace_prog

run() {	# run MODE [STATUS]: the program's lines in $T/MODE.txt, the trace in $T/MODE.json
	"$BSTEER" trace --json -- sh -c "exec '$PROG' $1 >'$T/$1.txt'" \
		>"$T/$1.json" 2>"$T/$1.err"
	check "$1: the tracer exited with the program's status" [ $? -eq "${2:-0}" ]
}

run inflight
check "inflight: the read completed with the fed bytes" grep -q "res=8 data=lifetime" "$T/inflight.txt"
check "inflight: lifetimes" python3 - "$T/inflight.json" "$T/inflight.txt" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
run = dict(kv.split("=") for l in open(sys.argv[2]) for kv in l.split() if "=" in kv)
ok = True
def want(cond, what):
    global ok
    print(("ok: " if cond else "FAIL: ") + what)
    ok &= bool(cond)
def one(kind, **kw):
    m = [e for e in ev if e["event"] == kind and all(e.get(k) == v for k, v in kw.items())]
    want(len(m) == 1, f"one {kind} {kw}: {len(m)}")
    return m[0] if m else {}
unreg = int(run["unregistered"])
one("table", entries=2, filled=2, source="register")
u0 = one("unregister", index=0, source="unregister")
u1 = one("unregister", index=1, source="unregister")
want(u0.get("holders") == 1 and u1.get("holders") == 0, "at unregister, one request holds buffer 0, none holds 1")
use = one("use", index=0, opcode="READ_FIXED", res=8)
r0 = one("release", index=0)
r1 = one("release", index=1)
want(r1.get("ts_ns", 0) <= unreg, "buffer 1 released by the unregister call")
want(r1.get("outlived_unregister") is False, "... with no holder left to outlive it")
want(r0.get("outlived_unregister") is True, "buffer 0 freed at its last holder's completion")
want(use.get("ts_ns", 0) >= unreg + 150_000_000, "the read completed 200 ms after the unregister")
want(r0.get("ts_ns", 0) >= use.get("ts_ns", 1), "buffer 0 released after the read completed")
want(r0.get("after_unregister_ms", 0) >= 150, f"... {r0.get('after_unregister_ms')} ms after its unregister")
want(r0.get("uses") == 1 and r1.get("uses") == 0, "uses: 1 and 0")
want(use.get("lat_us", 0) >= 200000, f"the read's latency covers the wait: {use.get('lat_us')} us")
leaks = [e for e in ev if e["event"] == "leak"]
want([(l["kind"], l["index"]) for l in leaks if l["kind"] == "never_used"] == [("never_used", 1)],
     "the leak report names buffer 1 as never used")
want([(l["kind"], l["index"]) for l in leaks if l["kind"] == "outlived_unregister"] == [("outlived_unregister", 0)],
     "and buffer 0 as having outlived its unregister")
want(ev[-1]["event"] == "summary" and ev[-1]["dropped"] == 0, "nothing dropped")
sys.exit(0 if ok else 1)
PY

run table
check "table: lifetimes" python3 - "$T/table.json" "$T/table.txt" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
run = {}
for l in open(sys.argv[2]):
    for kv in l.split():
        k, v = kv.split("=")
        run.setdefault(k, v)
ok = True
def want(cond, what):
    global ok
    print(("ok: " if cond else "FAIL: ") + what)
    ok &= bool(cond)
tables = [e for e in ev if e["event"] == "table"]
want(len(tables) == 2, f"two tables: {len(tables)}")
want(tables and tables[0]["entries"] == 8 and tables[0]["filled"] == 0 and tables[0]["sparse"]
     and tables[0]["source"] == "register", "a sparse table of 8, empty")
want(len(tables) > 1 and tables[1]["source"] == "clone" and tables[1]["ring"] == 1 and tables[1]["filled"] == 1,
     "the clone: ring 1, one buffer")
regs = [e for e in ev if e["event"] == "register"]
want([(e["ring"], e["index"], e["source"]) for e in regs] == [(0, 3, "update"), (0, 3, "update"), (1, 3, "clone")],
     f"installs: {[(e['ring'], e['index'], e['source']) for e in regs]}")
a = run["addr"]
first = [e for e in ev if e["event"] == "release" and e["addr"] == a and e["ring"] == 0]
want(len(first) == 1 and first[0]["source"] == "update" and first[0]["uses"] == 0,
     "the first buffer at index 3 is released by the second update, unused")
uses = [e for e in ev if e["event"] == "use"]
want(len(uses) == 1 and uses[0]["opcode"] == "WRITE_FIXED" and uses[0]["index"] == 3 and uses[0]["res"] == 4096,
     "one WRITE_FIXED on index 3")
rels = [e for e in ev if e["event"] == "release"]
want(len(rels) == 3 and sorted(e["source"] for e in rels) == ["teardown", "teardown", "update"],
     f"three releases: {[e['source'] for e in rels]}")
never = sorted((l["ring"], l["index"]) for l in ev if l["event"] == "leak" and l["kind"] == "never_used")
want(never == [(0, 3), (1, 3)], f"never used: the replaced buffer and the clone's copy: {never}")
sys.exit(0 if ok else 1)
PY

run kill 137
check "kill: held at exit" python3 - "$T/kill.json" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
held = [e for e in ev if e["event"] == "leak" and e["kind"] == "held_at_exit"]
use = [e for e in ev if e["event"] == "use"]
rels = [e for e in ev if e["event"] == "release"]
ok = len(held) == 1 and held[0]["opcode"] == "READ_FIXED" and held[0]["index"] == 0
ok &= len(use) == 1 and use[0]["at_exit"] and use[0]["res"] < 0
ok &= len(rels) == 1 and rels[0]["ts_ns"] >= use[0]["ts_ns"]
print("held:", held, "use:", use, "releases:", len(rels))
sys.exit(0 if ok else 1)
PY

# By command name (-c): the program run by itself; the trace sees its
# table and nothing of any other process.
"$BSTEER" trace -c trace_prog --json -d 3 >"$T/comm.json" 2>"$T/comm.err" &
TR=$!
PIDS+=("$TR")
wait_for 10 grep -q ready "$T/comm.err" || fail "-c: the tracer did not start"
"$PROG" inflight >/dev/null
wait "$TR"
check "-c: the tracer exited 0" [ $? -eq 0 ]
check "-c: the named program's buffers, and no one else's" python3 - "$T/comm.json" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
tables = [e for e in ev if e["event"] == "table"]
comms = {e.get("comm") for e in ev if e["event"] in ("register", "use", "release")}
print("tables:", [(e["comm"], e["entries"]) for e in tables], "comms:", comms)
sys.exit(0 if len(tables) == 1 and tables[0]["entries"] == 2 and comms == {"trace_prog"} else 1)
PY

# Bad input: a clear message and a non-zero exit, nothing traced.
bad() {	# bad WHAT PATTERN ARGS...
	local what=$1 pat=$2
	shift 2
	"$BSTEER" trace "$@" >"$T/bad.out" 2>&1
	local rc=$?
	check "$what: refused" [ $rc -ne 0 ]
	check "$what: says why" grep -q -- "$pat" "$T/bad.out"
}
bad "a bad pid" "'x' is not a whole number" -p x
bad "a missing process" "no process 1073741822" -p 1073741822
bad "a bad interval" "--interval: '0' is not a number of seconds" -I 0 -p 1
bad "a long command name" "1 to 15 characters" -c 0123456789abcdefg
bad "-p with a command" "cannot be combined" -p 1 -- true
bad "an unknown instance" "no instance 'nope'" -p 1 -i nope
bad "a ring buffer size" "power of two" --ringbuf 3 -p 1
bad "a command that does not exist" "cannot run" -- /nonexistent/prog
check "--help has examples" sh -c "'$BSTEER' trace --help | grep -q EXAMPLES"
finish
