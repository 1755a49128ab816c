#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Live hot swap under load: fio writes and verifies (crc32c, verifying as
# it goes) on a two-leg mirror for at least 25 s, while the policy is swapped at
# least 50 times between mirror, mirror_rr and mirror_lif (same layout),
# every third swap with plain bpftool, and the read mode is changed with
# bsteer policy config. Nothing may be lost or rejected, and every policy
# must have taken requests. A swap to stripe (another layout) is refused.
. "$(dirname "$0")/lib.sh"
need_root
need_tools fio bpftool nbdcopy

S=$T/nbd.sock
INST=$(instance hotswap)
RUNTIME=25	# at least; fio goes on until 50 swaps are done (a busy
		# machine, or the sanitized build, makes each swap slower)
truncate -s 64M "$T/a" "$T/b"
start_serve "$S" --instance "$INST" --threads 2 --slots 32 \
	--export "m=$T/a,$T/b,policy=mirror" || finish
U="nbd+unix:///m?socket=$S"

fio --name=hot --ioengine=nbd --uri="$U" --rw=randwrite --bs=4k --iodepth=16 \
	--numjobs=2 --size=24M --offset_increment=32M --time_based \
	--runtime=$((RUNTIME * 8)) --verify=crc32c --verify_backlog=256 \
	--verify_fatal=1 --verify_state_save=0 --output-format=json >"$T/fio.json" 2>"$T/fio.err" &
FIO=$!
PIDS+=("$FIO")

policies=(mirror_rr mirror_lif mirror)
modes=(primary round-robin least-inflight default)
swaps=0 by_bpftool=0 end=$(($(date +%s) + RUNTIME))
while [ "$(date +%s)" -lt "$end" ] || [ $swaps -lt 50 ]; do
	kill -0 $FIO 2>/dev/null || { fail "fio ended before the swaps did"; break; }
	p=${policies[$((swaps % 3))]}
	if [ $((swaps % 3)) -eq 2 ]; then
		"$BSTEER" policy swap "$INST" "$p" --dry-run >"$T/swap.sh" &&
			sh -e "$T/swap.sh" >/dev/null 2>"$T/bpftool.err" ||
			fail "bpftool swap to $p: $(tail -2 "$T/bpftool.err")"
		by_bpftool=$((by_bpftool + 1))
	else
		"$BSTEER" policy swap "$INST" "$p" >/dev/null || fail "swap to $p"
	fi
	[ $((swaps % 5)) -eq 0 ] &&
		{ "$BSTEER" policy config "$INST" "read=${modes[$((swaps / 5 % 4))]}" ||
			fail "policy config"; }
	swaps=$((swaps + 1))
	sleep 0.05
done
"$BSTEER" policy swap "$INST" stripe >/dev/null 2>"$T/refuse.err"
check "swap to another layout refused" [ $? -ne 0 ]
check "refusal names both layouts" grep -q "'replica'.*'stripe'" "$T/refuse.err"

# SIGINT: fio stops its jobs, writes its report, and exits 128.
kill -INT $FIO
wait $FIO
rc=$?
check "fio stopped cleanly (exit $rc)" [ $rc -eq 0 -o $rc -eq 128 ]
# fio was alive at every swap (checked in the loop); each of its jobs
# wrote (a count, not a time: a loaded machine slows fio's start).
check "both fio jobs wrote through the swaps" python3 -c "import json,sys
t=open('$T/fio.json').read()
d=json.loads(t[t.index('{'):])
sys.exit(len(d['jobs']) != 2 or min(j['write']['total_ios'] for j in d['jobs']) == 0)"
check "fio verified with no errors" python3 -c "import json,sys
t=open('$T/fio.json').read()
d=json.loads(t[t.index('{'):])
sys.exit(any(j['error'] for j in d['jobs']) or
         min(j['write']['total_ios'] for j in d['jobs']) == 0 or
         min(j['read']['total_ios'] for j in d['jobs']) == 0)"
echo "swaps: $swaps ($by_bpftool with bpftool)"
check "at least 50 swaps" [ $swaps -ge 50 ]
"$BSTEER" policy show "$INST" --json >"$T/show.json" || fail "policy show"
"$BSTEER" stat "$INST" --json >"$T/stat.json" || fail "stat"
check "no rejected decision" [ "$(json "$T/stat.json" counters.decisions_rejected)" = 0 ]
check "no missing decision" [ "$(json "$T/stat.json" counters.decisions_missing)" = 0 ]
check "no failed request" [ "$(json "$T/stat.json" counters.requests_failed)" = 0 ]
for id in 2 6 7; do
	check "policy id $id took requests" [ "$(json "$T/show.json" decisions_by_policy_id.$id)" -gt 0 ]
done
stop_serve
check "legs identical after the swaps" cmp "$T/a" "$T/b"
finish
