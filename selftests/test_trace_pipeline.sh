#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bsteer trace in pipelines and with several processes:
#  - -p takes several PIDs: "A,B", -p A -p B, and "A B" (as $(pidof x)
#    prints them), and -p A B last on the line (the same, unquoted); the
#    events of both processes are there, and no other's;
#  - --json -- COMMAND: COMMAND's stdout goes to stderr, so stdout is JSON
#    alone and `| jq` parses it;
#  - --output FILE: the report goes to FILE and COMMAND keeps stdout.
. "$(dirname "$0")/lib.sh"
need_root
need_tools jq
PROG=$PWD/$BUILD/selftests/trace_prog

# gated NAME: a shell waiting at a fifo, which then becomes trace_prog
# (exec keeps the PID); GATED gets its PID.
gated() {
	mkfifo "$T/gate.$1"
	sh -c 'read -r _ <"$1"; exec "$2" inflight >/dev/null' gate "$T/gate.$1" "$PROG" &
	GATED=$!
	PIDS+=("$GATED")
}

pids_round() {	# pids_round WHAT -p-ARGS... (A and B stand for the PIDs)
	local what=$1 a b args=() x
	shift
	gated "a$what"; a=$GATED
	gated "b$what"; b=$GATED
	for x in "$@"; do
		x=${x//A/$a}
		args+=("${x//B/$b}")
	done
	# Emptied before the fork, or the wait below may read the last
	# round's "ready" and open the gates before this tracer is attached.
	: >"$T/p.err"
	"$BSTEER" trace --json "${args[@]}" >"$T/p.json" 2>"$T/p.err" &
	local tr=$!
	PIDS+=("$tr")
	wait_for 30 grep -q ready "$T/p.err" || fail "$what: the tracer did not start"
	echo go >"$T/gate.a$what"
	echo go >"$T/gate.b$what"
	wait "$a" "$b"
	kill -INT "$tr"
	wait "$tr"
	check "$what: the tracer exited 0" [ $? -eq 0 ]
	check "$what: events of both processes, and no other's" python3 - "$T/p.json" "$a" "$b" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
pids = {e["pid"] for e in ev if e["event"] in ("register", "use")}
want = {int(sys.argv[2]), int(sys.argv[3])}
print("pids with events:", sorted(pids), "wanted:", sorted(want))
sys.exit(0 if pids == want else 1)
PY
}

pids_round comma -p A,B
pids_round repeated -p A -p B
pids_round spaced -p "A B"
pids_round unquoted -p A B	# -p $(pidof x), unquoted, as the last option

# --json -- COMMAND | jq: the command's own output is on stderr.
"$BSTEER" trace --json -- sh -c 'echo said-by-the-command; exec "$0" inflight' "$PROG" \
	2>"$T/j.err" | jq -c . >"$T/j.out"
rc=("${PIPESTATUS[@]}")
check "--json | jq: the trace exits 0" [ "${rc[0]}" -eq 0 ]
check "--json | jq: jq parses all of it" [ "${rc[1]}" -eq 0 ]
check "--json | jq: the events are there" grep -q '"event":"summary"' "$T/j.out"
check "--json | jq: the command's stdout went to stderr" grep -q said-by-the-command "$T/j.err"

# --output FILE: the report there, the command's stdout on stdout.
"$BSTEER" trace --json -o "$T/report.json" -- sh -c 'echo said-by-the-command; exec "$0" inflight' \
	"$PROG" >"$T/o.out" 2>"$T/o.err"
check "--output: the trace exits 0" [ $? -eq 0 ]
check "--output: the command's stdout is on stdout" grep -qx said-by-the-command "$T/o.out"
check "--output: and no JSON there" sh -c "! grep -q '\"event\"' '$T/o.out'"
check "--output: the file is the JSON report" sh -c "jq -e 'select(.event == \"summary\")' '$T/report.json' >/dev/null"
"$BSTEER" trace -o "$T/report.txt" -- "$PROG" inflight >"$T/t.out" 2>&1
check "--output without --json: the text report is in the file" grep -q "buffers registered" "$T/report.txt"
finish
